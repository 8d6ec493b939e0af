/**
 * RedisReadWriteLock: many readers or one writer across processes, as one RedisSemaphore whose capacity
 * is the most readers at once: a reader takes 1, a writer all of it. The semaphore's queue in Redis is
 * strict FIFO with the head blocking those behind it, so a waiting writer holds back the readers that
 * arrive after it (as Go's `sync.RWMutex` and the in-process `ReadWriteLock`) — and leases, fencing,
 * restarts and dead processes are the semaphore's, unchanged.
 */
import { checkOptionNames } from "../core/arguments.js";
import { describe } from "../core/describe.js";
import { identifyFace } from "../core/diagnostics.js";
import type { Limiter } from "../core/limiter.js";
import type { LockOptions } from "../core/mutex.js";
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

/** Options for {@link RedisReadWriteLock}: a semaphore's, with `maxReaders` in place of `capacity`. */
export interface RedisReadWriteLockOptions extends Omit<RedisSemaphoreOptions, "capacity"> {
  /**
   * The most readers holding the lock at once, across all processes: an integer from 1 to 1,024
   * (fencing slots exist up to 1,024). Default 64. A writer takes all of it; all processes must agree.
   */
  maxReaders?: number;
}

const RW_OPTIONS = [...REDIS_SEMAPHORE_OPTIONS.filter((name) => name !== "capacity"), "maxReaders"] as const;

/**
 * Many readers at once or one writer alone, shared by every process that uses the same Redis and
 * `name`.
 *
 * A writer waiting holds back the readers that arrive after it (writers are not starved); readers that
 * arrived before it go first. Permits are {@link RedisPermit}s: leases, `leaseLost`, fencing tokens and
 * slots as a {@link RedisSemaphore}'s (a writer's permit occupies every slot, so a fenced resource
 * refuses a stale reader or writer alike).
 *
 * @example
 * ```ts
 * import { RedisReadWriteLock } from "sluice/redis";
 * const lock = new RedisReadWriteLock(redis, { name: "catalog" });
 * const item = await lock.runRead(() => catalog.get(id)); // many at once, on every machine
 * await lock.runWrite(async () => catalog.reload()); // alone
 * ```
 */
export class RedisReadWriteLock {
  /** The most readers at once (a writer's weight). */
  readonly maxReaders: number;
  /** The lock's read side as a plain {@link Limiter}. */
  readonly reader: Limiter<LockOptions>;
  /** The lock's write side as a plain {@link Limiter}. */
  readonly writer: Limiter<LockOptions>;
  private readonly semaphore: RedisSemaphore;

  /**
   * @param redis - an ioredis client (or any `RedisConnection`).
   * @param options - as {@link RedisSemaphoreOptions} without `capacity`, plus `maxReaders`.
   * @throws TypeError/RangeError naming the option and the value.
   */
  constructor(redis: RedisClient, options: RedisReadWriteLockOptions) {
    if (options === null || typeof options !== "object") {
      throw new TypeError(`options must be an object with a name; got ${describe(options)}`);
    }
    checkOptionNames(options, RW_OPTIONS, "the new RedisReadWriteLock() options");
    const { maxReaders = 64, ...rest } = options;
    if (typeof maxReaders !== "number" || !Number.isInteger(maxReaders) || maxReaders < 1 || maxReaders > 1_024) {
      throw new RangeError(`maxReaders must be an integer from 1 to 1024; got ${describe(maxReaders)}`);
    }
    this.maxReaders = maxReaders;
    this.semaphore = new RedisSemaphore(redis, { ...rest, capacity: maxReaders });
    identifyFace(this, this.semaphore, "read-write-lock");
    this.reader = { acquire: (o) => this.read(o), run: (fn, o) => this.runRead(fn, o) };
    this.writer = { acquire: (o) => this.write(o), run: (fn, o) => this.runWrite(fn, o) };
  }

  /** The name shared by every process. */
  get name(): string {
    return this.semaphore.name as string;
  }

  /** Callers of this process waiting, readers and writers. */
  get waiting(): number {
    return this.semaphore.waiting;
  }

  /**
   * Waits to read: granted once no writer holds the lock and everyone ahead in Redis' queue (a waiting
   * writer among them) was served. Rejects (never throws) as {@link RedisSemaphore.acquire}, and with a
   * TypeError for a `weight` option.
   */
  read(options?: LockOptions): Promise<RedisPermit> {
    return this.take(1, options);
  }

  /** Waits to write: granted once no reader or writer holds the lock and those ahead were served. */
  write(options?: LockOptions): Promise<RedisPermit> {
    return this.take(this.maxReaders, options);
  }

  /** Reads if that is possible now without passing anyone waiting; otherwise `undefined`. One round trip. */
  tryRead(): Promise<RedisPermit | undefined> {
    return this.semaphore.tryAcquire(1);
  }

  /** Writes if the lock is free and nobody waits; otherwise `undefined`. One round trip. */
  tryWrite(): Promise<RedisPermit | undefined> {
    return this.semaphore.tryAcquire(this.maxReaders);
  }

  /**
   * Runs `fn` holding the lock for reading and releases when it settles; rejects with `LeaseLostError`
   * when the lease was lost, as {@link RedisSemaphore.run}.
   */
  runRead<T>(fn: (signal: AbortSignal, permit: RedisPermit) => T | PromiseLike<T>, options?: LockOptions): Promise<T> {
    return this.runAs(1, fn, options);
  }

  /** Runs `fn` holding the lock for writing, as {@link RedisReadWriteLock.runRead}. */
  runWrite<T>(fn: (signal: AbortSignal, permit: RedisPermit) => T | PromiseLike<T>, options?: LockOptions): Promise<T> {
    return this.runAs(this.maxReaders, fn, options);
  }

  /**
   * This process's counters, as the semaphore's: `inUse` counts a reader as 1 and a writer as
   * `maxReaders`.
   */
  statistics(): RedisSemaphoreStatistics {
    return this.semaphore.statistics();
  }

  /** The lock in Redis: holders (weight 1: a reader; `maxReaders`: the writer) and waiters in order. */
  inspect(): Promise<RedisSemaphoreSnapshot> {
    return this.semaphore.inspect();
  }

  /** Leaves, as {@link RedisSemaphore.close}. */
  close(options?: RedisCloseOptions): Promise<void> {
    return this.semaphore.close(options);
  }

  private take(weight: number, options: LockOptions | undefined): Promise<RedisPermit> {
    const error = weightGiven(options);
    if (error !== undefined) return Promise.reject(error);
    return this.semaphore.acquire({ ...options, weight });
  }

  private runAs<T>(
    weight: number,
    fn: (signal: AbortSignal, permit: RedisPermit) => T | PromiseLike<T>,
    options: LockOptions | undefined,
  ): Promise<T> {
    const error = weightGiven(options);
    if (error !== undefined) return Promise.reject(error);
    return this.semaphore.run(fn, { ...options, weight });
  }
}

/** A `weight` in a lock's options is a mistake: the side (read or write) decides it. */
function weightGiven(options: LockOptions | undefined): TypeError | undefined {
  if (options === null || typeof options !== "object" || !("weight" in options)) return undefined;
  return new TypeError(
    `a RedisReadWriteLock takes no weight (read() takes 1, write() all); got weight ${describe((options as { weight: unknown }).weight)}`,
  );
}
