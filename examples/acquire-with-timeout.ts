// Acquire with a timeout (the seeds' asyncio.timeout around `async with semaphore`): a task that
// cannot get in within its deadline gives up with a TimeoutError instead of waiting forever, and
// leaves the queue at once, so it never blocks the tasks behind it.
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts.
import { Semaphore, TimeoutError } from "sluice";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const semaphore = new Semaphore(1);

async function workWithTimeout(name: string, work: number, timeout: number): Promise<void> {
  try {
    await semaphore.run(
      async () => {
        console.log(`${name} got the semaphore`);
        await sleep(work);
      },
      { timeout },
    );
  } catch (error) {
    if (error instanceof TimeoutError) console.log(`${name} timed out after ${error.timeout} ms waiting`);
    else throw error;
  }
}

await Promise.all([
  workWithTimeout("task1", 200, 300), // holds the semaphore for 200 ms
  workWithTimeout("task2", 50, 300), // waits ~200 ms: within its 300 ms budget
  workWithTimeout("task3", 50, 100), // would wait ~250 ms: gives up at 100 ms
  workWithTimeout("task4", 50, 400), // not blocked by task3 giving up
]);

// An AbortSignal works the same way, for cancellation that comes from elsewhere (a request closing).
const held = await semaphore.acquire();
const controller = new AbortController();
const waiting = semaphore.acquire({ signal: controller.signal });
controller.abort(new Error("client went away"));
await waiting.catch((error: Error) => console.log(`abandoned wait: ${error.message}`));
held.release();
console.log(`nothing leaked: ${semaphore.available} of ${semaphore.capacity} available, ${semaphore.waiting} waiting`);
