// Distributed semaphores on a local redis-server: sluice/redis vs redis-semaphore.
//
//   npm run build && node bench/redis.mjs [--runs 3] [--seconds 5] [--hold 1] [--callers 16] [--only a,b]
//
// Starts its own redis-server (from PATH, free loopback port, no persistence) and measures, per library:
// - uncontended acquire+release latency (p50/p99);
// - contended: capacity 4, 32 callers over 2 processes, each holding 1 ms, for --seconds: grants/s,
//   worst wait, per-caller fairness (least/most served), FIFO violations (see fifoViolations and
//   redisOrderViolations), hand-off latency (a release to
//   the next holder starting, p50/p99), Redis commands per grant (INFO commandstats before and after;
//   "all" counts the commands scripts run inside Redis too, "calls" only EVALSHA/EVAL/BLPOP/SUBSCRIBE and plain
//   commands sent by the clients), the CPU time redis-server spent per grant (INFO cpu), the CPU time the two client processes spent per grant, and the mean
//   hold and hand-off: a grant's cycle is its hold plus the hand-off after it, so capacity ÷ mean hold
//   bounds grants/s even for a hand-off that takes no time.
// Prints one Markdown table (medians over --runs).
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import Bottleneck from "bottleneck";
import { Redis } from "ioredis";
import { Semaphore as PeerSemaphore } from "redis-semaphore";
import { Semaphore } from "../dist/index.js";
import { asRedisConnection, fromIoredis, RedisSemaphore } from "../dist/redis.js";
import { localRedis } from "../examples/redis-server.mjs";
import { machine, median, quantile, table } from "./harness.mjs";

const self = fileURLToPath(import.meta.url);
const argument = (name, fallback) => {
  const index = process.argv.indexOf(`--${name}`);
  return index === -1 ? fallback : Number(process.argv[index + 1]);
};
const now = () => performance.timeOrigin + performance.now();
const mean = (values) => values.reduce((sum, value) => sum + value, 0) / values.length;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const CAPACITY = 4;
/** The row without Redis: in-process semaphores, to show what the hold loop itself allows. */
const CEILING = "no Redis: in-process Semaphore (ceiling)";
// --hold MS: how long each grant is held (default 1, the setting). Longer holds show each
// library's Redis load when waiters wait longer, as real work makes them: polling costs grow with the wait.
const HOLD_MS = argument("hold", 1);
const LONG_HOLD_MS = 20;
// --callers N: callers per process (default 16, the 32 over 2 processes). More callers show how
// each library's Redis load grows with the number waiting.
const CALLERS_PER_PROCESS = argument("callers", 16);

/**
 * The sluice client's connection, tapped to learn where each acquire arrived in Redis' order: the
 * acquire script's reply carries, per request, the ticket's seq (queued) or the last seq handed out
 * (granted at once). Requests of one tick travel in one script, one (weight, score, ticket) triple each.
 */
function tapArrivals(redis) {
  const inner = fromIoredis(redis);
  const tap = {
    /** ticket id -> arrival position (seq; +0.5 for a grant at once: after the tickets up to seq). */
    arrivals: new Map(),
  };
  const record = (args, reply) => {
    // ACQUIRE: ARGV 7 is the mode, ARGV 9.. the triples (weight, score, ticket id). The reply is
    // {n, epoch, then per request: status, value, seq or ready, slots} (see semaphore-scripts.ts).
    if (args[6] !== "wait") return reply;
    return reply.then((value) => {
      for (let index = 0; 8 + 3 * index < args.length; index++) {
        const at = 2 + 4 * index;
        tap.arrivals.set(Number(args[10 + 3 * index]), value[at] === 2 ? value[at + 1] : value[at + 2] + 0.5);
      }
      return value;
    });
  };
  tap.connection = asRedisConnection({
    evalsha: (sha, keys, args) => record(args, inner.evalsha(sha, keys, args)),
    eval: (script, keys, args) => record(args, inner.eval(script, keys, args)),
    subscribe: (channel, onMessage, onResubscribed) => inner.subscribe(channel, onMessage, onResubscribed),
    unsubscribe: (channel) => inner.unsubscribe(channel),
    scan: (cursor, pattern, count) => inner.scan(cursor, pattern, count),
    duplicate: () => inner.duplicate(),
    disconnect: () => inner.disconnect(),
  });
  return tap;
}

