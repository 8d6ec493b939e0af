/**
 * SharedRateLimiter: token buckets in shared memory, so that all the worker threads of a process together
 * respect one rate limit (one API key's requests and tokens per minute).
 *
 * Each limit is a GCRA token bucket reduced to one 64-bit word, its *theoretical arrival time* (`tat`,
 * nanoseconds on the process clock): the bucket is full at `tat` and later. A caller *reserves* its
 * start time with one compare-exchange per limit — the earliest time at which every limit can pay its
 * cost — and then waits, in its own thread, until that time. So:
 * - the order across threads is the order of reservations (arrival), with no cross-thread wake-ups at
 *   all: time alone releases a waiter;
 * - each thread has one timer, for its earliest reservation, never one per waiter and never polling;
 * - a caller whose reserved start is further away than its `timeout` is refused at once, its
 *   reservation returned, rather than waiting to fail (as Go's `rate.Limiter.Wait` does).
 *
 * Callers go through the one admission step (core/admission.ts) like every Limiter's: a cost above a
 * burst is refused, an aborted signal rejects, a call that can start now is booked and granted in that
 * step, `timeout: 0` books nothing when it cannot, and the others are booked as they join this
 * thread's queue.
 */
import { Admission, type LimiterStatistics } from "../core/admission.js";
import { checkClock, checkFunction, checkName, checkOptionNames, optionNames } from "../core/arguments.js";
import type { Clock, TimerHandle } from "../core/clock.js";
import { describe } from "../core/describe.js";
import { identify, type LimiterIdentity } from "../core/diagnostics.js";
import { type Duration, toMilliseconds } from "../core/duration.js";
import { costAboveLimit, TimeoutError } from "../core/errors.js";
import type { AcquireOptions, Limiter, Permit } from "../core/limiter.js";
import { type GiveBack, HeldPermit, runHolding } from "../core/permit.js";
import { checkCostUnits, countedUnits, normalizeCost } from "../core/rate-cost.js";
import type { RateCost } from "../core/rate-limiter.js";
import { type CheckedWaitOptions, checkAcquireOptions } from "../core/wait-options.js";
import type { Waiter, WaitQueue } from "../core/wait-queue.js";
import { processClock } from "./process-clock.js";

/** Identifies a sluice SharedRateLimiter buffer. */
const MAGIC = 0x536c5231n;

/** One limit: at most `limit` cost per `interval`, at most `burst` of it at once. */
export interface SharedRateLimit {
  /** Cost admitted per interval (a positive number). */
  limit: number;
  /** The interval: milliseconds or a duration string such as `"1m"`. */
  interval: Duration;
  /** The most cost admitted at once (the bucket's size). Default: `limit`. */
  burst?: number;
  /** What the cost counts: `"requests"` (the default) or any name, such as `"tokens"`. */
  unit?: string;
}

/** Options for {@link SharedRateLimiter}. */
export interface SharedRateLimiterOptions {
  /** Every limit must admit a call; all are charged together. */
  limits: SharedRateLimit[];
  /** Shows up in error messages. */
  name?: string;
  /** The time source in this thread; see {@link SharedRateLimiterAttachOptions.clock}. */
  clock?: Clock;
}

/** Options for {@link SharedRateLimiter.from}. */
export interface SharedRateLimiterAttachOptions {
  /**
   * The time source. It must be on the same scale in every thread that shares the limiter (the default
   * {@link processClock} is); a `FakeClock` only makes sense when one thread uses the limiter.
   */
  clock?: Clock;
}

const SHARED_RATE_LIMITER_OPTIONS = /* @__PURE__ */ optionNames<SharedRateLimiterOptions>({
  limits: true,
  name: true,
  clock: true,
});
const ATTACH_OPTIONS = /* @__PURE__ */ optionNames<SharedRateLimiterAttachOptions>({ clock: true });
const SHARED_RATE_LIMIT_OPTIONS = /* @__PURE__ */ optionNames<SharedRateLimit>({
  limit: true,
  interval: true,
  burst: true,
  unit: true,
});

/**
 * Options for one call of a {@link SharedRateLimiter}: how much it costs, besides {@link AcquireOptions}.
 * `priority` is checked but reorders nothing (the place in line is reserved at call time); `weight` is
 * what the permit counts in `inUse` while held.
 */
