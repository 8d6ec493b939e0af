/**
 * The headline scenario, end to end over loopback: a thousand LLM calls against a provider that enforces
 * 600 requests and 40,000 tokens per minute and 8 at once — with time compressed tenfold (a "minute"
 * lasts 6 s), so the run takes seconds. The server's own record is the judge of what happened.
 */
import OpenAI from "openai";
import { RateLimiter } from "sluice";
import { limitedFetch, QuotaExhaustedError } from "sluice/http";
import { type MockServer, type MockServerOptions, startMockServer } from "sluice/testing";
import { afterEach, describe, expect, it } from "vitest";

const MINUTE = 6000;
const PROVIDER: MockServerOptions = {
  requestsPerMinute: 600,
  tokensPerMinute: 40_000,
  concurrency: 8,
  minute: MINUTE,
  latency: { min: 10, max: 30 },
  completionTokens: { min: 5, max: 20 },
  seed: 11,
};
const REQUESTS = 1000;

const servers: MockServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function start(options: MockServerOptions): Promise<MockServer> {
  const server = await startMockServer(options);
  servers.push(server);
  return server;
}

function prompt(i: number): string {
  return `Item ${i}: is this answer correct? ${"The quick brown fox jumps over the lazy dog. ".repeat(2)}`;
}

