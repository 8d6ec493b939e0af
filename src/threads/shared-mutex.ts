/**
 * SharedMutex: a lock for all the worker threads of a process. A {@link SharedSemaphore} of capacity 1
 * with lock vocabulary, as Mutex is for Semaphore.
 */
import type { Worker } from "node:worker_threads";
import { checkOptionNames } from "../core/arguments.js";
import type { Clock } from "../core/clock.js";
import type { Limiter, Permit } from "../core/limiter.js";
import type { LockOptions } from "../core/mutex.js";
import {
  SHARED_SEMAPHORE_OPTIONS,
  SharedSemaphore,
  type SharedSemaphoreAttachOptions,
  type SharedSemaphoreHandle,
  type SharedSemaphoreStatistics,
} from "./shared-semaphore.js";

/** Options for {@link SharedMutex}. */
export interface SharedMutexOptions {
  /** Shows up in error messages and statistics. */
  name?: string;
  /** The most threads that can use the lock at the same time. Default 64. */
  maxThreads?: number;
  /** Time source for this thread's timeouts; defaults to the global timers. */
  clock?: Clock;
}

/**
 * A lock shared by worker threads: one holder at a time across all of them, waiters served by priority
 * then arrival across threads, with timeout and abort; a worker that exits holding it gives it back
 * when its exit is seen (see {@link SharedMutex.track}).
 *
 * @example
 * ```ts
 * // main thread
 * const lock = new SharedMutex({ name: "ledger" });
 * lock.track(new Worker(file, { workerData: { lock: lock.handle } }));
 * // in the worker
 * const lock = SharedMutex.from(workerData.lock);
 * await lock.runExclusive(() => appendToLedger(entry));
 * ```
 */
export class SharedMutex implements Limiter<LockOptions> {
  private readonly semaphore: SharedSemaphore;

  constructor(options?: SharedMutexOptions);
  /** @internal Rebuilds from a handle; use {@link SharedMutex.from}. */
  constructor(semaphore: SharedSemaphore);
  constructor(options: SharedMutexOptions | SharedSemaphore = {}) {
    if (options instanceof SharedSemaphore) {
      this.semaphore = options;
      return;
    }
    if (typeof options === "object" && options !== null) {
      checkOptionNames(options, SHARED_SEMAPHORE_OPTIONS, "the new SharedMutex() options");
    }
    this.semaphore = new SharedSemaphore(1, options);
  }

  /**
   * Rebuilds, in this thread, the lock whose `handle` another thread passed over.
   * @throws TypeError if `handle` is not a lock's handle.
   */
  static from(handle: SharedSemaphoreHandle, options?: SharedSemaphoreAttachOptions): SharedMutex {
    const semaphore = SharedSemaphore.from(handle, options);
    if (semaphore.capacity !== 1) {
      throw new TypeError(
        `handle must be a SharedMutex's handle; got a SharedSemaphore of capacity ${semaphore.capacity}`,
      );
    }
    return rebuild(semaphore);
  }

  /** Pass this to other threads; rebuild the lock there with {@link SharedMutex.from}. */
  get handle(): SharedSemaphoreHandle {
    return this.semaphore.handle;
  }

  /** Optional name, used in error messages and statistics. */
  get name(): string | undefined {
    return this.semaphore.name;
  }

  /** Waits for the lock and returns it as a disposable {@link Permit}. */
  lock(options?: LockOptions): Promise<Permit> {
    return this.semaphore.acquire(options);
  }

  /** Takes the lock if it is free and nobody waits in any thread; otherwise returns `undefined`. */
  tryLock(): Permit | undefined {
    return this.semaphore.tryAcquire(1);
  }

  /** Runs `fn` holding the lock and unlocks when it settles, however it settles. */
  runExclusive<T>(fn: (signal: AbortSignal) => T | PromiseLike<T>, options?: LockOptions): Promise<T> {
    return this.semaphore.run(fn, options);
  }

  /** Same as {@link SharedMutex.lock}, for code written against the {@link Limiter} interface. */
  acquire(options?: LockOptions): Promise<Permit> {
    return this.lock(options);
  }

  /** Same as {@link SharedMutex.runExclusive}, for code written against the {@link Limiter} interface. */
  run<T>(fn: (signal: AbortSignal) => T | PromiseLike<T>, options?: LockOptions): Promise<T> {
    return this.runExclusive(fn, options);
  }

  /** Whether a `lock()` would wait right now (held, or someone waiting) in any thread. */
  isLocked(): boolean {
    return this.semaphore.isLocked();
  }

  /** How many callers wait for the lock in all threads. */
  get waiting(): number {
    return this.semaphore.waiting;
  }

  /** Gives the lock back when `worker` exits holding it; see {@link SharedSemaphore.track}. */
  track<W extends Worker>(worker: W): W {
    return this.semaphore.track(worker);
  }

  /** A snapshot over all threads. */
  statistics(): SharedSemaphoreStatistics {
    return this.semaphore.statistics();
  }
}

/**
 * `new SharedMutex(…)` for `from`, outside the class body: a reference to the class inside its own body makes
 * the bundler rename it (`SharedMutex.name` would read `_SharedMutex`).
 */
function rebuild(semaphore: SharedSemaphore): SharedMutex {
  return new SharedMutex(semaphore);
}
