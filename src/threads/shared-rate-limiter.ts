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
 */
import {
  checkClock,
  checkFunction,
  checkName,
  checkOptionNames,
  checkSignal,
  checkTimeout,
  optionNames,
} from "../core/arguments.js";
import type { Clock, TimerHandle } from "../core/clock.js";
import { type Duration, describe, toMilliseconds } from "../core/duration.js";
import { ReleasedError, TimeoutError } from "../core/errors.js";
import { type AcquireOptions, type Limiter, NEVER_ABORTED, type Permit } from "../core/limiter.js";
import { checkCostUnits, countedUnits, normalizeCost } from "../core/rate-cost.js";
import { checkAcquireOptionNames } from "../core/wait-options.js";
import { WaitQueue } from "../core/wait-queue.js";
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

const SHARED_RATE_LIMITER_OPTIONS = optionNames<SharedRateLimiterOptions>({ limits: true, name: true, clock: true });
const ATTACH_OPTIONS = optionNames<SharedRateLimiterAttachOptions>({ clock: true });
const SHARED_RATE_LIMIT_OPTIONS = optionNames<SharedRateLimit>({
  limit: true,
  interval: true,
  burst: true,
  unit: true,
});

/** Options for one call: how much it costs. */
export interface RateAcquireOptions extends AcquireOptions {
  /**
   * A number (cost in `requests`) or cost per unit, such as `{ tokens: 1200 }`. A unit left out costs 0,
   * except `requests`, which costs 1. Default: 1 request.
   */
  cost?: number | Record<string, number>;
}