/** One acquirer per library: acquire() resolves to a release function. */
function makeAcquirer(library, redis, name, port) {
  if (library === CEILING) {
    // No Redis at all: in the contended runs, each of the 2 processes has half the permits. Its grants/s
    // is what the closed loop of 1 ms holds allows on this machine (setTimeout's lateness, scheduling):
    // the real ceiling.
    const semaphore = new Semaphore(CAPACITY / 2);
    return {
      acquire: async () => {
        const permit = await semaphore.acquire();
        return async () => permit.release();
      },
      close: async () => undefined,
    };
  }
  if (library === "bottleneck") {
    // bottleneck's Redis mode ("clustering"): the limiter's state and queue counts live in Redis; a job
    // holds its slot until the promise it returns settles, so a held slot is a job waiting on `release`.
    const limiter = new Bottleneck({
      id: name,
      maxConcurrent: CAPACITY,
      datastore: "ioredis",
      clientOptions: { host: "127.0.0.1", port },
    });
    limiter.on("error", () => undefined);
    return {
      acquire: () =>
        new Promise((granted) => {
          limiter.schedule(
            () =>
              new Promise((done) => {
                granted(async () => done());
              }),
          );
        }),
      close: () => limiter.disconnect(),
    };
  }
  if (library === "sluice") {
    const tap = tapArrivals(redis);
    const semaphore = new RedisSemaphore(tap.connection, {
      name,
      capacity: CAPACITY,
      leaseTtl: "10s",
      guardRestarts: false,
    });
    return {
      acquire: async () => {
        const pending = semaphore.acquire();
        // The number acquire() just gave this request (private; its script goes out in a microtask).
        const ticket = semaphore.key.tickets.lastId;
        const permit = await pending;
        const release = () => permit.release();
        release.token = permit.fencingToken;
        release.ticket = ticket;
        return release;
      },
      // Read once the run is over: a grant may overtake its acquire's reply.
      arrival: (ticket) => tap.arrivals.get(ticket),
      close: () => semaphore.close(),
    };
  }
  // redis-semaphore: one Semaphore object per holder (its identifier), polling every retryInterval
  // (default 10 ms) while the semaphore is full.
  return {
    acquire: async () => {
      const semaphore = new PeerSemaphore(redis, name, CAPACITY, { lockTimeout: 10_000, acquireTimeout: 60_000 });
      await semaphore.acquire();
      return () => semaphore.release();
    },
    close: async () => undefined,
  };
}

// ---- child process: 16 closed-loop callers ------------------------------------------------------

async function child(config) {
  const redis = new Redis(config.port, "127.0.0.1");
  const acquirer = makeAcquirer(config.library, redis, config.name, config.port);
  // Warm up the connection and the script cache outside the measurement.
  await (await acquirer.acquire())();
  await sleep(Math.max(0, config.startAt - now()));
  const cpuBefore = process.cpuUsage();
  const end = config.startAt + config.seconds * 1000;
  const grants = [];
  const releases = [];
  const caller = async (id) => {
    while (now() < end) {
      const requested = now();
      const release = await acquirer.acquire();
      const granted = now();
      await sleep(config.hold);
      const released = now();
      await release();
      grants.push([id, requested, granted, release.token, release.ticket]);
      releases.push(released);
    }
  };
  await Promise.all(Array.from({ length: config.callers }, (_, index) => caller(`${process.pid}:${index}`)));
  const cpu = process.cpuUsage(cpuBefore);
  await acquirer.close();
  // [4]: the ticket id becomes the arrival position in Redis.
  if (acquirer.arrival !== undefined) for (const grant of grants) grant[4] = acquirer.arrival(grant[4]) ?? null;
  redis.disconnect();
  process.stdout.write(JSON.stringify({ grants, releases, cpuMs: (cpu.user + cpu.system) / 1000 }));
}

