/**
 * RateLimiter behaviour, on the fake clock: every time in here is exact.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { RateLimiter, type RatePermit, TimeoutError } from "sluice";
import { FakeClock } from "sluice/testing";
import { describe, expect, it } from "vitest";

/** Records when each call starts (clock time), in start order. */
function recorder(clock: FakeClock) {
  const starts: { id: string; at: number }[] = [];
  const record = (id: string) => (permit: RatePermit) => {
    starts.push({ id, at: clock.now() });
    return permit;
  };
  return { starts, record };
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (error: unknown) => error,
  );
}

describe("RateLimiter: concurrency and spacing (the seeds' ApiRateLimiter)", () => {
  it("5 at once, 100 ms apart, is a one-liner that spaces starts and caps calls in flight", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ concurrency: 5, minInterval: 100, clock });
    const starts: number[] = [];
    let inside = 0;
    let most = 0;
    const calls = Array.from({ length: 8 }, () =>
      limiter.run(async () => {
        starts.push(clock.now());
        most = Math.max(most, ++inside);
        await new Promise<void>((resolve) => clock.setTimeout(resolve, 1_000));
        inside--;
      }),
    );
    await clock.runAll();
    await Promise.all(calls);
    // Five starts 100 ms apart; the sixth needs both a free slot (first call ends at 1000) and the spacing.
    expect(starts).toEqual([0, 100, 200, 300, 400, 1_000, 1_100, 1_200]);
    expect(most).toBe(5);
    expect(clock.pendingTimers).toBe(0);
  });

  it("minInterval alone spaces starts even when calls end at once", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ minInterval: "250ms", clock });
    const { starts, record } = recorder(clock);
    const permits = ["a", "b", "c"].map((id) => limiter.acquire().then(record(id)));
    await clock.runAll();
    for (const permit of await Promise.all(permits)) permit.release();
    expect(starts.map((start) => start.at)).toEqual([0, 250, 500]);
  });

  it("a call waiting for a concurrency slot keeps no timer; the release starts it", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ concurrency: 1, clock });
    const first = await limiter.acquire();
    const second = limiter.acquire();
    expect(limiter.waiting).toBe(1);
    expect(clock.pendingTimers).toBe(0);
    first.release();
    expect(limiter.waiting).toBe(0);
    (await second).release();
    expect(limiter.inUse).toBe(0);
  });
});

describe("RateLimiter: token bucket (default)", () => {
  it("starts full: `limit` calls at once, then one every interval / limit", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 4, interval: "1s" }], clock });
    const { starts, record } = recorder(clock);
    const all = Array.from({ length: 7 }, (_, index) => limiter.acquire().then(record(String(index))));
    await clock.runAll();
    await Promise.all(all);
    expect(starts.map((start) => start.at)).toEqual([0, 0, 0, 0, 250, 500, 750]);
  });

  it("burst caps how much may go at once while the rate stays limit / interval", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 10, interval: 1_000, burst: 2 }], clock });
    const { starts, record } = recorder(clock);
    const all = Array.from({ length: 5 }, (_, index) => limiter.acquire().then(record(String(index))));
    await clock.runAll();
    await Promise.all(all);
    expect(starts.map((start) => start.at)).toEqual([0, 0, 100, 200, 300]);
  });

  it("refills continuously: a half-spent bucket serves a half-size cost at once", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 100, interval: 1_000, unit: "tokens" }], clock });
    (await limiter.acquire({ cost: { tokens: 100 } })).release();
    await clock.advanceAsync(500);
    expect(limiter.tryAcquire({ cost: { tokens: 50 } })).toBeDefined();
    expect(limiter.tryAcquire({ cost: { tokens: 1 } })).toBeUndefined();
  });
});

describe("RateLimiter: sliding window", () => {
  it("admits `limit` in any window [t, t + interval) and the next exactly when the oldest leaves", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 3, interval: 100, algorithm: "sliding-window" }], clock });
    const { starts, record } = recorder(clock);
    const early = [0, 1, 2].map((index) => limiter.acquire().then(record(String(index))));
    await clock.advanceAsync(30);
    const late = [3, 4, 5, 6].map((index) => limiter.acquire().then(record(String(index))));
    await clock.runAll();
    await Promise.all([...early, ...late]);
    expect(starts.map((start) => start.at)).toEqual([0, 0, 0, 100, 100, 100, 200]);
  });

  it("a costly call waits until enough old charges have left the window", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 10, interval: 100, algorithm: "sliding-window" }], clock });
    (await limiter.acquire({ cost: 4 })).release();
    await clock.advanceAsync(10);
    (await limiter.acquire({ cost: 4 })).release();
    await clock.advanceAsync(10);
    const { starts, record } = recorder(clock);
    const big = limiter.acquire({ cost: 7 }).then(record("big"));
    await clock.runAll();
    await big;
    // 8 used; 7 fits only after both 4s left (at 100 only one has: 4 + 7 > 10), i.e. at 110.
    expect(starts).toEqual([{ id: "big", at: 110 }]);
  });
});

