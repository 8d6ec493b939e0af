/**
 * sluice/redis — the same limits across processes and machines, through Redis (or Valkey).
 *
 * ioredis is an optional peer dependency: pass an ioredis client, or anything implementing
 * {@link RedisConnection}.
 *
 * @packageDocumentation
 */
export type { IoredisLike, RedisClient, RedisConnection } from "./connection.js";
export { asRedisConnection, fromIoredis } from "./connection.js";
export { RedisUnavailableError } from "./errors.js";
export type { InspectRedisOptions, RedisSnapshot } from "./inspect.js";
export { inspectRedis } from "./inspect.js";
export type { RedisRateLimiterOptions, RedisRateLimiterSnapshot, RedisRatePermit } from "./rate-limiter.js";
export { RedisRateLimiter } from "./rate-limiter.js";
export type {
  RedisCloseOptions,
  RedisHolder,
  RedisPermit,
  RedisSemaphoreOptions,
  RedisSemaphoreSnapshot,
  RedisWaiter,
  UnavailablePolicy,
} from "./semaphore.js";
export { FencingGuard, RedisMutex, RedisSemaphore } from "./semaphore.js";