// ---- parent --------------------------------------------------------------------------------------

async function startRedis() {
  const { port, stop } = await localRedis({ isolated: true });
  const redis = new Redis(port, "127.0.0.1", { retryStrategy: (times) => (times > 50 ? null : 50) });
  redis.on("error", () => undefined);
  await redis.ping();
  return { port, redis, stop };
}

async function commandStats(redis) {
  const text = await redis.info("commandstats");
  const stats = {};
  for (const match of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) stats[match[1]] = Number(match[2]);
  return stats;
}

/** Seconds of CPU the redis-server process has used (INFO cpu: user + system, all threads). */
async function redisCpuSeconds(redis) {
  const text = await redis.info("cpu");
  const field = (name) => Number(new RegExp(`^${name}:([\\d.]+)`, "m").exec(text)?.[1] ?? Number.NaN);
  return field("used_cpu_user") + field("used_cpu_sys");
}

function statsDelta(before, after) {
  let all = 0;
  let calls = 0;
  const byCommand = {};
  for (const [command, count] of Object.entries(after)) {
    if (command === "info" || command === "ping" || command === "script|load" || command.startsWith("client")) continue;
    const delta = count - (before[command] ?? 0);
    if (delta > 0) byCommand[command] = delta;
    all += delta;
    if (command === "evalsha" || command === "eval" || command === "blpop" || command === "subscribe") calls += delta;
  }
  return { all, calls, byCommand };
}

/**
 * A burst: BURST callers of one process ask at once (a batch job starting), capacity 4, each holding
 * 1 ms. Wall time until all are served, and Redis commands per grant (INFO commandstats).
 */
const BURST = 1_000;
async function burst(library, server) {
  // One process here: the no-Redis row gets the whole capacity.
  const local = new Semaphore(CAPACITY);
  const acquirer =
    library === CEILING
      ? {
          acquire: async () => {
            const permit = await local.acquire();
            return async () => permit.release();
          },
          close: async () => undefined,
        }
      : makeAcquirer(library, server.redis, `bench-burst-${Math.random()}`, server.port);
  await (await acquirer.acquire())();
  const before = await commandStats(server.redis);
  const cpuBefore = await redisCpuSeconds(server.redis);
  const start = performance.now();
  await Promise.all(
    Array.from({ length: BURST }, async () => {
      const release = await acquirer.acquire();
      await sleep(HOLD_MS);
      await release();
    }),
  );
  const ms = performance.now() - start;
  const redisCpu = (await redisCpuSeconds(server.redis)) - cpuBefore;
  const after = await commandStats(server.redis);
  await acquirer.close();
  const { all, calls } = statsDelta(before, after);
  return { ms, commands: all / BURST, calls: calls / BURST, redisCpu: (redisCpu * 1e6) / BURST };
}

async function uncontended(library, redis, port) {
  const acquirer = makeAcquirer(library, redis, `bench-uncontended-${Math.random()}`, port);
  // A long warm-up: V8 keeps compiling the client's and ioredis' code for the first thousand or so
  // calls (slow samples then are compilation, not Redis), and whichever library runs first would
  // otherwise also warm ioredis up for the ones after it.
  for (let i = 0; i < 2_000; i++) await (await acquirer.acquire())();
  const samples = [];
  for (let i = 0; i < 2_000; i++) {
    const start = performance.now();
    await (await acquirer.acquire())();
    samples.push(performance.now() - start);
  }
  await acquirer.close();
  return { p50: quantile(samples, 0.5), p99: quantile(samples, 0.99) };
}

