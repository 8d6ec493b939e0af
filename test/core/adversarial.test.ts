/**
 * Adversarial regressions for the scheduling core: inputs and schedules a demanding user hits, each
 * named after the defect it reproduces.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import fc from "fast-check";
import { Channel, Mutex, type Permit, Pool, RateLimiter, Semaphore } from "sluice";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";

/** A real garbage collection, for tests that a settled waiter is not kept alive. */
function collectGarbage(): void {
  setFlagsFromString("--expose-gc");
  (runInNewContext("gc") as () => void)();
}

describe("Semaphore: a malformed signal or clock fails at once instead of corrupting the queue", () => {
  it("a signal-like object without addEventListener rejects with a TypeError, and no permit is lost", async () => {
    const semaphore = new Semaphore(1);
    const held = semaphore.tryAcquire() as NonNullable<ReturnType<Semaphore["tryAcquire"]>>;
    const fake = { aborted: false } as unknown as AbortSignal;
    let acquired: Promise<unknown> | undefined;
    let ran: Promise<unknown> | undefined;
    expect(() => {
      acquired = semaphore.acquire({ signal: fake });
      ran = semaphore.run(() => "ran", { signal: fake });
    }).not.toThrow();
    await expect(acquired).rejects.toThrow(TypeError);
    await expect(ran).rejects.toThrow(/signal must be an AbortSignal/);
    expect(semaphore.waiting).toBe(0);
    // Before the fix the waiter stayed queued with no way out, and this release threw in the
    // releaser's hands and gave the permit to a promise nobody held.
    expect(() => held.release()).not.toThrow();
    expect(semaphore.inUse).toBe(0);
    expect(semaphore.tryAcquire()).toBeDefined();
  });

  it.each([
    [{ clock: {} }, /clock must be a Clock .*an object/],
    [{ clock: { now: () => 0, setTimeout: () => 0 } }, /clock must be a Clock/],
    [{ name: 42 }, /name must be a string; got 42/],
    [{ name: 10n }, /name must be a string; got 10n/],
  ])("new Semaphore(1, %o) throws a TypeError naming the option", (options, message) => {
    expect(() => new Semaphore(1, options as never)).toThrow(TypeError);
    expect(() => new Semaphore(1, options as never)).toThrow(message);
    expect(() => new Mutex(options as never)).toThrow(message);
  });

  it("new Semaphore(1, null) throws a TypeError naming the options", () => {
    expect(() => new Semaphore(1, null as never)).toThrow(/options must be an object; got null/);
    expect(() => new Mutex(null as never)).toThrow(/options must be an object; got null/);
  });
});

describe("Semaphore: weights are counted exactly", () => {
  it("a weight beyond Number.MAX_SAFE_INTEGER is a RangeError (it could not be counted exactly)", async () => {
    const semaphore = new Semaphore(Number.POSITIVE_INFINITY);
    expect(() => semaphore.tryAcquire(2 ** 60)).toThrow(RangeError);
    expect(() => semaphore.tryAcquire(2 ** 60)).toThrow(new RegExp(`weight .*${2 ** 60}`));
    await expect(semaphore.acquire({ weight: 2 ** 60 })).rejects.toThrow(new RegExp(`weight .*${2 ** 60}`));
    await expect(semaphore.run(() => 1, { weight: 2 ** 53 })).rejects.toThrow(RangeError);
    // Before the fix: held 1 + 2^60 rounded to 2^60, and after both releases inUse was -1.
    expect(semaphore.inUse).toBe(0);
    const largest = semaphore.tryAcquire(Number.MAX_SAFE_INTEGER);
    expect(largest?.weight).toBe(Number.MAX_SAFE_INTEGER);
    largest?.release();
    expect(semaphore.inUse).toBe(0);
  });
});

describe("WaitQueue: a waiter that leaves is not kept alive by the queue", () => {
  it("an aborted queued run from the middle of the line releases its function (and what it holds)", async () => {
    const semaphore = new Semaphore(1);
    const held = semaphore.tryAcquire() as NonNullable<ReturnType<Semaphore["tryAcquire"]>>;
    const others: Promise<unknown>[] = [];
    for (let i = 0; i < 20; i++) others.push(semaphore.run(() => i));
    const controller = new AbortController();
    const { reference, settled } = (() => {
      const payload = { big: new Array(1_000).fill("x") };
      const promise = semaphore
        .run(() => payload.big.length, { signal: controller.signal })
        .catch((error: unknown) => (error as Error).name);
      return { reference: new WeakRef(payload), settled: promise };
    })();
    for (let i = 0; i < 20; i++) others.push(semaphore.run(() => i));
    controller.abort();
    expect(await settled).toBe("AbortError");
    expect(semaphore.waiting).toBe(40);
    await flushMicrotasks();
    collectGarbage();
    // Before the fix the tombstone it left in the ring still held its request until a compaction.
    expect(reference.deref()).toBeUndefined();
    held.release();
    await Promise.all(others);
    expect(semaphore.inUse).toBe(0);
  });
});

