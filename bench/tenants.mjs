// Many tenants, in process: decisions per second and heap per key with many keys, then heap once the
// keys went idle — sluice's KeyedRateLimiter against rate-limiter-flexible's RateLimiterMemory, and
// sluice's KeyedSemaphore against a p-limit-per-key map (what users write by hand: it never frees a key).
// Then in Redis (a local redis-server of its own): RedisKeyedRateLimiter against RateLimiterRedis in one
// process, then in two processes deciding on the same keys: decisions per second and commands per
// decision over --redis-keys keys (default 10,000), --in-flight decisions at once in each (default 64).
// Then RedisKeyedSemaphore in two processes on the same keys (capacity 1 per key, acquire + release per
// key): decisions per second, commands and round trips per decision, the grant-notice subscriptions (the
// most at once, sampled) and the heartbeat scripts. `--semaphore-before <dir>` adds the same run of
// another build's dist (say main's, built in /tmp) to compare with.
// Each in-process contender is measured --runs times (default 3), the contenders taking turns, and each
// figure is the median of its runs: the machine is shared, and its load moves within a minute.
// Run: npm run build && node --expose-gc bench/tenants.mjs [--keys 100000] [--runs 3] [--redis-keys 10000] [--in-flight 64] [--redis-only] [--semaphore-only] [--semaphore-before /tmp/main/dist]
import { spawn } from "node:child_process";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import pLimit from "p-limit";
import { RateLimiterMemory, RateLimiterRedis } from "rate-limiter-flexible";
import { FairLimiter, KeyedRateLimiter, KeyedSemaphore } from "../dist/index.js";
import { RedisKeyedRateLimiter } from "../dist/redis.js";
import { localRedis } from "../examples/redis-server.mjs";
import { heapUsed, machine, median, requireGc, table } from "./harness.mjs";

const argv = process.argv.slice(2);
const text = (name, fallback) => {
  const at = argv.indexOf(`--${name}`);
  return at === -1 ? fallback : argv[at + 1];
};
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

const REDIS_KEYS = option("redis-keys", 10_000);
/** Decisions in flight at once in each process (`--in-flight`): 64, as a server handling many users has. */
const IN_FLIGHT = option("in-flight", 64);

async function inProcess() {
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
}

// --- Redis ---------------------------------------------------------------------------------------------
/** The contenders in Redis, by name: each makes its decide(key) on a client, under a name of the run's. */
const redisContenders = {
  "sluice RedisKeyedRateLimiter": (redis, name) => {
    const limiter = new RedisKeyedRateLimiter(redis, { name, limits: [{ limit: PER_KEY, interval: 60_000 }] });
    return (key) => limiter.acquire(key, { timeout: 0 });
  },
  "sluice RedisKeyedRateLimiter, with a global level": (redis, name) => {
    const limiter = new RedisKeyedRateLimiter(redis, {
      name,
      limits: [{ limit: PER_KEY, interval: 60_000 }],
      levels: [{ name: "global", limits: [{ limit: 1e9, interval: 60_000 }] }],
    });
    return (key) => limiter.acquire(key, { timeout: 0 });
  },
  "rate-limiter-flexible RateLimiterRedis": (redis, name) => {
    const limiter = new RateLimiterRedis({ storeClient: redis, points: PER_KEY, duration: 60, keyPrefix: name });
    return (key) => limiter.consume(key);
  },
};

/** RedisKeyedSemaphore of the build in `dist` (this one's, or another's to compare with): acquire + release. */
const semaphoreContender = (dist) => async (redis, name) => {
  const { RedisKeyedSemaphore } = await import(`${dist}/redis.js`);
  const semaphore = new RedisKeyedSemaphore(redis, { name, capacityPerKey: 1, guardRestarts: false });
  return async (key) => {
    const permit = await semaphore.acquire(key, { timeout: 30_000 });
    await permit.release();
  };
};
const THIS_DIST = fileURLToPath(new URL("../dist", import.meta.url));
const semaphoreContenders = {
  "sluice RedisKeyedSemaphore (this build)": semaphoreContender(THIS_DIST),
  ...(text("semaphore-before") === undefined
    ? {}
    : { "sluice RedisKeyedSemaphore (before)": semaphoreContender(text("semaphore-before")) }),
};

/**
 * One process's part: `decide` on every one of `count` keys, two passes, IN_FLIGHT decisions at once
 * (as a server handling many users would have), from the parent's "go" on. Prints when it began and ended
 * (wall-clock scale, comparable between processes) and how many decisions were refused.
 */
async function redisWorker() {
  const [contender, name] = [argv[argv.indexOf("--redis-worker") + 1], argv[argv.indexOf("--name") + 1]];
  const redis = new Redis(option("port", 0), "127.0.0.1");
  // Requests sent to Redis (each is answered once: a round trip, pipelined on the one connection), and
  // of them the semaphore's heartbeats (the only script whose 7th argument is "renew").
  let requests = 0;
  let heartbeats = 0;
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = (command, ...rest) => {
    requests++;
    const args = command?.args ?? [];
    if (/^evalsha$|^eval$/i.test(command?.name ?? "") && args[2 + Number(args[1]) + 6] === "renew") heartbeats++;
    return send(command, ...rest);
  };
  const decide = await (redisContenders[contender] ?? semaphoreContenders[contender])(redis, name);
  const redisKeys = keys.slice(0, option("redis-keys", 10_000));
  await redis.ping();
  console.log(JSON.stringify({ ready: true }));
  requests = 0;
  await new Promise((resolve) => process.stdin.once("data", resolve));
  const began = performance.timeOrigin + performance.now();
  let refused = 0;
  const counted = (key) => decide(key).catch(() => refused++);
  for (let pass = 0; pass < 2; pass++) {
    for (let at = 0; at < redisKeys.length; at += IN_FLIGHT) {
      await Promise.all(redisKeys.slice(at, at + IN_FLIGHT).map(counted));
    }
  }
  const ended = performance.timeOrigin + performance.now();
  // A lease's worth more, for the heartbeats due after the run (one per lease third per key before).
  if (text("linger") !== undefined) await sleep(Number(text("linger")));
  console.log(JSON.stringify({ began, ended, decisions: 2 * redisKeys.length, refused, requests, heartbeats }));
  redis.disconnect();
  process.stdin.destroy();
}

