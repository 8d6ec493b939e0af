/**
 * RedisKeyedSemaphore: a semaphore per key (per user, per account) shared by every process, with a
 * RedisSemaphore for a key only while this process uses it.
 *
 * Each key is the semaphore `<name>/<key>` in Redis, with its own hash tag (so a Cluster spreads the keys
 * over its nodes) and everything a RedisSemaphore promises: FIFO across processes, leases, fencing,
 * restarts and dead processes. In this process a key's RedisSemaphore exists from its first call until it
 * has been idle (nothing held, nobody waiting, no call in flight) for `idleAfter`; then it is closed and
 * forgotten, and its keys expire in Redis `keyTtl` later. All keys of one client share its one notice
 * connection.
 */
import { checkOptionNames } from "../core/arguments.js";
import { describe } from "../core/describe.js";
import { type Duration, toMilliseconds } from "../core/duration.js";
import { ClosedError } from "../core/errors.js";
import { checkKey, type KeyedStatistics, KeyTable, type PerKey } from "../core/keyed.js";
import type { AcquireOptions } from "../core/limiter.js";
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

/** Options for {@link RedisKeyedSemaphore}: a RedisSemaphore's, for every key, and when to forget a key. */
export interface RedisKeyedSemaphoreOptions extends Omit<RedisSemaphoreOptions, "capacity"> {
  /** Permits per key, shared by all processes: an integer >= 1. All processes must agree on it. */
  capacityPerKey: number;
  /** How long a key stays in this process once idle (nothing held, nobody waiting). Default `"5s"`. */
  idleAfter?: Duration;
}

const OPTIONS = [
  ...REDIS_SEMAPHORE_OPTIONS.filter((name) => name !== "capacity"),
  "capacityPerKey",
  "idleAfter",
] as const;

/** A key's semaphore in this process, with what tells whether it is idle. */
class LiveKey implements PerKey {
  /** Calls (acquire, tryAcquire, run) not yet settled. */
  inFlight = 0;
  /** When the key was last seen busy (`performance.now()`). */
  lastBusy = 0;
  constructor(readonly semaphore: RedisSemaphore) {}

  statistics(): RedisSemaphoreStatistics {
    return this.semaphore.statistics();
  }
}

/**
 * A limit of `capacityPerKey` at once per key, across every process using the same Redis and `name`.
 *
 * @example
 * ```ts
 * import { RedisKeyedSemaphore } from "sluice/redis";
 * const perAccount = new RedisKeyedSemaphore(redis, { name: "exports", capacityPerKey: 2 });
 * await perAccount.run(accountId, (signal) => exportAccount(accountId, { signal }));
 * ```
 */
export class RedisKeyedSemaphore {
  /** The name shared by every process. */
  readonly name: string;
  /** Permits per key. */
  readonly capacityPerKey: number;
  private readonly table: KeyTable<LiveKey>;
  private readonly options: RedisSemaphoreOptions;
  private readonly idleMs: number;
  private sweeper: ReturnType<typeof setInterval> | undefined = undefined;
  private closing: Promise<void> | undefined = undefined;

  /**
   * @param redis - an ioredis client (or any `RedisConnection`), shared by every key.
   * @param options - as {@link RedisSemaphoreOptions} with `capacityPerKey` for `capacity`, plus `idleAfter`.
   * @throws TypeError/RangeError naming the option and the value.
   */
  constructor(redis: RedisClient, options: RedisKeyedSemaphoreOptions) {
    if (options === null || typeof options !== "object") {
      throw new TypeError(`options must be an object with a name and capacityPerKey; got ${describe(options)}`);
    }
    checkOptionNames(options, OPTIONS, "the new RedisKeyedSemaphore() options");
    const { capacityPerKey, idleAfter = "5s", ...rest } = options;
    if (typeof rest.name !== "string" || rest.name === "") {
      throw new TypeError(`name must be a non-empty string; got ${describe(rest.name)}`);
    }
    if (typeof capacityPerKey !== "number" || !Number.isInteger(capacityPerKey) || capacityPerKey < 1) {
      throw new RangeError(`capacityPerKey must be an integer >= 1; got ${describe(capacityPerKey)}`);
    }
    this.idleMs = toMilliseconds(idleAfter, "idleAfter");
    this.capacityPerKey = capacityPerKey;
    this.options = { ...rest, capacity: capacityPerKey };
    // Every other option is checked here, by a semaphore as a first key would make it (it sends nothing
    // to Redis until used, and is never used).
    new RedisSemaphore(redis, { ...this.options, name: `${rest.name}/-` });
    this.name = rest.name;
    this.table = new KeyTable(
      (key) => new LiveKey(new RedisSemaphore(redis, { ...this.options, name: `${this.name}/${key}` })),
    );
  }

