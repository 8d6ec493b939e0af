/**
 * limitedFetch against the mock provider over real loopback HTTP: each test checks, from the server's
 * own record, what actually reached the server.
 */
import { RateLimiter, Semaphore, TimeoutError } from "sluice";
import {
  type FetchFunction,
  type LimitedFetchOptions,
  limitedFetch,
  NonRetryableError,
  QuotaExhaustedError,
  RequestTooLargeError,
  type RetryEvent,
} from "sluice/http";
import { type MockServer, type MockServerOptions, startMockServer } from "sluice/testing";
import { afterEach, describe, expect, it } from "vitest";

const servers: MockServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function start(options: MockServerOptions = {}): Promise<MockServer> {
  const server = await startMockServer(options);
  servers.push(server);
  return server;
}

/** A deterministic stand-in for Math.random, so jitter is the same on every run. */
function seeded(seed = 1): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
    return state / 2_147_483_648;
  };
}

function chat(fetch: FetchFunction, server: MockServer, content: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${server.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "mock", max_tokens: 10, messages: [{ role: "user", content }] }),
    ...init,
  });
}

function fast(options: LimitedFetchOptions = {}): LimitedFetchOptions {
  return { random: seeded(), ...options, retry: { baseDelay: 5, maxDelay: 50, ...(options.retry || {}) } };
}

/** A fetch that notes when each attempt was sent and when each response came back (client side). */
function recordTraffic() {
  const sent: number[] = [];
  const received: { status: number; at: number }[] = [];
  const fetch: FetchFunction = async (input, init) => {
    sent.push(performance.now());
    const response = await globalThis.fetch(input, init);
    received.push({ status: response.status, at: performance.now() });
    return response;
  };
  return { fetch, sent, received };
}

function contentOf(body: unknown): string | undefined {
  return (body as { messages?: { content: string }[] }).messages?.[0]?.content;
}

