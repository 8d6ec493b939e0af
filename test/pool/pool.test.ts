import { ClosedError, Pool, type PoolErrorEvent, ReleasedError, TimeoutError } from "sluice";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";

interface Connection {
  id: number;
  broken: boolean;
  destroyed: number;
}

/** A fake database: counts what exists, can be told to fail creates. */
function database(options: { failCreates?: number; asyncDestroy?: boolean } = {}) {
  const state = {
    nextId: 1,
    failCreates: options.failCreates ?? 0,
    created: [] as Connection[],
    live: 0,
    peakLive: 0,
  };
  return {
    state,
    create: async (): Promise<Connection> => {
      await Promise.resolve();
      if (state.failCreates > 0) {
        state.failCreates--;
        throw new Error("connection refused");
      }
      const connection = { id: state.nextId++, broken: false, destroyed: 0 };
      state.created.push(connection);
      state.live++;
      state.peakLive = Math.max(state.peakLive, state.live);
      return connection;
    },
    destroy: (connection: Connection): void | Promise<void> => {
      connection.destroyed++;
      if (!options.asyncDestroy) {
        state.live--;
        return;
      }
      return Promise.resolve().then(() => {
        state.live--;
      });
    },
  };
}

describe("Pool: lending", () => {
  it("creates lazily, reuses a released resource, and never exceeds max", async () => {
    const db = database();
    const pool = new Pool({ create: db.create, destroy: db.destroy, max: 2 });
    expect(pool.size).toBe(0);
    const a = await pool.acquire();
    const b = await pool.acquire();
    expect(a.value.id).not.toBe(b.value.id);
    const c = pool.acquire();
    await flushMicrotasks();
    expect(pool.waiting).toBe(1);
    expect(db.state.created).toHaveLength(2);
    a.release();
    // Hand-off: the waiter got the released resource in the same step.
    expect(pool.waiting).toBe(0);
    expect((await c).value).toBe(a.value);
    expect(pool.inUse).toBe(2);
  });

  it("a resource returned while someone waits goes to that waiter, not to a later acquire (no barging)", async () => {
    const pool = new Pool({ create: () => ({}), max: 1 });
    const held = await pool.acquire();
    const first = pool.acquire();
    held.release();
    const second = pool.acquire();
    expect(pool.waiting).toBe(1);
    expect((await first).value).toBe(held.value);
    expect(pool.inUse).toBe(1);
    (await first).release();
    expect((await second).value).toBe(held.value);
  });

  it("serves waiters by priority, then arrival", async () => {
    const db = database();
    const pool = new Pool({ create: db.create, max: 1 });
    const held = await pool.acquire();
    const order: string[] = [];
    const low = pool.acquire().then((lease) => {
      order.push("low");
      lease.release();
    });
    const high = pool.acquire({ priority: 5 }).then((lease) => {
      order.push("high");
      lease.release();
    });
    held.release();
    await Promise.all([low, high]);
    expect(order).toEqual(["high", "low"]);
  });

  it("a second release or a destroy after release throws ReleasedError; disposal after release is a no-op", async () => {
    const pool = new Pool({ create: () => ({}), max: 1 });
    const lease = await pool.acquire();
    lease.release();
    expect(() => lease.release()).toThrow(ReleasedError);
    expect(() => lease.destroy()).toThrow(ReleasedError);
    expect(() => lease[Symbol.dispose]()).not.toThrow();
    expect(pool.inUse).toBe(0);
    expect(pool.idle).toBe(1);
  });

  it("await using releases the lease at the end of the block", async () => {
    const pool = new Pool({ create: () => ({ n: 1 }), max: 1 });
    {
      await using lease = await pool.acquire();
      expect(lease.value.n).toBe(1);
      expect(pool.inUse).toBe(1);
    }
    expect(pool.inUse).toBe(0);
  });

  it("use() gives the resource back when fn throws, and lets fn destroy a broken one", async () => {
    const db = database();
    const pool = new Pool({ create: db.create, destroy: db.destroy, max: 1 });
    await expect(
      pool.use(() => {
        throw new Error("query failed");
      }),
    ).rejects.toThrow("query failed");
    expect(pool.inUse).toBe(0);
    expect(pool.idle).toBe(1);
    await pool.use((_connection, lease) => lease.destroy());
    expect(db.state.created[0]?.destroyed).toBe(1);
    const value = await pool.use((connection) => connection.id);
    expect(value).toBe(2);
  });
});

