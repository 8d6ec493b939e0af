import { AsyncLocalStorage } from "node:async_hooks";
import { getEventListeners } from "node:events";
import { ReleasedError, Semaphore, TimeoutError } from "sluice";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";

/** Settles-state of a promise, observed without awaiting it. */
function track<T>(promise: Promise<T>) {
  const state: { status: "pending" | "fulfilled" | "rejected"; value?: T; error?: unknown } = { status: "pending" };
  promise.then(
    (value) => {
      state.status = "fulfilled";
      state.value = value;
    },
    (error) => {
      state.status = "rejected";
      state.error = error;
    },
  );
  return state;
}

const listeners = (signal: AbortSignal) => getEventListeners(signal, "abort").length;

describe("Semaphore: bookkeeping", () => {
  it("acquire registers before it returns: inUse, waiting and isLocked reflect it at once", () => {
    const semaphore = new Semaphore(2);
    void semaphore.acquire();
    expect(semaphore.inUse).toBe(1);
    void semaphore.acquire({ weight: 1 });
    expect(semaphore.inUse).toBe(2);
    expect(semaphore.isLocked()).toBe(true);
    void semaphore.acquire();
    expect(semaphore.waiting).toBe(1);
    expect(semaphore.available).toBe(0);
  });

  it("release hands permits to the waiters that now fit before it returns", async () => {
    const semaphore = new Semaphore(1);
    const first = await semaphore.acquire();
    const second = track(semaphore.acquire());
    first.release();
    // Synchronously: the waiter already holds the permit; nobody can barge in.
    expect(semaphore.inUse).toBe(1);
    expect(semaphore.waiting).toBe(0);
    expect(semaphore.tryAcquire()).toBeUndefined();
    await flushMicrotasks();
    expect(second.status).toBe("fulfilled");
  });

  it("isLocked is true exactly when tryAcquire would fail", () => {
    const semaphore = new Semaphore(2);
    expect(semaphore.isLocked()).toBe(false);
    const heavy = semaphore.tryAcquire(2);
    expect(semaphore.isLocked()).toBe(true);
    heavy?.release();
    // Free permits, but someone waiting ahead at the same priority: locked.
    const one = semaphore.tryAcquire(1);
    void semaphore.acquire({ weight: 2 });
    expect(semaphore.available).toBe(1);
    expect(semaphore.isLocked()).toBe(true);
    expect(semaphore.tryAcquire()).toBeUndefined();
    one?.release();
  });

  it("tryAcquire never passes a waiter at the same priority", () => {
    const semaphore = new Semaphore(3);
    const held = semaphore.tryAcquire(2);
    void semaphore.acquire({ weight: 2 });
    expect(semaphore.available).toBe(1);
    expect(semaphore.tryAcquire(1)).toBeUndefined();
    held?.release();
  });

  it("a waiter at a lower priority does not lock out tryAcquire", () => {
    const semaphore = new Semaphore(2);
    const held = semaphore.tryAcquire(1);
    void semaphore.acquire({ weight: 2, priority: -1 });
    expect(semaphore.isLocked()).toBe(false);
    const permit = semaphore.tryAcquire(1);
    expect(permit).toBeDefined();
    permit?.release();
    held?.release();
  });

  it("statistics counts grants, timeouts, aborts and rejections", async () => {
    const clock = new FakeClock();
    const semaphore = new Semaphore(1, { name: "db", clock });
    const held = await semaphore.acquire();
    const timed = semaphore.acquire({ timeout: 10 }).catch(() => "timeout");
    const controller = new AbortController();
    const aborted = semaphore.acquire({ signal: controller.signal }).catch(() => "abort");
    const cleared = semaphore.acquire({ weight: 1 }).catch(() => "cleared");
    controller.abort();
    await clock.advanceAsync(10);
    expect(semaphore.statistics()).toMatchObject({ waiting: 1, waitingWeight: 1, timedOut: 1, aborted: 1 });
    semaphore.clear();
    expect(await Promise.all([timed, aborted, cleared])).toEqual(["timeout", "abort", "cleared"]);
    held.release();
    expect(semaphore.statistics()).toEqual({
      name: "db",
      capacity: 1,
      available: 1,
      inUse: 0,
      waiting: 0,
      waitingWeight: 0,
      granted: 1,
      timedOut: 1,
      aborted: 1,
      rejected: 1,
    });
  });
});

