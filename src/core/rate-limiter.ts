/**
 * RateLimiter: several rate limits at once (requests per minute AND tokens per minute ...), a cap on calls
 * in flight, a minimum spacing between starts, per-call cost corrected after the fact, a shared pause
 * after a 429, and server feedback from rate-limit headers — on the one wait queue every primitive uses.
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
import { type Clock, systemClock, type TimerHandle } from "./clock.js";
import { describe } from "./describe.js";
import { identify, type LimiterIdentity, type RatePauseEvent, ratePauseChannel } from "./diagnostics.js";
import { defineDisposeSymbols } from "./dispose.js";
import { type Duration, toMilliseconds } from "./duration.js";
import { costAboveLimit, defaultAbortReason, weightAboveCapacity } from "./errors.js";
import { type LimitSample, vegas } from "./limit-algorithms.js";
import { type AdaptiveLimitStatistics, LimitEstimator } from "./limit-estimator.js";
import { type AcquireOptions, type Limiter, NEVER_ABORTED, type Permit } from "./limiter.js";
import { type GiveBack, HeldPermit, runHolding } from "./permit.js";
import { type ChargeHandle, emptyLike, newRateBucket, type RateBucket } from "./rate-buckets.js";
import {
  checkCostUnits,
  checkCostValue,
  countedUnits,
  normalizeCost,
  normalizeSettlement,
  REQUESTS,
  reportedLimitsOf,
} from "./rate-cost.js";
import { type HeaderInput, parseRateLimitHeaders, type RateLimitHeaders } from "./rate-headers.js";
import { type CheckedAcquireOptions, checkAcquireOptions } from "./wait-options.js";
import type { SelfChecking, WaitQueue } from "./wait-queue.js";

defineDisposeSymbols();

/** The default unit: what a plain-number cost counts. */

/**
 * One rate limit: at most `limit` of `unit` per `interval`.
 *
 * @example
 * ```ts
 * const rpm: RateLimit = { limit: 500, interval: "1m" };                   // requests per minute
 * const tpm: RateLimit = { limit: 200_000, interval: "1m", unit: "tokens" }; // tokens per minute
 * ```
 */
export interface RateLimit {
  /** How much of `unit` may be spent per `interval`: a finite number > 0. */
  limit: number;
  /** The interval: ms or a duration string (`"1s"`, `"1m"`). Must be > 0. */
  interval: Duration;
  /** What a call's cost counts in this limit. Default `"requests"`. */
  unit?: string;
  /**
   * Token bucket only: the most that may be spent at once from a full bucket. Default `limit` (a full
   * interval's worth at once); `1` with requests means evenly spaced calls.
   */
  burst?: number;
  /**
   * `"token-bucket"` (default; GCRA, continuous refill, what LLM providers enforce): at most
   * `burst + limit / interval × span` in any span. `"sliding-window"`: at most `limit` in any half-open
   * window `[t, t + interval)`, exactly.
   */
  algorithm?: "token-bucket" | "sliding-window";
}

/** A call's cost: a number of `requests`, or an amount per unit (`requests` defaults to 1, others to 0). */
export type RateCost = number | Readonly<Record<string, number>>;

/** Options for {@link RateLimiter.acquire} and {@link RateLimiter.run}. */
export type RateAcquireOptions = AcquireOptions & {
  /**
   * What the call costs: a number of requests (default 1), or per unit, e.g. `{ requests: 1, tokens: 1200 }`.
   * A unit left out costs 0, except `requests`, which costs 1. A unit no limit counts is free, so one
   * cost record can serve limiters that count different units; but one that is a typo away from a unit
   * a limit counts (`tokenz`, `Tokens` beside `tokens`) is refused with a `TypeError`, since it would
   * silently cost nothing. `weight` is separate: it is how many of the `concurrency` slots the call holds.
   */
  cost?: RateCost;
};

/** The names {@link RateLimit} accepts. */
export const RATE_LIMIT_OPTIONS = /* @__PURE__ */ optionNames<RateLimit>({
  limit: true,
  interval: true,
  unit: true,
  burst: true,
  algorithm: true,
});

/** Options for {@link RateLimiter}. Every field is optional; an empty limiter admits everything. */
export interface RateLimiterOptions {
  /** Rate limits that must all admit a call; they are charged together or not at all. */
  limits?: readonly RateLimit[];
  /**
   * Calls in flight at once (permits held); default unlimited. `"auto"`: the concurrency adapts under the
   * rate limits, between 1 and 1000 (Vegas, as `AdaptiveLimiter`'s default): from each call's latency
   * (grant to release), and each `pause()` (a 429 with `Retry-After`) counts as a drop.
   */
  concurrency?: number | "auto";
  /** The least time between two starts; default 0. */
  minInterval?: Duration;
  /** Time source; defaults to `performance.now()` and the global timers. */
  clock?: Clock;
  /** Shows up in error messages and statistics. */
  name?: string;
  /**
   * Whether `permit.settle(actual)` gives back the unused part of an estimate. `true` (default) refunds
   * every unit; `false` keeps estimates (for providers that charge the estimate, as OpenAI does with
   * `max_tokens`); an object decides per unit, units left out refunding. Extra cost is charged either way.
   */
  refund?: boolean | Readonly<Record<string, boolean>>;
}

/** @internal The names of {@link RateLimiterOptions}, as {@link optionNames} takes them. */
export const RATE_LIMITER_OPTION_FLAGS = {
  limits: true,
  concurrency: true,
  minInterval: true,
  clock: true,
  name: true,
  refund: true,
} as const;

const RATE_LIMITER_OPTIONS = /* @__PURE__ */ optionNames<RateLimiterOptions>(RATE_LIMITER_OPTION_FLAGS);

const TRY_ACQUIRE_OPTIONS = /* @__PURE__ */ optionNames<Pick<RateAcquireOptions, "cost" | "weight">>({
  cost: true,
  weight: true,
});

/** A permit of a {@link RateLimiter}: a {@link Permit} whose cost can be corrected once it is known. */
export interface RatePermit extends Permit {
  /** What this call is charged now, per unit (the estimate until settled). */
  readonly cost: Readonly<Record<string, number>>;
  /**
   * Sets the call's charge to its actual cost: the extra is charged (a token bucket may go into debt,
   * which later calls wait out), the unused estimate is refunded unless the limiter's `refund` option
   * says otherwise (then the charge never goes below the estimate). A refund gives back only what the
   * limit has not already recovered by itself: a token bucket, the part of the charge it has not yet
   * refilled (nothing once a pause has emptied it or its limits changed); a sliding window, while the
   * charge is in the window. A number sets `requests`; in an object, units left out keep their charge.
   * May be called after `release()`, and again (each call sets the charge anew).
   *
   * @throws TypeError/RangeError for a cost that is not finite and >= 0, or a unit a typo away from a
   *   counted one (see `cost` in {@link RateAcquireOptions}).
   */
  settle(actual: RateCost): void;
}

