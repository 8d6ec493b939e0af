/**
 * What the SDK integration tests (test/http/sdk-*.test.ts) share: a rate-limited mock provider per test,
 * closed after it, and the check that the limiter's settled tokens are what the provider served.
 */
import type { RateLimiter } from "sluice";
import { type LimitedFetch, limitedFetch } from "sluice/http";
import { type MockServer, type MockServerOptions, startMockServer } from "sluice/testing";
import { afterEach, expect } from "vitest";

/** A compressed "minute", so a provider's per-minute limits refill within a test. */
export const MINUTE = 6000;

/** A provider with every limit the tests check: 600 RPM, 20,000 TPM, 4 at once. */
export const PROVIDER: MockServerOptions = {
  requestsPerMinute: 600,
  tokensPerMinute: 20_000,
  concurrency: 4,
  minute: MINUTE,
  latency: { min: 10, max: 30 },
  completionTokens: { min: 5, max: 20 },
  seed: 7,
};

/** A RateLimiter configured with {@link PROVIDER}'s limits. */
export const PROVIDER_LIMITS = {
  limits: [
    { limit: 600, interval: MINUTE },
    { limit: 20_000, interval: MINUTE, unit: "tokens" },
  ],
  concurrency: 4,
};

/** Starts mock providers that are closed after each test of the file that calls this. */
export function mockProviders(): (options?: MockServerOptions) => Promise<MockServer> {
  const servers: MockServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });
  return async (options = PROVIDER) => {
    const server = await startMockServer(options);
    servers.push(server);
    return server;
  };
}

/**
 * Once every call is over, the limiter charged exactly what the provider served: each of `calls` calls
 * settled, and their tokens add up to the mock's own count (input + output of every success).
 */
export async function expectSettledToServedUsage(limiter: RateLimiter, server: MockServer, calls: number) {
  await limiter.onIdle();
  const { settled } = limiter.statistics();
  expect(settled.calls).toBe(calls);
  expect(settled.actual["tokens"]).toBe(server.summary().tokensServed);
}

/** The fetch every SDK test hands its SDK: LLM calls retried through the limiter, six attempts in all. */
export function sluiceFetch(limiter: RateLimiter): LimitedFetch {
  return limitedFetch(limiter, { retry: { attempts: 6, nonIdempotent: true }, pauseJitter: 0.05 });
}