describe("Semaphore: order and fairness", () => {
  it("serves higher priorities first and equal priorities in arrival order", async () => {
    const semaphore = new Semaphore(1);
    const held = await semaphore.acquire();
    const order: string[] = [];
    const take = (label: string, priority: number) =>
      semaphore.acquire({ priority }).then((permit) => {
        order.push(label);
        permit.release();
      });
    const all = [take("a0", 0), take("b2", 2), take("c-1", -1), take("d2", 2), take("e0", 0), take("f1", 1)];
    held.release();
    await Promise.all(all);
    expect(order).toEqual(["b2", "d2", "f1", "a0", "e0", "c-1"]);
  });

  it("a light high-priority request passes a heavy low-priority head that does not fit yet", async () => {
    const semaphore = new Semaphore(3);
    const held = await semaphore.acquire({ weight: 2 });
    const heavy = track(semaphore.acquire({ weight: 3 }));
    const light = track(semaphore.acquire({ weight: 1, priority: 1 }));
    await flushMicrotasks();
    expect(light.status).toBe("fulfilled");
    expect(heavy.status).toBe("pending");
    held.release();
    light.value?.release();
    await flushMicrotasks();
    expect(heavy.status).toBe("fulfilled");
  });

  it("large requests are not starved by a stream of small ones (head-of-line)", async () => {
    const semaphore = new Semaphore(10);
    const small = await Promise.all(Array.from({ length: 10 }, () => semaphore.acquire()));
    const large = track(semaphore.acquire({ weight: 10 }));
    const late: Promise<unknown>[] = [];
    // Small permits keep coming back and new small requests keep arriving behind the large one.
    for (const permit of small) {
      permit.release();
      late.push(semaphore.acquire().then((p) => p.release()));
      expect(semaphore.inUse).toBeLessThanOrEqual(10);
    }
    await flushMicrotasks();
    expect(large.status).toBe("fulfilled");
    expect(semaphore.waiting).toBe(10);
    large.value?.release();
    await Promise.all(late);
    expect(semaphore.available).toBe(10);
  });

  it("removing the head on abort re-runs dispatch for the waiters behind it", async () => {
    const semaphore = new Semaphore(2);
    const held = await semaphore.acquire();
    const controller = new AbortController();
    const head = track(semaphore.acquire({ weight: 2, signal: controller.signal }));
    const behind = track(semaphore.acquire({ weight: 1 }));
    controller.abort();
    // Synchronously: the one free permit went to the waiter that was stuck behind the head.
    expect(semaphore.inUse).toBe(2);
    expect(semaphore.waiting).toBe(0);
    await flushMicrotasks();
    expect(head.status).toBe("rejected");
    expect(behind.status).toBe("fulfilled");
    held.release();
    behind.value?.release();
  });

  it("removing the head on timeout re-runs dispatch for the waiters behind it", async () => {
    const clock = new FakeClock();
    const semaphore = new Semaphore(2, { clock });
    const held = await semaphore.acquire();
    const head = track(semaphore.acquire({ weight: 2, timeout: 5 }));
    const behind = track(semaphore.acquire());
    await clock.advanceAsync(5);
    expect(head.status).toBe("rejected");
    expect(head.error).toBeInstanceOf(TimeoutError);
    expect(behind.status).toBe("fulfilled");
    held.release();
  });
});

