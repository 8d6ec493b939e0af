import fc from "fast-check";
import { FairLimiter, type Permit } from "sluice";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";

/** Queues `count` jobs of `key`; each records its key when granted and keeps its permit. */
function queue(limiter: FairLimiter, key: string, count: number, granted: string[], held: Permit[]): void {
  for (let i = 0; i < count; i++) {
    limiter.acquire(key).then(
      (permit) => {
        granted.push(key);
        held.push(permit);
      },
      () => undefined, // cleared at the end of the test
    );
  }
}

/** Releases the oldest held permit, `times` times, letting the grants it makes land each time. */
async function serve(held: Permit[], times: number): Promise<void> {
  await flushMicrotasks(2);
  for (let i = 0; i < times && held.length > 0; i++) {
    (held.shift() as Permit).release();
    await flushMicrotasks(2);
  }
}

/** A model's bookkeeping: each caller's id by key in arrival order, the ids granted, how many still wait. */
class Ledger {
  private readonly arrivals = new Map<string, number[]>();
  private readonly grants = new Map<string, number[]>();
  private readonly controllers: AbortController[] = [];
  private next = 0;
  waiting = 0;

  /** A caller of `key` asks through `acquire`; `onGrant` gets its permit. An abortable one may be aborted. */
  ask(
    key: string,
    abortable: boolean,
    acquire: (signal: AbortSignal) => Promise<Permit>,
    onGrant: (permit: Permit) => void,
  ): void {
    const id = this.next++;
    const controller = new AbortController();
    if (abortable) this.controllers.push(controller);
    this.arrivals.set(key, [...(this.arrivals.get(key) ?? []), id]);
    this.waiting++;
    acquire(controller.signal).then(
      (permit) => {
        this.waiting--;
        this.grants.set(key, [...(this.grants.get(key) ?? []), id]);
        onGrant(permit);
      },
      () => {
        this.waiting--;
        this.arrivals.set(
          key,
          (this.arrivals.get(key) ?? []).filter((other) => other !== id),
        );
      },
    );
  }

  /** Aborts one of the abortable callers (by `index`, modulo how many there are), if any. */
  abort(index: number): void {
    if (this.controllers.length > 0) this.controllers.splice(index % this.controllers.length, 1)[0]?.abort();
  }

  /** Nobody waits, and every key's callers that were not aborted were granted in arrival order. */
  expectAllServedInOrder(): void {
    expect(this.waiting).toBe(0);
    for (const [key, ids] of this.arrivals) expect(this.grants.get(key) ?? []).toEqual(ids);
  }
}

