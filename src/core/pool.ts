/**
 * Pool: reusable resources (database connections, browser pages, sockets) created lazily, lent one
 * caller at a time, validated, evicted when idle, capped in total. Callers that find nothing to
 * borrow go through the one admission step and wait in its queue; their grant is a lease.
 */
import { Admission, type LimiterStatistics } from "./admission.js";
import { checkCapacity, checkClock, checkFunction, checkName, checkOptionNames, optionNames } from "./arguments.js";
import { type Clock, systemClock, type TimerHandle } from "./clock.js";
import { Deque } from "./deque.js";
import { describe } from "./describe.js";
import { type Duration, toMilliseconds } from "./duration.js";
import { ClosedError, TimeoutError } from "./errors.js";
import { NEVER_ABORTED } from "./limiter.js";
import { linkSignals } from "./linked-signal.js";
import { type GiveBack, HeldPermit, runHolding } from "./permit.js";
import { backoffDelay } from "./sleep.js";
import { type CheckedWaitOptions, checkWaitOptions, type WaitOptions } from "./wait-options.js";
import type { SelfChecking, WaitQueue } from "./wait-queue.js";

/**
 * A borrowed resource. Give it back with `release()`, or with `destroy()` if it is broken (a
 * connection that errored); `using` / `await using` release it at the end of the block unless one of
 * those was already called.
 */
export interface Lease<T> extends Disposable, AsyncDisposable {
  /** The resource. */
  readonly value: T;
  /** Returns the resource to the pool. A second `release()` or `destroy()` throws `ReleasedError`. */
  release(): void;
  /**
   * Returns the resource to be destroyed instead of reused; the pool creates a replacement if someone
   * needs one. Throws `ReleasedError` if the lease was already given back.
   */
  destroy(): void;
}

/** Where an error reported to {@link PoolOptions.onError} came from. */
export type PoolErrorEvent =
  | {
      /** `create` failed: threw, rejected or outlasted `createTimeout`. */
      phase: "create";
      /** Which attempt of this create failed, from 1. */
      attempt: number;
      /** Whether the pool will try again (after a backoff delay). */
      willRetry: boolean;
    }
  | {
      /** `validate` threw (a resource it rejects by returning false is no error). */
      phase: "validate";
    }
  | {
      /** `destroy` failed or outlasted `destroyTimeout`; the resource counts as gone either way. */
      phase: "destroy";
    };

/** Options for {@link Pool}. */
export interface PoolOptions<T> {
  /**
   * Makes a resource. Receives a signal that aborts when the pool is drained, so a slow connect can
   * give up. A failure is reported to `onError` and retried with exponential backoff (see `createRetry`).
   */
  create: (signal: AbortSignal) => T | PromiseLike<T>;
  /** Disposes of a resource. Failures are reported to `onError`; the resource counts as gone either way. */
  destroy?: (value: T) => void | PromiseLike<void>;
  /**
   * Says whether a resource is still usable. Runs when an idle resource is borrowed (and/or when one is
   * returned, see `validateOn`); a resource that fails (returns false or throws) is destroyed and the
   * borrower is served with another or a new one, without noticing. Freshly created resources are not
   * validated.
   */
  validate?: (value: T) => boolean | PromiseLike<boolean>;
  /** When `validate` runs. Default `"borrow"`. */
  validateOn?: "borrow" | "return" | "both";
  /** The most resources that exist at once (lent, idle, being created, validated or destroyed). */
  max: number;
  /** Resources created at start and kept, even when idle. Default 0. */
  min?: number;
  /** Idle resources beyond `min` are destroyed after this long unused. Default (and `Infinity`): never. */
  idleTimeout?: Duration;
  /** A resource is destroyed after it has been lent this many times. Default: no limit. */
  maxUses?: number;
  /**
   * Backoff for failing creates: attempt `n` is retried after `min(delay * 2^(n-1), maxDelay)`. Once a
   * create has failed `attempts` times in a row, the callers waiting for it are rejected with its error
   * (a broken factory fails fast instead of hanging them); it keeps retrying only to keep `min` warm.
   * Defaults: `{ attempts: 3, delay: 100, maxDelay: 10_000 }`.
   */
  createRetry?: {
    /** Failures in a row after which the waiting callers are rejected. Default 3. */
    attempts?: number;
    /** The wait before the first retry, doubled for each further one. Default 100 ms. */
    delay?: Duration;
    /** The longest wait between two attempts. Default 10 s. */
    maxDelay?: Duration;
  };
  /**
   * The longest one `create` may take. When it passes, the signal `create` received aborts with a
   * `TimeoutError` and the attempt counts as failed (reported, then retried as `createRetry` says), so a
   * connect that hangs never holds a slot for good. A resource that still arrives later is destroyed at
   * once, never lent. Default: no limit.
   */
  createTimeout?: Duration;
  /**
   * The longest one `destroy` may take. When it passes, a `TimeoutError` is reported (phase
   * `"destroy"`) and the resource's slot is freed, as after a failed destroy. Default: no limit.
   */
  destroyTimeout?: Duration;
  /** Told about every failed create, validate that threw, and failed destroy. */
  onError?: (error: unknown, event: PoolErrorEvent) => void;
  /** Shows up in error messages and statistics. */
  name?: string;
  /** Time source for timeouts, idle eviction and create backoff; defaults to the global timers. */
  clock?: Clock;
}

