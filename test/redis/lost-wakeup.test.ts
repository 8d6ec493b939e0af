/**
 * Regression tests for a lost wake-up in RedisSemaphore: a grant that overtook its own acquire's reply.
 *
 * The bug: a waiter's grant notice travels on the process's notice connection (then a BLPOP, now a
 * subscription), the reply of the acquire that queued it on the command connection, and nothing
 * orders two sockets. Grants named
 * the ticket by its Redis seq, which the process learned only from that reply; a notice that came
 * first named a seq nobody here knew, so its permit was given back — and the waiter then waited for a
 * grant Redis had already made and would never make again. The heartbeat after each bounded BLPOP did
 * not look at waiters at all, so nothing recovered it: callers parked forever while permits were free
 * (bench/threads.mjs stalled at ~3986 of 4000 operations in one run in three).
 *
 * The fix: a grant names the ticket by the process's own number for it, sent with the acquire, so it
 * finds its waiter whichever arrives first; and each heartbeat delivers any grant Redis holds for a
 * ticket still waiting here, so a notice lost for any other reason costs one heartbeat, never a hang.
 */

import { Redis } from "ioredis";
import {
  asRedisConnection,
  fromIoredis,
  type RedisConnection,
  RedisRateLimiter,
  RedisSemaphore,
  type RedisSemaphoreOptions,
} from "sluice/redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisServer } from "../support/redis-server.js";

let server: RedisServer;
const clients: Redis[] = [];
let counter = 0;

beforeAll(async () => {
  server = await RedisServer.start();
});

afterAll(async () => {
  for (const client of clients) client.disconnect();
  await server?.stop();
});

/** A client of its own (its own command connection), as each process or worker thread has. */
function client(): Redis {
  const created = new Redis(server.port, "127.0.0.1");
  clients.push(created);
  return created;
}

function uniqueName(label: string): string {
  return `${label}-${++counter}`;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `condition` every 5 ms, failing after `ms`. */
async function until(condition: () => boolean | Promise<boolean>, ms = 2_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await sleep(5);
  }
}

/**
 * A connection whose traffic the test can hold back or drop:
 * - `holdAcquires`: replies to acquire scripts that queue (`wait` mode) wait for `releaseAcquires()`;
 * - `dropNotices`: that many grant notices vanish on their way to the semaphore, as a
 *   reply lost with its connection does;
 * - `delayNoticesMs`: popped notices reach the semaphore that much later.
 */
function tampered(redis: Redis) {
  const control = {
    holdAcquires: false,
    dropNotices: 0,
    delayNoticesMs: 0,
    /** Notices popped from the wake list (delivered, dropped or delayed). */
    noticesPopped: 0,
    held: [] as (() => void)[],
    releaseAcquires() {
      control.holdAcquires = false;
      for (const release of control.held.splice(0)) release();
    },
  };
  const wrap = (inner: RedisConnection): RedisConnection =>
    asRedisConnection({
      evalsha: (sha, keys, args) => {
        const reply = inner.evalsha(sha, keys, args);
        // ACQUIRE's ARGV 7 is the mode (keys are not part of args here).
        if (!control.holdAcquires || args[6] !== "wait") return reply;
        return new Promise<void>((resolve) => control.held.push(resolve)).then(() => reply);
      },
      eval: (script, keys, args) => inner.eval(script, keys, args),
      subscribe: (channel, onMessage, onResubscribed) =>
        inner.subscribe(
          channel,
          (notice) => {
            control.noticesPopped++;
            if (control.dropNotices > 0) {
              control.dropNotices--;
              return;
            }
            if (control.delayNoticesMs > 0) setTimeout(() => onMessage(notice), control.delayNoticesMs);
            else onMessage(notice);
          },
          onResubscribed,
        ),
      unsubscribe: (channel) => inner.unsubscribe(channel),
      scan: (cursor, pattern, count) => inner.scan(cursor, pattern, count),
      duplicate: () => wrap(inner.duplicate()),
      disconnect: () => inner.disconnect(),
    });
  return { connection: wrap(fromIoredis(redis)), control };
}

/**
 * A connection that learns where each acquire arrived in Redis' order, from the acquire script's reply:
 * the ticket's seq when queued, or (granted at once) just after the last seq handed out. Requests of one
 * tick travel in one script, one (weight, score, ticket) triple each from ARGV 9 on.
 */
