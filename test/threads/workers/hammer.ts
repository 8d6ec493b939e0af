// Many acquisitions from several loops in this worker; counts how many are inside at once in shared memory.
import { parentPort, workerData } from "node:worker_threads";
import { SharedSemaphore } from "../../../src/threads/index.js";

const semaphore = SharedSemaphore.from(workerData.semaphore);
/** [inside now, most inside ever, completed] */
const counters = new Int32Array(workerData.counters as SharedArrayBuffer);
const acquisitions = workerData.acquisitions as number;
const loops = workerData.loops as number;
const weights = (workerData.weights as number[] | undefined) ?? [1];

async function loop(index: number): Promise<void> {
  for (let i = index; i < acquisitions; i += loops) {
    const weight = weights[i % weights.length] as number;
    await semaphore.run(
      async () => {
        const inside = Atomics.add(counters, 0, weight) + weight;
        for (let most = Atomics.load(counters, 1); inside > most; most = Atomics.load(counters, 1)) {
          if (Atomics.compareExchange(counters, 1, most, inside) === most) break;
        }
        // Stay inside across a turn of the event loop now and then, so other threads really overlap.
        if (i % 4 === 0) await new Promise((resolve) => setImmediate(resolve));
        else await null;
        Atomics.sub(counters, 0, weight);
        Atomics.add(counters, 2, 1);
      },
      { weight },
    );
  }
}

await Promise.all(Array.from({ length: loops }, (_, index) => loop(index)));
parentPort?.postMessage({ done: true, waiting: semaphore.waiting });
