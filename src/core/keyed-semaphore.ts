/**
 * KeyedSemaphore and KeyedMutex: a semaphore (a lock) per key — per user, per tenant, per host — made on
 * first use and dropped as soon as nothing is held and nobody waits, so a million keys that went quiet
 * cost nothing. Each key is a plain {@link Semaphore}: the same options, errors and statistics.
 */
import { checkCapacity, checkClock, checkName, checkOptionNames, optionNames } from "./arguments.js";
import { type Clock, systemClock } from "./clock.js";
import { describe } from "./describe.js";
import { checkKey, KeyedPrimitive, type KeyedStatistics, keyedKind } from "./keyed.js";
import type { AcquireOptions, Limiter, Permit } from "./limiter.js";
import type { LockOptions } from "./mutex.js";
import { Semaphore, type SemaphoreStatistics } from "./semaphore.js";

/** Options for {@link KeyedSemaphore}. */
export interface KeyedSemaphoreOptions {
  /** Shows up in error messages and statistics, with the key. */
  name?: string;
  /** Time source for timeouts; defaults to the global timers. */
  clock?: Clock;
}

const KEYED_SEMAPHORE_OPTIONS = /* @__PURE__ */ optionNames<KeyedSemaphoreOptions>({ name: true, clock: true });

/** A snapshot of one key of a keyed primitive: the unkeyed primitive's statistics, and the key. */
export type KeyStatistics<S> = S & {
  /** The key. */
  key: string;
};

/** What a {@link KeyView} asks of its keyed primitive. */
export interface KeyedLimiter<O, P extends Permit, S> {
  /** Waits for admission under `key`. */
  acquire(key: string, options?: O): Promise<P>;
  /** Runs `fn` once admitted under `key`. */
  run<T>(key: string, fn: (signal: AbortSignal, permit: P) => T | PromiseLike<T>, options?: O): Promise<T>;
  /** A snapshot of `key`. */
  statistics(key: string): KeyStatistics<S>;
  /** @internal Keeps the counters of `key`'s earlier lives while the returned object is held. */
  watch(key: string): object;
}

/**
 * One key of a keyed primitive as a plain {@link Limiter}, for `map`, the HTTP wrapper and the CLI. It
 * holds the key, not the key's limiter: a view kept around does not keep the key alive.
 */
export class KeyView<O, P extends Permit, S> implements Limiter<O & AcquireOptions> {
  /** @internal Held so that the key's statistics count its whole history while this view exists. */
  readonly history: object;
  constructor(
    private readonly owner: KeyedLimiter<O, P, S>,
    /** The key this view admits under. */
    readonly key: string,
  ) {
    this.history = owner.watch(key);
  }

  /** Waits for admission under the key; see the keyed primitive's `acquire`. */
  acquire(options?: O): Promise<P> {
    return this.owner.acquire(this.key, options);
  }

  /** Runs `fn` once admitted under the key; see the keyed primitive's `run`. */
  run<T>(fn: (signal: AbortSignal, permit: P) => T | PromiseLike<T>, options?: O): Promise<T> {
    return this.owner.run(this.key, fn, options);
  }

  /** A snapshot of the key. */
  statistics(): KeyStatistics<S> {
    return this.owner.statistics(this.key);
  }
}

/**
 * A semaphore per key: at most `capacity` weight held at once under each key, keys independent of each
 * other.
 *
 * Use it for a limit per user, per tenant or per host (at most 2 uploads per user). Each key is a
 * {@link Semaphore} made on first use and dropped as soon as nothing is held and nobody waits under it,
 * so memory follows the keys in use. For one limit shared fairly between keys, use `FairLimiter`.
 *
 * @example
 * ```ts
 * import { KeyedSemaphore } from "sluice";
 * const uploads = new KeyedSemaphore(2, { name: "uploads" });
 * await uploads.run(userId, () => upload(file));
 * ```
 */