function tapArrivals(redis: Redis) {
  const inner = fromIoredis(redis);
  const tap = { arrivals: new Map<number, number>() };
  const record = (args: readonly (string | number)[], reply: Promise<unknown>) => {
    // ACQUIRE: ARGV 7 is the mode, ARGV 9.. the triples.
    if (args[6] !== "wait") return reply;
    return reply.then((value) => {
      const numbers = value as number[];
      for (let index = 0; 8 + 3 * index < args.length; index++) {
        const ticket = Number(args[10 + 3 * index]);
        // The reply: n, epoch, then status, value, third, slots per request.
        const at = 2 + 4 * index;
        tap.arrivals.set(ticket, numbers[at] === 2 ? (numbers[at + 1] as number) : (numbers[at + 2] as number) + 0.5);
      }
      return value;
    });
  };
  const connection = asRedisConnection({
    evalsha: (sha, keys, args) => record(args, inner.evalsha(sha, keys, args)),
    eval: (script, keys, args) => record(args, inner.eval(script, keys, args)),
    subscribe: (channel, onMessage, onResubscribed) => inner.subscribe(channel, onMessage, onResubscribed),
    unsubscribe: (channel) => inner.unsubscribe(channel),
    scan: (cursor, pattern, count) => inner.scan(cursor, pattern, count),
    duplicate: () => inner.duplicate(),
    disconnect: () => inner.disconnect(),
  });
  return { connection, tap };
}

describe("RedisSemaphore: a grant that overtakes its acquire's reply is not lost", () => {
  const options = (name: string, capacity: number): RedisSemaphoreOptions => ({
    name,
    capacity,
    leaseTtl: "3s",
    guardRestarts: false,
  });

  it("a grant notice that arrives before the acquire's reply reaches its waiter", async () => {
    const name = uniqueName("overtaken");
    const holder = new RedisSemaphore(client(), options(name, 1));
    const { connection, control } = tampered(client());
    const waiterSide = new RedisSemaphore(connection, options(name, 1));
    try {
      const held = await holder.acquire();
      // A low-priority waiter keeps this process's check-ins running, as other callers do under load.
      const keeper = waiterSide.acquire({ priority: -1 });
      await until(async () => (await holder.inspect()).waiters.length === 1);
      control.holdAcquires = true;
      const overtaken = waiterSide.acquire();
      await until(async () => (await holder.inspect()).waiters.length === 2);
      // The release grants the new ticket (higher priority) while its acquire's reply is still held back.
      const popped = control.noticesPopped;
      await held.release();
      await until(() => control.noticesPopped > popped);
      await sleep(20);
      control.releaseAcquires();
      const permit = await Promise.race([overtaken, sleep(2_000).then(() => undefined)]);
      expect(permit, "the overtaken waiter was never granted").toBeDefined();
      const snapshot = await holder.inspect();
      expect(snapshot.holders.map((entry) => entry.fencingToken)).toEqual([permit?.fencingToken]);
      expect(snapshot.waiters).toHaveLength(1);
      await permit?.release();
      await (await keeper).release();
    } finally {
      await Promise.all([holder.close(), waiterSide.close()]);
    }
  });

  it("many instances, many short acquires on a small capacity: all complete, in Redis' arrival order, nothing left", async () => {
    // Before the fix every round of this stalled within a few hundred grants (the race needs a short
    // Redis queue, so that a freshly queued ticket is granted at once by another instance's release).
    const rounds = 8;
    const instances = 3;
    const callers = 2;
    const runsPerCaller = 200;
    for (let round = 0; round < rounds; round++) {
      const name = uniqueName("stress");
      const taps = Array.from({ length: instances }, () => tapArrivals(client()));
      // A 10 s lease: the safety-net heartbeat (every 3.3 s) comes after the 2 s stall guard, so every
      // wake-up here must come by push.
      const semaphores = taps.map(
        ({ connection }) => new RedisSemaphore(connection, { ...options(name, 2), leaseTtl: "10s" }),
      );
      /** Per grant: its arrival in Redis (read at the end: a grant may overtake its reply) and token. */
      const grants: { tap: (typeof taps)[number]["tap"]; ticket: number; token: number }[] = [];
      let done = 0;
      let inside = 0;
      let most = 0;
      const all = Promise.all(
        semaphores.flatMap((semaphore, index) =>
          Array.from({ length: callers }, async () => {
            const tap = (taps[index] as (typeof taps)[number]).tap;
            for (let run = 0; run < runsPerCaller; run++) {
              const pending = semaphore.acquire();
              // The number `acquire()` just gave this request (private; its script goes out in a microtask).
              const ticket = (semaphore as unknown as { key: { tickets: { lastId: number } } }).key.tickets.lastId;
              const permit = await pending;
              grants.push({ tap, ticket, token: permit.fencingToken as number });
              inside++;
              most = Math.max(most, inside);
              await Promise.resolve();
              inside--;
              await permit.release();
              done++;
            }
          }),
        ),
      );
      // Hard guard: no progress for 2 s is a stall (a stall lasts forever).
      let finished = false;
      const finish = () => {
        finished = true;
      };
      all.then(finish, finish);
      let seen = -1;
      let lastProgress = performance.now();
      while (!finished) {
        await sleep(20);
        if (done !== seen) {
          seen = done;
          lastProgress = performance.now();
        } else if (performance.now() - lastProgress > 2_000) {
          const waiting = semaphores.map((semaphore) => semaphore.waiting);
          const snapshot = await semaphores[0]?.inspect();
          await Promise.all(semaphores.map((semaphore) => semaphore.close()));
          expect.fail(
            `round ${round} stalled at ${done} of ${instances * callers * runsPerCaller} runs; local waiters ${waiting}, Redis used ${snapshot?.used}, Redis waiters ${snapshot?.waiters.length}`,
          );
        }
      }
      await all;
      expect(done).toBe(instances * callers * runsPerCaller);
      expect(most).toBeLessThanOrEqual(2);
      // FIFO in Redis' own order: no grant went to a request that arrived after one still waiting.
      // Arrival (seq) and grant order (fencing token) are both Redis counters: no clock is involved.
      const ordered = grants
        .map(({ tap, ticket, token }) => ({ arrival: tap.arrivals.get(ticket), token }))
        .sort((a, b) => (a.arrival as number) - (b.arrival as number) || a.token - b.token);
      expect(ordered.every(({ arrival }) => arrival !== undefined)).toBe(true);
      let overtaken = 0;
      let latest = Number.NEGATIVE_INFINITY;
      for (const { token } of ordered) {
        if (token < latest) overtaken++;
        latest = Math.max(latest, token);
      }
      expect(overtaken).toBe(0);
      const snapshot = await semaphores[0]?.inspect();
      expect(snapshot?.used).toBe(0);
      expect(snapshot?.holders).toEqual([]);
      expect(snapshot?.waiters).toEqual([]);
      await Promise.all(semaphores.map((semaphore) => semaphore.close()));
    }
  });
});