describe("RateLimiter: cost", () => {
  it("a number is requests; an object's missing requests cost 1 and other missing units 0", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({
      limits: [
        { limit: 10, interval: 1_000 },
        { limit: 1_000, interval: 1_000, unit: "tokens" },
      ],
      clock,
    });
    const a = await limiter.acquire({ cost: 3 });
    expect(a.cost).toEqual({ requests: 3 });
    const b = await limiter.acquire({ cost: { tokens: 400 } });
    expect(b.cost).toEqual({ requests: 1, tokens: 400 });
    const c = await limiter.acquire({ cost: { requests: 0, tokens: 100, pixels: 5 } });
    expect(limiter.statistics().remaining).toEqual({ requests: 6, tokens: 500 });
    for (const permit of [a, b, c]) permit.release();
  });

  it("is all-or-nothing across limits: a call refused by one limit is charged nowhere", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({
      limits: [
        { limit: 10, interval: 1_000 },
        { limit: 1_000, interval: 1_000, unit: "tokens" },
      ],
      clock,
    });
    (await limiter.acquire({ cost: { tokens: 900 } })).release();
    const before = limiter.statistics().remaining;
    expect(limiter.tryAcquire({ cost: { tokens: 200 } })).toBeUndefined();
    const waiting = limiter.acquire({ cost: { tokens: 200 } });
    expect(limiter.statistics().remaining).toEqual(before);
    expect(before).toEqual({ requests: 9, tokens: 100 });
    await clock.runAll();
    (await waiting).release();
    expect(clock.now()).toBe(100);
  });

  it("a cost above what a limit can ever pay rejects at once with both numbers, never throws", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({
      limits: [
        { limit: 1_000, interval: "1m", unit: "tokens", burst: 500 },
        { limit: 5, interval: "1s", algorithm: "sliding-window" },
      ],
      concurrency: 3,
      clock,
    });
    let promise: Promise<unknown> | undefined;
    expect(() => {
      promise = limiter.acquire({ cost: { tokens: 700 } });
    }).not.toThrow();
    const tooMany = await rejectionOf(promise as Promise<unknown>);
    expect(tooMany).toBeInstanceOf(RangeError);
    expect((tooMany as Error).message).toMatch(/700 tokens.*burst 500/);
    const window = await rejectionOf(limiter.acquire({ cost: 6 }));
    expect((window as Error).message).toMatch(/6 requests.*limit 5/);
    const heavy = await rejectionOf(limiter.run(() => "never", { weight: 4 }));
    expect((heavy as Error).message).toMatch(/weight 4 is above the capacity 3 of .*\(its concurrency\)/);
    expect(limiter.waiting).toBe(0);
    expect(limiter.statistics().remaining).toEqual({ tokens: 500, requests: 5 });
  });

  it("bad costs reject with a TypeError/RangeError naming the argument", async () => {
    const limiter = new RateLimiter({ limits: [{ limit: 5, interval: 1_000 }], clock: new FakeClock() });
    const cases: [unknown, typeof TypeError | typeof RangeError, RegExp][] = [
      [-1, RangeError, /cost must be a finite number >= 0; got -1/],
      [Number.NaN, RangeError, /cost .*NaN/],
      [Number.POSITIVE_INFINITY, RangeError, /cost .*Infinity/],
      ["3", TypeError, /cost must be a number or an object/],
      [{ tokens: -5 }, RangeError, /cost\.tokens .* got -5/],
      [{ tokens: "5" }, TypeError, /cost\.tokens must be a number/],
    ];
    for (const [cost, type, message] of cases) {
      const error = await rejectionOf(limiter.acquire({ cost: cost as number }));
      expect(error).toBeInstanceOf(type);
      expect((error as Error).message).toMatch(message);
    }
  });
});

describe("RateLimiter: order", () => {
  it("serves equal priorities first come, first served, and a costly head blocks cheap calls behind it", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 10, interval: 1_000 }], clock });
    (await limiter.acquire({ cost: 8 })).release();
    const { starts, record } = recorder(clock);
    const heavy = limiter.acquire({ cost: 5 }).then(record("heavy"));
    const light = limiter.acquire({ cost: 1 }).then(record("light"));
    await clock.advanceAsync(299);
    // Two tokens were free all along, but the light call is behind the heavy head.
    expect(starts).toEqual([]);
    await clock.runAll();
    await Promise.all([heavy, light]);
    expect(starts).toEqual([
      { id: "heavy", at: 300 },
      { id: "light", at: 400 },
    ]);
  });

  it("a higher priority that can start passes a lower-priority head; a lower one waits behind", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 10, interval: 1_000 }], clock });
    (await limiter.acquire({ cost: 8 })).release();
    const { starts, record } = recorder(clock);
    const heavy = limiter.acquire({ cost: 5 }).then(record("heavy"));
    const urgent = limiter.acquire({ cost: 1, priority: 1 }).then(record("urgent"));
    const later = limiter.acquire({ cost: 1, priority: -1 }).then(record("later"));
    await clock.runAll();
    await Promise.all([heavy, urgent, later]);
    expect(starts).toEqual([
      { id: "urgent", at: 0 },
      { id: "heavy", at: 400 },
      { id: "later", at: 500 },
    ]);
  });

  it("run keeps the caller's AsyncLocalStorage context", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 1, interval: 100 }], clock });
    const storage = new AsyncLocalStorage<string>();
    const seen = ["a", "b"].map((id) => storage.run(id, () => limiter.run(() => storage.getStore())));
    await clock.runAll();
    expect(await Promise.all(seen)).toEqual(["a", "b"]);
  });
});

