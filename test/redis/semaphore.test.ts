/**
 * RedisSemaphore behaviour that the shared Limiter suite cannot see: several processes (here: several
 * instances, each its own Redis client id), leases, fencing tokens, round trips, push wake-ups, key
 * expiry, inspection, and what happens when Redis is unreachable.
 */

import { Redis } from "ioredis";
import { LeaseLostError, Semaphore } from "sluice";
import {
  asRedisConnection,
  fromIoredis,
  inspectRedis,
  type RedisConnection,
  RedisMutex,
  type RedisPermit,
  RedisSemaphore,
  type RedisSemaphoreOptions,
  RedisUnavailableError,
} from "sluice/redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisServer } from "../support/redis-server.js";

let server: RedisServer;
let redis: Redis;
let counter = 0;
const open: RedisSemaphore[] = [];

beforeAll(async () => {
  server = await RedisServer.start();
  redis = new Redis(server.port, "127.0.0.1");
});

afterAll(async () => {
  await Promise.all(open.map((semaphore) => semaphore.close()));
  redis?.disconnect();
  await server?.stop();
});

function uniqueName(label: string): string {
  return `${label}-${++counter}`;
}

function semaphore(
  name: string,
  capacity: number,
  options: Partial<RedisSemaphoreOptions> = {},
  client: Redis | RedisConnection = redis,
) {
  const created = new RedisSemaphore(client, { name, capacity, leaseTtl: "2s", guardRestarts: false, ...options });
  open.push(created);
  return created;
}