/** The events a {@link RateLimiter} reports, with what each listener receives. */
export interface RateLimiterEvents {
  /** A pause started or was extended. `until` is on the limiter's clock. */
  pause: {
    /** When the pause ends, on the limiter's clock (ms). */
    until: number;
    /** The reason given to `pause()`; `"Retry-After"` for a pause that `observe()` set. */
    reason: unknown;
  };
  /** A permit was settled: what was charged before and after. */
  settle: {
    /** What the call was charged before this settle, per unit: its estimate, on the first settle. */
    estimate: Readonly<Record<string, number>>;
    /** What it is charged now, per unit. */
    actual: Readonly<Record<string, number>>;
  };
  /** `observe()` read rate-limit headers; `headers` is what it found. */
  observe: {
    /** The limits, remaining budgets, resets and retry-after the headers carried. */
    headers: RateLimitHeaders;
  };
}

/** A snapshot of one configured limit. */
export interface RateLimitStatistics {
  /** The unit it counts: `requests`, `tokens`, ... */
  unit: string;
  /** How it counts: a token bucket (GCRA) or an exact sliding window. */
  algorithm: "token-bucket" | "sliding-window";
  /** How much cost it admits per `interval`. */
  limit: number;
  /** ms */
  interval: number;
  /** Largest cost one call may have (token bucket: burst; sliding window: limit). */
  capacity: number;
  /** Budget left now; negative while in debt after a settle. */
  remaining: number;
}

/**
 * A snapshot of a rate limiter's state and lifetime counters, for logs and metrics. The core fields
 * speak of concurrency: `capacity` is `concurrency` (`Infinity` when unset), `inUse` the weight of calls
 * in flight.
 */
export interface RateLimiterStatistics extends LimiterStatistics {
  /** With `concurrency: "auto"`: its bounds, estimates and counters (`capacity` is the current limit). */
  adaptiveConcurrency: AdaptiveLimitStatistics | undefined;
  /** ms */
  minInterval: number;
  /** On the limiter's clock; `undefined` when not paused. */
  pausedUntil: number | undefined;
  /** The reason given to the pause in force; `undefined` when not paused. */
  pauseReason: unknown;
  /** Each configured limit, in the order given. */
  limits: RateLimitStatistics[];
  /** Per unit, the least budget left among the limits counting it. */
  remaining: Record<string, number>;
  /** Settled calls: the estimates they were admitted with and the actual costs they settled at. */
  settled: {
    /** Calls settled at least once. */
    calls: number;
    /** Per unit, the sum of their estimates. */
    estimated: Record<string, number>;
    /** Per unit, the sum of what they were settled at. */
    actual: Record<string, number>;
  };
}

/**
 * What a waiter asks for. The common case — weight 1, a cost only in requests — is kept as a plain
 * number (the request count), so a queued `acquire()` costs no allocation beyond the queue's own; a
 * cost in several units at weight 1 is its normalized cost record alone; only another weight takes an
 * {@link Order} around it.
 */
export type Demand = number | Order | Readonly<Record<string, number>>;

class Order {
  constructor(
    readonly weight: number,
    /** Normalized: `requests` always present; every value finite and >= 0. */
    readonly cost: Readonly<Record<string, number>>,
  ) {}
}

/** @internal The concurrency weight of a demand. */
export function weightOf(demand: Demand): number {
  return demand instanceof Order ? demand.weight : 1;
}

function costOf(demand: Demand, unit: string): number {
  if (typeof demand === "number") return unit === REQUESTS ? demand : 0;
  return (demand instanceof Order ? demand.cost : demand)[unit] ?? 0;
}

/** @internal What a permit of `demand` is charged, per unit (a record of its own). */
export function costRecord(demand: Demand): Record<string, number> {
  if (typeof demand === "number") return { [REQUESTS]: demand };
  return { ...(demand instanceof Order ? demand.cost : demand) };
}

/** One limit's share of a grant: kept by the permit so `settle` can correct exactly that charge. */
export interface Charge {
  readonly bucket: RateBucket;
  readonly handle: ChargeHandle;
}

/**
 * A settlement: checked (before the permit records anything), then applied to the limits it was charged
 * to. One per limiter, like `GiveBack`.
 */
export interface Settle {
  check(actual: Readonly<Record<string, number>>): void;
  apply(permit: RateLimiterPermit, actual: Record<string, number>, first: boolean): void;
}

/** @internal A rate limiter's permit (a keyed rate limiter's light keys hand out a subclass). */
export class RateLimiterPermit extends HeldPermit implements RatePermit {
  /** @internal What the call was admitted with, kept from the first `settle` on (`refund: false` floors). */
  estimate: Readonly<Record<string, number>> | undefined = undefined;
  constructor(
    weight: number,
    signal: AbortSignal,
    giveBack: GiveBack<never, void>,
    private readonly settlement: Settle,
    /** What is charged now per unit. Mutated by `settle`. */
    readonly cost: Record<string, number>,
    /** @internal */
    readonly charges: readonly Charge[],
    limiter: LimiterIdentity | undefined,
    /** @internal When it was granted, for `concurrency: "auto"`'s latency. */
    readonly grantedAt: number,
    /** @internal The weight in flight at the grant, its own included. */
    readonly inFlightAtGrant: number,
  ) {
    super(weight, signal, giveBack, limiter);
  }

  settle(actual: RateCost): void {
    const target = normalizeSettlement(actual);
    this.settlement.check(target);
    const first = this.estimate === undefined;
    this.estimate ??= { ...this.cost };
    this.settlement.apply(this, target, first);
  }
}

/**
 * Admission by rate: several limits at once, concurrency, spacing, per-call cost, pause and server
 * feedback. Use it for calls to an API with published limits — above all LLM APIs, which limit requests
 * per minute AND tokens per minute AND often concurrent requests. For a plain cap on how many run at once,
 * `Semaphore` is simpler and faster.
 *
 * How it decides (DESIGN.md, "Precise semantics"):
 * - a call starts only when every limit can pay its whole cost, `concurrency` has room for its weight,
 *   `minInterval` has passed since the last start and no pause is in force; then all limits are charged
 *   in the same step (all-or-nothing: a refused call costs nothing anywhere);
 * - callers are served by priority, then arrival; the head blocks those behind it (head-of-line), so a
 *   costly call is never starved by cheap ones; a cost no limit could ever pay rejects at once;
 * - one timer for the whole limiter, armed for the moment the head becomes payable — none per waiter,
 *   no polling, and none at all when nobody waits (an idle limiter never keeps the process alive);
 * - `pause()` and `observe()` only ever slow it down.
 *
 * @example
 * ```ts
 * import { RateLimiter } from "sluice";
 * // The classic "5 at a time, 100 ms apart":
 * const api = new RateLimiter({ concurrency: 5, minInterval: 100 });
 * // An LLM API: 500 requests and 200k tokens per minute, 20 in flight.
 * const llm = new RateLimiter({
 *   limits: [{ limit: 500, interval: "1m" }, { limit: 200_000, interval: "1m", unit: "tokens" }],
 *   concurrency: 20,
 * });
 * const answer = await llm.run(async (signal, permit) => {
 *   const response = await callModel(prompt, { signal });
 *   permit.settle({ tokens: response.usage.total_tokens }); // refund or charge the difference
 *   return response;
 * }, { cost: { tokens: estimateTokens(prompt) } });
 * ```
 */
