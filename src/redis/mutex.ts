/**
 * RedisMutex: the core's one lock over a RedisSemaphore of capacity 1.
 */
import { checkOptionNames } from "../core/arguments.js";
import { describe } from "../core/describe.js";
import { identifyFace } from "../core/diagnostics.js";
import { LockOver } from "../core/mutex.js";
import type { RedisClient } from "./connection.js";
import type { RedisSemaphoreSnapshot } from "./inspect.js";
import type { RedisCloseOptions } from "./options.js";
import type { RedisPermit } from "./permits.js";
import {
  REDIS_SEMAPHORE_OPTIONS,
  RedisSemaphore,
  type RedisSemaphoreOptions,
  type RedisSemaphoreStatistics,
} from "./semaphore.js";

/** A mutex takes a semaphore's options but its capacity, which is always 1. */
const REDIS_MUTEX_OPTIONS = REDIS_SEMAPHORE_OPTIONS.filter((name) => name !== "capacity");

/**
 * A lock shared by every process using the same Redis and `name`: a {@link RedisSemaphore} of
 * capacity 1 with lock vocabulary.
 *
 * @example
 * ```ts
 * import { RedisMutex } from "sluice/redis";
 * const mutex = new RedisMutex(redis, { name: "nightly-report" });
 * await mutex.runExclusive(async (signal) => {
 *   await buildReport({ signal }); // one process at a time, everywhere
 * });
 * ```
 */
export class RedisMutex extends LockOver<RedisPermit, Promise<RedisPermit | undefined>, RedisSemaphoreStatistics> {
  private readonly own: RedisSemaphore;

  /**
   * @param redis - an ioredis client (or any `RedisConnection`).
   * @param options - as {@link RedisSemaphoreOptions}, without `capacity` (always 1).
   * @throws TypeError/RangeError naming the option and the value.
   */
  constructor(redis: RedisClient, options: Omit<RedisSemaphoreOptions, "capacity">) {
    if (options === null || typeof options !== "object") {
      throw new TypeError(`options must be an object with a name; got ${describe(options)}`);
    }
    checkOptionNames(options, REDIS_MUTEX_OPTIONS, "the new RedisMutex() options");
    const semaphore = new RedisSemaphore(redis, { ...options, capacity: 1 });
    super(semaphore);
    this.own = semaphore;
    identifyFace(this, semaphore, "mutex");
  }

  /** A snapshot of the lock in Redis: see {@link RedisSemaphore.inspect}. */
  inspect(): Promise<RedisSemaphoreSnapshot> {
    return this.own.inspect();
  }

  /** Leaves, as {@link RedisSemaphore.close}: waiters reject with `ClosedError`, a held lock is given back. */
  close(options?: RedisCloseOptions): Promise<void> {
    return this.own.close(options);
  }
}