/** A connection that counts the commands sent through it. */
function counting(client: Redis): { connection: RedisConnection; calls: string[]; acquires: () => number } {
  const calls: string[] = [];
  /** The ARGV 7 of each script call: "wait"/"try" for acquires, "renew"/"leave" for heartbeats. */
  const modes: unknown[] = [];
  const wrap = (inner: RedisConnection): RedisConnection =>
    asRedisConnection({
      evalsha: (sha, keys, args) => {
        calls.push("evalsha");
        modes.push(args[6]);
        return inner.evalsha(sha, keys, args);
      },
      eval: (script, keys, args) => {
        calls.push("eval");
        return inner.eval(script, keys, args);
      },
      subscribe: (channel, onMessage, onResubscribed) => {
        calls.push("subscribe");
        return inner.subscribe(channel, onMessage, onResubscribed);
      },
      unsubscribe: (channel) => inner.unsubscribe(channel),
      scan: (cursor, pattern, count) => inner.scan(cursor, pattern, count),
      duplicate: () => wrap(inner.duplicate()),
      disconnect: () => inner.disconnect(),
    });
  return {
    connection: wrap(fromIoredis(client)),
    calls,
    acquires: () => modes.filter((mode) => mode === "wait" || mode === "try").length,
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("RedisSemaphore across processes", () => {
  it("shares one capacity between processes and serves them in arrival order", async () => {
    const name = uniqueName("shared");
    const a = semaphore(name, 2);
    const b = semaphore(name, 2);
    const first = await a.acquire();
    const second = await b.acquire();
    expect(await b.tryAcquire()).toBeUndefined();
    const order: string[] = [];
    const waiters = [
      a.acquire().then((permit) => {
        order.push("a1");
        return permit;
      }),
      b.acquire().then((permit) => {
        order.push("b1");
        return permit;
      }),
      a.acquire().then((permit) => {
        order.push("a2");
        return permit;
      }),
    ];
    await sleep(30);
    await first.release();
    await second.release();
    const granted = await Promise.all(waiters.slice(0, 2));
    expect(order).toEqual(["a1", "b1"]);
    await granted[0]?.release();
    await (await waiters[2])?.release();
    await granted[1]?.release();
    expect(order).toEqual(["a1", "b1", "a2"]);
  });

  it("fencing tokens increase with every grant, whichever process gets it", async () => {
    const name = uniqueName("fencing");
    const a = semaphore(name, 1);
    const b = semaphore(name, 1);
    const tokens: number[] = [];
    for (let round = 0; round < 6; round++) {
      const permit = await (round % 2 === 0 ? a : b).acquire();
      tokens.push(permit.fencingToken as number);
      await permit.release();
    }
    for (let index = 1; index < tokens.length; index++)
      expect(tokens[index]).toBeGreaterThan(tokens[index - 1] as number);
    const snapshot = await a.inspect();
    expect(snapshot.fencingToken).toBe(tokens.at(-1));
  });

  it("an abandoned waiter leaves the Redis queue at once", async () => {
    const name = uniqueName("abandon");
    const a = semaphore(name, 1);
    const b = semaphore(name, 1);
    const held = await a.acquire();
    const controller = new AbortController();
    const waiting = b.acquire({ signal: controller.signal });
    await sleep(20);
    expect((await a.inspect()).waiters).toHaveLength(1);
    controller.abort(new Error("gone"));
    await expect(waiting).rejects.toThrow("gone");
    await sleep(20);
    expect((await a.inspect()).waiters).toHaveLength(0);
    await held.release();
  });

  it("a waiter that timed out in one process does not block another process behind it", async () => {
    const name = uniqueName("timeout");
    const a = semaphore(name, 1);
    const b = semaphore(name, 1);
    const held = await a.acquire();
    const timedOut = b.acquire({ timeout: 20 });
    const behind = a.acquire();
    await expect(timedOut).rejects.toMatchObject({ name: "TimeoutError" });
    await held.release();
    await (await behind).release();
  });
});

describe("RedisSemaphore round trips and wake-ups", () => {
  it("an uncontended acquire and a release are one script call each", async () => {
    const { connection, calls } = counting(redis);
    const limited = semaphore(uniqueName("round-trips"), 3, {}, connection);
    (await limited.acquire()).release();
    calls.length = 0;
    const permit = await limited.acquire();
    expect(calls).toEqual(["evalsha"]);
    await permit.release();
    expect(calls).toEqual(["evalsha", "evalsha"]);
  });

  it("a waiter is woken by push, not by polling: a long wait costs a bounded number of commands", async () => {
    const name = uniqueName("push");
    const holder = semaphore(name, 1);
    const { connection, calls } = counting(redis);
    const waiterSide = semaphore(name, 1, { leaseTtl: "3s" }, connection);
    const held = await holder.acquire();
    const waiting = waiterSide.acquire();
    await sleep(600);
    // The acquire, the subscription and the check-in once subscribed; a 10 ms poller would have sent
    // ~60 commands by now.
    expect(calls.length).toBeLessThanOrEqual(3);
    const releasedAt = performance.now();
    await held.release();
    const permit = await waiting;
    expect(performance.now() - releasedAt).toBeLessThan(50);
    await permit.release();
  });

  it("the semaphores made from one client share one notice connection, closed with the last of them", async () => {
    const connectionName = uniqueName("shared-notices");
    const own = new Redis(server.port, "127.0.0.1", { connectionName });
    /** This client's subscribed connections, as `sub=<channels>` counts. */
    const subscribed = async () => {
      const list = (await redis.call("CLIENT", "LIST", "TYPE", "pubsub")) as string;
      return list
        .split("\n")
        .filter((line) => line.includes(` name=${connectionName} `))
        .map((line) => Number(/ sub=(\d+) /.exec(line)?.[1]));
    };
    try {
      const names = [uniqueName("notices-a"), uniqueName("notices-b"), uniqueName("notices-c")];
      const holders = await Promise.all(names.map((name) => semaphore(name, 1).acquire()));
      const sharing = names.map((name) => new RedisSemaphore(own, { name, capacity: 1, guardRestarts: false }));
      const waiting = sharing.map((limited) => limited.acquire().catch((error: unknown) => error));
      for (const limited of sharing) await expect.poll(async () => (await limited.inspect()).waiters.length).toBe(1);
      // Three semaphores waiting, one connection listening on three channels.
      expect(await subscribed()).toEqual([3]);

      // Closing one leaves the others listening on the same connection.
      await sharing[0]?.close();
      expect(await waiting[0]).toBeInstanceOf(Error);
      await expect.poll(subscribed).toEqual([2]);
      await holders[1]?.release();
      const second = (await waiting[1]) as RedisPermit;
      expect(second.fencingToken).toBeGreaterThan(0);
      await second.release();

      // The last one to close takes the connection with it: nothing of ours keeps the process alive.
      await sharing[1]?.close();
      await expect.poll(subscribed).toEqual([1]);
      await sharing[2]?.close();
      await expect.poll(subscribed).toEqual([]);
      expect(await waiting[2]).toBeInstanceOf(Error);
      await Promise.all([holders[0]?.release(), holders[2]?.release()]);
    } finally {
      own.disconnect();
    }
  });
});

describe('RedisSemaphore notices: "sharded"', () => {
  it("grant notices travel by SPUBLISH on a shard channel, by push, next to plain ones on the same connection", async () => {
    const own = new Redis(server.port, "127.0.0.1");
    try {
      const [shardedName, plainName] = [uniqueName("sharded"), uniqueName("plain")];
      // Heartbeats and check-ins far away: within the test, only the notice can deliver the grant.
      const options = { notices: "sharded", leaseTtl: "30s", wakeTimeout: "60s" } as const;
      const holder = semaphore(shardedName, 1, options);
      const waiterSide = semaphore(shardedName, 1, options, own);
      const plainHolder = semaphore(plainName, 1);
      const plainWaiterSide = semaphore(plainName, 1, { leaseTtl: "30s", wakeTimeout: "60s" }, own);
      const [held, plainHeld] = await Promise.all([holder.acquire(), plainHolder.acquire()]);
      const waiting = waiterSide.acquire({ timeout: 5_000 });
      const plainWaiting = plainWaiterSide.acquire({ timeout: 5_000 });
      await expect.poll(async () => (await waiterSide.inspect()).waiters.length).toBe(1);
      await expect.poll(async () => (await plainWaiterSide.inspect()).waiters.length).toBe(1);
      const shardChannels = (await redis.call("PUBSUB", "SHARDCHANNELS", `*{${shardedName}}*`)) as string[];
      const plainChannels = (await redis.call("PUBSUB", "CHANNELS", `*{${shardedName}}*`)) as string[];
      expect(shardChannels).toHaveLength(2);
      expect(plainChannels).toEqual([]);
      expect(await redis.call("PUBSUB", "CHANNELS", `*{${plainName}}*`)).toHaveLength(2);

      const releasedAt = performance.now();
      await held.release();
      const permit = await waiting;
      expect(performance.now() - releasedAt).toBeLessThan(1_000);
      expect(permit.fencingToken).toBeGreaterThan(held.fencingToken as number);
      await plainHeld.release();
      await (await plainWaiting).release();
      await permit.release();
    } finally {
      own.disconnect();
    }
  });

  it('refuses anything but "publish" and "sharded", and a connection without ssubscribe says what it lacks', async () => {
    expect(() => semaphore(uniqueName("bad-notices"), 1, { notices: "spublish" as "sharded" })).toThrow(
      new TypeError('notices must be "publish" or "sharded"; got "spublish"'),
    );
    const plain = fromIoredis(redis);
    const withoutSharded = asRedisConnection({
      evalsha: (sha, keys, args) => plain.evalsha(sha, keys, args),
      eval: (script, keys, args) => plain.eval(script, keys, args),
      subscribe: (channel, onMessage, onResubscribed) => plain.subscribe(channel, onMessage, onResubscribed),
      unsubscribe: (channel) => plain.unsubscribe(channel),
      scan: (cursor, pattern, count) => plain.scan(cursor, pattern, count),
      duplicate: () => {
        const copy = plain.duplicate();
        return asRedisConnection({ ...copy, ssubscribe: undefined, sunsubscribe: undefined });
      },
      disconnect: () => undefined,
    });
    const name = uniqueName("no-ssubscribe");
    const held = await semaphore(name, 1).acquire();
    const limited = semaphore(name, 1, { notices: "sharded" }, withoutSharded);
    await expect(limited.acquire()).rejects.toThrow(/notices: "sharded" needs a connection with ssubscribe/);
    await held.release();
  });
});

describe("RedisSemaphore batching", () => {
  it("sends the requests of one tick as one script, and serves them in the order they were made", async () => {
    const name = uniqueName("burst");
    const holder = semaphore(name, 1);
    const held = await holder.acquire();
    const { connection, acquires } = counting(redis);
    const burst = semaphore(name, 1, {}, connection);
    const order: number[] = [];
    const waiters = Array.from({ length: 50 }, (_, index) =>
      burst.acquire({ priority: index === 49 ? 1 : 0 }).then(async (permit) => {
        order.push(index);
        await permit.release();
      }),
    );
    await expect.poll(async () => (await holder.inspect()).waiters.length).toBe(50);
    // One acquire script for the 50.
    expect(acquires()).toBe(1);
    await held.release();
    await Promise.all(waiters);
    // The higher priority first, then the others in the order they asked.
    expect(order).toEqual([49, ...Array.from({ length: 49 }, (_, index) => index)]);
    expect(await holder.inspect()).toMatchObject({ used: 0, waiters: [] });
  });

  it("a caller that leaves in the tick it asked never reaches Redis", async () => {
    const name = uniqueName("left-at-once");
    const holder = semaphore(name, 1);
    const held = await holder.acquire();
    const { connection, calls } = counting(redis);
    const other = semaphore(name, 1, {}, connection);
    const controller = new AbortController();
    const gone = other.acquire({ signal: controller.signal }).catch((error: unknown) => error);
    controller.abort(new Error("changed my mind"));
    expect(await gone).toMatchObject({ message: "changed my mind" });
    await sleep(20);
    expect(calls).toEqual([]);
    expect((await holder.inspect()).waiters).toEqual([]);
    await held.release();
  });
});

describe("RedisSemaphore leases", () => {
  it("a permit whose lease was lost aborts its signal and run rejects with LeaseLostError", async () => {
    const name = uniqueName("lost");
    const limited = semaphore(name, 1, { leaseTtl: 300 });
    const outcome = limited.run(
      (signal) =>
        new Promise((resolve) => {
          signal.addEventListener("abort", () => resolve(signal.reason), { once: true });
          // Another process (or an operator) evicts this process's lease, as if it had been frozen.
          void redis.zrem(`sluice:{${name}}:clients`, limited.client);
        }),
    );
    const error = await outcome.catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(LeaseLostError);
    // The lost permit is not counted twice: the capacity is whole again.
    const again = await limited.acquire({ timeout: 2_000 });
    await again.release();
  });

  it("a lease is renewed while the permit is held, longer than the lease itself", async () => {
    const name = uniqueName("renew");
    const limited = semaphore(name, 1, { leaseTtl: 150 });
    const permit = await limited.acquire();
    await sleep(500);
    expect(permit.signal.aborted).toBe(false);
    expect(permit.leaseLost).toBe(false);
    const snapshot = await limited.inspect();
    expect(snapshot.holders).toHaveLength(1);
    expect(snapshot.holders[0]?.leaseRemaining).toBeGreaterThan(0);
    await permit.release();
  });

  it("permits of a process that stopped renewing come back to the others when its lease ends", async () => {
    const name = uniqueName("crash");
    const { connection } = counting(redis);
    const doomed = new RedisSemaphore(connection, { name, capacity: 2, leaseTtl: 300, guardRestarts: false });
    await doomed.acquire({ weight: 2 });
    // Simulate a crash: this instance's timers stop, nothing is released or renewed.
    const internals = doomed as unknown as { lease: { stopTimers(): void }; settings: { closed: boolean } };
    internals.lease.stopTimers();
    internals.settings.closed = true;
    const survivor = semaphore(name, 2, { leaseTtl: 300 });
    const started = performance.now();
    const permit = await survivor.acquire({ weight: 2, timeout: 3_000 });
    const waited = performance.now() - started;
    expect(waited).toBeLessThan(300 + 150);
    await permit.release();
  });

  it("a waiter whose process died leaves the queue when its lease ends, and does not block the next", async () => {
    const name = uniqueName("dead-waiter");
    const holder = semaphore(name, 1, { leaseTtl: 300 });
    const held = await holder.acquire();
    const doomedClient = new Redis(server.port, "127.0.0.1");
    doomedClient.on("error", () => undefined);
    const doomed = new RedisSemaphore(doomedClient, { name, capacity: 1, leaseTtl: 300, guardRestarts: false });
    const lost = doomed.acquire().catch(() => undefined);
    await sleep(30);
    // The waiting process dies: its timers stop and its connections drop, as with kill -9.
    const internals = doomed as unknown as { lease: { stopTimers(): void }; settings: { closed: boolean } };
    internals.lease.stopTimers();
    internals.settings.closed = true;
    doomedClient.disconnect();
    const next = holder.acquire({ timeout: 3_000 });
    await sleep(30);
    expect((await holder.inspect()).waiters.map((waiter) => waiter.client)).toEqual([doomed.client, holder.client]);
    const releasedAt = performance.now();
    await held.release();
    // The dead waiter was first in line; its grant (or its ticket) goes when its lease does.
    const permit = await next;
    expect(performance.now() - releasedAt).toBeLessThan(300 + 200);
    expect((await holder.inspect()).clients.map((entry) => entry.client)).not.toContain(doomed.client);
    await permit.release();
    await lost;
  });

  it("a second release throws ReleasedError synchronously and a double dispose is harmless", async () => {
    const limited = semaphore(uniqueName("double"), 1);
    const permit = await limited.acquire();
    await permit.release();
    expect(() => permit.release()).toThrow(expect.objectContaining({ name: "ReleasedError" }));
    await permit[Symbol.asyncDispose]();
  });
});

describe("RedisSemaphore operations", () => {
  it("inspect shows holders with their leases, waiters in order and the fencing counter", async () => {
    const name = uniqueName("inspect");
    const a = semaphore(name, 3);
    const b = semaphore(name, 3);
    const heavy = await a.acquire({ weight: 2 });
    const light = await b.acquire();
    const waiting = [b.acquire({ weight: 2 }), a.acquire({ priority: 5 })];
    await sleep(30);
    const snapshot = await a.inspect();
    expect(snapshot.capacity).toBe(3);
    expect(snapshot.used).toBe(3);
    expect(snapshot.holders.map((holder) => [holder.weight, holder.client])).toEqual([
      [2, a.client],
      [1, b.client],
    ]);
    for (const holder of snapshot.holders) expect(holder.leaseRemaining).toBeGreaterThan(0);
    expect(snapshot.waiters.map((waiter) => [waiter.weight, waiter.priority, waiter.client])).toEqual([
      [1, 5, a.client],
      [2, 0, b.client],
    ]);
    expect(snapshot.fencingToken).toBe(light.fencingToken);
    const found = await inspectRedis(redis);
    expect(found.map((entry) => entry.name)).toContain(name);
    await heavy.release();
    await light.release();
    for (const permit of await Promise.all(waiting)) await permit.release();
  });

  it("every key it writes expires, so nothing is left behind", async () => {
    const name = uniqueName("ttl");
    const a = semaphore(name, 1, { keyTtl: "30s" });
    const b = semaphore(name, 1, { keyTtl: "30s" });
    const held = await a.acquire();
    const waiting = b.acquire();
    await sleep(20);
    await held.release();
    (await waiting).release();
    await sleep(20);
    const keys = await redis.keys(`sluice:{${name}}:*`);
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) {
      const ttl = await redis.pttl(key);
      expect(ttl, key).toBeGreaterThan(0);
      expect(ttl, key).toBeLessThanOrEqual(30_000);
    }
  });

  it("a RedisMutex admits one holder across processes", async () => {
    const name = uniqueName("mutex");
    const a = new RedisMutex(redis, { name, leaseTtl: "2s", guardRestarts: false });
    const b = new RedisMutex(redis, { name, leaseTtl: "2s", guardRestarts: false });
    let inside = 0;
    let most = 0;
    const work = async () => {
      inside++;
      most = Math.max(most, inside);
      await sleep(3);
      inside--;
    };
    await Promise.all(Array.from({ length: 10 }, (_, index) => (index % 2 ? a : b).runExclusive(work)));
    expect(most).toBe(1);
    expect(await a.tryLock()).toBeDefined();
    await a.close();
    await b.close();
  });
});

describe("RedisSemaphore when Redis is unreachable", () => {
  /** A client whose server has gone; with ioredis' defaults it queues commands and keeps reconnecting. */
  async function deadClient(offlineQueue = true) {
    const server = await RedisServer.start();
    const client = new Redis(server.port, "127.0.0.1", { enableOfflineQueue: offlineQueue });
    client.on("error", () => undefined);
    await new Promise((resolve) => client.once("ready", resolve));
    await server.stop();
    await sleep(50);
    return client;
  }

  it.each([true, false])(
    "fails closed with a RedisUnavailableError by default, quickly and without hanging (offline queue %s)",
    async (offlineQueue) => {
      const client = await deadClient(offlineQueue);
      const limited = semaphore(uniqueName("down"), 1, { commandTimeout: 300 }, client);
      const started = performance.now();
      await expect(limited.acquire()).rejects.toBeInstanceOf(RedisUnavailableError);
      await expect(limited.run(() => "never")).rejects.toBeInstanceOf(RedisUnavailableError);
      await expect(limited.acquire({ timeout: 0 })).rejects.toBeInstanceOf(RedisUnavailableError);
      expect(performance.now() - started).toBeLessThan(1_500);
      client.disconnect();
    },
  );

  it('onUnavailable "allow" admits without a fencing token; a Limiter fallback admits through it', async () => {
    const client = await deadClient();
    const allowing = semaphore(uniqueName("allow"), 1, { commandTimeout: 300, onUnavailable: "allow" }, client);
    const permit = await allowing.acquire();
    expect(permit.fencingToken).toBeUndefined();
    await permit.release();
    const local = new Semaphore(1);
    const falling = semaphore(uniqueName("fallback"), 5, { commandTimeout: 300, onUnavailable: local }, client);
    const first = await falling.acquire();
    expect(local.inUse).toBe(1);
    const second = falling.acquire();
    // Redis does not answer within commandTimeout (300 ms); then the fallback takes over.
    await sleep(450);
    expect(local.waiting).toBe(1);
    await first.release();
    await (await second).release();
    expect(local.inUse).toBe(0);
    client.disconnect();
  });
});

describe("RedisSemaphore restart guard", () => {
  it("after Redis lost its data, nothing is granted until one lease has passed since it started", async () => {
    const own = await RedisServer.start();
    const client = new Redis(own.port, "127.0.0.1");
    try {
      const name = uniqueName("guard");
      const limited = semaphore(name, 1, { leaseTtl: "2s", guardRestarts: true }, client);
      const started = performance.now();
      const permit = await limited.acquire({ timeout: 5_000 });
      // The server is brand new, so the first grant waits for the guard (up to one lease plus ~1 s of
      // uptime truncation), never less than the lease minus the time since the server started. The
      // lease is long enough that a slow start on a busy machine (seen: over 500 ms) still leaves a wait.
      expect(performance.now() - started).toBeGreaterThan(300);
      const snapshot = await limited.inspect();
      expect(snapshot.guardRemaining).toBe(0);
      await permit.release();
    } finally {
      client.disconnect();
      await own.stop();
    }
  });

  it("a wait the restart guard caused is discoverable: inspect() shows it and a timeout names it", async () => {
    const own = await RedisServer.start();
    const client = new Redis(own.port, "127.0.0.1");
    try {
      const name = uniqueName("guard-reason");
      const limited = semaphore(name, 1, { leaseTtl: "3s", guardRestarts: true }, client);
      const error = await limited.acquire({ timeout: 200 }).catch((caught: unknown) => caught);
      expect(error).toMatchObject({ name: "TimeoutError" });
      expect((error as Error).message).toMatch(/restart guard/);
      // So does `timeout: 0` ("only if free now") on a free semaphore, refused by the guard alone.
      const fresh = semaphore(uniqueName("guard-reason-now"), 1, { leaseTtl: "3s", guardRestarts: true }, client);
      const now = await fresh.acquire({ timeout: 0 }).catch((caught: unknown) => caught);
      expect(now).toMatchObject({ name: "TimeoutError" });
      expect((now as Error).message).toMatch(/restart guard/);
      const snapshot = await limited.inspect();
      expect(snapshot.guardRemaining).toBeGreaterThan(1_000);
      expect(snapshot.guardRemaining).toBeLessThanOrEqual(3_000 + 1_000 + 100);
      // Without the guard, the same wait is an ordinary timeout.
      const other = semaphore(uniqueName("no-guard"), 1, {}, client);
      const held = await other.acquire();
      const plain = await other.acquire({ timeout: 50 }).catch((caught: unknown) => caught);
      expect((plain as Error).message).not.toMatch(/restart guard/);
      const busyNow = await other.acquire({ timeout: 0 }).catch((caught: unknown) => caught);
      expect((busyNow as Error).message).not.toMatch(/restart guard/);
      await held.release();
    } finally {
      client.disconnect();
      await own.stop();
    }
  });
});
