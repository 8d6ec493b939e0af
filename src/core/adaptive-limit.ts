/**
 * AdaptiveLimiter: a concurrency limit nobody has to know. It admits like a Semaphore, but its capacity
 * moves between `min` and `max` with what each finished call tells a {@link LimitAlgorithm}: how long it
 * took, and whether it was a drop (an overload answer, a timeout).
 */
import { Admission, type LimiterStatistics } from "./admission.js";
import { checkClock, checkFunction, checkName, checkOptionNames, optionNames } from "./arguments.js";
import { type Clock, systemClock } from "./clock.js";
import { describe } from "./describe.js";
import { identify, type LimiterIdentity } from "./diagnostics.js";
import { defineDisposeSymbols } from "./dispose.js";
import { defaultAbortReason, weightAboveCapacity } from "./errors.js";
import { type LimitAlgorithm, type LimitAlgorithmName, limitAlgorithm } from "./limit-algorithms.js";
import { type AdaptiveLimitStatistics, type LimitChange, LimitEstimator, rethrowLater } from "./limit-estimator.js";
import type { AcquireOptions, Limiter } from "./limiter.js";
import { HeldPermit, runHolding } from "./permit.js";
import { type CheckedAcquireOptions, checkAcquireOptions, checkRunArguments } from "./wait-options.js";

defineDisposeSymbols();

/** Options for {@link AdaptiveLimiter}. */
export interface AdaptiveLimiterOptions {
  /** The lowest the limit goes: an integer >= 1, so the limiter never stalls at 0. Default 1. */
  min?: number;
  /** The highest the limit goes: never more than `max` weight is held at once. Default 1000. */
  max?: number;
  /** The limit to start from, clamped to `[min, max]`. Default 10. */
  initial?: number;
  /**
   * How the limit moves: `"vegas"` (the default: fewest refusals and the limit nearest the service's
   * capacity in `bench/adaptive.mjs`), `"gradient"` (Gradient2), `"aimd"`, `"backoff"` (see
   * `overloadBackoff`), or your own.
   */
  algorithm?: LimitAlgorithmName | LimitAlgorithm;
  /**
   * For `run()`: whether an error `fn` threw or rejected with is an overload signal (a drop). Other
   * errors give no sample (a fast failure says nothing about the service's room). Default: an error
   * named `TimeoutError`. If the classifier itself throws, the call counts as a drop and the
   * classifier's error is rethrown asynchronously; the caller still gets `fn`'s error.
   */
  isDrop?: (error: unknown) => boolean;
  /** Shows up in error messages and statistics. */
  name?: string;
  /** Time source for latencies and timeouts; defaults to the global timers. */
  clock?: Clock;
}

export const ADAPTIVE_LIMITER_OPTIONS = optionNames<AdaptiveLimiterOptions>({
  min: true,
  max: true,
  initial: true,
  algorithm: true,
  isDrop: true,
  name: true,
  clock: true,
});

/** A snapshot of an adaptive limiter: the core fields, where `capacity` is the current limit, and more. */
export interface AdaptiveLimiterStatistics extends LimiterStatistics, AdaptiveLimitStatistics {}

/** The events an {@link AdaptiveLimiter} reports. */
export interface AdaptiveLimiterEvents {
  /** The (rounded) limit changed after a sample. */
  limit: LimitChange;
}

/**
 * A permit of an {@link AdaptiveLimiter}. Its latency is measured from the grant to the release, unless
 * the caller reports one; before releasing, the caller can mark the call as a drop, or ignore it.
 */
export class AdaptivePermit extends HeldPermit {
  /** @internal When the permit was granted, on the limiter's clock. */
  declare readonly grantedAt: number;
  /** @internal The weight in flight at the grant, this one's included. */
  declare readonly inFlightAtGrant: number;
  /** @internal What the release reports: a sample (with this latency, if set), a drop, or nothing. */
  declare outcome: "sample" | "drop" | "ignore";
  /** @internal A latency the caller reported, or -1. */
  declare reportedLatency: number;

