/**
 * sluice — admission control for async TypeScript.
 *
 * @packageDocumentation
 */
export type { Clock, TimerHandle } from "./core/clock.js";
export { systemClock } from "./core/clock.js";
export type { Duration } from "./core/duration.js";
export { parseDurationText, toMilliseconds } from "./core/duration.js";
export { ClosedError, LeaseLostError, ReleasedError, TimeoutError } from "./core/errors.js";
export type { AcquireOptions, Limiter, Permit } from "./core/limiter.js";
export { NEVER_ABORTED } from "./core/limiter.js";
export type { LockOptions } from "./core/mutex.js";
export { Mutex } from "./core/mutex.js";
export type { SemaphoreOptions, SemaphoreStatistics } from "./core/semaphore.js";
export { Semaphore } from "./core/semaphore.js";