/** Sends every item through `fetch` and returns the statuses the callers saw. */
async function runAll(fetch: typeof globalThis.fetch, server: MockServer): Promise<number[]> {
  return Promise.all(
    Array.from({ length: REQUESTS }, async (_, i) => {
      const response = await fetch(`${server.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "mock", max_tokens: 20, messages: [{ role: "user", content: prompt(i) }] }),
      });
      await response.json();
      return response.status;
    }),
  );
}

/** Each item's prompt among the server's successful requests: every item exactly once, nothing else. */
function expectEachItemServedOnce(server: MockServer): void {
  const served = server.requests
    .filter((record) => record.outcome === "ok")
    .map((record) => (record.body as { messages: { content: string }[] }).messages[0]?.content);
  expect(served).toHaveLength(REQUESTS);
  expect(new Set(served).size).toBe(REQUESTS);
  for (let i = 0; i < REQUESTS; i++) expect(served).toContain(prompt(i));
}

describe("a thousand LLM calls against a rate-limited provider", () => {
  it("with the provider's limits configured: zero 429s, every item served once", async () => {
    const server = await start(PROVIDER);
    const limiter = new RateLimiter({
      limits: [
        { limit: 600, interval: MINUTE },
        { limit: 40_000, interval: MINUTE, unit: "tokens" },
      ],
      concurrency: 8,
    });
    const fetch = limitedFetch(limiter, { retry: { nonIdempotent: true } });
    const statuses = await runAll(fetch, server);
    expect(statuses.every((status) => status === 200)).toBe(true);
    expect(server.summary().status429).toBe(0);
    expect(server.summary().maxInFlight).toBeLessThanOrEqual(8);
    expect(fetch.statistics().retries).toBe(0);
    expectEachItemServedOnce(server);
  });

  it("with the limits unknown: learns them from headers and 429s, loses and duplicates nothing, < 2% 429s", async () => {
    const server = await start(PROVIDER);
    // Only the concurrency is ours to choose; the rate limits are the server's secret until it answers.
    const limiter = new RateLimiter({ concurrency: 8 });
    const fetch = limitedFetch(limiter, { retry: { attempts: 10, nonIdempotent: true } });
    const statuses = await runAll(fetch, server);
    expect(statuses.every((status) => status === 200)).toBe(true);
    expect(server.summary().status429).toBeLessThan(REQUESTS * 0.02);
    expectEachItemServedOnce(server);
    const learned = Object.fromEntries(limiter.limits.map((limit) => [limit.unit, limit.limit]));
    expect(learned).toEqual({ requests: 600, tokens: 40_000 });
  });

  it("a quota running out stops the run with QuotaExhaustedError instead of retrying forever", async () => {
    const server = await start({ ...PROVIDER, quota: { tokens: 10_000 } });
    const limiter = new RateLimiter({ concurrency: 8 });
    const fetch = limitedFetch(limiter, { retry: { attempts: 10, nonIdempotent: true } });
    const outcome = await runAll(fetch, server).then(
      () => "finished",
      (reason: unknown) => reason,
    );
    expect(outcome).toBeInstanceOf(QuotaExhaustedError);
    // The queue stopped: what reached the server after the quota ran out is at most what was in flight.
    const afterQuota = server.requests.filter((record) => record.outcome === "quota");
    expect(afterQuota.length).toBeGreaterThan(0);
    expect(afterQuota.length).toBeLessThanOrEqual(8);
    expect(server.summary().total).toBeLessThan(REQUESTS / 2);
    expect(limiter.waiting).toBe(0);
  });

  it("works as the fetch of the official openai SDK (its own retries off)", async () => {
    const server = await start({
      ...PROVIDER,
      // A 429 and a 503 on the way (each asking for a 1 s pause), which the SDK must never see.
      inject: ({ index }) => (index === 5 ? "rate-limit" : index === 40 ? "overloaded" : undefined),
    });
    const limiter = new RateLimiter({
      limits: [
        { limit: 600, interval: MINUTE },
        { limit: 40_000, interval: MINUTE, unit: "tokens" },
      ],
      concurrency: 8,
    });
    const client = new OpenAI({
      apiKey: "test-key",
      baseURL: `${server.url}/v1`,
      maxRetries: 0,
      fetch: limitedFetch(limiter, { retry: { attempts: 6, nonIdempotent: true }, pauseJitter: 0.05 }),
    });
    const answers = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const completion = await client.chat.completions.create({
          model: "mock",
          max_tokens: 12,
          messages: [{ role: "user", content: `question ${i}` }],
        });
        return completion.choices[0]?.message.content ?? "";
      }),
    );
    answers.forEach((answer, i) => {
      expect(answer.startsWith(`echo:question ${i}`)).toBe(true);
    });
    const served = server.requests.filter((record) => record.outcome === "ok");
    expect(served).toHaveLength(100);
    expect(server.summary().outcomes["rate-limited"]).toBeGreaterThan(0);
    expect(server.summary().outcomes.overloaded).toBeGreaterThan(0);
    // The SDK's own headers came through the wrapper untouched.
    expect(served[0]?.headers["authorization"]).toBe("Bearer test-key");
  });

  it("paces streamed completions too: each holds its slot until its last chunk and settles from its usage", async () => {
    const server = await start({ ...PROVIDER, latency: { min: 40, max: 80 } });
    const limiter = new RateLimiter({
      limits: [{ limit: 40_000, interval: MINUTE, unit: "tokens" }],
      concurrency: 8,
    });
    const client = new OpenAI({
      apiKey: "test-key",
      baseURL: `${server.url}/v1`,
      maxRetries: 0,
      fetch: limitedFetch(limiter, { retry: { nonIdempotent: true } }),
    });
    const texts = await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const stream = await client.chat.completions.create({
          model: "mock",
          max_tokens: 30,
          stream: true,
          stream_options: { include_usage: true },
          messages: [{ role: "user", content: `story ${i}` }],
        });
        let text = "";
        for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
        return text;
      }),
    );
    texts.forEach((text, i) => {
      expect(text.startsWith(`echo:story ${i}`)).toBe(true);
    });
    // Releasing at the headers would let a ninth stream start while eight are still sending.
    expect(server.summary().outcomes).toEqual({ ok: 40 });
    await new Promise((resolve) => setTimeout(resolve, 20));
    const settled = limiter.statistics().settled;
    expect(settled.calls).toBe(40);
    expect(settled.actual["tokens"]).toBe(server.summary().tokensServed);
  });

  it("surfaces a quota error to the openai SDK as the cause of its connection error", async () => {
    const server = await start({ quota: { requests: 0 } });
    const client = new OpenAI({
      apiKey: "test-key",
      baseURL: `${server.url}/v1`,
      maxRetries: 0,
      fetch: limitedFetch(new RateLimiter({}), { retry: { nonIdempotent: true } }),
    });
    const error = await client.chat.completions
      .create({ model: "mock", messages: [{ role: "user", content: "hi" }] })
      .catch((reason: unknown) => reason);
    expect(error).toBeInstanceOf(OpenAI.APIConnectionError);
    expect((error as Error).cause).toBeInstanceOf(QuotaExhaustedError);
  });
});