const POOL_OPTIONS = /* @__PURE__ */ optionNames<PoolOptions<unknown>>({
  create: true,
  destroy: true,
  validate: true,
  validateOn: true,
  max: true,
  min: true,
  idleTimeout: true,
  maxUses: true,
  createRetry: true,
  createTimeout: true,
  destroyTimeout: true,
  onError: true,
  name: true,
  clock: true,
});
const CREATE_RETRY_OPTIONS = /* @__PURE__ */ optionNames<NonNullable<PoolOptions<unknown>["createRetry"]>>({
  attempts: true,
  delay: true,
  maxDelay: true,
});

/**
 * A snapshot of a pool's state and lifetime counters, for logs and metrics. The core fields speak of
 * leases: `capacity` is `max`, `inUse` the resources lent out, `available` how many more could be lent
 * (idle or yet to be created), `granted` the leases handed out; `rejected` counts callers refused by a
 * drained pool or dropped by `drain()` or by a create that kept failing.
 */
export interface PoolStatistics extends LimiterStatistics {
  /** Resources kept even when idle. */
  min: number;
  /** Resources that exist (idle + in use + being validated + being destroyed). */
  size: number;
  /** Resources ready to lend. */
  idle: number;
  /** Creates in flight or waiting for their retry. */
  pendingCreates: number;
  /** Resources being checked by `validate`. */
  validating: number;
  /** Resources whose `destroy` has not settled yet. */
  destroying: number;
  /** Whether `drain()` was called. */
  draining: boolean;
  /** Resources created since the start (late arrivals of timed-out creates included). */
  created: number;
  /** Resources destroyed since the start. */
  destroyed: number;
  /** Creates that failed (threw, rejected or timed out). */
  createFailures: number;
  /** Resources `validate` rejected (returned false or threw). */
  validationFailures: number;
  /** Idle resources destroyed by `idleTimeout`. */
  evicted: number;
}

/** One pooled resource and its history. */
class Resource<T> {
  uses = 0;
  /** When it last became idle (clock time); the idle list is sorted by it, oldest first. */
  idleSince = 0;
  constructor(readonly value: T) {}
}

/**
 * The one permit, holding a resource: release, disposal and the release-twice error are HeldPermit's;
 * `destroy()` is a release that marks the resource broken first, so the pool's one give-back function
 * serves both.
 */
class PoolLease<T> extends HeldPermit implements Lease<T> {
  // Declared, not initialised in the class body, as HeldPermit's are: plain stores in the constructor.
  /** @internal The resource lent. */
  declare readonly resource: Resource<T>;
  /** @internal Set by `destroy()`: the pool retires the resource instead of reusing it. */
  declare broken: boolean;
  constructor(resource: Resource<T>, giveBack: GiveBack<PoolLease<T>, void>) {
    // A lease is not handed to work through a signal (`use` passes the value), so it carries none.
    super(1, NEVER_ABORTED, giveBack);
    this.resource = resource;
    this.broken = false;
  }
  get value(): T {
    return this.resource.value;
  }
  destroy(): void {
    // Marked only while held: a second give-back must throw ReleasedError and change nothing.
    if (this.isHeld) this.broken = true;
    this.release();
  }
}

