/**
 * The Vercel AI SDK (`ai`, with `@ai-sdk/openai` and `@ai-sdk/anthropic`) under one set of limits:
 * `generateText` and `streamText` through both providers, never blocked.
 *
 * The provider is sluice's mock server, answering like OpenAI's `/v1/chat/completions` and Anthropic's
 * `/v1/messages`: 300 requests and 20,000 tokens per minute, 4 at once (time compressed: a "minute" lasts
 * 3 s). Both providers send through the same `limitedFetch`, so they share the limiter; the SDK's own
 * retries are off. Streamed answers are settled from their final usage as they are read.
 *
 * Run: npm run build && npx tsx examples/llm-vercel-ai-sdk.ts
 */
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts.
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, streamText } from "ai";
import { RateLimiter } from "sluice";
import { limitedFetch } from "sluice/http";
import { startMockServer } from "sluice/testing";

const MINUTE = 3_000; // one "minute" of the provider's limits, compressed

await using server = await startMockServer({
  requestsPerMinute: 300,
  tokensPerMinute: 20_000,
  concurrency: 4,
  minute: MINUTE,
  latency: { min: 20, max: 60 },
  completionTokens: { min: 10, max: 40 },
});

const limiter = new RateLimiter({
  limits: [
    { limit: 300, interval: MINUTE }, // requests per minute
    { limit: 20_000, interval: MINUTE, unit: "tokens" }, // tokens per minute
  ],
  concurrency: 4,
});
const fetch = limitedFetch(limiter, { retry: { attempts: 6, nonIdempotent: true } });

const openai = createOpenAI({ apiKey: "sk-mock", baseURL: `${server.url}/v1`, fetch });
const anthropic = createAnthropic({ apiKey: "sk-ant-mock", baseURL: `${server.url}/v1`, fetch });

const models = [openai.chat("gpt-4o-mini"), anthropic("claude-haiku-4-5")];
const jobs = Array.from({ length: 40 }, async (_, i) => {
  const model = models[i % 2] as (typeof models)[number];
  const prompt = `Name a colour, ${i}`;
  if (i % 4 < 2) {
    const { text } = await generateText({ model, prompt, maxOutputTokens: 64, maxRetries: 0 });
    return text;
  }
  const result = streamText({ model, prompt, maxOutputTokens: 64, maxRetries: 0 });
  let text = "";
  for await (const delta of result.textStream) text += delta;
  return text;
});
const texts = await Promise.all(jobs);

await limiter.onIdle();
const summary = server.summary();
const charged = limiter.statistics().settled.actual["tokens"];
console.log(`${texts.length} answers, ${texts.filter((text) => text.length > 0).length} non-empty`);
console.log(
  `server saw ${summary.total} requests, ${summary.status429} answered 429, at most ${summary.maxInFlight} at once`,
);
console.log(`tokens the provider counted: ${summary.tokensServed}; tokens the limiter charged: ${charged}`);
if (summary.status429 > 0 || summary.maxInFlight > 4 || charged !== summary.tokensServed) process.exit(1);