describe("limitedFetch: pacing from the limiter", () => {
  it("charges the estimate, settles it from the response's usage, and leaves the caller's body unread", async () => {
    const server = await start({ completionTokens: 3 });
    const limiter = new RateLimiter({ limits: [{ limit: 10_000, interval: "1m", unit: "tokens" }] });
    const fetch = limitedFetch(limiter);
    const response = await chat(fetch, server, "hello");
    const json = (await response.json()) as { usage: { total_tokens: number } };
    const record = server.requests[0];
    expect(json.usage.total_tokens).toBe((record?.inputTokens ?? 0) + 3);
    // The settle happens once the clone has been read: give it a turn.
    await new Promise((resolve) => setTimeout(resolve, 10));
    const stats = limiter.statistics();
    expect(stats.settled.calls).toBe(1);
    expect(stats.settled.estimated["tokens"]).toBe((record?.inputTokens ?? 0) + 10);
    expect(stats.settled.actual["tokens"]).toBe(json.usage.total_tokens);
    expect(limiter.inUse).toBe(0);
  });

  it("holds each permit until the response is in: never more in flight than the limiter's concurrency", async () => {
    const server = await start({ latency: { min: 5, max: 25 } });
    const fetch = limitedFetch(new Semaphore(3));
    const responses = await Promise.all(Array.from({ length: 30 }, (_, i) => chat(fetch, server, `item ${i}`)));
    expect(responses.every((response) => response.status === 200)).toBe(true);
    expect(server.summary().maxInFlight).toBe(3);
  });

  it("feeds every response's headers to limiter.observe, tightening a limit set too high", async () => {
    const server = await start({ requestsPerMinute: 5 });
    const limiter = new RateLimiter({ limits: [{ limit: 100, interval: "1m" }] });
    const fetch = limitedFetch(limiter, fast({ learnLimits: false }));
    await (await chat(fetch, server, "one")).arrayBuffer();
    // The server said 4 requests are left; the limiter, configured for 100, now believes it.
    // (A hair above 4 by the time we look: the bucket refills continuously.)
    expect(limiter.statistics().remaining["requests"]).toBeLessThan(4.1);
    expect(limiter.statistics().remaining["requests"]).toBeGreaterThan(3.9);
  });

  it("learns a limit it was not given from the headers, with the server's interval", async () => {
    const server = await start({ requestsPerMinute: 100, tokensPerMinute: 20_000, minute: "2s" });
    const limiter = new RateLimiter({});
    const fetch = limitedFetch(limiter);
    for (let i = 0; i < 20; i++) await (await chat(fetch, server, `item ${i}`)).arrayBuffer();
    const limits = Object.fromEntries(limiter.limits.map((limit) => [limit.unit, limit]));
    expect(limits["requests"]?.limit).toBe(100);
    expect(limits["tokens"]?.limit).toBe(20_000);
    // Never faster than the server (interval >= 2 s), and close to it once enough of the bucket was used.
    expect(Number(limits["requests"]?.interval)).toBeGreaterThanOrEqual(2000);
    expect(Number(limits["requests"]?.interval)).toBeLessThan(2400);
    expect(Number(limits["tokens"]?.interval)).toBeGreaterThanOrEqual(2000);
    expect(Number(limits["tokens"]?.interval)).toBeLessThan(2400);
  });

  it("refines a limit learned elsewhere (set after the fetch was made), never one the limiter had before", async () => {
    const server = await start({ requestsPerMinute: 100, tokensPerMinute: 20_000, minute: "2s" });
    // Configured before the fetch was made: left alone, though the server refills it 30 times as fast.
    const limiter = new RateLimiter({ limits: [{ limit: 20_000, interval: "1m", unit: "tokens" }] });
    const fetch = limitedFetch(limiter);
    // As another process sharing a RedisRateLimiter leaves it: learned, at the assumed per-minute interval.
    limiter.limits = [...limiter.limits, { limit: 100, interval: 60_000, unit: "requests" }];
    for (let i = 0; i < 20; i++) await (await chat(fetch, server, `item ${i}`)).arrayBuffer();
    const limits = Object.fromEntries(limiter.limits.map((limit) => [limit.unit, limit]));
    expect(Number(limits["requests"]?.interval)).toBeGreaterThanOrEqual(2000);
    expect(Number(limits["requests"]?.interval)).toBeLessThan(2400);
    expect(limits["tokens"]?.interval).toBe("1m");
    expect(limiter.limits).toHaveLength(2);
  });

  it("sharpens a learned interval by more than half a percent, not only by 3% (a 2% slower limit stayed for good)", async () => {
    // The server's answers, one per call: half the bucket used, full again in `reset`.
    const resets = ["1.1s", "1.078s", "1.075s"];
    const fake: FetchFunction = async () =>
      new Response("{}", {
        headers: {
          "x-ratelimit-limit-requests": "100",
          "x-ratelimit-remaining-requests": "49",
          "x-ratelimit-reset-requests": resets.shift() ?? "1.1s",
        },
      });
    const limiter = new RateLimiter({});
    const fetch = limitedFetch(limiter, { fetch: fake });
    const intervals: number[] = [];
    for (let i = 0; i < 3; i++) {
      await (await fetch("https://api.example/v1/x")).arrayBuffer();
      intervals.push(Number(limiter.limits[0]?.interval));
    }
    // 100 × 1,100 ms / 50 used, then 2% sharper (taken), then 0.3% sharper (not worth a change).
    expect(intervals).toEqual([2_200, 2_156, 2_156]);
  });

  it("learns from Anthropic's RFC 3339 reset headers too", async () => {
    const server = await start({ requestsPerMinute: 50, minute: "1s" });
    const limiter = new RateLimiter({});
    const fetch = limitedFetch(limiter);
    for (let i = 0; i < 10; i++) {
      const response = await fetch(`${server.url}/v1/messages`, {
        method: "POST",
        body: JSON.stringify({ model: "mock", max_tokens: 5, messages: [{ role: "user", content: `q${i}` }] }),
      });
      await response.arrayBuffer();
    }
    const [requests] = limiter.limits;
    expect(requests).toMatchObject({ limit: 50, unit: "requests" });
    expect(Number(requests?.interval)).toBeGreaterThanOrEqual(1000);
    expect(Number(requests?.interval)).toBeLessThan(1500);
  });

  it("leaves limits the user configured alone", async () => {
    const server = await start({ requestsPerMinute: 100, minute: "1s" });
    const limiter = new RateLimiter({ limits: [{ limit: 100, interval: "1m" }] });
    const fetch = limitedFetch(limiter);
    for (let i = 0; i < 5; i++) await (await chat(fetch, server, `item ${i}`)).arrayBuffer();
    expect(limiter.limits).toHaveLength(1);
    expect(limiter.limits[0]).toMatchObject({ limit: 100, interval: "1m" });
  });
});

