/**
 * RedisReadWriteLock against a real redis-server: readers together, a writer alone, a waiting writer
 * holding back later readers, across two clients (two "processes" as far as Redis can tell), and bad input.
 */
import { Redis } from "ioredis";
import { identityOf } from "sluice";
import { RedisReadWriteLock } from "sluice/redis";
import { describe, expect, it } from "vitest";
import { seededRandom } from "../support/seeded-random.js";
import { useRedisServer } from "../support/use-redis-server.js";
import { peak } from "./fault-checks.js";

const served = useRedisServer();
let counter = 0;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Two locks of one name on two connections, closed after the test. */
function twoLocks(maxReaders = 4): [RedisReadWriteLock, RedisReadWriteLock] {
  const name = `rw-${++counter}`;
  const other = new Redis(served.server.port, "127.0.0.1", { maxRetriesPerRequest: 1 });
  other.on("error", () => undefined);
  const options = { name, maxReaders, leaseTtl: 5_000, guardRestarts: false };
  const first = served.track(new RedisReadWriteLock(served.redis, options));
  const second = served.track(new RedisReadWriteLock(other, options));
  served.track({ close: async () => void other.disconnect() });
  return [first, second];
}

describe("RedisReadWriteLock", () => {
  it("readers of two clients hold it together; a writer waits for them, then holds it alone with every fencing slot", async () => {
    const [a, b] = twoLocks(4);
    const r1 = await a.read();
    const r2 = await b.read();
    const order: string[] = [];
    const writing = a.write({ timeout: 5_000 }).then((permit) => {
      order.push("write");
      return permit;
    });
    await sleep(50);
    expect(order).toEqual([]);
    await r1.release();
    await sleep(50);
    expect(order).toEqual([]);
    await r2.release();
    const w = await writing;
    expect(w.fencingSlots).toEqual([0, 1, 2, 3]);
    expect(await b.tryRead()).toBeUndefined();
    expect(await b.tryWrite()).toBeUndefined();
    await w.release();
    const r3 = await b.tryRead();
    expect(r3).toBeDefined();
    await r3?.release();
  });

  it("a waiting writer holds back the readers that arrive after it (no writer starvation)", async () => {
    const [a, b] = twoLocks(8);
    const first = await a.read();
    const order: string[] = [];
    const writing = b.runWrite(async () => {
      order.push("write start");
      await sleep(30);
      order.push("write end");
    });
    await sleep(50);
    const late = a.runRead(() => order.push("late read"));
    // Not even a reader slot while the writer waits: tryRead does not pass it either.
    expect(await a.tryRead()).toBeUndefined();
    await sleep(50);
    expect(order).toEqual([]);
    await first.release();
    await Promise.all([writing, late]);
    expect(order).toEqual(["write start", "write end", "late read"]);
  });

  it("under random reads and writes from two clients, a writer is never with anyone, readers never above maxReaders", async () => {
    const maxReaders = 3;
    const locks = twoLocks(maxReaders);
    const held: { start: number; end: number; weight: number; write: boolean }[] = [];
    const random = seededRandom(7);
    const caller = async (index: number) => {
      for (let round = 0; round < 12; round++) {
        const lock = locks[index % 2] as RedisReadWriteLock;
        const write = random() < 0.25;
        await (write ? lock.runWrite : lock.runRead).call(lock, async () => {
          const start = performance.now();
          await sleep(1 + Math.floor(random() * 4));
          held.push({ start, end: performance.now(), weight: write ? maxReaders : 1, write });
        });
      }
    };
    await Promise.all(Array.from({ length: 8 }, (_, index) => caller(index)));
    expect(held).toHaveLength(96);
    expect(held.some((entry) => entry.write)).toBe(true);
    // A writer counts as maxReaders: any overlap with it, or a fourth reader, goes above.
    expect(peak(held).weight).toBeLessThanOrEqual(maxReaders);
    expect(peak(held.filter((entry) => !entry.write)).weight).toBeGreaterThan(1);
  });

  it("its events and metrics name it a read-write lock; bad options and a weight are refused naming them", async () => {
    const [a] = twoLocks(2);
    expect(identityOf(a)).toMatchObject({ kind: "read-write-lock", backend: "redis" });
    expect(() => new RedisReadWriteLock(served.redis, { name: "x", maxReaders: 0 })).toThrow(
      /maxReaders must be an integer from 1 to 1024; got 0/,
    );
    expect(() => new RedisReadWriteLock(served.redis, { name: "x", maxReaders: 1_025 })).toThrow(/got 1025/);
    expect(() => new RedisReadWriteLock(served.redis, { name: "x", maxReaders: 1.5 })).toThrow(/got 1.5/);
    expect(
      () => new RedisReadWriteLock(served.redis, { name: "x", capacity: 3 } as unknown as { name: string }),
    ).toThrow(/capacity/);
    await expect(a.read({ weight: 2 } as object)).rejects.toThrow(/takes no weight.*got weight 2/);
    await expect(a.runWrite(() => 1, { weight: 1 } as object)).rejects.toBeInstanceOf(TypeError);
    await expect(a.read({ timeout: -1 })).rejects.toBeInstanceOf(RangeError);
  });
});
