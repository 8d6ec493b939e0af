// Abort and timeout while waiting in a worker; then a plain wait, which must not be blocked by them.
import { parentPort, workerData } from "node:worker_threads";
import { SharedSemaphore } from "../../../src/threads/index.js";

const semaphore = SharedSemaphore.from(workerData.semaphore);
const timedOut = await semaphore.acquire({ timeout: 40 }).then(
  () => "granted",
  (error: Error) => error.name,
);
const controller = new AbortController();
setTimeout(() => controller.abort(new Error("changed my mind")), 20);
const aborted = await semaphore.acquire({ signal: controller.signal }).then(
  () => "granted",
  (error: Error) => error.message,
);
const last = semaphore.acquire();
parentPort?.postMessage({ timedOut, aborted, waitingHere: semaphore.waiting });
const permit = await last;
parentPort?.postMessage({ granted: permit.weight });
permit.release();
