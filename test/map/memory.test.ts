/**
 * map over a million generator items keeps memory flat: the heap after the run does not grow with the
 * input length, and neither does the peak sampled during it.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { mapStream } from "sluice";
import { describe, expect, it } from "vitest";

// Heap figures mean something only after a full collection; vitest does not start node with --expose-gc.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

function* numbers(count: number) {
  for (let i = 0; i < count; i++) yield i;
}

/** Runs a stream over `count` items and returns the peak heap growth (bytes) sampled every 10k items. */
async function peakHeapGrowth(count: number): Promise<number> {
  gc();
  const before = process.memoryUsage().heapUsed;
  let peak = 0;
  let consumed = 0;
  let sum = 0;
  for await (const value of mapStream(numbers(count), async (item) => item * 2, { concurrency: 16 })) {
    sum += value;
    consumed++;
    if (consumed % 10_000 === 0) {
      gc();
      peak = Math.max(peak, process.memoryUsage().heapUsed - before);
    }
  }
  expect(consumed).toBe(count);
  expect(sum).toBe(count * (count - 1));
  return peak;
}

describe("map memory", () => {
  it("peak heap over 1e6 generator items is independent of the input length", async () => {
    // Warm up the JIT and the allocator so both measurements start from the same state.
    await peakHeapGrowth(20_000);
    const small = await peakHeapGrowth(50_000);
    const large = await peakHeapGrowth(1_000_000);
    // 20x the items; anything proportional to length would be tens of MB. Allow GC noise only.
    expect(large).toBeLessThan(Math.max(small * 3, 4 * 2 ** 20));
  }, 30_000);
});