  /**
   * Waits until `weight` permits of `key` can be granted across all processes. Rejects (never throws) for
   * a bad key (not a string, empty, above 1,024 characters) and as {@link RedisSemaphore.acquire}.
   */
  acquire(key: string, options?: AcquireOptions): Promise<RedisPermit> {
    return this.use(key, (semaphore) => semaphore.acquire(options));
  }

  /** Takes `weight` permits of `key` if possible now without passing anyone; otherwise `undefined`. */
  tryAcquire(key: string, weight = 1): Promise<RedisPermit | undefined> {
    return this.use(key, (semaphore) => semaphore.tryAcquire(weight));
  }

  /** Runs `fn` holding a permit of `key`, as {@link RedisSemaphore.run}. */
  run<T>(
    key: string,
    fn: (signal: AbortSignal, permit: RedisPermit) => T | PromiseLike<T>,
    options?: AcquireOptions,
  ): Promise<T> {
    return this.use(key, (semaphore) => semaphore.run(fn, options));
  }

  /** The keys this process has a semaphore for now (in use, or idle for less than `idleAfter`). */
  keys(): string[] {
    return [...this.table.live.keys()];
  }

  /** A key's semaphore in Redis, as {@link RedisSemaphore.inspect}. */
  inspect(key: string): Promise<RedisSemaphoreSnapshot> {
    return this.use(key, (semaphore) => semaphore.inspect());
  }

  /** This process's figures: over every key, or of one key (as a RedisSemaphore's; zeros if not live). */
  statistics(): KeyedStatistics;
  statistics(key: string): RedisSemaphoreStatistics | undefined;
  statistics(key?: string): KeyedStatistics | RedisSemaphoreStatistics | undefined {
    if (key !== undefined) return this.table.live.get(checkKey(key))?.statistics();
    return this.table.statistics(this.name, this.capacityPerKey);
  }

  /**
   * Leaves every key, as {@link RedisSemaphore.close}: waiters reject with ClosedError, held permits are
   * asked to stop and given back. Later calls reject with ClosedError. A second call returns the same
   * promise.
   */
  close(options?: RedisCloseOptions): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    const all = [...this.table.live.values()];
    for (const [key, entry] of this.table.live) this.table.drop(key, entry);
    this.closing = Promise.all(all.map(({ semaphore }) => semaphore.close(options))).then(() => undefined);
    return this.closing;
  }

  /** Runs `call` on `key`'s semaphore (made if needed), counting it in flight until it settles. */
  private use<T>(key: string, call: (semaphore: RedisSemaphore) => Promise<T>): Promise<T> {
    try {
      checkKey(key);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.closing !== undefined) {
      return Promise.reject(new ClosedError(`Redis keyed semaphore ${JSON.stringify(this.name)} is closed`));
    }
    const live = this.table.get(key);
    this.startSweeping();
    live.inFlight++;
    let settled: Promise<T>;
    try {
      settled = call(live.semaphore);
    } catch (error) {
      settled = Promise.reject(error);
    }
    return settled.finally(() => {
      live.inFlight--;
      live.lastBusy = performance.now();
    });
  }

  /** Forgets, every `idleAfter`, the keys idle for at least that long (the timer does not keep a process alive). */
  private startSweeping(): void {
    if (this.sweeper !== undefined) return;
    this.sweeper = setInterval(() => this.sweep(), Math.max(this.idleMs, 10));
    (this.sweeper as { unref?: () => void }).unref?.();
  }

  private sweep(): void {
    const now = performance.now();
    for (const [key, entry] of this.table.live) {
      const { inUse, waiting } = entry.statistics();
      if (entry.inFlight > 0 || inUse > 0 || waiting > 0) {
        entry.lastBusy = now;
        continue;
      }
      if (now - entry.lastBusy < this.idleMs) continue;
      this.table.drop(key, entry);
      entry.semaphore.close({ timeout: 0 }).catch(() => {});
    }
    if (this.table.live.size === 0 && this.sweeper !== undefined) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }
}
