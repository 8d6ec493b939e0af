/**
 * RedisRateLimiter: the in-memory RateLimiter's limits model — several limits with units, a cost per
 * call settled once known, minInterval, pause, observe — shared by every process through Redis.
 *
 * Each process keeps its callers in a local {@link WaitQueue} and asks Redis for its head only, one
 * script at a time: the script admits (charging every limit) or answers with the exact time until
 * every limit could pay, and the process sleeps precisely that long on its one timer. No polling, no
 * timer per waiter, no charge for a refused call.
 */
import { Admission, type LimiterStatistics } from "../core/admission.js";
import { checkFunction, checkOptionNames, optionNames } from "../core/arguments.js";
import { systemClock, type TimerHandle } from "../core/clock.js";
import { describe } from "../core/describe.js";
import { identify, type LimiterIdentity } from "../core/diagnostics.js";
import { type Duration, toMilliseconds } from "../core/duration.js";
import { ClosedError, costAboveLimit, TimeoutError, weightAboveCapacity } from "../core/errors.js";
import { type Limiter, NEVER_ABORTED, type Permit } from "../core/limiter.js";
import { HeldPermit, runHolding } from "../core/permit.js";
import {
  checkCostUnits,
  countedUnits,
  normalizeCost,
  normalizeSettlement,
  REQUESTS,
  reportedLimitsOf,
} from "../core/rate-cost.js";
import { type HeaderInput, parseRateLimitHeaders } from "../core/rate-headers.js";
import {
  type RateAcquireOptions,
  type RateCost,
  type RateLimit,
  RateLimiter,
  type RatePermit,
} from "../core/rate-limiter.js";
import { type CheckedAcquireOptions, checkAcquireOptions } from "../core/wait-options.js";
import type { Waiter, WaitQueue } from "../core/wait-queue.js";
import { type RedisClient, type RedisConnection, Script, toConnection } from "./connection.js";
import { RedisUnavailableError, withDeadline } from "./errors.js";
import {
  checkCloseOptions,
  checkCommandTimeout,
  checkNotices,
  checkPrefix,
  checkUnavailablePolicy,
  type RedisCloseOptions,
  type UnavailablePolicy,
} from "./options.js";
import type { RedisPermit } from "./permits.js";
import { RATE_ACQUIRE, RATE_INSPECT, RATE_PAUSE, RATE_SETTLE, RATE_TIGHTEN } from "./rate-scripts.js";
import { RedisSemaphore } from "./semaphore.js";

/** The longest interval a limit may have in Redis (366 days). */
const MAX_INTERVAL_MS = 366 * 86_400_000;

/** `concurrency`: an integer >= 1, or Infinity. */
function checkConcurrency(value: unknown): void {
  if (typeof value !== "number") throw new TypeError(`concurrency must be a number; got ${describe(value)}`);
  if (value !== Number.POSITIVE_INFINITY && (!Number.isInteger(value) || value < 1)) {
    throw new RangeError(`concurrency must be an integer >= 1 or Infinity; got ${value}`);
  }
}

const scripts = {
  acquire: new Script(RATE_ACQUIRE),
  settle: new Script(RATE_SETTLE),
  pause: new Script(RATE_PAUSE),
  tighten: new Script(RATE_TIGHTEN),
  inspect: new Script(RATE_INSPECT),
};

/** Options for {@link RedisRateLimiter}. */
export interface RedisRateLimiterOptions {
  /** Identifies the limiter in Redis: every process using the same name shares the same budget. */
  name: string;
  /**
   * Rate limits that must all admit a call (token buckets, GCRA). All processes must agree on them, until
   * one sets `limits` at run time: from then on every process uses the limits set (see {@link RedisRateLimiter.limits}).
   */
  limits?: readonly RateLimit[];
  /** The least time between two starts, across all processes. */
  minInterval?: Duration;
  /** Calls in flight at once across all processes (a {@link RedisSemaphore} under the hood). */
  concurrency?: number;
  /** Lease of the concurrency permits (see RedisSemaphore). Default `"10s"`. */
  leaseTtl?: Duration;
  /** Whether `settle` refunds unused estimates: as RateLimiter's `refund`. Default true. */
  refund?: boolean | Readonly<Record<string, boolean>>;
  /** Key prefix. Default `"sluice:"`; the key is `<prefix>{<name>}:rate`. */
  prefix?: string;
  /** Longest wait for one Redis reply. Default `"5s"`. */
  commandTimeout?: Duration;
  /** As RedisSemaphore's `onUnavailable`: `"fail"` (default), `"allow"` or a local Limiter. */
  onUnavailable?: UnavailablePolicy;
  /** How the concurrency permits' grant notices travel: as RedisSemaphore's `notices`. Default `"publish"`. */
  notices?: "publish" | "sharded";
  /** The concurrency semaphore's restart guard: as RedisSemaphore's `guardRestarts`. Default true. */
  guardRestarts?: boolean;
}

const REDIS_RATE_LIMITER_OPTIONS = /* @__PURE__ */ optionNames<RedisRateLimiterOptions>({
  name: true,
  limits: true,
  minInterval: true,
  concurrency: true,
  leaseTtl: true,
  refund: true,
  prefix: true,
  commandTimeout: true,
  onUnavailable: true,
  notices: true,
  guardRestarts: true,
});

/** @internal One limit as it travels to the scripts. */
export interface Bucket {
  unit: string;
  field: string;
  /** µs per unit of cost. */
  emission: number;
  /** burst × emission, µs. */
  tolerance: number;
  burst: number;
  limit: number;
  intervalMs: number;
}

/**
 * A snapshot of this process's view of a Redis rate limiter, without a round trip: the core fields speak
 * of its concurrency (`capacity` = `concurrency`, `Infinity` when unset; `inUse` = this process's calls in
 * flight); the counters count this process's requests. `inspect()` reads the shared budget.
 */
