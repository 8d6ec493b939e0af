/**
 * SharedMutex: a lock for all the worker threads of a process. A {@link SharedSemaphore} of capacity 1
 * with lock vocabulary, as Mutex is for Semaphore.
 */
import type { Worker } from "node:worker_threads";
import { checkOptionNames } from "../core/arguments.js";
import type { Clock } from "../core/clock.js";
import { identifyFace } from "../core/diagnostics.js";
import type { Permit } from "../core/limiter.js";
import { LockOver } from "../core/mutex.js";
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
export class SharedMutex extends LockOver<Permit, Permit | undefined, SharedSemaphoreStatistics> {
  private readonly own: SharedSemaphore;

  constructor(options?: SharedMutexOptions);
  /** @internal Rebuilds from a handle; use {@link SharedMutex.from}. */
  constructor(semaphore: SharedSemaphore);
  constructor(options: SharedMutexOptions | SharedSemaphore = {}) {
    if (typeof options === "object" && options !== null && !(options instanceof SharedSemaphore)) {
      checkOptionNames(options, SHARED_SEMAPHORE_OPTIONS, "the new SharedMutex() options");
    }
    const semaphore = options instanceof SharedSemaphore ? options : new SharedSemaphore(1, options);
    super(semaphore);
    this.own = semaphore;
    identifyFace(this, semaphore, "mutex");
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
    return this.own.handle;
  }

  /** Whether a `lock()` would wait right now (held, or someone waiting) in any thread. */
  isLocked(): boolean {
    return this.own.isLocked();
  }

  /** Gives the lock back when `worker` exits holding it; see {@link SharedSemaphore.track}. */
  track<W extends Worker>(worker: W): W {
    return this.own.track(worker);
  }
}

/**
 * `new SharedMutex(…)` for `from`, outside the class body: a reference to the class inside its own body makes
 * the bundler rename it (`SharedMutex.name` would read `_SharedMutex`).
 */
function rebuild(semaphore: SharedSemaphore): SharedMutex {
  return new SharedMutex(semaphore);
}