function runChild(config) {
  return new Promise((resolve, reject) => {
    const process_ = spawn(process.execPath, [self, "--child", JSON.stringify(config)], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let output = "";
    process_.stdout.on("data", (chunk) => {
      output += chunk;
    });
    process_.on("exit", (code) =>
      code === 0 ? resolve(JSON.parse(output)) : reject(new Error(`child exited ${code}`)),
    );
  });
}

/**
 * FIFO violations as the callers see them: grants that overtook a caller who had asked at least 1 ms
 * earlier and was granted at least 1 ms later. The 1 ms on both sides absorbs what the library cannot
 * control — two processes stamp times before sending and after receiving, and the scheduler of a busy
 * machine sits between. Requests in the first 100 ms are left out: all 32 callers ask at once then.
 * The same for both libraries; on a loaded machine it also counts requests that were merely *sent*
 * later than stamped (a process descheduled between its stamp and its write), which no library can
 * order. For sluice, redisOrderViolations counts only what Redis itself did out of order.
 */
function fifoViolations(grants, startAt) {
  const order = (grant) => grant[2];
  const slack = 1;
  const byRequest = grants.filter((grant) => grant[1] >= startAt + 100).sort((a, b) => a[1] - b[1]);
  let violations = 0;
  let latestOfEarlier = Number.NEGATIVE_INFINITY;
  let earlier = 0;
  for (const grant of byRequest) {
    while (earlier < byRequest.length && byRequest[earlier][1] <= grant[1] - 1) {
      latestOfEarlier = Math.max(latestOfEarlier, order(byRequest[earlier]));
      earlier++;
    }
    if (latestOfEarlier >= order(grant) + slack) violations++;
  }
  return violations;
}

/**
 * FIFO violations in Redis' own order (sluice only): grants that Redis made before the grant of a
 * request that had arrived in Redis earlier. Arrival is the ticket's seq (a grant at once counts as
 * arriving after every ticket up to the last seq handed out), grant order is the fencing token; both
 * are Redis counters, so no clock or scheduler is involved — a count above 0 is a bug. (Previously
 * this compared client-side request stamps with tokens: "FIFO violations (Redis grant order)" of 11
 * on a loaded machine were requests stamped earlier but sent later by a descheduled process.)
 */
function redisOrderViolations(grants) {
  const byArrival = grants
    .filter((grant) => grant[4] !== null && grant[4] !== undefined)
    .sort((a, b) => a[4] - b[4] || a[3] - b[3]);
  let violations = 0;
  let latestToken = Number.NEGATIVE_INFINITY;
  for (const grant of byArrival) {
    if (grant[3] < latestToken) violations++;
    latestToken = Math.max(latestToken, grant[3]);
  }
  return violations;
}

/** For each grant that had to wait, the time from the latest release before it to its start. */
function handOffs(grants, releases) {
  const sortedReleases = [...releases].sort((a, b) => a - b);
  const result = [];
  for (const [, requested, granted] of grants) {
    // Find the latest release before `granted` (binary search); only grants that waited for one count.
    let low = 0;
    let high = sortedReleases.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (sortedReleases[middle] <= granted) low = middle + 1;
      else high = middle;
    }
    const release = sortedReleases[low - 1];
    if (release !== undefined && release > requested) result.push(granted - release);
  }
  return result;
}