describe("RateLimiter: one timer", () => {
  it("keeps exactly one timer however many wait, and none once idle", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 10, interval: 1_000, burst: 1 }], clock });
    const all = Array.from({ length: 1_000 }, () => limiter.run(() => undefined));
    expect(limiter.waiting).toBe(999);
    expect(clock.pendingTimers).toBe(1);
    expect(clock.nextTimerAt).toBe(100);
    await clock.advanceAsync(50_000);
    expect(limiter.waiting).toBe(499);
    expect(clock.pendingTimers).toBe(1);
    await clock.runAll();
    await Promise.all(all);
    expect(clock.now()).toBe(99_900);
    expect(clock.pendingTimers).toBe(0);
  });

  it("an idle limiter, even paused or in debt, holds no timer", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 1, interval: 1_000 }], minInterval: 10, clock });
    const permit = await limiter.acquire();
    permit.settle(1);
    permit.release();
    limiter.pause("1h");
    expect(clock.pendingTimers).toBe(0);
  });

  it("the timer follows a new head that sorts in front (earlier or later ready time)", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 10, interval: 1_000 }], clock });
    (await limiter.acquire({ cost: 10 })).release();
    const slow = limiter.acquire({ cost: 5 });
    expect(clock.nextTimerAt).toBe(500);
    const fast = limiter.acquire({ cost: 2, priority: 1 });
    expect(clock.pendingTimers).toBe(1);
    expect(clock.nextTimerAt).toBe(200);
    await clock.runAll();
    await Promise.all([slow, fast]);
    expect(clock.now()).toBe(700);
  });
});

describe("RateLimiter: abort and timeout while waiting for tokens", () => {
  it("an aborted head leaves the queue, the timer re-arms for the next head, nothing is charged", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 10, interval: 1_000 }], clock });
    (await limiter.acquire({ cost: 10 })).release();
    const controller = new AbortController();
    const big = limiter.acquire({ cost: 8, signal: controller.signal });
    const small = limiter.acquire({ cost: 1 });
    expect(clock.nextTimerAt).toBe(800);
    const reason = new Error("no longer needed");
    controller.abort(reason);
    expect(await rejectionOf(big)).toBe(reason);
    expect(limiter.waiting).toBe(1);
    expect(clock.pendingTimers).toBe(1);
    expect(clock.nextTimerAt).toBe(100);
    await clock.runAll();
    (await small).release();
    expect(clock.now()).toBe(100);
    expect(limiter.statistics().aborted).toBe(1);
  });

  it("a timed-out only waiter leaves no timer behind", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 1, interval: 1_000 }], clock });
    (await limiter.acquire()).release();
    const waiter = limiter.acquire({ timeout: 200 });
    const outcome = rejectionOf(waiter);
    expect(clock.pendingTimers).toBe(2); // the limiter's and its queue's timeout timer
    await clock.advanceAsync(200);
    const error = await outcome;
    expect(error).toBeInstanceOf(TimeoutError);
    expect(limiter.waiting).toBe(0);
    expect(clock.pendingTimers).toBe(0);
    expect(limiter.statistics().timedOut).toBe(1);
  });

  it("timeout 0 means only if it can start right now", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 1, interval: 1_000 }], clock });
    (await limiter.acquire({ timeout: 0 })).release();
    expect(await rejectionOf(limiter.acquire({ timeout: 0 }))).toBeInstanceOf(TimeoutError);
    expect(clock.pendingTimers).toBe(0);
  });

  it("clear rejects every waiter and disarms the timer", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 1, interval: 1_000 }], clock });
    (await limiter.acquire()).release();
    const waiters = [limiter.acquire(), limiter.acquire()];
    const reason = new Error("quota exhausted");
    limiter.clear(reason);
    for (const waiter of waiters) expect(await rejectionOf(waiter)).toBe(reason);
    expect(clock.pendingTimers).toBe(0);
  });
});

