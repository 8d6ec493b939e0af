/**
 * Semaphore: at most `capacity` permits held at once, weighted, with priorities, cancellation and
 * run-time resizing. Mutex is a Semaphore of capacity 1.
 */
import { Admission, type LimiterCounters, type LimiterStatistics } from "./admission.js";
import {
  checkCapacity,
  checkClock,
  checkFunction,
  checkName,
  checkOptionNames,
  checkWeight,
  optionNames,
} from "./arguments.js";
import { type Clock, systemClock } from "./clock.js";
import { describe } from "./describe.js";
import { identify, type LimiterIdentity } from "./diagnostics.js";
import { defineDisposeSymbols } from "./dispose.js";
import { defaultAbortReason, weightAboveCapacity } from "./errors.js";
import { type AcquireOptions, type Limiter, NEVER_ABORTED, type Permit } from "./limiter.js";
import { HeldPermit, runHeld, runHolding } from "./permit.js";
import { ACQUIRE_OPTIONS, type CheckedAcquireOptions, checkAcquireOptions, checkRunArguments } from "./wait-options.js";
import type { SelfChecking, Waiter, WaitQueue } from "./wait-queue.js";

defineDisposeSymbols();

/** Options for {@link Semaphore}. */
export interface SemaphoreOptions {
  /** Shows up in error messages and statistics. */
  name?: string;
  /** Time source for timeouts; defaults to the global timers. */
  clock?: Clock;
}

export const SEMAPHORE_OPTIONS = /* @__PURE__ */ optionNames<SemaphoreOptions>({ name: true, clock: true });

/** A snapshot of a semaphore's state and lifetime counters, for logs and metrics. */
export interface SemaphoreStatistics extends LimiterStatistics {
  /** The weight the waiting callers ask for, together. */
  waitingWeight: number;
}

