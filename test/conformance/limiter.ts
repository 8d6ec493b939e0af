/**
 * The conformance suite every `Limiter` passes: Semaphore, Mutex, RateLimiter (as a concurrency cap),
 * SharedSemaphore, SharedMutex and SharedRateLimiter (threads), RedisSemaphore, RedisMutex and
 * RedisRateLimiter. One generic suite, like trio's generic lock tests, so a backend cannot quietly
 * differ from the in-memory semantics users learn first.
 *
 * The suite runs in real time (distributed backends cannot use a fake clock) but never asserts on
 * wall-clock durations: "not granted yet" is checked after a short settle period, and every wait has a
 * generous guard so a bug shows up as a failure, never as a hang.
 *
 * A limiter whose permits hold nothing (a rate limiter without concurrency) gets its room back with
 * time, not on release: its subject says how to let that time pass (`refill`), and the suite calls it
 * wherever a release gives room back to the others.
 */

import type { Limiter, LimiterStatistics, Permit } from "sluice";
import { describe, expect, it } from "vitest";

/** Every Limiter sluice ships has statistics() with the same core fields (DESIGN.md, "One surface"). */
export type ObservableLimiter = Limiter & { statistics(): LimiterStatistics };

/** One limiter under test and how to dispose of it. */
export interface ConformanceSubject {
  limiter: ObservableLimiter;
  /** Frees whatever the subject holds (connections, workers, keys). */
  close?(): Promise<void> | void;
  /**
   * For a limiter whose permits hold nothing (see {@link ConformanceOptions.holds}): lets the time pass
   * that gives `weight` of room back, as a release of that weight does for the others.
   */
  refill?(weight: number): Promise<void> | void;
}

export interface ConformanceOptions {
  /** Supports `weight` > 1 (default true). */
  weighted?: boolean;
  /** Honours `priority` (default true). */
  priority?: boolean;
  /** How long to let the backend settle before checking that something is still pending (ms). */
  settleMs?: number;
  /** The guard on every wait that must end (ms). */
  guardMs?: number;
  /** The largest capacity the subject supports (a Mutex: 1). Tests scale down to it. Default Infinity. */
  maxCapacity?: number;
  /**
   * Whether a permit holds its weight until released (default true). A rate limiter without
   * concurrency holds nothing: its room comes back with time (the subject's `refill`), and a waiter
   * aborted with others booked behind it may leave its stretch of budget unused rather than give it on.
   */
  holds?: boolean;
}

/** How a test gives room back: on release, or (for a limiter that holds nothing) with time too. */
interface Room {
  /** Releases `permit`, and lets the time pass that gives its room back. */
  giveBack(permit: Permit): Promise<void>;
  /** After a `run` gave its permit back (weight 1): lets the time pass that gives the room back. */
  afterRun(): Promise<void>;
}

/**
 * Registers the shared Limiter tests under `describe(name)`.
 *
 * @param create - makes a fresh limiter that admits `capacity` weight at once.
 */