export interface RedisRateLimiterStatistics extends LimiterStatistics {
  /** The configured limits. */
  limits: {
    /** The unit the limit counts: `requests`, `tokens`, ... */
    unit: string;
    /** How much cost it admits per `interval`. */
    limit: number;
    /** The interval, in ms. */
    interval: number;
    /** The most it admits at once (the bucket's size). */
    burst: number;
  }[];
}

/** A snapshot of a rate limiter's state in Redis. */
export interface RedisRateLimiterSnapshot {
  /** Tells it from a {@link RedisSemaphoreSnapshot} in a {@link RedisSnapshot}. */
  kind: "rate-limiter";
  /** The rate limiter's name. */
  name: string;
  /** The Redis key of its buckets (`<prefix>{<name>}:rate`). */
  key: string;
  /** Milliseconds the shared pause still lasts; 0 when not paused. */
  pauseRemaining: number;
  /** Per configured limit, the budget left now (negative while in debt). */
  limits: {
    /** The unit the limit counts: `requests`, `tokens`, ... */
    unit: string;
    /** How much cost it admits per `interval`. */
    limit: number;
    /** The interval, in ms. */
    interval: number;
    /** The most it admits at once (the bucket's size). */
    burst: number;
    /** The budget left now, in `unit`. */
    remaining: number;
  }[];
}

/** A permit of a {@link RedisRateLimiter}. */
export interface RedisRatePermit extends RatePermit {
  /** When Redis admitted the call, in Redis server time (ms since the epoch); undefined for a fallback grant. */
  readonly admittedAt: number | undefined;
}

/** An acquire script's reply, with the limits it was asked with (a permit's charge is in those). */
interface Answer {
  reply: number[];
  buckets: readonly Bucket[];
}

/** Applies a settlement in Redis: one function per limiter, like the give-back function. */
type Settle = (permit: RatePermit_, actual: RateCost) => void;

/**
 * The limits a process admits with, as one immutable value: replaced whole when they are set or when
 * Redis answers with newer ones, so a script's reply is always matched with the limits it was asked with.
 */
interface LimitSet {
  /** The limits, then minInterval's spacing bucket if any: what every script is called with. */
  readonly buckets: readonly Bucket[];
  /** How many of `buckets` are limits (the rest is the spacing). */
  readonly count: number;
  /** The generation of the run-time limits in Redis these are (0: the constructor's, none set yet). */
  readonly generation: number;
  /** Whether these were set here and Redis has not confirmed them yet: the next acquire installs them. */
  readonly install: boolean;
  /** The fields of the limits last in force, whose budget carries over if Redis holds none to carry over. */
  readonly previous: readonly string[];
}

/** A permit of a {@link RedisRateLimiter}: its release gives back the concurrency slot, if any. */
class RatePermit_ extends HeldPermit<void | Promise<void>> implements RedisRatePermit {
  /** @internal Per limit, the end of this call's charge in Redis (server µs), for refunds: see rate-scripts.ts. */
  ends: number[] = [];
  /** @internal The limits it was charged in (the ones in force when it was admitted), matching `ends`. */
  buckets: readonly Bucket[] = [];
  /** @internal Since when (server µs) its charges sit in `buckets`: its admission, or its last settlement. */
  since = 0;
  constructor(
    weight: number,
    signal: AbortSignal,
    readonly cost: Record<string, number>,
    /** @internal The concurrency slot (a RedisSemaphore's permit, or the fallback's), if any. */
    readonly slot: Permit | undefined,
    readonly admittedAt: number | undefined,
    private readonly apply: Settle,
    limiter: LimiterIdentity,
  ) {
    super(weight, signal, releaseSlot, limiter);
  }

  override get releasesAsync(): boolean {
    return this.slot !== undefined;
  }

  settle(actual: RateCost): void {
    this.apply(this, actual);
  }
}

/** Gives a rate permit back: its concurrency slot, if it has one (the rate cost stays spent). */
function releaseSlot(permit: RatePermit_): void | Promise<void> {
  return permit.slot?.release();
}

/** A waiting caller's demand: cost per unit (requests always present). */
interface Demand {
  cost: Record<string, number>;
  weight: number;
  slot: Permit | undefined;
  /**
   * Whether the `onUnavailable` Limiter admitted this call already, for its concurrency slot: when
   * Redis cannot answer for the rate either, the call goes through rather than asking the Limiter a
   * second time (which, holding the Limiter's permit for the slot, could wait for itself forever).
   */
  fellBack: boolean;
  /** The clock time the caller stops waiting (Infinity: no timeout); a fallback gets what is left. */
  deadline: number;
}

/**
 * A rate limiter shared by every process that uses the same Redis and `name`: requests per minute AND
 * tokens per minute (and more) across a fleet, with the exact semantics of the in-memory
 * `RateLimiter`'s token buckets:
 * - GCRA for every limit of a call in one script: admitted by all or charged by none;
 * - a refused call learns the exact time until it could pass and its process sleeps exactly that
 *   long (one timer per process, for its first waiter);
 * - `permit.settle(actual)` charges the extra or refunds the unused estimate;
 * - `pause()` (or `observe()` of a 429's `Retry-After`) pauses every process sharing the limiter;
 * - times are Redis server time, never the clocks of the processes.
 *
 * @example
 * ```ts
 * import { RedisRateLimiter } from "sluice/redis";
 * const openai = new RedisRateLimiter(redis, {
 *   name: "openai",
 *   limits: [
 *     { limit: 500, interval: "1m" },
 *     { limit: 200_000, interval: "1m", unit: "tokens" },
 *   ],
 * });
 * const reply = await openai.run(async (signal, permit) => {
 *   const response = await callModel(prompt, { signal });
 *   permit.settle({ tokens: response.usage.total_tokens });
 *   return response;
 * }, { cost: { tokens: 1_500 } });
 * ```
 */
