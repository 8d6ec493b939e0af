/**
 * sluice/redis — the same limits across processes and machines, through Redis (or Valkey).
 *
 * ioredis is an optional peer dependency: pass an ioredis client, or anything implementing
 * {@link RedisConnection}.
 *
 * @packageDocumentation
 * @module sluice/redis
 */
export type { IoredisLike, RedisClient, RedisConnection } from "./connection.js";
export { asRedisConnection, fromIoredis } from "./connection.js";
export { RedisUnavailableError } from "./errors.js";
export { FencingGuard } from "./fencing.js";
export type {
  InspectRedisOptions,
  RedisHolder,
  RedisSemaphoreSnapshot,
  RedisSnapshot,
  RedisWaiter,
} from "./inspect.js";
export { inspectRedis } from "./inspect.js";
export type {
  RedisKeyedRateLimiterOptions,
  RedisKeyedRateLimiterStatistics,
  RedisKeyedRatePermit,
} from "./keyed-rate-limiter.js";
export { RedisKeyedRateLimiter } from "./keyed-rate-limiter.js";
export type { RedisKeyedSemaphoreOptions } from "./keyed-semaphore.js";
export { RedisKeyedSemaphore } from "./keyed-semaphore.js";
export { RedisMutex } from "./mutex.js";
export type { RedisCloseOptions, UnavailablePolicy } from "./options.js";
export type { RedisPermit } from "./permits.js";
export type {
  RedisRateLimiterOptions,
  RedisRateLimiterSnapshot,
  RedisRateLimiterStatistics,
  RedisRatePermit,
} from "./rate-limiter.js";
export { RedisRateLimiter } from "./rate-limiter.js";
export type { RedisReadWriteLockOptions } from "./read-write-lock.js";
export { RedisReadWriteLock } from "./read-write-lock.js";
export type { RedisSemaphoreOptions, RedisSemaphoreStatistics } from "./semaphore.js";
export { RedisSemaphore } from "./semaphore.js";
