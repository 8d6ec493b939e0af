/**
 * Regression tests from an adversarial review of sluice/redis: races with close(), the onUnavailable
 * fallbacks (a Limiter, "allow") on every path, capacity changes, a grant notice that overtakes a
 * registering acquire, and inspect() of unusual priorities.
 */

import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { Semaphore } from "sluice";
import {
  asRedisConnection,
  fromIoredis,
  type RedisConnection,
  RedisMutex,
  type RedisPermit,
  RedisRateLimiter,
  type RedisRateLimiterOptions,
  RedisSemaphore,
  type RedisSemaphoreOptions,
  RedisUnavailableError,
} from "sluice/redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisServer } from "../support/redis-server.js";

let server: RedisServer;
let redis: Redis;
let counter = 0;
const open: { close(): Promise<void> }[] = [];
const clients: Redis[] = [];

beforeAll(async () => {
  server = await RedisServer.start();
  redis = new Redis(server.port, "127.0.0.1");
});

afterAll(async () => {
  await Promise.all(open.map((limiter) => limiter.close()));
  redis?.disconnect();
  for (const client of clients) client.disconnect();
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

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `promise`'s value, or `"pending"` if it has not settled within `ms`. */
function within<T>(promise: Promise<T>, ms: number): Promise<T | "pending"> {
  return Promise.race([promise, sleep(ms).then(() => "pending" as const)]);
}

/** A client of a server that has gone (ioredis keeps reconnecting in the background). */
async function deadClient(): Promise<Redis> {
  const gone = await RedisServer.start();
  const client = new Redis(gone.port, "127.0.0.1");
  client.on("error", () => undefined);
  clients.push(client);
  await new Promise((resolve) => client.once("ready", resolve));
  await gone.stop();
  await sleep(50);
  return client;
}

/**
 * A connection over `redis` whose script calls fail, as if Redis could not be reached, while `down` is
 * set; `holdWaits` holds back the replies of queueing acquires until `releaseWaits()`.
 */
function flaky(client: Redis) {
  const control = {
    down: false,
    holdWaits: false,
    held: [] as (() => void)[],
    releaseWaits() {
      control.holdWaits = false;
      for (const release of control.held.splice(0)) release();
    },
  };
  const run = (reply: () => Promise<unknown>, args: readonly (string | number)[]) => {
    if (control.down) return Promise.reject(new Error("connect ECONNREFUSED (simulated)"));
    const answer = reply();
    // ACQUIRE's ARGV 7 is the mode.
    if (!control.holdWaits || args[6] !== "wait") return answer;
    return new Promise<void>((resolve) => control.held.push(resolve)).then(() => answer);
  };
  const wrap = (inner: RedisConnection): RedisConnection =>
    asRedisConnection({
      evalsha: (sha, keys, args) => run(() => inner.evalsha(sha, keys, args), args),
      eval: (script, keys, args) => run(() => inner.eval(script, keys, args), args),
      subscribe: (channel, onMessage, onResubscribed) => inner.subscribe(channel, onMessage, onResubscribed),
      unsubscribe: (channel) => inner.unsubscribe(channel),
      scan: (cursor, pattern, count) => inner.scan(cursor, pattern, count),
      duplicate: () => wrap(inner.duplicate()),
      disconnect: () => inner.disconnect(),
    });
  return { connection: wrap(fromIoredis(client)), control };
}

describe("RedisSemaphore: close() racing an acquire that does not queue", () => {
  it("a tryAcquire in flight when close() is called does not resolve a permit Redis no longer counts", async () => {
    const name = uniqueName("try-close");
    const limited = semaphore(name, 1);
    const observer = semaphore(name, 1);
    // The try goes out first, the close's "leave" right behind it: Redis grants, then evicts the grant.
    const trying = limited.tryAcquire().catch((error: unknown) => error);
    await limited.close();
    const outcome = await trying;
    expect(outcome).toMatchObject({ name: "ClosedError" });
    expect((await observer.inspect()).used).toBe(0);
  });

  it("acquire({ timeout: 0 }) in flight when close() is called rejects with ClosedError", async () => {
    const name = uniqueName("try0-close");
    const limited = semaphore(name, 1);
    const trying = limited.acquire({ timeout: 0 }).catch((error: unknown) => error);
    await limited.close();
    expect(await trying).toMatchObject({ name: "ClosedError" });
  });
});

describe("RedisSemaphore: FIFO within one process", () => {
  it("tryAcquire does not pass a caller of the same process that asked first", async () => {
    const limited = semaphore(uniqueName("try-passes"), 1);
    const first = limited.acquire();
    // The acquire is still on its way to Redis (batched to the end of the tick, and subscribing first).
    const second = await limited.tryAcquire();
    expect(second).toBeUndefined();
    await second?.release();
    await ((await within(first, 2_000)) as RedisPermit).release();
  });

  it("acquire({ timeout: 0 }) does not pass a caller of the same process that asked first", async () => {
    const limited = semaphore(uniqueName("try0-passes"), 1);
    const first = limited.acquire();
    const second = await limited.acquire({ timeout: 0 }).catch((error: unknown) => error);
    expect(second).toMatchObject({ name: "TimeoutError" });
    await ((await within(first, 2_000)) as RedisPermit).release();
  });

  it("a higher priority try may still pass lower-priority callers, as in memory", async () => {
    const limited = semaphore(uniqueName("try0-priority"), 1);
    const first = limited.acquire({ priority: -1 });
    const second = await limited.acquire({ timeout: 0 });
    await second.release();
    await ((await within(first, 2_000)) as RedisPermit).release();
  });
});

describe("RedisSemaphore: capacity changes", () => {
  it("raising the capacity serves the waiters that now fit at once, not at the next check-in", async () => {
    const name = uniqueName("grow");
    // Check-ins far apart, so only the capacity change itself can serve the waiter in time.
    const limited = semaphore(name, 1, { leaseTtl: "30s", wakeTimeout: "10s" });
    const held = await limited.acquire();
    const waiting = limited.acquire();
    await expect.poll(async () => (await limited.inspect()).waiters.length).toBe(1);
    limited.capacity = 2;
    const permit = await within(waiting, 2_000);
    expect(permit, "the waiter was not served after the capacity grew").not.toBe("pending");
    await (permit as RedisPermit).release();
    await held.release();
  });

  it("raising the capacity in one process serves another process's waiter", async () => {
    const name = uniqueName("grow-other");
    const options = { leaseTtl: "30s", wakeTimeout: "10s" };
    const holder = semaphore(name, 1, options);
    const waiterSide = semaphore(name, 1, options);
    const held = await holder.acquire();
    const waiting = waiterSide.acquire();
    await expect.poll(async () => (await holder.inspect()).waiters.length).toBe(1);
    waiterSide.capacity = 2;
    holder.capacity = 2;
    const permit = await within(waiting, 2_000);
    expect(permit, "the waiter was not served after the capacity grew").not.toBe("pending");
    await (permit as RedisPermit).release();
    await held.release();
  });

  it("shrinking the capacity of a full semaphore refuses another process's waiter that can no longer fit", async () => {
    const name = uniqueName("shrink-full");
    const options = { leaseTtl: "30s", wakeTimeout: "10s" };
    const holder = semaphore(name, 2, options);
    const waiterSide = semaphore(name, 2, options);
    const held = await holder.acquire({ weight: 2 });
    const heavy = waiterSide.acquire({ weight: 2 }).catch((error: unknown) => error);
    await expect.poll(async () => (await holder.inspect()).waiters.length).toBe(1);
    // Still full: before, no dispatch reached the heavy ticket while the semaphore stayed full.
    holder.capacity = 1;
    const outcome = await within(heavy, 2_000);
    expect(outcome).toBeInstanceOf(RangeError);
    expect(String(outcome)).toMatch(/weight 2 is above the capacity another process set/);
    await held.release();
  });

  it("a semaphore shrunk to 0 refuses every ticket instead of leaving them waiting forever", async () => {
    const name = uniqueName("shrink-zero");
    const options = { leaseTtl: "30s", wakeTimeout: "10s" };
    const holder = semaphore(name, 1, options);
    const waiterSide = semaphore(name, 1, options);
    const held = await holder.acquire();
    const waiting = waiterSide.acquire().catch((error: unknown) => error);
    await expect.poll(async () => (await holder.inspect()).waiters.length).toBe(1);
    holder.capacity = 0;
    await held.release();
    expect(await within(waiting, 2_000)).toBeInstanceOf(RangeError);
    expect((await holder.inspect()).waiters).toEqual([]);
  });
});

describe("RedisSemaphore: Lua edge cases", () => {
  it("a waiter heavier than the capacity another process set is refused with a RangeError", async () => {
    const name = uniqueName("shrunk-elsewhere");
    const a = semaphore(name, 3);
    const b = semaphore(name, 3);
    const held = await a.acquire();
    const heavy = b.acquire({ weight: 3 }).catch((error: unknown) => error);
    await expect.poll(async () => (await a.inspect()).waiters.length).toBe(1);
    a.capacity = 2;
    await held.release();
    const outcome = await within(heavy, 2_000);
    expect(outcome).toBeInstanceOf(RangeError);
    expect((outcome as Error).message).toMatch(/weight 3 is above the capacity another process set/);
    expect(await a.inspect()).toMatchObject({ used: 0, waiters: [] });
  });

  it("names with colons, braces and non-ASCII characters work and inspect() finds them", async () => {
    for (const name of [uniqueName("a:b:{c}"), uniqueName("x}y{"), uniqueName("名前-ü")]) {
      const a = semaphore(name, 1);
      const b = semaphore(name, 1);
      const held = await a.acquire();
      const waiting = b.acquire();
      await expect.poll(async () => (await a.inspect()).waiters.map((waiter) => waiter.client)).toEqual([b.client]);
      const snapshot = await a.inspect();
      expect(snapshot.name).toBe(name);
      expect(snapshot.holders.map((holder) => holder.client)).toEqual([a.client]);
      await held.release();
      await (await waiting).release();
    }
  });
});

describe("RedisSemaphore: the lease of a grant that overtook its registering acquire", () => {
  it("a first grant by notice, before the acquire's reply, is not taken for a lost lease", async () => {
    const name = uniqueName("overtake-lease");
    const holder = semaphore(name, 1, { leaseTtl: "3s" });
    const { connection, control } = flaky(new Redis(server.port, "127.0.0.1"));
    const fresh = semaphore(name, 1, { leaseTtl: "3s" }, connection);
    const held = await holder.acquire();
    // The fresh instance's very first script registers its lease; its reply is held back.
    control.holdWaits = true;
    const waiting = fresh.acquire();
    await expect.poll(async () => (await holder.inspect()).waiters.length).toBe(1);
    await held.release();
    // The grant notice arrives; the acquire's reply (and so its lease write) is still on its way.
    const permit = await within(waiting, 2_000);
    expect(permit).not.toBe("pending");
    await sleep(50);
    control.releaseWaits();
    await sleep(50);
    expect((permit as RedisPermit).leaseLost).toBe(false);
    expect((permit as RedisPermit).signal.aborted).toBe(false);
    await (permit as RedisPermit).release();
  });
});

describe("RedisSemaphore: timers", () => {
  it("a script that took a lock with tryLock, released it and disconnected exits without waiting for a lease", async () => {
    // A cron-style job: run only if nobody else does. tryLock never subscribes, so once the client is
    // disconnected nothing of ours should keep the process alive.
    const entry = fileURLToPath(new URL("../../src/redis/index.ts", import.meta.url));
    const program = `
      import { Redis } from "ioredis";
      import { RedisMutex } from ${JSON.stringify(entry)};
      const redis = new Redis(${server.port}, "127.0.0.1");
      const mutex = new RedisMutex(redis, { name: ${JSON.stringify(uniqueName("exit"))}, leaseTtl: "60s", guardRestarts: false });
      const permit = await mutex.tryLock();
      if (permit === undefined) throw new Error("the lock was taken");
      await permit.release();
      redis.disconnect();
      console.log("done");
    `;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", program], {
      cwd: fileURLToPath(new URL("../../", import.meta.url)),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    const exited = new Promise((resolve) => child.once("exit", resolve));
    // Before the fix the lease watchdog (and the heartbeat) kept it alive for most of the 60 s lease.
    const outcome = await within(exited, 10_000);
    if (outcome === "pending") child.kill("SIGKILL");
    expect(outcome, output).toBe(0);
    expect(output).toContain("done");
  });
});

describe("RedisSemaphore: onUnavailable fallbacks", () => {
  it("run() with a Limiter fallback rejects with fn's own error when fn throws", async () => {
    const client = await deadClient();
    const local = new Semaphore(1);
    const limited = semaphore(uniqueName("fallback-run"), 1, { commandTimeout: 200, onUnavailable: local }, client);
    const failure = new Error("the work failed");
    await expect(
      limited.run(() => {
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(local.inUse).toBe(0);
  });

  it("a fallback permit is a RedisPermit: release() returns a promise, leaseLost is false", async () => {
    const client = await deadClient();
    const local = new Semaphore(2);
    const limited = semaphore(uniqueName("fallback-shape"), 2, { commandTimeout: 200, onUnavailable: local }, client);
    for (const permit of [await limited.acquire(), await limited.acquire({ timeout: 0 })]) {
      expect(permit.fencingToken).toBeUndefined();
      expect(permit.leaseLost).toBe(false);
      const released = permit.release();
      expect(released).toBeInstanceOf(Promise);
      await released;
      expect(() => permit.release()).toThrow(expect.objectContaining({ name: "ReleasedError" }));
    }
    expect(local.inUse).toBe(0);
  });

  it("a waiter that times out while its Limiter fallback is busy leaves the fallback's queue too", async () => {
    const client = await deadClient();
    const local = new Semaphore(1);
    const busy = await local.acquire();
    const limited = semaphore(uniqueName("fallback-ghost"), 1, { commandTimeout: 100, onUnavailable: local }, client);
    await expect(limited.acquire({ timeout: 400 })).rejects.toMatchObject({ name: "TimeoutError" });
    // Nobody waits for the fallback's permit any more: it must not keep a waiter of ours.
    expect(local.waiting).toBe(0);
    busy.release();
    expect(local.inUse).toBe(0);
  });

  it('onUnavailable "allow": a waiter queued in Redis is admitted, not rejected, when Redis goes away', async () => {
    const own = await RedisServer.start();
    const client = new Redis(own.port, "127.0.0.1");
    client.on("error", () => undefined);
    clients.push(client);
    try {
      const name = uniqueName("allow-queued");
      const holder = semaphore(name, 1, { commandTimeout: 200, wakeTimeout: 100 }, client);
      const waiterSide = semaphore(name, 1, { commandTimeout: 200, wakeTimeout: 100, onUnavailable: "allow" }, client);
      await holder.acquire();
      const waiting = waiterSide.acquire().catch((error: unknown) => error);
      await expect.poll(async () => (await holder.inspect()).waiters.length).toBe(1);
      await own.stop();
      const outcome = await within(waiting, 3_000);
      expect(outcome).not.toBeInstanceOf(RedisUnavailableError);
      expect(outcome).toMatchObject({ fencingToken: undefined, leaseLost: false });
      await (outcome as RedisPermit).release();
    } finally {
      await own.stop();
    }
  });
});

describe("RedisSemaphore inspect()", () => {
  it("reports infinite priorities as such, not as NaN", async () => {
    const name = uniqueName("infinite-priority");
    const limited = semaphore(name, 1);
    const held = await limited.acquire();
    const waiting = [
      limited.acquire({ priority: Number.POSITIVE_INFINITY }),
      limited.acquire({ priority: Number.NEGATIVE_INFINITY }),
    ];
    await expect.poll(async () => (await limited.inspect()).waiters.length).toBe(2);
    expect((await limited.inspect()).waiters.map((waiter) => waiter.priority)).toEqual([
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
    ]);
    await held.release();
    await (await waiting[0])?.release();
    await (await waiting[1])?.release();
  });
});

describe("RedisRateLimiter: when Redis is unreachable", () => {
  it("every waiter learns it after one commandTimeout, not one commandTimeout after the other", async () => {
    const client = await deadClient();
    const limiter = new RedisRateLimiter(client, {
      name: uniqueName("rate-down-all"),
      limits: [{ limit: 10, interval: "1s" }],
      commandTimeout: 300,
    });
    open.push(limiter);
    const started = performance.now();
    const outcomes = await Promise.all(
      Array.from({ length: 10 }, () => limiter.acquire().catch((error: unknown) => error)),
    );
    for (const outcome of outcomes) expect(outcome).toBeInstanceOf(RedisUnavailableError);
    // One after the other would take 10 x 300 ms.
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});

describe("RedisRateLimiter: onUnavailable with a Limiter", () => {
  it("with concurrency, a call admitted by the fallback takes it once, not twice (no deadlock)", async () => {
    const client = await deadClient();
    const local = new Semaphore(1);
    const limiter = new RedisRateLimiter(client, {
      name: uniqueName("rate-fallback-concurrency"),
      limits: [{ limit: 10, interval: "1s" }],
      concurrency: 2,
      commandTimeout: 100,
      onUnavailable: local,
    });
    open.push(limiter);
    const outcome = await within(
      limiter.run(() => "done"),
      3_000,
    );
    expect(outcome).toBe("done");
    expect(local.inUse).toBe(0);
  });

  it("a waiter's timeout still holds while the fallback is busy", async () => {
    const client = await deadClient();
    const local = new Semaphore(1);
    const busy = await local.acquire();
    const limiter = new RedisRateLimiter(client, {
      name: uniqueName("rate-fallback-timeout"),
      limits: [{ limit: 10, interval: "1s" }],
      commandTimeout: 100,
      onUnavailable: local,
    });
    open.push(limiter);
    const outcome = await within(
      limiter.acquire({ timeout: 300 }).catch((error: unknown) => error),
      3_000,
    );
    expect(outcome).toMatchObject({ name: "TimeoutError" });
    expect(local.waiting).toBe(0);
    busy.release();
  });

  it("settling a permit the fallback admitted refunds nothing to Redis (it was never charged there)", async () => {
    const { connection, control } = flaky(new Redis(server.port, "127.0.0.1"));
    const name = uniqueName("rate-settle-fallback");
    const limiter = new RedisRateLimiter(connection, {
      name,
      limits: [{ limit: 4, interval: "1h" }],
      commandTimeout: 200,
      onUnavailable: "allow",
    });
    open.push(limiter);
    const charged = await limiter.acquire();
    control.down = true;
    const uncharged = await limiter.acquire({ cost: 2 });
    expect(uncharged.admittedAt).toBeUndefined();
    control.down = false;
    // The fallback permit's estimate of 2 was never charged in Redis: settling it to 0 refunds nothing.
    uncharged.settle(0);
    await sleep(50);
    const [budget] = (await limiter.inspect()).limits;
    expect(budget?.remaining).toBeCloseTo(3, 2);
    charged.release();
    uncharged.release();
  });
});

describe("RedisRateLimiter: bad input", () => {
  it("a bad concurrency names the concurrency option and its value", () => {
    for (const concurrency of [1.5, -1, Number.NaN]) {
      expect(() => new RedisRateLimiter(redis, { name: uniqueName("bad-concurrency"), concurrency })).toThrow(
        /concurrency/,
      );
    }
  });
});

describe("Redis primitives: options and close()", () => {
  it("commandTimeout 0 and a prefix that is not a string are refused, naming the option", () => {
    expect(() => new RedisSemaphore(redis, { name: "x", capacity: 1, commandTimeout: 0 })).toThrow(
      /commandTimeout must be longer than 0; got 0/,
    );
    expect(
      () => new RedisRateLimiter(redis, { name: "x", limits: [{ limit: 1, interval: 1_000 }], commandTimeout: 0 }),
    ).toThrow(RangeError);
    expect(() => new RedisSemaphore(redis, { name: "x", capacity: 1, prefix: 5 as never })).toThrow(
      /prefix must be a string; got 5/,
    );
    expect(() => new RedisMutex(redis, null as never)).toThrow(/options must be an object with a name; got null/);
  });

  it("RedisRateLimiter: one message for every concurrency that is not one, nothing-to-limit and endless intervals refused", () => {
    const make = (options: Partial<RedisRateLimiterOptions>) => () =>
      new RedisRateLimiter(redis, { name: "x", ...options });
    const message = /concurrency must be an integer >= 1 or Infinity; got/;
    expect(make({ concurrency: -1 })).toThrow(message);
    expect(make({ concurrency: 0 })).toThrow(message);
    expect(make({ concurrency: 1.5 })).toThrow(message);
    expect(make({ limits: [] })).toThrow(/limits nothing: give it limits, minInterval or concurrency/);
    expect(make({})).toThrow(TypeError);
    expect(make({ limits: [{ limit: 10, interval: 1e300 }] })).toThrow(
      /limits\[0\]\.interval must be at most 366 days/,
    );
    expect(make({ minInterval: 1e300 })).toThrow(/minInterval must be at most 366 days/);
    expect(make({ limits: [], concurrency: 2 })).not.toThrow();
  });

  it("a second close() waits for the same leave: once it resolves, Redis no longer lists the process", async () => {
    const name = uniqueName("close-twice");
    const limited = new RedisSemaphore(redis, { name, capacity: 2, guardRestarts: false });
    const other = semaphore(name, 2);
    await limited.acquire();
    expect((await other.inspect()).holders).toHaveLength(1);
    // The holder never releases: close() gives its lease back after its timeout.
    void limited.close({ timeout: 50 });
    await limited.close();
    const snapshot = await other.inspect();
    expect(snapshot.holders).toEqual([]);
    expect(snapshot.clients.map((client) => client.client)).not.toContain(limited.client);
  });

  it("a Limiter fallback whose acquire throws synchronously rejects the waiter, with no unhandled rejection", async () => {
    const throwing = {
      acquire: () => {
        throw new Error("fallback is broken");
      },
      run: () => Promise.reject(new Error("unused")),
    };
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const limited = semaphore(
        uniqueName("throwing-fallback"),
        1,
        {
          onUnavailable: throwing as never,
          commandTimeout: 200,
        },
        await deadClient(),
      );
      const outcome = await within(
        limited.acquire().catch((error: unknown) => error),
        3_000,
      );
      expect(outcome).toMatchObject({ message: "fallback is broken" });
      await sleep(20);
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});
