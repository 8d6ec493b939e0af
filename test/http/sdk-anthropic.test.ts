/**
 * The official Anthropic SDK (`@anthropic-ai/sdk`) with limitedFetch as its `fetch`, against the mock
 * provider's `/v1/messages` over loopback: the provider's own record is the judge.
 */
import Anthropic from "@anthropic-ai/sdk";
import { RateLimiter } from "sluice";
import { describe, expect, it } from "vitest";
import {
  expectSettledToServedUsage,
  MINUTE,
  mockProviders,
  PROVIDER,
  PROVIDER_LIMITS,
  sluiceFetch,
} from "../support/sdk-provider.js";

const start = mockProviders();

function client(baseURL: string, limiter: RateLimiter) {
  const fetch = sluiceFetch(limiter);
  const anthropic = new Anthropic({
    apiKey: "sk-ant-test",
    baseURL, // the mock's root: the SDK appends /v1/messages
    maxRetries: 0, // sluice retries, through the limiter
    fetch,
  });
  return { anthropic, fetch };
}

describe("the Anthropic SDK through limitedFetch", () => {
  it("30 calls at once never exceed the provider's limits, and the tokens settle to the usage it served", async () => {
    // A token limit that binds: the 30 estimates (input + max_tokens) add up to more than the bucket.
    const server = await start({ ...PROVIDER, tokensPerMinute: 1200 });
    const limiter = new RateLimiter({
      ...PROVIDER_LIMITS,
      limits: [{ limit: 1200, interval: MINUTE, unit: "tokens" }],
    });
    const { anthropic } = client(server.url, limiter);
    const messages = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        anthropic.messages.create({
          model: "mock",
          max_tokens: 40,
          messages: [{ role: "user", content: `question ${i}` }],
        }),
      ),
    );
    messages.forEach((message, i) => {
      const block = message.content[0];
      expect(block?.type === "text" && block.text.startsWith(`echo:question ${i}`)).toBe(true);
    });
    const summary = server.summary();
    expect(summary.outcomes).toEqual({ ok: 30 });
    expect(summary.status429).toBe(0);
    expect(summary.maxInFlight).toBeLessThanOrEqual(4);
    // The SDK's headers came through untouched: its key (this version sends it as a bearer token;
    // earlier ones as x-api-key) and the API version.
    const headers = server.requests[0]?.headers ?? {};
    expect(headers["x-api-key"] ?? headers["authorization"]).toMatch(/sk-ant-test$/);
    expect(headers["anthropic-version"]).toBeDefined();
    // What the SDK reports is what the provider served, and what the limiter settled at.
    const reported = messages.reduce((sum, m) => sum + m.usage.input_tokens + m.usage.output_tokens, 0);
    expect(reported).toBe(summary.tokensServed);
    await expectSettledToServedUsage(limiter, server, 30);
    // All 30 were asked for at once, and their estimates did not fit the bucket together: the limit bound.
    expect(limiter.statistics().settled.estimated["tokens"]).toBeGreaterThan(1200);
  });

  it("429s are retried by sluice through the limiter, not by the SDK", async () => {
    const refused = new Set([2, 5]);
    const server = await start({ ...PROVIDER, inject: ({ index }) => (refused.has(index) ? "rate-limit" : undefined) });
    const limiter = new RateLimiter(PROVIDER_LIMITS);
    const { anthropic, fetch } = client(server.url, limiter);
    const messages = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        anthropic.messages.create({ model: "mock", max_tokens: 20, messages: [{ role: "user", content: `q${i}` }] }),
      ),
    );
    expect(messages).toHaveLength(12);
    expect(server.summary().status429).toBe(2);
    expect(server.summary().outcomes.ok).toBe(12);
    // The SDK called fetch once per message; every resend was sluice's, and queued through the limiter.
    const statistics = fetch.statistics();
    expect(statistics).toMatchObject({ calls: 12, attempts: 14, retries: 2, rateLimited: 2 });
    expect(server.summary().total).toBe(14);
    await expectSettledToServedUsage(limiter, server, 12);
  });

  it("streamed messages hold their slot until their last event and settle from message_delta's usage", async () => {
    const server = await start({ ...PROVIDER, latency: { min: 40, max: 80 } });
    const limiter = new RateLimiter(PROVIDER_LIMITS);
    const { anthropic } = client(server.url, limiter);
    const finals = await Promise.all(
      Array.from({ length: 16 }, async (_, i) => {
        const prompt = { model: "mock", max_tokens: 30, messages: [{ role: "user" as const, content: `story ${i}` }] };
        if (i % 2 === 0) return anthropic.messages.stream(prompt).finalMessage();
        // The lower-level form: the raw events, read to the end.
        const events = await anthropic.messages.create({ ...prompt, stream: true });
        let input = 0;
        let output = 0;
        for await (const event of events) {
          if (event.type === "message_start") input = event.message.usage.input_tokens;
          if (event.type === "message_delta") output = event.usage.output_tokens;
        }
        return { usage: { input_tokens: input, output_tokens: output } };
      }),
    );
    const summary = server.summary();
    expect(summary.outcomes).toEqual({ ok: 16 });
    // Releasing at the headers would have let a fifth stream in while four were still sending.
    expect(summary.maxInFlight).toBeLessThanOrEqual(4);
    const reported = finals.reduce((sum, m) => sum + m.usage.input_tokens + m.usage.output_tokens, 0);
    expect(reported).toBe(summary.tokensServed);
    await expectSettledToServedUsage(limiter, server, 16);
  });

  it("a stream aborted early releases its slot with the estimate kept", async () => {
    const server = await start({ minute: MINUTE, latency: 300, completionTokens: 40 });
    const limiter = new RateLimiter({ ...PROVIDER_LIMITS, concurrency: 1 });
    const { anthropic } = client(server.url, limiter);
    const stream = anthropic.messages.stream({
      model: "mock",
      max_tokens: 50,
      messages: [{ role: "user", content: "a long story" }],
    });
    for await (const event of stream) {
      if (event.type === "content_block_delta") break;
    }
    await limiter.onIdle();
    expect(limiter.statistics().settled.calls).toBe(0);
    const next = await anthropic.messages.create({
      model: "mock",
      max_tokens: 5,
      messages: [{ role: "user", content: "hi" }],
    });
    expect(next.usage.output_tokens).toBe(5);
  });
});
