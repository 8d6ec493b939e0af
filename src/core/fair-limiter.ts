/**
 * FairLimiter: one capacity shared by many keys (tenants), served in turns between the keys that wait —
 * deficit round robin, weighted by each key's share — instead of first come, first served across all of
 * them, so one tenant's 100,000 queued jobs do not starve another tenant's one.
 */
import { Admission, type LimiterCounters, type LimiterStatistics } from "./admission.js";
import { checkCapacity, checkClock, checkName, checkOptionNames, checkWeight, optionNames } from "./arguments.js";
import { type Clock, systemClock, type TimerHandle } from "./clock.js";
import { Deque } from "./deque.js";
import { describe } from "./describe.js";
import { defaultAbortReason, weightAboveCapacity } from "./errors.js";
import { checkKey, KeyedPrimitive, keyedKind } from "./keyed.js";
import { type KeyedLimiter, type KeyStatistics, KeyView } from "./keyed-semaphore.js";
import { type AcquireOptions, NEVER_ABORTED, type Permit } from "./limiter.js";
import { HeldPermit, runHolding } from "./permit.js";
import { newRateBucket, type RateBucket } from "./rate-buckets.js";
import { checkRateLimit, costAboveBucket, type RateLimit } from "./rate-limiter.js";
import { type CheckedAcquireOptions, checkAcquireOptions } from "./wait-options.js";

/** Options for {@link FairLimiter}. */
export interface FairLimiterOptions {
  /**
   * Each key's share of the capacity while several keys wait: a finite number > 0 (default 1). A key of
   * share 3 is served three times as much as a key of share 1 while both wait. A record, or a function
   * asked once when a key becomes live.
   */
  shares?: Readonly<Record<string, number>> | ((key: string) => number);
  /**
   * A rate the keys share, besides (or instead of, with a capacity of `Infinity`) the capacity: a token
   * bucket by default, or a sliding window, as one of `RateLimiter`'s `limits` (its `unit` only names
   * it). A request's `weight` is its cost: each grant pays it at once, and the turns share the rate by
   * cost — a key's share is the cost it may take per turn.
   */
  rate?: RateLimit;
  /** Shows up in error messages and statistics. */
  name?: string;
  /** Time source for timeouts and the rate; defaults to the global timers. */
  clock?: Clock;
}

const FAIR_LIMITER_OPTIONS = /* @__PURE__ */ optionNames<FairLimiterOptions>({
  shares: true,
  rate: true,
  name: true,
  clock: true,
});

/** A snapshot of one key of a {@link FairLimiter}: what it holds and waits for, and its share. */
export interface FairKeyStatistics extends LimiterStatistics {
  /** The key's share of the capacity while several keys wait. */
  share: number;
}

/** A snapshot of a {@link FairLimiter}: the shared capacity, and the counters of every key ever. */
export interface FairLimiterStatistics extends LimiterStatistics {
  /** Keys alive now: holding or waiting. */
  keys: number;
}

/**
 * One key: its own queue (FIFO within the key, by priority then arrival) and its place in the turns.
 *
 * Invariant: while its queue is not empty the key is in the ring (`inRing`); `deficit` is what it may
 * still take in its current turn, 0 whenever it is not in the ring.
 */
class FairKey {
  readonly admission: Admission<number, Permit>;
  deficit = 0;
  inRing = false;
  /** Weight held by this key's permits. */
  inUse = 0;
  readonly giveBack = (permit: HeldPermit): void => this.owner.giveBack(this, permit.weight);

  constructor(
    private readonly owner: FairLimiter,
    readonly key: string,
    readonly share: number,
    clock: Clock,
    subject: string,
  ) {
    this.admission = new Admission<number, Permit>(
      {
        impossible: (weight) => owner.whyImpossible(weight, subject),
        fits: (weight) => owner.fits(this, weight),
        take: (weight, signal) => owner.take(this, weight, signal),
        enqueued: () => owner.joinRing(this),
      },
      clock,
      () => subject,
      () => owner.afterLeave(this),
    );
  }

  counters(): LimiterCounters {
    return this.admission.counters;
  }

  statistics(): FairKeyStatistics {
    const { capacity, inUse: held, name } = this.owner;
    return {
      name,
      capacity,
      available: capacity - held,
      inUse: this.inUse,
      waiting: this.admission.queue.size,
      ...this.admission.counters,
      share: this.share,
    };
  }
}

