// The worker side of examples/worker-threads.ts: rebuilds the shared limiters from their handles.
import { parentPort, workerData } from "node:worker_threads";
import { SharedRateLimiter, SharedSemaphore } from "sluice/threads";

const gpu = SharedSemaphore.from(workerData.gpu);
const api = SharedRateLimiter.from(workerData.api);
const counters = new Int32Array(workerData.counters);

if (workerData.hold) {
  // Take permits and never give them back: the main thread terminates this worker.
  await gpu.acquire({ weight: workerData.hold });
  parentPort.postMessage("holding");
  setInterval(() => {}, 1_000);
} else {
  for (let job = 0; job < workerData.jobs; job++) {
    await api.acquire(); // 20 starts per second, all workers together
    await gpu.run(async () => {
      const inside = Atomics.add(counters, 0, 1) + 1;
      let most = Atomics.load(counters, 1);
      while (inside > most && Atomics.compareExchange(counters, 1, most, inside) !== most)
        most = Atomics.load(counters, 1);
      await new Promise((resolve) => setTimeout(resolve, 30));
      Atomics.sub(counters, 0, 1);
      Atomics.add(counters, 2, 1);
    });
  }
}