describe("RateLimiter: settle", () => {
  const tokens = (refund?: boolean | Record<string, boolean>) => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 1_000, interval: 1_000, unit: "tokens" }], clock, refund });
    return { clock, limiter };
  };

  it("refunds the unused estimate, so the next call starts earlier", async () => {
    const { clock, limiter } = tokens();
    const permit = await limiter.acquire({ cost: { tokens: 1_000 } });
    const next = limiter.acquire({ cost: { tokens: 500 } });
    expect(clock.nextTimerAt).toBe(500);
    permit.settle({ tokens: 300 });
    // 700 came back: the next call starts at once.
    (await next).release();
    expect(clock.now()).toBe(0);
    expect(permit.cost).toEqual({ requests: 1, tokens: 300 });
    permit.release();
  });

  it("charges the extra, into debt, which later calls wait out", async () => {
    const { clock, limiter } = tokens();
    const permit = await limiter.acquire({ cost: { tokens: 800 } });
    permit.release();
    permit.settle({ tokens: 1_500 }); // after release is fine
    expect(limiter.statistics().remaining).toEqual({ tokens: -500 });
    const next = limiter.acquire({ cost: { tokens: 100 } });
    await clock.runAll();
    (await next).release();
    expect(clock.now()).toBe(600);
  });

  it("keeps estimates when the provider does not refund (refund: false), still charging extras", async () => {
    const { limiter } = tokens(false);
    const permit = await limiter.acquire({ cost: { tokens: 600 } });
    permit.settle({ tokens: 100 });
    expect(limiter.statistics().remaining).toEqual({ tokens: 400 });
    permit.settle({ tokens: 700 });
    expect(limiter.statistics().remaining).toEqual({ tokens: 300 });
    permit.release();
  });

  it("decides refunds per unit when refund is an object", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({
      limits: [
        { limit: 10, interval: 1_000 },
        { limit: 1_000, interval: 1_000, unit: "tokens" },
      ],
      refund: { tokens: false },
      clock,
    });
    const permit = await limiter.acquire({ cost: { requests: 3, tokens: 500 } });
    permit.settle({ requests: 1, tokens: 100 });
    expect(limiter.statistics().remaining).toEqual({ requests: 9, tokens: 500 });
    permit.release();
  });

  it("refunds a sliding window only while the charge is still in the window", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({
      limits: [{ limit: 100, interval: 1_000, unit: "tokens", algorithm: "sliding-window" }],
      clock,
    });
    const early = await limiter.acquire({ cost: { tokens: 60 } });
    early.settle({ tokens: 20 });
    expect(limiter.statistics().remaining).toEqual({ tokens: 80 });
    await clock.advanceAsync(1_000);
    early.settle({ tokens: 0 }); // the charge has left the window: nothing to give back, nothing breaks
    expect(limiter.statistics().remaining).toEqual({ tokens: 100 });
    early.settle({ tokens: 50 }); // the extra is charged now, as a charge of its own
    expect(limiter.statistics().remaining).toEqual({ tokens: 50 });
    early.release();
  });

  it("reports estimate versus actual in stats and events", async () => {
    const { limiter } = tokens();
    const seen: unknown[] = [];
    const unsubscribe = limiter.on("settle", (event) => seen.push(event));
    const a = await limiter.acquire({ cost: { tokens: 200 } });
    const b = await limiter.acquire({ cost: { tokens: 300 } });
    a.settle({ tokens: 150 });
    b.settle({ tokens: 400 });
    b.settle({ tokens: 350 });
    unsubscribe();
    a.settle({ tokens: 100 });
    expect(seen).toEqual([
      { estimate: { requests: 1, tokens: 200 }, actual: { requests: 1, tokens: 150 } },
      { estimate: { requests: 1, tokens: 300 }, actual: { requests: 1, tokens: 400 } },
      { estimate: { requests: 1, tokens: 400 }, actual: { requests: 1, tokens: 350 } },
    ]);
    expect(limiter.statistics().settled).toEqual({
      calls: 2,
      estimated: { requests: 2, tokens: 500 },
      actual: { requests: 2, tokens: 450 },
    });
    a.release();
    b.release();
  });

  it("run hands the permit to the work so it can settle from the response", async () => {
    const { limiter } = tokens();
    await limiter.run((_signal, permit) => permit.settle({ tokens: 10 }), { cost: { tokens: 900 } });
    expect(limiter.statistics().remaining).toEqual({ tokens: 990 });
  });

  it("rejects a bad actual cost synchronously and changes nothing", async () => {
    const { limiter } = tokens();
    const permit = await limiter.acquire({ cost: { tokens: 100 } });
    expect(() => permit.settle({ tokens: -1 })).toThrow(RangeError);
    expect(() => permit.settle("10" as unknown as number)).toThrow(TypeError);
    expect(limiter.statistics().remaining).toEqual({ tokens: 900 });
    permit.release();
  });
});

