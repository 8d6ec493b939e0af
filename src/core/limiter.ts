/**
 * The interface every admission-control primitive in sluice implements, in one process (Semaphore,
 * Mutex, RateLimiter), across worker threads (SharedSemaphore) and across machines (RedisSemaphore),
 * so that `map`, the HTTP wrapper and the CLI accept any of them.
 */
import { allowManyListeners } from "./many-listeners.js";

/** Options for waiting in line. Every field is optional. */
export interface AcquireOptions {
  /** Permits to take: a positive integer no larger than the capacity. Default 1. */
  weight?: number;
  /** Higher is served first; equal priorities are served in arrival order. Default 0. */
  priority?: number;
  /**
   * Aborting while waiting rejects the wait with `signal.reason` and leaves the queue. Once granted,
   * the grant wins: the signal is handed to the work (`run`'s function, `permit.signal`) instead.
   */
  signal?: AbortSignal;
  /**
   * The longest to wait, in milliseconds; the wait then rejects with a `TimeoutError`.
   * `0` means "only if free right now". Default: no limit.
   */
  timeout?: number;
}

/**
 * The right to proceed, held until released. Disposable, so `using` / `await using` release it at the
 * end of the block.
 *
 * A second explicit `release()` throws `ReleasedError` (like Python's `BoundedSemaphore`); disposal
 * releases only if the permit is still held, so `using p = ...; p.release();` is fine.
 */
export interface Permit extends Disposable, AsyncDisposable {
  /** How many permits this grant holds. */
  readonly weight: number;
  /**
   * Fires when the work this permit admits should stop: the caller's own signal aborted (and, for
   * distributed permits, the lease was lost). Never fires for an in-process permit taken without a signal.
   */
  readonly signal: AbortSignal;
  /** Gives the permit back. Throws `ReleasedError` if it was already released. */
  release(): void | Promise<void>;
}

/** The shape `map`, the HTTP wrapper and the CLI accept: anything that admits work. */
export interface Limiter<Options extends AcquireOptions = AcquireOptions> {
  /** Waits for admission and returns the permit, which the caller must release. */
  acquire(options?: Options): Promise<Permit>;
  /**
   * Runs `fn` once admitted and releases afterwards, whether `fn` returns, throws or rejects.
   * `fn` receives a signal that fires when the work should stop (see {@link Permit.signal}), and the
   * permit (to settle a cost, read a fencing token, or release early: `run` then does not release again).
   */
  run<T>(fn: (signal: AbortSignal, permit: Permit) => T | PromiseLike<T>, options?: Options): Promise<T>;
}

/**
 * The signal handed to work admitted without a signal of its own: it never aborts. It is shared, so it
 * must tolerate many listeners (fetch and friends add one per request) without a leak warning.
 */
export const NEVER_ABORTED: AbortSignal = /* @__PURE__ */ neverAborted();

function neverAborted(): AbortSignal {
  const signal = new AbortController().signal;
  allowManyListeners(signal);
  return signal;
}
