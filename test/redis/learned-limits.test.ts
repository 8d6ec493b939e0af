/**
 * RedisRateLimiter's `limits` setter (issue 20): limits set at run time — what limitedFetch does when it
 * learns them from headers — are the limits of every process sharing the limiter, so no process admits
 * with an idea of its own: two setting at once, one started later, Redis restarted empty.
 */
import { fileURLToPath } from "node:url";
import { RateLimiter } from "sluice";
import { RedisRateLimiter, type RedisRateLimiterOptions } from "sluice/redis";
import { startMockServer } from "sluice/testing";
import { describe, expect, it } from "vitest";
import { useRedisServer } from "../support/use-redis-server.js";
import { Worker } from "./processes.js";

const server = useRedisServer();
let counter = 0;

/** Two limiters of one name are two processes: each keeps its own view, and shares only what is in Redis. */
function processes(count: number, options: Partial<RedisRateLimiterOptions> = {}) {
  const name = `learned-${++counter}`;
  const make = () =>
    server.track(new RedisRateLimiter(server.redis, { name, limits: [{ limit: 100, interval: "1m" }], ...options }));
  return { name, all: Array.from({ length: count }, make), later: make };
}

/** How many calls of `cost` one after the other it admits now (timeout 0: none may wait). */
async function admitsNow(limiter: RedisRateLimiter, most: number, cost?: Record<string, number>): Promise<number> {
  for (let admitted = 0; admitted < most; admitted++) {
    const permit = await limiter.acquire({ timeout: 0, ...(cost && { cost }) }).catch(() => undefined);
    if (permit === undefined) return admitted;
  }
  return most;
}

