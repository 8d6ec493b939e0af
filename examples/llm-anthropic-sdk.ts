/**
 * Claude through the official Anthropic SDK (`@anthropic-ai/sdk`), never blocked by the provider's limits,
 * streamed answers included.
 *
 * The provider is sluice's mock server answering like Anthropic's `/v1/messages`: 300 requests and 20,000
 * tokens per minute, 4 at once (time compressed: a "minute" lasts 3 s). The SDK's own retries are off;
 * `limitedFetch` paces the calls and retries through the limiter. Each streamed answer holds its slot until
 * its last event and is settled from the usage its `message_delta` reports, so the limiter ends up charged
 * exactly the tokens the provider counted.
 *
 * Run: npm run build && npx tsx examples/llm-anthropic-sdk.ts
 */
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts.
import Anthropic from "@anthropic-ai/sdk";
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

const anthropic = new Anthropic({
  apiKey: "sk-ant-mock",
  baseURL: server.url, // the real one is https://api.anthropic.com
  maxRetries: 0, // sluice retries, through the limiter
  fetch: limitedFetch(limiter, { retry: { attempts: 6, nonIdempotent: true } }),
});

// A plain call: settled from the usage in the response body.
async function summarise(document: string): Promise<string> {
  const message = await anthropic.messages.create({
    model: "claude-haiku-4-5",
    max_tokens: 64,
    messages: [{ role: "user", content: `Summarise in one line: ${document}` }],
  });
  return message.content[0]?.type === "text" ? message.content[0].text : "";
}

// A streamed call: its slot is held until the last event, its cost settled from the stream's final usage.
async function summariseStreamed(document: string): Promise<string> {
  const stream = anthropic.messages.stream({
    model: "claude-haiku-4-5",
    max_tokens: 64,
    messages: [{ role: "user", content: `Summarise in one line: ${document}` }],
  });
  let text = "";
  stream.on("text", (delta) => {
    text += delta;
  });
  await stream.finalMessage();
  return text;
}

const documents = Array.from({ length: 60 }, (_, i) => `Report ${i}: quarterly numbers, risks and next steps.`);
const summaries = await Promise.all(
  documents.map((document, i) => (i % 2 === 0 ? summarise(document) : summariseStreamed(document))),
);

await limiter.onIdle();
const summary = server.summary();
const charged = limiter.statistics().settled.actual["tokens"];
console.log(`${summaries.length} summaries, ${summaries.filter((s) => s.length > 0).length} non-empty`);
console.log(
  `server saw ${summary.total} requests, ${summary.status429} answered 429, at most ${summary.maxInFlight} at once`,
);
console.log(`tokens the provider counted: ${summary.tokensServed}; tokens the limiter charged: ${charged}`);
if (summary.status429 > 0 || summary.maxInFlight > 4 || charged !== summary.tokensServed) process.exit(1);