export class RedisRateLimiter implements Limiter<RateAcquireOptions> {
  /** The name every process sharing the limits uses (also in error messages and statistics). */
  readonly name: string;
  private readonly connection: RedisConnection;
  private readonly key: string;
  /** Where the limits set at run time live (see rate-scripts.ts). */
  private readonly limitsKey: string;
  /** The limits in force here (see {@link LimitSet}); replaced whole, never changed in place. */
  private config: LimitSet;
  /** minInterval, as a bucket of burst 1 after the limits; undefined without one. */
  private readonly spacing: Bucket | undefined;
  /** The units the limits count, `requests` included: a cost unit one typo away from these is refused. */
  private counted: ReadonlySet<string>;
  private readonly commandMs: number;
  private readonly refund: boolean | Readonly<Record<string, boolean>>;
  private readonly onUnavailable: UnavailablePolicy;
  private readonly concurrency: RedisSemaphore | undefined;
  private readonly clock = systemClock;
  /**
   * Local callers in order. Invariant: at most one script asks Redis for the head at a time
   * (`asking`), and when the head was refused, `timer` is armed for the moment Redis said it can pass.
   */
  private readonly admission: Admission<Demand, RatePermit>;
  /** What its `sluice:*` events name. */
  private readonly identity: LimiterIdentity;
  private readonly queue: WaitQueue<Demand, RatePermit>;
  private readonly settlePermit: Settle = (permit, actual) => this.applySettlement(permit, actual);
  private asking = false;
  private timer: TimerHandle | undefined;
  private closed = false;

  private closedError(): ClosedError {
    return new ClosedError(`${this.subject()} was closed`);
  }

  private subject(): string {
    return `Redis rate limiter ${JSON.stringify(this.name)}`;
  }

  constructor(redis: RedisClient, options: RedisRateLimiterOptions) {
    if (options === null || typeof options !== "object") {
      throw new TypeError(`options must be an object with a name and limits; got ${describe(options)}`);
    }
    checkOptionNames(options, REDIS_RATE_LIMITER_OPTIONS, "the new RedisRateLimiter() options");
    this.connection = toConnection(redis);
    if (typeof options.name !== "string" || options.name === "") {
      throw new TypeError(`name must be a non-empty string; got ${describe(options.name)}`);
    }
    this.name = options.name;
    // The in-memory RateLimiter validates refund exactly as users learn it (and limits: see toBuckets).
    new RateLimiter({ refund: options.refund ?? true, name: options.name });
    const limits = toBuckets(options.limits ?? []);
    this.counted = countedUnits(limits);
    const spacing = toMilliseconds(options.minInterval ?? 0, "minInterval");
    if (spacing > MAX_INTERVAL_MS) {
      throw new RangeError(
        `minInterval must be at most 366 days (${MAX_INTERVAL_MS} ms) in Redis; got ${describe(options.minInterval)}`,
      );
    }
    this.spacing =
      spacing > 0
        ? {
            unit: "\0start",
            field: `tat:spacing:${spacing}`,
            emission: spacing * 1000,
            tolerance: spacing * 1000,
            burst: 1,
            limit: 1,
            intervalMs: spacing,
          }
        : undefined;
    this.config = this.limitSet(limits, 0, false, []);
    this.refund = options.refund ?? true;
    this.commandMs = checkCommandTimeout(options.commandTimeout);
    this.onUnavailable = checkUnavailablePolicy(options.onUnavailable);
    const prefix = checkPrefix(options.prefix);
    this.key = `${prefix}{${this.name}}:rate`;
    this.limitsKey = `${prefix}{${this.name}}:rate-limits`;
    // Checked here so that the error names the option the caller passed, not the semaphore's capacity,
    // with one message for every value that is not a concurrency (0 included: it would admit nothing).
    if (options.concurrency !== undefined) checkConcurrency(options.concurrency);
    if (
      this.config.buckets.length === 0 &&
      (options.concurrency === undefined || options.concurrency === Number.POSITIVE_INFINITY)
    ) {
      throw new TypeError(
        `RedisRateLimiter ${JSON.stringify(this.name)} limits nothing: give it limits, minInterval or concurrency`,
      );
    }
    this.concurrency =
      options.concurrency === undefined || options.concurrency === Number.POSITIVE_INFINITY
        ? undefined
        : new RedisSemaphore(redis, {
            name: `${this.name}/concurrency`,
            capacity: options.concurrency,
            prefix,
            leaseTtl: options.leaseTtl ?? "10s",
            commandTimeout: this.commandMs,
            onUnavailable: this.onUnavailable,
            notices: checkNotices(options.notices),
            guardRestarts: options.guardRestarts ?? true,
          });
    this.identity = identify(this, this.name, "rate-limiter", "redis", this.clock);
    this.admission = new Admission<Demand, RatePermit>(
      {
        impossible: (demand) => (this.closed ? this.closedError() : this.whyImpossible(demand.cost, demand.weight)),
        // Only Redis knows: the head is asked (`enqueued`), one question at a time.
        fits: () => false,
        take: () => {
          throw new Error("sluice internal error: a Redis rate limiter grants through Redis");
        },
        enqueued: (_, isHead) => {
          if (isHead) this.restart();
        },
        tryNow: (demand, signal) => this.tryNow(demand, signal),
        // The head left (abort, timeout): ask for the new one.
        stalled: () => this.restart(),
        weight: (demand) => demand.weight,
      },
      this.clock,
      () => `Redis rate limiter ${JSON.stringify(this.name)}`,
      undefined,
      this.identity,
    );
    this.queue = this.admission.queue;
  }

  /** Callers of this process waiting. */
  get waiting(): number {
    return this.queue.size;
  }

