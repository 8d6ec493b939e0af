/**
 * `sluice/threads`: admission control shared by the worker threads of one process, over
 * SharedArrayBuffer and Atomics.
 *
 * @packageDocumentation
 * @module sluice/threads
 */

export { processClock } from "./process-clock.js";
export { SharedMutex, type SharedMutexOptions } from "./shared-mutex.js";
export {
  type SharedRateAcquireOptions,
  type SharedRateLimit,
  SharedRateLimiter,
  type SharedRateLimiterAttachOptions,
  type SharedRateLimiterHandle,
  type SharedRateLimiterOptions,
  type SharedRateLimiterStatistics,
  type SharedRatePermit,
} from "./shared-rate-limiter.js";
export {
  SharedSemaphore,
  type SharedSemaphoreAttachOptions,
  type SharedSemaphoreHandle,
  type SharedSemaphoreOptions,
  type SharedSemaphoreStatistics,
} from "./shared-semaphore.js";
