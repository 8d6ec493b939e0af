import { SharedMutex, SharedSemaphore } from "sluice/threads";
import { describeLimiterConformance } from "../conformance/limiter.js";

// In one thread, a SharedSemaphore must behave exactly like the in-memory Semaphore.
describeLimiterConformance("SharedSemaphore", (capacity) => ({ limiter: new SharedSemaphore(capacity) }));
describeLimiterConformance("SharedMutex", () => ({ limiter: new SharedMutex() }), { weighted: false, maxCapacity: 1 });
