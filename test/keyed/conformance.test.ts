import { FairLimiter, KeyedMutex, KeyedRateLimiter, KeyedSemaphore } from "sluice";
import { describeLimiterConformance } from "../conformance/limiter.js";

// One key of a keyed primitive is a Limiter like any other: the same suite, through `for(key)`.
describeLimiterConformance("KeyedSemaphore (one key)", (capacity) => ({
  limiter: new KeyedSemaphore(capacity).for("alice"),
}));

describeLimiterConformance("KeyedMutex (one key)", () => ({ limiter: new KeyedMutex().for("alice") }), {
  weighted: false,
  maxCapacity: 1,
});

describeLimiterConformance("KeyedRateLimiter (one key, concurrency + levels)", (capacity) => ({
  limiter: new KeyedRateLimiter({
    concurrency: capacity,
    limits: [{ limit: 10_000, interval: "1s" }],
    levels: [
      { name: "global", limits: [{ limit: 100_000, interval: "1s" }] },
      { name: "tenant", limits: [{ limit: 10_000, interval: "1s", unit: "tokens" }], key: (key) => key.slice(0, 1) },
    ],
  }).for("alice"),
}));

describeLimiterConformance("FairLimiter (one key)", (capacity) => ({ limiter: new FairLimiter(capacity).for("a") }));
