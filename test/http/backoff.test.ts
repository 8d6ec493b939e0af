/**
 * The timing rules of limitedFetch, exactly, on a fake clock with a scripted fetch (no network): when
 * each attempt goes out, how long the limiter pauses, and which header decides it.
 */
import { RateLimiter, Semaphore } from "sluice";
import { type FetchFunction, limitedFetch } from "sluice/http";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";

interface Scripted {
  status: number;
  headers?: Record<string, string>;
  body?: unknown;
}

/** A fetch that answers from a script and notes the clock time of each call. */
function scriptedFetch(clock: FakeClock, script: Scripted[]) {
  const calls: number[] = [];
  const fetch: FetchFunction = async () => {
    calls.push(clock.now());
    const next = script[Math.min(calls.length - 1, script.length - 1)] as Scripted;
    return new Response(JSON.stringify(next.body ?? {}), {
      status: next.status,
      headers: { "content-type": "application/json", ...next.headers },
    });
  };
  return { fetch, calls };
}

/** Runs timers until `promise` settles. */
async function drive<T>(clock: FakeClock, promise: Promise<T>): Promise<T> {
  let settled = false;
  const watched = promise.finally(() => {
    settled = true;
  });
  for (let i = 0; i < 1000 && !settled; i++) {
    await flushMicrotasks();
    if (!settled && clock.pendingTimers > 0) await clock.next();
  }
  return watched;
}

describe("limitedFetch backoff", () => {
  it("waits random × min(maxDelay, baseDelay × 2^(n-1)) before the n-th retry (full jitter)", async () => {
    const clock = new FakeClock();
    const { fetch, calls } = scriptedFetch(clock, [
      { status: 500 },
      { status: 502 },
      { status: 504 },
      { status: 500 },
      { status: 200 },
    ]);
    const limited = limitedFetch(new Semaphore(1), {
      fetch,
      clock,
      random: () => 0.5,
      retry: { baseDelay: 100, maxDelay: 300, attempts: 5 },
    });
    const response = await drive(clock, limited("http://api.test/items"));
    expect(response.status).toBe(200);
    // Delays 0.5 × 100, 0.5 × 200, 0.5 × 300 (capped), 0.5 × 300.
    expect(calls).toEqual([0, 50, 150, 300, 450]);
  });

  it("never waits longer than the cap, whatever the random draw", async () => {
    const clock = new FakeClock();
    const { fetch, calls } = scriptedFetch(clock, [{ status: 503 }, { status: 503 }, { status: 503 }, { status: 200 }]);
    const limited = limitedFetch(new Semaphore(1), {
      fetch,
      clock,
      random: () => 0.999_999,
      pauseOn: [],
      retry: { baseDelay: 1000, maxDelay: 1500 },
    });
    await drive(clock, limited("http://api.test/items"));
    const gaps = calls.slice(1).map((at, i) => at - (calls[i] as number));
    expect(gaps.every((gap) => gap < 1500)).toBe(true);
  });
});

