// Pool vs generic-pool and tarn: acquire/release throughput, uncontended (1 borrower) and contended
// (100 borrowers sharing 10 resources). Run: npm run build && node --expose-gc bench/pool.mjs
import genericPool from "generic-pool";
import tarn from "tarn";
import { Pool } from "../dist/index.js";
import { machine, median, requireGc, table, time } from "./harness.mjs";

const OPERATIONS = 100_000;
const RUNS = 5;
const MAX = 10;

const create = async () => ({ queries: 0 });
const destroy = async () => {};

/** Each library behind the same three calls: make a pool, borrow-and-return once, close it. */
const libraries = {
  sluice: {
    make: () => new Pool({ create, destroy, max: MAX }),
    cycle: async (pool) => {
      const lease = await pool.acquire();
      lease.value.queries++;
      await null; // the borrower does something asynchronous while holding it
      lease.release();
    },
    close: (pool) => pool.drain(),
  },
  "generic-pool": {
    make: () => genericPool.createPool({ create, destroy }, { max: MAX, min: 0 }),
    cycle: async (pool) => {
      const resource = await pool.acquire();
      resource.queries++;
      await null;
      await pool.release(resource);
    },
    close: async (pool) => {
      await pool.drain();
      await pool.clear();
    },
  },
  tarn: {
    make: () => new tarn.Pool({ create, destroy, min: 0, max: MAX }),
    cycle: async (pool) => {
      const resource = await pool.acquire().promise;
      resource.queries++;
      await null;
      pool.release(resource);
    },
    close: (pool) => pool.destroy(),
  },
};

/** `borrowers` loops share OPERATIONS acquire/release cycles; returns operations per second. */
async function measure(library, borrowers) {
  const pool = library.make();
  // Warm the pool up to max so every library measures lending, not creating.
  await Promise.all(Array.from({ length: MAX }, () => library.cycle(pool)));
  let remaining = OPERATIONS;
  const worker = async () => {
    while (remaining-- > 0) await library.cycle(pool);
  };
  const ms = await time(() => Promise.all(Array.from({ length: borrowers }, worker)));
  await library.close(pool);
  return (OPERATIONS / ms) * 1000;
}

requireGc();
// Runs are interleaved (one of each library per round) so a noisy machine disturbs all of them alike.
const rows = [];
for (const [scenario, borrowers] of [
  ["uncontended (1 borrower)", 1],
  ["contended (100 borrowers, max 10)", 100],
]) {
  const entries = Object.entries(libraries);
  const samples = entries.map(() => []);
  for (const [, library] of entries) await measure(library, borrowers); // warm-up
  for (let round = 0; round < RUNS; round++) {
    for (const [i, [, library]] of entries.entries()) samples[i].push(await measure(library, borrowers));
  }
  for (const [i, [name]] of entries.entries())
    rows.push({ scenario, library: name, "ops/s (median)": median(samples[i]) });
}
console.log(
  `## Pool: acquire/release throughput\n\n${machine()}; ${OPERATIONS.toLocaleString("en-US")} cycles, median of ${RUNS}\n`,
);
console.log(table(rows));
