/**
 * Faults are part of the contract (DESIGN.md): after a Redis restart or a FLUSHALL, every caller that was
 * waiting is still served, in its process's order, or told why not; nobody waits forever; a permit Redis
 * no longer counts is reported lost; and the restart guard never ends before a full lease has passed
 * since the server's latest possible start.
 */

import { Redis } from "ioredis";
import { LeaseLostError } from "sluice";
import { type RedisPermit, RedisSemaphore, type RedisSemaphoreOptions } from "sluice/redis";
import { describe, expect, it } from "vitest";
import { RedisServer } from "../support/redis-server.js";
import { useRedisServer } from "../support/use-redis-server.js";

const context = useRedisServer();
let counter = 0;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function semaphore(name: string, options: Partial<RedisSemaphoreOptions> = {}): RedisSemaphore {
  return context.track(
    new RedisSemaphore(context.redis, { name, capacity: 1, leaseTtl: 600, guardRestarts: false, ...options }),
  );
}

/** Waits for `permit`, records its caller's label, and releases it a little later. */
async function takeTurn(order: string[], label: string, waiting: Promise<RedisPermit>): Promise<void> {
  const permit = await waiting;
  order.push(label);
  await sleep(5);
  await permit.release();
}

/**
 * Process A has two callers queued behind B's permit; the state disappears; A's third caller then reaches
 * the empty server first and recreates it. Before, A's two earlier callers waited forever.
 */
async function queuedAcrossLostState(name: string, lose: () => Promise<void>, options: Partial<RedisSemaphoreOptions>) {
  const a = semaphore(name, options);
  const b = semaphore(name, options);
  const held = await b.acquire();
  const order: string[] = [];
  const first = takeTurn(order, "a1", a.acquire({ timeout: 8_000 }));
  const second = takeTurn(order, "a2", a.acquire({ timeout: 8_000 }));
  await sleep(50);
  expect((await a.inspect()).waiters).toHaveLength(2);
  await lose();
  const third = takeTurn(order, "a3", a.acquire({ timeout: 8_000 }));
  await Promise.all([first, second, third]);
  expect(order).toEqual(["a1", "a2", "a3"]);
  // B's permit is gone with the state: B is told at its next check-in (a third of the lease), and its
  // release says so.
  const deadline = performance.now() + 600 / 3 + 300;
  while (!held.leaseLost && performance.now() < deadline) await sleep(10);
  expect(held.leaseLost).toBe(true);
  await expect(held.release()).rejects.toBeInstanceOf(LeaseLostError);
}

describe("a state lost while callers wait", () => {
  it("after FLUSHALL, every caller queued before it is served, in its process's order", async () => {
    await queuedAcrossLostState(
      `flushed-${++counter}`,
      async () => {
        await context.redis.flushall();
      },
      {},
    );
  });

  it("after a restart (with the restart guard), every caller queued before it is served, in order", async () => {
    await queuedAcrossLostState(
      `restarted-${++counter}`,
      async () => {
        await context.server.restart();
      },
      { guardRestarts: true, commandTimeout: 2_000 },
    );
  });
});

describe("the restart guard", () => {
  it("never ends before a full lease has passed since the latest moment the server can have started", async () => {
    // Start the server late in a wall-clock second, and ask just after the next one began: Redis then
    // reports an uptime of 1 s although it has run for a fraction of that.
    while (Date.now() % 1000 < 850 || Date.now() % 1000 > 900) await sleep(5);
    const fresh = await RedisServer.start();
    const answeredAt = Date.now();
    const client = new Redis(fresh.port, "127.0.0.1");
    try {
      const nextSecond = (Math.floor(answeredAt / 1000) + 1) * 1000;
      while (Date.now() < nextSecond + 150) await sleep(5);
      const leaseTtl = 800;
      const guarded = new RedisSemaphore(client, { name: "guard-timing", capacity: 1, leaseTtl });
      const permit = await guarded.acquire({ timeout: 5_000 });
      const grantedAt = Date.now();
      // The server answered PING at `answeredAt`, so it started no later than that.
      expect(grantedAt).toBeGreaterThanOrEqual(answeredAt + leaseTtl);
      await permit.release();
      await guarded.close();
    } finally {
      client.disconnect();
      await fresh.stop();
    }
  });
});