describe("Pool: waiting", () => {
  it("a timed-out acquire leaves the queue; the resource goes to the next waiter", async () => {
    const clock = new FakeClock();
    const pool = new Pool({ create: () => ({}), max: 1, clock });
    const held = await pool.acquire();
    const late = pool.acquire({ timeout: 50 }).catch((error: unknown) => error);
    const patient = pool.acquire();
    await clock.advanceAsync(50);
    expect(await late).toBeInstanceOf(TimeoutError);
    expect(pool.waiting).toBe(1);
    held.release();
    expect((await patient).value).toBe(held.value);
    expect(pool.statistics().timedOut).toBe(1);
  });

  it("an aborted acquire rejects with the signal's reason and leaves no waiter", async () => {
    const pool = new Pool({ create: () => ({}), max: 1 });
    await pool.acquire();
    const controller = new AbortController();
    const waiting = pool.acquire({ signal: controller.signal });
    controller.abort(new Error("user left"));
    await expect(waiting).rejects.toThrow("user left");
    expect(pool.waiting).toBe(0);
  });

  it("timeout 0 lends an idle resource and otherwise fails at once", async () => {
    const pool = new Pool({ create: () => ({}), max: 1 });
    await expect(pool.acquire({ timeout: 0 })).rejects.toBeInstanceOf(TimeoutError);
    const lease = await pool.acquire();
    lease.release();
    const again = await pool.acquire({ timeout: 0 });
    expect(again.value).toBe(lease.value);
  });
});

describe("Pool: validation", () => {
  it("replaces a resource that fails validation on borrow, transparently", async () => {
    const db = database();
    const invalid: Connection[] = [];
    const pool = new Pool({
      create: db.create,
      destroy: db.destroy,
      validate: (connection) => !connection.broken,
      max: 2,
    });
    const first = await pool.acquire();
    first.release();
    first.value.broken = true;
    const second = await pool.acquire();
    expect(second.value.broken).toBe(false);
    expect(second.value.id).toBe(2);
    expect(first.value.destroyed).toBe(1);
    expect(pool.statistics().validationFailures).toBe(1);
    expect(invalid).toHaveLength(0);
  });

  it("a validator that throws counts as invalid and is reported", async () => {
    const errors: PoolErrorEvent[] = [];
    let calls = 0;
    const pool = new Pool({
      create: () => ({ n: ++calls }),
      validate: async () => {
        throw new Error("ping failed");
      },
      onError: (_error, event) => errors.push(event),
      max: 1,
    });
    const lease = await pool.acquire();
    lease.release();
    const next = await pool.acquire();
    expect(next.value.n).toBe(2);
    expect(errors).toEqual([{ phase: "validate" }]);
  });

  it("validateOn 'return' checks on release and skips the borrow check", async () => {
    const db = database();
    let checks = 0;
    const pool = new Pool({
      create: db.create,
      destroy: db.destroy,
      validate: (connection) => {
        checks++;
        return !connection.broken;
      },
      validateOn: "return",
      max: 1,
    });
    const lease = await pool.acquire();
    lease.value.broken = true;
    lease.release();
    await flushMicrotasks();
    expect(checks).toBe(1);
    expect(lease.value.destroyed).toBe(1);
    const next = await pool.acquire();
    expect(next.value.id).toBe(2);
    expect(checks).toBe(1);
  });
});