  constructor(
    weight: number,
    signal: AbortSignal,
    giveBack: (permit: AdaptivePermit) => void,
    now: number,
    inFlight: number,
    limiter?: LimiterIdentity,
  ) {
    super(weight, signal, giveBack as (permit: never) => void, limiter);
    this.grantedAt = now;
    this.inFlightAtGrant = inFlight;
    this.outcome = "sample";
    this.reportedLatency = -1;
  }

  /** Marks the call as an overload signal (a 429/503, a timeout): the limit backs off on release. */
  dropped(): void {
    this.outcome = "drop";
  }

  /** Leaves this call out of the estimates (it says nothing about the service's room). */
  ignore(): void {
    this.outcome = "ignore";
  }

  /**
   * Reports the call's latency, instead of the time from grant to release.
   * @throws RangeError if `ms` is not a finite number >= 0 (a NaN latency would poison the estimates).
   */
  reportLatency(ms: number): void {
    if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) {
      throw new RangeError(`latency must be a finite number of milliseconds >= 0; got ${describe(ms)}`);
    }
    this.reportedLatency = ms;
  }
}

function isTimeoutError(error: unknown): boolean {
  return (error as { name?: unknown } | null)?.name === "TimeoutError";
}

/**
 * A concurrency limit that finds the right value by itself, and follows it when it moves.
 *
 * Use it where nobody knows how many calls a service can take at once — a database, an internal service,
 * an endpoint without rate-limit headers, a server shared with other tenants. It admits exactly like a
 * `Semaphore` whose capacity is the current limit; after each call, the algorithm moves the limit within
 * `[min, max]` from the call's latency and whether it was a drop.
 *
 * Guarantees:
 * - never more than `max` weight held, and never more than the current limit granted (a call heavier than
 *   the limit, but within `max`, is admitted when nothing else is held, so it cannot wait forever);
 * - the limit never goes below `min` (>= 1), so the limiter never stalls;
 * - admission, order, cancellation and counters are a Semaphore's (the one admission step);
 * - a shrink revokes nothing: it takes effect as calls finish.
 *
 * @example
 * ```ts
 * import { AdaptiveLimiter } from "sluice";
 * const limiter = new AdaptiveLimiter({ max: 64, isDrop: (error) => error instanceof OverloadedError });
 * const rows = await Promise.all(queries.map((query) => limiter.run(() => database.query(query))));
 * ```
 */
export class AdaptiveLimiter implements Limiter {
  /** Optional name, used in error messages and statistics. */
  readonly name: string | undefined;
  /** What its `sluice:*` events name. */
  private readonly identity: LimiterIdentity;
  private readonly isDrop: (error: unknown) => boolean;
  private readonly clock: Clock;
  /** The moving limit: `estimator.limit` is the weight admitted at once. */
  private readonly estimator: LimitEstimator;
  /**
   * Weight granted and not yet released. Invariant: `held <= max` always; a grant is made only when
   * `held + weight <= limit`, or when `held === 0` (a call heavier than the limit, alone).
   */
  private held = 0;
  private readonly admission: Admission<number, AdaptivePermit>;
  private idleResolvers: (() => void)[] | undefined = undefined;
  private readonly giveBackPermit = (permit: AdaptivePermit): void => this.giveBack(permit);