describe("FairLimiter", () => {
  it("tenant A queues 100,000 jobs, then tenant B one: B starts within one service slot", async () => {
    for (const capacity of [1, 4]) {
      const limiter = new FairLimiter(capacity);
      const granted: string[] = [];
      const held: Permit[] = [];
      queue(limiter, "A", 100_000, granted, held);
      queue(limiter, "B", 1, granted, held);
      await flushMicrotasks(2);
      expect(granted).toEqual(Array(capacity).fill("A"));
      await serve(held, 2);
      // One of A's jobs ends: A's turn (share 1) may take it; the next slot is B's.
      expect(granted.indexOf("B")).toBeGreaterThan(0);
      expect(granted.indexOf("B")).toBeLessThanOrEqual(capacity + 1);
      limiter.clear();
    }
  });

  it("shares 3:1 split the throughput 3:1 (within 5%) while both wait", async () => {
    const limiter = new FairLimiter(2, { shares: { a: 3, b: 1 } });
    const granted: string[] = [];
    const held: Permit[] = [];
    queue(limiter, "a", 5_000, granted, held);
    queue(limiter, "b", 5_000, granted, held);
    await serve(held, 4_000);
    const a = granted.filter((key) => key === "a").length;
    const b = granted.filter((key) => key === "b").length;
    expect(a / b).toBeGreaterThan(3 * 0.95);
    expect(a / b).toBeLessThan(3 * 1.05);
    limiter.clear();
  });

  it("a key's waiters are FIFO; nobody starves; invariants hold after every step (model)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.record({
              kind: fc.constant("acquire" as const),
              key: fc.constantFrom("a", "b", "c", "d"),
              weight: fc.integer({ min: 1, max: 3 }),
              abort: fc.boolean(),
            }),
            fc.record({ kind: fc.constant("release" as const), index: fc.nat() }),
            fc.record({ kind: fc.constant("abort" as const), index: fc.nat() }),
          ),
          { maxLength: 60 },
        ),
        fc.integer({ min: 1, max: 4 }),
        async (steps, capacity) => {
          const limiter = new FairLimiter(capacity, { shares: (key) => (key === "a" ? 2 : 1) });
          const held: Permit[] = [];
          const ledger = new Ledger();
          for (const step of steps) {
            if (step.kind === "acquire") {
              if (step.weight > capacity) continue;
              ledger.ask(
                step.key,
                step.abort,
                (signal) => limiter.acquire(step.key, { weight: step.weight, signal }),
                (permit) => held.push(permit),
              );
            } else if (step.kind === "release" && held.length > 0) {
              held.splice(step.index % held.length, 1)[0]?.release();
            } else if (step.kind === "abort") {
              ledger.abort(step.index);
            }
            await flushMicrotasks(2);
            limiter.assertInvariants();
            expect(limiter.inUse).toBeLessThanOrEqual(capacity);
          }
          // Drain: releasing everything serves everyone left (nobody starved, nothing lost).
          for (let round = 0; round < 1_000 && (held.length > 0 || ledger.waiting > 0); round++) {
            held.shift()?.release();
            await flushMicrotasks(2);
            limiter.assertInvariants();
          }
          ledger.expectAllServedInOrder();
          expect(limiter.size).toBe(0);
          expect(limiter.inUse).toBe(0);
        },
      ),
      { numRuns: 100 },
    );
  });

  it("bad input names the key: a share of 0, a weight above the capacity, a key that is no string", async () => {
    expect(() => new FairLimiter(2, { shares: { acme: 0 } })).toThrow(
      'shares["acme"] must be a finite number > 0; got 0',
    );
    const limiter = new FairLimiter(2, { name: "gpu", shares: (key) => (key === "free" ? 0 : 1) });
    await expect(limiter.acquire("free")).rejects.toThrow('the share of key "free" must be a finite number > 0; got 0');
    await expect(limiter.acquire("acme", { weight: 3 })).rejects.toThrow(
      'weight 3 is above the capacity 2 of fair limiter "gpu" key "acme"; it could never be granted',
    );
    expect(() => limiter.tryAcquire("acme", 3)).toThrow(/above the capacity 2/);
    await expect(limiter.run(7 as unknown as string, () => 1)).rejects.toThrow("key must be a string; got 7");
    expect(() => new FairLimiter(2, { share: {} } as never)).toThrow(/did you mean "shares"/);
    expect(limiter.size).toBe(0);
  });

  it("statistics: the shared capacity, and per key", async () => {
    const limiter = new FairLimiter(2, { shares: { a: 3 } });
    const a = await limiter.acquire("a", { weight: 2 });
    const waiting = limiter.acquire("b");
    expect(limiter.statistics()).toMatchObject({
      capacity: 2,
      available: 0,
      inUse: 2,
      waiting: 1,
      keys: 2,
      granted: 1,
    });
    expect(limiter.statistics("a")).toMatchObject({ key: "a", share: 3, inUse: 2, waiting: 0 });
    expect(limiter.tryAcquire("c")).toBeUndefined();
    a.release();
    (await waiting).release();
    expect(limiter.statistics()).toMatchObject({ inUse: 0, waiting: 0, keys: 0, granted: 2 });
  });
});

