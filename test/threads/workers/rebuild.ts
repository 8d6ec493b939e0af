// Rebuilds the semaphore from its handle for every job, as a message handler would, and drops it after
// the job; a garbage collection between jobs makes `from` build a fresh instance each time.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { parentPort, workerData } from "node:worker_threads";
import { SharedSemaphore } from "../../../src/threads/index.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

async function job(): Promise<void> {
  const semaphore = SharedSemaphore.from(workerData.semaphore);
  (await semaphore.acquire()).release();
}

const errors: string[] = [];
for (let round = 0; round < (workerData.jobs as number); round++) {
  await job().catch((error: Error) => errors.push(error.message));
  // Collect the instance and let its finalizer run.
  for (let turn = 0; turn < 3; turn++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
}
parentPort?.postMessage({ errors });
