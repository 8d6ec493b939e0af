// map vs p-map and @supercharge/promise-pool: 1e5 items at concurrency 16; then sluice's streaming
// form over generators of 1e5 and 1e6 items, to show that peak heap does not grow with the input.
// Run: npm run build && node --expose-gc bench/map.mjs
import { PromisePool } from "@supercharge/promise-pool";
import pMap from "p-map";
import { map, mapStream } from "../dist/index.js";
import { collectGarbage, machine, median, requireGc, table, time } from "./harness.mjs";

const ITEMS = 100_000;
const CONCURRENCY = 16;
const RUNS = 5;

const items = Array.from({ length: ITEMS }, (_, i) => i);
/** The work: asynchronous, but as cheap as possible, so the numbers show each library's overhead. */
const work = async (item) => {
  await null;
  return item * 2;
};

function check(results) {
  if (results.length !== ITEMS || results[ITEMS - 1] !== (ITEMS - 1) * 2) throw new Error("wrong results");
}

const contenders = {
  "sluice map": async () => check(await map(items, work, { concurrency: CONCURRENCY })),
  "p-map": async () => check(await pMap(items, work, { concurrency: CONCURRENCY })),
  "@supercharge/promise-pool": async () => {
    // useCorrespondingResults makes it return results in input order, like the others.
    const { results } = await PromisePool.withConcurrency(CONCURRENCY)
      .for(items)
      .useCorrespondingResults()
      .process(work);
    check(results);
  },
};

requireGc();
// Runs are interleaved (one of each library per round) so a noisy machine disturbs all of them alike.
const entries = Object.entries(contenders);
const samples = entries.map(() => []);
for (const [, run] of entries) await run(); // warm-up
for (let round = 0; round < RUNS; round++) {
  for (const [i, [, run]] of entries.entries()) {
    collectGarbage();
    samples[i].push(await time(run));
  }
}
const rows = entries.map(([name], i) => {
  const ms = median(samples[i]);
  return { library: name, "ms (median)": ms, "items/s": (ITEMS / ms) * 1000 };
});
console.log(
  `## map: ${ITEMS.toLocaleString("en-US")} items, concurrency ${CONCURRENCY}\n\n${machine()}; median of ${RUNS}\n`,
);
console.log(table(rows));

function* numbers(count) {
  for (let i = 0; i < count; i++) yield i;
}

/** Streams `count` generator items through mapStream; returns time and the peak heap growth. */
async function streamRun(count) {
  collectGarbage();
  const before = process.memoryUsage().heapUsed;
  let peak = 0;
  let seen = 0;
  const start = performance.now();
  for await (const _ of mapStream(numbers(count), work, { concurrency: CONCURRENCY })) {
    if (++seen % 50_000 === 0) {
      collectGarbage();
      peak = Math.max(peak, process.memoryUsage().heapUsed - before);
    }
  }
  return { ms: performance.now() - start, peak };
}

const memoryRows = [];
await streamRun(50_000);
for (const count of [100_000, 1_000_000]) {
  const { ms, peak } = await streamRun(count);
  memoryRows.push({ items: count, ms: ms, "items/s": (count / ms) * 1000, "peak heap growth (KiB)": peak / 1024 });
}
console.log(`\n## mapStream over a generator, concurrency ${CONCURRENCY}: memory is flat\n`);
console.log(table(memoryRows));
