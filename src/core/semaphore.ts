/**
 * Semaphore: at most `capacity` permits held at once, weighted, with priorities, cancellation and
 * run-time resizing. Mutex is a Semaphore of capacity 1.
 */
import {
  checkCapacity,
  checkClock,
  checkFunction,
  checkName,
  checkPriority,
  checkSignal,
  checkTimeout,
  checkWeight,
} from "./arguments.js";
import { type Clock, systemClock } from "./clock.js";
import { describe } from "./duration.js";
import { defaultAbortReason, ReleasedError, TimeoutError } from "./errors.js";
import { type AcquireOptions, type Limiter, NEVER_ABORTED, type Permit } from "./limiter.js";
import { type CancelReason, type SelfChecking, type Waiter, WaitQueue, waitQueues } from "./wait-queue.js";

/** Options for {@link Semaphore}. */
export interface SemaphoreOptions {
  /** Shows up in error messages and statistics. */
  name?: string;
  /** Time source for timeouts; defaults to the global timers. */
  clock?: Clock;
}

/** A snapshot of a semaphore's state and lifetime counters, for logs and metrics. */
export interface SemaphoreStatistics {
  name: string | undefined;
  capacity: number;
  /** `capacity - inUse`; negative after a shrink below what is held. */
  available: number;
  inUse: number;
  /** Callers waiting (not their weight). */
  waiting: number;
  /** The weight the waiting callers ask for, together. */
  waitingWeight: number;
  /** Grants since creation. */
  granted: number;
  /** Waits that ended by timeout. */
  timedOut: number;
  /** Waits that ended by their signal. */
  aborted: number;
  /** Waits rejected by `clear()` or because a shrink made them impossible. */
  rejected: number;
}

/** The function a `run()` admits. */
type RunFunction = (signal: AbortSignal) => unknown;

/** A queued `run()` that passed options: its function, weight and signal travel with it. */
class RunRequest {
  constructor(
    readonly fn: RunFunction,
    readonly weight: number,
    readonly signal: AbortSignal,
  ) {}
}

/**
 * What a queued caller asks for: `acquire()` queues its weight; `run()` queues its bare function
 * (weight 1, no options) or a {@link RunRequest}. A queued run thus waits without a Permit and without
 * an async frame: a million queued runs cost their waiters and promises, nothing more.
 */
type Request = number | RunFunction | RunRequest;

/**
 * What a waiter's promise resolves to: a Permit for `acquire()`; for a queued run, its own (already
 * settled) waiter, which `startQueued` turns into the call. A Waiter has no `then`, so resolving with
 * it is safe where resolving with the user's function (which might have one) would not be.
 */
type Grant = Permit | SemaphoreWaiter;
type SemaphoreWaiter = Waiter<Request, Grant>;

/** The weight a queued request asks for. */
function weightOf(request: Request): number {
  return typeof request === "number" ? request : typeof request === "function" ? 1 : request.weight;
}

/** A permit of an in-process semaphore. */
class SemaphorePermit implements Permit {
  private held = true;
  constructor(
    private readonly semaphore: Semaphore,
    readonly weight: number,
    readonly signal: AbortSignal,
  ) {}
  release(): void {
    if (!this.held) throw new ReleasedError(`this permit (weight ${this.weight}) was already released`);
    this.held = false;
    this.semaphore["giveBack"](this.weight);
  }
  [Symbol.dispose](): void {
    if (this.held) this.release();
  }
  [Symbol.asyncDispose](): Promise<void> {
    if (this.held) this.release();
    return Promise.resolve();
  }
}

/**
 * A counting semaphore: at most `capacity` weight held at once.
 *
 * Use it to cap how many things happen at once — API calls in flight, files open, jobs on a GPU. For a
 * cap on how many start *per second*, use `RateLimiter`; for reusable objects such as connections, use
 * `Pool`.
 *
 * Guarantees:
 * - never more than `capacity` weight held (`inUse <= capacity`, except transiently after a shrink,
 *   when nothing new is granted until `inUse` drops below the new capacity);
 * - waiters are served by priority, then arrival; if the head does not fit, nobody behind it is served,
 *   so a heavy request is never starved by light ones;
 * - `release()` hands permits to the waiters that now fit before it returns;
 * - abort and timeout remove the waiter in O(1) and can never lose or duplicate a permit.
 *
 * @example
 * ```ts
 * import { Semaphore } from "sluice";
 * const semaphore = new Semaphore(5);
 * const pages = await Promise.all(urls.map((url) => semaphore.run(() => fetch(url))));
 * ```
 */
