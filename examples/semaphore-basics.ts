// The asyncio.Semaphore basics from the seeds, in sluice: two workers at a time out of five tasks,
// asyncio's locked(), BoundedSemaphore's over-release error, and a capacity you can change at run time.
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts.
import { ReleasedError, Semaphore } from "sluice";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const semaphore = new Semaphore(2);

async function fetchData(name: string, delay: number): Promise<string> {
  return semaphore.run(async () => {
    console.log(`${name} acquired the semaphore (${semaphore.inUse} in use)`);
    await sleep(delay);
    console.log(`${name} releasing`);
    return `${name} done`;
  });
}

const started = performance.now();
const results = await Promise.all([0, 1, 2, 3, 4].map((i) => fetchData(`task${i}`, 100)));
console.log(results.join(", "));
console.log(`3 waves of 100 ms took ${Math.round((performance.now() - started) / 100) * 100} ms, not 500`);

// asyncio's locked(): would an acquire wait right now?
const permit = await semaphore.acquire({ weight: 2 });
console.log(`locked while both permits are held: ${semaphore.isLocked()}`);
permit.release();

// BoundedSemaphore semantics: releasing twice is a bug, and sluice says so.
try {
  permit.release();
} catch (error) {
  if (error instanceof ReleasedError) console.log(`second release refused: ${error.message}`);
}

// Unlike asyncio, the capacity can change at run time: growing wakes waiters, shrinking drains.
semaphore.capacity = 4;
console.log(`capacity is now ${semaphore.capacity}, ${semaphore.available} available`);
