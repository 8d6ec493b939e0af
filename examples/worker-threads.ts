// Worker threads sharing one concurrency limit and one rate limit: four workers run jobs, at most two
// at a time across all of them, and at most 20 job starts per second together. Then a worker is
// terminated while it holds a permit, and the permit comes back.
// Run: npm run build && npx tsx examples/worker-threads.ts
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts,
// with worker-threads-job.mjs beside it.
import { Worker } from "node:worker_threads";
import { SharedRateLimiter, SharedSemaphore } from "sluice/threads";

// Created once, in the main thread. The state lives in SharedArrayBuffers; `handle` is what crosses over.
const gpu = new SharedSemaphore(2, { name: "gpu" });
const api = new SharedRateLimiter({ limits: [{ limit: 20, interval: "1s", burst: 5 }], name: "api" });
// [inside now, most inside at once, jobs done] — written by the workers, read here.
const counters = new Int32Array(new SharedArrayBuffer(12));

function startWorker(data: Record<string, unknown>): Worker {
  const worker = new Worker(new URL("./worker-threads-job.mjs", import.meta.url), {
    workerData: { gpu: gpu.handle, api: api.handle, counters: counters.buffer, ...data },
  });
  // track(): if the worker exits holding permits (crash, terminate), they are given back.
  return gpu.track(worker);
}

const started = performance.now();
const workers = Array.from({ length: 4 }, () => startWorker({ jobs: 6 }));
await Promise.all(workers.map((worker) => new Promise((resolve) => worker.once("exit", resolve))));
const seconds = (performance.now() - started) / 1000;
console.log(`24 jobs in 4 workers: at most ${counters[1]} inside at once (limit 2), ${counters[2]} done`);
console.log(`took ${seconds.toFixed(2)} s; 20/s with a burst of 5 needs at least ${((24 - 5) / 20).toFixed(2)} s`);

// A worker that dies holding permits does not leak them: when its exit is seen, they come back.
const holder = startWorker({ hold: 2 });
await new Promise((resolve) => holder.once("message", resolve));
console.log(`a worker holds ${gpu.inUse} of ${gpu.capacity} permits; terminating it`);
await holder.terminate();
const both = await gpu.acquire({ weight: 2, timeout: 1_000 });
console.log(`after its exit: took both permits back (${both.weight})`);
both.release();
