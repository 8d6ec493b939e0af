import { AdaptiveLimiter, Mutex, Semaphore } from "sluice";
import { describeLimiterConformance } from "../conformance/limiter.js";

describeLimiterConformance("Semaphore", (capacity) => ({ limiter: new Semaphore(capacity) }));

describeLimiterConformance("Mutex", () => ({ limiter: new Mutex() }), { weighted: false, maxCapacity: 1 });

describeLimiterConformance("AdaptiveLimiter (min = max)", (capacity) => ({
  limiter: new AdaptiveLimiter({ min: capacity, max: capacity, initial: capacity }),
}));
