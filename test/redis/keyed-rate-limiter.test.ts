/**
 * RedisKeyedRateLimiter: one script for any key, levels charged all or nothing, keys expiring in Redis
 * once refilled — against a real redis-server.
 */
import { TimeoutError } from "sluice";
import { RedisKeyedRateLimiter } from "sluice/redis";
import { describe, expect, it } from "vitest";
import { useRedisServer } from "../support/use-redis-server.js";
import { bucketFigures, rateExcess } from "./fault-checks.js";
import { admittedBy, Worker } from "./processes.js";

const served = useRedisServer();
let counter = 0;

const tenantOf = (key: string) => key.split("/")[0] as string;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("RedisKeyedRateLimiter", () => {
  it("each key has its own budget; a refusal at any level charges no level", async () => {
    const name = `keyed-${++counter}`;
    const limiter = new RedisKeyedRateLimiter(served.redis, {
      name,
      limits: [{ limit: 2, interval: "1m" }],
      levels: [
        { name: "global", limits: [{ limit: 5, interval: "1m" }] },
        { name: "tenant", limits: [{ limit: 3, interval: "1m" }], key: tenantOf },
      ],
    });
    const now = { timeout: 0 };
    await limiter.acquire("acme/alice", now);
    await limiter.acquire("acme/alice", now);
    await expect(limiter.acquire("acme/alice", now)).rejects.toBeInstanceOf(TimeoutError); // her own limit
    await limiter.acquire("acme/bob", now);
    const bobKey = `sluice:{${name}}:key:acme/bob|tat:requests:2/60000:2`;
    const before = await served.redis.get(bobKey);
    expect(before).not.toBeNull();
    await expect(limiter.acquire("acme/bob", now)).rejects.toBeInstanceOf(TimeoutError); // acme is spent
    expect(await served.redis.get(bobKey)).toEqual(before); // bob's own limit was not charged for it
    await limiter.acquire("globex/carol", now);
    await limiter.acquire("globex/carol", now); // global now spent (5)
    await expect(limiter.acquire("initech/dave", now)).rejects.toBeInstanceOf(TimeoutError);
    expect(
      await served.redis.exists(
        `sluice:{${name}}:key:initech/dave|tat:requests:2/60000:2`,
        `sluice:{${name}}:level:tenant:initech|tat:requests:3/60000:3`,
      ),
    ).toBe(0);
    expect(limiter.statistics()).toMatchObject({ granted: 5, timedOut: 3, waiting: 0 });
  });

  it("calls asked in one tick share one script, decided one after the other, each all or nothing", async () => {
    const name = `keyed-${++counter}`;
    const limiter = new RedisKeyedRateLimiter(served.redis, {
      name,
      limits: [{ limit: 2, interval: "1m" }],
      levels: [{ name: "tenant", limits: [{ limit: 3, interval: "1m" }], key: tenantOf }],
    });
    const keys = ["acme/alice", "acme/alice", "acme/alice", "acme/bob", "acme/bob", "globex/carol", "free/zero"];
    const outcomes = await Promise.all(
      keys.map((key) =>
        limiter.acquire(key, { timeout: 0, cost: key === "free/zero" ? 0 : 1 }).then(
          (permit) => permit.admittedAt,
          (error: Error) => error.name,
        ),
      ),
    );
    // alice 2 (her limit), bob 1 (acme's 3 spent: his second charges nothing), carol 1, a free call 1.
    expect(outcomes.map((outcome) => typeof outcome)).toEqual([
      "number",
      "number",
      "string",
      "number",
      "string",
      "number",
      "number",
    ]);
    expect(new Set(outcomes.filter((outcome) => typeof outcome === "number")).size).toBe(1); // one TIME
    expect(limiter.statistics()).toMatchObject({ granted: 5, timedOut: 2, scripts: 1 });
    // bob's one admission: his bucket is charged one unit (30 s of tat ahead of Redis' now), not two.
    const [seconds] = await served.redis.time();
    const bobTat = Number(await served.redis.get(`sluice:{${name}}:key:acme/bob|tat:requests:2/60000:2`));
    expect(bobTat / 1e6 - Number(seconds)).toBeGreaterThan(29);
    expect(bobTat / 1e6 - Number(seconds)).toBeLessThan(31);
    // Costs 0 only: a script with no key at all.
    await expect(limiter.acquire("free/zero", { cost: 0 })).resolves.toBeDefined();
  });

  it("waits the exact time Redis names, and every bucket's key expires once refilled", async () => {
    const name = `keyed-${++counter}`;
    const limiter = new RedisKeyedRateLimiter(served.redis, {
      name,
      limits: [{ limit: 2, interval: 200 }],
      levels: [{ name: "global", limits: [{ limit: 100, interval: 200 }] }],
    });
    const started: number[] = [];
    const begin = performance.now();
    await Promise.all(
      Array.from({ length: 4 }, () => limiter.run("alice", () => started.push(performance.now() - begin))),
    );
    expect(started).toHaveLength(4);
    // Two at once, then one per 100 ms: the fourth no earlier than 200 ms - a clock's hair.
    expect(Math.max(...started)).toBeGreaterThanOrEqual(190);
    const key = `sluice:{${name}}:key:alice|tat:requests:2/200:2`;
    const ttl = await served.redis.pttl(key);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(1_300);
    await sleep(ttl + 50);
    expect(await served.redis.exists(key, `sluice:{${name}}:level:global:|tat:requests:100/200:100`)).toBe(0);
  });

  it("bad input: a cost above a level's burst names the level; bad keys and options", async () => {
    const limiter = new RedisKeyedRateLimiter(served.redis, {
      name: `keyed-${++counter}`,
      limits: [{ limit: 20_000, interval: "1m", unit: "tokens" }],
      levels: [{ name: "tenant", limits: [{ limit: 10_000, interval: "1m", unit: "tokens" }], key: tenantOf }],
    });
    await expect(limiter.acquire("acme/alice", { cost: { tokens: 15_000 } })).rejects.toThrow(
      /above the burst 10000 of the limit 10000 tokens per 60000 ms of level "tenant" key "acme" of Redis keyed rate limiter/,
    );
    await expect(limiter.acquire("", {})).rejects.toThrow(/key must not be empty/);
    await expect(limiter.acquire("a", { cost: { tokenz: 1 } })).rejects.toThrow(/tokenz/);
    expect(() => new RedisKeyedRateLimiter(served.redis, { name: "x", levels: [{ name: "t", limits: [] }] })).toThrow(
      /levels\[0\]\.limits must be a non-empty array/,
    );
    expect(
      () =>
        new RedisKeyedRateLimiter(served.redis, {
          name: "x",
          limits: [{ limit: 1, interval: 1, algorithm: "sliding-window" }],
        }),
    ).toThrow(/"sliding-window" is not supported by RedisKeyedRateLimiter/);
    expect(limiter.statistics().scripts).toBe(0);
  });
});