export class KeyedSemaphore
  extends KeyedPrimitive<Semaphore>
  implements KeyedLimiter<AcquireOptions, Permit, SemaphoreStatistics>
{
  /** Optional name, used in error messages and statistics. */
  readonly name: string | undefined;
  private readonly perKey: number;
  private readonly clock: Clock;
  /** What messages call it: "semaphore", or "mutex" for a {@link KeyedMutex}. */
  private kind = "semaphore";

  /**
   * @param capacity - permits per key: an integer >= 0, or `Infinity`.
   * @throws RangeError/TypeError as `new Semaphore()` does, naming the argument and the value.
   */
  constructor(capacity: number, options: KeyedSemaphoreOptions = {}) {
    super();
    this.perKey = checkCapacity(capacity);
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`options must be an object; got ${describe(options)}`);
    }
    checkOptionNames(options, KEYED_SEMAPHORE_OPTIONS, "the new KeyedSemaphore() options");
    this.name = checkName(options.name);
    this.clock = checkClock(options.clock) ?? systemClock;
  }

  /** Permits per key. */
  get capacity(): number {
    return this.perKey;
  }

  /**
   * Waits until `weight` permits of `key` can be granted (see {@link Semaphore.acquire}). Rejects (never
   * throws) for a key that is not a non-empty string of at most 1024 characters, and as `acquire` does.
   */
  acquire(key: string, options?: AcquireOptions): Promise<Permit> {
    return this.call(key, (semaphore) => semaphore.acquire(options));
  }

  /**
   * Takes `weight` permits of `key` if free now and nobody waits under it; otherwise `undefined`.
   * @throws RangeError/TypeError for a bad key or weight.
   */
  tryAcquire(key: string, weight = 1): Permit | undefined {
    checkKey(key);
    const semaphore = this.table.get(key);
    try {
      return semaphore.tryAcquire(weight);
    } finally {
      this.dropIfQuiet(key, semaphore);
    }
  }

  /** Runs `fn` holding permits of `key` and releases when it settles (see {@link Semaphore.run}). */
  run<T>(
    key: string,
    fn: (signal: AbortSignal, permit: Permit) => T | PromiseLike<T>,
    options?: AcquireOptions,
  ): Promise<T> {
    return this.call(key, (semaphore) => semaphore.run(fn, options));
  }

  /** Whether an `acquire(key)` of weight 1 would wait right now. */
  isLocked(key: string): boolean {
    checkKey(key);
    return this.table.live.get(key)?.isLocked() ?? this.perKey < 1;
  }

  /** `key` as a plain {@link Limiter} (for `map`, the HTTP wrapper, the CLI). */
  for(key: string): KeyView<AcquireOptions, Permit, SemaphoreStatistics> {
    return new KeyView(this, checkKey(key));
  }

  /** A snapshot of every key together: live keys, and lifetime counters of all keys ever. */
  statistics(): KeyedStatistics;
  /** A snapshot of `key`, as {@link Semaphore.statistics}; a key not live reads as a fresh one. */
  statistics(key: string): KeyStatistics<SemaphoreStatistics>;
  statistics(key?: string): KeyedStatistics | KeyStatistics<SemaphoreStatistics> {
    if (key === undefined) return this.table.statistics(this.name, this.perKey);
    checkKey(key);
    const semaphore = this.table.live.get(key) ?? this.create(key);
    return { ...this.table.statisticsOf(key, semaphore.statistics()), name: this.name, key };
  }

  /** Rejects every waiter of every key with `reason` (default: an `AbortError`). Held permits stay held. */
  clear(reason?: unknown): void {
    for (const semaphore of [...this.table.live.values()]) semaphore.clear(reason);
  }

  /** Calls `body` on the key's semaphore, then drops the key if the call left it quiet (refused at once). */
  private call<T>(key: string, body: (semaphore: Semaphore) => Promise<T>): Promise<T> {
    try {
      checkKey(key);
    } catch (error) {
      return Promise.reject(error);
    }
    const semaphore = this.table.get(key);
    const outcome = body(semaphore);
    this.dropIfQuiet(key, semaphore);
    return outcome;
  }

  /** @internal For a {@link KeyedMutex} over it: what messages call it. */
  nameAs(kind: string): void {
    this.kind = kind;
  }

  private dropIfQuiet(key: string, semaphore: Semaphore): void {
    if (semaphore.inUse === 0 && semaphore.waiting === 0) this.table.drop(key, semaphore);
  }

  protected create(key: string): Semaphore {
    const semaphore = new Semaphore(this.perKey, { name: key, clock: this.clock });
    // Messages name the keyed primitive and the key: `semaphore "uploads" key "alice"`.
    semaphore.nameAs(keyedKind(this.kind, this.name));
    semaphore.onQuiet = () => this.table.drop(key, semaphore);
    return semaphore;
  }
}

