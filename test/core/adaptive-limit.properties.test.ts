/**
 * Properties of AdaptiveLimiter over random schedules, with an algorithm that answers anything (0,
 * negatives, NaN, Infinity, huge numbers): never more than `max` held, the limit always in [min, max],
 * nobody waits while nothing is held (no stall at 0), and every request counted once.
 */
import fc from "fast-check";
import { AdaptiveLimiter, type AdaptivePermit } from "sluice";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";

type Step =
  | { kind: "acquire"; weight: number; signal: boolean; timeout: number | undefined }
  | { kind: "release"; pick: number; outcome: "sample" | "drop" | "ignore" | "report" }
  | { kind: "abort"; pick: number }
  | { kind: "advance"; ms: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant("acquire" as const),
      weight: fc.integer({ min: 1, max: 3 }),
      signal: fc.boolean(),
      timeout: fc.option(fc.integer({ min: 0, max: 40 }), { nil: undefined }),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant("release" as const),
      pick: fc.nat(),
      outcome: fc.constantFrom("sample" as const, "drop" as const, "ignore" as const, "report" as const),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("abort" as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 25 }) }) },
);

const anyNumber = fc.oneof(
  fc.double({ min: -10, max: 20, noNaN: true }),
  fc.constantFrom(0, -1, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1e12),
);

describe("AdaptiveLimiter properties over random schedules", () => {
  it("never holds more than max, keeps the limit in [min, max], never stalls, counts every request once", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 0, max: 4 }),
        fc.oneof(
          fc.constantFrom("gradient" as const, "aimd" as const, "vegas" as const),
          fc.array(anyNumber, { minLength: 1, maxLength: 20 }),
        ),
        fc.array(step, { minLength: 5, maxLength: 80, size: "max" }),
        async (min, extra, algorithm, steps) => {
          const clock = new FakeClock();
          const max = min + extra;
          const outputs = typeof algorithm === "string" ? [] : algorithm;
          let next = 0;
          const limiter = new AdaptiveLimiter({
            min,
            max: Math.max(3, max),
            clock,
            algorithm:
              typeof algorithm === "string"
                ? algorithm
                : { name: "random", update: () => outputs[next++ % outputs.length] as number },
          });
          const held: AdaptivePermit[] = [];
          const controllers: AbortController[] = [];
          for (const s of steps) {
            if (s.kind === "acquire") {
              const controller = s.signal ? new AbortController() : undefined;
              if (controller) controllers.push(controller);
              limiter.acquire({ weight: s.weight, signal: controller?.signal, timeout: s.timeout }).then(
                (permit) => held.push(permit),
                () => undefined,
              );
            } else if (s.kind === "release" && held.length > 0) {
              const [permit] = held.splice(s.pick % held.length, 1) as [AdaptivePermit];
              if (s.outcome === "drop") permit.dropped();
              else if (s.outcome === "ignore") permit.ignore();
              else if (s.outcome === "report") permit.reportLatency(s.pick % 50);
              permit.release();
            } else if (s.kind === "abort" && controllers.length > 0) {
              controllers[s.pick % controllers.length]?.abort();
            } else if (s.kind === "advance") {
              await clock.advanceAsync(s.ms);
            }
            await flushMicrotasks();
            limiter.assertInvariants();
            const statistics = limiter.statistics();
            expect(statistics.inUse).toBe(held.reduce((sum, permit) => sum + permit.weight, 0));
            expect(statistics.inUse).toBeLessThanOrEqual(limiter.max);
            expect(statistics.capacity).toBeGreaterThanOrEqual(limiter.min);
            expect(statistics.capacity).toBeLessThanOrEqual(limiter.max);
            // No stall: with nothing held, nobody can be left waiting.
            if (statistics.inUse === 0) expect(statistics.waiting).toBe(0);
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});