describe("limitedFetch: 429, 503 and 529 pause everyone", () => {
  it("pauses the whole limiter for retry-after-ms: nothing is sent until it has passed", async () => {
    const server = await start({ inject: ({ index }) => (index === 4 ? "rate-limit" : undefined), latency: 5 });
    const limiter = new RateLimiter({ concurrency: 4 });
    const traffic = recordTraffic();
    const fetch = limitedFetch(limiter, fast({ retry: { nonIdempotent: true }, pauseJitter: 0, fetch: traffic.fetch }));
    const responses = await Promise.all(Array.from({ length: 12 }, (_, i) => chat(fetch, server, `item ${i}`)));
    expect(responses.map((response) => response.status)).toEqual(Array(12).fill(200));
    // The injected 429 asks for 1000 ms; attempts granted before it arrived may still go out just after it.
    const refusedAt = traffic.received.find((response) => response.status === 429)?.at ?? Number.NaN;
    expect(traffic.sent.filter((at) => at > refusedAt + 20 && at < refusedAt + 980)).toEqual([]);
    expect(traffic.sent.filter((at) => at >= refusedAt + 995)).not.toEqual([]);
    expect(server.summary().outcomes).toEqual({ ok: 12, "rate-limited": 1 });
  });

  it("pauses its own callers when the limiter cannot pause (a Semaphore)", async () => {
    const server = await start({ inject: ({ index }) => (index === 2 ? "overloaded" : undefined), latency: 5 });
    const traffic = recordTraffic();
    const fetch = limitedFetch(
      new Semaphore(2),
      fast({ retry: { nonIdempotent: true }, pauseJitter: 0, fetch: traffic.fetch }),
    );
    const responses = await Promise.all(Array.from({ length: 6 }, (_, i) => chat(fetch, server, `item ${i}`)));
    expect(responses.map((response) => response.status)).toEqual(Array(6).fill(200));
    const refusedAt = traffic.received.find((response) => response.status === 503)?.at ?? Number.NaN;
    expect(traffic.sent.filter((at) => at > refusedAt + 20 && at < refusedAt + 980)).toEqual([]);
    expect(fetch.statistics()).toMatchObject({ pauses: 1, retries: 1, statuses: { 200: 6, 503: 1 } });
  });

  it("returns the last 429 once the attempts are spent, as fetch would", async () => {
    const server = await start({ inject: () => "rate-limit" });
    const events: RetryEvent[] = [];
    const limiter = new RateLimiter({});
    const fetch = limitedFetch(limiter, {
      ...fast({ retry: { attempts: 3, nonIdempotent: true } }),
      onRetry: (event) => events.push(event),
    });
    // Pauses of a second each would make this slow: let the pause be short.
    const response = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      body: "{}",
      signal: AbortSignal.timeout(10_000),
    });
    expect(response.status).toBe(429);
    expect(await response.json()).toMatchObject({ error: { code: "rate_limit_exceeded" } });
    expect(server.requests).toHaveLength(3);
    expect(events.map((event) => [event.attempt, event.status])).toEqual([
      [1, 429],
      [2, 429],
    ]);
  }, 15_000);
});