/**
 * Runs `processes` workers of one contender at once on the same keys; decisions/s over them all. With
 * `linger` (ms), each worker waits that long after its run before it reports (its heartbeats go on).
 */
async function measureRedis(contender, processes, port, redis, run, linger) {
  const started = Array.from({ length: processes }, () => {
    const child = spawn(
      process.execPath,
      [
        fileURLToPath(import.meta.url),
        "--redis-worker",
        contender,
        "--name",
        `bench-${run}`,
        "--port",
        String(port),
        "--redis-keys",
        String(REDIS_KEYS),
        "--in-flight",
        String(IN_FLIGHT),
        ...(linger === undefined ? [] : ["--linger", String(linger)]),
        ...(text("semaphore-before") === undefined ? [] : ["--semaphore-before", text("semaphore-before")]),
      ],
      { stdio: ["pipe", "pipe", "inherit"] },
    );
    const lines = [];
    let buffer = "";
    const arrived = [];
    child.stdout.on("data", (chunk) => {
      buffer += chunk;
      for (let at = buffer.indexOf("\n"); at >= 0; at = buffer.indexOf("\n")) {
        lines.push(JSON.parse(buffer.slice(0, at)));
        buffer = buffer.slice(at + 1);
        arrived.shift()?.();
      }
    });
    const next = async () => {
      while (lines.length === 0) await new Promise((resolve) => arrived.push(resolve));
      return lines.shift();
    };
    return { child, next };
  });
  for (const { next } of started) await next(); // ready
  const before = await commandsProcessed(redis);
  for (const { child } of started) child.stdin.write("go\n");
  // The grant-notice channels of the run's name, sampled every 50 ms while it runs (the most at once).
  let subscriptions = 0;
  let samples = 0;
  let running = true;
  const sampling = (async () => {
    while (running) {
      samples++;
      const channels = await redis.pubsub("CHANNELS", `sluice:{bench-${run}*:wake:*`);
      subscriptions = Math.max(subscriptions, channels.length);
      await sleep(50);
    }
  })();
  const reports = await Promise.all(started.map(({ next }) => next()));
  running = false;
  await sampling;
  const commands = (await commandsProcessed(redis)) - before - 1 - samples;
  const decisions = reports.reduce((sum, report) => sum + report.decisions, 0);
  const elapsed = Math.max(...reports.map((report) => report.ended)) - Math.min(...reports.map((r) => r.began));
  const row = {
    contender,
    processes: String(processes),
    "decisions/s": Math.round(decisions / (elapsed / 1_000)),
    "commands per decision": Number((commands / decisions).toFixed(3)),
    "round trips per decision": Number(
      (reports.reduce((sum, report) => sum + report.requests, 0) / decisions).toFixed(3),
    ),
  };
  if (linger === undefined)
    return { ...row, refused: String(reports.reduce((sum, report) => sum + report.refused, 0)) };
  return {
    ...row,
    "subscriptions (most at once)": String(subscriptions),
    "heartbeat scripts": String(reports.reduce((sum, report) => sum + report.heartbeats, 0)),
  };
}

/** Commands the server processed (INFO stats), the INFO call itself included. */
async function commandsProcessed(redis) {
  const info = await redis.info("stats");
  return Number(/total_commands_processed:(\d+)/.exec(info)?.[1]);
}

/** How long each semaphore worker stays after its run: a lease (10 s) and a bit, so that heartbeats show. */
const SEMAPHORE_LINGER = option("semaphore-linger", 11_000);

async function redisBench() {
  const { port, stop } = await localRedis({ isolated: true });
  const redis = new Redis(port, "127.0.0.1");
  const redisRows = [];
  const semaphoreRows = [];
  let run = 0;
  try {
    for (const processes of argv.includes("--semaphore-only") ? [] : [1, 2]) {
      for (const contender of Object.keys(redisContenders)) {
        redisRows.push(await measureRedis(contender, processes, port, redis, ++run));
      }
    }
    for (const contender of Object.keys(semaphoreContenders)) {
      semaphoreRows.push(await measureRedis(contender, 2, port, redis, ++run, SEMAPHORE_LINGER));
    }
  } finally {
    redis.disconnect();
    await stop();
  }
  console.log(
    `\n## Many tenants, in Redis (${REDIS_KEYS.toLocaleString("en")} keys, 2 decisions each per process, ${IN_FLIGHT} at once in each process; 2 processes decide on the same keys)\n`,
  );
  console.log(
    `${machine()}; load average ${loadavg()
      .map((load) => load.toFixed(1))
      .join(", ")} at the end\n`,
  );
  if (redisRows.length > 0) console.log(table(redisRows));
  console.log(
    `\n## RedisKeyedSemaphore in Redis (${REDIS_KEYS.toLocaleString("en")} keys, capacity 1 each, acquire + release per key, 2 passes, ${IN_FLIGHT} at once in each of 2 processes on the same keys; lease 10 s; heartbeats counted until ${SEMAPHORE_LINGER / 1000} s after the run)\n`,
  );
  console.log(table(semaphoreRows));
}
if (argv.includes("--redis-worker")) await redisWorker();
else {
  if (!argv.includes("--redis-only")) await inProcess();
  await redisBench();
}