  /** A snapshot of this process's view, without a round trip (see {@link RedisRateLimiterStatistics}). */
  statistics(): RedisRateLimiterStatistics {
    const capacity = this.concurrency?.capacity ?? Number.POSITIVE_INFINITY;
    const inUse = this.concurrency?.inUse ?? 0;
    return {
      name: this.name,
      capacity,
      available: capacity - inUse,
      inUse,
      waiting: this.queue.size + (this.concurrency?.waiting ?? 0),
      ...this.admission.counters,
      limits: this.config.buckets
        .slice(0, this.config.count)
        .map(({ unit, limit, intervalMs, burst }) => ({ unit, limit, interval: intervalMs, burst })),
    };
  }

  /**
   * The rate limits, the same in every process sharing this limiter once one has set them. Settable at
   * run time, as `RateLimiter.limits` (limitedFetch sets them when it learns limits from headers): a
   * limit keeps what it has spent when its numbers change (matched by unit, in order; a call in flight
   * still gets its unused estimate back when it settles, following its charge through the last 32 changes);
   * a new limit starts full; waiters whose cost can no longer ever be paid are rejected with a `RangeError`.
   *
   * Across processes: the limits set are stored in Redis with the next acquire of this process, and from
   * then on every process sharing the limiter admits with them (a process that still has others is
   * answered with these and asks again, so nobody charges limits that differ); when two processes set
   * limits at once, the last to reach Redis wins everywhere. A process started later takes them at its
   * first acquire; if Redis loses them (restart, `FLUSHALL`), a process that knew them installs them again.
   *
   * @example
   * ```ts
   * limiter.limits = [...limiter.limits, { limit: 40_000, interval: "1m", unit: "tokens" }];
   * ```
   */
  get limits(): readonly RateLimit[] {
    return this.config.buckets
      .slice(0, this.config.count)
      .map(({ unit, limit, intervalMs, burst }) => ({ limit, interval: intervalMs, unit, burst }));
  }
  /**
   * Replaces the limits, as described above.
   * @throws TypeError/RangeError naming the limit and the value, as the constructor does.
   */
  set limits(value: readonly RateLimit[]) {
    const buckets = toBuckets(value);
    if (buckets.length === 0 && this.spacing === undefined && this.concurrency === undefined) {
      throw new TypeError(
        `RedisRateLimiter ${JSON.stringify(this.name)} would limit nothing: limits must not be empty without minInterval or concurrency`,
      );
    }
    const current = this.config;
    const fields = (set: LimitSet) => set.buckets.slice(0, set.count).map((bucket) => bucket.field);
    // Setting the same limits again changes nothing (limitedFetch re-applies every limit when it learns one).
    if (fieldsOf(current.buckets.slice(0, current.count)) === fieldsOf(buckets)) return;
    // Until Redis has them, the limits in force there are those this process last sent or saw.
    this.adopt(this.limitSet(buckets, current.generation, true, current.install ? current.previous : fields(current)));
  }

  /**
   * Waits until every limit admits the call's cost (and a concurrency slot is free, if configured),
   * and returns the permit. Rejects like `RateLimiter.acquire`, and with RedisUnavailableError when
   * Redis cannot be reached (see `onUnavailable`).
   */
  acquire(options?: RateAcquireOptions): Promise<RedisRatePermit> {
    let checked: CheckedAcquireOptions;
    let demand: Demand;
    try {
      checked = checkAcquireOptions(options);
      const cost = normalizeCost(options?.cost);
      checkCostUnits(cost, this.counted, "cost");
      demand = {
        cost,
        weight: checked.weight,
        slot: undefined,
        fellBack: false,
        deadline: Number.POSITIVE_INFINITY,
      };
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.concurrency === undefined) return this.admit(demand, checked);
    return this.acquireWithSlot(demand, checked);
  }

  /**
   * Runs `fn` once admitted; `fn` gets the work's signal and the permit (to `settle` the actual cost).
   *
   * @example
   * ```ts
   * await limiter.run(async (signal, permit) => {
   *   const usage = await complete(prompt, { signal });
   *   permit.settle({ tokens: usage.totalTokens });
   * }, { cost: { tokens: 2_000 } });
   * ```
   */
  async run<T>(
    fn: (signal: AbortSignal, permit: RatePermit) => T | PromiseLike<T>,
    options?: RateAcquireOptions,
  ): Promise<T> {
    checkFunction(fn, "fn");
    return runHolding(fn, await this.acquire(options));
  }

  /**
   * Pauses every process sharing this limiter until `forOrUntil` (a duration from now, or a Date):
   * what a 429 with `Retry-After` asks. Only ever extends. Every limit is empty when the pause ends,
   * so the calls that piled up resume at the steady rate. Resolves once Redis has it.
   */
  async pause(forOrUntil: Duration | Date, _reason?: unknown): Promise<void> {
    let ms: number;
    if (forOrUntil instanceof Date) {
      const at = forOrUntil.getTime();
      if (Number.isNaN(at)) throw new RangeError("pause: the Date is invalid");
      ms = Math.max(0, at - Date.now());
    } else ms = toMilliseconds(forOrUntil, "pause duration");
    if (ms <= 0) return;
    await this.call(
      scripts.pause,
      ms,
      this.config.buckets.map((bucket) => [bucket, 0]),
      "pause",
    );
    // Our own head learns the new time at its next try; try again now so it sleeps until the end.
    this.restart();
  }