/** The function a `run()` admits. */
type RunFunction = (signal: AbortSignal, permit: Permit) => unknown;

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
 * an async frame: a million queued runs cost their waiters and promises, nothing more; its permit is
 * made when it starts.
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
   * Invariant (after every public method returns): the head of the queue, if any, does not fit
   * (`weightOf(head.request) > limit - held`); otherwise dispatch would have granted it.
   */
  private readonly admission: Admission<Request, Grant>;
  /** The admission's queue and counters, kept at hand for the fast paths. */
  private readonly queue: WaitQueue<Request, Grant>;
  private idleResolvers: (() => void)[] | undefined = undefined;
  /** What error messages call this primitive; a Mutex over it sets "mutex". */
  private kind = "semaphore";
  /**
   * @internal Called each time the semaphore becomes quiet (nothing held, nobody waiting): a keyed
   * semaphore drops the key then. One field rather than `onIdle()` promises: a key goes quiet often.
   */
  onQuiet: (() => void) | undefined = undefined;
  /** Takes a permit's weight back: one function for every permit of this semaphore. */
  private readonly giveBackPermit = (permit: HeldPermit): void => this.giveBack(permit.weight);
  /** What its `sluice:acquire` / `sluice:hold` events name. */
  private readonly identity: LimiterIdentity;

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
    checkOptionNames(options, SEMAPHORE_OPTIONS, "the new Semaphore() options");
    this.name = checkName(options.name);
    const clock = checkClock(options.clock) ?? systemClock;
    this.identity = identify(this, this.name, "semaphore", "memory", clock);
    this.admission = new Admission<Request, Grant>(
      {
        impossible: (request) => {
          const weight = weightOf(request);
          // A request that can never fit would block everyone behind it forever (head-of-line).
          return weight > this.limit ? this.tooHeavy(weight) : undefined;
        },
        fits: (request) => weightOf(request) <= this.limit - this.held,
        take: (request, signal, waiter) => {
          const weight = weightOf(request);
          this.held += weight;
          // A queued run is granted its own waiter; `startQueued`, already attached, makes the call.
          return typeof request === "number" || waiter === undefined
            ? new HeldPermit(weight, signal, this.giveBackPermit, this.identity)
            : waiter;
        },
        weight: weightOf,
      },
      clock,
      () => this.subject(),
      () => this.notifyIfIdle(),
      this.identity,
    );
    this.queue = this.admission.queue;
  }

  /**
   * The number of permits. Settable at run time: growing wakes the waiters that now fit; shrinking
   * takes effect as permits come back (nothing held is revoked), and waiters whose weight can no longer
   * ever fit are rejected with a `RangeError`.
   */
  get capacity(): number {
    return this.limit;
  }
  /**
   * Changes the capacity, as described above.
   * @throws TypeError if `value` is not a number; RangeError if it is not an integer >= 0 or `Infinity`.
   */
  set capacity(value: number) {
    const capacity = checkCapacity(value);
    const shrinking = capacity < this.limit;
    this.limit = capacity;
    if (shrinking) {
      this.queue.forEach((waiter) => {
        const weight = weightOf(waiter.request);
        if (weight > capacity) this.admission.reject(waiter, this.tooHeavy(weight));
      });
    }
    this.admission.dispatch();
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
    // The admission step's grant at once, for the commonest call: no options, nobody waiting, room.
    if (options === undefined && this.queue.size === 0 && this.held < this.limit) {
      return Promise.resolve(this.grantOne());
    }
    let checked: CheckedAcquireOptions;
    try {
      checked = checkAcquireOptions(options);
    } catch (error) {
      return Promise.reject(error);
    }
    const granted = this.admission.admit(checked.weight, checked);
    return granted instanceof Promise ? (granted as Promise<Permit>) : Promise.resolve(granted as Permit);
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
    this.held += weight;
    this.admission.grantedNow(weight);
    return new HeldPermit(weight, NEVER_ABORTED, this.giveBackPermit, this.identity);
  }

  /**
   * Runs `fn` once admitted, and releases when it settles — returned, thrown (also synchronously) or
   * rejected. `fn` runs in the caller's async context (AsyncLocalStorage) and receives the caller's
   * signal, which after the grant means "stop the work" rather than "stop waiting", and the permit.
   *
   * @example
   * ```ts
   * const user = await semaphore.run((signal) => fetch(`/users/${id}`, { signal }), { timeout: 10_000 });
   * ```
   */
  run<T>(fn: (signal: AbortSignal, permit: Permit) => T | PromiseLike<T>, options?: AcquireOptions): Promise<T> {
    // The uncontended, option-free path is the hot one: no async frame until the work's own.
    if (options === undefined && this.queue.size === 0 && this.held < this.limit && typeof fn === "function") {
      return runHeld(fn, this.grantOne());
    }
    let checked: CheckedAcquireOptions;
    try {
      checked = checkRunArguments(fn, options);
    } catch (error) {
      return Promise.reject(error);
    }
    const signal = checked.signal ?? NEVER_ABORTED;
    const request: Request = options === undefined ? fn : new RunRequest(fn as RunFunction, checked.weight, signal);
    const granted = this.admission.admit(request, checked);
    if (!(granted instanceof Promise)) return runHolding(fn, granted as Permit);
    // The reaction is attached here, in the caller's step, so `fn` later runs in the caller's async
    // context (AsyncLocalStorage), as it would after an `await` in the caller's own code.
    return (granted as Promise<SemaphoreWaiter>).then(this.startQueued) as Promise<T>;
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
    // Checked now: a misspelt option would otherwise surface only as every call's rejection.
    if (typeof options === "object" && options !== null) checkOptionNames(options, ACQUIRE_OPTIONS, "the wrap options");
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
    this.admission.rejectAll(reason);
    this.notifyIfIdle();
  }

  /** @internal For the model tests: the admission (its queue and counters) and the semaphore itself. */
  "~selfChecks"(): readonly SelfChecking[] {
    return [this.admission, { assertInvariants: () => this.assertInvariants() }];
  }

  /** @internal Throws an Error naming the first broken invariant of the semaphore's own state. */
  assertInvariants(): void {
    if (!Number.isSafeInteger(this.held) || this.held < 0) {
      throw new Error(`semaphore invariant broken: held is a whole weight >= 0; got ${this.held}`);
    }
    // After every public call, dispatch has served every head that fits: one that fits is a lost wake-up.
    const head = this.queue.head;
    if (head !== undefined && weightOf(head.request) <= this.limit - this.held) {
      throw new Error(
        `semaphore invariant broken: the head waits though it fits (weight ${weightOf(head.request)}, ${this.limit - this.held} free)`,
      );
    }
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
      ...this.admission.counters,
      waitingWeight,
    };
  }

  /** @internal The lifetime counters, without a snapshot (a keyed semaphore reads them on a drop). */
  counters(): LimiterCounters {
    return this.admission.counters;
  }

  /** @internal For a {@link Mutex} over this semaphore: what messages call it. */
  nameAs(kind: string): void {
    this.kind = kind;
    this.identity.kind = kind;
  }

  /** The admission step's grant at once of weight 1 without a signal (the fast paths). */
  private grantOne(): HeldPermit {
    this.held++;
    this.admission.grantedNow();
    return new HeldPermit(1, NEVER_ABORTED, this.giveBackPermit, this.identity);
  }

  /**
   * Starts a queued run once its grant arrives (a reaction `run` attached in the caller's step). Its
   * weight entered `held` at the grant (hand-off); its permit, made now, gives it back exactly once.
   */
  private readonly startQueued = (waiter: SemaphoreWaiter): Promise<unknown> => {
    const request = waiter.request as RunFunction | RunRequest;
    if (typeof request === "function") {
      return runHolding(request, new HeldPermit(1, NEVER_ABORTED, this.giveBackPermit, this.identity));
    }
    return runHolding(request.fn, new HeldPermit(request.weight, request.signal, this.giveBackPermit, this.identity));
  };

  /** Takes `weight` back and hands it on in the same synchronous step. Called by permits. */
  private giveBack(weight: number): void {
    this.held -= weight;
    if (this.queue.size !== 0) this.admission.dispatch();
    if (this.held === 0 && (this.idleResolvers !== undefined || this.onQuiet !== undefined)) this.notifyIfIdle();
  }

  private notifyIfIdle(): void {
    if (this.held !== 0 || this.queue.size !== 0) return;
    this.onQuiet?.();
    const resolvers = this.idleResolvers;
    if (resolvers === undefined) return;
    this.idleResolvers = undefined;
    for (const resolve of resolvers) resolve();
  }

  private tooHeavy(weight: number): RangeError {
    return weightAboveCapacity(weight, this.limit, this.subject());
  }

  private subject(): string {
    return this.name === undefined ? `the ${this.kind}` : `${this.kind} ${JSON.stringify(this.name)}`;
  }
}