export interface SharedRateAcquireOptions extends AcquireOptions {
  /**
   * A number (cost in `requests`) or cost per unit, such as `{ tokens: 1200 }`. A unit left out costs 0,
   * except `requests`, which costs 1. Default: 1 request.
   */
  cost?: RateCost;
}

/**
 * A snapshot of a shared rate limiter, for logs and metrics. The core fields are this thread's: a
 * shared rate limiter caps no concurrency, so `capacity` and `available` are `Infinity`, `inUse` is the
 * weight of this thread's permits not yet released and `waiting` its callers waiting; the lifetime
 * counters are this thread's. `remaining` is the budget of all threads together.
 */
export interface SharedRateLimiterStatistics extends LimiterStatistics {
  /** Budget left right now per unit, for all threads together (negative while reservations run ahead). */
  remaining: Record<string, number>;
}

/** Pass it to other threads and rebuild the limiter there with {@link SharedRateLimiter.from}. */
export interface SharedRateLimiterHandle {
  /** Marks a handle, so that `from()` can refuse anything else with a clear error. */
  readonly kind: "sluice:SharedRateLimiter";
  /** The state every thread reads and writes with atomics. */
  readonly buffer: SharedArrayBuffer;
  /** The name given to the limiter, for error messages and statistics in every thread. */
  readonly name: string | undefined;
  /** The limits, checked and with their defaults filled in, so every thread computes the same. */
  readonly limits: readonly Readonly<{
    /** How much cost the limit admits per `interval`. */
    limit: number;
    /** The interval, in ms. */
    interval: number;
    /** The most it admits at once (the bucket's size). */
    burst: number;
    /** The unit it counts: `requests`, `tokens`, ... */
    unit: string;
  }>[];
}

/** One limit, with its arithmetic in nanoseconds. */
interface Bucket {
  readonly unit: string;
  readonly limit: number;
  readonly interval: number;
  readonly burst: number;
  /** Nanoseconds one unit of cost moves `tat` (the emission interval). */
  readonly emission: number;
  /** How far ahead of now `tat` may be after a charge: `burst` units' worth of emission, in ns. */
  readonly tolerance: bigint;
}

/**
 * A caller's request: its cost per limit and, once booked, its start time and what it did to each `tat`
 * (to give it back on cancel).
 */
class Booking {
  /** Whether `start`, `before` and `after` hold a reservation in the shared words. */
  booked = false;
  start = 0n;
  before: readonly bigint[] = [];
  after: readonly bigint[] = [];
  constructor(
    /** Cost per limit, in the order of the limiter's buckets. */
    readonly costs: readonly number[],
    readonly weight: number,
    /** The caller's timeout in ms (`Infinity`: none), decided once the booking is made. */
    readonly timeout: number,
  ) {}
}

/** A permit of a {@link SharedRateLimiter}. */
export interface SharedRatePermit extends Permit {
  /**
   * When the call was scheduled to start, in ms on the limiter's clock ({@link processClock} by
   * default). The limits hold for these times; the grant comes at or after it.
   */
  readonly scheduledAt: number;
}

/**
 * The one permit, with the call's scheduled start. A shared rate permit holds no budget (the cost is
 * spent when admitted); its release gives back only its weight in `inUse`.
 */
class SharedRateLimiterPermit extends HeldPermit implements SharedRatePermit {
  // Declared, not initialised in the class body, as HeldPermit's are: a plain store in the constructor.
  declare readonly scheduledAt: number;
  constructor(
    weight: number,
    signal: AbortSignal,
    giveBack: GiveBack<SharedRateLimiterPermit, void>,
    scheduledAt: number,
    limiter: LimiterIdentity,
  ) {
    super(weight, signal, giveBack, limiter);
    this.scheduledAt = scheduledAt;
  }
}

/**
 * A rate limiter shared by worker threads: every limit (N cost per interval, token bucket with
 * `burst`) holds for all threads together — cost admitted in any span of time is at most
 * `burst + limit × span / interval`, whichever thread asked.
 *
 * Callers are admitted in the order they called `acquire()`, across threads. `priority` does not
 * reorder anything here: the place in line is reserved when `acquire()` is called. `timeout` is decided
 * at once: a call that would have to wait longer is refused straight away with a `TimeoutError` and its
 * place given back. Aborting a waiter gives its place back if nobody reserved after it; otherwise that
 * stretch of the budget stays unused (the limiter never admits more than promised to make up for it).
 *
 * Nothing is held, so there is nothing to reclaim when a worker dies: what it reserved is spent.
 *
 * @example
 * ```ts
 * import { SharedRateLimiter } from "sluice/threads";
 * const openai = new SharedRateLimiter({
 *   limits: [{ limit: 500, interval: "1m" }, { limit: 200_000, interval: "1m", unit: "tokens" }],
 * });
 * // in each worker: const openai = SharedRateLimiter.from(workerData.openai);
 * await openai.run(() => callModel(prompt), { cost: { tokens: 1_500 } });
 * ```
 */