  /**
   * Tightens the shared budget from a response's rate-limit headers (`parseRateLimitHeaders`), and
   * pauses everyone for `Retry-After`. Only ever tightens.
   *
   * @example
   * ```ts
   * const response = await limiter.run(() => fetch(url));
   * await limiter.observe(response.headers);
   * ```
   */
  async observe(headers: HeaderInput): Promise<void> {
    const found = parseRateLimitHeaders(headers, Date.now());
    // Of several limits counting a unit (per minute, per day), only the one the report describes.
    const buckets = this.config.buckets;
    const tightened = buckets.map((bucket): [Bucket, number] => [
      bucket,
      reportedLimitsOf(buckets, bucket.unit, found.units[bucket.unit]?.limit, (b) => b.intervalMs).includes(bucket)
        ? (found.units[bucket.unit]?.remaining ?? -1)
        : -1,
    ]);
    if (tightened.some(([, remaining]) => remaining >= 0)) {
      await this.call(scripts.tighten, 0, tightened, "observe");
    }
    if (found.retryAfterMs !== undefined && found.retryAfterMs > 0) await this.pause(found.retryAfterMs, "Retry-After");
    else this.restart();
  }

  /** The shared state in Redis: pause and budget left per limit. */
  async inspect(): Promise<RedisRateLimiterSnapshot> {
    const snapshot = await inspectRateLimiter(this.connection, this.key, this.name, this.commandMs);
    // Report every configured limit, also those Redis has no state for (full).
    const found = new Map(snapshot.limits.map((limit) => [limitField(limit), limit]));
    snapshot.limits = this.config.buckets.slice(0, this.config.count).map(
      (bucket) =>
        found.get(bucket.field) ?? {
          unit: bucket.unit,
          limit: bucket.limit,
          interval: bucket.intervalMs,
          burst: bucket.burst,
          remaining: bucket.burst,
        },
    );
    return snapshot;
  }