describe("Pool: failing create", () => {
  it("retries with exponential backoff, reports each failure, and serves the waiter when it succeeds", async () => {
    const clock = new FakeClock();
    const db = database({ failCreates: 2 });
    const reports: PoolErrorEvent[] = [];
    const pool = new Pool({
      create: db.create,
      max: 1,
      clock,
      onError: (_error, event) => reports.push(event),
    });
    const waiting = pool.acquire();
    await flushMicrotasks();
    expect(reports).toEqual([{ phase: "create", attempt: 1, willRetry: true }]);
    expect(pool.pendingCreates).toBe(1);
    expect(clock.nextTimerAt).toBe(100);
    await clock.advanceAsync(100);
    expect(reports).toHaveLength(2);
    expect(clock.nextTimerAt).toBe(300);
    await clock.advanceAsync(200);
    const lease = await waiting;
    expect(lease.value.id).toBe(1);
    expect(pool.pendingCreates).toBe(0);
    expect(pool.statistics().createFailures).toBe(2);
  });

  it("rejects the waiters with the error after `attempts` failures, and keeps no slot", async () => {
    const clock = new FakeClock();
    const db = database({ failCreates: Number.POSITIVE_INFINITY });
    const pool = new Pool({ create: db.create, max: 2, clock, createRetry: { attempts: 3, delay: 10 } });
    const waiters = [1, 2, 3].map(() => pool.acquire().catch((error: unknown) => error));
    await flushMicrotasks();
    await clock.runAll();
    for (const outcome of await Promise.all(waiters)) expect(outcome).toMatchObject({ message: "connection refused" });
    expect(pool.pendingCreates).toBe(0);
    expect(pool.size).toBe(0);
    expect(pool.waiting).toBe(0);
    expect(clock.pendingTimers).toBe(0);
    // The factory recovers: the next acquire creates afresh.
    db.state.failCreates = 0;
    const lease = await pool.acquire();
    expect(lease.value.id).toBe(1);
  });

  it("stops retrying when nobody needs the resource any more", async () => {
    const clock = new FakeClock();
    const db = database({ failCreates: Number.POSITIVE_INFINITY });
    const pool = new Pool({ create: db.create, max: 1, clock });
    const controller = new AbortController();
    const waiting = pool.acquire({ signal: controller.signal }).catch(() => "aborted");
    await flushMicrotasks();
    controller.abort();
    expect(await waiting).toBe("aborted");
    await flushMicrotasks();
    await clock.runAll();
    expect(pool.pendingCreates).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it("a create that throws synchronously is handled like a rejection", async () => {
    const clock = new FakeClock();
    const pool = new Pool<object>({
      create: () => {
        throw new Error("bad config");
      },
      max: 1,
      clock,
      createRetry: { attempts: 1 },
    });
    await expect(pool.acquire()).rejects.toThrow("bad config");
    expect(pool.pendingCreates).toBe(0);
  });
});

describe("Pool: createTimeout and destroyTimeout", () => {
  /** A create that hangs until told, recording the signal each attempt received. */
  function hangingFactory() {
    const attempts: { signal: AbortSignal; finish: (value: { id: number }) => void }[] = [];
    return {
      attempts,
      create: (signal: AbortSignal) =>
        new Promise<{ id: number }>((resolve) => {
          attempts.push({ signal, finish: resolve });
        }),
    };
  }

  it("fails a hanging create after createTimeout, aborts its signal, and retries", async () => {
    const clock = new FakeClock();
    const factory = hangingFactory();
    const events: [string, PoolErrorEvent][] = [];
    const pool = new Pool({
      create: factory.create,
      max: 1,
      clock,
      createTimeout: 50,
      createRetry: { attempts: 3, delay: 10 },
      onError: (error, event) => events.push([(error as Error).name, event]),
    });
    const lease = pool.acquire();
    await flushMicrotasks();
    expect(factory.attempts).toHaveLength(1);
    await clock.advanceAsync(50);
    const first = factory.attempts[0]?.signal;
    expect(first?.aborted).toBe(true);
    expect(first?.reason).toBeInstanceOf(TimeoutError);
    expect(events).toEqual([["TimeoutError", { phase: "create", attempt: 1, willRetry: true }]]);
    // The retry (after the 10 ms backoff) answers in time and serves the waiter.
    await clock.advanceAsync(10);
    expect(factory.attempts).toHaveLength(2);
    factory.attempts[1]?.finish({ id: 2 });
    expect((await lease).value.id).toBe(2);
    expect(pool.size).toBe(1);
    expect(clock.pendingTimers).toBe(0);
  });

  it("rejects the waiter with a TimeoutError once every attempt timed out, and keeps no slot", async () => {
    const clock = new FakeClock();
    const factory = hangingFactory();
    const pool = new Pool({
      create: factory.create,
      max: 1,
      clock,
      createTimeout: "20ms",
      createRetry: { attempts: 2, delay: 5 },
    });
    const outcome = pool.acquire().catch((error: unknown) => error);
    await flushMicrotasks();
    await clock.runAll();
    expect(await outcome).toBeInstanceOf(TimeoutError);
    expect(await outcome).toMatchObject({ message: expect.stringContaining("createTimeout (20 ms)") });
    expect(factory.attempts).toHaveLength(2);
    expect(pool.pendingCreates).toBe(0);
    expect(pool.size).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it("destroys a resource that arrives after its create timed out, and never lends it", async () => {
    const clock = new FakeClock();
    const factory = hangingFactory();
    const destroyed: number[] = [];
    const pool = new Pool({
      create: factory.create,
      destroy: (value) => {
        destroyed.push(value.id);
      },
      max: 1,
      clock,
      createTimeout: 50,
      createRetry: { attempts: 2, delay: 1 },
    });
    const lease = pool.acquire();
    await flushMicrotasks();
    await clock.advanceAsync(51);
    expect(factory.attempts).toHaveLength(2);
    // The first, timed-out create finishes late: destroyed; the second serves the waiter.
    factory.attempts[0]?.finish({ id: 1 });
    await flushMicrotasks();
    expect(destroyed).toEqual([1]);
    factory.attempts[1]?.finish({ id: 2 });
    expect((await lease).value.id).toBe(2);
    expect(pool.size).toBe(1);
    expect(pool.statistics()).toMatchObject({ created: 2, destroyed: 1, createFailures: 1 });
  });

  it("frees the slot of a destroy that hangs past destroyTimeout, and reports it", async () => {
    const clock = new FakeClock();
    const errors: [string, PoolErrorEvent][] = [];
    let next = 0;
    const pool = new Pool({
      create: () => ({ id: ++next }),
      destroy: () => new Promise<void>(() => undefined),
      max: 1,
      clock,
      destroyTimeout: "1s",
      onError: (error, event) => errors.push([(error as Error).name, event]),
    });
    const first = await pool.acquire();
    first.destroy();
    await flushMicrotasks();
    expect(pool.size).toBe(1);
    // max 1 and the destroy still holds the slot: the next caller waits until destroyTimeout.
    const second = pool.acquire();
    await clock.advanceAsync(999);
    expect(pool.waiting).toBe(1);
    await clock.advanceAsync(1);
    expect(errors).toEqual([["TimeoutError", { phase: "destroy" }]]);
    expect((await second).value.id).toBe(2);
    expect(clock.pendingTimers).toBe(0);
  });
});

describe("Pool: min, idleTimeout, maxUses", () => {
  it("creates min resources at start and keeps them through idle eviction", async () => {
    const clock = new FakeClock();
    const db = database();
    const pool = new Pool({ create: db.create, destroy: db.destroy, min: 2, max: 5, idleTimeout: "1s", clock });
    await flushMicrotasks();
    expect(pool.size).toBe(2);
    expect(pool.idle).toBe(2);
    const leases = await Promise.all([1, 2, 3, 4].map(() => pool.acquire()));
    expect(pool.size).toBe(4);
    for (const lease of leases) lease.release();
    await clock.advanceAsync(1000);
    expect(pool.size).toBe(2);
    expect(pool.statistics().evicted).toBe(2);
    // min is kept even when a kept resource is destroyed.
    const lease = await pool.acquire();
    lease.destroy();
    await flushMicrotasks();
    expect(pool.size).toBe(2);
  });

  it("evicts with one timer for the whole pool, oldest first, each after idleTimeout", async () => {
    const clock = new FakeClock();
    const db = database();
    const pool = new Pool({ create: db.create, destroy: db.destroy, max: 10, idleTimeout: 100, clock });
    const leases = await Promise.all(Array.from({ length: 5 }, () => pool.acquire()));
    for (const lease of leases) {
      lease.release();
      expect(clock.pendingTimers).toBeLessThanOrEqual(1);
      await clock.advanceAsync(10);
    }
    // Released at 0, 10, 20, 30, 40: at 105 only the first has idled 100 ms.
    await clock.advanceAsync(105 - clock.now());
    expect(pool.idle).toBe(4);
    expect(leases[0]?.value.destroyed).toBe(1);
    await clock.advanceAsync(140 - clock.now());
    expect(pool.idle).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it("destroys a resource after maxUses leases", async () => {
    const db = database();
    const pool = new Pool({ create: db.create, destroy: db.destroy, max: 1, maxUses: 3 });
    const ids: number[] = [];
    for (let i = 0; i < 7; i++) ids.push(await pool.use((connection) => connection.id));
    expect(ids).toEqual([1, 1, 1, 2, 2, 2, 3]);
    expect(db.state.created[0]?.destroyed).toBe(1);
  });
});

describe("Pool: drain", () => {
  it("rejects waiters with ClosedError, waits for leases, destroys everything once", async () => {
    const db = database({ asyncDestroy: true });
    const pool = new Pool({ create: db.create, destroy: db.destroy, max: 2 });
    const a = await pool.acquire();
    const b = await pool.acquire();
    b.release();
    const waiting = pool.acquire();
    // b went straight to the waiter.
    const c = await waiting;
    const late = pool.acquire();
    let drained = false;
    const draining = pool.drain().then(() => {
      drained = true;
    });
    await expect(late).rejects.toBeInstanceOf(ClosedError);
    await expect(pool.acquire()).rejects.toBeInstanceOf(ClosedError);
    await flushMicrotasks();
    expect(drained).toBe(false);
    a.release();
    c.release();
    await draining;
    expect(db.state.live).toBe(0);
    for (const connection of db.state.created) expect(connection.destroyed).toBe(1);
    expect(pool.drain()).toBe(pool.drain());
  });

  it("destroys a resource whose create finishes after drain, and aborts the create's signal", async () => {
    let finish: (value: { id: number }) => void = () => {};
    let signal: AbortSignal | undefined;
    const destroyed: number[] = [];
    const pool = new Pool({
      create: (s) => {
        signal = s;
        return new Promise<{ id: number }>((resolve) => {
          finish = resolve;
        });
      },
      destroy: (value) => {
        destroyed.push(value.id);
      },
      max: 1,
    });
    const waiting = pool.acquire().catch((error: unknown) => error);
    const draining = pool.drain();
    expect(signal?.aborted).toBe(true);
    expect(await waiting).toBeInstanceOf(ClosedError);
    finish({ id: 9 });
    await draining;
    expect(destroyed).toEqual([9]);
  });

  it("a failing destroy is reported and still frees the slot", async () => {
    const reports: unknown[] = [];
    const pool = new Pool({
      create: () => ({}),
      destroy: async () => {
        throw new Error("close failed");
      },
      onError: (error) => reports.push(error),
      max: 1,
    });
    const lease = await pool.acquire();
    lease.destroy();
    await flushMicrotasks();
    expect(pool.size).toBe(0);
    expect(reports).toHaveLength(1);
    await pool.drain();
  });
});

describe("Pool: statistics", () => {
  it("has the core fields every Limiter has: capacity is max, inUse the leases out, available the rest", async () => {
    const pool = new Pool({ create: () => ({}), max: 3, min: 1, name: "db" });
    await flushMicrotasks();
    const lease = await pool.acquire();
    expect(pool.statistics()).toEqual({
      name: "db",
      capacity: 3,
      available: 2,
      inUse: 1,
      waiting: 0,
      granted: 1,
      aborted: 0,
      timedOut: 0,
      rejected: 0,
      min: 1,
      size: 1,
      idle: 0,
      pendingCreates: 0,
      validating: 0,
      destroying: 0,
      draining: false,
      created: 1,
      destroyed: 0,
      createFailures: 0,
      validationFailures: 0,
      evicted: 0,
    });
    lease.release();
    await pool.drain();
  });

  it("granted counts every lease: at once, with options, after a wait, after a check and after a create", async () => {
    const pool = new Pool({ create: async () => ({}), validate: () => true, validateOn: "return", max: 1 });
    const created = await pool.acquire(); // after a create
    const waiting = pool.acquire({ priority: 1 });
    created.release(); // checked on return, then lent to the waiter
    const afterCheck = await waiting;
    afterCheck.release();
    await flushMicrotasks();
    (await pool.acquire()).release(); // at once, the fast path
    await flushMicrotasks();
    (await pool.acquire({ timeout: 10 })).release(); // at once, through the admission step
    await flushMicrotasks();
    expect(pool.statistics()).toMatchObject({ granted: 4, inUse: 0, waiting: 0 });
    await pool.drain();
  });

  it("an already-aborted signal counts as aborted, and timeout 0 refused as timed out", async () => {
    const pool = new Pool({ create: () => ({}), max: 1 });
    const lease = await pool.acquire();
    const reason = new Error("gone");
    // Refused even though it could be served the way every other caller is: the abort came first.
    await expect(pool.acquire({ signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    await expect(pool.acquire({ timeout: 0 })).rejects.toBeInstanceOf(TimeoutError);
    expect(pool.statistics()).toMatchObject({ granted: 1, aborted: 1, timedOut: 1, rejected: 0, waiting: 0 });
    lease.release();
    await pool.drain();
  });

  it("rejected counts callers refused by a drained pool and waiters dropped by drain() or by failing creates", async () => {
    const failing = new Pool({
      create: () => Promise.reject(new Error("connection refused")),
      createRetry: { attempts: 1 },
      max: 1,
    });
    await expect(failing.acquire()).rejects.toThrow("connection refused");
    expect(failing.statistics()).toMatchObject({ granted: 0, rejected: 1, createFailures: 1 });
    await failing.drain();

    const pool = new Pool({ create: () => ({}), max: 1 });
    const lease = await pool.acquire();
    const waiter = pool.acquire();
    const draining = pool.drain();
    await expect(waiter).rejects.toBeInstanceOf(ClosedError);
    // Drained comes before aborted: a pool that will never lend again says so, whatever the signal.
    await expect(pool.acquire({ signal: AbortSignal.abort() })).rejects.toBeInstanceOf(ClosedError);
    expect(pool.statistics()).toMatchObject({ granted: 1, rejected: 2, aborted: 0 });
    lease.release();
    await draining;
  });
});

describe("Pool: bad input", () => {
  it("names the option and the value", () => {
    const create = () => ({});
    expect(() => new Pool({ create, max: 0 })).toThrow(/max.*0/);
    expect(() => new Pool({ create, max: -1 })).toThrow(RangeError);
    expect(() => new Pool({ create, max: 2, min: 3 })).toThrow(/min.*3/);
    expect(() => new Pool({ create: 5 as unknown as () => object, max: 1 })).toThrow(/create/);
    expect(() => new Pool({ create, max: 1, idleTimeout: "5 parsecs" })).toThrow(/idleTimeout/);
    expect(() => new Pool({ create, max: 1, maxUses: 0 })).toThrow(/maxUses/);
    expect(() => new Pool({ create, max: 1, validateOn: "sometimes" as "borrow" })).toThrow(/validateOn/);
    expect(() => new Pool({ create, max: 1, createTimeout: 0 })).toThrow(/createTimeout.*0/);
    expect(() => new Pool({ create, max: 1, createTimeout: -1 })).toThrow(RangeError);
    expect(() => new Pool({ create, max: 1, destroyTimeout: Number.NaN })).toThrow(/destroyTimeout.*NaN/);
  });

  it("rejects bad acquire options instead of throwing", async () => {
    const pool = new Pool({ create: () => ({}), max: 1 });
    await expect(pool.acquire({ timeout: -5 })).rejects.toThrow(/timeout.*-5/);
    await expect(pool.use(5 as unknown as (value: object) => void)).rejects.toThrow(TypeError);
  });
});
