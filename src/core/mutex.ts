/**
 * Mutex: mutual exclusion for a critical section. A {@link Semaphore} of capacity 1 with lock vocabulary.
 */
import type { Clock } from "./clock.js";
import type { AcquireOptions, Limiter, Permit } from "./limiter.js";
import { Semaphore, type SemaphoreStatistics } from "./semaphore.js";

/** Options for waiting for a lock: everything {@link AcquireOptions} has except `weight`. */
export type LockOptions = Omit<AcquireOptions, "weight">;

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
export class Mutex implements Limiter<LockOptions> {
  private readonly semaphore: Semaphore;

  /**
   * @param options - `name` (in error messages and statistics) and `clock` (time source for timeouts).
   * @throws TypeError if `options` is not an object, `name` not a string or `clock` not a {@link Clock}.
   */
  constructor(options: { name?: string; clock?: Clock } = {}) {
    this.semaphore = new Semaphore(1, options);
    // Errors and timeouts then speak of "the mutex", the object the caller knows.
    this.semaphore.nameAs("mutex");
  }

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
  lock(options?: LockOptions): Promise<Permit> {
    return this.semaphore.acquire(options);
  }

  /** Takes the lock if it is free and nobody waits; otherwise returns `undefined`. */
  tryLock(): Permit | undefined {
    return this.semaphore.tryAcquire(1);
  }

  /** Runs `fn` holding the lock and unlocks when it settles, however it settles. */
  runExclusive<T>(fn: (signal: AbortSignal) => T | PromiseLike<T>, options?: LockOptions): Promise<T> {
    return this.semaphore.run(fn, options);
  }

  /** Same as {@link Mutex.lock}, for code written against the {@link Limiter} interface. */
  acquire(options?: LockOptions): Promise<Permit> {
    return this.semaphore.acquire(options);
  }

  /** Same as {@link Mutex.runExclusive}, for code written against the {@link Limiter} interface. */
  run<T>(fn: (signal: AbortSignal) => T | PromiseLike<T>, options?: LockOptions): Promise<T> {
    return this.semaphore.run(fn, options);
  }

  /** Whether the lock is held (a `lock()` would wait). */
  isLocked(): boolean {
    return this.semaphore.isLocked();
  }

  /** How many callers wait for the lock. */
  get waiting(): number {
    return this.semaphore.waiting;
  }

  /** Resolves once the lock is free and nobody waits. */
  onIdle(): Promise<void> {
    return this.semaphore.onIdle();
  }

  /** Rejects every waiter with `reason` (default: an `AbortError`); the holder keeps the lock. */
  clear(reason?: unknown): void {
    this.semaphore.clear(reason);
  }

  /** A snapshot of the state and lifetime counters. */
  statistics(): SemaphoreStatistics {
    return this.semaphore.statistics();
  }
}