  /**
   * Rejects this process's waiters with ClosedError and closes the concurrency semaphore, if any (which
   * waits up to `timeout` for the calls in flight: see {@link RedisSemaphore.close}).
   */
  async close(options?: RedisCloseOptions): Promise<void> {
    // Checked here too: without a concurrency semaphore nothing else would read them.
    checkCloseOptions(options, 0);
    if (!this.closed) {
      this.closed = true;
      this.admission.rejectAll(() => this.closedError());
      if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
    // The concurrency semaphore's close() is idempotent and returns the same promise every time.
    await this.concurrency?.close(options);
  }

  // -------------------------------------------------------------------------------------------------

  /** The rate part of the admission step: the whole of it without `concurrency`, its second stage with. */
  private admit(demand: Demand, checked: CheckedAcquireOptions, secondStage = false): Promise<RedisRatePermit> {
    if (checked.timeout !== Number.POSITIVE_INFINITY) demand.deadline = this.clock.now() + checked.timeout;
    return this.admission.admit(demand, checked, secondStage) as Promise<RedisRatePermit>;
  }

  /**
   * With `concurrency`: the admission step's checks first (a request that can never be admitted, an
   * aborted signal), then a concurrency slot from the Redis semaphore, then the rate with what is left of
   * the timeout. A wait for the slot that ends is counted here too, as the caller's wait it is; and the
   * `sluice:acquire` events (a `sluice.wait` span) cover both stages as the one wait the caller sees.
   */
  private acquireWithSlot(demand: Demand, checked: CheckedAcquireOptions): Promise<RedisRatePermit> {
    const event = this.admission.startEvent(demand, checked.priority);
    const refused = this.admission.refuseEarly(demand, checked.signal, event);
    if (refused !== undefined) return refused;
    const stages = () => this.slotThenRate(demand, checked) as Promise<RatePermit>;
    return this.admission.stagesWait(event, stages, checked.signal) as Promise<RedisRatePermit>;
  }

  /** The two stages of {@link acquireWithSlot}, once the admission step's checks passed. */
  private async slotThenRate(demand: Demand, checked: CheckedAcquireOptions): Promise<RedisRatePermit> {
    const { weight, priority, signal, timeout } = checked;
    const started = this.clock.now();
    // One timeout for both waits, reported as the caller gave it (not as what was left of it for the
    // second wait, nor as a wait for the semaphore under the hood).
    const timedOut = (error: unknown) =>
      error instanceof TimeoutError
        ? new TimeoutError(
            timeout,
            `timed out after ${timeout} ms waiting for Redis rate limiter ${JSON.stringify(this.name)}`,
          )
        : error;
    let slot: Permit;
    try {
      slot = await (this.concurrency as RedisSemaphore).acquire({ weight, priority, signal, timeout });
    } catch (error) {
      this.admission.countFailure(error, signal);
      throw timedOut(error);
    }
    try {
      const left = timeout === Number.POSITIVE_INFINITY ? timeout : Math.max(0, timeout - (this.clock.now() - started));
      // A slot without a fencing token came from the onUnavailable fallback.
      demand.slot = slot;
      demand.fellBack = (slot as RedisPermit).fencingToken === undefined;
      return await this.admit(demand, { ...checked, timeout: left }, true);
    } catch (error) {
      await Promise.resolve(slot.release()).catch(() => undefined);
      throw timedOut(error);
    }
  }

  /**
   * `timeout: 0` through the admission step: one question to Redis, if nobody here waits ahead; no
   * queueing. `undefined`: refused (the admission step reports a timeout). A grant is counted here.
   */
  private async tryNow(demand: Demand, signal: AbortSignal | undefined): Promise<RatePermit | undefined> {
    if (!this.queue.isFirstInLine(0)) return undefined;
    let answer: Answer;
    try {
      answer = await this.ask(demand);
    } catch (error) {
      if (!(error instanceof RedisUnavailableError) || this.onUnavailable === "fail") throw error;
      const permit =
        this.onUnavailable === "allow" || demand.fellBack
          ? this.permit(demand, signal)
          : await this.fallback(demand, signal, 0);
      this.admission.counters.granted++;
      return permit;
    }
    if (answer.reply[0] !== 1) return undefined;
    this.admission.counters.granted++;
    return this.permit(demand, signal, answer);
  }

  /** The head changed (or Redis state did): forget the timer and ask again. */
  private restart(): void {
    if (this.timer !== undefined) {
      this.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.pump();
  }

  /** Asks Redis for the head, unless a question is in flight or the head sleeps until its time. */
  private pump(): void {
    if (this.asking || this.timer !== undefined) return;
    const head = this.queue.head;
    if (head === undefined) return;
    this.asking = true;
    // askForHead clears `asking` itself as soon as the reply is in, before it pumps the next question.
    // (Clearing it again here, once that promise settled, would clear the flag of the *next* question
    // while it is in flight and let a second one start for the same head.)
    void this.askForHead(head).catch((error: unknown) => {
      // Not expected (and `asking` is already clear); but a waiter must hear of it rather than wait.
      if (head.queued) this.admission.reject(head, error);
      this.pump();
    });
  }

  /**
   * One acquire script for `demand`, with the limits it was asked with: `{1, now, generation, end...}`
   * admitted (charged), `{0, µs, generation}` not yet (nothing charged). When Redis holds newer limits than
   * these, it charges nothing and answers with them: they are taken, and asked with again.
   */
  private async ask(demand: Demand): Promise<Answer> {
    // Each round is asked with newer limits than the one before (or installs them), so two or three
    // rounds are the most a change of limits costs; the bound only keeps a bug from spinning.
    for (let round = 0; round < 10; round++) {
      const sent = this.config;
      const reply = (await this.call(
        scripts.acquire,
        0,
        sent.buckets.map((bucket) => [bucket, this.costFor(bucket, demand.cost)]),
        "acquire",
        (late) => {
          // Admitted after we gave up on the answer: give the charge back.
          if ((late as number[])[0] === 1)
            this.refundAll(demand.cost, { reply: late as number[], buckets: sent.buckets });
        },
        [],
        [sent.generation, sent.install ? 1 : 0, sent.count, sent.previous.length, ...sent.previous],
      )) as number[];
      if (reply[0] !== 2) {
        this.confirm(sent, reply[2] as number);
        return { reply, buckets: sent.buckets };
      }
      this.takeFromRedis(sent, reply[1] as number, reply.slice(2) as unknown as string[]);
    }
    throw new Error(`sluice internal error: the limits of ${this.subject()} in Redis kept changing under an acquire`);
  }

  /** Redis answered a script asked with `sent` at `generation`: what this process set is now everyone's. */
  private confirm(sent: LimitSet, generation: number): void {
    if (this.config !== sent || (!sent.install && sent.generation === generation)) return;
    this.config = { ...sent, generation, install: false, previous: [] };
  }

  /** Redis holds newer limits than `sent` (`fields`, at `generation`): admit with them from now on. */
  private takeFromRedis(sent: LimitSet, generation: number, fields: readonly string[]): void {
    const current = this.config;
    // Limits set here since `sent` go to Redis with the next question, and win there (the last set wins).
    if (current !== sent && (current.install || current.generation >= generation)) return;
    this.adopt(this.limitSet(fields.map(bucketOfField), generation, false, []));
  }

  /** Puts `set` in force here: costs are checked against it, and waiters it can never admit are told so. */
  private adopt(set: LimitSet): void {
    this.config = set;
    this.counted = countedUnits(set.buckets.slice(0, set.count));
    this.queue.forEach((waiter) => {
      const impossible = this.whyImpossible(waiter.request.cost, waiter.request.weight);
      if (impossible !== undefined) this.admission.reject(waiter, impossible);
    });
    this.restart();
  }

  /** `limits`, then the spacing bucket if any. */
  private limitSet(
    limits: readonly Bucket[],
    generation: number,
    install: boolean,
    previous: readonly string[],
  ): LimitSet {
    const buckets = this.spacing === undefined ? limits : [...limits, this.spacing];
    return { buckets, count: limits.length, generation, install, previous };
  }

  private async askForHead(head: Waiter<Demand, RatePermit>): Promise<void> {
    const demand = head.request;
    let answer: Answer;
    try {
      answer = await this.ask(demand);
    } catch (error) {
      this.asking = false;
      // Redis cannot be reached: every caller waiting here learns it now (as onUnavailable says), not
      // one commandTimeout after the other as each becomes the head.
      if (!(error instanceof RedisUnavailableError)) this.unavailable(head, error);
      else
        this.queue.forEach((waiter) => {
          this.unavailable(waiter, error);
        });
      this.pump();
      return;
    }
    this.asking = false;
    const reply = answer.reply;
    if (reply[0] === 1) {
      if (head.queued) this.admission.grant(head, this.permit(demand, head.cancellation?.signal, answer));
      // The caller left while the script ran: nothing was used, so nothing should stay charged.
      else this.refundAll(demand.cost, answer);
      this.pump();
      return;
    }
    if (this.queue.head !== head) {
      this.pump();
      return;
    }
    // Sleep exactly until every limit can pay (a server time difference; +1 ms for timer rounding).
    const waitMs = (reply[1] as number) / 1000;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.pump();
    }, Math.ceil(waitMs) + 1);
  }

  /** A permit for `demand`, admitted by Redis with `answer` (see `ask`), or by a fallback. */
  private permit(demand: Demand, signal: AbortSignal | undefined, answer?: Answer): RatePermit_ {
    const admittedAt = answer === undefined ? undefined : (answer.reply[1] as number) / 1000;
    const permit = new RatePermit_(
      demand.weight,
      signal ?? NEVER_ABORTED,
      { ...demand.cost },
      demand.slot,
      admittedAt,
      this.settlePermit,
      this.identity,
    );
    if (answer !== undefined) {
      permit.ends = answer.reply.slice(3);
      permit.buckets = answer.buckets;
      permit.since = answer.reply[1] as number;
    }
    return permit;
  }

