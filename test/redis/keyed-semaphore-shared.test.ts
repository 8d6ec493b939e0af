/**
 * RedisKeyedSemaphore keeps nothing per key but the state of the keys in use: one lease, one heartbeat
 * and one notice subscription per process whatever the number of keys, against a real redis-server.
 * Two clients (two connections, so two processes as Redis sees them) and many keys: each key's capacity
 * holds under random load; one SUBSCRIBE per process; one heartbeat script per lease third (per 256
 * keys); nothing left in the process once the keys are idle, nor in Redis after keyTtl; a frozen holder
 * loses its permits on every key to the next waiter of each; a killed client's holders and tickets are
 * reclaimed after its lease; a FLUSHALL or a restart is survived as a RedisSemaphore survives it.
 */
import fc from "fast-check";
import { Redis } from "ioredis";
import { LeaseLostError } from "sluice";
import { RedisKeyedSemaphore, type RedisKeyedSemaphoreOptions, type RedisPermit } from "sluice/redis";
import { describe, expect, it } from "vitest";
import { processClock } from "../../src/threads/process-clock.js";
import { TcpProxy } from "../support/tcp-proxy.js";
import { useRedisServer } from "../support/use-redis-server.js";
import { peak } from "./fault-checks.js";

const served = useRedisServer();
let counter = 0;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Another connection: another process, as Redis sees it. */
function connection(): Redis {
  const other = new Redis(served.server.port, "127.0.0.1", { maxRetriesPerRequest: 1 });
  other.on("error", () => undefined);
  served.track({ close: async () => void other.disconnect() });
  return other;
}

function keyed(redis: Redis, options: RedisKeyedSemaphoreOptions): RedisKeyedSemaphore {
  return served.track(new RedisKeyedSemaphore(redis, options));
}

/** What a test reaches inside: the process's lease (to play a frozen or killed process). */
interface Internals {
  lease: { stopTimers(): void };
  settings: { closed: boolean; client: string };
}

/** Scripts run so far (EVAL and EVALSHA), from INFO commandstats. */
async function scriptCalls(): Promise<number> {
  const info = await served.redis.info("commandstats");
  let calls = 0;
  for (const match of info.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)) calls += Number(match[1]);
  return calls;
}

async function waitFor(condition: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`not within ${ms} ms`);
    await sleep(10);
  }
}

