/**
 * LLM-as-a-judge in bulk through the official `openai` SDK, never blocked by the provider's limits.
 *
 * The provider is sluice's mock server: it enforces 600 requests and 40,000 tokens per minute and 8
 * requests at once, like a real OpenAI account, and answers 429 when they are exceeded. Time is
 * compressed (one "minute" of its limits lasts 3 s) so 400 judgments take a few seconds. The SDK's own
 * retries are off: `limitedFetch` paces the calls, learns from the rate-limit headers and retries through
 * the limiter.
 *
 * Run: npm run build && npx tsx examples/llm-judge.ts
 */
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts.
import OpenAI from "openai";
import { RateLimiter } from "sluice";
import { limitedFetch } from "sluice/http";
import { startMockServer } from "sluice/testing";

const MINUTE = 3_000; // one "minute" of the provider's limits, compressed

// The judge's verdict: the mock provider grades an answer PASS when it contains the expected word.
function grade(body: unknown): string {
  const prompt = (body as { messages: { content: string }[] }).messages.at(-1)?.content ?? "";
  const expected = /Expected: (\w+)/.exec(prompt)?.[1] ?? "";
  const answer = /Answer: (.*)/.exec(prompt)?.[1] ?? "";
  return answer.includes(expected) ? "PASS" : "FAIL";
}

await using server = await startMockServer({
  requestsPerMinute: 600,
  tokensPerMinute: 40_000,
  concurrency: 8,
  minute: MINUTE,
  latency: { min: 20, max: 60 },
  reply: ({ body }) => grade(body),
});

// The account's published limits, configured on the client: 600 RPM, 40k TPM, 8 in flight.
const limiter = new RateLimiter({
  limits: [
    { limit: 600, interval: MINUTE }, // requests per minute
    { limit: 40_000, interval: MINUTE, unit: "tokens" }, // tokens per minute
  ],
  concurrency: 8,
});

const openai = new OpenAI({
  apiKey: "sk-mock",
  baseURL: `${server.url}/v1`,
  maxRetries: 0, // sluice retries, through the limiter
  fetch: limitedFetch(limiter, { retry: { attempts: 6, nonIdempotent: true } }),
});

async function judge(question: string, expected: string, answer: string): Promise<boolean> {
  const completion = await openai.chat.completions.create({
    model: "gpt-4o-mini",
    max_tokens: 5,
    messages: [
      { role: "system", content: "You grade answers. Reply PASS or FAIL." },
      { role: "user", content: `Question: ${question}\nExpected: ${expected}\nAnswer: ${answer}` },
    ],
  });
  return completion.choices[0]?.message.content === "PASS";
}

// 400 answers to grade; every third one is wrong.
const cases = Array.from({ length: 400 }, (_, i) => ({
  question: `What is ${i} + ${i}?`,
  expected: String(2 * i),
  answer: i % 3 === 0 ? `It is ${2 * i + 1}.` : `It is ${2 * i}.`,
}));

const started = performance.now();
const verdicts = await Promise.all(cases.map((item) => judge(item.question, item.expected, item.answer)));
const seconds = (performance.now() - started) / 1000;

const passed = verdicts.filter(Boolean).length;
const summary = server.summary();
console.log(
  `graded ${verdicts.length} answers in ${seconds.toFixed(1)} s: ${passed} PASS, ${verdicts.length - passed} FAIL`,
);
console.log(
  `server saw ${summary.total} requests, ${summary.status429} answered 429, at most ${summary.maxInFlight} at once`,
);
if (passed !== cases.filter((_, i) => i % 3 !== 0).length) process.exit(1);
