/**
 * RedisKeyedSemaphore: a semaphore per key (per user, per account) shared by every process, with nothing
 * per key in this process but the state of the keys it holds or waits on.
 *
 * All keys live under one hash tag, `{<name>}` (so a Redis Cluster keeps a keyed semaphore on one node):
 * each key its `meta` HASH and `queue` ZSET (`<prefix>{<name>}:k:<key>:meta`, `...:queue`), expiring
 * `keyTtl` after its last use; the leases (`clients`) and this process's notice channel are shared by
 * all keys. So one lease covers every permit and ticket of the process on every key, one heartbeat
 * script (per few hundred keys held or waited on) renews it, and one subscription hears every grant:
 * no object, timer, subscription or connection per key. The scripts are RedisSemaphore's, for any key:
 * each key has everything a RedisSemaphore promises (FIFO across processes, leases, fencing, restarts
 * and dead processes). In this process a key's state (its callers, tickets and permits) exists from its
 * first call until it has been idle (nothing held, nobody waiting, no call in flight) for `idleAfter`.
 */
import { checkOptionNames } from "../core/arguments.js";
import { describe } from "../core/describe.js";
import { identify, type LimiterIdentity } from "../core/diagnostics.js";
import { type Duration, toMilliseconds } from "../core/duration.js";
import { ClosedError } from "../core/errors.js";
import { checkKey, type KeyedStatistics, KeyTable, type PerKey } from "../core/keyed.js";
import type { AcquireOptions } from "../core/limiter.js";
import type { RedisClient } from "./connection.js";
import { inspectSemaphore, type RedisSemaphoreSnapshot } from "./inspect.js";
import { checkCloseOptions, type RedisCloseOptions } from "./options.js";
import type { RedisPermit } from "./permits.js";
import { REDIS_SEMAPHORE_OPTIONS, type RedisSemaphoreOptions, type RedisSemaphoreStatistics } from "./semaphore.js";
import { SemaphoreContext, SemaphoreSettings } from "./semaphore-context.js";
import { SemaphoreKey } from "./semaphore-key.js";
import { ProcessLease } from "./semaphore-process.js";

/** Options for {@link RedisKeyedSemaphore}: a RedisSemaphore's, for every key, and when to forget a key. */
export interface RedisKeyedSemaphoreOptions extends Omit<RedisSemaphoreOptions, "capacity"> {
  /** Permits per key, shared by all processes: an integer >= 1. All processes must agree on it. */
  capacityPerKey: number;
  /** How long a key's state stays in this process once idle (nothing held, nobody waiting). Default `"5s"`. */
  idleAfter?: Duration;
}

const OPTIONS = [
  ...REDIS_SEMAPHORE_OPTIONS.filter((name) => name !== "capacity"),
  "capacityPerKey",
  "idleAfter",
] as const;

/** A key's state in this process, with what tells whether it is idle. */
class LiveKey implements PerKey {
  /** Calls (acquire, tryAcquire, run) not yet settled. */
  inFlight = 0;
  /** When the key was last seen busy (`performance.now()`). */
  lastBusy = 0;
  constructor(
    readonly parts: SemaphoreKey,
    private readonly name: string,
  ) {}