  /** Admits through the `onUnavailable` limiter; the permit releases both its slot and the fallback's. */
  private async fallback(
    demand: Demand,
    signal: AbortSignal | undefined,
    timeout: number | undefined,
  ): Promise<RatePermit> {
    const limiter = this.onUnavailable as Limiter;
    const inner = await limiter.acquire(
      timeout === undefined ? { weight: demand.weight, signal } : { weight: demand.weight, signal, timeout },
    );
    const slot = demand.slot;
    const both: Permit = {
      weight: demand.weight,
      signal: inner.signal,
      release: async () => {
        await inner.release();
        await slot?.release();
      },
      [Symbol.dispose]: () => undefined,
      [Symbol.asyncDispose]: () => Promise.resolve(),
    };
    return new RatePermit_(
      demand.weight,
      signal ?? inner.signal,
      { ...demand.cost },
      both,
      undefined,
      this.settlePermit,
      this.identity,
    );
  }

  /** Redis could not be asked for `waiter`: `onUnavailable` decides. */
  private unavailable(waiter: Waiter<Demand, RatePermit>, error: unknown): void {
    if (!waiter.queued) return;
    const demand = waiter.request;
    const policy = this.onUnavailable;
    if (!(error instanceof RedisUnavailableError) || policy === "fail") this.admission.reject(waiter, error);
    else if (policy === "allow" || demand.fellBack)
      this.admission.grant(waiter, this.permit(demand, waiter.cancellation?.signal));
    else {
      // Leave the local queue now (so the next one is asked); the caller's promise follows the
      // fallback, which takes over the caller's timeout for what is left of it.
      const left = demand.deadline - this.clock.now();
      const timeout = left === Number.POSITIVE_INFINITY ? undefined : Math.max(0, left);
      const admitted = this.fallback(demand, waiter.cancellation?.signal, timeout);
      this.admission.grant(waiter, admitted as unknown as RatePermit);
    }
  }

  private costFor(bucket: Bucket, cost: Record<string, number>): number {
    if (bucket.unit === "\0start") return 1;
    return cost[bucket.unit] ?? 0;
  }

  /** Gives back a whole charge nobody used, as admitted with `answer` (see `ask`). */
  private refundAll(cost: Record<string, number>, answer: Answer): void {
    const deltas = answer.buckets.map((bucket): [Bucket, number] => [bucket, -this.costFor(bucket, cost)]);
    this.call(scripts.settle, 0, deltas, "refund", undefined, answer.reply.slice(3)).catch(() => undefined);
  }

  /** A permit's settlement (see `Settle`). Asynchronous; its failure is not the caller's problem. */
  private applySettlement(permit: RatePermit_, actual: RateCost): void {
    const target = normalizeSettlement(actual);
    checkCostUnits(target, this.counted, "actual");
    // A permit the fallback admitted was never charged in Redis: a refund would hand out budget that
    // nobody paid for.
    const charged = permit.admittedAt !== undefined;
    const deltas = new Map<string, number>();
    for (const [unit, amount] of Object.entries(target)) {
      const old = permit.cost[unit] ?? 0;
      let next = amount;
      if (next < old && !this.refunds(unit)) next = old;
      if (next !== old) deltas.set(unit, next - old);
      permit.cost[unit] = next;
    }
    if (deltas.size === 0 || !charged) return;
    // Settled in the limits in force, which may have changed since the call was charged (set here or
    // elsewhere). A limit still the same (its field) settles as charged. One whose numbers changed (its
    // unit's field differs) was carried over into the new limit with this call's charge counted as
    // spent: an overrun is charged to the new one (charged to the old, it would go unseen), and a refund
    // follows the charge to where the change moved it (RATE_SETTLE), or is kept if that is not known.
    // Learned limits change often in a run's first seconds: keeping every refund then lost throughput.
    const current = this.config.buckets;
    const was = new Map(permit.buckets.map((bucket, index) => [bucket.field, permit.ends[index] ?? 0]));
    const byUnit = new Map(permit.buckets.map((bucket, index) => [bucket.unit, index]));
    let moved = false;
    const from = current.map((bucket) => {
      const index = was.has(bucket.field) ? undefined : byUnit.get(bucket.unit);
      if (index === undefined) return "";
      moved = true;
      return (permit.buckets[index] as Bucket).field;
    });
    const ends = current.map((bucket, index) =>
      from[index] === "" ? (was.get(bucket.field) ?? 0) : (permit.ends[byUnit.get(bucket.unit) as number] ?? 0),
    );
    const changes = current.map((bucket, index): [Bucket, number] => {
      const delta = deltas.get(bucket.unit) ?? 0;
      return [bucket, was.has(bucket.field) || from[index] !== "" ? delta : Math.max(0, delta)];
    });
    if (changes.every(([, delta]) => delta === 0)) return;
    const following = moved ? [...from, permit.since] : undefined;
    this.call(scripts.settle, 0, changes, "settle", undefined, ends, following).then(
      (reply) => {
        // Where the call's charge ends now, for the next settlement's refund.
        const answer = reply as number[];
        permit.ends = answer.slice(1, 1 + current.length);
        permit.buckets = current;
        permit.since = answer[1 + current.length] as number;
        this.restart();
      },
      () => undefined,
    );
  }

  private refunds(unit: string): boolean {
    const refund = this.refund;
    if (typeof refund === "boolean") return refund;
    return refund[unit] ?? true;
  }

