/**
 * Properties of Semaphore over random schedules of acquire / release / abort / timeout / resize /
 * clear, checked against a model after every step.
 */
import fc from "fast-check";
import { type Permit, Semaphore } from "sluice";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";

type Step =
  | { kind: "acquire"; weight: number; priority: number; signal: boolean; timeout: number | undefined }
  | { kind: "release"; pick: number }
  | { kind: "abort"; pick: number }
  | { kind: "advance"; ms: number }
  | { kind: "resize"; capacity: number }
  | { kind: "try"; weight: number }
  | { kind: "clear" };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant("acquire" as const),
      weight: fc.integer({ min: 1, max: 4 }),
      priority: fc.integer({ min: -1, max: 1 }),
      signal: fc.boolean(),
      timeout: fc.option(fc.integer({ min: 0, max: 40 }), { nil: undefined }),
    }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("release" as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("abort" as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 25 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant("resize" as const), capacity: fc.integer({ min: 0, max: 6 }) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("try" as const), weight: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: "clear" as const }) },
);

interface Request {
  id: number;
  weight: number;
  priority: number;
  controller: AbortController | undefined;
  status: "pending" | "granted" | "rejected";
  permit?: Permit;
  releases: number;
}

describe("Semaphore properties over random schedules", () => {
  it("never holds more than the capacity, loses or duplicates no permit, and leaves nobody waiting for free room", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 5 }),
        fc.array(step, { minLength: 5, maxLength: 80, size: "max" }),
        async (initial, steps) => {
          const clock = new FakeClock();
          const semaphore = new Semaphore(initial, { clock });
          const requests: Request[] = [];
          const grantOrder: Request[] = [];
          let capacity = initial;

          const heldWeight = () =>
            requests.filter((r) => r.status === "granted" && r.releases === 0).reduce((sum, r) => sum + r.weight, 0);
          const pending = () => requests.filter((r) => r.status === "pending");

          for (const s of steps) {
            const inUseBefore = semaphore.inUse;
            switch (s.kind) {
              case "acquire": {
                const request: Request = {
                  id: requests.length,
                  weight: s.weight,
                  priority: s.priority,
                  controller: s.signal ? new AbortController() : undefined,
                  status: "pending",
                  releases: 0,
                };
                requests.push(request);
                semaphore
                  .acquire({
                    weight: s.weight,
                    priority: s.priority,
                    signal: request.controller?.signal,
                    timeout: s.timeout,
                  })
                  .then(
                    (permit) => {
                      request.status = "granted";
                      request.permit = permit;
                      grantOrder.push(request);
                    },
                    () => {
                      request.status = "rejected";
                    },
                  );
                break;
              }
              case "release": {
                const held = requests.filter((r) => r.status === "granted" && r.releases === 0);
                const request = held[s.pick % Math.max(1, held.length)];
                if (request?.permit) {
                  request.permit.release();
                  request.releases++;
                  // A second release must throw and change nothing.
                  expect(() => request.permit?.release()).toThrow();
                }
                break;
              }
              case "abort": {
                const cancellable = pending().filter((r) => r.controller !== undefined);
                cancellable[s.pick % Math.max(1, cancellable.length)]?.controller?.abort();
                break;
              }
              case "advance":
                await clock.advanceAsync(s.ms);
                break;
              case "resize":
                semaphore.capacity = s.capacity;
                capacity = s.capacity;
                break;
              case "try": {
                if (s.weight > capacity) {
                  expect(() => semaphore.tryAcquire(s.weight)).toThrow(RangeError);
                  break;
                }
                const permit = semaphore.tryAcquire(s.weight);
                if (permit !== undefined) {
                  const request: Request = {
                    id: requests.length,
                    weight: s.weight,
                    priority: 0,
                    controller: undefined,
                    status: "granted",
                    permit,
                    releases: 0,
                  };
                  requests.push(request);
                }
                break;
              }
              case "clear":
                semaphore.clear();
                break;
            }
            // Grants happen synchronously; only a grant raises inUse, and a grant never exceeds capacity.
            if (semaphore.inUse > inUseBefore) expect(semaphore.inUse).toBeLessThanOrEqual(capacity);
            await flushMicrotasks(4);
            // The semaphore's books match the permits callers hold.
            expect(semaphore.inUse).toBe(heldWeight());
            expect(semaphore.waiting).toBe(pending().length);
            // Nobody waits while the head of the line would fit (hand-off leaves no free room unused).
            const waiting = pending();
            if (waiting.length > 0) {
              const top = Math.max(...waiting.map((r) => r.priority));
              const head = waiting.find((r) => r.priority === top) as Request;
              expect(head.weight).toBeGreaterThan(semaphore.available);
            }
          }

          // FIFO within a priority among waiters that were granted after waiting: arrival order preserved.
          for (const priority of [-1, 0, 1]) {
            const ids = grantOrder.filter((r) => r.priority === priority).map((r) => r.id);
            expect(ids).toEqual([...ids].sort((a, b) => a - b));
          }

          // Let everything settle: abort the rest, release everything.
          semaphore.clear();
          await flushMicrotasks(4);
          for (const request of requests) {
            if (request.status === "granted" && request.releases === 0) request.permit?.release();
          }
          await flushMicrotasks(4);
          expect(requests.every((r) => r.status !== "pending")).toBe(true);
          expect(semaphore.available).toBe(capacity);
          expect(semaphore.inUse).toBe(0);
          expect(semaphore.waiting).toBe(0);
          expect(clock.pendingTimers).toBe(0);
        },
      ),
      { numRuns: 200 },
    );
  });
});
