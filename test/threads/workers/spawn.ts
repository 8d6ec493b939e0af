/**
 * Starting scenario workers for the thread tests. Each scenario is a TypeScript file in this folder that
 * imports sluice from source; `boot.mjs` registers tsx inside the worker first.
 */
import { Worker } from "node:worker_threads";

/** Each spawned worker's exit, listened for from the start (see {@link exited}). */
const exits = new WeakMap<Worker, Promise<number>>();

/** Starts `workers/<scenario>.ts` with `data` as its workerData. */
export function spawn(scenario: string, data: Record<string, unknown>): Worker {
  const script = new URL(`./${scenario}.ts`, import.meta.url).href;
  const worker = new Worker(new URL("./boot.mjs", import.meta.url), { workerData: { script, ...data } });
  exits.set(worker, new Promise((resolve) => worker.once("exit", resolve)));
  return worker;
}

const started: Worker[] = [];

/** {@link spawn}, remembered so that {@link terminateStarted} (run it in an `afterEach`) ends it. */
export function start(scenario: string, data: Record<string, unknown>): Worker {
  const worker = spawn(scenario, data);
  started.push(worker);
  return worker;
}

/** Terminates every worker {@link start} started since the last call. */
export async function terminateStarted(): Promise<void> {
  await Promise.all(started.splice(0).map((worker) => worker.terminate()));
}

/** The next message from `worker`; rejects if it fails or exits first. */
export function nextMessage<T = unknown>(worker: Worker): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const cleanup = () => {
      worker.off("message", onMessage);
      worker.off("error", onError);
      worker.off("exit", onExit);
    };
    const onMessage = (message: T) => {
      cleanup();
      resolve(message);
    };
    const onError = (error: unknown) => {
      cleanup();
      reject(error);
    };
    const onExit = (code: number) => {
      cleanup();
      reject(new Error(`worker exited with code ${code} before sending a message`));
    };
    worker.on("message", onMessage);
    worker.on("error", onError);
    worker.on("exit", onExit);
  });
}

/** Resolves with the exit code once `worker` has exited (and its `exit` listeners have run). */
export function exited(worker: Worker): Promise<number> {
  // Not a listener added now: a worker that ends right after its last message may have exited already
  // (on Node 24 the "exit" event could fire before the test got to ask, and it waited for ever).
  return exits.get(worker) ?? new Promise((resolve) => worker.once("exit", resolve));
}

/** Waits until `condition()` holds, checking after each turn of the event loop; fails after `ms`. */
export async function until(condition: () => boolean, label: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${label}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