/**
 * At most `capacity` weight held at once over all keys, shared between the keys that wait by weighted
 * fair queuing (deficit round robin): each waiting key in turn takes up to its share, then the next key
 * gets its turn. Within a key, callers are served by priority, then arrival.
 *
 * Use it when many tenants share one resource (an API key, a GPU, a pool of workers) and one tenant's
 * burst must not delay the others: tenant A queues 100,000 jobs, then tenant B one — B starts after at
 * most one turn of A's (A's share). With `rate`, the keys share a rate the same way (a request's weight
 * is its cost, paid at its grant), on one timer. For a separate limit per key, use `KeyedSemaphore`.
 *
 * Guarantees:
 * - never more than `capacity` weight held, and with `rate` never more than the rate admits in any window;
 * - while keys wait, each is served in proportion to its share (3:1 shares, 3:1 throughput), none is
 *   starved, and each grant costs O(1) whatever the number of keys (for weights up to the shares);
 * - a key's heavy head is not starved by light requests of other keys: the turn waits for room;
 * - abort, timeout and `clear` as on every Limiter; a waiter leaving never loses a permit.
 *
 * @example
 * ```ts
 * import { FairLimiter } from "sluice";
 * const gpu = new FairLimiter(4, { shares: { premium: 3 } });
 * await gpu.run(tenantId, () => infer(prompt));
 * const api = new FairLimiter(Infinity, { rate: { limit: 100, interval: "1s" }, shares: { premium: 3 } });
 * await api.run(tenantId, () => callApi());
 * ```
 */
