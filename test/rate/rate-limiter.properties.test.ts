/**
 * The window promises of DESIGN.md as properties over random arrival times and costs, on the fake clock:
 * - a sliding window never admits more than `limit` cost in any half-open window [t, t + interval);
 * - a token bucket never admits more than `burst + rate × span` over any span;
 * - several limits are charged all-or-nothing; equal priorities are served in arrival order;
 * - the limiter keeps at most one timer, and none once nobody waits.
 */
import fc from "fast-check";
import { type RateLimit, RateLimiter, type RatePermit } from "sluice";
import { FakeClock } from "sluice/testing";
import { describe, expect, it } from "vitest";

interface Arrival {
  /** ms after the previous arrival */
  gap: number;
  requests: number;
  tokens: number;
  priority: number;
}

interface Start {
  index: number;
  at: number;
  requests: number;
  tokens: number;
  priority: number;
}

const arrival = (maxRequests: number, maxTokens: number, priorities = false): fc.Arbitrary<Arrival> =>
  fc.record({
    gap: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 120 })),
    requests: fc.integer({ min: 0, max: maxRequests }),
    tokens: fc.integer({ min: 0, max: maxTokens }),
    priority: priorities ? fc.integer({ min: -1, max: 1 }) : fc.constant(0),
  });

/**
 * Feeds the arrivals to `limiter` at their times, runs the clock until everyone started, and returns the
 * starts in start order. Checks the one-timer invariant after every step along the way.
 */
async function simulate(limiter: RateLimiter, clock: FakeClock, arrivals: Arrival[]): Promise<Start[]> {
  const starts: Start[] = [];
  const done: Promise<void>[] = [];
  const checkTimers = () => {
    expect(clock.pendingTimers).toBeLessThanOrEqual(1);
    if (limiter.waiting === 0) expect(clock.pendingTimers).toBe(0);
  };
  for (const [index, next] of arrivals.entries()) {
    await clock.advanceAsync(next.gap);
    checkTimers();
    done.push(
      limiter
        .acquire({ cost: { requests: next.requests, tokens: next.tokens }, priority: next.priority })
        .then((permit) => {
          starts.push({ index, at: clock.now(), ...next });
          permit.release();
        }),
    );
    checkTimers();
  }
  while (clock.pendingTimers > 0) {
    await clock.next();
    checkTimers();
  }
  await Promise.all(done);
  expect(limiter.waiting).toBe(0);
  expect(clock.pendingTimers).toBe(0);
  return starts;
}

/** Most cost started in any half-open window [t, t + interval) (windows starting at a start suffice). */
function mostInAnyWindow(starts: Start[], interval: number, cost: (start: Start) => number): number {
  let most = 0;
  for (const first of starts) {
    let sum = 0;
    for (const other of starts) if (other.at >= first.at && other.at < first.at + interval) sum += cost(other);
    most = Math.max(most, sum);
  }
  return most;
}

/** Whether the cost started in every span [a, b] is within `burst + rate × (b - a)`. */
function withinBucket(
  starts: Start[],
  limit: RateLimit & { burst: number; interval: number },
  cost: (s: Start) => number,
) {
  const sorted = [...starts].sort((a, b) => a.at - b.at);
  for (let i = 0; i < sorted.length; i++) {
    let sum = 0;
    for (let j = i; j < sorted.length; j++) {
      sum += cost(sorted[j] as Start);
      const span = (sorted[j] as Start).at - (sorted[i] as Start).at;
      const allowed = limit.burst + (limit.limit / limit.interval) * span;
      if (sum > allowed + 1e-9 * Math.max(1, allowed)) return { sum, allowed, span };
    }
  }
  return undefined;
}