describe("FairLimiter over a rate", () => {
  /** Queues `count` jobs of `key` of `weight` (cost); each records its key and the clock's time when granted. */
  function queueAt(
    limiter: FairLimiter,
    clock: FakeClock,
    key: string,
    count: number,
    granted: { key: string; at: number; cost: number }[],
    weight = 1,
  ): void {
    for (let i = 0; i < count; i++) {
      limiter.acquire(key, { weight }).then(
        (permit) => {
          granted.push({ key, at: clock.now(), cost: weight });
          permit.release();
        },
        () => undefined, // cleared at the end of the test
      );
    }
  }

  /** The most cost granted above `burst + limit / interval × span` in any window between two grants. */
  function worstExcess(
    granted: readonly { at: number; cost: number }[],
    limit: number,
    interval: number,
    burst: number,
  ) {
    let worst = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < granted.length; i++) {
      let cost = 0;
      for (let j = i; j < granted.length; j++) {
        cost += (granted[j] as { cost: number }).cost;
        const span = (granted[j] as { at: number }).at - (granted[i] as { at: number }).at;
        worst = Math.max(worst, cost - (burst + (limit / interval) * span));
      }
    }
    return worst;
  }

  it("tenant A queues 100,000 jobs, then tenant B one: B starts within about one slot of the rate", async () => {
    const clock = new FakeClock();
    const limiter = new FairLimiter(Infinity, { rate: { limit: 10, interval: "1s", burst: 1 }, clock });
    const granted: { key: string; at: number; cost: number }[] = [];
    queueAt(limiter, clock, "A", 100_000, granted);
    queueAt(limiter, clock, "B", 1, granted);
    await clock.advanceAsync(300);
    // A's first at once (the bucket starts full), A's turn at 100 ms, B's at 200 ms: one of A's slots between.
    expect(granted.map(({ key, at }) => `${key}@${at}`)).toEqual(["A@0", "A@100", "B@200", "A@300"]);
    expect(clock.pendingTimers).toBe(1); // one timer for the whole limiter, whatever waits
    limiter.clear();
    await clock.advanceAsync(100);
    expect(clock.pendingTimers).toBe(0);
  });

  it("shares 3:1 split the rate 3:1 (within 5%) while both wait; the rate holds in every window", async () => {
    const clock = new FakeClock();
    const rate = { limit: 100, interval: 1_000, burst: 5 };
    const limiter = new FairLimiter(Infinity, { rate, clock, shares: { a: 3, b: 1 } });
    const granted: { key: string; at: number; cost: number }[] = [];
    queueAt(limiter, clock, "a", 5_000, granted);
    queueAt(limiter, clock, "b", 5_000, granted);
    await clock.advanceAsync(40_000);
    const a = granted.filter(({ key }) => key === "a").length;
    const b = granted.filter(({ key }) => key === "b").length;
    expect(a + b).toBe(5 + 4_000); // the burst, then 100 per second: the rate is used, not wasted
    expect(a / b).toBeGreaterThan(3 * 0.95);
    expect(a / b).toBeLessThan(3 * 1.05);
    expect(worstExcess(granted.slice(0, 1_500), rate.limit, rate.interval, rate.burst)).toBeLessThanOrEqual(1e-9);
    limiter.clear();
  });

  it("a grant costs O(1) whatever the number of keys: the clock is read as often with 10,000 keys as with 10", async () => {
    const readsPerGrant = async (keys: number) => {
      const clock = new FakeClock();
      let reads = 0;
      const counting = {
        now: () => {
          reads++;
          return clock.now();
        },
        setTimeout: clock.setTimeout.bind(clock),
        clearTimeout: clock.clearTimeout.bind(clock),
      };
      const limiter = new FairLimiter(Infinity, { rate: { limit: 1_000, interval: 1_000, burst: 1 }, clock: counting });
      const granted: { key: string; at: number; cost: number }[] = [];
      for (let key = 0; key < keys; key++) queueAt(limiter, clock, `k${key}`, 3, granted);
      await clock.advanceAsync(10);
      reads = 0;
      const before = granted.length;
      await clock.advanceAsync(2_000);
      const grants = granted.length - before;
      limiter.clear();
      return reads / grants;
    };
    const few = await readsPerGrant(10);
    const many = await readsPerGrant(10_000);
    expect(few).toBeLessThan(10);
    expect(many).toBeLessThanOrEqual(few * 1.1);
  });

  it("FIFO within a key, nobody starves, the rate holds in every window, invariants after every step (model)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.record({
              kind: fc.constant("acquire" as const),
              key: fc.constantFrom("a", "b", "c"),
              weight: fc.integer({ min: 1, max: 3 }),
              abort: fc.boolean(),
            }),
            fc.record({ kind: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 300 }) }),
            fc.record({ kind: fc.constant("abort" as const), index: fc.nat() }),
          ),
          { maxLength: 50 },
        ),
        fc.integer({ min: 1, max: 4 }),
        async (steps, burst) => {
          const clock = new FakeClock();
          const rate = { limit: 10, interval: 1_000, burst };
          const limiter = new FairLimiter(Infinity, { rate, clock, shares: (key) => (key === "a" ? 2 : 1) });
          const ledger = new Ledger();
          const granted: { at: number; cost: number }[] = [];
          for (const step of steps) {
            if (step.kind === "acquire") {
              if (step.weight > burst) continue;
              ledger.ask(
                step.key,
                step.abort,
                (signal) => limiter.acquire(step.key, { weight: step.weight, signal }),
                (permit) => {
                  granted.push({ at: clock.now(), cost: step.weight });
                  permit.release();
                },
              );
            } else if (step.kind === "advance") {
              await clock.advanceAsync(step.ms);
            } else {
              ledger.abort(step.index);
            }
            await flushMicrotasks(2);
            limiter.assertInvariants();
          }
          // Time alone serves everyone left: nobody starved, nothing lost, no timer left behind.
          await clock.advanceAsync(60_000);
          ledger.expectAllServedInOrder();
          expect(worstExcess(granted, rate.limit, rate.interval, rate.burst)).toBeLessThanOrEqual(1e-9);
          expect(limiter.size).toBe(0);
          expect(clock.pendingTimers).toBe(0);
        },
      ),
      { numRuns: 100 },
    );
  });

  it("a head whose cost came due while it was being queued is still served (a clock that moves between reads)", async () => {
    // Under load, real time passes between the check that queues a caller and the arming of the timer:
    // the cost may be payable by then. Here each read of the clock is 60 ms later than the one before.
    // The limiter once armed no timer in that case, and the caller waited forever.
    const timers = new FakeClock();
    let reads = 0;
    const clock = {
      now: () => 60 * ++reads,
      setTimeout: timers.setTimeout.bind(timers),
      clearTimeout: timers.clearTimeout.bind(timers),
    };
    const limiter = new FairLimiter(Infinity, { rate: { limit: 10, interval: 1_000, burst: 1 }, clock });
    const granted: string[] = [];
    // Permits kept (not released): only the limiter's timer can serve the next caller.
    for (const caller of ["first", "second", "third"]) void limiter.acquire("a").then(() => granted.push(caller));
    for (let step = 0; step < 10 && granted.length < 3; step++) await timers.advanceAsync(100);
    expect(granted).toEqual(["first", "second", "third"]);
  });

  it("bad input: a weight above the rate's burst names the key; a bad rate names the option", async () => {
    const limiter = new FairLimiter(Infinity, { name: "api", rate: { limit: 10, interval: "1s", burst: 2 } });
    await expect(limiter.acquire("acme", { weight: 3 })).rejects.toThrow(
      'cost 3 requests is above the burst 2 of the limit 10 requests per 1000 ms of fair limiter "api" key "acme"; it could never be granted',
    );
    expect(() => limiter.tryAcquire("acme", 3)).toThrow(/above the burst 2/);
    expect(() => new FairLimiter(1, { rate: { limit: 10, interval: "5 parsecs" } })).toThrow(/rate\.interval/);
    expect(() => new FairLimiter(1, { rate: { limit: 0, interval: "1s" } })).toThrow(
      "rate.limit must be a finite number > 0; got 0",
    );
    expect(limiter.size).toBe(0);
  });
});
