/**
 * SharedRateLimiter in one thread, on a FakeClock: the reservation arithmetic, exactly. The same limiter
 * across real workers is in workers.test.ts.
 */
import fc from "fast-check";
import { Semaphore } from "sluice";
import { FakeClock } from "sluice/testing";
import { SharedRateLimiter } from "sluice/threads";
import { describe, expect, it } from "vitest";

function watch<T>(promise: Promise<T>): { settled: () => boolean; value: () => T | undefined } {
  let done = false;
  let result: T | undefined;
  promise.then(
    (value) => {
      done = true;
      result = value;
    },
    () => {
      done = true;
    },
  );
  return { settled: () => done, value: () => result };
}

describe("SharedRateLimiter", () => {
  it("starts full: a burst at once, then one call per emission interval", async () => {
    const clock = new FakeClock();
    const limiter = new SharedRateLimiter({ limits: [{ limit: 10, interval: "1s", burst: 3 }], clock });
    const calls = Array.from({ length: 5 }, () => watch(limiter.acquire()));
    await clock.advanceAsync(0);
    expect(calls.map((call) => call.settled())).toEqual([true, true, true, false, false]);
    await clock.advanceAsync(99);
    expect(calls[3]?.settled()).toBe(false);
    await clock.advanceAsync(1);
    expect(calls[3]?.settled()).toBe(true);
    expect(calls[4]?.settled()).toBe(false);
    await clock.advanceAsync(100);
    expect(calls[4]?.settled()).toBe(true);
    expect(calls.map((call) => call.value()?.scheduledAt)).toEqual([0, 0, 0, 100, 200]);
  });

  it("every limit must admit a call, and all are charged together", async () => {
    const clock = new FakeClock();
    const limiter = new SharedRateLimiter({
      limits: [
        { limit: 100, interval: "1m" },
        { limit: 1_000, interval: "1m", unit: "tokens" },
      ],
      clock,
    });
    const first = watch(limiter.acquire({ cost: { tokens: 1_000 } }));
    const second = watch(limiter.acquire({ cost: { tokens: 600 } }));
    await clock.advanceAsync(0);
    expect(first.settled()).toBe(true);
    expect(second.settled()).toBe(false);
    // 600 tokens at 1000 per minute come back after 36 s.
    await clock.advanceAsync(35_999);
    expect(second.settled()).toBe(false);
    await clock.advanceAsync(1);
    expect(second.settled()).toBe(true);
    // A token bucket refills to its burst and no further: 100 requests, minus the one just started.
    expect(limiter.remaining().requests).toBeCloseTo(99, 6);
    expect(limiter.remaining().tokens).toBeCloseTo(0, 6);
  });

  it("a wait longer than the timeout is refused at once and gives its place back", async () => {
    const clock = new FakeClock();
    const limiter = new SharedRateLimiter({ limits: [{ limit: 1, interval: 1_000 }], clock });
    await limiter.acquire();
    await expect(limiter.acquire({ timeout: 500 })).rejects.toMatchObject({ name: "TimeoutError", timeout: 500 });
    await expect(limiter.acquire({ timeout: 0 })).rejects.toMatchObject({ name: "TimeoutError" });
    // The refused calls took nothing: the next call is due at 1000 ms, not later.
    const next = watch(limiter.acquire({ timeout: 1_000 }));
    await clock.advanceAsync(1_000);
    expect(next.value()?.scheduledAt).toBe(1_000);
  });

  it("an aborted waiter rejects with the signal's reason and returns its place when it was the last", async () => {
    const clock = new FakeClock();
    const limiter = new SharedRateLimiter({ limits: [{ limit: 1, interval: 1_000 }], clock });
    await limiter.acquire();
    const controller = new AbortController();
    const aborted = limiter.acquire({ signal: controller.signal });
    controller.abort(new Error("not needed"));
    await expect(aborted).rejects.toThrow("not needed");
    expect(limiter.waiting).toBe(0);
    const next = watch(limiter.acquire());
    await clock.advanceAsync(1_000);
    expect(next.value()?.scheduledAt).toBe(1_000);
  });

  it("two instances on one handle (as two threads) share one budget, in call order", async () => {
    const clock = new FakeClock();
    const first = new SharedRateLimiter({ limits: [{ limit: 2, interval: 1_000, burst: 1 }], clock });
    const second = SharedRateLimiter.from(structuredClone(first.handle), { clock });
    const calls = [first, second, first, second].map((limiter) => watch(limiter.acquire()));
    await clock.advanceAsync(2_000);
    expect(calls.map((call) => call.value()?.scheduledAt)).toEqual([0, 500, 1_000, 1_500]);
  });

  it("never admits more than burst + rate x span in any span, for random arrivals and costs", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 100, max: 2_000 }),
        fc.integer({ min: 10, max: 30 }),
        fc.array(fc.record({ gap: fc.integer({ min: 0, max: 300 }), cost: fc.integer({ min: 0, max: 10 }) }), {
          maxLength: 30,
        }),
        async (limit, interval, burst, arrivals) => {
          const clock = new FakeClock();
          const limiter = new SharedRateLimiter({ limits: [{ limit, interval, burst }], clock });
          const admitted: { at: number; cost: number }[] = [];
          const all: Promise<void>[] = [];
          for (const { gap, cost } of arrivals) {
            await clock.advanceAsync(gap);
            all.push(
              limiter.acquire({ cost }).then((permit) => {
                // Never granted before its scheduled start.
                if (clock.now() < permit.scheduledAt)
                  throw new Error(`granted at ${clock.now()} < ${permit.scheduledAt}`);
                admitted.push({ at: permit.scheduledAt, cost });
              }),
            );
          }
          // Long enough for every cost to be paid at the steady rate (1,000 rounds of 100 ms were not, for
          // a slow limit and heavy costs: the test then waited forever on the calls still queued).
          const needed = arrivals.reduce((sum, { cost }) => sum + cost, 0) / (limit / interval);
          for (let round = 0; round < needed / 100 + 10 && admitted.length < arrivals.length; round++)
            await clock.advanceAsync(100);
          await Promise.all(all);
          expect(admitted.length).toBe(arrivals.length);
          const rate = limit / interval;
          admitted.sort((a, b) => a.at - b.at);
          for (let i = 0; i < admitted.length; i++) {
            let cost = 0;
            for (let j = i; j < admitted.length; j++) {
              cost += (admitted[j] as { cost: number }).cost;
              const span = (admitted[j] as { at: number }).at - (admitted[i] as { at: number }).at;
              expect(cost).toBeLessThanOrEqual(burst + rate * span + 1e-6);
            }
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  it("statistics() has the core fields, and the admission step counts every grant, abort, timeout and refusal", async () => {
    const clock = new FakeClock();
    const limiter = new SharedRateLimiter({ limits: [{ limit: 1, interval: 1_000 }], clock, name: "api" });
    const held = await limiter.acquire({ weight: 2 });
    await expect(limiter.acquire({ signal: AbortSignal.abort(new Error("gone")) })).rejects.toThrow("gone");
    await expect(limiter.acquire({ timeout: 0 })).rejects.toMatchObject({ name: "TimeoutError" });
    await expect(limiter.acquire({ timeout: 500 })).rejects.toMatchObject({ name: "TimeoutError", timeout: 500 });
    await expect(limiter.acquire({ cost: 2 })).rejects.toThrow(/cost 2 requests is above the burst 1/);
    const controller = new AbortController();
    const aborted = limiter.acquire({ signal: controller.signal });
    const waiting = limiter.acquire();
    controller.abort(new Error("left"));
    await expect(aborted).rejects.toThrow("left");
    expect(limiter.statistics()).toEqual({
      name: "api",
      capacity: Number.POSITIVE_INFINITY,
      available: Number.POSITIVE_INFINITY,
      inUse: 2,
      waiting: 1,
      granted: 1,
      aborted: 2,
      timedOut: 2,
      rejected: 1,
      // Booked to 3 s: the permit held (0 s), the aborted waiter's unused stretch (1 s), the waiter (2 s).
      remaining: { requests: -2 },
    });
    held.release();
    // The aborted waiter had someone booked behind it: its stretch stays unused, so the next is due at 2 s.
    await clock.advanceAsync(2_000);
    expect((await waiting).scheduledAt).toBe(2_000);
    expect(limiter.statistics()).toMatchObject({ inUse: 1, waiting: 0, granted: 2 });
    expect(clock.pendingTimers).toBe(0);
  });

  it("a permit's weight is the weight asked for (not its cost), counted in inUse until released", async () => {
    const limiter = new SharedRateLimiter({
      limits: [
        { limit: 10, interval: "1s" },
        { limit: 1_000, interval: "1s", unit: "tokens" },
      ],
    });
    const heavy = await limiter.acquire({ weight: 3, cost: { tokens: 500 } });
    const light = await limiter.acquire({ cost: { tokens: 100 } });
    expect([heavy.weight, light.weight]).toEqual([3, 1]);
    expect(limiter.inUse).toBe(4);
    heavy.release();
    expect(() => heavy.release()).toThrow(/already released/);
    light[Symbol.dispose]();
    expect(limiter.inUse).toBe(0);
  });

  it("run calls fn(signal, permit) and gives the permit back however fn ends", async () => {
    const limiter = new SharedRateLimiter({ limits: [{ limit: 10, interval: "1s" }] });
    const scheduled = await limiter.run((_signal, permit) => permit.scheduledAt);
    expect(typeof scheduled).toBe("number");
    await expect(
      limiter.run(() => {
        throw new Error("failed");
      }),
    ).rejects.toThrow("failed");
    expect(limiter.inUse).toBe(0);
    await expect(limiter.run(5 as never)).rejects.toBeInstanceOf(TypeError);
  });

  it("bad options get the same error, class and message, as from every other Limiter", async () => {
    const limiter = new SharedRateLimiter({ limits: [{ limit: 10, interval: "1s" }] });
    const semaphore = new Semaphore(10);
    const bad = [{ weight: 0 }, { weight: "2" }, { priority: Number.NaN }, { timeout: -1 }, { signal: {} }, null];
    for (const options of bad) {
      const [ours, theirs] = await Promise.all(
        [limiter.acquire(options as never), semaphore.acquire(options as never)].map((promise) =>
          promise.then(
            () => undefined,
            (error: Error) => `${error.name}: ${error.message}`,
          ),
        ),
      );
      expect(ours).toBeDefined();
      expect(ours).toBe(theirs);
    }
  });

  it("bad input fails at once and names the value", async () => {
    expect(() => new SharedRateLimiter({ limits: [] })).toThrow(TypeError);
    expect(() => new SharedRateLimiter({ limits: [{ limit: 0, interval: 1_000 }] })).toThrow(/limit.*0/);
    expect(() => new SharedRateLimiter({ limits: [{ limit: 1, interval: "5 parsecs" }] })).toThrow(/5 parsecs/);
    expect(
      () =>
        new SharedRateLimiter({
          limits: [
            { limit: 1, interval: 1 },
            { limit: 2, interval: 1 },
          ],
        }),
    ).toThrow(/requests.*twice/);
    const limiter = new SharedRateLimiter({ limits: [{ limit: 10, interval: "1s", burst: 4 }] });
    const tooMuch = limiter.acquire({ cost: 5 });
    await expect(tooMuch).rejects.toThrow(/5.*4/);
    // A unit no limit counts is free unless it is a typo of a counted one (the rule RateLimiter follows).
    await expect(limiter.acquire({ cost: { requets: 1 } })).rejects.toThrow(/did you mean "requests"/);
    await expect(limiter.acquire({ cost: -1 })).rejects.toThrow(RangeError);
    await expect(limiter.acquire({ timeout: Number.NaN })).rejects.toThrow(RangeError);
    await expect(limiter.acquire({ signal: AbortSignal.abort(new Error("gone")) })).rejects.toThrow("gone");
  });
});

describe("SharedRateLimiter: a cost unit no limit counts (the same rule as RateLimiter)", () => {
  const limits = [
    { limit: 10, interval: "1s" },
    { limit: 1000, interval: "1s", unit: "tokens" },
  ];

  it("a typo of a counted unit rejects with a TypeError naming both; a far-off unit is free", async () => {
    const limiter = new SharedRateLimiter({ limits, clock: new FakeClock() });
    const error = await limiter.acquire({ cost: { tokenz: 5 } }).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toContain('cost.tokenz: no limit counts "tokenz"; did you mean "tokens"?');
    const permit = await limiter.acquire({ cost: { tokens: 100, images: 3 } });
    permit.release();
    expect(limiter.remaining()).toEqual({ requests: 9, tokens: 900 });
  });
});