describe("RateLimiter: pause", () => {
  it("holds every caller until the pause ends; calls in flight are untouched", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ concurrency: 10, clock });
    const inFlight = await limiter.acquire();
    const reasons: unknown[] = [];
    limiter.on("pause", (event) => reasons.push(event));
    limiter.pause("2s", "429 from the API");
    expect(limiter.pausedUntil).toBe(2_000);
    expect(limiter.statistics().pauseReason).toBe("429 from the API");
    const { starts, record } = recorder(clock);
    const waiting = limiter.acquire().then(record("after"));
    expect(limiter.tryAcquire()).toBeUndefined();
    inFlight.release(); // fine during a pause
    await clock.runAll();
    await waiting;
    expect(starts).toEqual([{ id: "after", at: 2_000 }]);
    expect(limiter.pausedUntil).toBeUndefined();
    expect(reasons).toEqual([{ until: 2_000, reason: "429 from the API" }]);
  });

  it("only extends: a shorter later pause changes nothing, a longer one moves the end", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ clock });
    limiter.pause(1_000);
    await clock.advanceAsync(100);
    limiter.pause(500); // would end at 600 < 1000
    expect(limiter.pausedUntil).toBe(1_000);
    limiter.pause(new Date(Date.now() + 2_000));
    expect(limiter.pausedUntil).toBeGreaterThanOrEqual(2_099);
    expect(limiter.pausedUntil).toBeLessThanOrEqual(2_100);
    limiter.pause(0);
    expect(limiter.pausedUntil).toBeGreaterThanOrEqual(2_099);
  });

  it("resumes gradually: the queue drains at the steady rate, not as one burst", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 5, interval: 1_000 }], clock });
    limiter.pause(3_000);
    const { starts, record } = recorder(clock);
    const all = Array.from({ length: 5 }, (_, index) => limiter.acquire().then(record(String(index))));
    await clock.runAll();
    await Promise.all(all);
    // A full bucket would have let all five go at 3000.
    expect(starts.map((start) => start.at)).toEqual([3_200, 3_400, 3_600, 3_800, 4_000]);
  });

  it("resumes gradually for sliding windows too", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 4, interval: 1_000, algorithm: "sliding-window" }], clock });
    limiter.pause(1_000);
    const { starts, record } = recorder(clock);
    const all = Array.from({ length: 6 }, (_, index) => limiter.acquire().then(record(String(index))));
    await clock.runAll();
    await Promise.all(all);
    expect(starts.map((start) => start.at)).toEqual([1_250, 1_500, 1_750, 2_000, 2_250, 2_500]);
  });

  it("rejects bad pause arguments synchronously", () => {
    const limiter = new RateLimiter({ clock: new FakeClock() });
    expect(() => limiter.pause("5 parsecs")).toThrow(/pause duration must be a duration.*5 parsecs/);
    expect(() => limiter.pause(-1)).toThrow(RangeError);
    expect(() => limiter.pause(new Date("nope"))).toThrow(/invalid/);
  });
});

describe("RateLimiter: observe", () => {
  it("levels a token bucket down to the server's remaining, never up", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({
      limits: [
        { limit: 60, interval: "1m" },
        { limit: 150_000, interval: "1m", unit: "tokens" },
      ],
      clock,
    });
    limiter.observe({
      "x-ratelimit-limit-requests": "60",
      "x-ratelimit-remaining-requests": "59",
      "x-ratelimit-reset-requests": "1s",
      "x-ratelimit-limit-tokens": "150000",
      "x-ratelimit-remaining-tokens": "1000",
      "x-ratelimit-reset-tokens": "6m0s",
    });
    expect(limiter.statistics().remaining).toEqual({ requests: 59, tokens: 1_000 });
    limiter.observe({ "x-ratelimit-remaining-tokens": "149000" });
    expect(limiter.statistics().remaining).toEqual({ requests: 59, tokens: 1_000 });
    // The server said 1000 left: a 2000-token call waits for the local refill of the missing 1000.
    const { starts, record } = recorder(clock);
    const call = limiter.acquire({ cost: { tokens: 2_000 } }).then(record("big"));
    await clock.runAll();
    await call;
    expect(starts).toEqual([{ id: "big", at: 400 }]);
  });

  it("caps a sliding window at the server's remaining until the server's reset", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 100, interval: "1m", algorithm: "sliding-window" }], clock });
    limiter.observe({ RateLimit: '"default";r=2;t=5', "RateLimit-Policy": '"default";q=100;w=60' });
    const { starts, record } = recorder(clock);
    const all = Array.from({ length: 3 }, (_, index) => limiter.acquire().then(record(String(index))));
    await clock.runAll();
    await Promise.all(all);
    expect(starts.map((start) => start.at)).toEqual([0, 0, 5_000]);
  });

  it("pauses everyone for Retry-After and for retry-after-ms", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ clock });
    limiter.observe(new Headers({ "retry-after": "20" }));
    expect(limiter.pausedUntil).toBe(20_000);
    limiter.observe({ "retry-after-ms": "25000.5", "retry-after": "25" });
    expect(limiter.pausedUntil).toBe(25_000.5);
    limiter.observe({ "retry-after": "3" }); // shorter: ignored
    expect(limiter.pausedUntil).toBe(25_000.5);
  });

  it("reports what it found through the observe event", () => {
    const limiter = new RateLimiter({ clock: new FakeClock() });
    const seen: unknown[] = [];
    limiter.on("observe", ({ headers }) => seen.push(Object.keys(headers.units)));
    limiter.observe({ "anthropic-ratelimit-requests-remaining": "3", "x-unrelated": "1" });
    expect(seen).toEqual([["requests"]]);
  });
});

