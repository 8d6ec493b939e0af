/**
 * Header parsing against captured header sets from each provider format (see fixtures/headers.ts).
 */
import { parseRateLimitHeaders, parseRetryAfter, RateLimiter } from "sluice";
import { FakeClock } from "sluice/testing";
import { describe, expect, it } from "vitest";
import * as fixtures from "./fixtures/headers.js";

const at = (headers: { date: string }) => Date.parse(headers.date);

describe("parseRateLimitHeaders", () => {
  it("reads OpenAI's x-ratelimit-* with Go-style durations", () => {
    const now = at(fixtures.openAiSuccess);
    expect(parseRateLimitHeaders(fixtures.openAiSuccess, now)).toEqual({
      units: {
        requests: { limit: 60, remaining: 59, resetAt: now + 1_000 },
        tokens: { limit: 150_000, remaining: 149_984, resetAt: now + 360_000 },
      },
    });
    const busy = at(fixtures.openAiBusy);
    const found = parseRateLimitHeaders(fixtures.openAiBusy, busy);
    expect(found.units.requests?.resetAt).toBeCloseTo(busy + 8_640, 6);
    expect(found.units.tokens).toEqual({ limit: 2_000_000, remaining: 1_999_153, resetAt: busy + 547 });
  });

  it("reads an OpenAI 429: retry-after-ms wins over retry-after, and 2m52.8s is 172.8 s", () => {
    const now = at(fixtures.openAiTooManyRequests);
    const found = parseRateLimitHeaders(fixtures.openAiTooManyRequests, now);
    expect(found.retryAfterMs).toBe(2_520);
    expect(found.units.tokens).toEqual({ limit: 30_000, remaining: 0, resetAt: now + 172_800 });
    expect(found.units.requests?.resetAt).toBe(now + 120);
  });

  it("reads Anthropic's anthropic-ratelimit-* with RFC 3339 resets, per unit", () => {
    const now = at(fixtures.anthropicSuccess);
    expect(parseRateLimitHeaders(fixtures.anthropicSuccess, now)).toEqual({
      units: {
        requests: { limit: 50, remaining: 49, resetAt: now + 1_000 },
        tokens: { limit: 50_000, remaining: 48_000, resetAt: now + 3_000 },
        "input-tokens": { limit: 40_000, remaining: 39_000, resetAt: now + 2_000 },
        "output-tokens": { limit: 10_000, remaining: 9_000, resetAt: now + 6_500 },
      },
    });
    const limited = parseRateLimitHeaders(fixtures.anthropicTooManyRequests, at(fixtures.anthropicTooManyRequests));
    expect(limited.retryAfterMs).toBe(17_000);
    expect(limited.units.requests).toEqual({ limit: 50, remaining: 0, resetAt: Date.parse("2025-06-03T12:00:27Z") });
  });

  it("reads IETF RateLimit structured fields, units from the policy's qu, the tightest policy per unit", () => {
    const now = at(fixtures.ietfStructured);
    expect(parseRateLimitHeaders(fixtures.ietfStructured, now)).toEqual({
      units: {
        requests: { limit: 1_000, remaining: 12, resetAt: now + 3_600_000, window: 86_400_000 },
        "content-bytes": { limit: 1_000_000, remaining: 5_000, resetAt: now + 20_000, window: 60_000 },
      },
    });
  });

  it("reads the IETF draft 07 dictionary and the older separate fields", () => {
    const now = at(fixtures.ietfDictionary);
    expect(parseRateLimitHeaders(fixtures.ietfDictionary, now).units).toEqual({
      requests: { limit: 100, remaining: 50, resetAt: now + 50_000, window: 60_000 },
    });
    expect(parseRateLimitHeaders(fixtures.ietfSeparate, now).units).toEqual({
      requests: { limit: 10, remaining: 9, resetAt: now + 1_000, window: 1_000 },
    });
  });

  it("reads unsuffixed x-ratelimit-* (GitHub) with an epoch-seconds reset", () => {
    const now = at(fixtures.gitHub);
    expect(parseRateLimitHeaders(fixtures.gitHub, now).units).toEqual({
      requests: { limit: 5_000, remaining: 4_987, resetAt: 1_748_952_000_000 },
    });
  });

  it("takes fetch Headers and Node header records alike, case-insensitively", () => {
    const now = at(fixtures.openAiSuccess);
    const fromRecord = parseRateLimitHeaders(fixtures.openAiSuccess, now);
    const upper = Object.fromEntries(Object.entries(fixtures.openAiSuccess).map(([k, v]) => [k.toUpperCase(), v]));
    expect(parseRateLimitHeaders(new Headers(fixtures.openAiSuccess), now)).toEqual(fromRecord);
    expect(parseRateLimitHeaders(upper, now)).toEqual(fromRecord);
    const node = parseRateLimitHeaders(fixtures.serviceUnavailableNode, Date.parse("Tue, 03 Jun 2025 12:00:00 GMT"));
    expect(node).toEqual({ units: {}, retryAfterMs: 120_000 });
  });

  it("ignores malformed values instead of inventing numbers", () => {
    const found = parseRateLimitHeaders(
      {
        "x-ratelimit-remaining-requests": "lots",
        "x-ratelimit-reset-requests": "whenever",
        "x-ratelimit-limit-tokens": "-5",
        RateLimit: "garbage;;,",
        "retry-after": "soon",
      },
      0,
    );
    expect(found).toEqual({ units: {} });
  });
});

describe("parseRetryAfter", () => {
  const now = Date.parse("Tue, 03 Jun 2025 12:00:00 GMT");
  it("reads delta seconds and HTTP dates, never negative", () => {
    expect(parseRetryAfter("120", now)).toBe(120_000);
    expect(parseRetryAfter(" 1.5 ", now)).toBe(1_500);
    expect(parseRetryAfter("Tue, 03 Jun 2025 12:00:30 GMT", now)).toBe(30_000);
    expect(parseRetryAfter("Tuesday, 03-Jun-25 12:00:30 GMT", now)).toBe(30_000);
    expect(parseRetryAfter("Tue, 03 Jun 2025 11:00:00 GMT", now)).toBe(0);
  });
  it("returns undefined for anything else", () => {
    for (const value of ["", "-5", "1e3", "soon", "NaN"]) expect(parseRetryAfter(value, now)).toBeUndefined();
  });
});

describe("RateLimiter.observe with captured headers", () => {
  it("an OpenAI 429 pauses everyone for retry-after-ms and empties the tokens bucket", () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({
      limits: [
        { limit: 500, interval: "1m" },
        { limit: 30_000, interval: "1m", unit: "tokens" },
      ],
      clock,
    });
    limiter.observe(fixtures.openAiTooManyRequests);
    expect(limiter.pausedUntil).toBe(2_520);
    expect(limiter.statistics().pauseReason).toBe("Retry-After");
    // The pause empties the buckets as of its end (gradual resume); the server's 0 tokens agrees.
    expect(limiter.statistics().remaining.tokens).toBeLessThanOrEqual(0);
  });

  it("Anthropic units map to limits of the same name", () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({
      limits: [
        { limit: 40_000, interval: "1m", unit: "input-tokens" },
        { limit: 10_000, interval: "1m", unit: "output-tokens" },
      ],
      clock,
    });
    limiter.observe(fixtures.anthropicSuccess);
    expect(limiter.statistics().remaining).toEqual({ "input-tokens": 39_000, "output-tokens": 9_000 });
  });
});