export class Semaphore implements Limiter {
  /** Optional name, used in error messages and statistics. */
  readonly name: string | undefined;
  private limit: number;
  /**
   * Weight currently granted and not yet released.
   * Invariant: `held <= limit` whenever a grant is made; after a shrink it may exceed `limit` until
   * releases bring it down, and nothing is granted meanwhile.
   */
  private held = 0;
  /**
   * Invariant (after every public method returns): the head of `queue`, if any, does not fit
   * (`weightOf(head.request) > limit - held`); otherwise dispatch would have granted it.
   */
  private readonly queue: WaitQueue<Request, Grant>;
  private idleResolvers: (() => void)[] | undefined = undefined;
  private readonly clock: Clock;
  private counters = { granted: 0, timedOut: 0, aborted: 0, rejected: 0 };
  /** What error messages call this primitive; a {@link Mutex} sets "mutex" on the semaphore it wraps. */
  private kind = "semaphore";

  /**
   * @param capacity - permits available: an integer >= 0, or `Infinity`.
   * @throws RangeError if `capacity` is negative, fractional or NaN; TypeError if it is not a number, or
   * if `options` is not an object, `name` not a string or `clock` not a {@link Clock}.
   */
  constructor(capacity: number, options: SemaphoreOptions = {}) {
    this.limit = checkCapacity(capacity);
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`options must be an object; got ${describe(options)}`);
    }
    this.name = checkName(options.name);
    this.clock = checkClock(options.clock) ?? systemClock;
    this.queue = new WaitQueue<Request, Grant>(
      this.clock,
      (waiter, reason, wasHead) => this.onCancel(waiter, reason, wasHead),
      () => this.subject(),
    );
  }

  /**
   * The number of permits. Settable at run time: growing wakes the waiters that now fit; shrinking
   * takes effect as permits come back (nothing held is revoked), and waiters whose weight can no longer
   * ever fit are rejected with a `RangeError`.
   */
  get capacity(): number {
    return this.limit;
  }
  set capacity(value: number) {
    const capacity = checkCapacity(value);
    const shrinking = capacity < this.limit;
    this.limit = capacity;
    if (shrinking) {
      this.queue.forEach((waiter) => {
        const weight = weightOf(waiter.request);
        if (weight > capacity) {
          this.counters.rejected++;
          this.queue.reject(waiter, this.tooHeavy(weight));
        }
      });
    }
    this.dispatch();
    this.notifyIfIdle();
  }

  /** `capacity - inUse`: permits free right now. Negative after a shrink below what is held. */
  get available(): number {
    return this.limit - this.held;
  }

  /** Weight held right now. */
  get inUse(): number {
    return this.held;
  }

  /** How many callers are waiting (callers, not weight). */
  get waiting(): number {
    return this.queue.size;
  }

  /**
   * Whether an `acquire()` of weight 1 at priority 0 would wait right now (asyncio's `locked()`):
   * too few permits free, or someone already waiting ahead. Exactly when `tryAcquire()` fails.
   */
  isLocked(): boolean {
    return !(this.queue.isFirstInLine(0) && this.held + 1 <= this.limit);
  }

  /**
   * Waits until `weight` permits can be granted and returns them as a {@link Permit}.
   *
   * Rejects (never throws) with a `RangeError`/`TypeError` for bad options, a `RangeError` when
   * `weight > capacity`, `signal.reason` if the signal aborts first (at once if it already has), and
   * a `TimeoutError` when `timeout` elapses.
   *
   * @example
   * ```ts
   * await using permit = await semaphore.acquire({ weight: 2, timeout: 5_000 });
   * // ... at most `capacity` weight runs here; released at the end of the block
   * ```
   */
  acquire(options?: AcquireOptions): Promise<Permit> {
    if (options === undefined && this.queue.size === 0 && this.held < this.limit) {
      return Promise.resolve(this.grantNow(1, NEVER_ABORTED));
    }
    return this.acquireWith(options) as Promise<Permit>;
  }

  /**
   * Takes `weight` permits if that is possible right now without waiting and without passing anyone
   * already in line; otherwise returns `undefined`.
   *
   * @throws RangeError/TypeError for a bad weight (including one above the capacity).
   */
  tryAcquire(weight = 1): Permit | undefined {
    checkWeight(weight);
    if (weight > this.limit) throw this.tooHeavy(weight);
    if (!this.queue.isFirstInLine(0) || weight > this.limit - this.held) return undefined;
    return this.grantNow(weight, NEVER_ABORTED);
  }

  /**
   * Runs `fn` once admitted, and releases when it settles — returned, thrown (also synchronously) or
   * rejected. `fn` runs in the caller's async context (AsyncLocalStorage) and receives the caller's
   * signal, which after the grant means "stop the work" rather than "stop waiting".
   *
   * @example
   * ```ts
   * const user = await semaphore.run((signal) => fetch(`/users/${id}`, { signal }), { timeout: 10_000 });
   * ```
   */
  run<T>(fn: (signal: AbortSignal) => T | PromiseLike<T>, options?: AcquireOptions): Promise<T> {
    // The uncontended, option-free path is the hot one: no permit object, no async frame.
    if (options === undefined && this.queue.size === 0 && this.held < this.limit && typeof fn === "function") {
      this.held++;
      this.counters.granted++;
      let result: T | PromiseLike<T>;
      try {
        result = fn(NEVER_ABORTED);
      } catch (error) {
        this.giveBack(1);
        return Promise.reject(error);
      }
      return Promise.resolve(result).then(this.releaseOneAndReturn, this.releaseOneAndThrow) as Promise<T>;
    }
    try {
      checkFunction(fn, "fn");
    } catch (error) {
      return Promise.reject(error);
    }
    return this.acquireWith(options, fn) as Promise<T>;
  }

  /**
   * Wraps `fn` so that every call goes through {@link Semaphore.run} with `options`.
   *
   * @example
   * ```ts
   * const limitedFetch = semaphore.wrap((url: string) => fetch(url));
   * ```
   */
  wrap<A extends unknown[], R>(
    fn: (...args: A) => R | PromiseLike<R>,
    options?: AcquireOptions,
  ): (...args: A) => Promise<R> {
    checkFunction(fn, "fn");
    return (...args: A) => this.run(() => fn(...args), options);
  }

  /** Resolves once nothing is held and nobody waits (at once if that is so now). */
  onIdle(): Promise<void> {
    if (this.held === 0 && this.queue.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      if (this.idleResolvers === undefined) this.idleResolvers = [];
      this.idleResolvers.push(resolve);
    });
  }

  /**
   * Rejects every waiting caller with `reason` — by default an `AbortError` `DOMException`, the value
   * `AbortSignal.abort().reason` gives. Permits already held are not affected.
   */
  clear(reason: unknown = defaultAbortReason()): void {
    this.counters.rejected += this.queue.size;
    this.queue.rejectAll(reason);
    this.notifyIfIdle();
  }

  /** @internal For the model tests: the queue its callers wait in. */
  [waitQueues](): readonly SelfChecking[] {
    return [this.queue];
  }

  /** A snapshot of the state and lifetime counters. */
  statistics(): SemaphoreStatistics {
    let waitingWeight = 0;
    this.queue.forEachRequest((request) => {
      waitingWeight += weightOf(request);
    });
    return {
      name: this.name,
      capacity: this.limit,
      available: this.available,
      inUse: this.held,
      waiting: this.queue.size,
      waitingWeight,
      ...this.counters,
    };
  }

  /**
   * Every `acquire()` with options, and every `run()` that cannot start on the fast path (then `fn` is
   * given: the promise is the run's result instead of a Permit).
   */
  private acquireWith(options: AcquireOptions | undefined, fn?: RunFunction): Promise<unknown> {
    let weight = 1;
    let priority = 0;
    let signal: AbortSignal | undefined;
    let timeout = Number.POSITIVE_INFINITY;
    try {
      if (options !== undefined) {
        if (typeof options !== "object" || options === null) {
          throw new TypeError(`options must be an object; got ${describe(options)}`);
        }
        if (options.weight !== undefined) weight = checkWeight(options.weight);
        if (options.priority !== undefined) priority = checkPriority(options.priority);
        if (options.timeout !== undefined) timeout = checkTimeout(options.timeout);
        signal = checkSignal(options.signal);
      }
      // A request that can never fit would block everyone behind it forever (head-of-line): refuse it.
      if (weight > this.limit) throw this.tooHeavy(weight);
    } catch (error) {
      return Promise.reject(error);
    }
    // An already-aborted signal never enters the queue, even if permits are free.
    if (signal?.aborted) return Promise.reject(signal.reason);
    // A request that sorts to the head and fits is served at once, so a light high-priority request
    // passes a heavy low-priority head that is still waiting for room.
    if (this.queue.isFirstInLine(priority) && weight <= this.limit - this.held) {
      if (fn !== undefined) return this.runNow(fn, weight, signal ?? NEVER_ABORTED);
      return Promise.resolve(this.grantNow(weight, signal ?? NEVER_ABORTED));
    }
    if (timeout === 0) return Promise.reject(new TimeoutError(0, this.queue.timeoutMessage(0)));
    if (fn === undefined) return this.queue.enqueue(weight, priority, signal, timeout);
    const request = options === undefined ? fn : new RunRequest(fn, weight, signal ?? NEVER_ABORTED);
    // The reaction is attached here, in the caller's step, so `fn` later runs in the caller's async
    // context (AsyncLocalStorage), as it would after an `await` in the caller's own code.
    return (this.queue.enqueue(request, priority, signal, timeout) as Promise<SemaphoreWaiter>).then(this.startQueued);
  }

  /** Takes `weight` and calls `fn` in this same step; gives the weight back when the result settles. */
  private runNow(fn: RunFunction, weight: number, signal: AbortSignal): Promise<unknown> {
    this.held += weight;
    this.counters.granted++;
    let result: unknown;
    try {
      result = fn(signal);
    } catch (error) {
      this.giveBack(weight);
      return Promise.reject(error);
    }
    if (weight === 1) return Promise.resolve(result).then(this.releaseOneAndReturn, this.releaseOneAndThrow);
    return Promise.resolve(result).then(
      (value) => {
        this.giveBack(weight);
        return value;
      },
      (error: unknown) => {
        this.giveBack(weight);
        throw error;
      },
    );
  }

  /**
   * Starts a queued run once its grant arrives (a reaction `acquireWith` attached in the caller's step).
   * Its weight entered `held` at the grant (hand-off), and every path from here gives it back exactly
   * once: a synchronous throw at once, otherwise when the result settles.
   *
   * The release hangs on `settled` as its first reaction, and the caller's promise (the one `then`
   * derived for this reaction) adopts `settled` afterwards, so the release happens before the caller
   * sees the result; a rejection still reaches the caller's promise, which reports it if unhandled.
   */
  private readonly startQueued = (waiter: SemaphoreWaiter): Promise<unknown> => {
    const request = waiter.request as RunFunction | RunRequest;
    let result: unknown;
    if (typeof request === "function") {
      try {
        result = request(NEVER_ABORTED);
      } catch (error) {
        this.giveBack(1);
        throw error;
      }
      const settled = Promise.resolve(result);
      settled.then(this.releaseOne, this.releaseOne);
      return settled;
    }
    const weight = request.weight;
    try {
      result = request.fn(request.signal);
    } catch (error) {
      this.giveBack(weight);
      throw error;
    }
    const settled = Promise.resolve(result);
    const release = () => this.giveBack(weight);
    settled.then(release, release);
    return settled;
  };

  private grantNow(weight: number, signal: AbortSignal): Permit {
    this.held += weight;
    this.counters.granted++;
    return new SemaphorePermit(this, weight, signal);
  }

  /** Serves waiters from the head while the head fits; stops at the first that does not. */
  private dispatch(): void {
    const queue = this.queue;
    // Mid-abort (a signal shared with the waiter just cancelled, or a release made by the caller's own
    // abort listener), the head's signal may have aborted before its listener ran: the abort wins.
    for (let head = queue.headToGrant(); head !== undefined; head = queue.headToGrant()) {
      const request = head.request;
      const weight = weightOf(request);
      if (weight > this.limit - this.held) break;
      this.held += weight;
      this.counters.granted++;
      if (typeof request === "number") {
        queue.grant(head, new SemaphorePermit(this, weight, head.cancellation?.signal ?? NEVER_ABORTED));
      } else {
        // A queued run is granted its own waiter; `startQueued`, already attached, makes the call.
        queue.grant(head, head);
      }
    }
  }

  /** Takes `weight` back and hands it on in the same synchronous step. Called by permits. */
  private giveBack(weight: number): void {
    this.held -= weight;
    if (this.queue.size !== 0) this.dispatch();
    if (this.held === 0 && this.idleResolvers !== undefined) this.notifyIfIdle();
  }

  private readonly releaseOneAndReturn = <T>(value: T): T => {
    this.giveBack(1);
    return value;
  };

  private readonly releaseOneAndThrow = (error: unknown): never => {
    this.giveBack(1);
    throw error;
  };

  /** Returns nothing, so the side chain it ends never rejects (the caller's own chain reports errors). */
  private readonly releaseOne = (): void => {
    this.giveBack(1);
  };

  private onCancel(_waiter: SemaphoreWaiter, reason: CancelReason, wasHead: boolean): void {
    if (reason === "abort") this.counters.aborted++;
    else this.counters.timedOut++;
    // The head may have been what blocked the rest (head-of-line): the next one may fit now.
    if (wasHead) this.dispatch();
    this.notifyIfIdle();
  }

  private notifyIfIdle(): void {
    const resolvers = this.idleResolvers;
    if (resolvers === undefined || this.held !== 0 || this.queue.size !== 0) return;
    this.idleResolvers = undefined;
    for (const resolve of resolvers) resolve();
  }

  private tooHeavy(weight: number): RangeError {
    return new RangeError(
      `weight ${weight} is above the capacity ${this.limit} of ${this.subject()}; it could never be granted`,
    );
  }

  private subject(): string {
    return this.name === undefined ? `the ${this.kind}` : `${this.kind} ${JSON.stringify(this.name)}`;
  }
}
