/**
 * limitedFetch against hostile or broken servers, on a fake clock with a scripted fetch: rate-limit
 * headers that are garbage, absurdly large, or point into the past must never lose a permit, hang every
 * later call, or turn the shared pause into a burst of immediate retries.
 */
import { RateLimiter, Semaphore, TimeoutError } from "sluice";
import { type FetchFunction, limitedFetch, RequestTooLargeError } from "sluice/http";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";

interface Scripted {
  status: number;
  headers?: Record<string, string>;
}

/** A fetch that answers from a script and notes the clock time of each call. */
function scriptedFetch(clock: FakeClock, script: Scripted[]) {
  const calls: number[] = [];
  const fetch: FetchFunction = async () => {
    calls.push(clock.now());
    const next = script[Math.min(calls.length - 1, script.length - 1)] as Scripted;
    return new Response("{}", {
      status: next.status,
      headers: { "content-type": "application/json", ...next.headers },
    });
  };
  return { fetch, calls };
}

/** Runs timers until `promise` settles (or gives up after `rounds` timers, leaving it pending). */
async function drive<T>(clock: FakeClock, promise: Promise<T>, rounds = 1000): Promise<T | "pending"> {
  let settled = false;
  const watched = promise.finally(() => {
    settled = true;
  });
  for (let i = 0; i < rounds && !settled; i++) {
    await flushMicrotasks();
    if (!settled && clock.pendingTimers > 0) await clock.next();
  }
  await flushMicrotasks();
  return settled ? watched : "pending";
}

const HUGE = "9".repeat(400); // Number(HUGE) is Infinity

describe("limitedFetch: garbage rate-limit headers never lose a permit", () => {
  it.each([
    ["retry-after-ms of 400 digits on a 429", { status: 429, headers: { "retry-after-ms": HUGE } }],
    ["retry-after-ms of 400 digits on a 200", { status: 200, headers: { "retry-after-ms": HUGE } }],
    [
      "a reset of 400 digits for an exhausted budget",
      {
        status: 429,
        headers: {
          "x-ratelimit-limit-tokens": "100",
          "x-ratelimit-remaining-tokens": "0",
          "x-ratelimit-reset-tokens": HUGE,
        },
      },
    ],
  ])("%s: the permit comes back and the next call is not blocked", async (_, answer) => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ clock, concurrency: 1 });
    const { fetch } = scriptedFetch(clock, [answer, { status: 200 }]);
    const limited = limitedFetch(limiter, { fetch, clock, random: () => 0, retry: false });
    await drive(
      clock,
      limited("http://api.test/first").catch(() => undefined),
    );
    expect(limiter.statistics().inUse).toBe(0);
    // The second call is served, not merely settled: a rejection would pass "not pending".
    const second = await drive(clock, limited("http://api.test/second"), 50);
    expect((second as Response).status).toBe(200);
  });

  it("an infinite retry-after-ms does not pause the callers of a limiter that cannot pause forever", async () => {
    const clock = new FakeClock();
    const { fetch, calls } = scriptedFetch(clock, [
      { status: 429, headers: { "retry-after-ms": HUGE } },
      { status: 200 },
    ]);
    const limited = limitedFetch(new Semaphore(1), { fetch, clock, random: () => 0, retry: false });
    expect(((await drive(clock, limited("http://api.test/first"))) as Response).status).toBe(429);
    const second = await drive(clock, limited("http://api.test/second"), 50);
    expect((second as Response).status).toBe(200);
    // An unusable wait falls back to the backoff (500 ms here), rather than to "forever".
    expect(calls).toEqual([0, 500]);
  });
});