/** A limiter of 1,000 tokens per second on the fake clock; `tokens(interval)` is its limit at another interval. */
function tokensPerSecond() {
  const clock = new FakeClock();
  const tokens = (interval: number) => [{ limit: 1_000, interval, unit: "tokens" }];
  const limiter = new RateLimiter({ limits: tokens(1_000), clock });
  return { clock, limiter, tokens, left: () => limiter.statistics().remaining["tokens"] as number };
}

describe("RateLimiter: run-time changes", () => {
  it("raising concurrency wakes waiters; lowering it below a waiter's weight rejects that waiter", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ concurrency: 2, clock });
    const held = [await limiter.acquire(), await limiter.acquire()];
    const one = limiter.acquire();
    const two = limiter.acquire({ weight: 2 });
    limiter.concurrency = 3;
    const permit = await one;
    limiter.concurrency = 1;
    const error = await rejectionOf(two);
    expect(error).toBeInstanceOf(RangeError);
    expect((error as Error).message).toMatch(/weight 2 is above the capacity 1 of .*\(its concurrency\)/);
    for (const p of [...held, permit]) p.release();
    expect(limiter.statistics().rejected).toBe(1);
  });

  it("changing a limit keeps what was spent and re-times the waiting head", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 10, interval: 1_000 }], clock });
    (await limiter.acquire({ cost: 10 })).release();
    const waiter = limiter.acquire({ cost: 2 });
    expect(clock.nextTimerAt).toBe(200);
    limiter.limits = [{ limit: 20, interval: 1_000 }];
    // 10 still spent out of a burst of 20: 10 available, the waiter starts at once.
    (await waiter).release();
    expect(clock.now()).toBe(0);
    expect(limiter.statistics().remaining).toEqual({ requests: 8 });
    limiter.limits = [{ limit: 20, interval: 1_000, burst: 5 }];
    expect(limiter.statistics().remaining).toEqual({ requests: -7 });
  });

  it("a call in flight while its limit changes (learned limits sharpening) still gets its unpaid estimate back", async () => {
    const { clock, limiter, tokens, left } = tokensPerSecond();
    // Two estimates of 500 and 300 stacked at 0; 600 ms refill the first and 100 of the second.
    const first = await limiter.acquire({ cost: { tokens: 500 } });
    const second = await limiter.acquire({ cost: { tokens: 300 } });
    clock.advance(600);
    // 200 units still ahead, at a tenth of the rate now, then at a fifth: they stay 200 ahead.
    limiter.limits = tokens(10_000);
    limiter.limits = tokens(5_000);
    expect(left()).toBe(800);
    // The first estimate was paid back by time before the change: nothing of it comes back.
    first.settle({ tokens: 0 });
    expect(left()).toBe(800);
    // The second's unpaid 200 come back in the new bucket (they used to be kept: spent for good), but
    // no more: settled at 0 after 200, its last 100 were paid back by time already.
    second.settle({ tokens: 200 });
    expect(left()).toBe(900);
    second.settle({ tokens: 0 });
    expect(left()).toBe(1_000);
    clock.advance(1_000);
    // 200 charged now, of which the bucket refills 100 (at 1,000 per 5 s) before the limit changes again.
    const third = await limiter.acquire({ cost: { tokens: 200 } });
    clock.advance(500);
    limiter.limits = tokens(1_000);
    expect(left()).toBe(900);
    third.settle({ tokens: 0 });
    expect(left()).toBe(1_000);
    for (const permit of [first, second, third]) permit.release();
  });

  it("a refund does not follow a charge across a pause, nor across more changes than the bucket remembers", async () => {
    const { clock, limiter, tokens, left } = tokensPerSecond();
    const paused = await limiter.acquire({ cost: { tokens: 500 } });
    limiter.limits = tokens(2_000);
    limiter.pause(100);
    // A pause empties the bucket until it ends (-50 now); the charge made before it refunds nothing.
    expect(left()).toBe(-50);
    paused.settle({ tokens: 0 });
    expect(left()).toBe(-50);
    clock.advance(2_100);
    const old = await limiter.acquire({ cost: { tokens: 500 } });
    for (let change = 1; change <= 9; change++) limiter.limits = tokens(2_000 + change);
    const spent = 1_000 - left();
    old.settle({ tokens: 0 });
    expect(1_000 - left()).toBe(spent);
    for (const permit of [paused, old]) permit.release();
  });

  it("a limit change that makes a queued cost impossible rejects it; a new limit starts full", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 10, interval: 1_000 }], clock });
    (await limiter.acquire({ cost: 10 })).release();
    const big = limiter.acquire({ cost: 8 });
    limiter.limits = [
      { limit: 5, interval: 1_000 },
      { limit: 100, interval: 1_000, unit: "tokens" },
    ];
    expect(await rejectionOf(big)).toBeInstanceOf(RangeError);
    expect(limiter.statistics().remaining).toEqual({ requests: -5, tokens: 100 });
    expect(clock.pendingTimers).toBe(0);
    limiter.minInterval = "1s";
    expect(limiter.minInterval).toBe(1_000);
    expect(limiter.limits).toEqual([
      { limit: 5, interval: 1_000, unit: "requests", burst: 5, algorithm: "token-bucket" },
      { limit: 100, interval: 1_000, unit: "tokens", burst: 100, algorithm: "token-bucket" },
    ]);
  });
});