export class SharedRateLimiter implements Limiter<SharedRateAcquireOptions> {
  /** Optional name, used in error messages and statistics. */
  readonly name: string | undefined;
  /** Pass this to other threads; rebuild the limiter there with {@link SharedRateLimiter.from}. */
  readonly handle: SharedRateLimiterHandle;
  /** Word 0: magic; word 1 + i: `tat` of limit i, in ns on the clock's scale. */
  private readonly words: BigInt64Array;
  private readonly buckets: Bucket[];
  /** The units the limits count, `requests` included: a cost unit one typo away from these is refused. */
  private readonly counted: ReadonlySet<string>;
  private readonly clock: Clock;
  /** The admission step; its queue holds this thread's callers. */
  private readonly admission: Admission<Booking, SharedRatePermit>;
  /** What its `sluice:*` events name. */
  private readonly identity: LimiterIdentity;
  /**
   * This thread's waiters, all booked, in reservation order — which is start-time order, because each
   * `tat` only grows and a later reservation starts no earlier than an earlier one.
   */
  private readonly queue: WaitQueue<Booking, SharedRatePermit>;
  /** The one timer. Invariant: armed exactly while someone waits here, for the head's start. */
  private timer: TimerHandle | undefined;
  /** Weight of this thread's permits not yet released. */
  private inFlight = 0;
  /** The clock time `fits` decided at, in ns, for the `stalled` that follows it in the same step. */
  private decidedAt = 0n;
  private readonly giveBackPermit = (permit: SharedRateLimiterPermit): void => {
    this.inFlight -= permit.weight;
  };