/** One create, across its retries. */
interface CreateJob {
  attempt: number;
}

/**
 * A pool of reusable resources.
 *
 * Use it when the things you limit are objects you reuse — connections, browser pages, sessions — so
 * each caller needs *one of them*, not just a turn. For plain "at most N at once", use `Semaphore`.
 *
 * Guarantees:
 * - never more than `max` resources exist (counting those being created, validated and destroyed);
 * - a resource is lent to one borrower at a time; waiting borrowers are served by priority, then arrival,
 *   and a returned resource goes straight to the next borrower in the same synchronous step (with
 *   borrow validation, straight into its check, and from there to the first borrower in line);
 * - a failing `create` never keeps a slot: it is retried with backoff while someone needs it, and after
 *   `createRetry.attempts` failures in a row its waiters are rejected with the error instead of hanging;
 * - `drain()` rejects waiters with `ClosedError`, waits for every lease to come back, and destroys every
 *   resource exactly once.
 *
 * @example
 * ```ts
 * import { Pool } from "sluice";
 * const pool = new Pool({
 *   create: () => connect(url),
 *   destroy: (connection) => connection.close(),
 *   validate: (connection) => connection.isAlive(),
 *   max: 10,
 *   idleTimeout: "30s",
 * });
 * const rows = await pool.use((connection) => connection.query("select 1"));
 * await pool.drain();
 * ```
 */
export class Pool<T> {
  /** Optional name, used in error messages and statistics. */
  readonly name: string | undefined;
  /** The most resources that exist at once. */
  readonly max: number;
  /** Resources kept even when idle. */
  readonly min: number;
  private readonly factory: (signal: AbortSignal) => T | PromiseLike<T>;
  private readonly destroyer: ((value: T) => void | PromiseLike<void>) | undefined;
  private readonly validator: ((value: T) => boolean | PromiseLike<boolean>) | undefined;
  private readonly validateOnBorrow: boolean;
  private readonly validateOnReturn: boolean;
  private readonly idleTimeout: number;
  private readonly maxUses: number;
  private readonly retryAttempts: number;
  private readonly retryDelay: number;
  private readonly retryMaxDelay: number;
  private readonly createTimeout: number;
  private readonly destroyTimeout: number;
  private readonly onError: ((error: unknown, event: PoolErrorEvent) => void) | undefined;
  private readonly clock: Clock;

  /**
   * The admission step every borrower goes through; every lease anywhere in the pool is granted
   * through it, so its counters count them all.
   */
  private readonly admission: Admission<undefined, Lease<T>>;
  /**
   * Borrowers waiting (the admission's queue). Invariant (after every public method and callback
   * returns): if anyone waits, no idle resource can be lent at once — the idle list is empty, or borrow
   * validation is on and every waiter already has a resource being checked for it
   * (`validating >= waiting`) — and either enough are on their way (`validating + creating >= waiting`)
   * or the pool is full (`size + creating === max`).
   */
  private readonly queue: WaitQueue<undefined, Lease<T>>;
  /** Idle resources, oldest first. Borrowing takes the newest (warm, and lets the oldest expire). */
  private readonly idleResources = new Deque<Resource<T>>();
  private lentCount = 0;
  private validating = 0;
  private destroying = 0;
  /**
   * Creates in flight or waiting for a retry: each holds a slot.
   * Invariant: `size + creating <= max`, where `size = idle + lent + validating + destroying`.
   */
  private creating = 0;
  private readonly retryTimers = new Set<TimerHandle>();
  /** The single idle-eviction timer, armed for the oldest idle resource's expiry. */
  private idleTimer: TimerHandle | undefined = undefined;
  private readonly createController = new AbortController();
  private drained: Promise<void> | undefined = undefined;
  private resolveDrained: (() => void) | undefined = undefined;
  private counters = { created: 0, destroyed: 0, createFailures: 0, validationFailures: 0, evicted: 0 };
  /** Takes a lease's resource back: one function for every lease of this pool. */
  private readonly giveBackLease = (lease: PoolLease<T>): void => this.giveBack(lease.resource, lease.broken);

