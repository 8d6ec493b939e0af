/**
 * Mutex: mutual exclusion for a critical section. One lock over any semaphore of capacity 1 — the
 * in-process {@link Semaphore} here, `SharedSemaphore` for `SharedMutex`, `RedisSemaphore` for
 * `RedisMutex` — so the three speak the same lock vocabulary through one class.
 */
import type { LimiterStatistics } from "./admission.js";
import { checkOptionNames } from "./arguments.js";
import type { Clock } from "./clock.js";
import { identifyAs, identityOf, type LimiterIdentity } from "./diagnostics.js";
import type { AcquireOptions, Limiter, Permit } from "./limiter.js";
import { SEMAPHORE_OPTIONS, Semaphore, type SemaphoreStatistics } from "./semaphore.js";

/** Options for waiting for a lock: everything {@link AcquireOptions} has except `weight`. */
export type LockOptions = Omit<AcquireOptions, "weight">;

/**
 * What a lock needs of the semaphore under it: a semaphore of capacity 1 of any backend. Implement it to
 * put a {@link LockOver} on a semaphore of your own.
 */
export interface LockTarget<P extends Permit, Try, Statistics extends LimiterStatistics> {
  /** The name, used in error messages and statistics. */
  readonly name: string | undefined;
  /** How many callers wait. */
  readonly waiting: number;
  /** Waits for the one permit, as {@link Limiter.acquire}. */
  acquire(options?: LockOptions): Promise<P>;
  /** The permit if it is free and nobody waits, else nothing (`undefined`, or a promise of it). */
  tryAcquire(weight?: number): Try;
  /** Runs `fn` holding the permit, as {@link Limiter.run}. */
  run<T>(fn: (signal: AbortSignal, permit: P) => T | PromiseLike<T>, options?: LockOptions): Promise<T>;
  /** A snapshot of the state and lifetime counters. */
  statistics(): Statistics;
}

/**
 * A lock over a semaphore of capacity 1: one holder at a time, waiters served by priority then arrival,
 * with timeout and abort — whatever the backend. `Mutex`, `SharedMutex` and `RedisMutex` are this class
 * over their semaphores, with what their backend adds.
 */
export class LockOver<P extends Permit, Try, Statistics extends LimiterStatistics> implements Limiter<LockOptions> {
  constructor(
    /** The semaphore of capacity 1 the lock stands on. */
    protected readonly semaphore: LockTarget<P, Try, Statistics>,
  ) {}

  /** Optional name, used in error messages and statistics. */
  get name(): string | undefined {
    return this.semaphore.name;
  }

  /**
   * Waits for the lock and returns it as a disposable {@link Permit}.
   *
   * @example
   * ```ts
   * {
   *   using lock = await mutex.lock({ timeout: 1_000 });
   *   // critical section; unlocked at the end of the block
   * }
   * ```
   */
  lock(options?: LockOptions): Promise<P> {
    return this.semaphore.acquire(options);
  }

  /** Takes the lock if it is free and nobody waits; otherwise `undefined` (a promise of it, for Redis). */
  tryLock(): Try {
    return this.semaphore.tryAcquire(1);
  }

  /** Runs `fn` holding the lock and unlocks when it settles, however it settles. */
  runExclusive<T>(fn: (signal: AbortSignal, permit: P) => T | PromiseLike<T>, options?: LockOptions): Promise<T> {
    return this.semaphore.run(fn, options);
  }

  /** Same as {@link lock}, for code written against the {@link Limiter} interface. */
  acquire(options?: LockOptions): Promise<P> {
    return this.semaphore.acquire(options);
  }

  /** Same as {@link runExclusive}, for code written against the {@link Limiter} interface. */
  run<T>(fn: (signal: AbortSignal, permit: P) => T | PromiseLike<T>, options?: LockOptions): Promise<T> {
    return this.semaphore.run(fn, options);
  }

  /** How many callers wait for the lock. */
  get waiting(): number {
    return this.semaphore.waiting;
  }

  /** A snapshot of the state and lifetime counters. */
  statistics(): Statistics {
    return this.semaphore.statistics();
  }
}

/**
 * A lock: one holder at a time, waiters served by priority then arrival, with timeout and abort.
 *
 * Use it when a piece of state must not be touched by two async flows at once (read-modify-write of a
 * file, a token refresh that must happen once). To let N in at once, use {@link Semaphore}.
 *
 * @example
 * ```ts
 * import { Mutex } from "sluice";
 * const mutex = new Mutex();
 * await mutex.runExclusive(async () => {
 *   const balance = await readBalance();
 *   await writeBalance(balance + 10);
 * });
 * ```
 */
export class Mutex extends LockOver<Permit, Permit | undefined, SemaphoreStatistics> {
  private readonly own: Semaphore;

  /**
   * @param options - `name` (in error messages and statistics) and `clock` (time source for timeouts).
   * @throws TypeError if `options` is not an object, has an unknown option, `name` is not a string or
   *   `clock` not a {@link Clock}.
   */
  constructor(options: { name?: string; clock?: Clock } = {}) {
    if (typeof options === "object" && options !== null) {
      checkOptionNames(options, SEMAPHORE_OPTIONS, "the new Mutex() options");
    }
    const semaphore = new Semaphore(1, options);
    // Errors and timeouts then speak of "the mutex", the object the caller knows.
    semaphore.nameAs("mutex");
    super(semaphore);
    this.own = semaphore;
    identifyAs(this, identityOf(semaphore) as LimiterIdentity);
  }

  /** Whether the lock is held (a `lock()` would wait). */
  isLocked(): boolean {
    return this.own.isLocked();
  }

  /** Resolves once the lock is free and nobody waits. */
  onIdle(): Promise<void> {
    return this.own.onIdle();
  }

  /** Rejects every waiter with `reason` (default: an `AbortError`); the holder keeps the lock. */
  clear(reason?: unknown): void {
    this.own.clear(reason);
  }
}
