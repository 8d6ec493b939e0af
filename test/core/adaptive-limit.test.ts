/**
 * AdaptiveLimiter: bad input, each algorithm's direction of travel, drops and their classifier, and the
 * promises that the limit never stalls at 0 and never grants above `max`. Fake clock throughout.
 */
import { AdaptiveLimiter, type AdaptivePermit, aimd, gradient2, vegas } from "sluice";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";

/** Runs `count` calls of `latency` ms at once, `rounds` times, and returns the limit after each round. */
async function drive(
  limiter: AdaptiveLimiter,
  clock: FakeClock,
  latency: (inFlight: number) => number,
  rounds: number,
) {
  const limits: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const permits: AdaptivePermit[] = [];
    for (let i = 0; i < limiter.capacity; i++) permits.push(await limiter.acquire());
    const took = latency(permits.length);
    await clock.advanceAsync(took);
    for (const permit of permits) permit.release();
    limits.push(limiter.capacity);
  }
  return limits;
}

describe("AdaptiveLimiter: bad input fails at once, naming the argument and value", () => {
  it("refuses min > max, a limit of 0, NaN bounds, unknown options and algorithms", () => {
    expect(() => new AdaptiveLimiter({ min: 8, max: 4 })).toThrow(
      new RangeError("min must be <= max; got min 8 and max 4"),
    );
    expect(() => new AdaptiveLimiter({ min: 0 })).toThrow(/min must be an integer >= 1 .*; got 0/);
    expect(() => new AdaptiveLimiter({ max: 0 })).toThrow(/max must be an integer >= 1 .*; got 0/);
    expect(() => new AdaptiveLimiter({ max: Number.NaN })).toThrow(RangeError);
    expect(() => new AdaptiveLimiter({ max: "8" as never })).toThrow(TypeError);
    expect(() => new AdaptiveLimiter({ initial: Number.NaN })).toThrow(/initial must be a finite number; got NaN/);
    expect(() => new AdaptiveLimiter({ maxx: 8 } as never)).toThrow(/unknown option "maxx" .*did you mean "max"/);
    expect(() => new AdaptiveLimiter({ algorithm: "gradiant" as never })).toThrow(/algorithm must be .*got "gradiant"/);
    expect(() => new AdaptiveLimiter({ algorithm: {} as never })).toThrow(TypeError);
    expect(() => new AdaptiveLimiter({ isDrop: true as never })).toThrow(/isDrop must be a function/);
    expect(() => aimd({ backoffRatio: 1 })).toThrow(/backoffRatio must be a number in \[0.5, 1\); got 1/);
    expect(() => gradient2({ smoothing: 0 })).toThrow(/smoothing/);
    expect(() => vegas({ probeMultiplier: -1 })).toThrow(/probeMultiplier/);
  });

  it("refuses a NaN or negative reported latency, and a weight above max", async () => {
    const limiter = new AdaptiveLimiter({ max: 4 });
    const permit = await limiter.acquire();
    expect(() => permit.reportLatency(Number.NaN)).toThrow(
      /latency must be a finite number of milliseconds >= 0; got NaN/,
    );
    expect(() => permit.reportLatency(-1)).toThrow(RangeError);
    permit.release();
    await expect(limiter.acquire({ weight: 5 })).rejects.toThrow(RangeError);
    expect(limiter.statistics().samples).toBe(1);
  });

  it("starts at `initial` clamped to [min, max]", () => {
    expect(new AdaptiveLimiter({ min: 2, max: 5, initial: 50 }).capacity).toBe(5);
    expect(new AdaptiveLimiter({ min: 2, max: 5, initial: 0 }).capacity).toBe(2);
    expect(new AdaptiveLimiter().capacity).toBe(10);
    expect(new AdaptiveLimiter().statistics().algorithm).toBe("vegas");
  });
});

describe("AdaptiveLimiter: the algorithms move the limit the right way", () => {
  it("aimd: +1 per saturated success, x0.9 per drop, and each change is an event and in statistics", async () => {
    const clock = new FakeClock();
    const limiter = new AdaptiveLimiter({ algorithm: "aimd", initial: 10, clock });
    const events: { previous: number; limit: number }[] = [];
    limiter.on("limit", ({ previous, limit }) => events.push({ previous, limit }));
    const permits = await Promise.all(Array.from({ length: 10 }, () => limiter.acquire()));
    // The first granted saw 1 in flight: not saturated, so it teaches nothing (Netflix: inFlight x 2 >= limit).
    permits[0]?.release();
    expect(limiter.capacity).toBe(10);
    for (const permit of permits.slice(8)) permit.release();
    expect(limiter.capacity).toBe(12);
    permits[7]?.dropped();
    permits[7]?.release();
    expect(limiter.capacity).toBe(10); // 12 x 0.9 = 10.8
    expect(events).toEqual([
      { previous: 10, limit: 11 },
      { previous: 11, limit: 12 },
      { previous: 12, limit: 10 },
    ]);
    expect(limiter.statistics()).toMatchObject({ algorithm: "aimd", samples: 4, drops: 1, changes: 3, capacity: 10 });
  });

  it("gradient: grows while latency holds, shrinks once latency climbs (a queue at the service)", async () => {
    const clock = new FakeClock();
    const limiter = new AdaptiveLimiter({ algorithm: "gradient", max: 200, clock });
    const growing = await drive(limiter, clock, () => 20, 6);
    expect(growing.at(-1)).toBeGreaterThan(growing[0] as number);
    // A service of capacity 16: beyond it, latency grows with the queue.
    // Its long-term average still remembers 20 ms: the gradient falls to its floor (0.5) and the limit with it.
    const limits = await drive(limiter, clock, (n) => 20 * Math.max(1, n / 16), 3);
    expect(limits[0]).toBeLessThan((growing.at(-1) as number) * 0.7);
    expect(limiter.statistics().estimates.longLatency).toBeGreaterThan(20);
  });

  it("gradient: a drop backs off at once (a 503 answers fast and would otherwise read as no queue)", async () => {
    const limiter = new AdaptiveLimiter({ algorithm: "gradient", initial: 20 });
    const permit = await limiter.acquire();
    permit.dropped();
    permit.release();
    expect(limiter.capacity).toBe(18);
  });

  it("vegas: grows without a queue, shrinks with one", async () => {
    const clock = new FakeClock();
    const limiter = new AdaptiveLimiter({ algorithm: "vegas", max: 200, clock });
    const growing = await drive(limiter, clock, () => 20, 5);
    expect(growing.at(-1)).toBeGreaterThan(10);
    const limits = await drive(limiter, clock, (n) => 20 * Math.max(1, n / 16), 60);
    expect(Math.max(...limits.slice(10))).toBeLessThan(growing.at(-1) as number);
    expect(limiter.statistics().estimates.noLoadLatency).toBeGreaterThanOrEqual(20);
  });

  it("a reported latency is used instead of the time from grant to release", async () => {
    const seen: number[] = [];
    const limiter = new AdaptiveLimiter({
      algorithm: {
        name: "spy",
        update: (limit, { latency }) => {
          seen.push(latency);
          return limit;
        },
      },
    });
    const permit = await limiter.acquire();
    permit.reportLatency(123);
    permit.release();
    expect(seen).toEqual([123]);
  });
});