describe("RateLimiter properties over random arrivals and costs", () => {
  it("a sliding window never admits more than `limit` cost in any window [t, t + interval), and starts each call as soon as it fits", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 200 }),
        fc.array(arrival(8, 0), { minLength: 1, maxLength: 40 }),
        async (limit, interval, arrivals) => {
          const clock = new FakeClock();
          const limiter = new RateLimiter({ limits: [{ limit, interval, algorithm: "sliding-window" }], clock });
          const feasible = arrivals.map((a) => ({ ...a, requests: Math.min(a.requests, limit) }));
          const starts = await simulate(limiter, clock, feasible);
          expect(mostInAnyWindow(starts, interval, (s) => s.requests)).toBeLessThanOrEqual(limit);
          // A reference model of an exact FIFO sliding window: each call starts at the first moment at or
          // after its arrival (and the previous start) when it fits.
          const expected: number[] = [];
          let arrivedAt = 0;
          const log: { at: number; cost: number }[] = [];
          for (const a of feasible) {
            arrivedAt += a.gap;
            let t = Math.max(arrivedAt, expected.at(-1) ?? 0);
            for (;;) {
              const used = log.filter((e) => e.at > t - interval).reduce((sum, e) => sum + e.cost, 0);
              if (a.requests === 0 || used + a.requests <= limit) break;
              t = Math.min(...log.filter((e) => e.at > t - interval).map((e) => e.at + interval));
            }
            log.push({ at: t, cost: a.requests });
            expected.push(t);
          }
          expect(starts.map((s) => s.index)).toEqual(feasible.map((_, index) => index));
          expect(starts.map((s) => s.at)).toEqual(expected);
        },
      ),
      { numRuns: 150 },
    );
  });

  it("a token bucket never admits more than burst + rate × span over any span", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 1, max: 300 }),
        fc.option(fc.integer({ min: 1, max: 10 }), { nil: undefined }),
        fc.array(arrival(10, 0), { minLength: 1, maxLength: 40 }),
        async (limit, interval, burstOption, arrivals) => {
          const clock = new FakeClock();
          const burst = burstOption ?? limit;
          const limiter = new RateLimiter({ limits: [{ limit, interval, burst: burstOption }], clock });
          const feasible = arrivals.map((a) => ({ ...a, requests: Math.min(a.requests, burst) }));
          const starts = await simulate(limiter, clock, feasible);
          expect(withinBucket(starts, { limit, interval, burst }, (s) => s.requests)).toBeUndefined();
          expect(starts.map((s) => s.index)).toEqual(feasible.map((_, index) => index));
        },
      ),
      { numRuns: 150 },
    );
  });

  it("with several limits, each keeps its own promise and a call is charged all-or-nothing", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 10, max: 100 }),
        fc.integer({ min: 20, max: 200 }),
        fc.array(arrival(6, 100, true), { minLength: 1, maxLength: 30 }),
        fc.array(fc.record({ at: fc.nat({ max: 40 }), requests: fc.nat({ max: 6 }), tokens: fc.nat({ max: 100 }) }), {
          maxLength: 5,
        }),
        async (requestLimit, tokenLimit, interval, arrivals, probes) => {
          const clock = new FakeClock();
          const limits = [
            { limit: requestLimit, interval: interval * 2 },
            { limit: tokenLimit, interval, unit: "tokens", algorithm: "sliding-window" as const },
          ];
          const limiter = new RateLimiter({ limits, clock });
          const feasible = arrivals.map((a) => ({
            ...a,
            requests: Math.min(a.requests, requestLimit),
            tokens: Math.min(a.tokens, tokenLimit),
          }));
          // A refused tryAcquire must leave every limit exactly as it was.
          const probing = (async () => {
            for (const probe of probes) {
              await clock.advanceAsync(0);
              const before = JSON.stringify(limiter.statistics().limits);
              const permit = limiter.tryAcquire({
                cost: { requests: Math.min(probe.requests, requestLimit), tokens: Math.min(probe.tokens, tokenLimit) },
              });
              if (permit === undefined) expect(JSON.stringify(limiter.statistics().limits)).toBe(before);
              else permit.release();
            }
          })();
          const starts = await simulate(limiter, clock, feasible);
          await probing;
          expect(mostInAnyWindow(starts, interval, (s) => s.tokens)).toBeLessThanOrEqual(tokenLimit);
          expect(
            withinBucket(
              starts,
              { limit: requestLimit, interval: interval * 2, burst: requestLimit },
              (s) => s.requests,
            ),
          ).toBeUndefined();
          // FIFO within a priority.
          for (const priority of [-1, 0, 1]) {
            const order = starts.filter((s) => s.priority === priority).map((s) => s.index);
            expect(order).toEqual([...order].sort((a, b) => a - b));
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it("settling charges the difference: over any span, actual costs stay within burst + rate × span plus the last call's own surprise", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 1, max: 200 }),
        fc.array(
          fc.record({
            gap: fc.nat({ max: 50 }),
            estimate: fc.integer({ min: 1, max: 10 }),
            actual: fc.nat({ max: 20 }),
          }),
          {
            minLength: 1,
            maxLength: 30,
          },
        ),
        async (limit, interval, calls) => {
          const clock = new FakeClock();
          const limiter = new RateLimiter({ limits: [{ limit, interval, unit: "tokens" }], clock });
          const starts: { at: number; estimate: number; actual: number }[] = [];
          for (const call of calls) {
            await clock.advanceAsync(call.gap);
            const estimate = Math.min(call.estimate, limit);
            let permit: RatePermit | undefined;
            const granted = limiter.acquire({ cost: { tokens: estimate } }).then((p) => {
              permit = p;
            });
            while (permit === undefined) await clock.next();
            await granted;
            // Settled before anyone else can start: later calls see the actual cost, debt included.
            permit.settle({ tokens: call.actual });
            permit.release();
            starts.push({ at: clock.now(), estimate, actual: call.actual });
          }
          for (let i = 0; i < starts.length; i++) {
            let sum = 0;
            for (let j = i; j < starts.length; j++) {
              const last = starts[j] as { at: number; estimate: number; actual: number };
              sum += last.actual;
              const span = last.at - (starts[i] as { at: number }).at;
              // Call j was admitted on its estimate; only its own surprise (actual - estimate) may exceed
              // the bucket's promise — every earlier surprise was paid back before a later start.
              const allowed = limit + (limit / interval) * span + (last.actual - last.estimate);
              expect(sum).toBeLessThanOrEqual(allowed + 1e-9 * Math.max(1, Math.abs(allowed)));
            }
          }
          expect(clock.pendingTimers).toBe(0);
        },
      ),
      { numRuns: 100 },
    );
  });

  it("aborts and timeouts while waiting for tokens leave the queue, charge nothing and leak no timer", async () => {
    const waiterArbitrary = fc.record({
      gap: fc.nat({ max: 60 }),
      cost: fc.integer({ min: 1, max: 4 }),
      abortAfter: fc.option(fc.nat({ max: 200 }), { nil: undefined }),
      timeout: fc.option(fc.nat({ max: 200 }), { nil: undefined }),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 4, max: 8 }),
        fc.integer({ min: 50, max: 400 }),
        fc.array(waiterArbitrary, { minLength: 1, maxLength: 30 }),
        async (limit, interval, waiters) => {
          const clock = new FakeClock();
          const limiter = new RateLimiter({ limits: [{ limit, interval }], clock });
          const starts: { index: number; at: number; requests: number }[] = [];
          const outcomes: Promise<unknown>[] = [];
          const aborted = new Set<number>();
          for (const [index, waiter] of waiters.entries()) {
            await clock.advanceAsync(waiter.gap);
            const controller = waiter.abortAfter === undefined ? undefined : new AbortController();
            if (controller !== undefined) {
              clock.setTimeout(() => controller.abort(), waiter.abortAfter as number);
            }
            outcomes.push(
              limiter.acquire({ cost: waiter.cost, signal: controller?.signal, timeout: waiter.timeout }).then(
                (permit) => {
                  starts.push({ index, at: clock.now(), requests: waiter.cost });
                  permit.release();
                },
                () => aborted.add(index),
              ),
            );
            // The limiter's own timer, plus one per waiter that asked for a timeout, plus the test's aborts.
            expect(limiter.statistics().waiting).toBe(limiter.waiting);
          }
          await clock.runAll();
          await Promise.all(outcomes);
          expect(starts.length + aborted.size).toBe(waiters.length);
          expect(limiter.waiting).toBe(0);
          expect(clock.pendingTimers).toBe(0);
          // Survivors start in arrival order and within the bucket's promise: nobody who left was charged
          // in a way that slowed the others beyond it, and nobody who left started.
          expect(starts.map((s) => s.index)).toEqual([...starts.map((s) => s.index)].sort((a, b) => a - b));
          expect(
            withinBucket(
              starts.map((s) => ({ ...s, tokens: 0, priority: 0 })),
              { limit, interval, burst: limit },
              (s) => s.requests,
            ),
          ).toBeUndefined();
          // Nothing the leavers asked for is still charged: once everything has refilled, the bucket is full.
          await clock.advanceAsync(interval * 2);
          expect(limiter.statistics().remaining).toEqual({ requests: limit });
          expect(limiter.statistics().aborted + limiter.statistics().timedOut).toBe(aborted.size);
        },
      ),
      { numRuns: 150 },
    );
  });
});
