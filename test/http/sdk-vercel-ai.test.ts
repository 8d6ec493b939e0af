/**
 * The Vercel AI SDK (`ai` with `@ai-sdk/openai` and `@ai-sdk/anthropic`) with limitedFetch as its
 * providers' `fetch`, against the mock provider over loopback: `generateText` and `streamText`, through
 * the OpenAI chat API and Anthropic's messages API. The provider's own record is the judge.
 */
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, type LanguageModel, streamText } from "ai";
import { RateLimiter } from "sluice";
import type { LimitedFetch } from "sluice/http";
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

/**
 * A model of each API, all sending through the same limitedFetch: OpenAI's Responses API (what
 * `openai(id)` speaks) and Chat Completions (`openai.chat(id)`), and Anthropic's Messages API.
 */
function models(url: string, fetch: LimitedFetch): [string, LanguageModel][] {
  const openai = createOpenAI({ apiKey: "sk-test", baseURL: `${url}/v1`, fetch });
  const anthropic = createAnthropic({ apiKey: "sk-ant-test", baseURL: `${url}/v1`, fetch });
  return [
    ["responses", openai("mock")],
    ["chat", openai.chat("mock")],
    ["anthropic", anthropic("mock")],
  ];
}

describe("the Vercel AI SDK through limitedFetch", () => {
  it("generateText: 20 calls at once per API never exceed the limits; tokens settle to the usage served", async () => {
    const server = await start({ ...PROVIDER, tokensPerMinute: 2000 });
    const limiter = new RateLimiter({
      ...PROVIDER_LIMITS,
      limits: [{ limit: 2000, interval: MINUTE, unit: "tokens" }],
    });
    const fetch = sluiceFetch(limiter);
    const results = await Promise.all(
      models(server.url, fetch).flatMap(([name, model]) =>
        Array.from({ length: 20 }, async (_, i) => {
          const result = await generateText({ model, prompt: `${name} ${i}`, maxOutputTokens: 40, maxRetries: 0 });
          expect(result.text.startsWith(`echo:${name} ${i}`)).toBe(true);
          return result.usage.totalTokens ?? 0;
        }),
      ),
    );
    const summary = server.summary();
    expect(summary.outcomes).toEqual({ ok: 60 });
    expect(summary.status429).toBe(0);
    expect(summary.maxInFlight).toBeLessThanOrEqual(4);
    for (const path of ["/v1/responses", "/v1/chat/completions", "/v1/messages"]) {
      expect(server.requests.filter((record) => record.path === path)).toHaveLength(20);
    }
    expect(server.requests.find((record) => record.path === "/v1/messages")?.headers["x-api-key"]).toBe("sk-ant-test");
    expect(results.reduce((sum, tokens) => sum + tokens, 0)).toBe(summary.tokensServed);
    await expectSettledToServedUsage(limiter, server, 60);
    expect(limiter.statistics().settled.estimated["tokens"]).toBeGreaterThan(2000);
  });

  it("streamText: each stream holds its slot until its last event and settles from its final usage", async () => {
    const server = await start({ ...PROVIDER, latency: { min: 40, max: 80 } });
    const limiter = new RateLimiter(PROVIDER_LIMITS);
    const fetch = sluiceFetch(limiter);
    const usages = await Promise.all(
      models(server.url, fetch).flatMap(([name, model]) =>
        Array.from({ length: 8 }, async (_, i) => {
          const result = streamText({ model, prompt: `${name} story ${i}`, maxOutputTokens: 30, maxRetries: 0 });
          let text = "";
          for await (const delta of result.textStream) text += delta;
          expect(text.startsWith(`echo:${name} story ${i}`)).toBe(true);
          return (await result.usage).totalTokens ?? 0;
        }),
      ),
    );
    const summary = server.summary();
    expect(summary.outcomes).toEqual({ ok: 24 });
    expect(summary.maxInFlight).toBeLessThanOrEqual(4);
    // The openai provider asked for the usage chunk itself (stream_options.include_usage).
    const chat = server.requests.find((record) => record.path === "/v1/chat/completions");
    expect(chat?.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
    expect(usages.reduce((sum, tokens) => sum + tokens, 0)).toBe(summary.tokensServed);
    await expectSettledToServedUsage(limiter, server, 24);
  });

  it("429s are retried by sluice through the limiter, not by the SDK (maxRetries: 0)", async () => {
    const refused = new Set([1, 4, 6]);
    const server = await start({ ...PROVIDER, inject: ({ index }) => (refused.has(index) ? "rate-limit" : undefined) });
    const limiter = new RateLimiter(PROVIDER_LIMITS);
    const fetch = sluiceFetch(limiter);
    const texts = await Promise.all(
      models(server.url, fetch).flatMap(([name, model]) =>
        Array.from({ length: 5 }, async (_, i) => {
          if (i % 2 === 0)
            return (await generateText({ model, prompt: `${name} ${i}`, maxOutputTokens: 20, maxRetries: 0 })).text;
          const result = streamText({ model, prompt: `${name} ${i}`, maxOutputTokens: 20, maxRetries: 0 });
          return await result.text;
        }),
      ),
    );
    expect(texts.every((text) => text.startsWith("echo:"))).toBe(true);
    expect(server.summary().status429).toBe(3);
    expect(server.summary().outcomes.ok).toBe(15);
    expect(fetch.statistics()).toMatchObject({ calls: 15, attempts: 18, retries: 3, rateLimited: 3 });
    await expectSettledToServedUsage(limiter, server, 15);
  });
});
