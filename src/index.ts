/**
 * sluice — admission control for async TypeScript.
 *
 * @packageDocumentation
 * @module sluice
 */

export type {
  AdaptiveLimiterEvents,
  AdaptiveLimiterOptions,
  AdaptiveLimiterStatistics,
} from "./core/adaptive-limit.js";
export { AdaptiveLimiter, AdaptivePermit } from "./core/adaptive-limit.js";
export type { LimiterCounters, LimiterStatistics } from "./core/admission.js";
export type { ChannelOptions, ChannelStatistics, Received } from "./core/channel.js";
export { Channel } from "./core/channel.js";
export type { Clock, TimerHandle } from "./core/clock.js";
export { systemClock } from "./core/clock.js";
export type {
  AcquireOutcome,
  HttpAttemptEvent,
  LeaseLostEvent,
  LimiterBackend,
  RatePauseEvent,
} from "./core/diagnostics.js";
export { AcquireEvent, HoldEvent, identityOf, LimiterIdentity } from "./core/diagnostics.js";
export type { Duration } from "./core/duration.js";
export { parseDurationText, toMilliseconds } from "./core/duration.js";
export { ClosedError, LeaseLostError, ReleasedError, TimeoutError } from "./core/errors.js";
export type { FairKeyStatistics, FairLimiterOptions, FairLimiterStatistics } from "./core/fair-limiter.js";
export { FairLimiter } from "./core/fair-limiter.js";
export type { KeyedStatistics, PerKey } from "./core/keyed.js";
export { KeyedPrimitive } from "./core/keyed.js";
export type { KeyedRateLimiterOptions, RateLevel } from "./core/keyed-rate-limiter.js";
export { KeyedRateLimiter } from "./core/keyed-rate-limiter.js";
export type { KeyedLimiter, KeyedSemaphoreOptions, KeyStatistics } from "./core/keyed-semaphore.js";
export { KeyedMutex, KeyedSemaphore, KeyView } from "./core/keyed-semaphore.js";
export type {
  AimdOptions,
  Gradient2Options,
  LimitAlgorithm,
  LimitAlgorithmName,
  LimitSample,
  VegasOptions,
} from "./core/limit-algorithms.js";
export { aimd, gradient2, overloadBackoff, vegas } from "./core/limit-algorithms.js";
export type { AdaptiveLimitStatistics, LimitChange } from "./core/limit-estimator.js";
export type { AcquireOptions, Limiter, Permit } from "./core/limiter.js";
export { NEVER_ABORTED } from "./core/limiter.js";
export type { MapAllOptions, MapOptions, Mapper, MapStreamOptions } from "./core/map.js";
export { map, mapSettled, mapStream } from "./core/map.js";
export type { LockOptions, LockTarget } from "./core/mutex.js";
export { LockOver, Mutex } from "./core/mutex.js";
export type { GiveBack } from "./core/permit.js";
export { HeldPermit } from "./core/permit.js";
export type { Lease, PoolErrorEvent, PoolOptions, PoolStatistics } from "./core/pool.js";
export { Pool } from "./core/pool.js";
export type { HeaderInput, ObservedRateLimit, RateLimitHeaders } from "./core/rate-headers.js";
export { parseRateLimitHeaders, parseRetryAfter } from "./core/rate-headers.js";
export type {
  RateAcquireOptions,
  RateCost,
  RateLimit,
  RateLimiterEvents,
  RateLimiterOptions,
  RateLimiterStatistics,
  RateLimitStatistics,
  RatePermit,
} from "./core/rate-limiter.js";
export { RateLimiter } from "./core/rate-limiter.js";
export type { ReadWriteLockStatistics } from "./core/read-write-lock.js";
export { ReadWriteLock } from "./core/read-write-lock.js";
export type { SemaphoreOptions, SemaphoreStatistics } from "./core/semaphore.js";
export { Semaphore } from "./core/semaphore.js";
export type { TaskGroupOptions } from "./core/task-group.js";
export { TaskGroup } from "./core/task-group.js";
export type { WaitOptions } from "./core/wait-options.js";