describe("RedisRateLimiter limits set at run time", () => {
  it("refuses bad limits as RateLimiter does, naming the limit and the value", () => {
    const [limiter] = processes(1).all as [RedisRateLimiter];
    const local = new RateLimiter({ limits: [{ limit: 1, interval: "1s" }] });
    const bad: unknown[] = [
      "nope",
      [{ limit: 0, interval: "1m" }],
      [{ limit: 5, interval: "5 parsecs" }],
      [{ limit: 5, interval: "1m", burst: -1 }],
    ];
    for (const value of bad) {
      const theirs = (() => {
        try {
          local.limits = value as never;
        } catch (error) {
          return error as Error;
        }
      })();
      expect(theirs).toBeInstanceOf(Error);
      expect(() => {
        limiter.limits = value as never;
      }).toThrow(theirs as Error);
    }
    expect(() => {
      limiter.limits = [{ limit: 5, interval: "1m", algorithm: "sliding-window" }];
    }).toThrow(/limits\[0\]\.algorithm "sliding-window" is not supported by RedisRateLimiter/);
    expect(() => {
      limiter.limits = [];
    }).toThrow(TypeError);
    // Nothing refused changed anything.
    expect(limiter.limits).toEqual([{ limit: 100, interval: 60_000, unit: "requests", burst: 100 }]);
  });

  it("limits set in one process are every process's at its next acquire: none admits beyond them", async () => {
    const { all, later } = processes(2);
    const [a, b] = all as [RedisRateLimiter, RedisRateLimiter];
    a.limits = [{ limit: 3, interval: "1m" }];
    expect(await admitsNow(a, 1)).toBe(1);
    // b was told 100 a minute and has not heard of the change: Redis answers it with the limits in force.
    expect(await admitsNow(b, 1)).toBe(1);
    expect(b.limits).toEqual(a.limits);
    expect(await admitsNow(a, 5)).toBe(1);
    expect(await admitsNow(b, 5)).toBe(0);
    // A process started later, told 100 a minute, admits with them from its first acquire.
    const c = later();
    expect(await admitsNow(c, 5)).toBe(0);
    expect(c.limits).toEqual([{ limit: 3, interval: 60_000, unit: "requests", burst: 3 }]);
    expect(c.statistics().limits).toEqual([{ limit: 3, interval: 60_000, unit: "requests", burst: 3 }]);
  });

  it("two processes setting limits at once: the last to reach Redis wins in both", async () => {
    const { all } = processes(2);
    const [a, b] = all as [RedisRateLimiter, RedisRateLimiter];
    a.limits = [{ limit: 50, interval: "1m" }];
    b.limits = [{ limit: 40, interval: "1m" }];
    await (await a.acquire()).release();
    await (await b.acquire()).release();
    await (await a.acquire()).release();
    expect(a.limits).toEqual([{ limit: 40, interval: 60_000, unit: "requests", burst: 40 }]);
    expect(b.limits).toEqual(a.limits);
    // 3 admitted against 50, then 40 (their spent budget carried over): 37 left between them.
    expect((await admitsNow(a, 20)) + (await admitsNow(b, 30))).toBe(37);
  });

  it("limits Redis lost (restarted empty) are installed again by a process that knew them", async () => {
    const { all, later } = processes(1);
    const [a] = all as [RedisRateLimiter];
    a.limits = [{ limit: 2, interval: "1m" }];
    expect(await admitsNow(a, 1)).toBe(1);
    await server.redis.flushall();
    expect(await admitsNow(a, 5)).toBe(2);
    const b = later();
    expect(await admitsNow(b, 5)).toBe(0);
    expect(b.limits).toEqual(a.limits);
  });

  it("a limit whose numbers change keeps what it has spent, in every process", async () => {
    const { all } = processes(2, { limits: [{ limit: 10, interval: "1m" }] });
    const [a, b] = all as [RedisRateLimiter, RedisRateLimiter];
    expect(await admitsNow(a, 20)).toBe(10);
    // 10 spent of a new 20: 10 left, not a fresh bucket of 20.
    a.limits = [{ limit: 20, interval: "1m" }];
    expect(await admitsNow(a, 6)).toBe(6);
    // 16 spent of a new 30, carried over from the limits in Redis to b's: 14 left.
    b.limits = [{ limit: 30, interval: "1m" }];
    expect((await admitsNow(b, 10)) + (await admitsNow(a, 10))).toBe(14);
  });

  it("a call admitted before its limits changed is settled in the limits in force: an overrun charged, a refund followed", async () => {
    const { all } = processes(1, { limits: [{ limit: 100, interval: "1m", unit: "tokens" }] });
    const [a] = all as [RedisRateLimiter];
    const before = await a.acquire({ cost: { tokens: 10 } });
    const refunded = await a.acquire({ cost: { tokens: 10 } });
    a.limits = [{ limit: 200, interval: "1m", unit: "tokens" }];
    await a.acquire({ cost: { tokens: 0 } });
    const left = async () => ((await a.inspect()).limits[0] as { remaining: number }).remaining;
    // 20 spent of a new 200; the first call then used 100 more than its estimate.
    before.settle({ tokens: 110 });
    for (let tries = 0; tries < 100 && (await left()) > 150; tries++) await new Promise((done) => setTimeout(done, 5));
    expect(await left()).toBeGreaterThan(75);
    expect(await left()).toBeLessThan(81);
    // The second call's charge was carried into the new bucket with the rest: its refund follows it there
    // (it used to be kept, and learned limits change often in a run's first seconds: throughput lost).
    refunded.settle({ tokens: 0 });
    for (let tries = 0; tries < 100 && (await left()) < 85; tries++) await new Promise((done) => setTimeout(done, 5));
    expect(await left()).toBeGreaterThan(85);
    expect(await left()).toBeLessThan(91);
  });

  it("a refund follows a charge through several processes' changes at its new rate, as far ahead as it sat", async () => {
    // 1 token a millisecond, then 1 every 10 ms: 500 ms of the first bucket are 5 s of the second.
    const tokens = (interval: number) => [{ limit: 1_000, interval, unit: "tokens" }];
    const { all } = processes(2, { limits: tokens(1_000) });
    const [a, b] = all as [RedisRateLimiter, RedisRateLimiter];
    const left = async () => ((await a.inspect()).limits[0] as { remaining: number }).remaining;
    const paid = await a.acquire({ cost: { tokens: 1 } });
    const charged = await a.acquire({ cost: { tokens: 500 } });
    a.limits = tokens(5_000);
    await a.acquire({ cost: { tokens: 0 } });
    b.limits = tokens(10_000);
    await b.acquire({ cost: { tokens: 0 } });
    await a.acquire({ cost: { tokens: 0 } });
    // About 500 spent (a few refilled at the first rates before the moves).
    const spent = 1_000 - (await left());
    expect(spent).toBeGreaterThan(450);
    expect(spent).toBeLessThanOrEqual(501);
    // The first call's token was paid back by time before the moves: settling it at 0 gives nothing back.
    paid.settle({ tokens: 0 });
    charged.settle({ tokens: 100 });
    for (let tries = 0; tries < 100 && (await left()) < 850; tries++) await new Promise((done) => setTimeout(done, 5));
    // 400 of the 500 ahead come back: followed at the new rate (without it, the 500 ms the charge was
    // ahead in the first bucket would be 50 tokens of the last).
    expect(1_000 - (await left())).toBeGreaterThanOrEqual(spent - 401);
    expect(1_000 - (await left())).toBeLessThan(spent - 390);
    for (const permit of [paid, charged]) permit.release();
  });

  it("a waiter whose cost the new limits can never pay is rejected with a RangeError, where they were set or taken", async () => {
    const { all } = processes(2, {
      limits: [
        { limit: 1, interval: "200ms" },
        { limit: 100, interval: "1m", unit: "tokens" },
      ],
    });
    const [a, b] = all as [RedisRateLimiter, RedisRateLimiter];
    await a.acquire({ cost: { tokens: 1 } });
    const here = a.acquire({ cost: { tokens: 60 } }).catch((error: unknown) => error);
    // b's waiter sleeps until the requests limit lets it ask again (200 ms).
    const there = b.acquire({ cost: { tokens: 50 } }).catch((error: unknown) => error);
    a.limits = [
      { limit: 1, interval: "200ms" },
      { limit: 10, interval: "1m", unit: "tokens" },
    ];
    expect(await here).toBeInstanceOf(RangeError);
    expect(String(await here)).toMatch(/60 tokens/);
    // Redis has them with a's next question; b takes them with its waiter's next.
    await a.acquire({ timeout: 0 }).catch(() => undefined);
    expect(await there).toBeInstanceOf(RangeError);
    expect(String(await there)).toMatch(/50 tokens/);
  });
});

