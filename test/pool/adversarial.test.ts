import { Pool, systemClock } from "sluice";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";
import { expectNoUnhandledRejections } from "../support/no-unhandled-rejections.js";
import { state } from "../support/promise-state.js";

expectNoUnhandledRejections();

describe("Pool: borrow validation does not wait for a create while a resource is idle", () => {
  it("regression: a waiter was rejected with a create error although a returned resource sat idle", async () => {
    const clock = new FakeClock();
    let next = 0;
    let failing = false;
    const pool = new Pool<{ id: number }>({
      create: async () => {
        await Promise.resolve();
        if (failing) throw new Error("connection refused");
        return { id: ++next };
      },
      validate: () => true,
      max: 2,
      clock,
      createRetry: { attempts: 2, delay: 100 },
    });
    const first = await pool.acquire();
    failing = true;
    // Starts a create (room for one more), which will keep failing.
    const waiting = pool.acquire();
    await flushMicrotasks();
    expect(pool.pendingCreates).toBe(1);
    // The first resource comes back: it is checked and lent to the waiter at once.
    first.release();
    expect(await state(waiting)).toBe("resolved");
    expect((await waiting).value.id).toBe(1);
    await clock.runAll();
    expect(pool.pendingCreates).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it("serves a waiter from an idle resource while a slow create for it is still connecting", async () => {
    const clock = new FakeClock();
    const connects: ((value: { id: number }) => void)[] = [];
    let next = 0;
    const pool = new Pool<{ id: number }>({
      create: () =>
        next++ === 0
          ? { id: 1 }
          : new Promise<{ id: number }>((resolve) => {
              connects.push(resolve);
            }),
      validate: () => true,
      max: 2,
      clock,
    });
    const first = await pool.acquire();
    const waiting = pool.acquire();
    await flushMicrotasks();
    expect(connects).toHaveLength(1);
    first.release();
    expect(await state(waiting)).toBe("resolved");
    // The slow connect finishes later and simply joins the idle list.
    connects[0]?.({ id: 2 });
    await flushMicrotasks();
    expect(pool.statistics()).toMatchObject({ idle: 1, inUse: 1, size: 2, pendingCreates: 0, waiting: 0 });
  });
});

describe("Pool: onError may drain the pool", () => {
  it("regression: drain() called from onError after the last create attempt failed never settled", async () => {
    const clock = new FakeClock();
    let drained: Promise<void> | undefined;
    const pool: Pool<object> = new Pool<object>({
      create: () => Promise.reject(new Error("database is gone")),
      max: 1,
      clock,
      createRetry: { attempts: 1 },
      onError: () => {
        drained ??= pool.drain();
      },
    });
    await expect(pool.acquire()).rejects.toThrow("database is gone");
    expect(drained).toBeDefined();
    expect(await state(drained as Promise<void>)).toBe("resolved");
    expect(pool.pendingCreates).toBe(0);
  });

  it("drain() called from onError while a retry would follow stops retrying and settles", async () => {
    const clock = new FakeClock();
    let creates = 0;
    let drained: Promise<void> | undefined;
    const pool: Pool<object> = new Pool<object>({
      create: () => {
        creates++;
        return Promise.reject(new Error("database is gone"));
      },
      max: 1,
      min: 1,
      clock,
      onError: () => {
        drained ??= pool.drain();
      },
    });
    await flushMicrotasks();
    expect(creates).toBe(1);
    expect(drained).toBeDefined();
    expect(await state(drained as Promise<void>)).toBe("resolved");
    // No retry timer was left behind to call the factory of a drained pool.
    expect(clock.pendingTimers).toBe(0);
    await clock.runAll();
    expect(creates).toBe(1);
    expect(pool.pendingCreates).toBe(0);
  });
});

describe("Pool: an abort that came first wins", () => {
  it("a resource returned by an earlier abort listener of the same signal is not lent to the aborted borrower", async () => {
    let made = 0;
    const pool = new Pool({ create: () => ++made, max: 1, clock: new FakeClock() });
    const lease = await pool.acquire();
    const controller = new AbortController();
    // The caller's own cleanup, registered before the wait: on abort it returns what it borrowed.
    controller.signal.addEventListener("abort", () => lease.release());
    const aborted = pool.acquire({ signal: controller.signal }).then(
      () => "lent",
      (error: unknown) => error,
    );
    controller.abort(new Error("gone"));
    expect(await aborted).toMatchObject({ message: "gone" });
    // The resource went back to the idle list, not to a caller who had left.
    expect(pool.statistics()).toMatchObject({ idle: 1, inUse: 0, waiting: 0 });
    const again = await pool.acquire();
    expect(again.value).toBe(1);
    again.release();
    await pool.drain();
  });
});

describe("Pool: idle housekeeping and never-ending durations", () => {
  it("the idle-eviction timer does not keep a finished program alive, and still evicts on time", async () => {
    const armed: { hasRef(): boolean }[] = [];
    const clock = {
      now: () => systemClock.now(),
      setTimeout: (callback: () => void, ms: number) => {
        const handle = systemClock.setTimeout(callback, ms) as { hasRef(): boolean };
        armed.push(handle);
        return handle;
      },
      clearTimeout: (handle: unknown) => systemClock.clearTimeout(handle),
      unref: (handle: unknown) => systemClock.unref?.(handle),
    };
    const destroyed: number[] = [];
    const pool = new Pool({
      create: () => 1,
      destroy: (value) => void destroyed.push(value),
      max: 1,
      idleTimeout: 20,
      clock,
    });
    (await pool.acquire()).release();
    expect(armed).toHaveLength(1);
    expect(armed[0]?.hasRef()).toBe(false);
    // Unref'd, not cancelled: while something else keeps the process up, eviction happens as set.
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(destroyed).toEqual([1]);
    expect(pool.statistics()).toMatchObject({ size: 0, idle: 0 });
  });

  it("systemClock.unref also covers timers beyond 24.8 days, which are chained", () => {
    const handle = systemClock.setTimeout(() => {}, 2 ** 32) as { handle: { hasRef(): boolean } };
    systemClock.unref?.(handle);
    expect(handle.handle.hasRef()).toBe(false);
    systemClock.clearTimeout(handle);
  });

  it("idleTimeout and createRetry.maxDelay of Infinity mean never and no cap, as createTimeout's does", async () => {
    const clock = new FakeClock();
    const pool = new Pool({
      create: () => 1,
      max: 1,
      idleTimeout: Number.POSITIVE_INFINITY,
      createRetry: { maxDelay: Number.POSITIVE_INFINITY },
      createTimeout: Number.POSITIVE_INFINITY,
      clock,
    });
    (await pool.acquire()).release();
    expect(clock.pendingTimers).toBe(0);
    await pool.drain();
  });
});