  /** A RangeError if a call of `cost` and `weight` could never be admitted, else undefined. */
  private whyImpossible(cost: Record<string, number>, weight: number): RangeError | undefined {
    if (this.concurrency !== undefined && weight > this.concurrency.capacity) {
      return weightAboveCapacity(weight, this.concurrency.capacity, `${this.subject()} (its concurrency)`);
    }
    for (const bucket of this.config.buckets) {
      const amount = this.costFor(bucket, cost);
      if (amount > bucket.burst) {
        const bound = {
          what: "burst" as const,
          bound: bucket.burst,
          limit: bucket.limit,
          intervalMs: bucket.intervalMs,
        };
        return costAboveLimit(amount, bucket.unit, bound, this.subject());
      }
    }
  }

  private call(
    script: Script,
    first: number,
    limits: [Bucket, number][],
    what: string,
    onLate?: (value: unknown) => void,
    /** Per limit, the end of the call's charge (settlements); 0 where not given. */
    ends: readonly number[] = [],
    /**
     * An acquire's limits (the generation, install, count and previous fields, see RATE_ACQUIRE), or a
     * settlement's moved charges (see RATE_SETTLE): arguments after the limits, with the limits' key.
     */
    limitsArguments?: readonly (string | number)[],
  ): Promise<unknown> {
    const args: (string | number)[] = [first, limits.length];
    for (const [index, [bucket, amount]] of limits.entries()) {
      args.push(bucket.field, bucket.emission, bucket.tolerance, amount, ends[index] ?? 0);
    }
    let running: Promise<unknown>;
    try {
      running =
        limitsArguments === undefined
          ? script.run(this.connection, [this.key], args)
          : script.run(this.connection, [this.key, this.limitsKey], [...args, ...limitsArguments]);
    } catch (error) {
      running = Promise.reject(error);
    }
    return withDeadline(
      running,
      this.commandMs,
      () => `${what} on Redis rate limiter ${JSON.stringify(this.name)}`,
      onLate,
    );
  }
}

/**
 * @internal One checked limit as the scripts take it: a GCRA bucket in a HASH field named after its
 * configuration. `where` names it in messages (`limits[0]`), `owner` the class that refuses a sliding window.
 */
export function gcraBucket(limit: RateLimit, where: string, owner: string): Bucket {
  if (limit.algorithm === "sliding-window") {
    throw new RangeError(
      `${where}.algorithm "sliding-window" is not supported by ${owner}; its limits are token buckets (GCRA)`,
    );
  }
  const unit = limit.unit ?? REQUESTS;
  const intervalMs = toMilliseconds(limit.interval, `${where}.interval`);
  // Redis keeps times as integer µs in doubles: a year's interval leaves room; 1e300 ms would not.
  if (intervalMs > MAX_INTERVAL_MS) {
    throw new RangeError(
      `${where}.interval must be at most 366 days (${MAX_INTERVAL_MS} ms) in Redis; got ${describe(limit.interval)}`,
    );
  }
  const burst = limit.burst ?? limit.limit;
  const emission = (intervalMs * 1000) / limit.limit;
  return {
    unit,
    field: `tat:${unit}:${limit.limit}/${intervalMs}:${burst}`,
    emission,
    tolerance: burst * emission,
    burst,
    limit: limit.limit,
    intervalMs,
  };
}

/** Checks limits as `RateLimiter` does (the same messages), as the scripts take them. */
function toBuckets(value: readonly RateLimit[]): Bucket[] {
  const checked = new RateLimiter({ limits: value }).limits;
  return checked.map((limit, index) => gcraBucket(limit, `limits[${index}]`, "RedisRateLimiter"));
}

/** The limit a bucket's field names (`tat:<unit>:<limit>/<interval ms>:<burst>`), as another process set it. */
function bucketOfField(field: string): Bucket {
  const match = /^tat:(.+):([^:/]+)\/([^:/]+):([^:/]+)$/.exec(field);
  if (match === null) throw new Error(`sluice internal error: a rate limit in Redis reads ${JSON.stringify(field)}`);
  const limit = {
    unit: match[1] as string,
    limit: Number(match[2]),
    interval: Number(match[3]),
    burst: Number(match[4]),
  };
  return gcraBucket(limit, "a limit in Redis", "RedisRateLimiter");
}

/** The fields of `buckets`, to tell two sets of limits apart. */
function fieldsOf(buckets: readonly Bucket[]): string {
  return buckets.map((bucket) => bucket.field).join("\n");
}

function limitField(limit: { unit: string; limit: number; interval: number; burst: number }): string {
  return `tat:${limit.unit}:${limit.limit}/${limit.interval}:${limit.burst}`;
}

/**
 * Reads one rate limiter's state. The field names carry each limit's configuration, so this works
 * without knowing how the limiter was set up (what `sluice inspect` needs).
 */
export async function inspectRateLimiter(
  connection: RedisConnection,
  key: string,
  name: string,
  timeoutMs = 5_000,
): Promise<RedisRateLimiterSnapshot> {
  const reply = (await withDeadline(scripts.inspect.run(connection, [key], []), timeoutMs, `inspect ${name}`)) as [
    number,
    string[],
  ];
  const [now, flat] = reply;
  let pause = 0;
  const limits: RedisRateLimiterSnapshot["limits"] = [];
  for (let index = 0; index + 1 < flat.length; index += 2) {
    const field = flat[index] as string;
    const value = Number(flat[index + 1]);
    if (field === "pause") {
      pause = value;
      continue;
    }
    const match = /^tat:(.+):([\d.e+-]+)\/([\d.e+-]+):([\d.e+-]+)$/.exec(field);
    if (match === null || match[1] === "spacing") continue;
    const limit = Number(match[2]);
    const interval = Number(match[3]);
    const burst = Number(match[4]);
    const emission = (interval * 1000) / limit;
    limits.push({
      unit: match[1] as string,
      limit,
      interval,
      burst,
      remaining: burst - Math.max(0, value - now) / emission,
    });
  }
  return { kind: "rate-limiter", name, key, pauseRemaining: pause > now ? (pause - now) / 1000 : 0, limits };
}
