// Queues an acquisition whenever the main thread says so, and logs grants in shared memory in order.
import { parentPort, workerData } from "node:worker_threads";
import { SharedSemaphore } from "../../../src/threads/index.js";

const semaphore = SharedSemaphore.from(workerData.semaphore);
/** log[0] is the next free index; log[1 + k] is the label of the k-th grant. */
const log = new Int32Array(workerData.log as SharedArrayBuffer);

parentPort?.on("message", (message: { label: number; priority?: number }) => {
  // acquire() takes its place in line before it returns, so "queued" means "in line".
  const granted = semaphore.acquire({ priority: message.priority ?? 0 });
  parentPort?.postMessage({ queued: message.label });
  granted.then(async (permit) => {
    Atomics.store(log, 1 + Atomics.add(log, 0, 1), message.label);
    await new Promise((resolve) => setTimeout(resolve, 1));
    permit.release();
  });
});
parentPort?.postMessage({ ready: true });