describe("RedisKeyedSemaphore: one lease, one heartbeat, one subscription per process", () => {
  it("each key's capacity holds across two clients and many keys under random load", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 3 }),
        fc.array(fc.record({ key: fc.integer({ min: 0, max: 39 }), client: fc.boolean(), hold: fc.nat(3) }), {
          minLength: 20,
          maxLength: 80,
        }),
        async (capacityPerKey, calls) => {
          const options = { name: `keyed-load-${++counter}`, capacityPerKey, leaseTtl: 3_000, guardRestarts: false };
          const clients = [keyed(served.redis, options), keyed(connection(), options)] as const;
          const held = new Map<number, { start: number; end: number; weight: number }[]>();
          await Promise.all(
            calls.map(({ key, client, hold }) =>
              clients[client ? 1 : 0].run(`user-${key}`, async (_signal, permit) => {
                const start = processClock.now();
                await sleep(hold);
                expect(permit.leaseLost).toBe(false);
                const grants = held.get(key) ?? [];
                grants.push({ start, end: processClock.now(), weight: 1 });
                held.set(key, grants);
              }),
            ),
          );
          for (const [key, grants] of held)
            expect(peak(grants).weight, `user-${key}`).toBeLessThanOrEqual(capacityPerKey);
          const granted = clients[0].statistics().granted + clients[1].statistics().granted;
          expect(granted).toBe(calls.length);
          await Promise.all(clients.map((client) => client.close()));
        },
      ),
      { numRuns: 8 },
    );
  });

  it("one notice subscription per process, however many keys it holds and waits on", async () => {
    const name = `keyed-subs-${++counter}`;
    const options = { name, capacityPerKey: 1, leaseTtl: 3_000, guardRestarts: false };
    const a = keyed(served.redis, options);
    const b = keyed(connection(), options);
    const keys = Array.from({ length: 200 }, (_, index) => `user-${index}`);
    const held = await Promise.all(keys.map((key) => a.acquire(key)));
    // B waits on every key A holds.
    const waiting = keys.map((key) => b.acquire(key, { timeout: 10_000 }));
    await waitFor(async () => (await a.inspect("user-199")).waiters.length === 1, 5_000);
    const channels = await served.redis.pubsub("CHANNELS", `sluice:{${name}}:wake:*`);
    expect(channels).toHaveLength(2);
    const counts = (await served.redis.pubsub("NUMSUB", ...(channels as string[]))) as (string | number)[];
    expect(counts.filter((_, index) => index % 2 === 1).map(Number)).toEqual([1, 1]);
    await Promise.all(held.map((permit) => permit.release()));
    for (const permit of await Promise.all(waiting)) await permit.release();
  });

  it("one heartbeat script per third of the lease (per 256 keys), however many keys are held", async () => {
    const leaseTtl = 600;
    const options = { name: `keyed-beats-${++counter}`, capacityPerKey: 1, leaseTtl, guardRestarts: false };
    const a = keyed(served.redis, options);
    const held = await Promise.all(Array.from({ length: 300 }, (_, index) => a.acquire(`user-${index}`)));
    await sleep(50);
    const before = await scriptCalls();
    const from = performance.now();
    await sleep(1_000);
    const beats = (performance.now() - from) / (leaseTtl / 3);
    // 300 keys: two scripts (256 + 44) per heartbeat; one per key would be 300 per heartbeat.
    const calls = (await scriptCalls()) - before;
    expect(calls).toBeGreaterThanOrEqual(2 * Math.floor(beats) - 2);
    expect(calls).toBeLessThanOrEqual(2 * Math.ceil(beats) + 2);
    for (const permit of held) expect(permit.leaseLost).toBe(false);
    await Promise.all(held.map((permit) => permit.release()));
  });

  it("nothing per key is left in the process once the keys are idle, nor in Redis after keyTtl", async () => {
    const name = `keyed-idle-${++counter}`;
    const options = { name, capacityPerKey: 2, leaseTtl: 300, keyTtl: 1_800, idleAfter: 50, guardRestarts: false };
    const a = keyed(served.redis, options);
    const b = keyed(connection(), options);
    await Promise.all(
      Array.from({ length: 100 }, (_, index) =>
        (index % 2 === 0 ? a : b).run(`user-${index % 30}`, () => sleep(index % 3)),
      ),
    );
    expect(a.keys().length).toBeGreaterThan(0);
    await waitFor(() => a.keys().length === 0 && b.keys().length === 0, 1_000);
    expect(a.statistics()).toMatchObject({ keys: 0, inUse: 0, waiting: 0, granted: 50 });
    expect((await served.redis.keys(`sluice:{${name}}:*`)).length).toBe(31);
    await waitFor(async () => (await served.redis.keys(`sluice:{${name}}*`)).length === 0, 3_000);
  });

  it("a frozen holder loses its permits on every key to the next waiter of each, and learns it at once", async () => {
    const options = { name: `keyed-frozen-${++counter}`, capacityPerKey: 1, leaseTtl: 400, guardRestarts: false };
    const frozen = keyed(connection(), options);
    const other = keyed(served.redis, options);
    const keys = ["alice", "bob", "carol"];
    const held = await Promise.all(keys.map((key) => frozen.acquire(key)));
    const signals = held.map((permit) => permit.signal);
    const waiting = keys.map((key) => other.acquire(key, { timeout: 5_000 }));
    // Frozen: no heartbeat renews its lease any more, and no timer of its runs.
    (frozen as unknown as Internals).lease.stopTimers();
    const granted = await Promise.all(waiting);
    // The lease ended in Redis: the other process holds every key now; the frozen one learns it at its
    // first look, synchronously.
    for (const permit of held) expect(permit.leaseLost).toBe(true);
    for (const signal of signals) expect(signal.aborted).toBe(true);
    for (const permit of held) await expect(permit.release()).rejects.toBeInstanceOf(LeaseLostError);
    for (const permit of granted) expect(permit.leaseLost).toBe(false);
    await Promise.all(granted.map((permit) => permit.release()));
  });

  it("a killed client's holders and tickets on many keys are reclaimed after its lease", async () => {
    const name = `keyed-killed-${++counter}`;
    const options = { name, capacityPerKey: 1, leaseTtl: 400, guardRestarts: false };
    const doomedConnection = connection();
    const doomed = keyed(doomedConnection, options);
    const survivor = keyed(served.redis, options);
    const keys = Array.from({ length: 20 }, (_, index) => `user-${index}`);
    // The doomed process holds the even keys and waits on the odd ones, behind the survivor.
    const survivorHeld = await Promise.all(
      keys.filter((_, index) => index % 2 === 1).map((key) => survivor.acquire(key)),
    );
    await Promise.all(keys.filter((_, index) => index % 2 === 0).map((key) => doomed.acquire(key)));
    const doomedWaiting = keys
      .filter((_, index) => index % 2 === 1)
      .map((key) => doomed.acquire(key).catch(() => undefined));
    await waitFor(async () => (await survivor.inspect("user-19")).waiters.length === 1, 2_000);
    // Killed: timers stop, connections close (kill -9).
    const internals = doomed as unknown as Internals;
    internals.lease.stopTimers();
    internals.settings.closed = true;
    doomedConnection.disconnect();
    // Its holders come back after its lease; its tickets pass on when the survivor releases.
    const start = performance.now();
    const evens = await Promise.all(
      keys.filter((_, index) => index % 2 === 0).map((key) => survivor.acquire(key, { timeout: 3_000 })),
    );
    expect(performance.now() - start).toBeGreaterThan(200);
    const odds: Promise<RedisPermit>[] = [];
    for (const [index, permit] of survivorHeld.entries()) {
      odds.push(survivor.acquire(`user-${2 * index + 1}`, { timeout: 3_000 }));
      await permit.release();
    }
    for (const permit of [...evens, ...(await Promise.all(odds))]) await permit.release();
    void doomedWaiting;
  });
});