describe("limitedFetch learning limits into a RedisRateLimiter across processes", () => {
  it("two processes told nothing learn the provider's limits: no 429 after the first window, by the provider's log", async () => {
    const MINUTE = 400;
    const provider = await startMockServer({
      requestsPerMinute: 40,
      tokensPerMinute: 1_600,
      minute: MINUTE,
      latency: { min: 5, max: 15 },
      completionTokens: { min: 2, max: 10 },
    });
    try {
      const script = fileURLToPath(new URL("./learning-worker.ts", import.meta.url));
      const config = {
        port: server.server.port,
        name: `learning-${++counter}`,
        url: `${provider.url}/v1/chat/completions`,
        count: 100,
      };
      const workers = [new Worker(config, { script }), new Worker(config, { script })];
      const done = (await Promise.all(workers.map((worker) => worker.line("done", 30_000)))) as {
        statuses: number[];
        limits: { unit: string; limit: number; interval: number }[];
      }[];
      for (const result of done) expect(result.statuses.every((status) => status === 200)).toBe(true);
      // The provider refuses what would exceed any of its windows: after the first, it refused nothing.
      const records = provider.requests;
      const start = Math.min(...records.map((record) => record.arrivedAt));
      const late = records.filter((record) => record.status === 429 && record.arrivedAt >= start + MINUTE);
      expect(late).toEqual([]);
      // Both admit with the same limits, the provider's to within the rounding towards slower.
      const [first, second] = done as [(typeof done)[0], (typeof done)[0]];
      expect(second.limits).toEqual(first.limits);
      expect(first.limits.map(({ unit, limit }) => `${limit} ${unit}`).sort()).toEqual(["1600 tokens", "40 requests"]);
      for (const limit of first.limits) {
        expect(limit.interval).toBeGreaterThanOrEqual(MINUTE);
        expect(limit.interval).toBeLessThan(MINUTE * 1.25);
      }
      expect(provider.summary().outcomes.ok).toBe(200);
      await Promise.all(workers.map((worker) => worker.exited));
    } finally {
      await provider.close();
    }
  }, 30_000);
});
