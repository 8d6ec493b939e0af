#!/usr/bin/env node
/**
 * How far `limitedFetch`'s input-token estimate is from a real tokenizer's count, on the prompts of
 * test/http/fixtures/prompts.json (English prose, TypeScript, CJK text, JSON): the default estimate
 * (characters of the body / 4) and the `countTokens` recipes of docs/http.md ("Token counting").
 *
 * Each prompt is sent as one user message of a chat request through a real `limitedFetch` (with a
 * `RateLimiter`, the wrapped fetch a stub), and the input it estimated is read back through `estimate`.
 * The reference is gpt-tokenizer's `encodeChat` count for gpt-4o (o200k_base tokens of the chat as
 * OpenAI formats it: the text, 3 per message, 1 for the role, 3 to prime the reply). The error of one
 * prompt is |estimate - reference| / reference; the table gives its median (p50) and 95th percentile
 * (nearest rank) per kind of prompt and over all of them.
 *
 *   node scripts/token-estimate-error.mjs           prints the table (needs `npm run build` first)
 *   node scripts/token-estimate-error.mjs --write   also writes it into docs/http.md between its markers
 *
 * test/http/token-estimate-error.test.ts checks that docs/http.md shows what this computes.
 */
import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { countTokens as countCl100k } from "gpt-tokenizer/encoding/cl100k_base";
import { countTokens as countGpt4o, encodeChat } from "gpt-tokenizer/model/gpt-4o";
import { getEncoding } from "js-tiktoken";
import { RateLimiter } from "sluice";
import { chatTokens, estimateLlmCost, limitedFetch } from "sluice/http";

const root = fileURLToPath(new URL("..", import.meta.url));
const KINDS = ["english", "code", "cjk", "json"];
export const BEGIN = "<!-- token-estimate-error: begin (scripts/token-estimate-error.mjs --write) -->";
export const END = "<!-- token-estimate-error: end -->";

const o200k = getEncoding("o200k_base");
/** The estimators measured: a name for the table, and the tokenizer given to `chatTokens` (none: the default). */
export const ESTIMATORS = [
  ["default: characters / 4", undefined],
  ["js-tiktoken, o200k_base", (text) => o200k.encode(text, [], []).length],
  ["gpt-tokenizer, gpt-4o", (text) => countGpt4o(text)],
  ["gpt-tokenizer, cl100k_base (another model's)", (text) => countCl100k(text)],
];

/** The prompts of the corpus: `{ kind, text }`. */
export async function readCorpus() {
  const file = new URL("../test/http/fixtures/prompts.json", import.meta.url);
  return JSON.parse(await readFile(file, "utf8")).prompts;
}

/** The input tokens `limitedFetch` estimates for a chat request of `text`, with `countTokens` (or none). */
async function estimatedInput(text, countTokens) {
  let input;
  const fetch = limitedFetch(new RateLimiter({}), {
    fetch: async () => new Response("{}", { headers: { "content-type": "application/json" } }),
    ...(countTokens === undefined ? {} : { countTokens: chatTokens(countTokens) }),
    estimate: (request) => {
      const cost = estimateLlmCost(request);
      input = cost["input-tokens"];
      return cost;
    },
  });
  const body = JSON.stringify({ model: "gpt-4o", max_tokens: 256, messages: [{ role: "user", content: text }] });
  await (await fetch("http://127.0.0.1:9/v1/chat/completions", { method: "POST", body })).arrayBuffer();
  return input;
}

/** The p-th quantile (0..1) of sorted numbers, nearest rank. */
function quantile(sorted, p) {
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)];
}

/** Per estimator and kind (and "all"): `{ p50, p95 }` of the relative error, and the corpus size. */
export async function measure() {
  const prompts = await readCorpus();
  const reference = prompts.map(({ text }) => encodeChat([{ role: "user", content: text }]).length);
  const results = [];
  for (const [name, countTokens] of ESTIMATORS) {
    const errors = { all: [] };
    for (const [index, { kind, text }] of prompts.entries()) {
      const estimate = await estimatedInput(text, countTokens);
      const error = Math.abs(estimate - reference[index]) / reference[index];
      (errors[kind] ??= []).push(error);
      errors.all.push(error);
    }
    const row = {};
    for (const [kind, list] of Object.entries(errors)) {
      list.sort((a, b) => a - b);
      row[kind] = { p50: quantile(list, 0.5), p95: quantile(list, 0.95) };
    }
    results.push({ name, errors: row });
  }
  const counts = Object.fromEntries(KINDS.map((kind) => [kind, prompts.filter((p) => p.kind === kind).length]));
  return { results, counts, total: prompts.length };
}

const percent = (value) => `${(value * 100).toFixed(1)} %`;

/** The markdown table docs/http.md shows. */
export function table({ results, counts, total }) {
  const kinds = [...KINDS, "all"];
  const header = `| estimate (input tokens) | ${kinds
    .map((kind) => `${kind} (${kind === "all" ? total : counts[kind]})`)
    .join(" | ")} |`;
  const lines = [header, `| --- | ${kinds.map(() => "---:").join(" | ")} |`];
  for (const { name, errors } of results) {
    lines.push(
      `| ${name} | ${kinds.map((kind) => `${percent(errors[kind].p50)} / ${percent(errors[kind].p95)}`).join(" | ")} |`,
    );
  }
  return lines.join("\n");
}

/** `text` with the part between the markers replaced by `inner`. */
export function replaceBetweenMarkers(text, inner) {
  const begin = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  if (begin === -1 || end === -1 || end < begin) throw new Error(`docs/http.md lacks the markers ${BEGIN} … ${END}`);
  return `${text.slice(0, begin + BEGIN.length)}\n${inner}\n${text.slice(end)}`;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const markdown = table(await measure());
  console.log(markdown);
  if (process.argv.includes("--write")) {
    const page = `${root}docs/http.md`;
    await writeFile(page, replaceBetweenMarkers(await readFile(page, "utf8"), markdown));
    console.log("\nwritten to docs/http.md");
  }
}
