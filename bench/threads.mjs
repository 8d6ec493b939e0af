import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { localRedis } from "../examples/redis-server.mjs";
import { machine, median, quantile, table } from "./harness.mjs";

const dist = (file) => new URL(`../dist/${file}`, import.meta.url).href;
const noop = async () => {};
const STALL_MS = 20_000;
/** Subjects that stopped making progress (reported under the tables). */
const stalls = [];

if (!isMainThread) await workerMain(workerData);
else await main();

// ---------------------------------------------------------------------------------------------------
// Worker side.

async function makeLimiter(kind, data) {
  if (kind === "shared") {
    const { SharedSemaphore } = await import(dist("threads.js"));
    return { limiter: SharedSemaphore.from(data.handle), close: async () => {} };
  }
  const { default: Redis } = await import("ioredis");
  const { RedisSemaphore } = await import(dist("redis.js"));
  const redis = new Redis({ host: "127.0.0.1", port: data.port, lazyConnect: false });
  // A fresh server for the benchmark: its restart guard (wait one lease after Redis starts) would only
  // measure the lease length.
  const limiter = new RedisSemaphore(redis, { name: data.name, capacity: data.capacity, guardRestarts: false });
  return {
    limiter,
    close: async () => {
      await limiter.close();
      redis.disconnect();
    },
  };
}

async function workerMain(data) {
  const { limiter, close } = await makeLimiter(data.kind, data);
  if (data.role === "throughput") {
    const gate = new Int32Array(data.gate);
    Atomics.add(gate, 1, 1);
    const wait = Atomics.waitAsync(gate, 0, 0);
    // A pending waitAsync does not keep a thread alive; the timer does, until the gate opens.
    const keepAlive = setInterval(() => {}, 60_000);
    if (wait.async) await wait.value;
    clearInterval(keepAlive);
    await Promise.all(
      Array.from({ length: data.loops }, async () => {
        for (let i = 0; i < data.opsPerLoop; i++) {
          await limiter.run(noop);
          Atomics.add(gate, 2, 1);
        }
      }),
    );
  } else {
    const { processClock } = await import(dist("threads.js"));
    await pingPong(limiter, processClock, data);
  }
  await close();
  parentPort.postMessage("done");
}

/**
 * One party of the hand-off benchmark. `stamp[0]` is when the last release happened; each party
 * writes its latencies into `latencies[count]`, where `count` is the shared hand-off counter.
 */
async function pingPong(limiter, clock, data) {
  const stamp = new Float64Array(data.stamp);
  const latencies = new Float64Array(data.latencies);
  const count = new Int32Array(data.count);
  let permit = await limiter.acquire();
  for (;;) {
    const now = clock.now();
    const index = Atomics.add(count, 0, 1);
    if (index >= data.handoffs) {
      await permit.release();
      return;
    }
    if (index > 0) latencies[index] = now - stamp[0];
    // Queue behind the other party first, then let go: the release hands the lock straight over.
    const next = limiter.acquire();
    stamp[0] = clock.now();
    await permit.release();
    permit = await next;
  }
}

// ---------------------------------------------------------------------------------------------------
// Main side.

function argument(name, fallback) {
  const index = process.argv.indexOf(`--${name}`);
  return index < 0 ? fallback : Number(process.argv[index + 1]);
}

function startWorker(data) {
  const worker = new Worker(new URL(import.meta.url), { workerData: data });
  const done = new Promise((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  return { worker, done };
}

async function waitUntil(condition) {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 1));
}

/** Ops per second for `threads` workers x `loops` callers doing `total` run(noop) calls together. */
async function throughputAcrossWorkers(kind, threads, loops, total, extra) {
  // [open, workers ready, operations done]
  const gate = new Int32Array(new SharedArrayBuffer(12));
  const opsPerLoop = Math.round(total / (threads * loops));
  const started = Array.from({ length: threads }, () =>
    startWorker({ role: "throughput", kind, loops, opsPerLoop, gate: gate.buffer, ...extra() }),
  );
  await waitUntil(() => Atomics.load(gate, 1) === threads);
  const begin = performance.now();
  Atomics.store(gate, 0, 1);
  Atomics.notify(gate, 0);
  // A stalled subject must not hang the whole benchmark: give up after STALL_MS and say so.
  let timer;
  const finished = await Promise.race([
    Promise.all(started.map(({ done }) => done)).then(() => true),
    new Promise((resolve) => {
      timer = setTimeout(() => resolve(false), STALL_MS);
    }),
  ]);
  clearTimeout(timer);
  const seconds = (performance.now() - begin) / 1000;
  await Promise.all(started.map(({ worker }) => worker.terminate()));
  const expected = opsPerLoop * loops * threads;
  if (!finished) {
    stalls.push(
      `${kind}, ${threads} workers x ${loops}: stalled at ${Atomics.load(gate, 2)} of ${expected} operations`,
    );
    return Number.NaN;
  }
  return expected / seconds;
}