describe("AdaptiveLimiter: run() measures, and classifies errors", () => {
  it("measures grant to settle, and counts an isDrop error as a drop; other errors give no sample", async () => {
    const clock = new FakeClock();
    const seen: { latency: number; dropped: boolean }[] = [];
    const limiter = new AdaptiveLimiter({
      clock,
      algorithm: {
        name: "spy",
        update: (limit, { latency, dropped }) => {
          seen.push({ latency, dropped });
          return limit;
        },
      },
      isDrop: (error) => (error as Error).message === "503",
    });
    const slow = limiter.run(async () => {
      await new Promise<void>((resolve) => clock.setTimeout(resolve, 30));
      return "ok";
    });
    await clock.advanceAsync(30);
    await expect(slow).resolves.toBe("ok");
    await expect(limiter.run(() => Promise.reject(new Error("503")))).rejects.toThrow("503");
    await expect(limiter.run(() => Promise.reject(new Error("404")))).rejects.toThrow("404");
    await expect(
      limiter.run(() => {
        throw new Error("503");
      }),
    ).rejects.toThrow("503");
    expect(seen).toEqual([
      { latency: 30, dropped: false },
      { latency: 0, dropped: true },
      { latency: 0, dropped: true },
    ]);
    expect(limiter.inUse).toBe(0);
  });

  it("a classifier that throws: the call counts as a drop, the caller still gets fn's error", async () => {
    const limiter = new AdaptiveLimiter({
      algorithm: "aimd",
      initial: 10,
      isDrop: () => {
        throw new Error("classifier bug");
      },
    });
    const uncaught: unknown[] = [];
    const original = globalThis.queueMicrotask;
    globalThis.queueMicrotask = (callback) =>
      original(() => {
        try {
          callback();
        } catch (error) {
          uncaught.push(error);
        }
      });
    try {
      await expect(limiter.run(() => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
      await flushMicrotasks();
    } finally {
      globalThis.queueMicrotask = original;
    }
    expect(limiter.statistics()).toMatchObject({ drops: 1, capacity: 9 });
    expect(uncaught).toEqual([new Error("classifier bug")]);
  });
});

describe("AdaptiveLimiter: never stalls at 0, never grants above max", () => {
  it("an algorithm that returns 0, a negative number, NaN or Infinity keeps the limit in [min, max]", async () => {
    const outputs = [0, -5, Number.NaN, Number.POSITIVE_INFINITY, 1e9];
    const limiter = new AdaptiveLimiter({
      min: 2,
      max: 6,
      algorithm: { name: "broken", update: () => outputs.shift() as number },
    });
    const seen: number[] = [];
    for (let i = 0; i < 5; i++) {
      (await limiter.acquire()).release();
      seen.push(limiter.capacity);
    }
    // NaN and Infinity are ignored (the limit stays); the rest are clamped.
    expect(seen).toEqual([2, 2, 2, 2, 6]);
  });

  it("a call heavier than the current limit (within max) is admitted alone instead of waiting forever", async () => {
    const limiter = new AdaptiveLimiter({ min: 1, max: 8, initial: 2 });
    const light = await limiter.acquire();
    const heavy = limiter.acquire({ weight: 5 });
    expect(limiter.waiting).toBe(1);
    light.release();
    const permit = await heavy;
    expect(permit.weight).toBe(5);
    expect(limiter.inUse).toBe(5);
    permit.release();
  });

  it("a limit that grows hands room to waiters at once", async () => {
    const limiter = new AdaptiveLimiter({
      algorithm: { name: "up", update: (limit) => limit + 2 },
      initial: 1,
      max: 3,
    });
    const first = await limiter.acquire();
    const waiters = [limiter.acquire(), limiter.acquire()];
    expect(limiter.waiting).toBe(2);
    first.release(); // limit 1 -> 3
    await Promise.all(waiters);
    expect(limiter.inUse).toBe(2);
    limiter.assertInvariants();
  });
});