/**
 * A lock per key: one holder at a time under each key, keys independent of each other — a
 * read-modify-write per account, a token refresh per user. Each key is a lock made on first use and
 * dropped as soon as it is free and nobody waits.
 *
 * @example
 * ```ts
 * import { KeyedMutex } from "sluice";
 * const accounts = new KeyedMutex();
 * await accounts.runExclusive(accountId, async () => {
 *   await writeBalance(accountId, (await readBalance(accountId)) + 10);
 * });
 * ```
 */
export class KeyedMutex implements KeyedLimiter<LockOptions, Permit, SemaphoreStatistics> {
  private readonly semaphores: KeyedSemaphore;

  /**
   * @param options - `name` (in error messages and statistics) and `clock` (time source for timeouts).
   * @throws TypeError for options that are not an object, an unknown option, a bad name or clock.
   */
  constructor(options: KeyedSemaphoreOptions = {}) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`options must be an object; got ${describe(options)}`);
    }
    checkOptionNames(options, KEYED_SEMAPHORE_OPTIONS, "the new KeyedMutex() options");
    this.semaphores = new KeyedSemaphore(1, options);
    this.semaphores.nameAs("mutex");
  }

  /** Optional name, used in error messages and statistics. */
  get name(): string | undefined {
    return this.semaphores.name;
  }

  /** How many keys are live: locked or waited for. */
  get size(): number {
    return this.semaphores.size;
  }

  /** The live keys. */
  keys(): string[] {
    return this.semaphores.keys();
  }

  /** Waits for the lock of `key` (see `Mutex.lock`). */
  lock(key: string, options?: LockOptions): Promise<Permit> {
    return this.semaphores.acquire(key, options);
  }

  /** Takes the lock of `key` if it is free and nobody waits; otherwise `undefined`. */
  tryLock(key: string): Permit | undefined {
    return this.semaphores.tryAcquire(key, 1);
  }

  /** Runs `fn` holding the lock of `key` and unlocks when it settles. */
  runExclusive<T>(
    key: string,
    fn: (signal: AbortSignal, permit: Permit) => T | PromiseLike<T>,
    options?: LockOptions,
  ): Promise<T> {
    return this.semaphores.run(key, fn, options);
  }

  /** Same as {@link KeyedMutex.lock}, for code written against {@link KeyedLimiter}. */
  acquire(key: string, options?: LockOptions): Promise<Permit> {
    return this.semaphores.acquire(key, options);
  }

  /** Same as {@link KeyedMutex.runExclusive}, for code written against {@link KeyedLimiter}. */
  run<T>(
    key: string,
    fn: (signal: AbortSignal, permit: Permit) => T | PromiseLike<T>,
    options?: LockOptions,
  ): Promise<T> {
    return this.semaphores.run(key, fn, options);
  }

  /** Whether the lock of `key` is held (a `lock(key)` would wait). */
  isLocked(key: string): boolean {
    return this.semaphores.isLocked(key);
  }

  /** `key` as a plain {@link Limiter}. */
  for(key: string): KeyView<LockOptions, Permit, SemaphoreStatistics> {
    return new KeyView(this, checkKey(key));
  }

  /** A snapshot of every key together. */
  statistics(): KeyedStatistics;
  /** A snapshot of `key`. */
  statistics(key: string): KeyStatistics<SemaphoreStatistics>;
  statistics(key?: string): KeyedStatistics | KeyStatistics<SemaphoreStatistics> {
    return key === undefined ? this.semaphores.statistics() : this.semaphores.statistics(key);
  }

  /** @internal See {@link KeyedLimiter.watch}. */
  watch(key: string): object {
    return this.semaphores.watch(key);
  }

  /** Rejects every waiter of every key with `reason`; holders keep their locks. */
  clear(reason?: unknown): void {
    this.semaphores.clear(reason);
  }
}
