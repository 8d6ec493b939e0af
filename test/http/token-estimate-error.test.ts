/**
 * docs/http.md publishes the input-token estimate's error (default and tokenizer recipes) on the corpus
 * of test/http/fixtures/prompts.json: the table must be what scripts/token-estimate-error.mjs computes
 * now, to the rounding it prints.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
// @ts-expect-error: a plain .mjs script without types
import { BEGIN, END, measure, readCorpus, table } from "../../scripts/token-estimate-error.mjs";

const root = join(import.meta.dirname, "..", "..");

describe("the published token-estimate errors", () => {
  it("match what scripts/token-estimate-error.mjs computes", async () => {
    const page = readFileSync(join(root, "docs", "http.md"), "utf8");
    const published = page.slice(page.indexOf(BEGIN) + BEGIN.length, page.indexOf(END)).trim();
    expect(published).toBe(table(await measure()));
  }, 60_000);

  it("are measured on a corpus of English, code, CJK and JSON prompts, 16 of each", async () => {
    const prompts = (await readCorpus()) as { kind: string; text: string }[];
    const counts: Record<string, number> = {};
    for (const { kind } of prompts) counts[kind] = (counts[kind] ?? 0) + 1;
    expect(counts).toEqual({ english: 16, code: 16, cjk: 16, json: 16 });
    // CJK means CJK: a good part of every prompt of that kind is Chinese, Japanese or Korean characters.
    for (const { kind, text } of prompts.filter((prompt) => prompt.kind === "cjk")) {
      const cjk = text.match(/[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]/g)?.length ?? 0;
      expect(cjk / text.length, `${kind}: ${text}`).toBeGreaterThan(0.25);
    }
  });
});