describe("RateLimiter: bad configuration", () => {
  it("throws at construction, naming the option and the value", () => {
    const cases: [unknown, RegExp][] = [
      [{ limits: [{ limit: 0, interval: 1_000 }] }, /limits\[0\]\.limit must be a finite number > 0; got 0/],
      [{ limits: [{ limit: 5, interval: "5 parsecs" }] }, /limits\[0\]\.interval must be a duration.*5 parsecs/],
      [{ limits: [{ limit: 5, interval: 0 }] }, /limits\[0\]\.interval must be > 0/],
      [{ limits: [{ limit: 5 }] }, /limits\[0\]\.interval is required/],
      [{ limits: [{ limit: 5, interval: 10, burst: -1 }] }, /limits\[0\]\.burst .* got -1/],
      [{ limits: [{ limit: 5, interval: 10, algorithm: "leaky" }] }, /algorithm must be .* got "leaky"/],
      [
        { limits: [{ limit: 5, interval: 10, algorithm: "sliding-window", burst: 2 }] },
        /burst applies to token buckets/,
      ],
      [{ limits: [{ limit: 5, interval: 10, unit: "" }] }, /unit must be a non-empty string/],
      [{ limits: "fast" }, /limits must be an array/],
      [{ concurrency: -1 }, /concurrency must be an integer >= 0 or Infinity; got -1/],
      [{ concurrency: 0 }, /concurrency must be an integer >= 1/],
      [{ concurrency: 2.5 }, /concurrency .* got 2.5/],
      [{ minInterval: "soon" }, /minInterval must be a duration.*soon/],
      [{ refund: "yes" }, /refund must be a boolean/],
    ];
    for (const [options, message] of cases) {
      expect(() => new RateLimiter(options as never)).toThrow(message);
    }
  });

  it("rejects bad acquire options instead of throwing", async () => {
    const limiter = new RateLimiter({ concurrency: 2, clock: new FakeClock() });
    for (const options of [{ weight: 0 }, { priority: Number.NaN }, { timeout: -5 }]) {
      expect(await rejectionOf(limiter.acquire(options))).toBeInstanceOf(RangeError);
    }
    expect(await rejectionOf(limiter.acquire({ signal: "stop" as never }))).toBeInstanceOf(TypeError);
    expect(await rejectionOf(limiter.run("not a function" as never))).toBeInstanceOf(TypeError);
  });
});

describe("RateLimiter: real-clock timers", () => {
  /**
   * A clock whose timers fire 0.7 ms early (but never sooner than 0.3 ms after being armed), as Node's can
   * relative to performance.now() because they count from the event loop's cached, whole-ms time.
   */
  function earlyClock() {
    const fake = new FakeClock();
    return {
      fake,
      clock: {
        now: () => fake.now(),
        setTimeout: (callback: () => void, ms: number) => fake.setTimeout(callback, Math.max(0.3, ms - 0.7)),
        clearTimeout: (handle: unknown) => fake.clearTimeout(handle),
      },
    };
  }

  it("a timer that fires before the head is payable re-arms instead of admitting early", async () => {
    const { fake, clock } = earlyClock();
    const limiter = new RateLimiter({
      limits: [
        { limit: 4, interval: 1_000, burst: 1 },
        { limit: 2, interval: 300, unit: "tokens", algorithm: "sliding-window" },
      ],
      clock,
    });
    const starts: number[] = [];
    const all = Array.from({ length: 6 }, () =>
      limiter.run(
        () => {
          starts.push(fake.now());
        },
        { cost: { tokens: 1 } },
      ),
    );
    await fake.runAll(1_000);
    await Promise.all(all);
    // Never before the moment the bucket allows; late only by the timer's own lateness.
    const ideal = [0, 250, 500, 750, 1_000, 1_250];
    starts.forEach((at, index) => {
      expect(at).toBeGreaterThanOrEqual(ideal[index] as number);
      expect(at).toBeLessThan((ideal[index] as number) + 1);
    });
    expect(fake.pendingTimers).toBe(0);
  });
});