describe("Semaphore: cancellation", () => {
  it("an already-aborted signal rejects at once without enqueuing, even when permits are free", async () => {
    const semaphore = new Semaphore(1);
    const reason = new Error("gone");
    const result = semaphore.acquire({ signal: AbortSignal.abort(reason) });
    expect(semaphore.waiting).toBe(0);
    expect(semaphore.inUse).toBe(0);
    await expect(result).rejects.toBe(reason);
  });

  it("abort then release in the same tick: the permit goes to the next waiter, none is lost", async () => {
    const semaphore = new Semaphore(1);
    const held = await semaphore.acquire();
    const controller = new AbortController();
    const aborted = track(semaphore.acquire({ signal: controller.signal }));
    const next = track(semaphore.acquire());
    controller.abort();
    held.release();
    await flushMicrotasks();
    expect(aborted.status).toBe("rejected");
    expect(next.status).toBe("fulfilled");
    next.value?.release();
    expect(semaphore.available).toBe(1);
  });

  it("release then abort in the same tick: the grant wins and the permit is the caller's", async () => {
    const semaphore = new Semaphore(1);
    const held = await semaphore.acquire();
    const controller = new AbortController();
    const waiter = track(semaphore.acquire({ signal: controller.signal }));
    held.release();
    controller.abort();
    await flushMicrotasks();
    expect(waiter.status).toBe("fulfilled");
    // The permit carries the caller's signal, which now says "stop the work".
    expect(waiter.value?.signal.aborted).toBe(true);
    waiter.value?.release();
    expect(semaphore.available).toBe(1);
  });

  it("removes its abort listener on every path: grant, abort, timeout and clear", async () => {
    const clock = new FakeClock();
    const semaphore = new Semaphore(1, { clock });
    const held = await semaphore.acquire();
    const signals = [new AbortController(), new AbortController(), new AbortController(), new AbortController()];
    const [granted, aborted, timedOut, cleared] = signals;
    const grantedWait = semaphore.acquire({ signal: granted?.signal });
    const abortedWait = semaphore.acquire({ signal: aborted?.signal }).catch(() => undefined);
    const timedWait = semaphore.acquire({ signal: timedOut?.signal, timeout: 5 }).catch(() => undefined);
    for (const controller of signals.slice(0, 3)) expect(listeners(controller.signal)).toBe(1);
    aborted?.abort();
    await clock.advanceAsync(5);
    held.release();
    (await grantedWait).release();
    await Promise.all([abortedWait, timedWait]);
    const blocker = await semaphore.acquire();
    const clearedWait = semaphore.acquire({ signal: cleared?.signal, timeout: 1_000 }).catch(() => undefined);
    semaphore.clear();
    await clearedWait;
    blocker.release();
    for (const controller of signals) expect(listeners(controller.signal)).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it("a grant clears the waiter's timeout timer", async () => {
    const clock = new FakeClock();
    const semaphore = new Semaphore(1, { clock });
    const held = await semaphore.acquire();
    const waiting = semaphore.acquire({ timeout: 1_000 });
    expect(clock.pendingTimers).toBe(1);
    held.release();
    expect(clock.pendingTimers).toBe(0);
    (await waiting).release();
  });

  it("only waiters that asked for a timeout get a timer", async () => {
    const clock = new FakeClock();
    const semaphore = new Semaphore(1, { clock });
    const held = await semaphore.acquire();
    const controller = new AbortController();
    const waits = [
      semaphore.acquire(),
      semaphore.acquire({ signal: controller.signal }),
      semaphore.acquire({ priority: 3 }),
    ];
    expect(clock.pendingTimers).toBe(0);
    semaphore.clear();
    await Promise.allSettled(waits);
    held.release();
  });

  it("timeouts leave the queue at exactly their deadline", async () => {
    const clock = new FakeClock();
    const semaphore = new Semaphore(1, { clock });
    const held = await semaphore.acquire();
    const waiter = track(semaphore.acquire({ timeout: 100 }));
    await clock.advanceAsync(99);
    expect(waiter.status).toBe("pending");
    expect(semaphore.waiting).toBe(1);
    await clock.advanceAsync(1);
    expect(waiter.status).toBe("rejected");
    expect((waiter.error as TimeoutError).timeout).toBe(100);
    expect(semaphore.waiting).toBe(0);
    held.release();
    expect(semaphore.available).toBe(1);
  });

  it("timeout 0 takes a free permit and refuses to wait for a busy one", async () => {
    const semaphore = new Semaphore(1);
    const permit = await semaphore.acquire({ timeout: 0 });
    await expect(semaphore.acquire({ timeout: 0 })).rejects.toBeInstanceOf(TimeoutError);
    expect(semaphore.waiting).toBe(0);
    permit.release();
  });

  it("clear() settles every waiting promise, with an AbortError by default", async () => {
    const semaphore = new Semaphore(1);
    const held = await semaphore.acquire();
    const waits = Array.from({ length: 5 }, (_, i) => semaphore.acquire({ priority: i % 2 }));
    semaphore.clear();
    const outcomes = await Promise.allSettled(waits);
    expect(outcomes.every((outcome) => outcome.status === "rejected")).toBe(true);
    const reason = (outcomes[0] as PromiseRejectedResult).reason;
    expect(reason).toBeInstanceOf(DOMException);
    expect(reason.name).toBe("AbortError");
    expect(semaphore.waiting).toBe(0);
    expect(semaphore.inUse).toBe(1);
    held.release();
  });

  it("clear(reason) rejects with the given reason", async () => {
    const semaphore = new Semaphore(0 + 1);
    const held = await semaphore.acquire();
    const waiting = semaphore.acquire();
    const reason = new Error("shutting down");
    semaphore.clear(reason);
    await expect(waiting).rejects.toBe(reason);
    held.release();
  });
});

describe("Semaphore: release and dispose", () => {
  it("a second release throws ReleasedError", async () => {
    const semaphore = new Semaphore(2);
    const permit = await semaphore.acquire();
    permit.release();
    expect(() => permit.release()).toThrow(ReleasedError);
    expect(semaphore.inUse).toBe(0);
    expect(semaphore.available).toBe(2);
  });

  it("using releases at the end of the block; release inside the block is fine", async () => {
    const semaphore = new Semaphore(1);
    {
      using permit = await semaphore.acquire();
      expect(semaphore.inUse).toBe(1);
      expect(permit.weight).toBe(1);
    }
    expect(semaphore.inUse).toBe(0);
    {
      using permit = await semaphore.acquire();
      permit.release();
    }
    expect(semaphore.inUse).toBe(0);
    {
      await using permit = await semaphore.acquire({ weight: 1 });
      expect(permit.weight).toBe(1);
    }
    expect(semaphore.inUse).toBe(0);
  });
});

describe("Semaphore: run and wrap", () => {
  it("run releases when fn throws synchronously (free and queued paths)", async () => {
    const semaphore = new Semaphore(1);
    const boom = new Error("boom");
    await expect(
      semaphore.run(() => {
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(semaphore.inUse).toBe(0);
    const held = await semaphore.acquire();
    const queued = semaphore.run(
      () => {
        throw boom;
      },
      { priority: 1 },
    );
    held.release();
    await expect(queued).rejects.toBe(boom);
    expect(semaphore.inUse).toBe(0);
  });

  it("run rejects a non-function without taking a permit", async () => {
    const semaphore = new Semaphore(1);
    await expect(semaphore.run(42 as unknown as () => void)).rejects.toBeInstanceOf(TypeError);
    expect(semaphore.inUse).toBe(0);
  });

  it("run preserves the caller's AsyncLocalStorage context through the queue", async () => {
    const storage = new AsyncLocalStorage<string>();
    const semaphore = new Semaphore(1);
    const held = await semaphore.acquire();
    const seen = Promise.all(
      ["a", "b", "c"].map((id) => storage.run(id, () => semaphore.run(async () => storage.getStore()))),
    );
    held.release();
    expect(await seen).toEqual(["a", "b", "c"]);
    expect(await storage.run("free", () => semaphore.run(() => storage.getStore()))).toBe("free");
  });

  it("run gives fn the caller's signal, and a never-aborting one without", async () => {
    const semaphore = new Semaphore(1);
    const controller = new AbortController();
    expect(await semaphore.run((signal) => signal, { signal: controller.signal })).toBe(controller.signal);
    const plain = await semaphore.run((signal) => signal);
    expect(plain.aborted).toBe(false);
  });

  it("wrap limits every call of the wrapped function", async () => {
    const semaphore = new Semaphore(2);
    let inside = 0;
    let most = 0;
    const work = semaphore.wrap(async (value: number) => {
      inside++;
      most = Math.max(most, inside);
      await flushMicrotasks(2);
      inside--;
      return value * 2;
    });
    expect(await Promise.all([1, 2, 3, 4, 5].map((value) => work(value)))).toEqual([2, 4, 6, 8, 10]);
    expect(most).toBe(2);
    expect(() => semaphore.wrap(null as unknown as () => void)).toThrow(TypeError);
  });
});

describe("Semaphore: capacity at run time", () => {
  it("growing wakes the waiters that now fit", async () => {
    const semaphore = new Semaphore(2);
    const held = await semaphore.acquire({ weight: 2 });
    const light = track(semaphore.acquire());
    const heavy = track(semaphore.acquire({ weight: 2 }));
    semaphore.capacity = 3;
    await flushMicrotasks();
    expect(light.status).toBe("fulfilled");
    expect(heavy.status).toBe("pending");
    semaphore.capacity = 5;
    await flushMicrotasks();
    expect(heavy.status).toBe("fulfilled");
    expect(semaphore.inUse).toBe(5);
    held.release();
  });

  it("shrinking drains: nothing held is revoked, available goes negative, nothing new is granted", async () => {
    const semaphore = new Semaphore(3);
    const permits = await Promise.all([semaphore.acquire(), semaphore.acquire(), semaphore.acquire()]);
    const waiter = track(semaphore.acquire());
    semaphore.capacity = 1;
    expect(semaphore.available).toBe(-2);
    permits[0]?.release();
    permits[1]?.release();
    await flushMicrotasks();
    expect(waiter.status).toBe("pending");
    permits[2]?.release();
    await flushMicrotasks();
    expect(waiter.status).toBe("fulfilled");
  });

  it("shrinking below a waiter's weight rejects that waiter with a RangeError naming both numbers", async () => {
    const semaphore = new Semaphore(4);
    const held = await semaphore.acquire({ weight: 4 });
    const heavy = semaphore.acquire({ weight: 3 });
    const light = track(semaphore.acquire({ weight: 1 }));
    semaphore.capacity = 2;
    await expect(heavy).rejects.toThrow(/weight 3 .*capacity 2/);
    held.release();
    await flushMicrotasks();
    expect(light.status).toBe("fulfilled");
  });

  it("onIdle resolves once nothing is held and nobody waits", async () => {
    const semaphore = new Semaphore(1);
    await semaphore.onIdle();
    const held = await semaphore.acquire();
    const waiter = semaphore.acquire();
    const idle = track(semaphore.onIdle());
    held.release();
    await flushMicrotasks();
    expect(idle.status).toBe("pending");
    (await waiter).release();
    await flushMicrotasks();
    expect(idle.status).toBe("fulfilled");
  });

  it("onIdle resolves when clear() empties the queue of an otherwise idle semaphore", async () => {
    // The waiter is never released by this test: without clear() it would take the permit and keep it,
    // and the semaphore would never be idle.
    const semaphore = new Semaphore(1);
    const held = await semaphore.acquire();
    const waiting = track(semaphore.acquire());
    const idle = track(semaphore.onIdle());
    semaphore.clear();
    await flushMicrotasks();
    expect(waiting.status).toBe("rejected");
    expect(idle.status).toBe("pending");
    held.release();
    await flushMicrotasks();
    expect(idle.status).toBe("fulfilled");
  });
});

describe("Semaphore: bad input fails at once, naming the argument and the value", () => {
  it.each([
    [-1, RangeError, /capacity .*-1/],
    [Number.NaN, RangeError, /capacity .*NaN/],
    [1.5, RangeError, /capacity .*1\.5/],
    ["3", TypeError, /capacity .*"3"/],
  ])("new Semaphore(%s) throws", (capacity, type, message) => {
    expect(() => new Semaphore(capacity as number)).toThrow(type);
    expect(() => new Semaphore(capacity as number)).toThrow(message);
  });

  it("accepts capacity 0 and Infinity", async () => {
    expect(new Semaphore(0).capacity).toBe(0);
    const unlimited = new Semaphore(Number.POSITIVE_INFINITY);
    const permits = await Promise.all(Array.from({ length: 100 }, () => unlimited.acquire({ weight: 1_000 })));
    expect(unlimited.inUse).toBe(100_000);
    for (const permit of permits) permit.release();
  });

  it.each([
    [{ weight: 0 }, RangeError, /weight .*0/],
    [{ weight: 1.5 }, RangeError, /weight .*1\.5/],
    [{ weight: 5 }, RangeError, /weight 5 .*capacity 2/],
    [{ weight: "1" }, TypeError, /weight .*"1"/],
    [{ priority: Number.NaN }, RangeError, /priority .*NaN/],
    [{ timeout: -1 }, RangeError, /timeout .*-1/],
    [{ timeout: Number.NaN }, RangeError, /timeout .*NaN/],
    [{ signal: {} }, TypeError, /signal/],
  ])("acquire(%o) rejects (never throws)", async (options, type, message) => {
    const semaphore = new Semaphore(2);
    let result: Promise<unknown> | undefined;
    expect(() => {
      result = semaphore.acquire(options as never);
    }).not.toThrow();
    await expect(result).rejects.toThrow(type);
    await expect(result).rejects.toThrow(message);
    expect(semaphore.inUse).toBe(0);
    expect(semaphore.waiting).toBe(0);
  });

  it("tryAcquire and the capacity setter throw synchronously", () => {
    const semaphore = new Semaphore(2);
    expect(() => semaphore.tryAcquire(0)).toThrow(RangeError);
    expect(() => semaphore.tryAcquire(3)).toThrow(/weight 3 .*capacity 2/);
    expect(() => {
      semaphore.capacity = -5;
    }).toThrow(/capacity .*-5/);
    expect(semaphore.capacity).toBe(2);
  });
});
