/**
 * Work that must stop when either of two signals aborts (a mapper under a distributed permit, a pool's
 * create under `createTimeout`) does not rely on `AbortSignal.any`, missing in Node 20.0 to 20.2 and
 * browsers before 2024, and keeps no listener on the long-lived signal once the work is over.
 */
import { getEventListeners } from "node:events";
import { type Limiter, map, type Permit, Pool, TimeoutError } from "sluice";
import { FakeClock } from "sluice/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

const any = AbortSignal.any;
beforeEach(() => {
  (AbortSignal as { any?: unknown }).any = undefined;
});
afterEach(() => {
  AbortSignal.any = any;
});

/** A limiter whose permits carry a signal of their own, as a distributed permit's lease does. */
function leasingLimiter() {
  const leases: AbortController[] = [];
  const runSignals: AbortSignal[] = [];
  const limiter: Limiter = {
    async acquire(options) {
      if (options?.signal !== undefined) runSignals.push(options.signal);
      const lease = new AbortController();
      leases.push(lease);
      const permit: Permit = {
        weight: 1,
        signal: lease.signal,
        release() {},
        [Symbol.dispose]() {},
        async [Symbol.asyncDispose]() {},
      };
      return permit;
    },
    run: () => Promise.reject(new Error("not used")),
  };
  return { limiter, leases, runSignals };
}

describe("where AbortSignal.any is missing", () => {
  it("map: a lost lease aborts the mapper's signal, with the lease's reason", async () => {
    const { limiter, leases } = leasingLimiter();
    const reasons = await map(
      [1],
      (_item, _index, signal) =>
        new Promise<unknown>((resolve) => {
          signal.addEventListener("abort", () => resolve(signal.reason));
          leases[0]!.abort("lease lost");
        }),
      { limiter },
    );
    expect(reasons).toEqual(["lease lost"]);
  });

  it("map: the run's signal keeps no listener for items that have finished", async () => {
    const { limiter, runSignals } = leasingLimiter();
    await map(Array.from({ length: 50 }), async () => {}, { limiter, concurrency: 5 });
    const runSignal = runSignals[0]!;
    expect(runSignals.every((signal) => signal === runSignal)).toBe(true);
    expect(getEventListeners(runSignal, "abort")).toHaveLength(0);
  });

  it("Pool: a create that outlasts createTimeout sees its signal abort with the TimeoutError", async () => {
    const clock = new FakeClock();
    let createSignal: AbortSignal | undefined;
    const pool = new Pool({
      create: (signal) => {
        createSignal = signal;
        return new Promise<object>(() => {});
      },
      max: 1,
      createTimeout: 100,
      createRetry: { attempts: 1 },
      clock,
    });
    const lease = pool.acquire();
    lease.catch(() => {});
    clock.advance(100);
    expect(createSignal?.aborted).toBe(true);
    expect(createSignal?.reason).toBeInstanceOf(TimeoutError);
  });
});