  /** @throws RangeError/TypeError for bad limits, `name` or `clock`. */
  constructor(options: SharedRateLimiterOptions);
  /** @internal Rebuilds from a handle; use {@link SharedRateLimiter.from}. */
  constructor(handle: SharedRateLimiterHandle, attach?: SharedRateLimiterAttachOptions);
  constructor(
    options: SharedRateLimiterOptions | SharedRateLimiterHandle,
    attach: SharedRateLimiterAttachOptions = {},
  ) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`options must be an object; got ${describe(options)}`);
    }
    if (typeof attach !== "object" || attach === null) {
      throw new TypeError(`options must be an object; got ${describe(attach)}`);
    }
    if ("kind" in options) checkOptionNames(attach, ATTACH_OPTIONS, "the SharedRateLimiter.from() options");
    else checkOptionNames(options, SHARED_RATE_LIMITER_OPTIONS, "the new SharedRateLimiter() options");
    // Checked here, not at the first call: a clock that fails inside `acquire` would throw from it.
    const clock = checkClock("kind" in options ? attach.clock : options.clock) ?? processClock;
    let buffer: SharedArrayBuffer;
    let limits: SharedRateLimiterHandle["limits"];
    if ("kind" in options) {
      if (options.kind !== "sluice:SharedRateLimiter" || !(options.buffer instanceof SharedArrayBuffer)) {
        throw new TypeError(`handle must be a SharedRateLimiter's handle (limiter.handle); got ${describe(options)}`);
      }
      buffer = options.buffer;
      limits = options.limits;
      this.name = options.name;
    } else {
      limits = checkLimits(options.limits);
      this.name = checkName(options.name);
      buffer = new SharedArrayBuffer(8 * (1 + limits.length));
      const words = new BigInt64Array(buffer);
      // Start every bucket full: a `tat` far in the past.
      for (let i = 0; i < limits.length; i++) words[1 + i] = -(2n ** 62n);
      Atomics.store(words, 0, MAGIC);
    }
    this.words = new BigInt64Array(buffer);
    if (Atomics.load(this.words, 0) !== MAGIC || this.words.length !== 1 + limits.length) {
      throw new TypeError("handle.buffer must be the SharedArrayBuffer of a sluice SharedRateLimiter");
    }
    this.counted = countedUnits(limits);
    this.buckets = limits.map((limit) => {
      const emission = (limit.interval * 1e6) / limit.limit;
      return { ...limit, emission, tolerance: BigInt(Math.floor(limit.burst * emission)) };
    });
    this.handle = Object.freeze({ kind: "sluice:SharedRateLimiter", buffer, name: this.name, limits });
    this.clock = clock;
    this.identity = identify(this, this.name, "rate-limiter", "threads", clock);
    this.admission = new Admission<Booking, SharedRatePermit>(
      {
        // A cost above a burst could never be paid: refused, never booked.
        impossible: (booking) => this.whyImpossible(booking),
        // A caller first in line is booked only if it can start now; a queued one was booked on joining.
        fits: (booking) => {
          const now = (this.decidedAt = this.nowNs());
          return booking.booked ? booking.start <= now : this.book(booking, now, now);
        },
        take: (booking, signal) => {
          this.inFlight += booking.weight;
          return new SharedRateLimiterPermit(
            booking.weight,
            signal,
            this.giveBackPermit,
            Number(booking.start) / 1e6,
            this.identity,
          );
        },
        enqueued: (booking) => this.bookWaiter(booking),
        stalled: (head) => this.arm(head),
        // Its place goes back to the budget if nobody booked after it.
        left: (waiter) => this.giveBack(waiter.request),
        weight: (booking) => booking.weight,
      },
      clock,
      () => this.subject(),
      undefined,
      this.identity,
    );
    this.queue = this.admission.queue;
  }

  /**
   * Rebuilds, in this thread, the limiter whose `handle` another thread passed over.
   *
   * @example
   * ```ts
   * import { workerData } from "node:worker_threads";
   * const limiter = SharedRateLimiter.from(workerData.limiter);
   * ```
   */
  static from(handle: SharedRateLimiterHandle, options?: SharedRateLimiterAttachOptions): SharedRateLimiter {
    return rebuild(handle, options);
  }

  /** Callers waiting in this thread. */
  get waiting(): number {
    return this.queue.size;
  }

  /** Weight of this thread's permits not yet released. */
  get inUse(): number {
    return this.inFlight;
  }

  /**
   * Budget left right now, per unit, for all threads together (negative while reservations run ahead).
   */
  remaining(): Record<string, number> {
    const now = this.nowNs();
    const result: Record<string, number> = {};
    this.buckets.forEach((bucket, i) => {
      const tat = Atomics.load(this.words, 1 + i);
      const ahead = tat > now ? Number(tat - now) : 0;
      result[bucket.unit] = bucket.burst - ahead / bucket.emission;
    });
    return result;
  }

  /**
   * Waits until every limit admits the call's cost, in the order calls were made across threads.
   * Rejects (never throws) with a `TypeError`/`RangeError` for bad options, a `RangeError` for a cost
   * above a limit's burst (it could never be paid), `signal.reason` if the signal has aborted (also
   * while waiting), and a `TimeoutError` at once when the wait would be longer than `timeout`.
   *
   * @example
   * ```ts
   * const permit = await limiter.acquire({ cost: { tokens: 1_500 }, timeout: 10_000 });
   * ```
   */
  acquire(options?: SharedRateAcquireOptions): Promise<SharedRatePermit> {
    const outcome = this.admit(options);
    return outcome instanceof Promise ? outcome : Promise.resolve(outcome);
  }

  /**
   * Runs `fn` once admitted and releases when it settles — returned, thrown or rejected. `fn` receives
   * the caller's signal (after the grant it means "stop the work") and the permit.
   *
   * @example
   * ```ts
   * const reply = await limiter.run((signal) => callModel(prompt, { signal }), { cost: { tokens: 1_500 } });
   * ```
   */
  run<T>(
    fn: (signal: AbortSignal, permit: SharedRatePermit) => T | PromiseLike<T>,
    options?: SharedRateAcquireOptions,
  ): Promise<T> {
    try {
      checkFunction(fn, "fn");
    } catch (error) {
      return Promise.reject(error);
    }
    const outcome = this.admit(options);
    // Admitted now: the work starts in this very call, as the limiter admitted it.
    if (!(outcome instanceof Promise)) return runHolding(fn, outcome);
    return outcome.then((permit) => runHolding(fn, permit));
  }

  /** A snapshot: this thread's callers and counters, and the budget of all threads together. */
  statistics(): SharedRateLimiterStatistics {
    return {
      name: this.name,
      capacity: Number.POSITIVE_INFINITY,
      available: Number.POSITIVE_INFINITY,
      inUse: this.inFlight,
      waiting: this.queue.size,
      ...this.admission.counters,
      remaining: this.remaining(),
    };
  }

  /**
   * `acquire` and `run` through the admission step: the permit itself if the call starts now, otherwise
   * the promise of the wait. Never throws.
   */
  private admit(options: SharedRateAcquireOptions | undefined): SharedRatePermit | Promise<SharedRatePermit> {
    let booking: Booking;
    let wait: CheckedWaitOptions;
    try {
      const checked = checkAcquireOptions(options);
      booking = new Booking(this.costs(options?.cost), checked.weight, checked.timeout);
      // All wait at one priority: the place in line is the reservation. The queue itself never times
      // a waiter out: the timeout is decided when the booking is made (`bookWaiter`).
      wait = {
        priority: 0,
        signal: checked.signal,
        timeout: checked.timeout === 0 ? 0 : Number.POSITIVE_INFINITY,
      };
    } catch (error) {
      return Promise.reject(error);
    }
    return this.admission.admit(booking, wait);
  }

  /**
   * A caller just joined this thread's queue: books its start, and refuses it at once (as timed out,
   * its booking given back) when that start is further away than its timeout.
   */
  private bookWaiter(booking: Booking): void {
    const now = this.nowNs();
    this.book(booking, now, undefined);
    const wait = Number(booking.start - now) / 1e6;
    if (wait > booking.timeout) {
      const timeout = booking.timeout;
      const waiter = this.queue.newest(0) as Waiter<Booking, SharedRatePermit>;
      this.queue.cancel(waiter, "timeout", new TimeoutError(timeout, this.queue.timeoutMessage(timeout)));
    } else if (this.queue.head?.request === booking) {
      // A new head: the timer must follow it.
      this.admission.dispatch();
    }
  }

  /**
   * Books the earliest start every limit allows, with one compare-exchange per limit — only if that
   * start is no later than `latest`, when given; returns whether it booked. If another thread books a
   * limit in between, the limits already booked are given back and the booking starts over, so all
   * limits are charged for the same start time (charging one limit for an earlier start than the call
   * really gets could bunch calls up and break its promise).
   */
  private book(booking: Booking, now: bigint, latest: bigint | undefined): boolean {
    const words = this.words;
    const count = this.buckets.length;
    const before: bigint[] = new Array(count);
    const after: bigint[] = new Array(count);
    const charges: bigint[] = new Array(count);
    for (;;) {
      let start = now;
      for (let i = 0; i < count; i++) {
        const tat = Atomics.load(words, 1 + i);
        before[i] = tat;
        const bucket = this.buckets[i] as Bucket;
        // Rounding the charge up and the tolerance down keeps every rounding on the safe side.
        const charge = BigInt(Math.ceil((booking.costs[i] as number) * bucket.emission));
        charges[i] = charge;
        if (charge === 0n) continue;
        // GCRA: the call conforms at `start` when max(tat, start) + charge - start <= tolerance.
        const earliest = tat + charge - bucket.tolerance;
        if (earliest > start) start = earliest;
      }
      // Nothing is written for a call that cannot start in time: `timeout: 0` books nothing.
      if (latest !== undefined && start > latest) return false;
      let booked = 0;
      for (; booked < count; booked++) {
        const charge = charges[booked] as bigint;
        const tat = before[booked] as bigint;
        if (charge === 0n) {
          after[booked] = tat;
          continue;
        }
        // biome-ignore lint/complexity/useMathMinMax: bigint operands, which Math.max does not take
        const next = (tat > start ? tat : start) + charge;
        after[booked] = next;
        if (Atomics.compareExchange(words, 1 + booked, tat, next) !== tat) break;
      }
      if (booked === count) {
        booking.booked = true;
        booking.start = start;
        booking.before = before;
        booking.after = after;
        return true;
      }
      // Undo what was booked; if someone booked after us meanwhile, that stretch stays unused (safe).
      for (let i = 0; i < booked; i++) {
        if (charges[i] !== 0n) Atomics.compareExchange(words, 1 + i, after[i] as bigint, before[i] as bigint);
      }
    }
  }

  /** Returns a booking's budget where nobody has booked after it. */
  private giveBack(booking: Booking): void {
    if (!booking.booked) return;
    booking.booked = false;
    for (let i = 0; i < this.buckets.length; i++) {
      const after = booking.after[i] as bigint;
      const before = booking.before[i] as bigint;
      if (after !== before) Atomics.compareExchange(this.words, 1 + i, after, before);
    }
  }

  /** The one timer: grants the local waiters whose start has come, and re-arms for the next. */
  private readonly fire = (): void => {
    this.timer = undefined;
    this.admission.dispatch();
  };

  /** Dispatch stopped at `head` (not due yet), or nobody waits: the timer follows the head. */
  private arm(head: Waiter<Booking, SharedRatePermit> | undefined): void {
    if (this.timer !== undefined) {
      this.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (head === undefined) return;
    const wait = Number(head.request.start - this.decidedAt) / 1e6;
    // Timers may fire a little early against the monotonic clock (libuv rounds to whole ms); `fire`
    // then finds the head not due and arms again for the remainder.
    this.timer = this.clock.setTimeout(this.fire, wait <= 0 ? 0 : Math.ceil(wait));
  }

  private nowNs(): bigint {
    return BigInt(Math.round(this.clock.now() * 1e6));
  }

  /** Cost per limit, in the order of `buckets` (the same cost rule as every rate limiter: rate-cost.ts). */
  private costs(cost: RateCost | undefined): number[] {
    const normalized = normalizeCost(cost);
    // The same rule as RateLimiter's: a unit no limit counts is free, unless it is a typo of one that is.
    checkCostUnits(normalized, this.counted, "cost");
    return this.buckets.map((bucket) => normalized[bucket.unit] ?? 0);
  }

  /** A RangeError naming both numbers if `booking` costs more than a limit's burst could ever pay. */
  private whyImpossible(booking: Booking): RangeError | undefined {
    for (let i = 0; i < this.buckets.length; i++) {
      const bucket = this.buckets[i] as Bucket;
      const cost = booking.costs[i] as number;
      if (cost > bucket.burst) {
        const limit = { what: "burst" as const, bound: bucket.burst, limit: bucket.limit, intervalMs: bucket.interval };
        return costAboveLimit(cost, bucket.unit, limit, this.subject());
      }
    }
    return undefined;
  }

  private subject(): string {
    return this.name === undefined ? "the shared rate limiter" : `shared rate limiter ${JSON.stringify(this.name)}`;
  }
}

