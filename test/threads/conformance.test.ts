import { FakeClock } from "sluice/testing";
import { SharedMutex, SharedRateLimiter, SharedSemaphore } from "sluice/threads";
import { describeLimiterConformance } from "../conformance/limiter.js";

// In one thread, a SharedSemaphore must behave exactly like the in-memory Semaphore.
describeLimiterConformance("SharedSemaphore", (capacity) => ({ limiter: new SharedSemaphore(capacity) }));
describeLimiterConformance("SharedMutex", () => ({ limiter: new SharedMutex() }), { weighted: false, maxCapacity: 1 });

// A SharedRateLimiter holds nothing: `capacity` calls at once from a full bucket, then one more per
// second of its fake clock, which `refill` advances. It reserves places at call time, so `priority` and
// `weight` change nothing about the order.
describeLimiterConformance(
  "SharedRateLimiter",
  (capacity) => {
    const clock = new FakeClock();
    const limiter = new SharedRateLimiter({
      limits: [{ limit: capacity, interval: capacity * 1_000, burst: capacity }],
      clock,
    });
    return { limiter, refill: (weight: number) => clock.advance(weight * 1_000) };
  },
  { holds: false, weighted: false, priority: false },
);
