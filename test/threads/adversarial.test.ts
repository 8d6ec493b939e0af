/**
 * Adversarial cases for the thread primitives: slots, reclaiming, and input, in one thread and across
 * real workers (bounded: every wait has a limit, so a bug fails instead of hanging).
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { threadId } from "node:worker_threads";
import type { Permit } from "sluice";
import { FakeClock } from "sluice/testing";
import { SharedMutex, SharedRateLimiter, SharedSemaphore, type SharedSemaphoreHandle } from "sluice/threads";
import { afterEach, describe, expect, it } from "vitest";
import { nextMessage, start, terminateStarted, until } from "./workers/spawn.js";

// A full garbage collection on demand, to check what a dropped semaphore keeps alive.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/** Collects garbage and lets finalizers run (WeakRefs are cleared only after the current job). */
async function collectGarbage(): Promise<void> {
  for (let turn = 0; turn < 3; turn++) {
    await new Promise((resolve) => setImmediate(resolve));
    gc();
  }
  await new Promise((resolve) => setImmediate(resolve));
}

/** Fails instead of hanging when `promise` does not settle within `ms` (real time). */
function within<T>(promise: Promise<T>, label: string, ms = 2_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${label}: not settled after ${ms} ms`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

afterEach(terminateStarted);

describe("SharedSemaphore thread slots", () => {
  it("a worker that rebuilds the semaphore per job keeps one slot, also when old instances are collected", async () => {
    const semaphore = new SharedSemaphore(1, { maxThreads: 2 });
    const worker = semaphore.track(start("rebuild", { semaphore: semaphore.handle, jobs: 8 }));
    const report = await nextMessage<{ errors: string[] }>(worker);
    expect(report.errors).toEqual([]);
    expect(semaphore.statistics()).toMatchObject({ inUse: 0, waiting: 0 });
    expect(semaphore.statistics().threads).toBeLessThanOrEqual(1);
  });
});

describe("SharedSemaphore under contention across real workers", () => {
  it("timeouts and aborts racing grants in 4 workers never exceed the capacity and lose no permit", async () => {
    const capacity = 4;
    const semaphore = new SharedSemaphore(capacity);
    const counters = new Int32Array(new SharedArrayBuffer(16));
    // 40 loops per worker: more callers than the 32 a thread publishes, and priorities that reorder them.
    const [threads, loops, rounds] = [4, 40, 15];
    const workers = Array.from({ length: threads }, (_, index) =>
      semaphore.track(
        start("churn", {
          semaphore: semaphore.handle,
          counters: counters.buffer,
          rounds,
          loops,
          maxWeight: 3,
          seed: 0x5eed + index,
        }),
      ),
    );
    await Promise.all(workers.map((worker) => nextMessage(worker)));
    expect(counters[1]).toBeLessThanOrEqual(capacity);
    // Not vacuous: callers were both served and gave up, and did overlap.
    expect(counters[1]).toBeGreaterThan(1);
    expect(counters[2]).toBeGreaterThan(0);
    expect(counters[3]).toBeGreaterThan(0);
    expect((counters[2] as number) + (counters[3] as number)).toBe(threads * loops * rounds);
    expect(semaphore.statistics()).toMatchObject({ inUse: 0, waiting: 0 });
    // Nothing was lost or left granted to a caller who gave up: the whole capacity is free, in one go.
    const all = semaphore.tryAcquire(capacity);
    expect(all).toBeDefined();
    all?.release();
  });

  it("workers terminated in the middle of the churn give back what they held and stop blocking the line", async () => {
    const capacity = 3;
    const semaphore = new SharedSemaphore(capacity);
    const counters = new Int32Array(new SharedArrayBuffer(16));
    const workers = Array.from({ length: 3 }, (_, index) =>
      semaphore.track(
        start("churn", {
          semaphore: semaphore.handle,
          counters: counters.buffer,
          rounds: 100_000,
          loops: 4,
          maxWeight: 3,
          seed: 0xdead + index,
        }),
      ),
    );
    await until(() => Atomics.load(counters, 2) > 200, "the workers are under way");
    // Killed at whatever instruction they are at: holding, waiting, collecting, dispatching.
    await Promise.all(workers.map((worker) => worker.terminate()));
    expect(semaphore.statistics()).toMatchObject({ inUse: 0, waiting: 0, threads: 0 });
    const all = await within(semaphore.acquire({ weight: capacity }), "the whole capacity after the workers died");
    all.release();
  });
});

describe("SharedSemaphore slot reuse after a reclaim", () => {
  it("a slot whose thread died while rewriting its hidden head key serves its next owner like any other", async () => {
    const main = new SharedSemaphore(40);
    const dead = new SharedSemaphore(main.handle);
    dead.tryAcquire()?.release(); // takes slot 0
    // Stage that thread being terminated half-way through rewriting the key of its first unpublished
    // waiter: the key's version word (word 7 of slot 0, which starts after the 10 header words) is odd.
    Atomics.store(new Int32Array(main.handle.buffer), 10 + 7, 1);
    // All instances here share this thread's id, so reclaiming it stands for "that thread exited".
    expect(main.reclaim(threadId)).toBe(true);
    const next = new SharedSemaphore(main.handle);
    next.tryAcquire()?.release(); // takes slot 0 again
    const other = new SharedSemaphore(main.handle);
    const everything = await other.acquire({ weight: 40 });
    const early = Array.from({ length: 32 }, () => next.acquire()); // fills the slot's published window
    const fromOther = other.acquire(); // arrives before the next ones of slot 0
    const late = Array.from({ length: 7 }, () => next.acquire()); // not published yet: a hidden head
    everything.release();
    // As for a fresh slot: slot 0's 32 and the other's waiter are granted in this step; the hidden head
    // (which came after the other's waiter) does not hold it back. A stale odd version made every read
    // of the key look torn, and nothing behind it was granted until slot 0's owner caught up.
    expect(main.inUse).toBe(33);
    const permits = await within(Promise.all([...early, fromOther, ...late]), "every waiter");
    for (const permit of permits) permit.release();
    expect(main.statistics()).toMatchObject({ inUse: 0, waiting: 0 });
    expect(dead.capacity).toBe(40); // keeps the reclaimed instance alive to the end (see retire)
  });
});

describe("SharedSemaphore memory", () => {
  it("a dropped semaphore whose callers once waited can be garbage-collected (its doorbell wait does not pin it)", async () => {
    const dropped: WeakRef<SharedSemaphore>[] = [];
    for (const ending of ["granted by this thread", "aborted"]) {
      await (async () => {
        const semaphore = new SharedSemaphore(1);
        const held = await semaphore.acquire();
        const controller = new AbortController();
        const waiting = semaphore.acquire({ signal: controller.signal });
        if (ending === "aborted") controller.abort(new Error("gone"));
        held.release();
        await waiting.then((permit) => permit.release(), ignore);
        expect(semaphore.statistics()).toMatchObject({ inUse: 0, waiting: 0 });
        dropped.push(new WeakRef(semaphore));
      })();
    }
    await collectGarbage();
    expect(dropped.map((ref) => ref.deref() === undefined)).toEqual([true, true]);
  });

  it("a semaphore nobody references is kept alive while its callers wait, and serves them", async () => {
    const main = new SharedSemaphore(1);
    const held = await main.acquire();
    // Another "thread" whose only reference is gone: just the caller's promise is left.
    const waiting = ((handle: SharedSemaphoreHandle) => new SharedSemaphore(handle).acquire())(main.handle);
    await collectGarbage();
    held.release();
    const permit: Permit = await within(waiting, "the waiter of the unreferenced instance");
    expect(main.inUse).toBe(1);
    permit.release();
    expect(main.statistics()).toMatchObject({ inUse: 0, waiting: 0 });
  });
});

describe("SharedSemaphore: a waiter whose signal has aborted is never granted (as Semaphore)", () => {
  it("one signal shared by two waiters: aborting the heavy head does not hand the permit to the light one mid-abort", async () => {
    const semaphore = new SharedSemaphore(2);
    const held = semaphore.tryAcquire() as Permit;
    const controller = new AbortController();
    const reason = new Error("request cancelled");
    const heavy = semaphore.acquire({ weight: 2, signal: controller.signal }).catch((error: unknown) => error);
    const light = semaphore.acquire({ weight: 1, signal: controller.signal }).then(
      (permit) => permit,
      (error: unknown) => error,
    );
    controller.abort(reason);
    expect(await heavy).toBe(reason);
    expect(await light).toBe(reason);
    expect(semaphore.statistics()).toMatchObject({ inUse: 1, waiting: 0 });
    held.release();
    expect(semaphore.inUse).toBe(0);
  });

  it("a release made by an earlier abort listener of the same signal goes to the next waiter, in another slot too", async () => {
    const semaphore = new SharedSemaphore(1);
    const other = new SharedSemaphore(semaphore.handle);
    const held = semaphore.tryAcquire() as Permit;
    const controller = new AbortController();
    // The caller's own cleanup, registered before the wait: on abort it gives its permit back.
    controller.signal.addEventListener("abort", () => held.release());
    const aborted = semaphore.acquire({ signal: controller.signal }).then(
      () => "granted",
      () => "rejected",
    );
    const next = other.acquire();
    controller.abort();
    expect(await aborted).toBe("rejected");
    (await within(next, "the next waiter")).release();
    expect(semaphore.statistics()).toMatchObject({ inUse: 0, waiting: 0 });
  });
});

describe("thread primitives: bad input fails at once and names the value", () => {
  it("options, name and clock are checked at construction, not at the first timed wait", () => {
    const notAClock = { now: () => 0 };
    expect(() => new SharedSemaphore(1, null as never)).toThrow(/options must be an object; got null/);
    expect(() => new SharedSemaphore(1, { name: 5 as never })).toThrow(/name must be a string; got 5/);
    expect(() => new SharedSemaphore(1, { clock: notAClock as never })).toThrow(TypeError);
    expect(() => new SharedSemaphore(1, { clock: notAClock as never })).toThrow(/clock/);
    expect(() => new SharedMutex({ clock: notAClock } as never)).toThrow(/clock/);
    const semaphore = new SharedSemaphore(1);
    expect(() => SharedSemaphore.from(semaphore.handle, { clock: notAClock as never })).toThrow(/clock/);
    const limits = [{ limit: 1, interval: 1_000 }];
    expect(() => new SharedRateLimiter({ limits, clock: notAClock as never })).toThrow(/clock/);
    expect(() => new SharedRateLimiter({ limits, name: 5 as never })).toThrow(/name must be a string; got 5/);
    const limiter = new SharedRateLimiter({ limits });
    expect(() => SharedRateLimiter.from(limiter.handle, { clock: notAClock as never })).toThrow(/clock/);
  });

  it("a weight the shared buffer cannot hold is refused, also with an infinite capacity", async () => {
    const semaphore = new SharedSemaphore(Number.POSITIVE_INFINITY);
    // Weights are 32-bit words in the buffer: 2^31 used to come back as a permit of weight -2^31.
    await expect(semaphore.acquire({ weight: 2 ** 31 })).rejects.toThrow(/weight.*2147483648/);
    expect(() => semaphore.tryAcquire(2 ** 32)).toThrow(RangeError);
    const permit = await semaphore.acquire({ weight: 2 ** 31 - 2 });
    expect(permit.weight).toBe(2 ** 31 - 2);
    permit.release();
    expect(semaphore.statistics()).toMatchObject({ inUse: 0, waiting: 0 });
  });

  it("track() refuses what is not a Worker, naming it", () => {
    const semaphore = new SharedSemaphore(1);
    expect(() => semaphore.track({} as never)).toThrow(/worker must be a Worker/);
    expect(() => new SharedMutex().track(null as never)).toThrow(/worker must be a Worker.*got null/);
  });
});

describe("SharedMutex", () => {
  it("takes a clock for its timeouts, as SharedSemaphore does", async () => {
    const clock = new FakeClock();
    const mutex = new SharedMutex({ name: "ledger", clock });
    const held = mutex.tryLock() as Permit;
    // Caught at once: the rejection lands inside advanceAsync, before anyone could await it.
    const waiting = mutex.lock({ timeout: 1_000 }).catch((error: unknown) => error);
    await clock.advanceAsync(999);
    expect(mutex.waiting).toBe(1);
    await clock.advanceAsync(1);
    expect(await waiting).toMatchObject({ name: "TimeoutError", timeout: 1_000 });
    expect(mutex.waiting).toBe(0);
    held.release();
    expect(mutex.isLocked()).toBe(false);
  });
});

function ignore(): void {}