describe("RedisSemaphore: the bounded check-in recovers a missed wake-up", () => {
  it("a grant notice lost on the way is delivered by the next heartbeat", async () => {
    const name = uniqueName("lost-notice");
    const holder = new RedisSemaphore(client(), { name, capacity: 1, leaseTtl: "3s", guardRestarts: false });
    const { connection, control } = tampered(client());
    const waiterSide = new RedisSemaphore(connection, {
      name,
      capacity: 1,
      leaseTtl: "3s",
      wakeTimeout: 200,
      guardRestarts: false,
    });
    try {
      const held = await holder.acquire();
      const waiting = waiterSide.acquire();
      await until(async () => (await holder.inspect()).waiters.length === 1);
      control.dropNotices = 1;
      await held.release();
      const permit = await Promise.race([waiting, sleep(2_000).then(() => undefined)]);
      expect(control.dropNotices, "the notice was not dropped").toBe(0);
      expect(permit, "the waiter whose notice was lost was never granted").toBeDefined();
      // It got the very grant Redis made, not a second one.
      const snapshot = await holder.inspect();
      expect(snapshot.holders).toHaveLength(1);
      expect(snapshot.holders[0]?.fencingToken).toBe(permit?.fencingToken);
      expect(snapshot.holders[0]?.client).toBe(waiterSide.client);
      await permit?.release();
      expect((await holder.inspect()).used).toBe(0);
    } finally {
      await Promise.all([holder.close(), waiterSide.close()]);
    }
  });

  it("a notice that comes after the heartbeat delivered its grant does not release the permit in use", async () => {
    const name = uniqueName("late-notice");
    const holder = new RedisSemaphore(client(), { name, capacity: 1, leaseTtl: "600ms", guardRestarts: false });
    const { connection, control } = tampered(client());
    // Heartbeats every 200 ms; the notice is held back for 700 ms, so a heartbeat delivers first.
    const waiterSide = new RedisSemaphore(connection, {
      name,
      capacity: 1,
      leaseTtl: "600ms",
      keyTtl: "60s",
      guardRestarts: false,
    });
    try {
      const held = await holder.acquire();
      const waiting = waiterSide.acquire();
      await until(async () => (await holder.inspect()).waiters.length === 1);
      control.delayNoticesMs = 700;
      const popped = control.noticesPopped;
      await held.release();
      const permit = await Promise.race([waiting, sleep(600).then(() => undefined)]);
      expect(permit, "the heartbeat did not deliver the grant").toBeDefined();
      // The notice arrives now; the permit must stay held in Redis.
      await until(() => control.noticesPopped > popped);
      await sleep(800);
      const snapshot = await holder.inspect();
      expect(snapshot.holders.map((entry) => entry.fencingToken)).toEqual([permit?.fencingToken]);
      expect(await holder.tryAcquire()).toBeUndefined();
      await permit?.release();
      expect((await holder.inspect()).used).toBe(0);
    } finally {
      await Promise.all([holder.close(), waiterSide.close()]);
    }
  });
});