async function throughputInMainThread(limiter, loops, total) {
  const opsPerLoop = Math.round(total / loops);
  const begin = performance.now();
  await Promise.all(
    Array.from({ length: loops }, async () => {
      for (let i = 0; i < opsPerLoop; i++) await limiter.run(noop);
    }),
  );
  return (opsPerLoop * loops) / ((performance.now() - begin) / 1000);
}

/** Hand-off latencies (µs): two workers on `kind`, or two callers in this thread on `local`. */
async function handoff(kind, handoffs, extra, local) {
  const stamp = new Float64Array(new SharedArrayBuffer(8));
  const latencies = new Float64Array(new SharedArrayBuffer(8 * handoffs));
  const count = new Int32Array(new SharedArrayBuffer(4));
  const shared = { stamp: stamp.buffer, latencies: latencies.buffer, count: count.buffer, handoffs };
  if (local !== undefined) {
    const { processClock } = await import(dist("threads.js"));
    await Promise.all([pingPong(local, processClock, shared), pingPong(local, processClock, shared)]);
  } else {
    const started = [0, 1].map(() => startWorker({ role: "pingpong", kind, ...shared, ...extra() }));
    await Promise.all(started.map(({ done }) => done));
    await Promise.all(started.map(({ worker }) => worker.terminate()));
  }
  const samples = Array.from(latencies.subarray(1)).map((ms) => ms * 1000);
  return { p50: quantile(samples, 0.5), p99: quantile(samples, 0.99) };
}

async function main() {
  const runs = argument("runs", 3);
  const quick = process.argv.includes("--quick");
  const total = quick ? 8_000 : 40_000;
  const redisTotal = quick ? 1_000 : 4_000;
  const handoffs = quick ? 500 : 2_000;
  const { Semaphore } = await import(dist("index.js"));
  const { SharedSemaphore, SharedMutex } = await import(dist("threads.js"));

  let redis;
  if (!process.argv.includes("--no-redis")) {
    try {
      await import(dist("redis.js"));
      redis = await localRedis({ isolated: true });
    } catch (error) {
      console.error(`RedisSemaphore rows skipped: ${error.message}`);
    }
  }
  let redisNames = 0;
  const redisData = (capacity) => () => ({ port: redis.port, name: `bench-${process.pid}-${redisNames}`, capacity });

  const throughput = {};
  const latency = {};
  const add = (table, name, value) => {
    process.stderr.write(`  ${name}: ${JSON.stringify(value)}\n`);
    table[name] ??= [];
    table[name].push(value);
  };
  try {
    for (let round = 0; round < runs; round++) {
      add(
        throughput,
        "Semaphore, main thread only (16 callers)",
        await throughputInMainThread(new Semaphore(4), 16, total),
      );
      add(
        throughput,
        "SharedSemaphore, main thread only (16 callers)",
        await throughputInMainThread(new SharedSemaphore(4), 16, total),
      );
      for (const [threads, loops] of [
        [2, 8],
        [8, 2],
      ]) {
        const semaphore = new SharedSemaphore(4);
        add(
          throughput,
          `SharedSemaphore, ${threads} workers x ${loops} callers`,
          await throughputAcrossWorkers("shared", threads, loops, total, () => ({ handle: semaphore.handle })),
        );
        if (redis !== undefined) {
          redisNames++;
          add(
            throughput,
            `RedisSemaphore, ${threads} workers x ${loops} callers`,
            await throughputAcrossWorkers("redis", threads, loops, redisTotal, redisData(4)),
          );
        }
      }
      add(
        latency,
        "Semaphore, two callers in one thread",
        await handoff("local", handoffs, undefined, new Semaphore(1)),
      );
      const mutex = new SharedMutex();
      add(
        latency,
        "SharedMutex, two worker threads",
        await handoff("shared", handoffs, () => ({ handle: mutex.handle })),
      );
      if (redis !== undefined) {
        redisNames++;
        add(
          latency,
          "RedisSemaphore (capacity 1), two worker threads",
          await handoff("redis", Math.min(handoffs, 500), redisData(1)),
        );
      }
    }
  } finally {
    redis?.stop();
  }

  console.log(`# sluice/threads benchmark\n\n${machine()}; medians of ${runs} runs.\n`);
  console.log("## Throughput: run(noop) through capacity 4, 16 callers in total\n");
  console.log(
    table(
      Object.entries(throughput).map(([subject, values]) => {
        const finished = values.filter((value) => !Number.isNaN(value));
        return { subject, "ops/s": finished.length === 0 ? "stalled" : median(finished) };
      }),
    ),
  );
  for (const stall of stalls) console.log(`\n- ${stall} within ${STALL_MS / 1000} s`);
  console.log("\n## Hand-off latency: release in one party to grant in the other\n");
  console.log(
    table(
      Object.entries(latency).map(([subject, values]) => ({
        subject,
        "p50 µs": median(values.map((value) => value.p50)),
        "p99 µs": median(values.map((value) => value.p99)),
      })),
    ),
  );
}