export class FairLimiter
  extends KeyedPrimitive<FairKey>
  implements KeyedLimiter<AcquireOptions, Permit, FairKeyStatistics>
{
  /** Optional name, used in error messages and statistics. */
  readonly name: string | undefined;
  private readonly limit: number;
  private readonly clock: Clock;
  private readonly shareOf: (key: string) => number;
  /** Weight held over all keys. Invariant: `held <= limit` whenever a grant is made. */
  private held = 0;
  /**
   * The keys that wait, in turn order; the first is the key whose turn it is. A key whose queue emptied
   * (its waiters aborted) may linger until its turn comes: it is then taken out.
   */
  private readonly ring = new Deque<FairKey>();
  /** Whether the first key of the ring has had its share for the current turn. */
  private turnOpen = false;
  /** The key whose turn is being served: only its requests fit while others wait. */
  private serving: FairKey | undefined = undefined;
  private dispatching = false;
  /** The shared rate (`rate`), if any: every grant pays its weight into it. */
  private readonly bucket: RateBucket | undefined;
  /**
   * The one timer of the limiter: armed, while keys wait, for when the rate can pay the cost of the
   * head whose turn it is (room in the capacity comes back with a release, which dispatches itself).
   */
  private timer: TimerHandle | undefined = undefined;

  /**
   * @param capacity - the weight all keys together may hold at once: an integer >= 0, or `Infinity`.
   * @throws TypeError/RangeError naming the argument and the value: a bad capacity, an unknown option,
   *   a bad `rate` (as `RateLimiter`'s limits), a share that is not a finite number > 0 (naming its key).
   */
  constructor(capacity: number, options: FairLimiterOptions = {}) {
    super();
    this.limit = checkCapacity(capacity);
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`options must be an object; got ${describe(options)}`);
    }
    checkOptionNames(options, FAIR_LIMITER_OPTIONS, "the new FairLimiter() options");
    this.name = checkName(options.name);
    this.clock = checkClock(options.clock) ?? systemClock;
    this.shareOf = checkShares(options.shares);
    this.bucket = options.rate === undefined ? undefined : newRateBucket(checkRateLimit(options.rate, "rate"));
  }

  /** The weight all keys together may hold at once. */
  get capacity(): number {
    return this.limit;
  }

  /** Weight held now, over all keys. */
  get inUse(): number {
    return this.held;
  }

  /**
   * Waits until `key` may take `weight` (see `Semaphore.acquire`): at once if there is room and nobody
   * waits; otherwise in `key`'s queue, served in the key's turns. Rejects (never throws) for a bad key,
   * a share that is not a finite number > 0, a weight above the capacity (naming the key), bad options.
   */
  acquire(key: string, options?: AcquireOptions): Promise<Permit> {
    const outcome = this.admit(key, options);
    return outcome instanceof Promise ? outcome : Promise.resolve(outcome);
  }

  /**
   * Takes `weight` for `key` if there is room now and nobody waits (in any key); otherwise `undefined`.
   * @throws TypeError/RangeError for a bad key, share or weight.
   */
  tryAcquire(key: string, weight = 1): Permit | undefined {
    checkWeight(weight);
    const fairKey = this.table.get(checkKey(key));
    try {
      const impossible = this.whyImpossible(weight, this.subject(key));
      if (impossible !== undefined) throw impossible;
      if (!fairKey.admission.queue.isFirstInLine(0) || !this.fits(fairKey, weight)) return undefined;
      fairKey.admission.grantedNow();
      return this.take(fairKey, weight, NEVER_ABORTED);
    } finally {
      this.dropIfIdle(fairKey);
    }
  }

  /** Runs `fn` holding `weight` for `key`, and releases when it settles (see `Semaphore.run`). */
  run<T>(
    key: string,
    fn: (signal: AbortSignal, permit: Permit) => T | PromiseLike<T>,
    options?: AcquireOptions,
  ): Promise<T> {
    if (typeof fn !== "function") return Promise.reject(new TypeError(`fn must be a function; got ${describe(fn)}`));
    const outcome = this.admit(key, options);
    if (!(outcome instanceof Promise)) return runHolding(fn, outcome);
    return outcome.then((permit) => runHolding(fn, permit));
  }

  /** `key` as a plain `Limiter`. */
  for(key: string): KeyView<AcquireOptions, Permit, FairKeyStatistics> {
    return new KeyView(this, checkKey(key));
  }

  /** A snapshot of the shared capacity and of every key together. O(live keys). */
  statistics(): FairLimiterStatistics;
  /** A snapshot of `key`: what it holds and waits for; a key not live reads as fresh. */
  statistics(key: string): KeyStatistics<FairKeyStatistics>;
  statistics(key?: string): FairLimiterStatistics | KeyStatistics<FairKeyStatistics> {
    if (key === undefined) {
      const totals = this.table.statistics(this.name, this.limit);
      const { name, inUse, waiting, granted, aborted, timedOut, rejected, keys } = totals;
      const capacity = this.limit;
      return {
        name,
        capacity,
        available: capacity - this.held,
        inUse,
        waiting,
        granted,
        aborted,
        timedOut,
        rejected,
        keys,
      };
    }
    checkKey(key);
    const fairKey = this.table.live.get(key) ?? this.makeKey(key);
    return { ...this.table.statisticsOf(key, fairKey.statistics()), key };
  }

  /** Rejects every waiter of every key with `reason` (default: an `AbortError`). Held permits stay held. */
  clear(reason: unknown = defaultAbortReason()): void {
    for (const fairKey of [...this.table.live.values()]) {
      fairKey.admission.rejectAll(reason);
      this.dropIfIdle(fairKey);
    }
  }

  /** @internal Throws an Error naming the first broken invariant (model tests). */
  assertInvariants(): void {
    if (this.held < 0 || this.held > this.limit) {
      throw new Error(
        `fair limiter invariant broken: 0 <= held <= capacity; held ${this.held}, capacity ${this.limit}`,
      );
    }
    let sum = 0;
    for (const fairKey of this.table.live.values()) {
      fairKey.admission.assertInvariants();
      sum += fairKey.inUse;
      if (fairKey.admission.queue.size !== 0 && !fairKey.inRing) {
        throw new Error(`fair limiter invariant broken: key ${JSON.stringify(fairKey.key)} waits outside the turns`);
      }
    }
    if (sum !== this.held) throw new Error(`fair limiter invariant broken: keys hold ${sum}, the limiter ${this.held}`);
  }

  // The gate of every key's admission ---------------------------------------------------------------

  /** @internal */
  whyImpossible(weight: number, subject: string): RangeError | undefined {
    if (weight > this.limit) return weightAboveCapacity(weight, this.limit, subject);
    return this.bucket === undefined ? undefined : costAboveBucket(weight, this.bucket, subject);
  }

  /**
   * @internal While keys wait, only the key whose turn it is may take, up to its deficit: a newcomer of
   * another key joins the turns rather than pass them, even with room free (room a turn waits for).
   */
  fits(fairKey: FairKey, weight: number): boolean {
    if (weight > this.limit - this.held) return false;
    if (!(this.serving === fairKey ? weight <= fairKey.deficit : this.ring.length === 0)) return false;
    if (this.bucket === undefined) return true;
    const now = this.clock.now();
    return this.bucket.readyAt(weight, now) <= now;
  }

  /** @internal */
  take(fairKey: FairKey, weight: number, signal: AbortSignal): Permit {
    this.bucket?.charge(weight, this.clock.now());
    this.held += weight;
    fairKey.inUse += weight;
    if (this.serving === fairKey) fairKey.deficit -= weight;
    return new HeldPermit(weight, signal, fairKey.giveBack);
  }

  /** @internal A waiter was queued: its key takes part in the turns. */
  joinRing(fairKey: FairKey): void {
    if (fairKey.inRing) return;
    fairKey.inRing = true;
    this.ring.push(fairKey);
    // The first key to wait may wait for the rate alone, which no release will end: arm the timer.
    const head = fairKey.admission.queue.head;
    if (this.ring.length === 1 && head !== undefined) this.armFor(head.request);
  }

  /** @internal A waiter left (abort, timeout): the turn it blocked may go on. */
  afterLeave(fairKey: FairKey): void {
    this.dispatch();
    this.dropIfIdle(fairKey);
  }

  /** @internal Called by permits. */
  giveBack(fairKey: FairKey, weight: number): void {
    this.held -= weight;
    fairKey.inUse -= weight;
    this.dispatch();
    this.dropIfIdle(fairKey);
  }

  protected create(key: string): FairKey {
    return this.makeKey(key);
  }

  // -------------------------------------------------------------------------------------------------

  private admit(key: string, options: AcquireOptions | undefined): Permit | Promise<Permit> {
    let fairKey: FairKey;
    let checked: CheckedAcquireOptions;
    try {
      checked = checkAcquireOptions(options);
      fairKey = this.table.get(checkKey(key));
    } catch (error) {
      return Promise.reject(error);
    }
    const outcome = fairKey.admission.admit(checked.weight, checked);
    this.dropIfIdle(fairKey);
    return outcome;
  }

  /**
   * Deficit round robin over the keys that wait. The key whose turn it is gets its share added once per
   * turn and takes while its head fits in that deficit and in the room; a key that ran out of deficit goes
   * to the back; a key that ran out of waiters leaves the ring with its deficit (a key does not save up
   * turns while it has nothing to do). If the head fits its deficit but not the room, the turn stays
   * open until a release: that is what keeps a heavy head from being starved by light keys.
   *
   * Each grant costs O(1): a turn grants at least once for every turn it rotates through, as long as
   * weights are at most the shares (otherwise a key needs weight / share turns to save up).
   */
  private dispatch(): void {
    if (this.dispatching) return;
    this.dispatching = true;
    try {
      const ring = this.ring;
      for (let fairKey = ring.peekFirst(); fairKey !== undefined; fairKey = ring.peekFirst()) {
        const queue = fairKey.admission.queue;
        if (queue.size === 0) {
          ring.shift();
          fairKey.inRing = false;
          fairKey.deficit = 0;
          this.turnOpen = false;
          this.dropIfIdle(fairKey);
          continue;
        }
        if (this.held >= this.limit) return;
        if (!this.turnOpen) {
          fairKey.deficit += fairKey.share;
          this.turnOpen = true;
        }
        this.serving = fairKey;
        fairKey.admission.dispatch();
        this.serving = undefined;
        const head = queue.head;
        if (head === undefined) continue;
        // Its head fits its deficit, not the room or the rate: the turn goes on at the next release,
        // or when the rate can pay.
        if (head.request <= fairKey.deficit) {
          this.armFor(head.request);
          return;
        }
        ring.push(ring.shift() as FairKey);
        this.turnOpen = false;
      }
      this.disarm();
    } finally {
      this.serving = undefined;
      this.dispatching = false;
    }
  }

  /**
   * Arms the one timer for when the rate can pay `cost`, if the rate is what the head waits for (with
   * the capacity full, a release dispatches). Re-armed on every call: the head may have changed.
   */
  private armFor(cost: number): void {
    this.disarm();
    if (this.bucket === undefined || cost > this.limit - this.held) return;
    const now = this.clock.now();
    // Already payable (the clock moved on since the head was last checked): dispatch as soon as may be.
    // Never "no timer": nothing else would wake a head that waits for the rate alone.
    const wait = Math.max(0, this.bucket.readyAt(cost, now) - now);
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.dispatch();
    }, wait);
  }

  private disarm(): void {
    if (this.timer === undefined) return;
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private dropIfIdle(fairKey: FairKey): void {
    if (fairKey.inUse === 0 && fairKey.admission.queue.size === 0 && !fairKey.inRing) {
      this.table.drop(fairKey.key, fairKey);
    }
  }

  private makeKey(key: string): FairKey {
    const share = this.shareOf(key);
    if (typeof share !== "number" || !Number.isFinite(share) || share <= 0) {
      throw new RangeError(
        `the share of key ${JSON.stringify(key)} must be a finite number > 0; got ${describe(share)}`,
      );
    }
    return new FairKey(this, key, share, this.clock, this.subject(key));
  }

  private subject(key: string): string {
    return `${keyedKind("fair limiter", this.name)} ${JSON.stringify(key)}`;
  }
}

function checkShares(value: unknown): (key: string) => number {
  if (value === undefined) return () => 1;
  if (typeof value === "function") return value as (key: string) => number;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError(`shares must be an object of numbers per key, or a function; got ${describe(value)}`);
  }
  const shares = new Map<string, number>();
  for (const [key, share] of Object.entries(value)) {
    if (typeof share !== "number" || !Number.isFinite(share) || share <= 0) {
      throw new RangeError(`shares[${JSON.stringify(key)}] must be a finite number > 0; got ${describe(share)}`);
    }
    shares.set(key, share);
  }
  return (key) => shares.get(key) ?? 1;
}
