/**
 * RedisKeyedSemaphore against a real redis-server: each key's capacity holds across two clients (two
 * "processes" as Redis sees them) and across real processes, keys are independent, an idle key is
 * forgotten in the process and its keys expire in Redis, and bad input is refused naming it.
 */
import { Redis } from "ioredis";
import { ClosedError, TimeoutError } from "sluice";
import { inspectRedis, RedisKeyedSemaphore } from "sluice/redis";
import { describe, expect, it } from "vitest";
import { processClock } from "../../src/threads/process-clock.js";
import { seededRandom } from "../support/seeded-random.js";
import { useRedisServer } from "../support/use-redis-server.js";
import { peak } from "./fault-checks.js";

const served = useRedisServer();
let counter = 0;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function second(): Redis {
  const other = new Redis(served.server.port, "127.0.0.1", { maxRetriesPerRequest: 1 });
  other.on("error", () => undefined);
  served.track({ close: async () => void other.disconnect() });
  return other;
}

describe("RedisKeyedSemaphore", () => {
  it("each key's capacity holds across two clients under random load; keys do not share it", async () => {
    const name = `keyed-sem-${++counter}`;
    const options = { name, capacityPerKey: 2, leaseTtl: 5_000, guardRestarts: false };
    const clients = [
      served.track(new RedisKeyedSemaphore(served.redis, options)),
      served.track(new RedisKeyedSemaphore(second(), options)),
    ];
    const keys = ["alice", "bob", "carol"];
    const held = new Map<string, { start: number; end: number; weight: number }[]>(keys.map((key) => [key, []]));
    const random = seededRandom(11);
    const caller = async (index: number) => {
      for (let round = 0; round < 10; round++) {
        const key = keys[Math.floor(random() * keys.length)] as string;
        await (clients[index % 2] as RedisKeyedSemaphore).run(key, async () => {
          const start = processClock.now();
          await sleep(1 + Math.floor(random() * 4));
          held.get(key)?.push({ start, end: processClock.now(), weight: 1 });
        });
      }
    };
    await Promise.all(Array.from({ length: 10 }, (_, index) => caller(index)));
    for (const key of keys) {
      expect(peak(held.get(key) ?? []).weight, key).toBeLessThanOrEqual(2);
    }
    // Keys are independent: the peak over all of them goes above one key's capacity.
    expect(peak([...held.values()].flat()).weight).toBeGreaterThan(2);
    expect(clients[0]?.statistics()).toMatchObject({ capacityPerKey: 2, inUse: 0, waiting: 0 });
    const granted = clients.reduce((sum, client) => sum + client.statistics().granted, 0);
    expect(granted).toBe(100);
  });

  it("a full key makes its callers wait (or time out) while another key is free", async () => {
    const limiter = served.track(
      new RedisKeyedSemaphore(served.redis, {
        name: `keyed-sem-${++counter}`,
        capacityPerKey: 1,
        guardRestarts: false,
      }),
    );
    const held = await limiter.acquire("alice");
    // `sluice inspect` finds each key in use as the semaphore `<name>/<key>`.
    const found = (await inspectRedis(served.redis)).find((snapshot) => snapshot.name === `${limiter.name}/alice`);
    expect(found).toMatchObject({
      kind: "semaphore",
      used: 1,
      capacity: 1,
      key: `sluice:{${limiter.name}}:k:alice:meta`,
    });
    // Its holders in `inspect()` carry the process's one id, whatever the key.
    expect((await limiter.inspect("alice")).holders.map((holder) => holder.client)).toEqual([limiter.client]);
    await expect(limiter.acquire("alice", { timeout: 50 })).rejects.toBeInstanceOf(TimeoutError);
    expect(await limiter.tryAcquire("alice")).toBeUndefined();
    const bob = await limiter.acquire("bob", { timeout: 1_000 });
    expect(bob.fencingToken).toBeGreaterThan(0);
    expect((await limiter.inspect("bob")).holders.map((holder) => holder.client)).toEqual([limiter.client]);
    const waiting = limiter.acquire("alice", { timeout: 5_000 });
    await held.release();
    await (await waiting).release();
    await bob.release();
  });

  it("an idle key is forgotten after idleAfter, and its keys expire in Redis", async () => {
    const name = `keyed-sem-${++counter}`;
    const limiter = served.track(
      new RedisKeyedSemaphore(served.redis, {
        name,
        capacityPerKey: 1,
        idleAfter: 100,
        leaseTtl: 500,
        keyTtl: 1_000,
        guardRestarts: false,
      }),
    );
    const permit = await limiter.acquire("alice");
    expect(limiter.keys()).toEqual(["alice"]);
    await sleep(250);
    expect(limiter.keys()).toEqual(["alice"]); // held: never forgotten
    await permit.release();
    await limiter.run("bob", () => undefined);
    await sleep(350);
    expect(limiter.keys()).toEqual([]);
    expect(limiter.statistics()).toMatchObject({ keys: 0, granted: 2, inUse: 0 });
    // All keys under one hash tag; they expire within keyTtl.
    expect((await served.redis.keys(`sluice:{${name}}:*`)).sort()).toEqual(
      [`sluice:{${name}}:clients`, `sluice:{${name}}:k:alice:meta`, `sluice:{${name}}:k:bob:meta`].sort(),
    );
    await sleep(1_100);
    expect(await served.redis.keys(`sluice:{${name}}*`)).toEqual([]);
    // And it comes back on the next use.
    await limiter.run("alice", () => undefined);
    expect(limiter.keys()).toEqual(["alice"]);
  });

  it("bad input is refused naming it; after close() every call rejects with ClosedError", async () => {
    const limiter = new RedisKeyedSemaphore(served.redis, { name: `keyed-sem-${++counter}`, capacityPerKey: 1 });
    await expect(limiter.acquire("")).rejects.toThrow(/key must not be empty/);
    await expect(limiter.acquire(42 as unknown as string)).rejects.toThrow(/key must be a string; got 42/);
    await expect(limiter.acquire("a".repeat(2_000))).rejects.toThrow(/at most 1024 characters/);
    await expect(limiter.acquire("a", { weight: 2 })).rejects.toBeInstanceOf(RangeError);
    expect(() => new RedisKeyedSemaphore(served.redis, { name: "x", capacityPerKey: 0 })).toThrow(
      /capacityPerKey must be an integer >= 1; got 0/,
    );
    expect(() => new RedisKeyedSemaphore(served.redis, { name: "", capacityPerKey: 1 })).toThrow(/name/);
    expect(() => new RedisKeyedSemaphore(served.redis, { name: "x", capacityPerKey: 1, leaseTtl: -1 })).toThrow(
      /leaseTtl/,
    );
    expect(() => new RedisKeyedSemaphore(served.redis, { name: "x", capacityPerKey: 1, idleAfter: "soon" })).toThrow(
      /idleAfter/,
    );
    expect(
      () =>
        new RedisKeyedSemaphore(served.redis, { name: "x", capacity: 1 } as unknown as {
          name: string;
          capacityPerKey: number;
        }),
    ).toThrow(/takes capacityPerKey \(permits per key\), not capacity; got capacity 1$/);
    await limiter.close();
    await expect(limiter.acquire("a")).rejects.toBeInstanceOf(ClosedError);
  });
});