  /**
   * @throws TypeError/RangeError for bad options: `min` or `max` not an integer >= 1, `min > max`, an
   *   unknown algorithm, an `isDrop` that is not a function, an unknown option name.
   */
  constructor(options: AdaptiveLimiterOptions = {}) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`options must be an object; got ${describe(options)}`);
    }
    checkOptionNames(options, ADAPTIVE_LIMITER_OPTIONS, "the new AdaptiveLimiter() options");
    this.name = checkName(options.name);
    this.estimator = new LimitEstimator(
      options.min ?? 1,
      options.max ?? 1000,
      options.initial ?? 10,
      typeof (options.algorithm ?? "vegas") === "string"
        ? limitAlgorithm((options.algorithm ?? "vegas") as LimitAlgorithmName)
        : options.algorithm,
    );
    if (options.isDrop !== undefined) checkFunction(options.isDrop, "isDrop");
    this.isDrop = options.isDrop ?? isTimeoutError;
    this.clock = checkClock(options.clock) ?? systemClock;
    this.identity = identify(this, this.name, "adaptive", "memory", this.clock);
    this.admission = new Admission<number, AdaptivePermit>(
      {
        impossible: (weight) => (weight > this.max ? weightAboveCapacity(weight, this.max, this.subject()) : undefined),
        // A call heavier than the current limit (but within max) goes alone: the limit may only grow
        // from samples, and with nothing in flight no sample comes, so it would otherwise wait forever.
        fits: (weight) => weight <= this.estimator.limit - this.held || this.held === 0,
        take: (weight, signal) => {
          this.held += weight;
          return new AdaptivePermit(weight, signal, this.giveBackPermit, this.clock.now(), this.held, this.identity);
        },
        weight: (weight) => weight,
      },
      this.clock,
      () => this.subject(),
      () => this.notifyIfIdle(),
      this.identity,
    );
  }

  /** The lowest the limit goes. */
  get min(): number {
    return this.estimator.min;
  }

  /** The highest the limit goes. */
  get max(): number {
    return this.estimator.max;
  }

  /** The current limit: the weight admitted at once. */
  get capacity(): number {
    return this.estimator.limit;
  }

  /** `capacity - inUse`; negative after the limit shrank below what is held. */
  get available(): number {
    return this.estimator.limit - this.held;
  }

  /** Weight held right now. */
  get inUse(): number {
    return this.held;
  }

  /** How many callers wait (callers, not weight). */
  get waiting(): number {
    return this.admission.queue.size;
  }

  /**
   * Waits until `weight` fits under the current limit and returns an {@link AdaptivePermit}. Its latency
   * runs from now to its release; call `dropped()`, `ignore()` or `reportLatency()` on it before
   * releasing to say more.
   *
   * Rejects (never throws) like `Semaphore.acquire`: bad options, `weight > max`, the signal, the timeout.
   */
  acquire(options?: AcquireOptions): Promise<AdaptivePermit> {
    let checked: CheckedAcquireOptions;
    try {
      checked = checkAcquireOptions(options);
    } catch (error) {
      return Promise.reject(error);
    }
    return Promise.resolve(this.admission.admit(checked.weight, checked));
  }

  /**
   * Runs `fn` once admitted and releases when it settles. The call's latency (grant to settle) is a
   * sample; if `fn` throws or rejects, `isDrop` decides whether it was a drop or says nothing.
   */
  run<T>(
    fn: (signal: AbortSignal, permit: AdaptivePermit) => T | PromiseLike<T>,
    options?: AcquireOptions,
  ): Promise<T> {
    let checked: CheckedAcquireOptions;
    try {
      checked = checkRunArguments(fn, options);
    } catch (error) {
      return Promise.reject(error);
    }
    const granted = this.admission.admit(checked.weight, checked);
    if (!(granted instanceof Promise)) return this.runOn(fn, granted);
    // Attached in the caller's step, so `fn` runs in the caller's async context (AsyncLocalStorage).
    return granted.then((permit) => this.runOn(fn, permit));
  }

  /** Resolves once nothing is held and nobody waits (at once if that is so now). */
  onIdle(): Promise<void> {
    if (this.held === 0 && this.admission.queue.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.idleResolvers ??= [];
      this.idleResolvers.push(resolve);
    });
  }

  /** Rejects every waiting caller with `reason` (by default an `AbortError`); held permits stay. */
  clear(reason: unknown = defaultAbortReason()): void {
    this.admission.rejectAll(reason);
    this.notifyIfIdle();
  }

  /**
   * Subscribes to `"limit"`: called after each sample that changed the (rounded) limit. Listeners run
   * synchronously; one that throws does not disturb the limiter (the error is rethrown asynchronously).
   * Returns the function that unsubscribes.
   *
   * @throws TypeError for another event name, or a listener that is not a function.
   */
  on(event: "limit", listener: (event: AdaptiveLimiterEvents["limit"]) => void): () => void {
    if (event !== "limit") throw new TypeError(`event must be "limit"; got ${describe(event)}`);
    checkFunction(listener, "listener");
    return this.estimator.onChange(listener);
  }

  /** A snapshot of the limit, its estimates and the lifetime counters. */
  statistics(): AdaptiveLimiterStatistics {
    return {
      name: this.name,
      capacity: this.estimator.limit,
      available: this.available,
      inUse: this.held,
      waiting: this.admission.queue.size,
      ...this.admission.counters,
      ...this.estimator.statistics(),
    };
  }

  /** @internal Throws an Error naming the first broken invariant (the model tests call it after each step). */
  assertInvariants(): void {
    this.admission.assertInvariants();
    this.estimator.assertInvariants();
    if (!Number.isSafeInteger(this.held) || this.held < 0 || this.held > this.max) {
      throw new Error(`adaptive limiter invariant broken: 0 <= held <= max; got ${this.held}`);
    }
    const head = this.admission.queue.head;
    if (head !== undefined && (head.request <= this.estimator.limit - this.held || this.held === 0)) {
      throw new Error("adaptive limiter invariant broken: the head waits though it fits");
    }
  }

  private runOn<T>(
    fn: (signal: AbortSignal, permit: AdaptivePermit) => T | PromiseLike<T>,
    permit: AdaptivePermit,
  ): Promise<T> {
    return runHolding((signal, held: AdaptivePermit) => {
      let result: T | PromiseLike<T>;
      try {
        result = fn(signal, held);
      } catch (error) {
        this.classify(held, error);
        throw error;
      }
      // The classification happens before the result settles, so before `runHolding` releases.
      return result instanceof Promise || typeof (result as PromiseLike<T>)?.then === "function"
        ? Promise.resolve(result).then(undefined, (error: unknown) => {
            this.classify(held, error);
            throw error;
          })
        : result;
    }, permit);
  }

  /** Marks a failed call as a drop, or as saying nothing, per `isDrop` (a throwing classifier: a drop). */
  private classify(permit: AdaptivePermit, error: unknown): void {
    if (permit.outcome !== "sample") return; // the caller already said
    let drop: boolean;
    try {
      drop = this.isDrop(error) === true;
    } catch (classifierError) {
      drop = true;
      rethrowLater(classifierError);
    }
    permit.outcome = drop ? "drop" : "ignore";
  }

  /** Takes a permit's weight back, feeds its sample to the algorithm, and hands room on. */
  private giveBack(permit: AdaptivePermit): void {
    this.held -= permit.weight;
    if (permit.outcome !== "ignore") {
      const latency = permit.reportedLatency >= 0 ? permit.reportedLatency : this.clock.now() - permit.grantedAt;
      this.estimator.sample({
        latency,
        inFlight: permit.inFlightAtGrant,
        dropped: permit.outcome === "drop",
        pending: this.held,
      });
    }
    if (this.admission.queue.size !== 0) this.admission.dispatch();
    if (this.held === 0) this.notifyIfIdle();
  }

  private notifyIfIdle(): void {
    const resolvers = this.idleResolvers;
    if (resolvers === undefined || this.held !== 0 || this.admission.queue.size !== 0) return;
    this.idleResolvers = undefined;
    for (const resolve of resolvers) resolve();
  }

  private subject(): string {
    return this.name === undefined ? "the adaptive limiter" : `adaptive limiter ${JSON.stringify(this.name)}`;
  }
}
