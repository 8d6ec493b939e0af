// Many tenants, in process: decisions per second and heap per key with many keys, then heap once the
// keys went idle — sluice's KeyedRateLimiter against rate-limiter-flexible's RateLimiterMemory, and
// sluice's KeyedSemaphore against a p-limit-per-key map (what users write by hand: it never frees a key).
// Then in Redis (a local redis-server of its own): RedisKeyedRateLimiter against RateLimiterRedis, one
// process, decisions per second and commands per decision over --redis-keys keys (default 10,000).
// Each in-process contender is measured --runs times (default 3), the contenders taking turns, and each
// figure is the median of its runs: the machine is shared, and its load moves within a minute.
// Run: npm run build && node --expose-gc bench/tenants.mjs [--keys 100000] [--runs 3] [--redis-keys 10000]
import { Redis } from "ioredis";
import pLimit from "p-limit";
import { RateLimiterMemory, RateLimiterRedis } from "rate-limiter-flexible";
import { FairLimiter, KeyedRateLimiter, KeyedSemaphore } from "../dist/index.js";
import { RedisKeyedRateLimiter } from "../dist/redis.js";
import { localRedis } from "../examples/redis-server.mjs";
import { heapUsed, machine, median, requireGc, table } from "./harness.mjs";

const argv = process.argv.slice(2);
const option = (name, fallback) => {
  const at = argv.indexOf(`--${name}`);
  return at === -1 ? fallback : Number(argv[at + 1]);
};
const KEYS = option("keys", 100_000);
const RUNS = option("runs", 3);
/** Each key's budget; the run spends 2 per key in 2 passes, so every decision is a grant. */
const PER_KEY = 10;
const INTERVAL_MS = 1_000;
const keys = Array.from({ length: KEYS }, (_, i) => `user-${i}`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Measures one contender: `decide(key)` once per key per pass, two passes (the first makes the keys),
 * then the heap with every key live, then the heap after `idleMs` with nothing happening.
 */
async function measure(name, make, decide, idleMs) {
  const start = heapUsed();
  // Held from outside the timed code, so that nothing can collect it before the live heap is read.
  const kept = [make()];
  const limiter = kept[0];
  const passes = [];
  for (let pass = 0; pass < 2; pass++) {
    const began = performance.now();
    for (const key of keys) await decide(limiter, key);
    passes.push(performance.now() - began);
  }
  const live = heapUsed();
  await sleep(idleMs);
  const idle = heapUsed();
  const left = typeof limiter.size === "number" ? limiter.size : "?";
  kept.length = 0;
  return {
    name,
    newKeys: KEYS / ((passes[0] ?? 0) / 1_000),
    liveKeys: KEYS / ((passes[1] ?? 0) / 1_000),
    perKey: (live - start) / KEYS,
    idleOver: idle - start,
    idlePercent: ((idle - start) / start) * 100,
    left,
  };
}

/** One row of the table: the median of each figure over a contender's runs. */
function row(runs) {
  const of = (field) => median(runs.map((run) => run[field]));
  return {
    contender: runs[0].name,
    "new keys: decisions/s": Math.round(of("newKeys")),
    "live keys: decisions/s": Math.round(of("liveKeys")),
    "heap per live key (B)": Math.round(of("perKey")),
    "heap after idle, over start": `${of("idlePercent").toFixed(1)}% (${Math.round(of("idleOver") / 1024)} KiB)`,
    "keys left after idle": runs[0].left,
  };
}

requireGc();
/** The contenders: what `measure` takes after the name. */
const contenders = [
  [
    "sluice KeyedRateLimiter (tryAcquire)",
    () => new KeyedRateLimiter({ limits: [{ limit: PER_KEY, interval: INTERVAL_MS }] }),
    (limiter, key) => {
      const permit = limiter.tryAcquire(key);
      if (permit === undefined) throw new Error("refused");
      permit.release();
    },
    INTERVAL_MS + 200,
  ],
  [
    "sluice KeyedRateLimiter (await acquire)",
    () => new KeyedRateLimiter({ limits: [{ limit: PER_KEY, interval: INTERVAL_MS }] }),
    async (limiter, key) => (await limiter.acquire(key)).release(),
    INTERVAL_MS + 200,
  ],
  [
    "rate-limiter-flexible RateLimiterMemory (await consume)",
    () => new RateLimiterMemory({ points: PER_KEY, duration: INTERVAL_MS / 1_000 }),
    (limiter, key) => limiter.consume(key),
    INTERVAL_MS + 200,
  ],
  [
    "sluice KeyedSemaphore(1) (await run)",
    () => new KeyedSemaphore(1),
    (semaphore, key) => semaphore.run(key, () => undefined),
    0,
  ],
  [
    "p-limit per key in a Map (await limit)",
    () => new Map(),
    (map, key) => {
      let limit = map.get(key);
      if (limit === undefined) map.set(key, (limit = pLimit(1)));
      return limit(() => undefined);
    },
    0,
  ],
];
const runs = contenders.map(() => []);
for (let run = 0; run < RUNS; run++) {
  for (const [index, contender] of contenders.entries()) runs[index]?.push(await measure(...contender));
}
const rows = runs.map(row);

console.log(
  `## Many tenants, in process (${KEYS.toLocaleString("en")} keys, one decision per key on new keys, then one on live keys; each figure the median of ${RUNS} runs, the contenders taking turns; the machine is shared with other work, so compare within a run)\n`,
);
console.log(machine());
console.log();
console.log(table(rows));

// --- Fair turns ------------------------------------------------------------------------------------------
/**
 * FairLimiter(1): `tenants` keys with `perTenant` waiters each (weight 1, share 1), then 100,000 grants
 * (each release hands the slot to the next turn): the cost per grant should not grow with the keys.
 */
async function fairGrants(tenants, perTenant) {
  const limiter = new FairLimiter(1);
  const held = [];
  for (let job = 0; job < perTenant; job++) {
    for (let tenant = 0; tenant < tenants; tenant++)
      limiter.acquire(`t${tenant}`).then(
        (permit) => held.push(permit),
        () => undefined, // cleared at the end
      );
  }
  await null;
  await null;
  const grants = 100_000;
  const began = performance.now();
  for (let i = 0; i < grants; i++) {
    held.pop()?.release();
    await null;
    await null;
  }
  const elapsed = performance.now() - began;
  limiter.clear();
  return { "keys waiting": tenants, "waiters each": perTenant, "ns per grant": Math.round((elapsed * 1e6) / grants) };
}
const fairRows = [await fairGrants(10, 20_000), await fairGrants(1_000, 200), await fairGrants(100_000, 2)];
console.log("\n## Fair turns: FairLimiter(1), 100,000 grants, one release and one grant each\n");
console.log(table(fairRows));

// --- Redis ---------------------------------------------------------------------------------------------
const REDIS_KEYS = option("redis-keys", 10_000);
const { port, stop } = await localRedis({ isolated: true });
const redis = new Redis(port, "127.0.0.1");
/** Commands the server processed (INFO stats), minus the INFO calls themselves. */
async function commandsProcessed() {
  const info = await redis.info("stats");
  return Number(/total_commands_processed:(\d+)/.exec(info)?.[1]);
}
async function measureRedis(name, decide) {
  const redisKeys = keys.slice(0, REDIS_KEYS);
  const before = await commandsProcessed();
  const began = performance.now();
  for (let pass = 0; pass < 2; pass++) {
    // 64 decisions in flight at once, as a server handling many users would have.
    for (let at = 0; at < redisKeys.length; at += 64) await Promise.all(redisKeys.slice(at, at + 64).map(decide));
  }
  const elapsed = performance.now() - began;
  const commands = (await commandsProcessed()) - before - 1;
  return {
    contender: name,
    "decisions/s": Math.round((2 * REDIS_KEYS) / (elapsed / 1_000)),
    "commands per decision": commands / (2 * REDIS_KEYS),
  };
}
const redisRows = [];
try {
  const sluiceRedis = new RedisKeyedRateLimiter(redis, {
    name: "bench",
    limits: [{ limit: PER_KEY, interval: 60_000 }],
  });
  redisRows.push(await measureRedis("sluice RedisKeyedRateLimiter", (key) => sluiceRedis.acquire(key, { timeout: 0 })));
  const sluiceLevels = new RedisKeyedRateLimiter(redis, {
    name: "bench-levels",
    limits: [{ limit: PER_KEY, interval: 60_000 }],
    levels: [{ name: "global", limits: [{ limit: 1e9, interval: 60_000 }] }],
  });
  redisRows.push(
    await measureRedis("sluice RedisKeyedRateLimiter, with a global level", (key) =>
      sluiceLevels.acquire(key, { timeout: 0 }),
    ),
  );
  const flexible = new RateLimiterRedis({ storeClient: redis, points: PER_KEY, duration: 60, keyPrefix: "bench-rlf" });
  redisRows.push(await measureRedis("rate-limiter-flexible RateLimiterRedis", (key) => flexible.consume(key)));
} finally {
  redis.disconnect();
  await stop();
}
console.log(
  `\n## Many tenants, in Redis (${REDIS_KEYS.toLocaleString("en")} keys, 2 decisions each, 64 at once, one process)\n`,
);
console.log(table(redisRows));