/**
 * `new SharedRateLimiter(…)` for `from`, outside the class body: a reference to the class inside its own body makes
 * the bundler rename it (`SharedRateLimiter.name` would read `_SharedRateLimiter`).
 */
function rebuild(
  handle: SharedRateLimiterHandle,
  options: SharedRateLimiterAttachOptions | undefined,
): SharedRateLimiter {
  return new SharedRateLimiter(handle, options);
}

function checkLimits(limits: unknown): SharedRateLimiterHandle["limits"] {
  if (!Array.isArray(limits) || limits.length === 0) {
    throw new TypeError(`limits must be a non-empty array of { limit, interval }; got ${describe(limits)}`);
  }
  const units = new Set<string>();
  return limits.map((entry: SharedRateLimit, index) => {
    if (typeof entry !== "object" || entry === null) {
      throw new TypeError(`limits[${index}] must be an object; got ${describe(entry)}`);
    }
    checkOptionNames(entry, SHARED_RATE_LIMIT_OPTIONS, `limits[${index}]`);
    const { limit } = entry;
    if (typeof limit !== "number" || !Number.isFinite(limit) || limit <= 0) {
      throw new RangeError(`limits[${index}].limit must be a finite number > 0; got ${describe(limit)}`);
    }
    const interval = toMilliseconds(entry.interval, `limits[${index}].interval`);
    if (interval <= 0)
      throw new RangeError(`limits[${index}].interval must be above 0; got ${describe(entry.interval)}`);
    const burst = entry.burst ?? limit;
    if (typeof burst !== "number" || !Number.isFinite(burst) || burst <= 0) {
      throw new RangeError(`limits[${index}].burst must be a finite number > 0; got ${describe(burst)}`);
    }
    const unit = entry.unit ?? "requests";
    if (typeof unit !== "string" || unit === "") {
      throw new TypeError(`limits[${index}].unit must be a non-empty string; got ${describe(unit)}`);
    }
    if (units.has(unit)) throw new RangeError(`limits[${index}].unit ${JSON.stringify(unit)} appears twice`);
    units.add(unit);
    return Object.freeze({ limit, interval, burst, unit });
  });
}