describe("RedisKeyedSemaphore: a grant nobody here knows of, on a key gone idle", () => {
  it("is found by the check-ins a failed call on the key owes it, and given back", async () => {
    const name = `keyed-orphan-${++counter}`;
    const options = { name, capacityPerKey: 1, leaseTtl: 300, idleAfter: 10, guardRestarts: false };
    const proxy = await TcpProxy.start(served.server.port);
    const cutOffable = new Redis(proxy.port, "127.0.0.1", { maxRetriesPerRequest: 0 });
    cutOffable.on("error", () => undefined);
    served.track({
      close: async () => {
        cutOffable.disconnect();
        await proxy.stop();
      },
    });
    const a = keyed(cutOffable, options);
    const b = keyed(served.redis, options);
    // A holds another key all along: its lease stays alive, so only A can give back what it holds.
    const kept = await a.acquire("kept");
    // A grant of "x" to A whose reply never reached it (the script ran, the connection dropped): a holder
    // of A's in Redis that A knows nothing of. Written here as such a script would have left it.
    const meta = `sluice:{${name}}:k:x:meta`;
    await b.run("x", () => undefined);
    await served.redis.hset(meta, "used", 1, "h:1", `1:0::${(a as unknown as Internals).settings.client}`);
    // A call of A's on "x" fails (the connection drops): A now owes "x" check-ins.
    proxy.cutOff("drop");
    await expect(a.tryAcquire("x")).rejects.toThrow();
    proxy.restore();
    // Its check-ins see the unknown grant twice and give it back; B gets "x".
    const permit = await b.acquire("x", { timeout: 3_000 });
    expect(await served.redis.hexists(meta, "h:1")).toBe(0);
    await permit.release();
    await waitFor(() => !a.keys().includes("x"), 2_000);
    await kept.release();
  });
});

describe("RedisKeyedSemaphore: a state lost while callers wait on several keys", () => {
  async function lostState(lose: () => Promise<void>, extra: Partial<RedisKeyedSemaphoreOptions>) {
    const options = {
      name: `keyed-lost-${++counter}`,
      capacityPerKey: 1,
      leaseTtl: 600,
      guardRestarts: false,
      ...extra,
    };
    const a = keyed(served.redis, options);
    const b = keyed(connection(), options);
    const keys = ["alice", "bob"];
    const held = await Promise.all(keys.map((key) => b.acquire(key)));
    const order: string[] = [];
    const turns = keys.flatMap((key) =>
      [1, 2].map(async (turn) => {
        const permit = await a.acquire(key, { timeout: 8_000 });
        order.push(`${key}${turn}`);
        await sleep(5);
        await permit.release();
      }),
    );
    await waitFor(async () => (await a.inspect("bob")).waiters.length === 2, 2_000);
    await lose();
    await Promise.all(turns);
    expect(order.filter((turn) => turn.startsWith("alice"))).toEqual(["alice1", "alice2"]);
    expect(order.filter((turn) => turn.startsWith("bob"))).toEqual(["bob1", "bob2"]);
    // B's permits went with the state: B is told at its next check-in, and its release says so.
    await waitFor(() => held.every((permit) => permit.leaseLost), 1_000);
    for (const permit of held) await expect(permit.release()).rejects.toBeInstanceOf(LeaseLostError);
  }

  it("after FLUSHALL, every caller queued before it is served, in its process's order, per key", async () => {
    await lostState(async () => void (await served.redis.flushall()), {});
  });

  it("after a restart, the restart guard holds every key back for a lease, then serves in order", async () => {
    let guardSeen = false;
    await lostState(
      async () => {
        await served.server.restart();
        const probe = new RedisKeyedSemaphore(served.redis, {
          name: `keyed-probe-${++counter}`,
          capacityPerKey: 1,
          leaseTtl: 600,
        });
        const start = performance.now();
        await (await probe.acquire("x", { timeout: 5_000 })).release();
        guardSeen = performance.now() - start >= 600;
        await probe.close();
      },
      { guardRestarts: true, commandTimeout: 2_000 },
    );
    expect(guardSeen).toBe(true);
  });
});
