/**
 * Token budgets for an LLM API: input and output tokens limited apart (Anthropic's ITPM and OTPM), a
 * daily request quota beside the per-minute limit (OpenAI's RPD), and the input estimated by a real
 * tokenizer — js-tiktoken or gpt-tokenizer, installed by you (`npm install js-tiktoken gpt-tokenizer`)
 * — instead of characters / 4. The output is reserved from `max_tokens` and settled down to what the
 * response's `usage` says was produced.
 *
 * The provider is sluice's mock on loopback; its "minute" lasts two seconds.
 *
 * Run: npm run build && npx tsx examples/token-counting.ts
 */
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts.
import { countTokens } from "gpt-tokenizer/model/gpt-4o";
import { getEncoding } from "js-tiktoken";
import { RateLimiter } from "sluice";
import { chatTokens, limitedFetch } from "sluice/http";
import { startMockServer } from "sluice/testing";

const MINUTE = "2s"; // scaled: one "minute" of the provider's limits lasts two seconds here

await using server = await startMockServer({
  requestsPerMinute: 50,
  requestsPerDay: 1_000,
  inputTokensPerMinute: 20_000,
  outputTokensPerMinute: 2_000,
  minute: MINUTE,
  completionTokens: { min: 10, max: 60 },
});

// Input and output tokens apart, and a daily quota beside the per-minute limit of the same unit.
const limiter = new RateLimiter({
  limits: [
    { limit: 50, interval: MINUTE }, // requests per minute
    { limit: 1_000, interval: "1d" }, // requests per day
    { limit: 20_000, interval: MINUTE, unit: "input-tokens" }, // ITPM
    { limit: 2_000, interval: MINUTE, unit: "output-tokens" }, // OTPM: 200 reserved per call below
  ],
});

// The js-tiktoken recipe: the encoding of the model you call (o200k_base for gpt-4o and later);
// `[], []` reads special tokens such as <|endoftext|> in a prompt as plain text instead of throwing.
const o200k = getEncoding("o200k_base");
const fetch = limitedFetch(limiter, {
  countTokens: chatTokens((text) => o200k.encode(text, [], []).length),
  retry: { nonIdempotent: true },
});

// The gpt-tokenizer recipe: the same count, from the model's own module.
const fetchWithGptTokenizer = limitedFetch(limiter, { countTokens: chatTokens((text) => countTokens(text)) });

const prompts = Array.from({ length: 24 }, (_, i) => `Summarize item ${i}: ${"the quick brown fox ".repeat(20 + i)}`);
const responses = await Promise.all(
  prompts.map((content, i) =>
    (i % 2 === 0 ? fetch : fetchWithGptTokenizer)(`${server.url}/v1/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "mock", max_tokens: 200, messages: [{ role: "user", content }] }),
    }).then((response) => response.json()),
  ),
);

// The mock's own usage counts characters / 4; a real provider's is close to the tokenizer's estimate.
const { estimated, actual } = limiter.statistics().settled;
console.log(`${responses.length} calls, ${server.summary().status429} answered 429`);
console.log(`input tokens: estimated ${estimated["input-tokens"]}, actual ${actual["input-tokens"]}`);
console.log(`output tokens: reserved ${estimated["output-tokens"]}, produced ${actual["output-tokens"]}`);
if (server.summary().status429 !== 0) process.exitCode = 1;