describe("limitedFetch: a Retry-After that asks for no wait still backs off", () => {
  it.each([
    ["a date in the past", "Wed, 21 Oct 2015 07:28:00 GMT"],
    ["zero seconds", "0"],
  ])("429 with Retry-After %s: retries are spaced by the backoff, not sent at once", async (_, value) => {
    const clock = new FakeClock();
    const { fetch, calls } = scriptedFetch(clock, [
      { status: 429, headers: { "retry-after": value } },
      { status: 429, headers: { "retry-after": value } },
      { status: 200 },
    ]);
    const limiter = new RateLimiter({ clock });
    const limited = limitedFetch(limiter, { fetch, clock, random: () => 0, retry: { baseDelay: 400 } });
    const response = (await drive(clock, limited("http://api.test/items"))) as Response;
    expect(response.status).toBe(200);
    // Without a usable server wait, the pause falls back to the backoff: 400 ms, then 800 ms.
    expect(calls).toEqual([0, 400, 1200]);
  });

  it("the same 429 paced the same way through a Semaphore", async () => {
    const clock = new FakeClock();
    const { fetch, calls } = scriptedFetch(clock, [
      { status: 429, headers: { "retry-after": "Wed, 21 Oct 2015 07:28:00 GMT" } },
      { status: 200 },
    ]);
    const limited = limitedFetch(new Semaphore(1), {
      fetch,
      clock,
      random: () => 0,
      pauseJitter: 0,
      retry: { baseDelay: 400 },
    });
    expect(((await drive(clock, limited("http://api.test/items"))) as Response).status).toBe(200);
    expect(calls).toEqual([0, 400]);
  });
});

describe("limitedFetch over a shared limiter whose observe and pause reject (Redis unreachable)", () => {
  it("no unhandled rejection, the response still comes back, and the 429's pause is kept here", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const clock = new FakeClock();
      const inner = new RateLimiter({ clock });
      const down = () => Promise.reject(new Error("Redis is unavailable"));
      // A RedisRateLimiter's shape: acquire/run as usual, observe and pause answer with promises.
      const shared = Object.assign(Object.create(inner) as RateLimiter, { observe: down, pause: down });
      const { fetch, calls } = scriptedFetch(clock, [
        { status: 429, headers: { "retry-after": "2" } },
        { status: 200, headers: { "x-ratelimit-remaining-requests": "5" } },
      ]);
      const limited = limitedFetch(shared, { fetch, clock, random: () => 0, pauseJitter: 0 });
      const response = (await drive(clock, limited("http://api.test/items"))) as Response;
      expect(response.status).toBe(200);
      // The pause Redis could not record still held this fetch back for the server's 2 s.
      expect(calls).toEqual([0, 2000]);
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});

describe("limitedFetch: an estimate that is not a cost", () => {
  it("rejects with the estimate's own TypeError/RangeError naming the request, not RequestTooLargeError", async () => {
    const clock = new FakeClock();
    const { fetch, calls } = scriptedFetch(clock, [{ status: 200 }]);
    const limiter = new RateLimiter({ limits: [{ limit: 100, interval: "1m", unit: "tokens" }], clock });
    const cases: [unknown, ErrorConstructor, RegExp][] = [
      [
        -1,
        RangeError,
        /^the estimate for GET http:\/\/api\.test\/a is not a cost: cost must be a finite number >= 0; got -1$/,
      ],
      [{ tokens: Number.NaN }, RangeError, /cost\.tokens must be a finite number >= 0; got NaN/],
      [
        { tokens: "many" },
        TypeError,
        /^the estimate for GET http:\/\/api\.test\/a is not a cost: cost\.tokens must be a number/,
      ],
      ["ten", TypeError, /cost must be a number or an object of numbers per unit/],
    ];
    for (const [estimate, type, message] of cases) {
      const limited = limitedFetch(limiter, { fetch, clock, estimate: () => estimate as number });
      const error = await limited("http://api.test/a").catch((reason: unknown) => reason);
      expect(error).toBeInstanceOf(type);
      expect(error).not.toBeInstanceOf(RequestTooLargeError);
      expect((error as Error).message).toMatch(message);
    }
    expect(calls).toHaveLength(0);
    // A real cost above the limit is still a request too large.
    const tooLarge = limitedFetch(limiter, { fetch, clock, estimate: () => ({ tokens: 500 }) });
    expect(await tooLarge("http://api.test/a").catch((reason: unknown) => reason)).toBeInstanceOf(RequestTooLargeError);
    // And a good one goes through: nothing was left charged or held by the refused ones.
    const fine = limitedFetch(limiter, { fetch, clock, estimate: () => ({ tokens: 100 }) });
    expect((await fine("http://api.test/a")).status).toBe(200);
  });
});

describe("limitedFetch: a server wait longer than the time left", () => {
  it.each([
    ["a RateLimiter (the whole limiter pauses)", (clock: FakeClock) => new RateLimiter({ clock })],
    ["a Semaphore (the call backs off on its own)", () => new Semaphore(1)],
  ])("through %s: the call returns the 429 at once, not at the deadline", async (_, limiter) => {
    const clock = new FakeClock();
    const { fetch, calls } = scriptedFetch(clock, [
      { status: 429, headers: { "retry-after": "86400" } },
      { status: 200 },
    ]);
    const limited = limitedFetch(limiter(clock), { fetch, clock, random: () => 0, retry: { totalTime: "10m" } });
    const response = (await drive(clock, limited("http://api.test/a"), 0)) as Response;
    expect(response.status).toBe(429);
    expect(calls).toEqual([0]);
    expect(clock.now()).toBe(0);
  });

  it("with time enough left, the wait is sat through and the retry goes out after it", async () => {
    const clock = new FakeClock();
    const { fetch, calls } = scriptedFetch(clock, [{ status: 429, headers: { "retry-after": "60" } }, { status: 200 }]);
    const limited = limitedFetch(new RateLimiter({ clock }), {
      fetch,
      clock,
      random: () => 0,
      retry: { totalTime: "10m" },
    });
    const response = (await drive(clock, limited("http://api.test/a"))) as Response;
    expect(response.status).toBe(200);
    expect(calls).toEqual([0, 60_000]);
  });
});

/** A body that arrives `ms` (fake clock) after the headers: a slow network, a big error page. */
function slowBody(clock: FakeClock, ms: number, text: string): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      clock.setTimeout(() => {
        controller.enqueue(new TextEncoder().encode(text));
        controller.close();
      }, ms);
    },
  });
}