/** The most admissions above a token bucket's promise in any window of `times`: at most 0 when it holds. */
function worstExcess(times: readonly number[], limit: number, interval: number, burst: number): number {
  return rateExcess(bucketFigures(times, { limit, interval, burst }, []).worst);
}

describe("RedisKeyedRateLimiter across two processes", () => {
  it("every key's, tenant's and the global limit hold in every window of Redis time, with both processes served", async () => {
    const limits = { own: 4, tenant: 10, global: 24 };
    const tenants = ["acme", "globex", "initech"];
    const keys = tenants.flatMap((tenant) => Array.from({ length: 6 }, (_, user) => `${tenant}/u${user}`));
    const config = {
      mode: "keyed",
      port: served.server.port,
      name: `keyed-procs-${++counter}`,
      capacity: 1,
      leaseTtl: 1_000,
      callers: 6,
      durationMs: 2_000,
      keys,
      limits: [{ limit: limits.own, interval: 1_000, burst: 2 }],
      levels: [
        { name: "global", limits: [{ limit: limits.global, interval: 1_000, burst: 6 }] },
        { name: "tenant", limits: [{ limit: limits.tenant, interval: 1_000, burst: 3 }], byTenant: true },
      ],
    };
    const workers = [new Worker(config), new Worker(config)];
    await Promise.all(workers.map((worker) => worker.line("keyed", 20_000)));
    const admissions = workers.map((worker) => admittedBy(worker));
    for (const admitted of admissions) expect(admitted.length).toBeGreaterThan(10);
    const all = admissions.flat().sort((a, b) => a.at - b.at);
    const timesOf = (match: (key: string) => boolean) => all.filter(({ key }) => match(key)).map(({ at }) => at);
    expect(
      worstExcess(
        timesOf(() => true),
        limits.global,
        1_000,
        6,
      ),
    ).toBeLessThanOrEqual(0);
    for (const tenant of tenants) {
      expect(
        worstExcess(
          timesOf((key) => key.startsWith(`${tenant}/`)),
          limits.tenant,
          1_000,
          3,
        ),
      ).toBeLessThanOrEqual(0);
    }
    for (const key of keys)
      expect(
        worstExcess(
          timesOf((other) => other === key),
          limits.own,
          1_000,
          2,
        ),
      ).toBeLessThanOrEqual(0);
    // The binding limit is the global one (3 tenants x 10 > 24): it is used, not wasted, in 2 s of Redis time.
    const span = (all.at(-1)?.at as number) - (all[0]?.at as number);
    expect(all.length).toBeGreaterThanOrEqual(Math.floor(0.8 * (6 + (limits.global / 1_000) * span)));
  });
});