describe("limitedFetch pauses", () => {
  it("pauses the RateLimiter for retry-after-ms plus up to pauseJitter of it", async () => {
    const clock = new FakeClock();
    const { fetch, calls } = scriptedFetch(clock, [
      { status: 429, headers: { "retry-after-ms": "1000" } },
      { status: 200 },
    ]);
    const limiter = new RateLimiter({ clock });
    const limited = limitedFetch(limiter, { fetch, clock, random: () => 0.5, pauseJitter: 0.2 });
    const response = drive(clock, limited("http://api.test/items"));
    await flushMicrotasks();
    expect(limiter.pausedUntil).toBe(1100);
    expect((await response).status).toBe(200);
    expect(calls).toEqual([0, 1100]);
  });

  it("reads Retry-After in seconds when there is no retry-after-ms", async () => {
    const clock = new FakeClock();
    const { fetch, calls } = scriptedFetch(clock, [{ status: 503, headers: { "retry-after": "2" } }, { status: 200 }]);
    const limited = limitedFetch(new RateLimiter({ clock }), { fetch, clock, random: () => 0, pauseJitter: 0.5 });
    await drive(clock, limited("http://api.test/items"));
    expect(calls).toEqual([0, 2000]);
  });

  it("falls back to the reset of the exhausted budget when the server sends no Retry-After", async () => {
    const clock = new FakeClock();
    const { fetch, calls } = scriptedFetch(clock, [
      {
        status: 429,
        headers: {
          "x-ratelimit-remaining-requests": "0",
          "x-ratelimit-reset-requests": "1.5s",
          "x-ratelimit-remaining-tokens": "900",
          "x-ratelimit-reset-tokens": "20s",
        },
      },
      { status: 200 },
    ]);
    const limited = limitedFetch(new RateLimiter({ clock }), { fetch, clock, random: () => 0, learnLimits: false });
    await drive(clock, limited("http://api.test/items"));
    // The requests budget is the one exhausted; the tokens one still has room, so its reset does not count.
    expect(calls).toEqual([0, 1500]);
  });

  it("falls back to the backoff when the server says nothing about when", async () => {
    const clock = new FakeClock();
    const { fetch, calls } = scriptedFetch(clock, [{ status: 529 }, { status: 529 }, { status: 200 }]);
    const limited = limitedFetch(new RateLimiter({ clock }), {
      fetch,
      clock,
      random: () => 0,
      retry: { baseDelay: 400 },
    });
    await drive(clock, limited("http://api.test/items"));
    expect(calls).toEqual([0, 400, 1200]);
  });

  it("never shortens a pause: a later, shorter retry-after leaves the longer one in force", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ clock });
    const { fetch } = scriptedFetch(clock, [
      { status: 429, headers: { "retry-after-ms": "3000" } },
      { status: 429, headers: { "retry-after-ms": "100" } },
      { status: 200 },
    ]);
    const limited = limitedFetch(limiter, { fetch, clock, random: () => 0 });
    const first = limited("http://api.test/a");
    const second = limited("http://api.test/b");
    await flushMicrotasks();
    expect(limiter.pausedUntil).toBe(3000);
    await drive(clock, Promise.all([first, second]));
    expect(clock.now()).toBeGreaterThanOrEqual(3000);
  });

  it("pauses every caller of this fetch when the limiter cannot pause", async () => {
    const clock = new FakeClock();
    const { fetch, calls } = scriptedFetch(clock, [
      { status: 429, headers: { "retry-after-ms": "500" } },
      { status: 200 },
    ]);
    const limited = limitedFetch(new Semaphore(5), { fetch, clock, random: () => 0, pauseJitter: 0 });
    await drive(clock, limited("http://api.test/first"));
    expect(calls).toEqual([0, 500]);
    // A new call right after is not held back: the pause is over.
    await drive(clock, limited("http://api.test/second"));
    expect(calls).toEqual([0, 500, 500]);
  });
});

describe("limitedFetch with a Request object", () => {
  it("estimates from the Request's body and re-sends it on a retry", async () => {
    const clock = new FakeClock();
    const bodies: string[] = [];
    const statuses = [500, 200];
    const fetch: FetchFunction = async (input) => {
      bodies.push(await (input as Request).text());
      return new Response("{}", { status: statuses[bodies.length - 1] ?? 200 });
    };
    const limiter = new RateLimiter({ clock, limits: [{ limit: 1000, interval: 1000, unit: "tokens" }] });
    const limited = limitedFetch(limiter, { fetch, clock, random: () => 0, retry: { nonIdempotent: true } });
    const body = JSON.stringify({ max_tokens: 50, messages: [{ role: "user", content: "hello" }] });
    const request = new Request("http://api.test/v1/chat/completions", { method: "POST", body });
    const response = await drive(clock, limited(request));
    expect(response.status).toBe(200);
    expect(bodies).toEqual([body, body]);
    // Two attempts, each charged characters / 4 + max_tokens.
    expect(1000 - (limiter.statistics().remaining["tokens"] ?? 0)).toBe(2 * (Math.ceil(body.length / 4) + 50));
  });
});