export function describeLimiterConformance(
  name: string,
  create: (capacity: number) => Promise<ConformanceSubject> | ConformanceSubject,
  options: ConformanceOptions = {},
): void {
  const weighted = options.weighted ?? true;
  const priority = options.priority ?? true;
  const settleMs = options.settleMs ?? 20;
  const guardMs = options.guardMs ?? 5_000;
  const maxCapacity = options.maxCapacity ?? Number.POSITIVE_INFINITY;
  const holds = options.holds ?? true;
  /** The capacity a test asks for, scaled down to what the subject supports. */
  const cap = (wanted: number) => Math.min(wanted, maxCapacity);

  /** Fails instead of hanging when `promise` does not settle in time. */
  function guard<T>(promise: Promise<T>, label: string): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${label}: did not settle within ${guardMs} ms`)), guardMs);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }

  /** Whether `promise` is still pending after the settle period. */
  async function stillPending(promise: Promise<unknown>): Promise<boolean> {
    let settled = false;
    promise.then(
      () => {
        settled = true;
      },
      () => {
        settled = true;
      },
    );
    await new Promise((resolve) => setTimeout(resolve, settleMs));
    return !settled;
  }

  /** Takes all `capacity` permits one by one: proves nothing was lost. */
  async function drainAll(limiter: Limiter, capacity: number): Promise<Permit[]> {
    const permits: Permit[] = [];
    for (let i = 0; i < capacity; i++) permits.push(await guard(limiter.acquire(), `permit ${i + 1} of ${capacity}`));
    return permits;
  }

  async function withSubject(
    capacity: number,
    body: (limiter: ObservableLimiter, room: Room, releaseAll: (permits: Permit[]) => Promise<void>) => Promise<void>,
  ): Promise<void> {
    const subject = await create(capacity);
    const refill = async (weight: number) => {
      if (!holds) await subject.refill?.(weight);
    };
    const room: Room = {
      giveBack: async (permit) => {
        await permit.release();
        await refill(permit.weight);
      },
      afterRun: () => refill(1),
    };
    const releaseAll = async (permits: Permit[]) => {
      for (const permit of permits) await room.giveBack(permit);
    };
    try {
      await body(subject.limiter, room, releaseAll);
    } finally {
      await subject.close?.();
    }
  }

  function rejection(promise: Promise<unknown>): Promise<unknown> {
    return guard(
      promise.then(
        () => {
          throw new Error("expected a rejection, got a grant");
        },
        (error: unknown) => error,
      ),
      "rejection",
    );
  }

  describe(`${name} (Limiter conformance)`, () => {
    it("run returns the function's value and gives the permit back", async () => {
      await withSubject(1, async (limiter, room) => {
        expect(
          await guard(
            limiter.run(() => 42),
            "run",
          ),
        ).toBe(42);
        await room.afterRun();
        expect(
          await guard(
            limiter.run(async () => "again"),
            "second run",
          ),
        ).toBe("again");
      });
    });

    if (!holds) {
      it("never admits more than the capacity before time gives room back, one call per unit of room", async () => {
        const capacity = cap(3);
        await withSubject(capacity, async (limiter, room) => {
          let started = 0;
          const jobs = Array.from({ length: 6 }, () =>
            limiter.run(() => {
              started++;
            }),
          );
          expect(await stillPending(jobs[capacity] as Promise<void>)).toBe(true);
          expect(started).toBe(capacity);
          for (let more = 1; more <= 6 - capacity; more++) {
            await room.afterRun();
            await guard(jobs[capacity + more - 1] as Promise<void>, `call ${capacity + more}`);
            if (capacity + more < 6) expect(await stillPending(jobs[capacity + more] as Promise<void>)).toBe(true);
            expect(started).toBe(capacity + more);
          }
        });
      });
    }

    // A limiter that holds nothing caps starts, not how many run at once (see the test above).
    it.runIf(holds)("never admits more than the capacity at once", async () => {
      const capacity = cap(3);
      await withSubject(capacity, async (limiter) => {
        let inside = 0;
        let most = 0;
        const jobs = Array.from({ length: 20 }, (_, index) =>
          limiter.run(async () => {
            inside++;
            most = Math.max(most, inside);
            await new Promise((resolve) => setTimeout(resolve, 2));
            inside--;
            return index;
          }),
        );
        const results = await guard(Promise.all(jobs), "20 jobs");
        expect(results).toEqual(Array.from({ length: 20 }, (_, index) => index));
        expect(most).toBeLessThanOrEqual(capacity);
        expect(most).toBe(capacity);
      });
    });

    it("serves waiters in arrival order (FIFO)", async () => {
      await withSubject(1, async (limiter, room) => {
        const held = await guard(limiter.acquire(), "first permit");
        const order: number[] = [];
        const waiters = [0, 1, 2, 3, 4].map((index) =>
          limiter.acquire().then(async (permit) => {
            order.push(index);
            await room.giveBack(permit);
          }),
        );
        expect(await stillPending(waiters[0] as Promise<void>)).toBe(true);
        await room.giveBack(held);
        await guard(Promise.all(waiters), "five waiters");
        expect(order).toEqual([0, 1, 2, 3, 4]);
      });
    });

    it("releases when the function throws synchronously", async () => {
      await withSubject(1, async (limiter, room) => {
        const failure = new Error("sync failure");
        const result = limiter.run(() => {
          throw failure;
        });
        expect(await rejection(result)).toBe(failure);
        await room.afterRun();
        expect(
          await guard(
            limiter.run(() => "free again"),
            "run after throw",
          ),
        ).toBe("free again");
      });
    });

    it("releases when the function rejects", async () => {
      await withSubject(1, async (limiter, room) => {
        const failure = new Error("async failure");
        expect(await rejection(limiter.run(async () => Promise.reject(failure)))).toBe(failure);
        await room.afterRun();
        expect(
          await guard(
            limiter.run(() => "free again"),
            "run after rejection",
          ),
        ).toBe("free again");
      });
    });

    it("hands the work an AbortSignal", async () => {
      await withSubject(1, async (limiter) => {
        const signal = await guard(
          limiter.run((signal) => signal),
          "run",
        );
        expect(signal).toBeInstanceOf(AbortSignal);
        expect(signal.aborted).toBe(false);
      });
    });

    it("the work's signal fires when the caller's signal aborts after the grant", async () => {
      await withSubject(1, async (limiter, room, releaseAll) => {
        const controller = new AbortController();
        let seen: AbortSignal | undefined;
        const done = limiter.run(
          (signal) =>
            new Promise<string>((resolve) => {
              seen = signal;
              signal.addEventListener("abort", () => resolve("stopped"), { once: true });
            }),
          { signal: controller.signal },
        );
        await new Promise((resolve) => setTimeout(resolve, settleMs));
        expect(seen?.aborted).toBe(false);
        controller.abort(new Error("stop"));
        expect(await guard(done, "run stopped by signal")).toBe("stopped");
        await room.afterRun();
        await drainAll(limiter, 1).then(releaseAll);
      });
    });

    it("bad options reject the returned promise instead of throwing", async () => {
      const capacity = cap(2);
      await withSubject(capacity, async (limiter, _room, releaseAll) => {
        const calls: (() => Promise<unknown>)[] = [
          () => limiter.acquire({ weight: 0 }),
          () => limiter.acquire({ weight: 1.5 }),
          () => limiter.acquire({ timeout: -1 }),
          () => limiter.acquire({ timeout: Number.NaN }),
          () => limiter.acquire({ priority: Number.NaN }),
        ];
        for (const call of calls) {
          let promise: Promise<unknown> | undefined;
          expect(() => {
            promise = call();
          }).not.toThrow();
          const error = await rejection(promise as Promise<unknown>);
          expect(error).toBeInstanceOf(RangeError);
        }
        // Nothing was taken by the refused calls.
        await drainAll(limiter, capacity).then(releaseAll);
      });
    });

    it("a misspelt acquire option rejects with a TypeError naming it and the nearest option; a cost passes", async () => {
      const capacity = cap(2);
      await withSubject(capacity, async (limiter, room, releaseAll) => {
        for (const [options, typed, meant] of [
          [{ timout: 100 }, "timout", "timeout"],
          [{ signl: AbortSignal.timeout(1000) }, "signl", "signal"],
          [{ Priority: 1 }, "Priority", "priority"],
        ] as const) {
          let promise: Promise<unknown> | undefined;
          expect(() => {
            promise = limiter.acquire(options as object);
          }).not.toThrow();
          const error = await rejection(promise as Promise<unknown>);
          expect(error).toBeInstanceOf(TypeError);
          expect((error as Error).message).toContain(`unknown option "${typed}"`);
          expect((error as Error).message).toContain(`did you mean "${meant}"?`);
        }
        // Code written for any Limiter (limitedFetch, the CLI) passes a cost; a limiter that counts none
        // takes it as an ordinary acquire.
        const permit = await guard(limiter.acquire({ cost: 1 } as object), "acquire with a cost");
        await room.giveBack(permit);
        await drainAll(limiter, capacity).then(releaseAll);
      });
    });

    if (weighted) {
      it("a weight above the capacity rejects at once with a RangeError naming both numbers", async () => {
        await withSubject(2, async (limiter) => {
          const error = await rejection(limiter.acquire({ weight: 3 }));
          expect(error).toBeInstanceOf(RangeError);
          expect(String((error as Error).message)).toMatch(/3/);
          expect(String((error as Error).message)).toMatch(/2/);
        });
      });

      it("a heavy request at the head is not starved by light ones behind it", async () => {
        await withSubject(2, async (limiter, room) => {
          const first = await guard(limiter.acquire(), "first");
          const order: string[] = [];
          const heavy = limiter.acquire({ weight: 2 }).then((permit) => {
            order.push("heavy");
            return permit;
          });
          await new Promise((resolve) => setTimeout(resolve, settleMs));
          const light = limiter.acquire({ weight: 1 }).then((permit) => {
            order.push("light");
            return permit;
          });
          // One permit is free, but the heavy head does not fit yet, so the light one must wait.
          expect(await stillPending(light)).toBe(true);
          await room.giveBack(first);
          const heavyPermit = await guard(heavy, "heavy");
          expect(await stillPending(light)).toBe(true);
          await room.giveBack(heavyPermit);
          await room.giveBack(await guard(light, "light"));
          expect(order).toEqual(["heavy", "light"]);
        });
      });
    }

    if (priority) {
      it("a higher priority is served first; equal priorities in arrival order", async () => {
        await withSubject(1, async (limiter, room) => {
          const held = await guard(limiter.acquire(), "first");
          const order: string[] = [];
          const take = (label: string, priority: number) =>
            limiter.acquire({ priority }).then(async (permit) => {
              order.push(label);
              await room.giveBack(permit);
            });
          const low = take("low", 0);
          await new Promise((resolve) => setTimeout(resolve, settleMs));
          const highA = take("high-a", 5);
          await new Promise((resolve) => setTimeout(resolve, settleMs));
          const highB = take("high-b", 5);
          await new Promise((resolve) => setTimeout(resolve, settleMs));
          await room.giveBack(held);
          await guard(Promise.all([low, highA, highB]), "three waiters");
          expect(order).toEqual(["high-a", "high-b", "low"]);
        });
      });
    }

    it("an already-aborted signal rejects with its reason and takes nothing", async () => {
      await withSubject(1, async (limiter, _room, releaseAll) => {
        const reason = new Error("already gone");
        expect(await rejection(limiter.acquire({ signal: AbortSignal.abort(reason) }))).toBe(reason);
        expect(await rejection(limiter.run(() => "never", { signal: AbortSignal.abort(reason) }))).toBe(reason);
        await drainAll(limiter, 1).then(releaseAll);
      });
    });

    it("aborting a waiter rejects it with the signal's reason and loses no permit", async () => {
      const capacity = cap(2);
      await withSubject(capacity, async (limiter, room, releaseAll) => {
        const held = await drainAll(limiter, capacity);
        const controller = new AbortController();
        const waiter = limiter.acquire({ signal: controller.signal });
        // A limiter that holds nothing gives an aborted waiter's room on only if nobody booked after it.
        const behind = holds ? limiter.acquire() : undefined;
        expect(await stillPending(waiter)).toBe(true);
        const reason = new Error("changed my mind");
        controller.abort(reason);
        expect(await rejection(waiter)).toBe(reason);
        await room.giveBack(held.pop() as Permit);
        // The permit went to the waiter behind the aborted one, not into the void.
        const next = await guard(behind ?? limiter.acquire(), "waiter behind the aborted one");
        await room.giveBack(next);
        await releaseAll(held);
        await drainAll(limiter, capacity).then(releaseAll);
      });
    });

    it("a timeout rejects with a TimeoutError and the waiter leaves the queue", async () => {
      await withSubject(1, async (limiter, room, releaseAll) => {
        const held = await guard(limiter.acquire(), "first");
        const timedOut = limiter.acquire({ timeout: 30 });
        const behind = limiter.acquire();
        const error = await rejection(timedOut);
        expect((error as Error).name).toBe("TimeoutError");
        await room.giveBack(held);
        await room.giveBack(await guard(behind, "waiter behind the timed-out one"));
        await drainAll(limiter, 1).then(releaseAll);
      });
    });

    it("timeout 0 means only if free right now", async () => {
      await withSubject(1, async (limiter, room, releaseAll) => {
        const free = await guard(limiter.acquire({ timeout: 0 }), "free permit with timeout 0");
        const error = await rejection(limiter.acquire({ timeout: 0 }));
        expect((error as Error).name).toBe("TimeoutError");
        await room.giveBack(free);
        // The refused call took nothing.
        await drainAll(limiter, 1).then(releaseAll);
      });
    });

    it("abort racing a release in the same tick neither loses nor duplicates a permit", async () => {
      await withSubject(1, async (limiter, room) => {
        for (let round = 0; round < 3; round++) {
          const held = await guard(limiter.acquire(), "held");
          const controller = new AbortController();
          const waiter = limiter.acquire({ signal: controller.signal });
          await new Promise((resolve) => setTimeout(resolve, settleMs));
          // Observe the waiter before racing: with an asynchronous release (Redis) the abort may win,
          // and its rejection must not go unhandled.
          const observed = waiter.then(
            (permit) => permit,
            () => undefined,
          );
          const released = held.release();
          controller.abort(new Error("raced"));
          await released;
          // A limiter that holds nothing: room comes with time, here after the race.
          if (!holds) await room.afterRun();
          const outcome = await guard(observed, "raced waiter");
          if (outcome !== undefined) await room.giveBack(outcome);
          // Not lost: the one permit can be taken again. Not duplicated: a second one cannot.
          const again = await guard(limiter.acquire(), "the permit after the race");
          expect(((await rejection(limiter.acquire({ timeout: 0 }))) as Error).name).toBe("TimeoutError");
          await room.giveBack(again);
        }
      });
    });

    it("a second release throws ReleasedError synchronously", async () => {
      await withSubject(1, async (limiter, room, releaseAll) => {
        const permit = await guard(limiter.acquire(), "permit");
        await room.giveBack(permit);
        let thrown: unknown;
        try {
          const result = permit.release();
          // A rejection instead of a synchronous throw would be wrong too; observe it to fail clearly.
          if (result instanceof Promise) await result.catch(() => undefined);
        } catch (error) {
          thrown = error;
        }
        expect((thrown as Error | undefined)?.name).toBe("ReleasedError");
        // The same words on every backend.
        expect((thrown as Error).message).toBe("this permit (weight 1) was already released");
        await drainAll(limiter, 1).then(releaseAll);
      });
    });

    it("run calls fn(signal, permit): the permit holds the grant, and fn may release it itself", async () => {
      await withSubject(1, async (limiter, room) => {
        const seen = await guard(
          limiter.run(async (signal, permit) => {
            expect(signal).toBeInstanceOf(AbortSignal);
            expect(permit?.weight).toBe(1);
            expect(permit?.signal).toBe(signal);
            expect(typeof permit?.release).toBe("function");
            return permit;
          }),
          "run",
        );
        expect(seen).toBeDefined();
        await room.afterRun();
        // Released early by fn: run does not release it a second time (no ReleasedError, no extra room).
        expect(
          await guard(
            limiter.run(async (_signal, permit) => {
              await permit.release();
              return "released by fn";
            }),
            "run that releases",
          ),
        ).toBe("released by fn");
        await room.afterRun();
        // Exactly one permit is left: taken once, refused the second time.
        const again = await guard(limiter.acquire(), "the permit after an early release");
        expect(((await rejection(limiter.acquire({ timeout: 0 }))) as Error).name).toBe("TimeoutError");
        await room.giveBack(again);
      });
    });

    it("statistics(): capacity, available, inUse and waiting mean the same thing on every backend", async () => {
      const capacity = cap(2);
      // A limiter that holds nothing caps no weight held at once: its capacity is Infinity.
      const most = holds ? capacity : Number.POSITIVE_INFINITY;
      await withSubject(capacity, async (limiter, _room, releaseAll) => {
        const idle = limiter.statistics();
        expect(idle).toMatchObject({ capacity: most, available: most, inUse: 0, waiting: 0 });
        const held = await drainAll(limiter, capacity);
        const waiter = limiter.acquire();
        await new Promise((resolve) => setTimeout(resolve, settleMs));
        expect(limiter.statistics()).toMatchObject({
          capacity: most,
          available: most - capacity,
          inUse: capacity,
          waiting: 1,
        });
        await releaseAll(held);
        await releaseAll([await guard(waiter, "waiter")]);
        await new Promise((resolve) => setTimeout(resolve, settleMs));
        expect(limiter.statistics()).toMatchObject({ available: most, inUse: 0, waiting: 0 });
      });
    });

    it("statistics(): every request is counted once, by how it ended", async () => {
      await withSubject(1, async (limiter) => {
        const before = limiter.statistics();
        const held = await guard(limiter.acquire(), "held"); // granted
        await rejection(limiter.acquire({ timeout: 0 })); // timedOut: refused at once
        await rejection(limiter.acquire({ signal: AbortSignal.abort(new Error("gone")) })); // aborted: at once
        const controller = new AbortController();
        // Observed at once: a limiter that books its place at call time refuses a too-short timeout then.
        const aborted = rejection(limiter.acquire({ signal: controller.signal }));
        const timedOut = rejection(limiter.acquire({ timeout: 30 }));
        await new Promise((resolve) => setTimeout(resolve, settleMs));
        controller.abort(new Error("changed my mind"));
        await aborted; // aborted: while waiting
        await timedOut; // timedOut: while waiting (or refused at once, for a limiter that decides it then)
        if (weighted) await rejection(limiter.acquire({ weight: 2 })); // rejected: can never fit
        await held.release();
        const after = limiter.statistics();
        expect(after.granted - before.granted).toBe(1);
        expect(after.timedOut - before.timedOut).toBe(2);
        expect(after.aborted - before.aborted).toBe(2);
        expect(after.rejected - before.rejected).toBe(weighted ? 1 : 0);
      });
    });

    it("the same situation raises the same error class and message on every backend", async () => {
      await withSubject(1, async (limiter) => {
        const held = await guard(limiter.acquire(), "held");
        const timedOut = (await rejection(limiter.acquire({ timeout: 30 }))) as Error;
        expect(timedOut.name).toBe("TimeoutError");
        expect(timedOut.message).toMatch(/^timed out after 30 ms waiting for \S/);
        if (weighted) {
          const heavy = (await rejection(limiter.acquire({ weight: 3 }))) as Error;
          expect(heavy).toBeInstanceOf(RangeError);
          expect(heavy.message).toMatch(/^weight 3 is above the capacity 1 of .+; it could never be granted$/);
        }
        await held.release();
      });
    });

    it("disposal releases a held permit and is a no-op after an explicit release", async () => {
      await withSubject(1, async (limiter, room, releaseAll) => {
        {
          await using permit = await guard(limiter.acquire(), "permit");
          expect(permit.weight).toBe(1);
        }
        await room.afterRun();
        const second = await guard(limiter.acquire(), "permit after disposal");
        await room.giveBack(second);
        await second[Symbol.asyncDispose]();
        await drainAll(limiter, 1).then(releaseAll);
      });
    });
  });
}