export class RateLimiter implements Limiter<RateAcquireOptions> {
  /** Optional name, used in error messages and statistics. */
  readonly name: string | undefined;
  private readonly clock: Clock;
  /** Invariant: every bucket's unit and algorithm are fixed; run-time changes reconfigure in place. */
  private buckets: RateBucket[] = [];
  private limitConfigs: RateLimit[] = [];
  /** The units the limits count, `requests` included: a cost unit one typo away from these is refused. */
  private counted: ReadonlySet<string> = countedUnits([]);
  private concurrencyLimit: number;
  /** With `concurrency: "auto"`: the moving limit, which `concurrencyLimit` follows. */
  private adaptive: LimitEstimator | undefined;
  /** Concurrency weight of permits not yet released. */
  private inFlight = 0;
  private spacing: number;
  /** The clock time of the last start, for `minInterval`. */
  private lastStartAt = Number.NEGATIVE_INFINITY;
  /** Nothing starts before this clock time. Only ever moves forward (pauses extend, never shorten). */
  private pauseEnd = Number.NEGATIVE_INFINITY;
  private pauseReason: unknown = undefined;
  private readonly refund: boolean | Readonly<Record<string, boolean>>;
  /**
   * Invariant (after every public method returns): the head of the queue, if any, cannot start now.
   * If it is held back only by time (not by concurrency), `timer` is armed for the moment it can;
   * otherwise no timer is armed. Never more than one.
   */
  private readonly admission: Admission<Demand, RatePermit>;
  private readonly queue: WaitQueue<Demand, RatePermit>;
  private timer: TimerHandle | undefined = undefined;
  private timerAt = Number.NaN;
  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.dispatch();
  };
  /** The clock time `fits` decided at, for the `take` and `stalled` that follow it in the same step. */
  private decidedAt = 0;
  private readonly giveBackPermit = (permit: RateLimiterPermit): void => {
    // The sample first, so the hand-off that follows sees the limit it moved.
    if (this.adaptive !== undefined) {
      const latency = this.clock.now() - permit.grantedAt;
      this.moveConcurrency({
        latency,
        inFlight: permit.inFlightAtGrant,
        dropped: false,
        pending: this.inFlight - permit.weight,
      });
    }
    this.giveBack(permit.weight);
  };
  private readonly identity: LimiterIdentity;
  private readonly settlePermit: Settle = {
    check: (target) => checkCostUnits(target, this.counted, "actual"),
    apply: (permit, target, first) => this.applySettlement(permit, target, first),
  };
  private settledTotals: SettledTotals = newSettledTotals();
  private idleResolvers: (() => void)[] | undefined = undefined;
  /**
   * @internal Called each time the limiter becomes quiet (nothing in flight, nobody waiting): a keyed
   * rate limiter then watches for the moment its limits have refilled ({@link RateLimiter.idleAt}).
   */
  onQuiet: (() => void) | undefined = undefined;
  /**
   * Limits this limiter shares with others (the levels of a keyed rate limiter: a tenant's, the global
   * one): asked and charged with its own limits in the same step, so a call refused by any of them is
   * charged by none. Never paused, tightened or listed by this limiter: they are not its own.
   */
  private shared: readonly SharedLimit[] = [];
  /** What messages call this limiter, when a keyed limiter names it by its key. */
  private subjectText: string | undefined = undefined;
  private listeners: { [E in keyof RateLimiterEvents]?: Set<(event: RateLimiterEvents[E]) => void> } = {};

  /**
   * @throws TypeError/RangeError naming the option and the value for bad options (an unknown option
   *   name, with the nearest known one; a limit that is not
   *   > 0, an interval such as `"5 parsecs"`, a concurrency that is not an integer >= 1 or Infinity, ...).
   */
  constructor(options: RateLimiterOptions = {}) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`options must be an object; got ${describe(options)}`);
    }
    checkOptionNames(options, RATE_LIMITER_OPTIONS, "the new RateLimiter() options");
    this.name = checkName(options.name);
    this.clock = checkClock(options.clock) ?? systemClock;
    this.identity = identify(this, this.name, "rate-limiter", "memory", this.clock);
    if (typeof options.concurrency === "string" && options.concurrency !== "auto") {
      throw new TypeError(`concurrency must be a number or "auto"; got ${describe(options.concurrency)}`);
    }
    this.adaptive = options.concurrency === "auto" ? new LimitEstimator(1, 1000, 10, vegas()) : undefined;
    this.concurrencyLimit = this.adaptive?.limit ?? checkConcurrency(options.concurrency ?? Number.POSITIVE_INFINITY);
    this.spacing = toMilliseconds(options.minInterval ?? 0, "minInterval");
    this.refund = checkRefund(options.refund ?? true);
    this.admission = new Admission<Demand, RatePermit>(
      {
        // Head-of-line means a request that can never be admitted would block everyone behind it forever.
        impossible: (demand) => this.whyImpossible(demand),
        fits: (demand) => this.canStart(demand, (this.decidedAt = this.clock.now())),
        take: (demand, signal, waiter) => {
          const permit = this.start(demand, signal, this.decidedAt);
          // A call that starts ahead of those waiting (a higher priority) moves the head's time: its
          // charges and start may make the head wait longer, or for a release instead of the timer.
          if (waiter === undefined && this.queue.size !== 0) this.dispatch();
          return permit;
        },
        // A new head may become payable earlier or later than the old one: the timer must follow it.
        enqueued: (_, isHead) => {
          if (isHead) this.dispatch();
        },
        stalled: (head) => {
          // Waiting for a release (concurrency): `giveBack` re-dispatches, so no timer is needed (or wanted).
          if (head === undefined || !this.hasRoomFor(weightOf(head.request))) this.disarm();
          else this.arm(this.readyAt(head.request, this.decidedAt), this.decidedAt);
        },
        weight: weightOf,
      },
      this.clock,
      () => this.subject(),
      () => this.notifyIfIdle(),
      this.identity,
    );
    this.queue = this.admission.queue;
    this.setLimits(options.limits ?? []);
  }

  /**
   * The rate limits. Settable at run time: a limit keeps what it has spent when its numbers change
   * (matched by unit and algorithm, in order; a call in flight still gets its unused estimate back from a
   * changed token bucket, up to 8 changes back and not across a pause); a new limit starts full.
   * Waiters whose cost can no longer ever be paid are rejected with a `RangeError`. A sliding window
   * whose interval grows keeps only the charges still inside its old interval, so its promise holds for
   * spans that start after the change.
   */
  get limits(): readonly RateLimit[] {
    return this.limitConfigs.map((limit) => ({ ...limit }));
  }
  /**
   * Replaces the limits, as described above.
   * @throws TypeError/RangeError naming the limit and the value, as the constructor does.
   */
  set limits(value: readonly RateLimit[]) {
    this.setLimits(value);
    this.rejectImpossible();
    this.dispatch();
    this.notifyIfIdle();
  }

  /**
   * Calls in flight at once (the current limit, with `concurrency: "auto"`). Settable at run time, like
   * `Semaphore.capacity`; setting a number ends `"auto"`.
   */
  get concurrency(): number {
    return this.concurrencyLimit;
  }
  /**
   * Changes the concurrency: growing wakes the waiters that now fit, and waiters whose weight can no
   * longer ever fit are rejected with a `RangeError`.
   * @throws TypeError if `value` is not a number; RangeError if it is not an integer >= 1 or `Infinity`.
   */
  set concurrency(value: number) {
    this.concurrencyLimit = checkConcurrency(value);
    this.adaptive = undefined;
    this.rejectImpossible();
    this.dispatch();
    this.notifyIfIdle();
  }

  /** The least time between two starts, in ms. Settable at run time (ms or a duration string). */
  get minInterval(): number {
    return this.spacing;
  }
  /**
   * Changes the spacing; the waiting head is timed again.
   * @throws TypeError/RangeError for a duration that is not finite and >= 0, naming the value.
   */
  set minInterval(value: Duration) {
    this.spacing = toMilliseconds(value, "minInterval");
    this.dispatch();
  }

  /** Until when (limiter clock ms) nothing starts, or `undefined` when not paused. */
  get pausedUntil(): number | undefined {
    return this.pauseEnd > this.clock.now() ? this.pauseEnd : undefined;
  }

  /** How many callers are waiting. */
  get waiting(): number {
    return this.queue.size;
  }

  /** Concurrency weight held by calls in flight. */
  get inUse(): number {
    return this.inFlight;
  }

  /**
   * Waits until the call may start and returns its {@link RatePermit}; release it when the call is done
   * (that frees its concurrency slot; its rate cost stays spent).
   *
   * Rejects (never throws) with a `TypeError`/`RangeError` for bad options, a `RangeError` naming both
   * numbers when the cost is above what a limit can ever pay or the weight above the concurrency,
   * `signal.reason` if the signal aborts first, and a `TimeoutError` when `timeout` elapses.
   *
   * @example
   * ```ts
   * const permit = await limiter.acquire({ cost: { tokens: 1200 }, timeout: 30_000 });
   * try { ... } finally { permit.release(); }
   * ```
   */
  acquire(options?: RateAcquireOptions): Promise<RatePermit> {
    const outcome = this.admit(options);
    return outcome instanceof Promise ? outcome : Promise.resolve(outcome);
  }

  /**
   * Starts a call now if it may start now without passing anyone in line; otherwise `undefined`.
   *
   * @throws TypeError/RangeError for bad options or a cost/weight that could never be admitted.
   */
  tryAcquire(options?: Pick<RateAcquireOptions, "cost" | "weight">): RatePermit | undefined {
    const demand = checkTryOptions(options, this.counted);
    const weight = weightOf(demand);
    const impossible = this.whyImpossible(demand);
    if (impossible !== undefined) throw impossible;
    if (!this.queue.isFirstInLine(0) || !this.canStart(demand, (this.decidedAt = this.clock.now()))) return undefined;
    this.admission.grantedNow(weight);
    const permit = this.start(demand, NEVER_ABORTED, this.decidedAt);
    if (this.queue.size !== 0) this.dispatch();
    return permit;
  }

  /**
   * How long from now until a call costing `cost` could start as far as time decides — the pause, the
   * spacing and every limit's budget — in ms; 0 when it could start now. It does not count the callers
   * already waiting or the concurrency slots (when calls end is unknown): to ask "behind the ones I sent
   * here", pass their cost and this one's together. A cost above what a limit can ever pay gets the time
   * its budget would take to refill that far. The answer is for comparing limiters (a key pool sends each
   * request to the limiter that answers least), never a promise; it leaves the limiter unchanged.
   *
   * @throws TypeError/RangeError for a cost that is not finite and >= 0, or a unit a typo away from a
   *   counted one (as `acquire` refuses it).
   *
   * @example
   * ```ts
   * const soonest = limiters.reduce((best, limiter) => (limiter.readyIn(cost) < best.readyIn(cost) ? limiter : best));
   * ```
   */
  readyIn(cost?: RateCost): number {
    const demand = normalizeDemand(cost, 1, this.counted);
    const now = this.clock.now();
    return Math.max(0, this.readyAt(demand, now) - now);
  }

  /**
   * Runs `fn` once admitted and releases its concurrency slot when it settles (returned, thrown or
   * rejected). `fn` receives the work's signal and the permit, so it can `settle` the actual cost.
   *
   * @example
   * ```ts
   * const reply = await limiter.run(async (signal, permit) => {
   *   const response = await openai.chat.completions.create(request, { signal });
   *   permit.settle({ tokens: response.usage?.total_tokens ?? 0 });
   *   return response;
   * }, { cost: { tokens: 1500 } });
   * ```
   */
  run<T>(
    fn: (signal: AbortSignal, permit: RatePermit) => T | PromiseLike<T>,
    options?: RateAcquireOptions,
  ): Promise<T> {
    if (typeof fn !== "function") return Promise.reject(new TypeError(`fn must be a function; got ${describe(fn)}`));
    const outcome = this.admit(options);
    // Admitted now: the work starts in this very call, so a burst of run() calls reaches the API as the
    // limiter admitted it, not after the caller's loop ends (which would bunch it with the next refill).
    if (!(outcome instanceof Promise)) return runHolding(fn, outcome);
    return outcome.then((permit) => runHolding(fn, permit));
  }

  /**
   * Stops admitting until `forOrUntil` (a duration from now, or a `Date`) — for everyone sharing this
   * limiter, as a 429 with `Retry-After` asks. A pause can only be extended: one that would end earlier
   * than the current one does nothing. Calls in flight are not touched.
   *
   * Resuming is gradual: every limit is treated as empty at the pause's end and refills from there, so
   * the calls that piled up start at the configured steady rate (`interval / limit` apart per unit of
   * cost) instead of as one burst that would trip the server again. A limiter with only `concurrency` /
   * `minInterval` resumes under those.
   *
   * @throws TypeError/RangeError for a duration that is not >= 0 or an invalid Date.
   */
  pause(forOrUntil: Duration | Date, reason?: unknown): void {
    const now = this.clock.now();
    let until: number;
    if (forOrUntil instanceof Date) {
      const at = forOrUntil.getTime();
      if (Number.isNaN(at)) throw new RangeError("pause: the Date is invalid");
      // Dates are wall-clock; the limiter's clock is monotonic: carry the distance over.
      until = now + (at - Date.now());
    } else {
      until = now + toMilliseconds(forOrUntil, "pause duration");
    }
    if (until <= now) return;
    // The server said "too many": with `concurrency: "auto"`, a drop (each 429, even one a pause in force covers).
    if (this.adaptive !== undefined)
      this.moveConcurrency({ latency: 0, inFlight: this.inFlight, dropped: true, pending: this.inFlight });
    if (until <= this.pauseEnd) return;
    this.pauseEnd = until;
    this.pauseReason = reason;
    for (const bucket of this.buckets) bucket.emptyAt(until);
    this.emit("pause", { until, reason });
    if (ratePauseChannel.hasSubscribers) {
      ratePauseChannel.publish({ limiter: this.identity, duration: until - now, reason } satisfies RatePauseEvent);
    }
    this.dispatch();
  }

  /**
   * Tightens the limits from a response's rate-limit headers (OpenAI `x-ratelimit-*`, Anthropic
   * `anthropic-ratelimit-*`, IETF `RateLimit` / `RateLimit-Policy`; see `parseRateLimitHeaders`), and
   * pauses for `Retry-After` / `retry-after-ms`. Only ever tightens: a limit whose unit the server reports
   * is lowered to the `remaining` the server reports (a sliding window: at most that much more until the
   * server's reset); nothing is ever raised past the configuration. Units are matched by name; when
   * several limits count the unit the server reports (requests per minute and per day), only the one
   * whose `limit` is nearest the server's reported limit is tightened (without a reported limit, the one
   * with the shortest interval), so a per-minute `remaining` never empties a daily quota.
   *
   * @throws TypeError when `headers` is not a `Headers` or an object of header fields.
   *
   * @example
   * ```ts
   * const response = await limiter.run(() => fetch(url));
   * limiter.observe(response.headers);
   * ```
   */
  observe(headers: HeaderInput): void {
    if (typeof headers !== "object" || headers === null) {
      throw new TypeError(`headers must be a Headers or an object of header fields; got ${describe(headers)}`);
    }
    const wallNow = Date.now();
    const found = parseRateLimitHeaders(headers, wallNow);
    const now = this.clock.now();
    const wallToClock = now - wallNow;
    for (const bucket of this.buckets) {
      const observed = found.units[bucket.unit];
      if (observed?.remaining === undefined) continue;
      if (!reportedLimitsOf(this.buckets, bucket.unit, observed.limit).includes(bucket)) continue;
      bucket.tighten(
        observed.remaining,
        observed.resetAt === undefined ? undefined : observed.resetAt + wallToClock,
        now,
      );
    }
    this.emit("observe", { headers: found });
    if (found.retryAfterMs !== undefined && found.retryAfterMs > 0) this.pause(found.retryAfterMs, "Retry-After");
    this.dispatch();
  }

  /**
   * Rejects every waiting caller with `reason` — by default an `AbortError` `DOMException`, the value
   * `AbortSignal.abort().reason` gives. Calls in flight are not affected.
   */
  clear(reason: unknown = defaultAbortReason()): void {
    this.admission.rejectAll(reason);
    this.disarm();
    this.notifyIfIdle();
  }

  /** Resolves once no call is in flight and nobody waits (at once if that is so now). */
  onIdle(): Promise<void> {
    if (this.inFlight === 0 && this.queue.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.idleResolvers ??= [];
      this.idleResolvers.push(resolve);
    });
  }

  /**
   * Subscribes to an event; returns the function that unsubscribes. Listeners run synchronously; one
   * that throws does not disturb the limiter (the error is rethrown asynchronously).
   *
   * @throws TypeError for an event other than `"pause"`, `"settle"`, `"observe"`, or a listener that is
   *   not a function.
   *
   * @example
   * ```ts
   * limiter.on("pause", ({ until, reason }) => console.warn(`paused ${until - performance.now()} ms`, reason));
   * ```
   */
  on<E extends keyof RateLimiterEvents>(event: E, listener: (event: RateLimiterEvents[E]) => void): () => void {
    if (event !== "pause" && event !== "settle" && event !== "observe") {
      throw new TypeError(`event must be "pause", "settle" or "observe"; got ${describe(event)}`);
    }
    checkFunction(listener, "listener");
    let set = this.listeners[event] as Set<(event: RateLimiterEvents[E]) => void> | undefined;
    if (set === undefined) {
      set = new Set();
      (this.listeners as Record<string, unknown>)[event] = set;
    }
    set.add(listener);
    return () => {
      set.delete(listener);
    };
  }

  /** @internal For the model tests: the admission (its queue and counters) and the limiter itself. */
  "~selfChecks"(): readonly SelfChecking[] {
    return [this.admission, { assertInvariants: () => this.assertInvariants() }];
  }

  /**
   * @internal Throws an Error naming the first broken invariant of the limiter's own state: the head
   * cannot start now, and the one timer is armed exactly when the head waits for time (not for a release).
   */
  assertInvariants(): void {
    if (!Number.isSafeInteger(this.inFlight) || this.inFlight < 0) {
      throw new Error(`rate limiter invariant broken: the weight in flight is whole and >= 0; got ${this.inFlight}`);
    }
    const head = this.queue.head;
    const now = this.clock.now();
    if (head !== undefined && this.canStart(head.request, now)) {
      throw new Error("rate limiter invariant broken: the head waits though it could start now");
    }
    const waitsForTime = head !== undefined && this.hasRoomFor(weightOf(head.request));
    if (waitsForTime !== (this.timer !== undefined)) {
      throw new Error(
        `rate limiter invariant broken: the timer is ${this.timer === undefined ? "not " : ""}armed while the head ${waitsForTime ? "waits for time" : "waits for a release or nobody waits"}`,
      );
    }
  }

  /** A snapshot of the state and lifetime counters. */
  statistics(): RateLimiterStatistics {
    const { limits, remaining } = limitStatistics(this.buckets, this.clock.now());
    return {
      name: this.name,
      capacity: this.concurrencyLimit,
      available: this.concurrencyLimit - this.inFlight,
      inUse: this.inFlight,
      waiting: this.queue.size,
      ...this.admission.counters,
      adaptiveConcurrency: this.adaptive?.statistics(),
      minInterval: this.spacing,
      pausedUntil: this.pausedUntil,
      pauseReason: this.pausedUntil === undefined ? undefined : this.pauseReason,
      limits,
      remaining,
      settled: {
        calls: this.settledTotals.calls,
        estimated: { ...this.settledTotals.estimated },
        actual: { ...this.settledTotals.actual },
      },
    };
  }

  // -------------------------------------------------------------------------------------------------

  /**
   * `acquire` and `run` through the admission step: the permit itself if the call starts now, otherwise
   * the promise of the wait. Never throws.
   */
  private admit(options: RateAcquireOptions | undefined): RatePermit | Promise<RatePermit> {
    let demand: Demand;
    let checked: CheckedAcquireOptions;
    try {
      checked = checkAcquireOptions(options);
      demand = options === undefined ? 1 : normalizeDemand(options.cost, checked.weight, this.counted);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.admission.admit(demand, checked);
  }

  /** Whether `demand` may start at `now`: room in flight, and the time-based constraints all met. */
  private canStart(demand: Demand, now: number): boolean {
    return this.hasRoomFor(weightOf(demand)) && this.readyAt(demand, now) <= now;
  }

  /**
   * The earliest time `demand` can start as far as time is concerned: the pause, the spacing, and every
   * limit that counts one of its units. `<= now` means now.
   */
  private readyAt(demand: Demand, now: number): number {
    let ready = this.pauseEnd;
    if (this.spacing > 0) ready = Math.max(ready, this.lastStartAt + this.spacing);
    return payableAt(demand, this.buckets, this.shared, ready, now);
  }

  /** Charges every limit and hands out the permit. The caller has checked `canStart`. */
  private start(demand: Demand, signal: AbortSignal, now: number): RateLimiterPermit {
    const weight = weightOf(demand);
    const charges = chargeEach(demand, this.buckets, this.shared, now);
    this.inFlight += weight;
    this.lastStartAt = now;
    return new RateLimiterPermit(
      weight,
      signal,
      this.giveBackPermit,
      this.settlePermit,
      costRecord(demand),
      charges,
      this.identity,
      now,
      this.inFlight,
    );
  }

  /**
   * Starts waiters from the head while the head may start; at the first that may not, arms the timer
   * for when it may (if time is what it waits for) or disarms it (if it waits for a release).
   */
  private dispatch(): void {
    this.admission.dispatch();
  }

  /**
   * Arms the one timer for `at`, replacing one armed for another time.
   *
   * The delay is the exact, fractional distance to `at`. Node counts timers from the event loop's cached
   * whole-millisecond time, so a timer may fire up to ~1 ms before `at` on `performance.now()`; `dispatch`
   * then finds the head not yet payable and re-arms for the remainder, so nothing is ever admitted early.
   * Measured against rounding the delay up, this fires no later on average (about 0.6 ms after `at`) and
   * keeps fake clocks exact.
   */
  private arm(at: number, now: number): void {
    if (this.timer !== undefined) {
      if (this.timerAt === at) return;
      this.clock.clearTimeout(this.timer);
    }
    this.timerAt = at;
    this.timer = this.clock.setTimeout(this.onTimer, at - now);
  }

  private disarm(): void {
    if (this.timer === undefined) return;
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /**
   * Whether `weight` more fits the concurrency now. With `concurrency: "auto"`, a call heavier than the
   * current limit (within its max) goes alone, as in `AdaptiveLimiter`: only samples raise the limit.
   */
  private hasRoomFor(weight: number): boolean {
    return this.inFlight + weight <= this.concurrencyLimit || (this.adaptive !== undefined && this.inFlight === 0);
  }

  /** Feeds `concurrency: "auto"` one sample; a limit that grew wakes the waiters that now fit. */
  private moveConcurrency(sample: LimitSample): void {
    const adaptive = this.adaptive as LimitEstimator;
    const before = this.concurrencyLimit;
    adaptive.sample(sample);
    this.concurrencyLimit = adaptive.limit;
    if (this.concurrencyLimit > before && this.queue.size !== 0) this.dispatch();
  }

  /** Frees a concurrency slot and hands it on in the same synchronous step. Called by permits. */
  private giveBack(weight: number): void {
    this.inFlight -= weight;
    if (this.queue.size !== 0) this.dispatch();
    if (this.inFlight === 0 && (this.idleResolvers !== undefined || this.onQuiet !== undefined)) this.notifyIfIdle();
  }

  private notifyIfIdle(): void {
    if (this.inFlight !== 0 || this.queue.size !== 0) return;
    this.onQuiet?.();
    const resolvers = this.idleResolvers;
    if (resolvers === undefined) return;
    this.idleResolvers = undefined;
    for (const resolve of resolvers) resolve();
  }

  /** Applies a settlement to the limits. Called by permits. */
  private applySettlement(permit: RateLimiterPermit, target: Record<string, number>, first: boolean): void {
    const before = settleCharges(
      permit,
      target,
      first,
      this.buckets,
      this.refund,
      this.settledTotals,
      this.clock.now(),
    );
    this.emit("settle", { estimate: before, actual: { ...permit.cost } });
    // A refund may let the head start earlier, an extra later: either way the timer must follow.
    if (this.queue.size !== 0) this.dispatch();
  }

  /** A RangeError if `demand` could never be admitted under the current configuration. */
  private whyImpossible(demand: Demand): RangeError | undefined {
    const weight = weightOf(demand);
    const most = this.adaptive?.max ?? this.concurrencyLimit;
    if (weight > most) {
      return weightAboveCapacity(weight, most, `${this.subject()} (its concurrency)`);
    }
    return costImpossible(demand, this.buckets, this.shared, () => this.subject());
  }

  /** After a configuration change: nothing may wait for what can no longer happen. */
  private rejectImpossible(): void {
    this.queue.forEach((waiter) => {
      const impossible = this.whyImpossible(waiter.request);
      if (impossible !== undefined) this.admission.reject(waiter, impossible);
    });
  }

  private setLimits(value: readonly RateLimit[]): void {
    if (!Array.isArray(value)) throw new TypeError(`limits must be an array; got ${describe(value)}`);
    const configs = value.map((limit, index) => checkRateLimit(limit, `limits[${index}]`));
    const now = this.clock.now();
    const unused = [...this.buckets];
    this.buckets = configs.map((config) => {
      const index = unused.findIndex((bucket) => bucket.unit === config.unit && bucket.algorithm === config.algorithm);
      if (index !== -1) {
        const [bucket] = unused.splice(index, 1) as [RateBucket];
        bucket.reconfigure(config.limit, config.intervalMs, config.burst, now);
        return bucket;
      }
      return newRateBucket(config);
    });
    this.counted = countedUnits([...configs, ...this.shared.map(({ bucket }) => bucket)]);
    this.limitConfigs = configs.map(({ limit, interval, unit, burst, algorithm }) =>
      algorithm === "token-bucket" ? { limit, interval, unit, burst, algorithm } : { limit, interval, unit, algorithm },
    );
  }

  private emit<E extends keyof RateLimiterEvents>(event: E, payload: RateLimiterEvents[E]): void {
    const set = this.listeners[event] as Set<(event: RateLimiterEvents[E]) => void> | undefined;
    if (set === undefined) return;
    for (const listener of set) {
      try {
        listener(payload);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  private subject(): string {
    if (this.subjectText !== undefined) return this.subjectText;
    return this.name === undefined ? "the rate limiter" : `rate limiter ${JSON.stringify(this.name)}`;
  }

  /**
   * @internal For a keyed rate limiter: adds the limits of its levels, shared with other keys, and says
   * what messages call this limiter. Called once, right after construction.
   */
  joinLevels(shared: readonly SharedLimit[], subject: string): void {
    this.shared = shared;
    this.subjectText = subject;
    if (shared.length > 0) this.counted = countedUnits([...this.limitConfigs, ...shared.map(({ bucket }) => bucket)]);
  }

  /** @internal The lifetime counters, without a snapshot (a keyed rate limiter reads them on a drop). */
  counters(): LimiterCounters {
    return this.admission.counters;
  }

  /**
   * @internal For a keyed rate limiter's key that must queue: takes over what its light state spent and
   * holds (its limits' buckets, in the order of this limiter's own, the weight in flight, the last start,
   * the grants and settlements so far). Called once, right after construction.
   */
  adopt(buckets: RateBucket[], inFlight: number, lastStartAt: number, granted: number, settled: SettledTotals): void {
    this.buckets = buckets;
    this.inFlight = inFlight;
    this.lastStartAt = lastStartAt;
    this.admission.adoptGrants(granted);
    this.settledTotals = settled;
  }

  /** @internal Gives back `weight` of a permit this limiter adopted (see `adopt`). */
  releaseAdopted(weight: number): void {
    this.giveBack(weight);
  }

  /** @internal Settles a permit this limiter adopted (see `adopt`). */
  settleAdopted(permit: RateLimiterPermit, target: Record<string, number>, first: boolean): void {
    this.applySettlement(permit, target, first);
  }

  /** @internal The `refund` option, checked. */
  get refundOption(): boolean | Readonly<Record<string, boolean>> {
    return this.refund;
  }

  /** @internal Fresh buckets of this limiter's own limits (a keyed rate limiter's light key). */
  freshBuckets(): RateBucket[] {
    return this.buckets.map(emptyLike);
  }

  /** @internal This limiter's own limits, to be shared by the keys of a level it is an instance of. */
  sharedLimits(subject: string): SharedLimit[] {
    return this.buckets.map((bucket) => ({ bucket, subject }));
  }

  /**
   * @internal The earliest clock time from which this limiter, if nobody calls it, remembers nothing a
   * fresh one would not: its own limits refilled, the pause over, the spacing passed. A keyed rate
   * limiter drops a quiet key then. Its shared limits are not its own and do not count.
   */
  idleAt(now: number): number {
    let at = Math.max(this.pauseEnd, this.lastStartAt + this.spacing);
    for (const bucket of this.buckets) at = Math.max(at, bucket.idleAt(now));
    return at;
  }
}

/** @internal A limit shared by several rate limiters (a level of a keyed rate limiter), and what it is called. */
export interface SharedLimit {
  readonly bucket: RateBucket;
  /** Names the level in messages: `level "tenant" key "acme" of keyed rate limiter "api"`. */
  readonly subject: string;
}

/** @internal What a limiter's settled calls add up to (`statistics().settled`). */
export interface SettledTotals {
  calls: number;
  estimated: Record<string, number>;
  actual: Record<string, number>;
}

/** @internal No call settled yet. */
export function newSettledTotals(): SettledTotals {
  return { calls: 0, estimated: {}, actual: {} };
}

/**
 * @internal The earliest time `demand` can be paid by every limit that counts one of its units, own and
 * shared, and not before `ready`. `<= now` means now.
 */
export function payableAt(
  demand: Demand,
  buckets: readonly RateBucket[],
  shared: readonly SharedLimit[],
  ready: number,
  now: number,
): number {
  for (const bucket of buckets) {
    const cost = costOf(demand, bucket.unit);
    if (cost > 0) ready = Math.max(ready, bucket.readyAt(cost, now));
  }
  for (const { bucket } of shared) {
    const cost = costOf(demand, bucket.unit);
    if (cost > 0) ready = Math.max(ready, bucket.readyAt(cost, now));
  }
  return ready;
}

/** @internal Charges `demand` to every limit that counts one of its units; the caller checked `payableAt`. */
export function chargeEach(
  demand: Demand,
  buckets: readonly RateBucket[],
  shared: readonly SharedLimit[],
  now: number,
): Charge[] {
  const charges: Charge[] = [];
  for (const bucket of buckets) {
    const cost = costOf(demand, bucket.unit);
    if (cost > 0) charges.push({ bucket, handle: bucket.charge(cost, now) });
  }
  for (const { bucket } of shared) {
    const cost = costOf(demand, bucket.unit);
    if (cost > 0) charges.push({ bucket, handle: bucket.charge(cost, now) });
  }
  return charges;
}

/** @internal The RangeError for a cost some limit (own or shared) could never pay, or `undefined`. */
export function costImpossible(
  demand: Demand,
  buckets: readonly RateBucket[],
  shared: readonly SharedLimit[],
  own: () => string,
): RangeError | undefined {
  for (const bucket of buckets) {
    if (costOf(demand, bucket.unit) > bucket.capacity) return costAbove(demand, bucket, own());
  }
  for (const { bucket, subject } of shared) {
    if (costOf(demand, bucket.unit) > bucket.capacity)
      return costAbove(demand, bucket, `${subject} (shared by ${own()})`);
  }
  return undefined;
}

/**
 * @internal Sets `permit`'s charge to `target` in the limits it was charged to (and takes an extra in
 * `buckets` it paid nothing into), counts it in `totals`; returns what it was charged before.
 */
export function settleCharges(
  permit: RateLimiterPermit,
  target: Record<string, number>,
  first: boolean,
  buckets: readonly RateBucket[],
  refund: boolean | Readonly<Record<string, boolean>>,
  totals: SettledTotals,
  now: number,
): Record<string, number> {
  const before = { ...permit.cost };
  const estimate = permit.estimate as Readonly<Record<string, number>>;
  for (const unit of Object.keys(target)) {
    const old = permit.cost[unit] ?? 0;
    let actual = target[unit] as number;
    // Without refunds the estimate is the least the call costs — not the last settle, which may have
    // been an extra that a later settle corrects (each settle sets the charge anew).
    if (!(typeof refund === "boolean" ? refund : (refund[unit] ?? true)))
      actual = Math.max(actual, estimate[unit] ?? 0);
    const delta = actual - old;
    if (delta === 0) continue;
    const charged = new Set<RateBucket>();
    for (const charge of permit.charges) {
      if (charge.bucket.unit !== unit) continue;
      charged.add(charge.bucket);
      charge.bucket.adjust(charge.handle, delta, now);
    }
    // A limit this call paid nothing into (the estimate left its unit out) can take an extra, but has
    // nothing to refund.
    if (delta > 0) {
      for (const bucket of buckets) {
        if (bucket.unit === unit && !charged.has(bucket)) bucket.adjust(undefined, delta, now);
      }
    }
    permit.cost[unit] = actual;
  }
  if (first) {
    totals.calls++;
    for (const [unit, amount] of Object.entries(before))
      totals.estimated[unit] = (totals.estimated[unit] ?? 0) + amount;
    for (const [unit, amount] of Object.entries(before)) totals.actual[unit] = (totals.actual[unit] ?? 0) + amount;
  }
  for (const unit of Object.keys(permit.cost)) {
    const change = (permit.cost[unit] ?? 0) - (before[unit] ?? 0);
    if (change !== 0) totals.actual[unit] = (totals.actual[unit] ?? 0) + change;
  }
  return before;
}

/** @internal A snapshot of each limit and, per unit, the least budget left (`statistics().limits`, `.remaining`). */
export function limitStatistics(
  buckets: readonly RateBucket[],
  now: number,
): { limits: RateLimitStatistics[]; remaining: Record<string, number> } {
  const remaining: Record<string, number> = {};
  const limits = buckets.map((bucket) => {
    const left = bucket.available(now);
    remaining[bucket.unit] = Math.min(remaining[bucket.unit] ?? Number.POSITIVE_INFINITY, left);
    return {
      unit: bucket.unit,
      algorithm: bucket.algorithm,
      limit: bucket.limit,
      interval: bucket.interval,
      capacity: bucket.capacity,
      remaining: left,
    };
  });
  return { limits, remaining };
}

/**
 * @internal `tryAcquire`'s options, checked as `RateLimiter.tryAcquire` checks them, as a demand.
 * @throws TypeError/RangeError for bad options.
 */
export function checkTryOptions(
  options: Pick<RateAcquireOptions, "cost" | "weight"> | undefined,
  counted: ReadonlySet<string>,
): Demand {
  if (options === undefined) return 1;
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object; got ${describe(options)}`);
  }
  checkOptionNames(options, TRY_ACQUIRE_OPTIONS, "the tryAcquire options");
  return normalizeDemand(options.cost, options.weight === undefined ? 1 : checkWeight(options.weight), counted);
}

/** The RangeError for a cost `bucket` could never pay, or `undefined`. */
function costAbove(demand: Demand, bucket: RateBucket, subject: string): RangeError | undefined {
  return costAboveBucket(costOf(demand, bucket.unit), bucket, subject);
}

/** @internal The RangeError for a `cost` (in `bucket`'s unit) it could never pay, or `undefined`. */
export function costAboveBucket(cost: number, bucket: RateBucket, subject: string): RangeError | undefined {
  if (cost <= bucket.capacity) return undefined;
  const what = bucket.algorithm === "token-bucket" ? "burst" : "limit";
  return costAboveLimit(
    cost,
    bucket.unit,
    { what, bound: bucket.capacity, limit: bucket.limit, intervalMs: bucket.interval },
    subject,
  );
}

// ---------------------------------------------------------------------------------------------------
// Argument checks. Each failure names the argument and the value.

/** @internal */
export interface CheckedLimit {
  limit: number;
  interval: Duration;
  intervalMs: number;
  unit: string;
  burst: number;
  algorithm: "token-bucket" | "sliding-window";
}

/** @internal Checks one rate limit, naming `argument` and the value on failure. */
export function checkRateLimit(value: unknown, argument: string): CheckedLimit {
  if (typeof value !== "object" || value === null) {
    throw new TypeError(`${argument} must be an object such as { limit: 100, interval: "1m" }; got ${describe(value)}`);
  }
  checkOptionNames(value, RATE_LIMIT_OPTIONS, argument);
  const limit = value as RateLimit;
  const amount = checkPositive(limit.limit, `${argument}.limit`);
  if (limit.interval === undefined)
    throw new TypeError(`${argument}.interval is required (ms or a duration such as "1m")`);
  const intervalMs = toMilliseconds(limit.interval, `${argument}.interval`);
  if (intervalMs === 0) throw new RangeError(`${argument}.interval must be > 0; got ${describe(limit.interval)}`);
  const unit = limit.unit ?? REQUESTS;
  if (typeof unit !== "string" || unit === "") {
    throw new TypeError(`${argument}.unit must be a non-empty string; got ${describe(unit)}`);
  }
  // Costs are plain objects: a unit named like one of Object.prototype's members would read that member.
  if (unit in Object.prototype) {
    throw new RangeError(`${argument}.unit must not be the name of an Object.prototype member; got ${describe(unit)}`);
  }
  const algorithm = limit.algorithm ?? "token-bucket";
  if (algorithm !== "token-bucket" && algorithm !== "sliding-window") {
    throw new RangeError(
      `${argument}.algorithm must be "token-bucket" or "sliding-window"; got ${describe(algorithm)}`,
    );
  }
  if (algorithm === "sliding-window" && limit.burst !== undefined) {
    throw new RangeError(`${argument}.burst applies to token buckets only; a sliding window's burst is its limit`);
  }
  const burst = limit.burst === undefined ? amount : checkPositive(limit.burst, `${argument}.burst`);
  return { limit: amount, interval: limit.interval, intervalMs, unit, burst, algorithm };
}

function checkPositive(value: unknown, argument: string): number {
  if (typeof value !== "number") throw new TypeError(`${argument} must be a number; got ${describe(value)}`);
  if (!Number.isFinite(value) || value <= 0)
    throw new RangeError(`${argument} must be a finite number > 0; got ${value}`);
  return value;
}

function checkConcurrency(value: unknown): number {
  const concurrency = checkCapacity(value, "concurrency");
  if (concurrency === 0) throw new RangeError("concurrency must be an integer >= 1 or Infinity; got 0");
  return concurrency;
}

function checkRefund(value: unknown): boolean | Readonly<Record<string, boolean>> {
  if (typeof value === "boolean") return value;
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    for (const [unit, refund] of Object.entries(value)) {
      if (typeof refund !== "boolean") throw new TypeError(`refund.${unit} must be a boolean; got ${describe(refund)}`);
    }
    return { ...(value as Record<string, boolean>) };
  }
  throw new TypeError(`refund must be a boolean or an object of booleans per unit; got ${describe(value)}`);
}

/** @internal Validates a cost and returns the compact demand for the queue. */
export function normalizeDemand(cost: RateCost | undefined, weight: number, counted: ReadonlySet<string>): Demand {
  if (cost === undefined) return weight === 1 ? 1 : new Order(weight, { [REQUESTS]: 1 });
  if (typeof cost === "number") {
    checkCostValue(cost, "cost");
    return weight === 1 ? cost : new Order(weight, { [REQUESTS]: cost });
  }
  const record = normalizeCost(cost);
  checkCostUnits(record, counted, "cost");
  return weight === 1 ? record : new Order(weight, record);
}
