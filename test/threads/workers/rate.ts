// Takes `calls` admissions from a shared rate limiter and records when each was scheduled and granted.
import { parentPort, workerData } from "node:worker_threads";
import { processClock, SharedRateLimiter } from "../../../src/threads/index.js";

const limiter = SharedRateLimiter.from(workerData.limiter);
/** Pairs (scheduledAt, grantedAt) in ms on the process clock. */
const times = new Float64Array(workerData.times as SharedArrayBuffer);
const next = new Int32Array(workerData.next as SharedArrayBuffer);
const calls = workerData.calls as number;

await Promise.all(
  Array.from({ length: calls }, async () => {
    const permit = await limiter.acquire();
    const grantedAt = processClock.now();
    const slot = Atomics.add(next, 0, 1);
    times[2 * slot] = permit.scheduledAt;
    times[2 * slot + 1] = grantedAt;
  }),
);
parentPort?.postMessage({ done: true });
