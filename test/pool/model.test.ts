/**
 * Model-based tests of Pool with fast-check's command API on a fake clock: batches of synchronous
 * operations (several in one tick), creates that are slow (clock timers), fail or time out, validators
 * that fail or throw synchronously, every `validateOn`, shared abort signals and a drain in the middle.
 * After every command the pool is compared with what the test knows is lent, created and destroyed.
 */
import fc from "fast-check";
import { ClosedError, type Lease, Pool } from "sluice";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";
import { assertInvariants, batches } from "../support/model.js";

interface Thing {
  id: number;
  destroyed: number;
  broken: boolean;
  /** Times lent so far. */
  lends: number;
  /** What `validate` said since the thing last came back: undefined if it did not run. */
  checkedSinceReturn: boolean | undefined;
}

interface Borrower {
  outcome: "pending" | "resolved" | "rejected";
  lease?: Lease<Thing>;
  given: boolean;
}

interface Config {
  max: number;
  min: number;
  validateOn: "borrow" | "return" | "both" | undefined;
  createTimeout: number | undefined;
  asyncDestroy: boolean;
  maxUses: number | undefined;
  idleTimeout: number | undefined;
}

class World {
  clock = new FakeClock();
  pool: Pool<Thing>;
  things: Thing[] = [];
  borrowers: Borrower[] = [];
  controllers = [new AbortController(), new AbortController()];
  /** What the next creates do, in order; when empty, they succeed at once. */
  createScript: ("ok" | "fail" | "slow" | "throw")[] = [];
  validateScript: ("ok" | "bad" | "throw" | "async-bad")[] = [];
  lent = new Set<Thing>();
  drained: Promise<void> | undefined = undefined;
  constructor(readonly config: Config) {
    this.pool = new Pool<Thing>({
      create: (signal) => {
        const what = this.createScript.shift() ?? "ok";
        const make = () => {
          const thing: Thing = {
            id: this.things.length,
            destroyed: 0,
            broken: false,
            lends: 0,
            checkedSinceReturn: undefined,
          };
          this.things.push(thing);
          return thing;
        };
        if (what === "throw") throw new Error("create threw");
        if (what === "fail") return Promise.reject(new Error("create failed"));
        if (what === "ok") return make();
        return new Promise<Thing>((resolve, reject) => {
          const timer = this.clock.setTimeout(() => resolve(make()), 15);
          signal.addEventListener("abort", () => {
            this.clock.clearTimeout(timer);
            reject(signal.reason);
          });
        });
      },
      destroy: (thing) => {
        thing.destroyed++;
        expect(this.lent.has(thing)).toBe(false);
        if (config.asyncDestroy) return Promise.resolve();
      },
      validate:
        config.validateOn === undefined
          ? undefined
          : (thing) => {
              const what = this.validateScript.shift() ?? "ok";
              thing.checkedSinceReturn = what === "ok" && !thing.broken;
              if (what === "throw") throw new Error("validate threw");
              if (what === "async-bad") return Promise.resolve(false);
              return what === "ok" && !thing.broken;
            },
      validateOn: config.validateOn,
      max: config.max,
      min: config.min,
      maxUses: config.maxUses,
      idleTimeout: config.idleTimeout,
      createTimeout: config.createTimeout,
      createRetry: { attempts: 2, delay: 5, maxDelay: 20 },
      clock: this.clock,
    });
  }
}

type Op =
  | { op: "acquire"; group: number | undefined; timeout: number | undefined; priority: number; bare: boolean }
  | { op: "release"; pick: number; destroy: boolean; twice: boolean }
  | { op: "abort"; group: number }
  | { op: "script"; creates: ("ok" | "fail" | "slow" | "throw")[]; validates: ("ok" | "bad" | "throw" | "async-bad")[] }
  | { op: "break"; pick: number }
  | { op: "advance"; ms: number }
  | { op: "drain" };

const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant("acquire" as const),
      group: fc.option(fc.integer({ min: 0, max: 1 }), { nil: undefined }),
      timeout: fc.option(fc.integer({ min: 0, max: 40 }), { nil: undefined }),
      priority: fc.integer({ min: 0, max: 1 }),
      // acquire() with no options at all: the short path of a busy pool.
      bare: fc.boolean(),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant("release" as const),
      pick: fc.nat(),
      destroy: fc.boolean(),
      twice: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("abort" as const), group: fc.integer({ min: 0, max: 1 }) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("script" as const),
      creates: fc.array(fc.constantFrom("ok" as const, "fail" as const, "slow" as const, "throw" as const), {
        maxLength: 3,
      }),
      validates: fc.array(fc.constantFrom("ok" as const, "bad" as const, "throw" as const, "async-bad" as const), {
        maxLength: 3,
      }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("break" as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 30 }) }) },
  { weight: 1, arbitrary: fc.constant({ op: "drain" as const }) },
);