describe("FakeClock: bad delays cannot wedge or rewind time", () => {
  it("a timer with a NaN delay fires at once (as Node's does) instead of blocking every later timer", () => {
    const clock = new FakeClock();
    const fired: string[] = [];
    clock.setTimeout(() => fired.push("five"), 5);
    clock.setTimeout(() => fired.push("nan"), Number.NaN);
    clock.setTimeout(() => fired.push("ten"), 10);
    clock.advance(10);
    expect(fired).toEqual(["nan", "five", "ten"]);
    expect(clock.pendingTimers).toBe(0);
    expect(clock.now()).toBe(10);
  });

  it.each([-1, Number.NaN])("advance(%s) is a RangeError and leaves the time alone", async (ms) => {
    const clock = new FakeClock(100);
    expect(() => clock.advance(ms)).toThrow(RangeError);
    expect(() => clock.advance(ms)).toThrow(new RegExp(`ms .*${ms}`));
    await expect(clock.advanceAsync(ms)).rejects.toThrow(RangeError);
    expect(clock.now()).toBe(100);
  });
});

describe("Semaphore: a waiter whose signal has aborted is never granted", () => {
  it("one signal shared by two waiters: aborting the head does not hand the permit to the other one mid-abort", async () => {
    const semaphore = new Semaphore(2);
    const held = semaphore.tryAcquire() as NonNullable<ReturnType<Semaphore["tryAcquire"]>>;
    const controller = new AbortController();
    const reason = new Error("request cancelled");
    // The heavy head does not fit; the light one behind it waits (head-of-line).
    const heavy = semaphore.acquire({ weight: 2, signal: controller.signal }).catch((error: unknown) => error);
    const light = semaphore.acquire({ weight: 1, signal: controller.signal }).then(
      (permit) => permit,
      (error: unknown) => error,
    );
    controller.abort(reason);
    // Before the fix the heavy waiter's listener re-dispatched before the light one's had run, and the
    // light one was granted a permit for a wait its caller had already aborted.
    expect(await heavy).toBe(reason);
    expect(await light).toBe(reason);
    expect(semaphore.inUse).toBe(1);
    expect(semaphore.waiting).toBe(0);
    expect(semaphore.statistics()).toMatchObject({ aborted: 2, granted: 1 });
    held.release();
    expect(semaphore.inUse).toBe(0);
  });

  it("a release made by an earlier abort listener of the same signal goes to the next waiter, not the aborted one", async () => {
    const semaphore = new Semaphore(1);
    const held = semaphore.tryAcquire() as NonNullable<ReturnType<Semaphore["tryAcquire"]>>;
    const controller = new AbortController();
    // The caller's own cleanup, registered before the wait: on abort it gives its permit back.
    controller.signal.addEventListener("abort", () => held.release());
    const aborted = semaphore.acquire({ signal: controller.signal }).then(
      () => "granted",
      () => "rejected",
    );
    const next = semaphore.acquire({ timeout: 1_000 });
    controller.abort();
    expect(await aborted).toBe("rejected");
    (await next).release();
    expect(semaphore.inUse).toBe(0);
  });

  it("queued runs sharing an aborted signal never start their function", async () => {
    const semaphore = new Semaphore(3);
    const held = semaphore.tryAcquire(2) as NonNullable<ReturnType<Semaphore["tryAcquire"]>>;
    const controller = new AbortController();
    const started: string[] = [];
    const results = [
      semaphore.run(() => started.push("heavy"), { weight: 3, signal: controller.signal }),
      semaphore.run(() => started.push("light"), { signal: controller.signal }),
    ].map((promise) => promise.catch((error: Error) => error.name));
    controller.abort();
    expect(await Promise.all(results)).toEqual(["AbortError", "AbortError"]);
    expect(started).toEqual([]);
    held.release();
    expect(semaphore.inUse).toBe(0);
  });
});