  statistics(): RedisSemaphoreStatistics {
    return this.parts.statistics(this.name);
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
  /**
   * This process's id in Redis, one for every key: its lease in `clients`, its holders and waiters in
   * {@link RedisKeyedSemaphore.inspect}, and its notice channel's name.
   */
  readonly client: string;
  /** @internal What its `sluice:*` events name. */
  readonly identity: LimiterIdentity;
  private readonly table: KeyTable<LiveKey>;
  private readonly settings: SemaphoreSettings;
  /** The one lease, heartbeat and notice subscription of this process, for every key. */
  private readonly lease: ProcessLease;
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
    if ("capacity" in options) {
      throw new TypeError(
        `a RedisKeyedSemaphore takes capacityPerKey (permits per key), not capacity; got capacity ${describe((options as { capacity?: unknown }).capacity)}`,
      );
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
    const settings = new SemaphoreSettings(redis, { ...rest, capacity: capacityPerKey }, true);
    this.settings = settings;
    this.name = settings.name;
    this.client = settings.client;
    this.identity = identify(this, this.name, "semaphore", "redis", settings.clock);
    const table = new KeyTable<LiveKey>(
      (key) => new LiveKey(new SemaphoreKey(new SemaphoreContext(settings, key), this.lease, this.identity), this.name),
    );
    this.table = table;
    this.lease = new ProcessLease(
      settings,
      {
        *keys() {
          for (const live of table.live.values()) yield live.parts;
        },
        find: (label) => (label.startsWith("k:") ? table.live.get(label.slice(2))?.parts : undefined),
        locate: (label) => new SemaphoreContext(settings, label.slice(2)),
      },
      () => `Redis keyed semaphore ${JSON.stringify(this.name)}`,
    );
  }

  /**
   * Waits until `weight` permits of `key` can be granted across all processes. Rejects (never throws) for
   * a bad key (not a string, empty, above 1,024 characters) and as {@link RedisSemaphore.acquire}.
   */
  acquire(key: string, options?: AcquireOptions): Promise<RedisPermit> {
    return this.use(key, (parts) => parts.acquire(options));
  }

  /** Takes `weight` permits of `key` if possible now without passing anyone; otherwise `undefined`. */
  tryAcquire(key: string, weight = 1): Promise<RedisPermit | undefined> {
    return this.use(key, (parts) => parts.tryAcquire(weight));
  }

  /** Runs `fn` holding a permit of `key`, as {@link RedisSemaphore.run}. */
  run<T>(
    key: string,
    fn: (signal: AbortSignal, permit: RedisPermit) => T | PromiseLike<T>,
    options?: AcquireOptions,
  ): Promise<T> {
    return this.use(key, (parts) => parts.run(fn, options));
  }

  /** The keys this process has state for now (in use, or idle for less than `idleAfter`). */
  keys(): string[] {
    return [...this.table.live.keys()];
  }

  /** A key's semaphore in Redis, as {@link RedisSemaphore.inspect} (one round trip; nothing kept here). */
  inspect(key: string): Promise<RedisSemaphoreSnapshot> {
    try {
      checkKey(key);
    } catch (error) {
      return Promise.reject(error);
    }
    const { settings } = this;
    const context = new SemaphoreContext(settings, key);
    return inspectSemaphore(settings.connection, settings.tag, this.name, settings.commandMs, context.keys);
  }

  /** This process's figures: over every key, or of one key (as a RedisSemaphore's; undefined if not live). */
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
    let timeout: number;
    try {
      timeout = checkCloseOptions(options, this.settings.leaseMs);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    this.closing = this.lease.close(timeout).then(() => {
      for (const [key, entry] of this.table.live) this.table.drop(key, entry);
    });
    return this.closing;
  }

  /** Runs `call` on `key`'s state (made if needed), counting it in flight until it settles. */
  private use<T>(key: string, call: (parts: SemaphoreKey) => Promise<T>): Promise<T> {
    try {
      checkKey(key);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.settings.closed) {
      return Promise.reject(new ClosedError(`Redis keyed semaphore ${JSON.stringify(this.name)} is closed`));
    }
    const live = this.table.get(key);
    this.startSweeping();
    live.inFlight++;
    let settled: Promise<T>;
    try {
      settled = call(live.parts);
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
      if (entry.inFlight > 0 || !entry.parts.idle) {
        entry.lastBusy = now;
        continue;
      }
      if (now - entry.lastBusy < this.idleMs) continue;
      // Nothing to close: a key has no timer, subscription or lease of its own.
      this.table.drop(key, entry);
    }
    if (this.table.live.size === 0 && this.sweeper !== undefined) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }
}