function applyOp(w: World, o: Op): void {
  switch (o.op) {
    case "acquire": {
      const borrower: Borrower = { outcome: "pending", given: false };
      w.borrowers.push(borrower);
      const wasDrained = w.drained !== undefined;
      w.pool
        .acquire(
          o.bare
            ? undefined
            : {
                timeout: o.timeout,
                priority: o.priority,
                signal: o.group === undefined ? undefined : w.controllers[o.group]?.signal,
              },
        )
        .then(
          (lease) => {
            expect(wasDrained).toBe(false);
            // One borrower at a time, never a destroyed or known-broken resource.
            expect(w.lent.has(lease.value)).toBe(false);
            expect(lease.value.destroyed).toBe(0);
            // With a validator, a thing that came back is lent again only after it passed a check
            // (on return or on borrow): one the validator rejects is never lent.
            if (w.config.validateOn !== undefined && lease.value.lends > 0) {
              expect(lease.value.checkedSinceReturn).toBe(true);
            }
            lease.value.lends++;
            w.lent.add(lease.value);
            borrower.outcome = "resolved";
            borrower.lease = lease;
          },
          (error: unknown) => {
            if (wasDrained) expect(error).toBeInstanceOf(ClosedError);
            borrower.outcome = "rejected";
          },
        );
      return;
    }
    case "release": {
      const holding = w.borrowers.filter((b) => b.lease !== undefined && !b.given);
      const borrower = holding[o.pick % Math.max(1, holding.length)];
      if (borrower === undefined) return;
      const lease = borrower.lease as Lease<Thing>;
      borrower.given = true;
      w.lent.delete(lease.value);
      lease.value.checkedSinceReturn = undefined;
      if (o.destroy) lease.destroy();
      else lease.release();
      if (o.twice) expect(() => lease.release()).toThrow();
      return;
    }
    case "abort": {
      const controller = w.controllers[o.group] as AbortController;
      if (controller.signal.aborted) w.controllers[o.group] = new AbortController();
      else controller.abort();
      return;
    }
    case "script":
      w.createScript.push(...o.creates);
      w.validateScript.push(...o.validates);
      return;
    case "break": {
      const alive = w.things.filter((t) => t.destroyed === 0);
      const thing = alive[o.pick % Math.max(1, alive.length)];
      if (thing !== undefined) thing.broken = true;
      return;
    }
    case "advance":
      w.clock.advance(o.ms);
      return;
    case "drain":
      w.drained ??= w.pool.drain();
      return;
  }
}

function check(w: World): void {
  assertInvariants(w.pool);
  const pool = w.pool;
  const stats = pool.statistics();
  expect(stats.size + stats.pendingCreates).toBeLessThanOrEqual(w.config.max);
  expect(stats.idle + stats.inUse + stats.validating + stats.destroying).toBe(stats.size);
  expect(stats.inUse).toBe(w.lent.size);
  // Resources that exist and are not being destroyed were created and not destroyed.
  const alive = w.things.filter((t) => t.destroyed === 0).length;
  expect(alive).toBe(stats.size - stats.destroying);
  for (const thing of w.things) expect(thing.destroyed).toBeLessThanOrEqual(1);
  const pending = w.borrowers.filter((b) => b.outcome === "pending").length;
  expect(stats.waiting).toBe(pending);
  if (w.drained !== undefined) expect(stats.waiting).toBe(0);
  if (stats.waiting > 0) {
    if (w.config.validateOn === undefined || w.config.validateOn === "return") expect(stats.idle).toBe(0);
    else if (stats.idle > 0) expect(stats.validating).toBeGreaterThanOrEqual(stats.waiting);
    const onTheirWay = stats.validating + stats.pendingCreates;
    expect(onTheirWay >= stats.waiting || stats.size + stats.pendingCreates === w.config.max).toBe(true);
  }
}

/** A batch's end: promise callbacks run, then the books are checked. */
async function settleAndCheck(w: World): Promise<void> {
  await flushMicrotasks();
  check(w);
}

const configArbitrary: fc.Arbitrary<Config> = fc
  .record({
    max: fc.integer({ min: 1, max: 3 }),
    min: fc.integer({ min: 0, max: 2 }),
    validateOn: fc.constantFrom(undefined, "borrow" as const, "return" as const, "both" as const),
    createTimeout: fc.option(fc.integer({ min: 1, max: 30 }), { nil: undefined }),
    asyncDestroy: fc.boolean(),
    maxUses: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
    idleTimeout: fc.option(fc.integer({ min: 5, max: 30 }), { nil: undefined }),
  })
  .map((c) => ({ ...c, min: Math.min(c.min, c.max) }));

describe("Pool against a model of what is lent, created and destroyed", () => {
  it("never more than max, one borrower per resource, every waiter settles, drain destroys each exactly once", async () => {
    await fc.assert(
      fc.asyncProperty(
        configArbitrary,
        fc.commands([batches(opArbitrary, applyOp, settleAndCheck, (w) => w.pool)], {
          maxCommands: 30,
        }),
        async (config, cmds) => {
          const world = new World(config);
          await fc.asyncModelRun(() => ({ model: {}, real: world }), cmds);
          // Wind down: creates and checks succeed from now on; give everything back, then drain.
          world.createScript = [];
          world.validateScript = [];
          for (const thing of world.things) thing.broken = false;
          for (let round = 0; round < 20; round++) {
            for (const b of world.borrowers) {
              if (b.lease !== undefined && !b.given) {
                b.given = true;
                world.lent.delete(b.lease.value);
                b.lease.value.checkedSinceReturn = undefined;
                b.lease.release();
              }
            }
            await world.clock.advanceAsync(50);
            check(world);
          }
          // Nobody is left waiting while nothing is held: every waiter was served or rejected.
          expect(world.borrowers.filter((b) => b.outcome === "pending")).toEqual([]);
          if (world.drained === undefined) {
            // Idle long enough: back to `min`, with idle eviction; never below it.
            if (config.idleTimeout !== undefined) expect(world.pool.size).toBe(config.min);
            else expect(world.pool.size).toBeGreaterThanOrEqual(config.min);
          }
          const drained = world.drained ?? world.pool.drain();
          await world.clock.advanceAsync(100);
          let done = false;
          drained.then(() => {
            done = true;
          });
          await flushMicrotasks();
          expect(done).toBe(true);
          for (const thing of world.things) expect(thing.destroyed).toBe(1);
          expect(world.pool.size + world.pool.pendingCreates).toBe(0);
          expect(world.clock.pendingTimers).toBe(0);
        },
      ),
      { numRuns: Number(process.env.MODEL_RUNS ?? 200) },
    );
  });
});
