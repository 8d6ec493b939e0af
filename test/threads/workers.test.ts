/**
 * SharedSemaphore, SharedMutex and SharedRateLimiter across real worker threads. These run in real time
 * because threads are the point; every wait has a bound, so a bug fails instead of hanging.
 */
import type { Worker } from "node:worker_threads";
import { processClock, SharedMutex, SharedRateLimiter, SharedSemaphore } from "sluice/threads";
import { afterEach, describe, expect, it } from "vitest";
import { exited, nextMessage, start, terminateStarted, until } from "./workers/spawn.js";

afterEach(terminateStarted);

describe("SharedSemaphore across worker threads", () => {
  it("8 workers x 1000 acquisitions on capacity 3 never have more than 3 inside", async () => {
    const semaphore = new SharedSemaphore(3);
    const counters = new Int32Array(new SharedArrayBuffer(12));
    const workers = Array.from({ length: 8 }, () =>
      semaphore.track(
        // 40 callers per worker: more than the 32 a thread publishes at once, so the overflow path runs too.
        start("hammer", { semaphore: semaphore.handle, counters: counters.buffer, acquisitions: 1000, loops: 40 }),
      ),
    );
    const reports = await Promise.all(workers.map((worker) => nextMessage<{ done: boolean }>(worker)));
    expect(reports.every((report) => report.done)).toBe(true);
    expect(counters[2]).toBe(8000);
    expect(counters[1]).toBeLessThanOrEqual(3);
    // Not vacuous: the workers really overlapped.
    expect(counters[1]).toBe(3);
    expect(semaphore.inUse).toBe(0);
    expect(semaphore.waiting).toBe(0);
  });

  it("weighted acquisitions from 4 workers never exceed the capacity in weight", async () => {
    const semaphore = new SharedSemaphore(5);
    const counters = new Int32Array(new SharedArrayBuffer(12));
    const workers = Array.from({ length: 4 }, (_, index) =>
      semaphore.track(
        start("hammer", {
          semaphore: semaphore.handle,
          counters: counters.buffer,
          acquisitions: 300,
          loops: 4,
          weights: index % 2 === 0 ? [1, 2, 3] : [5, 1],
        }),
      ),
    );
    await Promise.all(workers.map((worker) => nextMessage(worker)));
    expect(counters[2]).toBe(1200);
    expect(counters[1]).toBeLessThanOrEqual(5);
    expect(semaphore.inUse).toBe(0);
  });

  it("serves waiters of different threads in arrival order (FIFO by ticket)", async () => {
    const semaphore = new SharedSemaphore(1);
    const log = new Int32Array(new SharedArrayBuffer(4 * 16));
    const workers = Array.from({ length: 3 }, () =>
      semaphore.track(start("queuer", { semaphore: semaphore.handle, log: log.buffer })),
    );
    await Promise.all(workers.map((worker) => nextMessage(worker)));
    const held = await semaphore.acquire();
    // Interleave threads, with several waiters per thread, one arrival at a time.
    const arrivals = [0, 1, 2, 0, 2, 1, 1, 0];
    for (const [label, thread] of arrivals.entries()) {
      const worker = workers[thread] as Worker;
      const queued = nextMessage<{ queued: number }>(worker);
      worker.postMessage({ label });
      expect((await queued).queued).toBe(label);
    }
    expect(semaphore.waiting).toBe(arrivals.length);
    held.release();
    await until(() => Atomics.load(log, 0) === arrivals.length, "every waiter was granted");
    expect(Array.from(log.subarray(1, 1 + arrivals.length))).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it("a higher priority in another thread is served before earlier arrivals", async () => {
    const semaphore = new SharedSemaphore(1);
    const log = new Int32Array(new SharedArrayBuffer(4 * 8));
    const workers = Array.from({ length: 2 }, () =>
      semaphore.track(start("queuer", { semaphore: semaphore.handle, log: log.buffer })),
    );
    await Promise.all(workers.map((worker) => nextMessage(worker)));
    const held = await semaphore.acquire();
    const arrivals: [thread: number, priority: number][] = [
      [0, 0],
      [1, 0],
      [0, 5],
      [1, 5],
    ];
    for (const [label, [thread, priority]] of arrivals.entries()) {
      const worker = workers[thread] as Worker;
      const queued = nextMessage(worker);
      worker.postMessage({ label, priority });
      await queued;
    }
    held.release();
    await until(() => Atomics.load(log, 0) === arrivals.length, "every waiter was granted");
    expect(Array.from(log.subarray(1, 1 + arrivals.length))).toEqual([2, 3, 0, 1]);
  });

  it("timeout and abort in a worker leave the line, and the next waiter there is served", async () => {
    const semaphore = new SharedSemaphore(1);
    const held = await semaphore.acquire();
    const worker = semaphore.track(start("cancel", { semaphore: semaphore.handle }));
    const report = await nextMessage<{ timedOut: string; aborted: string; waitingHere: number }>(worker);
    expect(report).toEqual({ timedOut: "TimeoutError", aborted: "changed my mind", waitingHere: 1 });
    // The worker's cancelled waiters are gone from the shared line: only its last one waits.
    expect(semaphore.waiting).toBe(1);
    const granted = nextMessage<{ granted: number }>(worker);
    held.release();
    expect(await granted).toEqual({ granted: 1 });
    await exited(worker);
    expect(semaphore.inUse).toBe(0);
  });

  it("a worker terminated while holding permits gives them back when its exit is seen", async () => {
    const semaphore = new SharedSemaphore(2);
    const worker = semaphore.track(start("holder", { semaphore: semaphore.handle, weight: 2, mode: "hold" }));
    expect(await nextMessage(worker)).toBe("holding");
    expect(semaphore.inUse).toBe(2);
    const waiting = semaphore.acquire({ weight: 2 });
    await worker.terminate();
    const permit = await waiting;
    expect(permit.weight).toBe(2);
    expect(semaphore.statistics()).toMatchObject({ inUse: 2, waiting: 0 });
    permit.release();
    expect(semaphore.inUse).toBe(0);
  });

  it("a worker that crashes holding a permit gives it back too", async () => {
    const semaphore = new SharedSemaphore(1);
    const worker = semaphore.track(start("holder", { semaphore: semaphore.handle, weight: 1, mode: "crash" }));
    worker.on("error", () => {});
    const code = await exited(worker);
    expect(code).toBe(1);
    const permit = semaphore.tryAcquire();
    expect(permit).toBeDefined();
    permit?.release();
  });

  it("the waiter of a dead worker does not block the line", async () => {
    const semaphore = new SharedSemaphore(2);
    const first = await semaphore.acquire();
    // The worker's heavy waiter is at the head; one permit is free but the head does not fit.
    const worker = semaphore.track(start("holder", { semaphore: semaphore.handle, weight: 2, mode: "wait" }));
    expect(await nextMessage(worker)).toBe("queued");
    await until(() => semaphore.waiting === 1, "the worker's waiter is in line");
    const behind = semaphore.acquire({ weight: 1 });
    let served = false;
    behind.then(() => {
      served = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(served).toBe(false);
    await worker.terminate();
    const permit = await behind;
    expect(semaphore.inUse).toBe(2);
    permit.release();
    first.release();
    expect(semaphore.statistics()).toMatchObject({ inUse: 0, waiting: 0 });
  });

  it("reclaiming needs no thread slot: a main thread that only tracks workers hands a dead worker's permit on", async () => {
    // Two slots, both taken by workers; the main thread never uses the semaphore itself.
    const semaphore = new SharedSemaphore(1, { maxThreads: 2 });
    const holder = semaphore.track(start("holder", { semaphore: semaphore.handle, weight: 1, mode: "hold" }));
    expect(await nextMessage(holder)).toBe("holding");
    const waiter = semaphore.track(start("holder", { semaphore: semaphore.handle, weight: 1, mode: "wait" }));
    expect(await nextMessage(waiter)).toBe("queued");
    const granted = nextMessage(waiter);
    await holder.terminate();
    expect(await granted).toBe("granted");
  });

  it("waiting for a permit held by another thread does not block this thread's event loop", async () => {
    const semaphore = new SharedSemaphore(1);
    const worker = semaphore.track(start("holder", { semaphore: semaphore.handle, weight: 1, mode: "hold" }));
    expect(await nextMessage(worker)).toBe("holding");
    const waiting = semaphore.acquire();
    let turns = 0;
    const began = Date.now();
    while (Date.now() - began < 100) {
      await new Promise((resolve) => setImmediate(resolve));
      turns++;
    }
    // The event loop kept turning while the acquire waited (a blocking wait would allow 0 or 1 turns).
    expect(turns).toBeGreaterThan(20);
    await worker.terminate();
    (await waiting).release();
  });

  it("a SharedMutex handed to workers admits one holder at a time", async () => {
    const mutex = new SharedMutex();
    const counters = new Int32Array(new SharedArrayBuffer(12));
    const workers = Array.from({ length: 3 }, () =>
      mutex.track(start("hammer", { semaphore: mutex.handle, counters: counters.buffer, acquisitions: 200, loops: 3 })),
    );
    let mainInside = 0;
    const mine = Array.from({ length: 50 }, () =>
      mutex.runExclusive(async () => {
        mainInside = Atomics.add(counters, 0, 1) + 1;
        await null;
        Atomics.sub(counters, 0, 1);
      }),
    );
    await Promise.all([...workers.map((worker) => nextMessage(worker)), ...mine]);
    expect(mainInside).toBe(1);
    expect(counters[1]).toBe(1);
    expect(counters[2]).toBe(600);
  });
});

describe("SharedRateLimiter across worker threads", () => {
  it("4 workers together never exceed burst + rate x span in any span", async () => {
    const burst = 5;
    const rate = 0.1; // per ms: 50 per 500 ms
    const limiter = new SharedRateLimiter({ limits: [{ limit: 50, interval: 500, burst }] });
    const workers = 4;
    const calls = 15;
    const total = workers * calls;
    const times = new Float64Array(new SharedArrayBuffer(16 * total));
    const next = new Int32Array(new SharedArrayBuffer(4));
    const begin = processClock.now();
    await Promise.all(
      Array.from({ length: workers }, () =>
        nextMessage(start("rate", { limiter: limiter.handle, times: times.buffer, next: next.buffer, calls })),
      ),
    );
    expect(next[0]).toBe(total);
    const scheduled: number[] = [];
    for (let slot = 0; slot < total; slot++) {
      const scheduledAt = times[2 * slot] as number;
      const grantedAt = times[2 * slot + 1] as number;
      // Never granted before its time (the process clock is the same scale in every thread).
      expect(grantedAt).toBeGreaterThanOrEqual(scheduledAt - 0.001);
      expect(scheduledAt).toBeGreaterThanOrEqual(begin - 0.001);
      scheduled.push(scheduledAt);
    }
    scheduled.sort((a, b) => a - b);
    for (let i = 0; i < total; i++) {
      for (let j = i; j < total; j++) {
        const span = (scheduled[j] as number) - (scheduled[i] as number);
        // 1e-6 ms absorbs the nanosecond rounding of times to ms.
        expect(j - i + 1).toBeLessThanOrEqual(burst + rate * span + 1e-6);
      }
    }
    // The limit really bit: 60 calls at 0.1/ms after a burst of 5 take at least 550 ms.
    expect((scheduled[total - 1] as number) - (scheduled[0] as number)).toBeGreaterThanOrEqual(
      (total - burst) / rate - 1,
    );
  });
});