describe("Semaphore properties with runs and shared signals", () => {
  type Step =
    | { kind: "wait"; run: boolean; weight: number; priority: number; signal: number; timeout: number | undefined }
    | { kind: "finish"; pick: number; fail: boolean }
    | { kind: "abort"; signal: number }
    | { kind: "advance"; ms: number }
    | { kind: "resize"; capacity: number };

  const step: fc.Arbitrary<Step> = fc.oneof(
    {
      weight: 5,
      arbitrary: fc.record({
        kind: fc.constant("wait" as const),
        run: fc.boolean(),
        weight: fc.integer({ min: 1, max: 3 }),
        priority: fc.integer({ min: -1, max: 1 }),
        // 0-2: one of three signals shared by many waiters; 3: no signal.
        signal: fc.integer({ min: 0, max: 3 }),
        timeout: fc.option(fc.integer({ min: 1, max: 20 }), { nil: undefined }),
      }),
    },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant("finish" as const), pick: fc.nat(), fail: fc.boolean() }) },
    {
      weight: 2,
      arbitrary: fc.record({ kind: fc.constant("abort" as const), signal: fc.integer({ min: 0, max: 2 }) }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 15 }) }) },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant("resize" as const), capacity: fc.integer({ min: 1, max: 5 }) }),
    },
  );

  it("a waiter pending when its signal aborts is rejected, and the books match what callers hold", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.array(step, { minLength: 5, maxLength: 60 }),
        async (initial, steps) => {
          const clock = new FakeClock();
          const semaphore = new Semaphore(initial, { clock });
          let controllers = [new AbortController(), new AbortController(), new AbortController()];
          interface Caller {
            weight: number;
            signal: AbortSignal | undefined;
            status: "pending" | "holding" | "done";
            finish?: (fail: boolean) => void;
            mustReject: boolean;
          }
          const callers: Caller[] = [];
          const outcomes: Promise<void>[] = [];
          for (const s of steps) {
            switch (s.kind) {
              case "wait": {
                const caller: Caller = {
                  weight: s.weight,
                  signal: s.signal < 3 ? controllers[s.signal]?.signal : undefined,
                  status: "pending",
                  mustReject: false,
                };
                if (caller.signal?.aborted) break;
                callers.push(caller);
                const options = { weight: s.weight, priority: s.priority, signal: caller.signal, timeout: s.timeout };
                const settled = s.run
                  ? semaphore.run(() => {
                      caller.status = "holding";
                      return new Promise<void>((resolve, reject) => {
                        caller.finish = (fail) => (fail ? reject(new Error("work failed")) : resolve());
                      });
                    }, options)
                  : semaphore.acquire(options).then((permit) => {
                      caller.status = "holding";
                      return new Promise<void>((resolve) => {
                        caller.finish = () => {
                          permit.release();
                          resolve();
                        };
                      });
                    });
                outcomes.push(
                  settled.then(
                    () => {
                      expect(caller.mustReject).toBe(false);
                      caller.status = "done";
                    },
                    () => {
                      caller.status = "done";
                    },
                  ),
                );
                break;
              }
              case "finish": {
                const holding = callers.filter((c) => c.status === "holding" && c.finish !== undefined);
                const caller = holding[s.pick % Math.max(1, holding.length)];
                if (caller !== undefined) {
                  const finish = caller.finish as (fail: boolean) => void;
                  caller.finish = undefined;
                  finish(s.fail);
                }
                break;
              }
              case "abort": {
                // After the flush that ends every step, "pending" is exactly "queued": every queued caller
                // on this signal must be rejected, however the abort's own re-dispatch goes.
                const controller = controllers[s.signal] as AbortController;
                for (const caller of callers) {
                  if (caller.signal === controller.signal && caller.status === "pending") caller.mustReject = true;
                }
                controller.abort();
                controllers = controllers.map((c) => (c === controller ? new AbortController() : c));
                break;
              }
              case "advance":
                await clock.advanceAsync(s.ms);
                break;
              case "resize":
                semaphore.capacity = s.capacity;
                break;
            }
            await flushMicrotasks(4);
            const holding = callers.filter((c) => c.status === "holding");
            expect(semaphore.inUse).toBe(holding.reduce((sum, c) => sum + c.weight, 0));
            expect(semaphore.waiting).toBe(callers.filter((c) => c.status === "pending").length);
          }
          semaphore.clear();
          await flushMicrotasks(4);
          for (const caller of callers) caller.finish?.(false);
          await Promise.all(outcomes);
          expect(callers.every((c) => c.status === "done")).toBe(true);
          expect(semaphore.inUse).toBe(0);
          expect(semaphore.waiting).toBe(0);
          expect(clock.pendingTimers).toBe(0);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("Mutex: its errors name a mutex, not the semaphore inside it", () => {
  it("a timeout and a weight that cannot fit say 'mutex'", async () => {
    const clock = new FakeClock();
    const mutex = new Mutex({ clock });
    const lock = mutex.tryLock();
    const waiting = mutex.lock({ timeout: 5 }).catch((error: Error) => error.message);
    await clock.advanceAsync(5);
    expect(await waiting).toBe("timed out after 5 ms waiting for the mutex");
    await expect(mutex.lock({ weight: 2 } as never)).rejects.toThrow(/weight 2 is above the capacity 1 of the mutex/);
    const named = new Mutex({ name: "ledger", clock });
    await expect(named.run(() => 1, { weight: 2 } as never)).rejects.toThrow(/of mutex "ledger"/);
    lock?.release();
  });
});

describe("every in-process primitive checks its clock and name up front", () => {
  const makers: [string, (options: object) => unknown][] = [
    ["RateLimiter", (options) => new RateLimiter(options)],
    ["Pool", (options) => new Pool({ create: () => 1, max: 1, ...options })],
    ["Channel", (options) => new Channel(1, options)],
  ];
  it.each(makers)("%s: a clock that is not a Clock and a name that is not a string are TypeErrors", (_, make) => {
    expect(() => make({ clock: {} })).toThrow(TypeError);
    expect(() => make({ clock: {} })).toThrow(/clock must be a Clock/);
    expect(() => make({ name: 10n })).toThrow(/name must be a string; got 10n/);
  });
});

describe("FakeClock.clearTimeout", () => {
  it("ignores what is not one of its timers, like Node's clearTimeout", () => {
    const clock = new FakeClock();
    const fired: string[] = [];
    clock.setTimeout(() => fired.push("kept"), 10);
    expect(() => clock.clearTimeout(123)).not.toThrow();
    expect(() => clock.clearTimeout(new FakeClock().setTimeout(() => {}, 1))).not.toThrow();
    expect(() => clock.clearTimeout(undefined)).not.toThrow();
    clock.advance(10);
    expect(fired).toEqual(["kept"]);
  });
});

describe("error messages name the value without dumping it", () => {
  it("a function is named, not printed as its source; a long string is cut", () => {
    function namedClock() {
      return 1;
    }
    expect(() => new Semaphore(1, { clock: namedClock as never })).toThrow(
      /^clock must be a Clock \(now, setTimeout and clearTimeout\); got the function namedClock$/,
    );
    expect(() => new Semaphore(1, { clock: (() => 1) as never })).toThrow(/got the function clock$|got a function$/);
    const long = "x".repeat(10_000);
    expect(() => new RateLimiter({ limits: [{ limit: 1, interval: long }] })).toThrow(/… \(10000 characters\)/);
  });
});

describe("run(): a failure nobody handles is not lost", () => {
  /** Runs `start` with the process's unhandled-rejection listeners swapped for one that records. */
  async function unhandledDuring(start: () => void): Promise<unknown[]> {
    const seen: unknown[] = [];
    const saved = process.listeners("unhandledRejection");
    process.removeAllListeners("unhandledRejection");
    const record = (reason: unknown) => seen.push(reason);
    process.on("unhandledRejection", record);
    try {
      start();
      // Node reports unhandled rejections once the microtasks after a macrotask have run.
      for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setTimeout(resolve, 0));
    } finally {
      process.off("unhandledRejection", record);
      for (const listener of saved) process.on("unhandledRejection", listener);
    }
    return seen;
  }

  it("an uncontended run whose work rejects, its result ignored, is an unhandled rejection (as a queued one is)", async () => {
    const semaphore = new Semaphore(1);
    const boom = new Error("boom");
    const uncontended = await unhandledDuring(() => {
      void semaphore.run(async () => {
        throw boom;
      });
    });
    expect(uncontended).toEqual([boom]);
    expect(semaphore.available).toBe(1);
    const held = semaphore.tryAcquire() as Permit;
    const queued = await unhandledDuring(() => {
      void semaphore.run(async () => {
        throw boom;
      });
      held.release();
    });
    expect(queued).toEqual([boom]);
    expect(semaphore.available).toBe(1);
  });

  it("a handled failure is reported to its handler only, once the permit is back", async () => {
    const semaphore = new Semaphore(1);
    const seen = await unhandledDuring(() => {
      semaphore
        .run(async () => {
          throw new Error("handled");
        })
        .catch(() => {
          expect(semaphore.available).toBe(1);
        });
    });
    expect(seen).toEqual([]);
  });
});