describe("RedisRateLimiter: no lost wake-up under churn", () => {
  it("asks Redis one question at a time, also when a new head arrives right after a grant", async () => {
    // The flag that says "a question is in flight" was cleared a second time when the previous
    // question's promise settled — while the next one was already in flight — so a new head could
    // start a second question beside it.
    let inFlight = 0;
    let most = 0;
    const inner = fromIoredis(client());
    const counted = <T>(reply: Promise<T>): Promise<T> => {
      inFlight++;
      most = Math.max(most, inFlight);
      return reply.finally(() => {
        inFlight--;
      });
    };
    const connection = asRedisConnection({
      evalsha: (sha, keys, args) => counted(inner.evalsha(sha, keys, args)),
      eval: (script, keys, args) => counted(inner.eval(script, keys, args)),
      subscribe: (channel, onMessage, onResubscribed) => inner.subscribe(channel, onMessage, onResubscribed),
      unsubscribe: (channel) => inner.unsubscribe(channel),
      scan: (cursor, pattern, count) => inner.scan(cursor, pattern, count),
      duplicate: () => inner.duplicate(),
      disconnect: () => inner.disconnect(),
    });
    const limiter = new RedisRateLimiter(connection, {
      name: uniqueName("rate-one-question"),
      limits: [{ limit: 100_000, interval: "1s", burst: 1_000 }],
    });
    try {
      (await limiter.acquire()).release(); // loads the script
      most = 0;
      const first = limiter.acquire();
      const second = limiter.acquire();
      (await first).release();
      // Let the first question's promise settle (microtasks only: the second question's reply needs
      // the event loop, so it is still in flight).
      for (let turn = 0; turn < 5; turn++) await Promise.resolve();
      // A new head while the second question is in flight.
      const urgent = limiter.acquire({ priority: 1 });
      for (const permit of await Promise.all([second, urgent])) permit.release();
      expect(most).toBe(1);
    } finally {
      await limiter.close();
    }
  });

  it("many instances, many short runs against a tight shared rate: every run completes", async () => {
    const name = uniqueName("rate-stress");
    const limits = [{ limit: 2_000, interval: "1s", burst: 4 }];
    const limiters = Array.from({ length: 3 }, () => new RedisRateLimiter(client(), { name, limits }));
    const total = 3 * 3 * 60;
    let done = 0;
    const all = Promise.all(
      limiters.flatMap((limiter) =>
        Array.from({ length: 3 }, async () => {
          for (let run = 0; run < 60; run++) {
            await limiter.run(async () => undefined);
            done++;
          }
        }),
      ),
    );
    try {
      // 540 calls at 2000/s is ~0.27 s of budget; 5 s without finishing is a stall.
      const outcome = await Promise.race([all.then(() => "done"), sleep(5_000).then(() => "stalled")]);
      expect(outcome, `stalled at ${done} of ${total}`).toBe("done");
    } finally {
      await Promise.all(limiters.map((limiter) => limiter.close()));
    }
  });
});