describe("RateLimiter: onIdle", () => {
  it("resolves once nothing is in flight and nobody waits", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 1, interval: 100 }], clock });
    await limiter.onIdle();
    const first = await limiter.acquire();
    const second = limiter.acquire();
    let idle = false;
    const done = limiter.onIdle().then(() => {
      idle = true;
    });
    first.release();
    await clock.advanceAsync(100);
    expect(idle).toBe(false);
    (await second).release();
    await done;
    expect(idle).toBe(true);
  });
});

describe("RateLimiter: events", () => {
  it("a listener that throws does not disturb the limiter; the error surfaces asynchronously", async () => {
    const limiter = new RateLimiter({ clock: new FakeClock() });
    const failure = new Error("listener bug");
    const surfaced = new Promise<unknown>((resolve) => {
      process.once("uncaughtException", resolve);
    });
    const seen: number[] = [];
    limiter.on("pause", () => {
      throw failure;
    });
    limiter.on("pause", ({ until }) => seen.push(until));
    limiter.pause(100);
    expect(seen).toEqual([100]);
    expect(limiter.pausedUntil).toBe(100);
    expect(await surfaced).toBe(failure);
  });
});

describe("RateLimiter: a cost unit no limit counts", () => {
  const limits = [
    { limit: 10, interval: 1000 },
    { limit: 1000, interval: 1000, unit: "tokens" },
  ];

  it("a unit a typo away from a counted one is refused, naming both (it would cost nothing)", async () => {
    const limiter = new RateLimiter({ limits, clock: new FakeClock() });
    for (const [cost, typed, meant] of [
      [{ tokenz: 5 }, "tokenz", "tokens"],
      [{ Tokens: 5 }, "Tokens", "tokens"],
      [{ tokesn: 5 }, "tokesn", "tokens"],
      [{ requets: 2 }, "requets", "requests"],
    ] as const) {
      const error = await rejectionOf(limiter.acquire({ cost }));
      expect(error).toBeInstanceOf(TypeError);
      expect((error as Error).message).toContain(`cost.${typed}: no limit counts "${typed}"; did you mean "${meant}"?`);
      expect(() => limiter.tryAcquire({ cost })).toThrow(TypeError);
    }
    // Nothing was charged by the refused calls.
    expect(limiter.statistics().remaining).toEqual({ requests: 10, tokens: 1000 });
  });

  it("a unit far from every counted one is free: one cost record may serve limiters counting different units", async () => {
    const requestsOnly = new RateLimiter({ limits: [{ limit: 10, interval: 1000 }], clock: new FakeClock() });
    const permit = await requestsOnly.acquire({ cost: { tokens: 500, images: 2 } });
    expect(permit.cost).toEqual({ requests: 1, tokens: 500, images: 2 });
    permit.settle({ tokens: 700 });
    expect(requestsOnly.statistics().remaining).toEqual({ requests: 9 });
  });

  it("settle with a typo of a counted unit throws and changes nothing", async () => {
    const limiter = new RateLimiter({ limits, clock: new FakeClock() });
    const permit = await limiter.acquire({ cost: { tokens: 100 } });
    expect(() => permit.settle({ tokenz: 300 })).toThrow(
      /actual\.tokenz: no limit counts "tokenz"; did you mean "tokens"\?/,
    );
    expect(permit.cost).toEqual({ requests: 1, tokens: 100 });
    expect(limiter.statistics().remaining["tokens"]).toBe(900);
    // A later, correct settle still counts as the first one.
    permit.settle({ tokens: 50 });
    expect(limiter.statistics().settled.calls).toBe(1);
  });
});

describe("RateLimiter.readyIn: how long a cost would wait, for comparing limiters", () => {
  it("is 0 while the budget pays, then the refill time, for a backlog beyond the burst too", () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 2, interval: 1000 }], clock });
    // A fresh bucket: 2 now, a backlog of 4 when two more have refilled.
    expect(limiter.readyIn()).toBe(0);
    expect(limiter.readyIn(2)).toBe(0);
    expect(limiter.readyIn(4)).toBe(1000);
    limiter.tryAcquire()?.release();
    limiter.tryAcquire()?.release();
    expect(limiter.readyIn()).toBe(500);
    expect(limiter.readyIn({ requests: 3 })).toBe(1500);
    clock.advance(200);
    expect(limiter.readyIn()).toBe(300);
  });

  it("counts the pause and the spacing, and leaves the limiter unchanged", () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ minInterval: 100, clock });
    limiter.tryAcquire()?.release();
    expect(limiter.readyIn()).toBe(100);
    limiter.pause(2000);
    expect(limiter.readyIn()).toBe(2000);
    expect(limiter.readyIn()).toBe(2000);
    expect(limiter.statistics().granted).toBe(1);
  });

  it("refuses a bad cost as acquire does, naming it", () => {
    const limiter = new RateLimiter({ limits: [{ limit: 10, interval: 1000, unit: "tokens" }] });
    expect(() => limiter.readyIn(-1)).toThrow(RangeError);
    expect(() => limiter.readyIn({ tokenz: 5 })).toThrow(/tokenz/);
  });
});