async function contended(library, server, seconds, hold = HOLD_MS) {
  const name = `bench-contended-${library}-${Math.random()}`;
  const startAt = now() + 1_500;
  const before = await commandStats(server.redis);
  const cpuBefore = await redisCpuSeconds(server.redis);
  const outputs = await Promise.all(
    [0, 1].map(() =>
      runChild({ library, port: server.port, name, startAt, seconds, callers: CALLERS_PER_PROCESS, hold }),
    ),
  );
  const redisCpu = (await redisCpuSeconds(server.redis)) - cpuBefore;
  const after = await commandStats(server.redis);
  const grants = outputs.flatMap((output) => output.grants);
  const releases = outputs.flatMap((output) => output.releases);
  const perCaller = new Map();
  for (const [id] of grants) perCaller.set(id, (perCaller.get(id) ?? 0) + 1);
  const counts = [...perCaller.values()];
  const { all, calls, byCommand } = statsDelta(before, after);
  // Two warm-up grants (one per process) happened outside the measured window but inside the stats.
  const measured = grants.length;
  const handOff = handOffs(grants, releases);
  const known = grants.filter((grant) => grant[4] !== null && grant[4] !== undefined).length;
  if (library === "sluice" && known < grants.length) {
    console.error(`warning: Redis arrival order unknown for ${grants.length - known} of ${grants.length} grants`);
  }
  return {
    grantsPerSecond: measured / seconds,
    worstWait: Math.max(...grants.map(([, requested, granted]) => granted - requested)),
    fairness: Math.min(...counts) / Math.max(...counts),
    leastMost: `${Math.min(...counts)}-${Math.max(...counts)}`,
    fifo: fifoViolations(grants, startAt),
    fifoInRedis: library === "sluice" ? redisOrderViolations(grants) : Number.NaN,
    // The hold as the callers measured it (granted -> release called) and the gap that follows: with the
    // same 1 ms setTimeout, a hold started from an I/O callback (a Redis reply or notice) lasts longer than
    // one started from another holder's timer. capacity / mean hold bounds grants/s even if hand-offs
    // took no time at all.
    holdMean: mean(outputs.flatMap((output) => output.grants.map((grant, index) => output.releases[index] - grant[2]))),
    handOffMean: mean(handOff),
    handOffP50: quantile(handOff, 0.5),
    handOffP99: quantile(handOff, 0.99),
    redisCpuPerGrant: (redisCpu * 1e6) / measured,
    cpuPerGrant: (outputs.reduce((sum, output) => sum + output.cpuMs, 0) * 1000) / measured,
    commandsPerGrant: all / (measured + 2),
    callsPerGrant: calls / (measured + 2),
    byCommand: Object.fromEntries(
      Object.entries(byCommand).map(([command, count]) => [command, count / (measured + 2)]),
    ),
  };
}

