/**
 * Pool invariants over random schedules: borrowers arriving with and without timeouts and aborts,
 * leases released or destroyed, resources breaking while idle, creates failing, time passing.
 */
import fc from "fast-check";
import { ClosedError, type Lease, Pool } from "sluice";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";

interface Resource {
  id: number;
  broken: boolean;
  destroyed: number;
  /** What the last validation said, if any ran. */
  verdict: boolean | undefined;
  /** Times lent so far. */
  lends: number;
  /** Whether `validate` ran since the resource last came back. */
  checkedSinceReturn: boolean;
}

type Step =
  | { kind: "acquire"; timeout: number | undefined; abortAfter: number | undefined; priority: number }
  | { kind: "release"; pick: number }
  | { kind: "destroy"; pick: number }
  | { kind: "break"; pick: number }
  | { kind: "failCreates"; count: number }
  | { kind: "advance"; ms: number }
  | { kind: "settle" };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    kind: fc.constant("acquire" as const),
    timeout: fc.option(fc.integer({ min: 1, max: 300 }), { nil: undefined }),
    abortAfter: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }),
    priority: fc.integer({ min: 0, max: 2 }),
  }),
  fc.record({ kind: fc.constant("release" as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant("destroy" as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant("break" as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant("failCreates" as const), count: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ kind: fc.constant("advance" as const), ms: fc.integer({ min: 1, max: 500 }) }),
  fc.constant({ kind: "settle" as const }),
);

const configuration = fc.record({
  max: fc.integer({ min: 1, max: 4 }),
  min: fc.integer({ min: 0, max: 2 }),
  validate: fc.boolean(),
  asyncDestroy: fc.boolean(),
  idleTimeout: fc.option(fc.integer({ min: 50, max: 400 }), { nil: undefined }),
  maxUses: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
});

describe("Pool invariants (property-based)", () => {
  it("never more than max resources exist, none is lent twice, invalid ones are replaced, drain destroys each exactly once and settles every waiter", async () => {
    await fc.assert(
      fc.asyncProperty(configuration, fc.array(step, { maxLength: 40, size: "medium" }), async (config, steps) => {
        const clock = new FakeClock();
        const created: Resource[] = [];
        let live = 0;
        let failCreates = 0;
        const min = Math.min(config.min, config.max);
        const pool = new Pool<Resource>({
          create: async () => {
            await Promise.resolve();
            if (failCreates > 0) {
              failCreates--;
              throw new Error("create failed");
            }
            const resource: Resource = {
              id: created.length,
              broken: false,
              destroyed: 0,
              verdict: undefined,
              lends: 0,
              checkedSinceReturn: false,
            };
            created.push(resource);
            live++;
            return resource;
          },
          destroy: (resource) => {
            resource.destroyed++;
            if (!config.asyncDestroy) {
              live--;
              return;
            }
            return Promise.resolve().then(() => {
              live--;
            });
          },
          validate: config.validate
            ? async (resource) => {
                resource.verdict = !resource.broken;
                resource.checkedSinceReturn = true;
                return resource.verdict;
              }
            : undefined,
          max: config.max,
          min,
          idleTimeout: config.idleTimeout,
          maxUses: config.maxUses,
          createRetry: { attempts: 2, delay: 20, maxDelay: 100 },
          clock,
        });
        const held: Lease<Resource>[] = [];
        const lent = new Set<Resource>();
        const outcomes: Promise<unknown>[] = [];

        const check = () => {
          // Never more than max: what the pool counts, and what really exists.
          expect(pool.size + pool.pendingCreates).toBeLessThanOrEqual(config.max);
          expect(live).toBeLessThanOrEqual(config.max);
          const stats = pool.statistics();
          expect(stats.idle + stats.inUse + stats.validating + stats.destroying).toBe(stats.size);
          // A granted lease reaches `held` a microtask after the pool counts it.
          expect(stats.inUse).toBeGreaterThanOrEqual(held.length);
          // Anyone waiting has nothing idle to take unless it is being checked for them, and is either
          // counted on by a validation or create under way, or the pool is full: nobody is forgotten.
          if (stats.waiting > 0) {
            if (!config.validate) expect(stats.idle).toBe(0);
            // With borrow validation, an idle resource is being checked for them rather than left
            // idle while they wait for a create (which may be slow, or fail and reject them).
            else if (stats.idle > 0) expect(stats.validating).toBeGreaterThanOrEqual(stats.waiting);
            const onTheirWay = stats.validating + stats.pendingCreates;
            expect(onTheirWay >= stats.waiting || stats.size + stats.pendingCreates === config.max).toBe(true);
          }
        };

        for (const action of steps) {
          switch (action.kind) {
            case "acquire": {
              const controller = action.abortAfter === undefined ? undefined : new AbortController();
              const promise = pool.acquire({
                timeout: action.timeout,
                signal: controller?.signal,
                priority: action.priority,
              });
              if (controller !== undefined) clock.setTimeout(() => controller.abort(), action.abortAfter as number);
              outcomes.push(
                promise.then(
                  (lease) => {
                    const lentAlready = lent.has(lease.value);
                    const lentBefore = lease.value.lends++ > 0;
                    // Held before the checks, so a failed check still ends the run (drain gets it back).
                    lent.add(lease.value);
                    held.push(lease);
                    // No resource lent twice, and with borrow validation never a broken one.
                    expect(lentAlready).toBe(false);
                    expect(lease.value.destroyed).toBe(0);
                    // A resource that failed its check is never lent (it was destroyed and replaced).
                    expect(lease.value.verdict).not.toBe(false);
                    // And one that came back is checked before it is lent again: with validation on
                    // borrow off, a resource the validator would reject (a "break" while idle) is lent.
                    if (config.validate && lentBefore) {
                      expect(lease.value.checkedSinceReturn).toBe(true);
                      expect(lease.value.verdict).toBe(true);
                    }
                  },
                  () => {},
                ),
              );
              break;
            }
            case "release":
            case "destroy": {
              if (held.length === 0) break;
              const [lease] = held.splice(action.pick % held.length, 1) as [Lease<Resource>];
              lent.delete(lease.value);
              lease.value.checkedSinceReturn = false;
              if (action.kind === "release") lease.release();
              else lease.destroy();
              break;
            }
            case "break": {
              const alive = created.filter((resource) => resource.destroyed === 0);
              const victim = alive[action.pick % Math.max(1, alive.length)];
              if (victim !== undefined && !lent.has(victim)) victim.broken = true;
              break;
            }
            case "failCreates":
              failCreates += action.count;
              break;
            case "advance":
              await clock.advanceAsync(action.ms);
              break;
            case "settle":
              await flushMicrotasks();
              break;
          }
          check();
        }

        // Let creates in flight finish (retries need time), then return everything and drain.
        failCreates = 0;
        await clock.advanceAsync(1000);
        check();
        const draining = pool.drain();
        for (const lease of held.splice(0)) lease.release();
        await clock.advanceAsync(1000);
        await draining;
        // Every waiter settled: lent, or rejected (timeout, abort, create failure, ClosedError).
        const settled = await Promise.race([
          Promise.all(outcomes).then(() => true),
          flushMicrotasks().then(() => false),
        ]);
        expect(settled).toBe(true);
        expect(live).toBe(0);
        for (const resource of created) expect(resource.destroyed).toBe(1);
        expect(pool.size).toBe(0);
        expect(pool.pendingCreates).toBe(0);
        expect(clock.pendingTimers).toBe(0);
        await expect(pool.acquire()).rejects.toBeInstanceOf(ClosedError);
      }),
      { numRuns: 300 },
    );
  });

  it("keeps min resources warm whatever happens, once creates succeed", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 3 }),
        fc.array(fc.constantFrom("acquire", "release", "destroy", "advance"), { maxLength: 30 }),
        async (min, script) => {
          const clock = new FakeClock();
          const pool = new Pool({ create: async () => ({}), max: min + 2, min, idleTimeout: 100, clock });
          const held: Lease<object>[] = [];
          for (const action of script) {
            if (action === "acquire") pool.acquire().then((lease) => held.push(lease));
            else if (action === "release") held.pop()?.release();
            else if (action === "destroy") held.pop()?.destroy();
            else await clock.advanceAsync(150);
            await flushMicrotasks();
            expect(pool.size + pool.pendingCreates).toBeGreaterThanOrEqual(min);
          }
          await clock.advanceAsync(1000);
          expect(pool.size).toBeGreaterThanOrEqual(min);
          // Waiters get leases as others come back: release until nobody holds or waits.
          while (held.length > 0 || pool.waiting > 0) {
            for (const lease of held.splice(0)) lease.release();
            await flushMicrotasks();
          }
          await clock.advanceAsync(1000);
          expect(pool.size).toBe(min);
          await pool.drain();
        },
      ),
      { numRuns: 100 },
    );
  });
});