  /** @throws TypeError/RangeError naming the option and the value. Starts creating `min` resources. */
  constructor(options: PoolOptions<T>) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`options must be an object; got ${describe(options)}`);
    }
    checkOptionNames(options, POOL_OPTIONS, "the new Pool() options");
    checkFunction(options.create, "create");
    if (options.destroy !== undefined) checkFunction(options.destroy, "destroy");
    if (options.validate !== undefined) checkFunction(options.validate, "validate");
    if (options.onError !== undefined) checkFunction(options.onError, "onError");
    this.max = checkCapacity(options.max, "max");
    if (this.max < 1) throw new RangeError(`max must be at least 1; got ${this.max}`);
    this.min = options.min === undefined ? 0 : checkCapacity(options.min, "min");
    if (this.min > this.max || this.min === Number.POSITIVE_INFINITY) {
      throw new RangeError(`min must be a finite integer no larger than max (${this.max}); got ${this.min}`);
    }
    const validateOn = options.validateOn ?? "borrow";
    if (validateOn !== "borrow" && validateOn !== "return" && validateOn !== "both") {
      throw new RangeError(`validateOn must be "borrow", "return" or "both"; got ${describe(validateOn)}`);
    }
    this.validator = options.validate;
    this.validateOnBorrow = this.validator !== undefined && validateOn !== "return";
    this.validateOnReturn = this.validator !== undefined && validateOn !== "borrow";
    // Infinity, like leaving it out, means never (as `createTimeout` and `destroyTimeout` read it).
    this.idleTimeout =
      options.idleTimeout === undefined || options.idleTimeout === Number.POSITIVE_INFINITY
        ? Number.POSITIVE_INFINITY
        : toMilliseconds(options.idleTimeout, "idleTimeout");
    this.maxUses = options.maxUses === undefined ? Number.POSITIVE_INFINITY : checkCapacity(options.maxUses, "maxUses");
    if (this.maxUses < 1) throw new RangeError(`maxUses must be at least 1; got ${this.maxUses}`);
    const retry = options.createRetry ?? {};
    if (typeof retry !== "object" || retry === null) {
      throw new TypeError(`createRetry must be an object; got ${describe(retry)}`);
    }
    checkOptionNames(retry, CREATE_RETRY_OPTIONS, "createRetry");
    this.retryAttempts = retry.attempts === undefined ? 3 : checkCapacity(retry.attempts, "createRetry.attempts");
    if (this.retryAttempts < 1)
      throw new RangeError(`createRetry.attempts must be at least 1; got ${this.retryAttempts}`);
    this.retryDelay = retry.delay === undefined ? 100 : toMilliseconds(retry.delay, "createRetry.delay");
    this.retryMaxDelay =
      retry.maxDelay === undefined
        ? 10_000
        : retry.maxDelay === Number.POSITIVE_INFINITY
          ? Number.POSITIVE_INFINITY
          : toMilliseconds(retry.maxDelay, "createRetry.maxDelay");
    this.createTimeout = checkLimit(options.createTimeout, "createTimeout");
    this.destroyTimeout = checkLimit(options.destroyTimeout, "destroyTimeout");
    this.factory = options.create;
    this.destroyer = options.destroy;
    this.onError = options.onError;
    this.name = checkName(options.name);
    this.clock = checkClock(options.clock) ?? systemClock;
    this.admission = new Admission<undefined, Lease<T>>(
      {
        impossible: () => (this.drained === undefined ? undefined : this.closedError()),
        // Only an idle resource that needs no check is lent in the admission step itself; everything
        // else (a check, a create) takes time, so the borrower waits and the pool's dispatch serves it.
        fits: () => this.idleResources.length > 0 && !this.validateOnBorrow,
        take: () => this.lend(this.idleResources.pop() as Resource<T>),
        enqueued: () => this.dispatch(),
      },
      this.clock,
      () => this.subject(),
    );
    this.queue = this.admission.queue;
    this.keepMin();
  }

  /** Resources that exist: idle, in use, being validated or being destroyed. */
  get size(): number {
    return this.idleResources.length + this.lentCount + this.validating + this.destroying;
  }

  /** Resources ready to lend. */
  get idle(): number {
    return this.idleResources.length;
  }

  /** Resources lent out. */
  get inUse(): number {
    return this.lentCount;
  }

  /** Callers waiting for a lease. */
  get waiting(): number {
    return this.queue.size;
  }

  /** Creates in flight or waiting to be retried. */
  get pendingCreates(): number {
    return this.creating;
  }

  /** Whether `drain()` was called. */
  get draining(): boolean {
    return this.drained !== undefined;
  }

  /**
   * Borrows a resource: an idle one (validated first if `validate` runs on borrow), a new one if there
   * is room, or the next one returned.
   *
   * Rejects (never throws) with `ClosedError` after `drain()`, `signal.reason` on abort, a
   * `TimeoutError` after `timeout` ms — `0` means "only if an idle resource can be lent right now",
   * which with borrow validation is never — and the create error if creating failed
   * `createRetry.attempts` times in a row.
   *
   * @example
   * ```ts
   * await using lease = await pool.acquire({ timeout: 5_000 });
   * await lease.value.query("select 1");
   * ```
   */
  acquire(options?: WaitOptions): Promise<Lease<T>> {
    // The admission step for the commonest call, no options, on a pool not drained (nothing to check,
    // nothing aborted, no timeout): a lease now if nobody waits and an idle resource needs no check;
    // otherwise it waits (anyone waiting means nothing idle is lendable at once: see `queue`), and the
    // pool's dispatch starts a check or a create for it. Every borrow of a busy pool takes this path.
    if (options === undefined && this.drained === undefined) {
      if (this.queue.size === 0 && this.idleResources.length > 0 && !this.validateOnBorrow) {
        this.admission.grantedNow();
        return Promise.resolve(this.lend(this.idleResources.pop() as Resource<T>));
      }
      this.admission.requested();
      const lease = this.queue.enqueue(undefined, 0, undefined, Number.POSITIVE_INFINITY);
      this.dispatch();
      return lease;
    }
    let wait: CheckedWaitOptions;
    try {
      wait = checkWaitOptions(options);
    } catch (error) {
      return Promise.reject(error);
    }
    const lease = this.admission.admit(undefined, wait);
    return lease instanceof Promise ? lease : Promise.resolve(lease);
  }

  /**
   * Borrows a resource, runs `fn` with it, and gives it back when `fn` settles, however it settles.
   * `fn` also receives the lease, so it can `lease.destroy()` a resource it found broken.
   *
   * @example
   * ```ts
   * const rows = await pool.use((connection) => connection.query("select * from users"));
   * ```
   */
  use<R>(fn: (value: T, lease: Lease<T>) => R | PromiseLike<R>, options?: WaitOptions): Promise<R> {
    try {
      checkFunction(fn, "fn");
    } catch (error) {
      return Promise.reject(error);
    }
    // runHolding calls `fn` in the step the lease arrives and gives the lease back however `fn` ends.
    return this.acquire(options).then((lease) =>
      runHolding((_signal, held: PoolLease<T>) => fn(held.value, held), lease as PoolLease<T>),
    );
  }

  /**
   * Shuts the pool down: stops lending (waiters and later `acquire`s reject with `ClosedError`),
   * aborts creates in flight, waits for every lease to come back, destroys every resource, and
   * resolves when none is left. Calling it again returns the same promise.
   */
  drain(): Promise<void> {
    if (this.drained !== undefined) return this.drained;
    this.drained = new Promise<void>((resolve) => {
      this.resolveDrained = resolve;
    });
    this.createController.abort(this.closedError());
    // Each waiter gets its own error, so its stack trace is its own.
    this.admission.rejectAll(() => this.closedError());
    if (this.idleTimer !== undefined) this.clock.clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    // A create waiting for its retry holds a slot but no resource: give the slot up now.
    for (const timer of this.retryTimers) {
      this.clock.clearTimeout(timer);
      this.creating--;
    }
    this.retryTimers.clear();
    for (const resource of this.idleResources.drain()) this.retire(resource);
    this.settleDrain();
    return this.drained;
  }

  /** @internal For the model tests: the admission step (its queue and counters). */
  "~selfChecks"(): readonly SelfChecking[] {
    return [this.admission];
  }

  /** A snapshot of the state and lifetime counters. */
  statistics(): PoolStatistics {
    return {
      name: this.name,
      capacity: this.max,
      available: this.max - this.lentCount,
      inUse: this.lentCount,
      waiting: this.queue.size,
      ...this.admission.counters,
      min: this.min,
      size: this.size,
      idle: this.idleResources.length,
      pendingCreates: this.creating,
      validating: this.validating,
      destroying: this.destroying,
      draining: this.drained !== undefined,
      ...this.counters,
    };
  }

  /**
   * Serves waiters with what is idle, starts borrow validations and creates for the rest (no more than
   * are waiting, and never beyond `max`), then tops up to `min`.
   */
  private dispatch(): void {
    const queue = this.queue;
    // A head whose signal aborted before its listener ran (a shared signal, a release from the caller's
    // own abort listener) is withdrawn, not served: the abort came first.
    for (let head = queue.headToGrant(); head !== undefined; head = queue.headToGrant()) {
      const onTheirWay = this.validating + this.creating;
      if (this.idleResources.length > 0) {
        if (!this.validateOnBorrow) {
          this.admission.grant(head, this.lend(this.idleResources.pop() as Resource<T>));
          continue;
        }
        // Creates under way do not count here: an idle resource is checked for a waiter even while a
        // create it might have waited for is connecting, which can be slow and can fail (the waiter
        // would be rejected with the create's error while a good resource sat idle). Whichever
        // arrives second goes to the idle list.
        if (this.validating >= queue.size) break;
        this.validate(this.idleResources.pop() as Resource<T>);
        continue;
      }
      if (onTheirWay >= queue.size || this.drained !== undefined || this.size + this.creating >= this.max) break;
      this.startCreate();
    }
    this.keepMin();
  }

  private keepMin(): void {
    while (
      this.drained === undefined &&
      this.size - this.destroying + this.creating < this.min &&
      this.size + this.creating < this.max
    ) {
      this.startCreate();
    }
  }

  /** Hands `resource` out as a lease; the admission step counts the grant. */
  private lend(resource: Resource<T>): Lease<T> {
    this.lentCount++;
    return new PoolLease(resource, this.giveBackLease);
  }

  /**
   * Puts a resource back into circulation: to the first waiter if it may be lent without a check
   * (`checked`: just created or just validated), otherwise to the idle list, where dispatch validates
   * it for the next borrower if borrow validation is on.
   */
  private accept(resource: Resource<T>, checked: boolean): void {
    const head = this.queue.headToGrant();
    if (head !== undefined && (checked || !this.validateOnBorrow)) {
      this.admission.grant(head, this.lend(resource));
    } else {
      resource.idleSince = this.clock.now();
      this.idleResources.push(resource);
      if (this.idleTimer === undefined && this.idleTimeout !== Number.POSITIVE_INFINITY) this.armIdleTimer();
    }
    this.dispatch();
  }

  /** A lease came back (`broken`: by `destroy()`). */
  private giveBack(resource: Resource<T>, broken: boolean): void {
    this.lentCount--;
    resource.uses++;
    if (broken || this.drained !== undefined || resource.uses >= this.maxUses) {
      this.retire(resource);
      this.dispatch();
      this.settleDrain();
    } else if (this.validateOnReturn) {
      this.validate(resource);
    } else {
      this.accept(resource, false);
    }
  }

  /** Checks a resource; a good one goes back into circulation checked, a bad one is replaced. */
  private validate(resource: Resource<T>): void {
    this.validating++;
    let verdict: boolean | PromiseLike<boolean>;
    try {
      verdict = (this.validator as (value: T) => boolean | PromiseLike<boolean>)(resource.value);
    } catch (error) {
      verdict = Promise.reject(error);
    }
    // Always settle asynchronously, so a synchronous validator cannot re-enter dispatch mid-loop.
    Promise.resolve(verdict).then(
      (valid) => {
        this.validating--;
        if (valid && this.drained === undefined) {
          this.accept(resource, true);
          return;
        }
        if (!valid) this.counters.validationFailures++;
        this.retire(resource);
        this.dispatch();
        this.settleDrain();
      },
      (error: unknown) => {
        this.validating--;
        this.counters.validationFailures++;
        this.report(error, { phase: "validate" });
        this.retire(resource);
        this.dispatch();
        this.settleDrain();
      },
    );
  }

  private startCreate(): void {
    this.creating++;
    this.runCreate({ attempt: 0 });
  }

  private runCreate(job: CreateJob): void {
    job.attempt++;
    const limit = this.createTimeout;
    let signal = this.createController.signal;
    let attempt: AbortController | undefined;
    let timer: TimerHandle | undefined;
    let unlink: (() => void) | undefined;
    // Whichever comes first of the create settling and its timeout decides the attempt; the other is
    // then a late arrival (a resource to destroy, an error nobody waits for).
    let decided = false;
    if (limit !== Number.POSITIVE_INFINITY) {
      attempt = new AbortController();
      // Linked only until the attempt is decided: the drain switch lives as long as the pool, and must
      // not keep a listener per create.
      const link = linkSignals(this.createController.signal, attempt.signal);
      signal = link.signal as AbortSignal;
      unlink = link.dispose;
      timer = this.clock.setTimeout(() => {
        decided = true;
        const error = new TimeoutError(
          limit,
          `create of ${this.subject()} took longer than createTimeout (${limit} ms)`,
        );
        attempt?.abort(error);
        unlink?.();
        this.createFailed(job, error);
      }, limit);
    }
    let result: T | PromiseLike<T>;
    try {
      result = this.factory(signal);
    } catch (error) {
      result = Promise.reject(error);
    }
    Promise.resolve(result).then(
      (value) => {
        if (decided) {
          this.retireLate(value);
          return;
        }
        decided = true;
        unlink?.();
        if (timer !== undefined) this.clock.clearTimeout(timer);
        this.created(value);
      },
      (error: unknown) => {
        if (decided) return;
        decided = true;
        unlink?.();
        if (timer !== undefined) this.clock.clearTimeout(timer);
        this.createFailed(job, error);
      },
    );
  }

  /**
   * A resource whose create had already timed out: destroyed at once, outside the slots (its attempt
   * gave its slot up when it timed out). A failing destroy is reported like any other.
   */
  private retireLate(value: T): void {
    this.counters.created++;
    const destroy = this.destroyer;
    this.counters.destroyed++;
    if (destroy === undefined) return;
    try {
      Promise.resolve(destroy(value)).then(undefined, (error: unknown) => this.report(error, { phase: "destroy" }));
    } catch (error) {
      this.report(error, { phase: "destroy" });
    }
  }

  private created(value: T): void {
    // The slot moves from `creating` to `size` in one step, so the total never exceeds max.
    this.creating--;
    this.counters.created++;
    const resource = new Resource(value);
    if (this.drained !== undefined) {
      this.retire(resource);
      this.settleDrain();
      return;
    }
    this.accept(resource, true);
  }

  private createFailed(job: CreateJob, error: unknown): void {
    this.counters.createFailures++;
    if (this.drained !== undefined) {
      this.report(error, { phase: "create", attempt: job.attempt, willRetry: false });
      this.creating--;
      this.settleDrain();
      return;
    }
    if (job.attempt >= this.retryAttempts) {
      // Waiters beyond what else is on its way were counting on this create: fail them now rather
      // than let them hang on a factory that keeps failing (generic-pool's endless-retry hang).
      const otherwiseOnTheirWay = this.validating + this.creating - 1;
      for (
        let head = this.queue.head;
        head !== undefined && this.queue.size > otherwiseOnTheirWay;
        head = this.queue.head
      ) {
        this.admission.reject(head, error);
      }
    }
    const willRetry = this.createStillNeeded();
    this.report(error, { phase: "create", attempt: job.attempt, willRetry });
    // The hook may have drained the pool: then nothing is retried, and the drain waits for this slot.
    if (!willRetry || this.drained !== undefined) {
      this.creating--;
      this.dispatch();
      this.settleDrain();
      return;
    }
    const delay = backoffDelay(job.attempt, this.retryDelay, this.retryMaxDelay);
    const timer = this.clock.setTimeout(() => {
      this.retryTimers.delete(timer);
      if (this.createStillNeeded()) {
        this.runCreate(job);
      } else {
        this.creating--;
        this.dispatch();
      }
    }, delay);
    this.retryTimers.add(timer);
  }

  /** Whether a create that holds a slot (counted in `creating`) still has someone to serve. */
  private createStillNeeded(): boolean {
    const others = this.validating + this.creating - 1;
    return this.queue.size > others || this.size - this.destroying + this.creating <= this.min;
  }

  /** Destroys a resource; its slot frees when the destroy settles. Never rejects. */
  private retire(resource: Resource<T>): void {
    const destroy = this.destroyer;
    if (destroy === undefined) {
      this.counters.destroyed++;
      return;
    }
    let result: void | PromiseLike<void>;
    try {
      result = destroy(resource.value);
    } catch (error) {
      this.report(error, { phase: "destroy" });
      this.counters.destroyed++;
      return;
    }
    if (result === undefined || typeof (result as PromiseLike<void>).then !== "function") {
      this.counters.destroyed++;
      return;
    }
    this.destroying++;
    const limit = this.destroyTimeout;
    let timer: TimerHandle | undefined;
    // The first of the destroy settling and its timeout frees the slot; the other is ignored.
    let done = false;
    if (limit !== Number.POSITIVE_INFINITY) {
      timer = this.clock.setTimeout(() => {
        done = true;
        this.report(
          new TimeoutError(limit, `destroy took longer than destroyTimeout (${limit} ms) in ${this.subject()}`),
          {
            phase: "destroy",
          },
        );
        this.destroyed();
      }, limit);
    }
    Promise.resolve(result).then(
      () => {
        if (done) return;
        done = true;
        if (timer !== undefined) this.clock.clearTimeout(timer);
        this.destroyed();
      },
      (error: unknown) => {
        if (done) return;
        done = true;
        if (timer !== undefined) this.clock.clearTimeout(timer);
        this.report(error, { phase: "destroy" });
        this.destroyed();
      },
    );
  }

  private destroyed(): void {
    this.destroying--;
    this.counters.destroyed++;
    this.dispatch();
    this.settleDrain();
  }

  private armIdleTimer(): void {
    const oldest = this.idleResources.peekFirst();
    if (oldest === undefined || this.size - this.destroying <= this.min) return;
    const due = oldest.idleSince + this.idleTimeout - this.clock.now();
    this.idleTimer = this.clock.setTimeout(this.evictIdle, Math.max(0, due));
    // Housekeeping: a program done with the pool exits without waiting for idle resources to expire
    // (resources that hold the process open themselves, such as sockets, still get evicted on time).
    this.clock.unref?.(this.idleTimer);
  }

  /** The one idle timer: destroys what has idled too long (never below `min`), then re-arms for the next. */
  private readonly evictIdle = (): void => {
    this.idleTimer = undefined;
    const deadline = this.clock.now() - this.idleTimeout;
    for (let oldest = this.idleResources.peekFirst(); oldest !== undefined; oldest = this.idleResources.peekFirst()) {
      if (oldest.idleSince > deadline || this.size - this.destroying <= this.min) break;
      this.idleResources.shift();
      this.counters.evicted++;
      this.retire(oldest);
    }
    this.armIdleTimer();
  };

  private settleDrain(): void {
    const resolve = this.resolveDrained;
    if (resolve === undefined || this.size !== 0 || this.creating !== 0) return;
    this.resolveDrained = undefined;
    resolve();
  }

  private report(error: unknown, event: PoolErrorEvent): void {
    if (this.onError === undefined) return;
    try {
      this.onError(error, event);
    } catch {
      // A throwing error hook must not break the pool's bookkeeping; there is nowhere left to report it.
    }
  }

  private closedError(): ClosedError {
    return new ClosedError(`${this.subject()} is drained`);
  }

  private subject(): string {
    return this.name === undefined ? "the pool" : `pool ${JSON.stringify(this.name)}`;
  }
}

/** A time limit option: a positive duration, or no limit (`undefined` or `Infinity`). */
function checkLimit(value: Duration | undefined, argument: string): number {
  if (value === undefined || value === Number.POSITIVE_INFINITY) return Number.POSITIVE_INFINITY;
  const ms = toMilliseconds(value, argument);
  if (ms <= 0) throw new RangeError(`${argument} must be greater than 0; got ${describe(value)}`);
  return ms;
}