async function main() {
  const runs = argument("runs", 3);
  const only = process.argv.indexOf("--only");
  const libraries =
    only === -1 ? [CEILING, "sluice", "redis-semaphore", "bottleneck"] : process.argv[only + 1].split(",");
  const seconds = argument("seconds", 5);
  const server = await startRedis();
  try {
    const rows = [];
    const breakdown = new Map();
    for (const library of libraries) {
      const latency = [];
      const results = [];
      for (let run = 0; run < runs; run++) {
        latency.push(await uncontended(library, server.redis, server.port));
        results.push(await contended(library, server, seconds));
      }
      const mid = (pick) => median(results.map(pick));
      if (library !== CEILING) breakdown.set(library, results[Math.floor(results.length / 2)].byCommand);
      rows.push({
        library,
        "uncontended p50 ms": median(latency.map((entry) => entry.p50)),
        "uncontended p99 ms": median(latency.map((entry) => entry.p99)),
        "grants/s": mid((result) => result.grantsPerSecond),
        "worst wait ms": mid((result) => result.worstWait),
        "least/most served": results[Math.floor(results.length / 2)].leastMost,
        "fairness (least/most)": mid((result) => result.fairness),
        "FIFO violations (client clocks)": mid((result) => result.fifo),
        "FIFO violations (Redis order)": library === "sluice" ? mid((result) => result.fifoInRedis) : "n/a",
        "hand-off p50 ms": mid((result) => result.handOffP50),
        "hand-off p99 ms": mid((result) => result.handOffP99),
        "hand-off mean ms": mid((result) => result.handOffMean),
        "hold mean ms": mid((result) => result.holdMean),
        "grants/s bound (capacity ÷ mean hold)": mid((result) => CAPACITY / (result.holdMean / 1000)),
        "commands/grant (all)": mid((result) => result.commandsPerGrant),
        "calls/grant (client)": mid((result) => result.callsPerGrant),
        "client CPU µs/grant": mid((result) => result.cpuPerGrant),
        "Redis CPU µs/grant": mid((result) => result.redisCpuPerGrant),
      });
    }
    console.log(
      `Redis semaphores — capacity ${CAPACITY}, ${CALLERS_PER_PROCESS * 2} callers over 2 processes, ${HOLD_MS} ms hold, ${seconds} s, median of ${runs}`,
    );
    console.log(machine());
    console.log();
    const ceiling = rows.find((row) => row.library === CEILING);
    if (ceiling !== undefined) {
      for (const row of rows) row["% of ceiling"] = `${((row["grants/s"] / ceiling["grants/s"]) * 100).toFixed(1)} %`;
    }
    console.log(table(rows));
    // The same contended run with 20 ms holds (unless --hold chose one): waiters wait 20 times longer,
    // as they do behind real work, and a poller asks Redis that much more often per grant.
    if (!process.argv.includes("--hold")) {
      const longRows = [];
      for (const library of libraries) {
        if (library === CEILING) continue;
        const results = [];
        for (let run = 0; run < runs; run++) results.push(await contended(library, server, seconds, LONG_HOLD_MS));
        const mid = (pick) => median(results.map(pick));
        longRows.push({
          library,
          "grants/s": mid((result) => result.grantsPerSecond),
          "worst wait ms": mid((result) => result.worstWait),
          "fairness (least/most)": mid((result) => result.fairness),
          "commands/grant (all)": mid((result) => result.commandsPerGrant),
          "calls/grant (client)": mid((result) => result.callsPerGrant),
          "Redis CPU µs/grant": mid((result) => result.redisCpuPerGrant),
          "client CPU µs/grant": mid((result) => result.cpuPerGrant),
        });
      }
      console.log();
      console.log(
        `Longer holds: the same, each holding ${LONG_HOLD_MS} ms (ceiling ${((CAPACITY * 1000) / LONG_HOLD_MS).toLocaleString("en-US")} grants/s), median of ${runs}:`,
      );
      console.log();
      console.log(table(longRows));
    }
    const burstRows = [];
    for (const library of libraries) {
      const results = [];
      for (let run = 0; run < runs; run++) results.push(await burst(library, server));
      burstRows.push({
        library,
        "ms until all served": median(results.map((result) => result.ms)),
        "commands/grant (all)": median(results.map((result) => result.commands)),
        "calls/grant (client)": median(results.map((result) => result.calls)),
        "Redis CPU µs/grant": median(results.map((result) => result.redisCpu)),
      });
    }
    console.log();
    console.log(
      `Burst: ${BURST.toLocaleString("en-US")} callers of one process ask at once, capacity ${CAPACITY}, each holding ${HOLD_MS} ms (median of ${runs}):`,
    );
    console.log();
    console.log(table(burstRows));
    // Which commands a grant costs inside Redis (INFO commandstats), per library, for the middle run.
    const commands = [...new Set([...breakdown.values()].flatMap((entry) => Object.keys(entry)))].sort();
    console.log();
    console.log("Redis commands per grant, by command (middle run):");
    console.log();
    console.log(
      table(
        commands.map((command) => ({
          command,
          ...Object.fromEntries([...breakdown].map(([library, entry]) => [library, (entry[command] ?? 0).toFixed(2)])),
        })),
      ),
    );
  } finally {
    server.redis.disconnect();
    server.stop();
  }
}

if (process.argv[2] === "--child") await child(JSON.parse(process.argv[3]));
else await main();