/** Pass it to other threads and rebuild the limiter there with {@link SharedRateLimiter.from}. */
export interface SharedRateLimiterHandle {
  readonly kind: "sluice:SharedRateLimiter";
  readonly buffer: SharedArrayBuffer;
  readonly name: string | undefined;
  readonly limits: readonly Readonly<{ limit: number; interval: number; burst: number; unit: string }>[];
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

/** A caller's booking: its start time, and what it did to each `tat` (to give it back on cancel). */
interface Reservation {
  readonly start: bigint;
  readonly before: bigint[];
  readonly after: bigint[];
  readonly cost: number;
  readonly signal: AbortSignal;
}

/** A permit of a {@link SharedRateLimiter}. */
export interface RatePermit extends Permit {
  /**
   * When the call was scheduled to start, in ms on the limiter's clock ({@link processClock} by
   * default). The limits hold for these times; the grant comes at or after it.
   */
  readonly scheduledAt: number;
}

class SharedRatePermit implements RatePermit {
  private held = true;
  constructor(
    readonly weight: number,
    readonly signal: AbortSignal,
    readonly scheduledAt: number,
  ) {}
  /** A rate permit holds nothing (the cost is spent when admitted); release only guards against a second call. */
  release(): void {
    if (!this.held) throw new ReleasedError("this rate permit was already released");
    this.held = false;
  }
  [Symbol.dispose](): void {
    this.held = false;
  }
  [Symbol.asyncDispose](): Promise<void> {
    this.held = false;
    return Promise.resolve();
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
export class SharedRateLimiter implements Limiter<RateAcquireOptions> {
  readonly name: string | undefined;
  /** Pass this to other threads; rebuild the limiter there with {@link SharedRateLimiter.from}. */
  readonly handle: SharedRateLimiterHandle;
  /** Word 0: magic; word 1 + i: `tat` of limit i, in ns on the clock's scale. */
  private readonly words: BigInt64Array;
  private readonly buckets: Bucket[];
  /** The units the limits count, `requests` included: a cost unit one typo away from these is refused. */
  private readonly counted: ReadonlySet<string>;
  private readonly clock: Clock;
  /**
   * This thread's waiters, in reservation order — which is start-time order, because each `tat` only
   * grows and a later reservation starts no earlier than an earlier one.
   */
  private readonly queue: WaitQueue<Reservation, RatePermit>;
  /** The one timer: for the head's start. */
  private timer: TimerHandle | undefined;

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
    this.queue = new WaitQueue<Reservation, RatePermit>(
      this.clock,
      (waiter, _reason, wasHead) => {
        this.giveBack(waiter.request);
        if (wasHead) this.arm();
      },
      () => this.subject(),
    );
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

  /**
   * Budget left right now, per unit, for all threads together (negative while reservations run ahead).
   */
  available(): Record<string, number> {
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
   * Rejects (never throws) for bad options, a cost above a limit's burst (it could never be paid), a
   * `TimeoutError` when the wait would be longer than `timeout`, and `signal.reason` on abort.
   */
  acquire(options?: RateAcquireOptions): Promise<RatePermit> {
    let costs: number[];
    let signal: AbortSignal | undefined;
    let timeout = Number.POSITIVE_INFINITY;
    let total: number;
    try {
      if (options !== undefined && (typeof options !== "object" || options === null)) {
        throw new TypeError(`options must be an object; got ${describe(options)}`);
      }
      if (options !== undefined) checkAcquireOptionNames(options);
      costs = this.costs(options?.cost);
      total = costs.reduce((sum, cost) => sum + cost, 0);
      if (options?.timeout !== undefined) timeout = checkTimeout(options.timeout);
      signal = checkSignal(options?.signal);
      if (options?.weight !== undefined || options?.priority !== undefined) {
        checkAcquireExtras(options);
      }
      if (signal?.aborted) throw signal.reason;
    } catch (error) {
      return Promise.reject(error);
    }
    const now = this.nowNs();
    const reservation = this.reserve(costs, total, now, signal ?? NEVER_ABORTED);
    if (reservation.start <= now && this.queue.size === 0) {
      return Promise.resolve(new SharedRatePermit(total, reservation.signal, Number(reservation.start) / 1e6));
    }
    const wait = Number(reservation.start - now) / 1e6;
    if (wait > timeout) {
      this.giveBack(reservation);
      return Promise.reject(new TimeoutError(timeout, this.queue.timeoutMessage(timeout)));
    }
    const promise = this.queue.enqueue(reservation, 0, signal, Number.POSITIVE_INFINITY);
    if (this.queue.size === 1) this.arm();
    return promise;
  }

  /** Runs `fn` once admitted. `fn` receives the caller's signal and the permit. */
  async run<T>(
    fn: (signal: AbortSignal, permit: Permit) => T | PromiseLike<T>,
    options?: RateAcquireOptions,
  ): Promise<T> {
    checkFunction(fn, "fn");
    const permit = await this.acquire(options);
    try {
      return await fn(permit.signal, permit);
    } finally {
      permit.release();
    }
  }

  /**
   * Books the earliest start every limit allows, with one compare-exchange per limit. If another thread
   * books a limit in between, the limits already booked are given back and the booking starts over, so
   * all limits are charged for the same start time (charging one limit for an earlier start than the
   * call really gets could bunch calls up and break its promise).
   */
  private reserve(costs: number[], cost: number, now: bigint, signal: AbortSignal): Reservation {
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
        const charge = BigInt(Math.ceil((costs[i] as number) * bucket.emission));
        charges[i] = charge;
        if (charge === 0n) continue;
        // GCRA: the call conforms at `start` when max(tat, start) + charge - start <= tolerance.
        const earliest = tat + charge - bucket.tolerance;
        if (earliest > start) start = earliest;
      }
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
      if (booked === count) return { start, before: before.slice(), after: after.slice(), cost, signal };
      // Undo what was booked; if someone booked after us meanwhile, that stretch stays unused (safe).
      for (let i = 0; i < booked; i++) {
        if (charges[i] !== 0n) Atomics.compareExchange(words, 1 + i, after[i] as bigint, before[i] as bigint);
      }
    }
  }

  /** Returns a reservation's budget where nobody has reserved after it. */
  private giveBack(reservation: Reservation): void {
    for (let i = 0; i < this.buckets.length; i++) {
      const after = reservation.after[i] as bigint;
      const before = reservation.before[i] as bigint;
      if (after !== before) Atomics.compareExchange(this.words, 1 + i, after, before);
    }
  }

  /** Grants the local waiters whose start has come, then sets the one timer for the next. */
  private readonly fire = (): void => {
    this.timer = undefined;
    const now = this.nowNs();
    for (let head = this.queue.head; head !== undefined; head = this.queue.head) {
      if (head.request.start > now) break;
      this.queue.grant(
        head,
        new SharedRatePermit(head.request.cost, head.request.signal, Number(head.request.start) / 1e6),
      );
    }
    this.arm();
  };

  private arm(): void {
    if (this.timer !== undefined) {
      this.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
    const head = this.queue.head;
    if (head === undefined) return;
    const wait = Number(head.request.start - this.nowNs()) / 1e6;
    // Timers may fire a little early against the monotonic clock (libuv rounds to whole ms); `fire`
    // then finds the head not due and arms again for the remainder.
    this.timer = this.clock.setTimeout(this.fire, wait <= 0 ? 0 : Math.ceil(wait));
  }

  private nowNs(): bigint {
    return BigInt(Math.round(this.clock.now() * 1e6));
  }

  /** Cost per limit, in the order of `buckets` (the same cost rule as every rate limiter: rate-cost.ts). */
  private costs(cost: RateAcquireOptions["cost"]): number[] {
    const normalized = normalizeCost(cost);
    // The same rule as RateLimiter's: a unit no limit counts is free, unless it is a typo of one that is.
    checkCostUnits(normalized, this.counted, "cost");
    return this.buckets.map((bucket) => {
      const value = normalized[bucket.unit] ?? 0;
      if (value > bucket.burst) throw this.tooCostly(value, bucket);
      return value;
    });
  }

  private tooCostly(cost: number, bucket: Bucket): RangeError {
    return new RangeError(
      `cost ${cost} ${bucket.unit} is above the burst ${bucket.burst} of ${this.subject()}; it could never be admitted`,
    );
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

/** `weight` and `priority` are accepted for Limiter compatibility and checked, but change nothing here. */
function checkAcquireExtras(options: RateAcquireOptions): void {
  if (options.weight !== undefined && (!Number.isInteger(options.weight) || options.weight < 1)) {
    throw new RangeError(`weight must be a positive integer; got ${describe(options.weight)}`);
  }
  if (options.priority !== undefined && (typeof options.priority !== "number" || Number.isNaN(options.priority))) {
    throw new RangeError(`priority must be a number, not NaN; got ${describe(options.priority)}`);
  }
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
