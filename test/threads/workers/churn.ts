// Acquisitions that give up as often as they are granted: random weights, short timeouts and aborts that
// race the grants made by other threads. Counts weight inside at once in shared memory.
import { parentPort, workerData } from "node:worker_threads";
import { SharedSemaphore } from "../../../src/threads/index.js";

const semaphore = SharedSemaphore.from(workerData.semaphore);
/** [weight inside now, most weight inside ever, granted, gave up] */
const counters = new Int32Array(workerData.counters as SharedArrayBuffer);
const rounds = workerData.rounds as number;
const maxWeight = workerData.maxWeight as number;
let seed = workerData.seed as number;
/** A small deterministic generator (mulberry32), so a failing run can be replayed from its seed. */
function random(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

async function loop(): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    const weight = 1 + Math.floor(random() * maxWeight);
    const controller = new AbortController();
    const choice = random();
    // A third wait plainly, a third with a timeout of 0-2 ms, a third are aborted after 0-2 turns.
    const timeout = choice < 1 / 3 ? undefined : choice < 2 / 3 ? Math.floor(random() * 3) : undefined;
    if (choice >= 2 / 3) {
      const turns = Math.floor(random() * 3);
      const abort = (left: number): void => {
        if (left === 0) controller.abort(new Error("gave up"));
        else setImmediate(() => abort(left - 1));
      };
      abort(turns);
    }
    try {
      const priority = Math.floor(random() * 3);
      const permit = await semaphore.acquire({ weight, priority, timeout, signal: controller.signal });
      const inside = Atomics.add(counters, 0, weight) + weight;
      for (let most = Atomics.load(counters, 1); inside > most; most = Atomics.load(counters, 1)) {
        if (Atomics.compareExchange(counters, 1, most, inside) === most) break;
      }
      if (random() < 0.5) await new Promise((resolve) => setImmediate(resolve));
      Atomics.sub(counters, 0, weight);
      Atomics.add(counters, 2, 1);
      permit.release();
    } catch {
      Atomics.add(counters, 3, 1);
    }
  }
}

await Promise.all(Array.from({ length: workerData.loops as number }, () => loop()));
parentPort?.postMessage({ done: true, waiting: semaphore.waiting });