describe("limitedFetch: retries", () => {
  it("retries idempotent requests only, unless told otherwise", async () => {
    const server = await start({ inject: ({ index }) => (index % 2 === 0 ? "server-error" : undefined) });
    const plain = limitedFetch(new Semaphore(1), fast());
    // POST: not idempotent, the 500 comes back as it is.
    expect((await chat(plain, server, "post")).status).toBe(500);
    expect(server.requests).toHaveLength(1);
    await (await chat(plain, server, "filler")).arrayBuffer(); // index 1 succeeds
    // GET: idempotent, retried after the 500.
    expect((await plain(`${server.url}/health`)).status).toBe(200);
    expect(server.requests).toHaveLength(4);
    // POST with an Idempotency-Key: safe to repeat.
    const keyed = await chat(plain, server, "keyed", {
      headers: { "content-type": "application/json", "idempotency-key": "k1" },
    });
    expect(keyed.status).toBe(200);
    // POST with nonIdempotent: retried.
    const optedIn = limitedFetch(new Semaphore(1), fast({ retry: { nonIdempotent: true } }));
    expect((await chat(optedIn, server, "opted in")).status).toBe(200);
  });

  it("does not send a POST twice after a connection reset unless told to", async () => {
    const server = await start({ inject: ({ index }) => (index === 0 || index === 1 ? "reset" : undefined) });
    const plain = limitedFetch(new Semaphore(1), fast());
    await expect(chat(plain, server, "once")).rejects.toThrow(TypeError);
    expect(server.requests).toHaveLength(1);
    const optedIn = limitedFetch(new Semaphore(1), fast({ retry: { nonIdempotent: true } }));
    expect((await chat(optedIn, server, "twice")).status).toBe(200);
    expect(server.requests.map((record) => record.outcome)).toEqual(["reset", "reset", "ok"]);
  });

  it("gives up on a hanging attempt after attemptTimeout and retries it", async () => {
    const server = await start({ inject: ({ index }) => (index === 0 ? "hang" : undefined) });
    const fetch = limitedFetch(new Semaphore(1), fast({ attemptTimeout: 100, retry: { nonIdempotent: true } }));
    const response = await chat(fetch, server, "slow");
    expect(response.status).toBe(200);
    expect(server.requests.map((record) => record.outcome)).toEqual(["hang", "ok"]);
    expect(fetch.statistics()).toMatchObject({ attempts: 2, retries: 1, networkErrors: 1 });
  });

  it("stops retrying at the total-time cap and returns the last response", async () => {
    const server = await start({ inject: () => "server-error" });
    const fetch = limitedFetch(new Semaphore(1), {
      random: () => 0.999,
      retry: { attempts: 100, baseDelay: 40, maxDelay: 40, totalTime: 200, nonIdempotent: true },
    });
    const started = performance.now();
    const response = await chat(fetch, server, "doomed");
    expect(response.status).toBe(500);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(server.requests.length).toBeGreaterThan(1);
    expect(server.requests.length).toBeLessThanOrEqual(6);
  });

  it("sends every retry through the limiter, so retries never exceed the rate", async () => {
    // The server enforces nothing and fails more than a quarter of the time; the client allows 20 per 200 ms
    // (burst 5). Every attempt sent, retries included, must fit that token bucket.
    const server = await start({ failures: { "server-error": 0.25, reset: 0.05 }, seed: 3 });
    const limiter = new RateLimiter({ limits: [{ limit: 20, interval: 200, burst: 5 }], concurrency: 4 });
    const traffic = recordTraffic();
    const sent = traffic.sent;
    const fetch = limitedFetch(limiter, fast({ retry: { attempts: 20, nonIdempotent: true }, fetch: traffic.fetch }));
    const responses = await Promise.all(Array.from({ length: 60 }, (_, i) => chat(fetch, server, `item ${i}`)));
    expect(responses.every((response) => response.status === 200)).toBe(true);
    expect(sent.length).toBe(server.requests.length);
    expect(sent.length).toBeGreaterThan(60);
    const rate = 20 / 200;
    // Every attempt, retries included, was a grant of the limiter...
    expect(limiter.statistics().granted).toBe(sent.length);
    // ...so the sends keep the token bucket's promise: at most burst + rate × span in any span. Sends are
    // timed a little after their grants, by amounts that vary on a busy machine, so spans under 100 ms
    // are left out and 10 ms of slack allowed. (Retries that bypassed the limiter would exceed this by a
    // quarter of all requests.)
    for (let i = 0; i < sent.length; i++) {
      for (let j = i; j < sent.length; j++) {
        const span = (sent[j] as number) - (sent[i] as number);
        if (span >= 100) expect(j - i + 1).toBeLessThanOrEqual(5 + rate * (span + 10));
      }
    }
    const successes = server.requests
      .filter((record) => record.outcome === "ok")
      .map((record) => contentOf(record.body));
    expect(successes.sort()).toEqual(Array.from({ length: 60 }, (_, i) => `item ${i}`).sort());
  });
});