describe("limitedFetch: retry.totalTime against a server wait, counted right", () => {
  it("the pause is counted from when it was set, not from after the error body was read", async () => {
    // Retry-After 58 s, totalTime 60 s: the limiter's pause ends at 58 s, and the retry can go then,
    // although the 429's body took 3 s to arrive (58 s counted from then would end past the deadline).
    const clock = new FakeClock();
    const calls: number[] = [];
    const fetch: FetchFunction = async () => {
      calls.push(clock.now());
      if (calls.length === 1) {
        return new Response(slowBody(clock, 3_000, "{}"), {
          status: 429,
          headers: { "content-type": "application/json", "retry-after": "58" },
        });
      }
      return new Response("{}", { status: 200, headers: { "content-type": "application/json" } });
    };
    const limited = limitedFetch(new RateLimiter({ clock }), {
      fetch,
      clock,
      random: () => 0,
      retry: { totalTime: "60s" },
    });
    const response = (await drive(clock, limited("http://api.test/a"))) as Response;
    expect(calls).toEqual([0, 58_000]);
    expect(response.status).toBe(200);
  });

  it("a pause another call set that outlasts this call's totalTime ends this call at once, sending nothing", async () => {
    // Call A gets Retry-After: 1 day and returns its 429, leaving this fetch (over a Semaphore, which
    // cannot pause) paused for a day. Call B, with totalTime 10 m, must not sleep that day and then send.
    const clock = new FakeClock();
    const calls: number[] = [];
    const fetch: FetchFunction = async () => {
      calls.push(clock.now());
      return calls.length === 1
        ? new Response("{}", { status: 429, headers: { "retry-after": "86400" } })
        : new Response("{}", { status: 200 });
    };
    const limited = limitedFetch(new Semaphore(1), { fetch, clock, random: () => 0, retry: { totalTime: "10m" } });
    const first = (await drive(clock, limited("http://api.test/a"), 0)) as Response;
    expect(first.status).toBe(429);
    const second = await drive(
      clock,
      limited("http://api.test/b").then(
        (response) => response,
        (error: unknown) => error,
      ),
    );
    expect(calls).toEqual([0]); // no request after the deadline
    expect(second).toBeInstanceOf(TimeoutError);
    expect(clock.now()).toBe(0);
    expect((second as TimeoutError).message).toMatch(
      /paused this fetch for another 86400000 ms, past the end of retry.totalTime \(600000 ms\)/,
    );
  });
});
