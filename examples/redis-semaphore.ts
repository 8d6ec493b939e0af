// One limit for many processes: a RedisSemaphore shared by two "processes" (two clients, as two
// servers of one service would be), a RedisMutex, a RedisReadWriteLock, fencing with FencingGuard, and
// inspect().
// Run: npm run build && npx tsx examples/redis-semaphore.ts   (uses REDIS_URL, or starts a redis-server)
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts,
// with redis-server.mjs beside it.
import { Redis } from "ioredis";
import { FencingGuard, inspectRedis, RedisMutex, RedisReadWriteLock, RedisSemaphore } from "sluice/redis";
import { localRedis } from "./redis-server.mjs";

const server = await localRedis();
const serverA = new Redis(server.url);
const serverB = new Redis(server.url);

// Every process that uses the name "search-api" shares these 3 permits.
const options = { name: "search-api", capacity: 3, leaseTtl: "2s" };
const inA = new RedisSemaphore(serverA, options);
const inB = new RedisSemaphore(serverB, options);

let inside = 0;
let most = 0;
async function callTheApi(signal: AbortSignal): Promise<void> {
  inside++;
  most = Math.max(most, inside);
  await new Promise((resolve) => setTimeout(resolve, 20));
  if (signal.aborted) throw signal.reason; // the lease was lost: stop
  inside--;
}

// A fresh Redis (like one that restarted and lost its data) grants nothing during its first lease,
// so holders from before a restart have stopped first: expect a short wait on the first call.
const started = performance.now();
await Promise.all(
  Array.from({ length: 12 }, (_, index) => (index % 2 === 0 ? inA : inB).run((signal) => callTheApi(signal))),
);
console.log(
  `12 calls from 2 processes, at most ${most} at once (capacity 3), ${Math.round(performance.now() - started)} ms`,
);

// The resource refuses holders whose lease ended: the highest fencing token per slot (any capacity).
const guard = new FencingGuard();
await inA.run(async (_signal, permit) => {
  // Right before each write: a process frozen past its lease learns it here, before any timer runs.
  permit.throwIfLeaseLost();
  if (!guard.accept(permit)) throw new Error("a newer holder has written: stop");
  console.log(`write with token ${permit.fencingToken} on slots ${permit.fencingSlots.join(",")}`);
});

// Fencing tokens increase with every grant: hand them to the resource you protect.
const permit = await inA.acquire({ timeout: 5_000 });
console.log(`fencing token ${permit.fencingToken}`);
const waiting = inB.acquire({ weight: 3, priority: 1 });
const snapshot = await inA.inspect();
console.log(
  `held ${snapshot.used}/${snapshot.capacity}, ${snapshot.waiters.length} waiting, last token ${snapshot.fencingToken}`,
);
await permit.release();
await (await waiting).release();

// A lock across processes: one holder at a time, everywhere.
const report = new RedisMutex(serverA, { name: "nightly-report", leaseTtl: "2s" });
await report.runExclusive(async (signal) => {
  console.log(`building the report alone (signal aborted: ${signal.aborted})`);
});

// Many readers or one writer, across processes; a waiting writer holds back later readers.
const catalog = new RedisReadWriteLock(serverA, { name: "catalog", maxReaders: 16, leaseTtl: "2s" });
const catalogB = new RedisReadWriteLock(serverB, { name: "catalog", maxReaders: 16, leaseTtl: "2s" });
const [one, two] = await Promise.all([catalog.read(), catalogB.read()]); // two readers at once
const reload = catalogB.runWrite(() => console.log("reloading the catalog alone"));
await Promise.all([one.release(), two.release()]);
await reload;
await Promise.all([catalog.close(), catalogB.close()]);

// What `sluice inspect` shows: every sluice semaphore (and rate limiter) in this Redis.
for (const found of await inspectRedis(serverA)) {
  if (found.kind === "semaphore") {
    console.log(`${found.name}: ${found.used}/${found.capacity} held, ${found.waiters.length} waiting`);
  }
}

// close() stops admitting, asks holders to stop, waits for them (here up to 1 s), then leaves.
await Promise.all([inA.close({ timeout: "1s" }), inB.close(), report.close()]);
serverA.disconnect();
serverB.disconnect();
server.stop();
