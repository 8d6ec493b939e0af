// Takes permits (or queues for them) and then never gives them back: the main thread ends it.
import { parentPort, workerData } from "node:worker_threads";
import { SharedSemaphore } from "../../../src/threads/index.js";

const semaphore = SharedSemaphore.from(workerData.semaphore);
const weight = workerData.weight as number;
const mode = workerData.mode as "hold" | "wait" | "crash";
const granted = semaphore.acquire({ weight });
if (mode === "wait") {
  parentPort?.postMessage("queued");
  await granted;
  parentPort?.postMessage("granted");
} else {
  await granted;
  if (mode === "crash") throw new Error("worker crashed while holding a permit");
  parentPort?.postMessage("holding");
}
// Keep the thread alive, holding whatever it has, until it is terminated.
setInterval(() => {}, 1_000);