describe("limitedFetch: failures that retrying cannot fix", () => {
  it("stops the whole run at the first quota error: queued and later calls fail with QuotaExhaustedError", async () => {
    const server = await start({ quota: { requests: 20 }, latency: 5 });
    const limiter = new RateLimiter({ concurrency: 2 });
    const fetch = limitedFetch(limiter, fast({ retry: { nonIdempotent: true } }));
    const outcomes = await Promise.allSettled(Array.from({ length: 100 }, (_, i) => chat(fetch, server, `item ${i}`)));
    const fulfilled = outcomes.filter((outcome) => outcome.status === "fulfilled");
    const rejected = outcomes.filter((outcome): outcome is PromiseRejectedResult => outcome.status === "rejected");
    expect(fulfilled).toHaveLength(20);
    expect(rejected).toHaveLength(80);
    for (const { reason } of rejected) {
      expect(reason).toBeInstanceOf(QuotaExhaustedError);
      expect(reason).toBeInstanceOf(NonRetryableError);
      expect((reason as Error).message).toMatch(
        /quota exhausted .*HTTP 429 insufficient_quota.*You exceeded your current quota/,
      );
    }
    // The run stopped: only the requests already in flight reached the server after the quota ran out.
    expect(server.requests.length).toBeLessThanOrEqual(20 + 2);
    expect(fetch.stopReason).toBeInstanceOf(QuotaExhaustedError);
    expect(limiter.waiting).toBe(0);
    await expect(chat(fetch, server, "later")).rejects.toBeInstanceOf(QuotaExhaustedError);
    expect(server.requests.length).toBeLessThanOrEqual(22);
  });

  it("treats Anthropic's 402 billing_error as quota exhausted", async () => {
    const server = await start({ quota: { requests: 0 } });
    const fetch = limitedFetch(new RateLimiter({}), fast());
    const error = await fetch(`${server.url}/v1/messages`, {
      method: "POST",
      body: JSON.stringify({ messages: [] }),
    }).catch((reason: unknown) => reason);
    expect(error).toBeInstanceOf(QuotaExhaustedError);
    expect((error as QuotaExhaustedError).response?.status).toBe(402);
  });

  it("fails at once, sending nothing, when the limiter knows the request can never fit", async () => {
    const server = await start({});
    const limiter = new RateLimiter({ limits: [{ limit: 50, interval: "1m", unit: "tokens" }] });
    const fetch = limitedFetch(limiter);
    const error = await chat(fetch, server, "x".repeat(1000)).catch((reason: unknown) => reason);
    expect(error).toBeInstanceOf(RequestTooLargeError);
    expect((error as Error).cause).toBeInstanceOf(RangeError);
    expect(server.requests).toHaveLength(0);
    // One oversized request does not stop the others.
    expect((await chat(fetch, server, "small")).status).toBe(200);
  });

  it("recognises the server's 'request too large' 429 by comparing with the limit header; nobody pauses", async () => {
    const server = await start({ tokensPerMinute: 200 });
    const fetch = limitedFetch(new RateLimiter({}), fast({ learnLimits: false, retry: { nonIdempotent: true } }));
    const error = await chat(fetch, server, "y".repeat(2000)).catch((reason: unknown) => reason);
    expect(error).toBeInstanceOf(RequestTooLargeError);
    expect((error as Error).message).toMatch(/needs \d+ tokens but the limit is 200/);
    expect(server.requests).toHaveLength(1);
    // Nobody else is held up for it: no pause, no stop.
    expect(fetch.statistics().pauses).toBe(0);
    expect(fetch.stopReason).toBeUndefined();
    expect((await chat(fetch, server, "small")).status).toBe(200);
  });
});

describe("limitedFetch: cancellation", () => {
  it("rejects a call aborted while it waits for the limiter with the signal's reason, sending nothing", async () => {
    const server = await start({ latency: 100 });
    const fetch = limitedFetch(new Semaphore(1));
    const first = chat(fetch, server, "first");
    const controller = new AbortController();
    const second = chat(fetch, server, "second", { signal: controller.signal });
    await new Promise((resolve) => setTimeout(resolve, 20));
    controller.abort(new Error("changed my mind"));
    await expect(second).rejects.toThrow("changed my mind");
    expect((await first).status).toBe(200);
    expect(server.requests.map((record) => contentOf(record.body))).toEqual(["first"]);
  });

  it("aborts the request in flight and does not retry it", async () => {
    const server = await start({ latency: 2000 });
    const fetch = limitedFetch(new Semaphore(1), fast({ retry: { nonIdempotent: true } }));
    const controller = new AbortController();
    const call = chat(fetch, server, "slow", { signal: controller.signal });
    await new Promise((resolve) => setTimeout(resolve, 50));
    controller.abort(new Error("user cancelled"));
    await expect(call).rejects.toThrow("user cancelled");
    expect(server.requests).toHaveLength(1);
  });

  it("times out a wait for the limiter that exceeds the total-time cap", async () => {
    const server = await start({ latency: 300 });
    const fetch = limitedFetch(new Semaphore(1), { retry: { totalTime: 50 } });
    const first = chat(fetch, server, "first");
    await expect(chat(fetch, server, "second")).rejects.toBeInstanceOf(TimeoutError);
    expect((await first).status).toBe(200);
  });
});

describe("limitedFetch: bad arguments", () => {
  it.each([
    [{}, undefined, /limiter must be a Limiter/],
    [new Semaphore(1), { retry: { attempts: 0 } }, /retry\.attempts.*0/],
    [new Semaphore(1), { retry: { baseDelay: "soon" } }, /retry\.baseDelay.*soon/],
    [new Semaphore(1), { pauseJitter: -1 }, /pauseJitter.*-1/],
    [new Semaphore(1), { fetch: "curl" }, /options\.fetch must be a function.*curl/],
    [new Semaphore(1), { attemptTimeout: "5 parsecs" }, /attemptTimeout.*5 parsecs/],
    [new Semaphore(1), { pauseOn: "429" }, /pauseOn.*429/],
  ])("throws at once for %o / %o, naming the option and the value", (limiter, options, message) => {
    expect(() => limitedFetch(limiter as never, options as never)).toThrow(message);
  });
});
