/**
 * The arithmetic of one rate limit: a token bucket (GCRA) or an exact sliding window.
 *
 * Internal to `RateLimiter`, which asks every limit the same questions — "when can this cost be paid?"
 * (`readyAt`), "pay it now" (`charge`), "correct what was paid" (`adjust`) — and admits a call only when
 * every limit answers "now", so that no limit is ever charged for a call another one refused.
 *
 * Time is the limiter's clock in milliseconds. `readyAt` is the single source of truth for admission:
 * the limiter admits exactly when `readyAt(cost, now) <= now`, and arms its one timer for the largest
 * `readyAt` of the head's limits. Because both come from the same expression, a timer that fires at the
 * time it was armed for always finds the cost payable (no "fired a hair early, re-arm for 0 ms" loop).
 */

/** What a limit keeps about one charge, so that `permit.settle()` can correct it later. */
export type ChargeHandle = WindowEntry | BucketCharge | undefined;

/** The questions `RateLimiter` asks each of its limits. */
export interface RateBucket {
  readonly unit: string;
  readonly algorithm: "token-bucket" | "sliding-window";
  /** The configured limit per interval. */
  readonly limit: number;
  /** The interval, in ms. */
  readonly interval: number;
  /** The most cost one call may ever have here (token bucket: burst; sliding window: limit). */
  readonly capacity: number;
  /** The earliest time `cost` (> 0) can be paid; `<= now` means now. */
  readyAt(cost: number, now: number): number;
  /** Pays `cost` (> 0) at `now`; the caller has checked `readyAt(cost, now) <= now`. */
  charge(cost: number, now: number): ChargeHandle;
  /**
   * Charges `delta` more (> 0, may go into debt) or refunds up to `-delta` (< 0) of the charge `handle`:
   * only the part of it the limit has not already paid back with time (a refund never counts twice).
   */
  adjust(handle: ChargeHandle, delta: number, now: number): void;
  /** Budget left right now (negative while in debt). */
  available(now: number): number;
  /** Server feedback: at most `remaining` is left now; `resetAt` (clock ms) is when the server resets. */
  tighten(remaining: number, resetAt: number | undefined, now: number): void;
  /** A pause ends at `until`: hold nothing in reserve then, so calls resume at the steady rate. */
  emptyAt(until: number): void;
  /** Run-time change of the configuration; what was spent stays spent. */
  reconfigure(limit: number, interval: number, burst: number, now: number): void;
  /**
   * The earliest time from which this limit remembers nothing a new one would not (refilled, nothing in
   * its window, no server cap): a keyed rate limiter may then forget it. `<= now` means now.
   */
  idleAt(now: number): number;
}

/**
 * Where one charge sits in a token bucket, so that a refund gives back only what is still unpaid.
 *
 * GCRA stacks charges: `fullAtScaled` is the top of the stack and time drains it from the bottom, so a
 * charge occupies `(top - size, top]` and is paid back once `now × limit` passes its top. Lowering
 * `fullAtScaled` by more than the unpaid part of a charge would hand out again tokens that time already
 * gave back — and let the calls admitted on top of it exceed `burst + rate × span`.
 */
export class BucketCharge {
  constructor(
    /** The charge's top, scaled like `fullAtScaled`, as it was when charged. */
    public top: number,
    /** Its size, scaled. */
    public size: number,
    /** The bucket's `refunded` then: refunds since only ever moved the top down (by at most their sum). */
    public refundedBefore: number,
    /** The bucket's `epoch` then. */
    public epoch: number,
  ) {}
}

/** How many reconfigurations back a charge in flight can still be refunded across. */
const MOVES_KEPT = 8;

/**
 * One reconfiguration of a token bucket, the scale it left (see `TokenBucket.adjust`): when (clock ms),
 * the limit and interval before it, and the bucket's `refunded` just before it.
 */
type BucketMove = [at: number, limit: number, interval: number, refunded: number];

/**
 * A token bucket as GCRA: instead of a token count and a refill timer, one number says when the bucket
 * will be full again. Refill is continuous; the bucket starts full; a charge above what is left is
 * refused (all-or-nothing), but `adjust` may push it into debt, which later charges wait out.
 *
 * To stay exact with integer times and costs (so the property tests can check the promise
 * `cost admitted in any span <= burst + rate × span` without an epsilon), the state is kept multiplied by
 * `limit`: `fullAtScaled = fullAt × limit`, and one unit of cost moves it by `interval`.
 */
export class TokenBucket implements RateBucket {
  // Fields are declared and stored in the constructor (no class-field definitions): a keyed rate
  // limiter makes one bucket per key, a million of them for a million keys.
  declare readonly unit: string;
  declare limit: number;
  declare interval: number;
  declare burst: number;
  /**
   * When the bucket is full again, times `limit`. A value at or below `now × limit` means "full now".
   * Invariant: tokens available at `t` = `burst - max(0, fullAtScaled - t × limit) / interval`.
   */
  declare private fullAtScaled: number;
  /** Every refund so far, scaled: a charge's top is at most its `top - (refunded - refundedBefore)`. */
  declare private refunded: number;
  /**
   * Bumped when the stack is no longer what the charges made it: a pause that empties the bucket (a
   * refund must not refill it before the pause ends) or a new configuration (a new scale). Charges from
   * an earlier epoch refund nothing.
   */
  declare private epoch: number;
  /**
   * The last few reconfigurations, oldest first: how a charge made before one maps into the bucket after
   * it, so a call in flight while learned limits are sharpened (limitedFetch) still gets its refund.
   * `undefined` until the first (not set in the constructor: most buckets never change); a pause
   * (`emptyAt`) clears them: charges made before it refund nothing.
   */
  declare private moves: BucketMove[] | undefined;

  constructor(unit: string, limit: number, interval: number, burst: number) {
    this.unit = unit;
    this.limit = limit;
    this.interval = interval;
    this.burst = burst;
    this.fullAtScaled = Number.NEGATIVE_INFINITY;
    this.refunded = 0;
    this.epoch = 0;
  }

  /** What it is: on the prototype, not a field of every bucket. */
  get algorithm(): "token-bucket" {
    return "token-bucket";
  }

  get capacity(): number {
    return this.burst;
  }

  readyAt(cost: number, now: number): number {
    // Payable at t when max(fullAt, t) + cost × interval / limit - t <= burst × interval / limit.
    // If the bucket is full at `now`, the answer is <= now because cost <= burst was checked at entry;
    // a cost above the burst (RateLimiter.readyIn asks, for a backlog) gets when the bucket would have
    // refilled that far, counted from `now` when it is full (fullAt may be -Infinity: never charged).
    const ready = (Math.max(this.fullAtScaled, now * this.limit) + (cost - this.burst) * this.interval) / this.limit;
    return Math.max(ready, now);
  }

  charge(cost: number, now: number): ChargeHandle {
    const size = cost * this.interval;
    this.fullAtScaled = Math.max(this.fullAtScaled, now * this.limit) + size;
    return new BucketCharge(this.fullAtScaled, size, this.refunded, this.epoch);
  }

  adjust(handle: ChargeHandle, delta: number, now: number): void {
    if (delta > 0) {
      this.charge(delta, now);
      // The extra is a charge of its own on top of the stack; a later refund comes out of it (what is
      // left of the original charge is no longer tracked, so it is not refunded: the safe side).
      if (handle instanceof BucketCharge) {
        handle.top = this.fullAtScaled;
        handle.size = delta * this.interval;
        handle.refundedBefore = this.refunded;
        handle.epoch = this.epoch;
      }
      return;
    }
    if (!(handle instanceof BucketCharge)) return;
    // A charge made before reconfigurations is brought into the current one: its unpaid part, in units
    // ahead of each change, keeps its place in the stack (a part already paid maps to nothing
    // refundable). Not across a pause (it clears the moves) nor too many changes back.
    const moves = this.moves ?? [];
    let index = moves.length - this.epoch + handle.epoch;
    if (index < 0) return;
    for (; index < moves.length; index++) {
      const [at, limit, interval, refunded] = moves[index] as BucketMove;
      // The scale after the move: the next move's, or the bucket's own when it was the last.
      const [, nextLimit = this.limit, nextInterval = this.interval] = moves[index + 1] ?? [];
      const ahead = (handle.top - (refunded - handle.refundedBefore) - at * limit) / interval;
      handle.size = Math.min(handle.size / interval, ahead) * nextInterval;
      handle.top = at * nextLimit + ahead * nextInterval;
      // Refunds after the move count from here (`refunded` goes on across epochs, each in its own scale).
      handle.refundedBefore = refunded;
    }
    handle.epoch = this.epoch;
    // Only the unpaid part comes back: what time has already refilled was given back once. (Regression:
    // the whole refund used to be credited, so a late settle let the next calls exceed the promise.)
    const top = handle.top - (this.refunded - handle.refundedBefore);
    const refund = Math.min(-delta * this.interval, handle.size, top - now * this.limit);
    if (!(refund > 0)) return;
    this.fullAtScaled -= refund;
    this.refunded += refund;
    handle.size -= refund;
  }

  available(now: number): number {
    return this.burst - Math.max(0, this.fullAtScaled - now * this.limit) / this.interval;
  }

  tighten(remaining: number, _resetAt: number | undefined, now: number): void {
    // Level the bucket down to what the server says is left; never up. The server's reset time is not
    // used: with a different burst than ours it says nothing reliable about our refill. Refunds of the
    // calls in flight still apply after it (no new epoch): the server's count holds their estimates too.
    this.fullAtScaled = Math.max(this.fullAtScaled, now * this.limit + (this.burst - remaining) * this.interval);
  }

  emptyAt(until: number): void {
    const empty = until * this.limit + this.burst * this.interval;
    if (empty <= this.fullAtScaled) return;
    this.fullAtScaled = empty;
    this.epoch++;
    this.moves = undefined;
  }

  reconfigure(limit: number, interval: number, burst: number, now: number): void {
    // Setting `limits` re-applies every limit (the HTTP wrapper does so when it learns one): the same
    // numbers change nothing, and must not cost the calls in flight their refunds.
    if (limit === this.limit && interval === this.interval && burst === this.burst) return;
    // What is spent stays spent, in units ahead of now: a charge's place in the stack maps the same way.
    const moves = (this.moves ??= []);
    if (moves.push([now, this.limit, this.interval, this.refunded]) > MOVES_KEPT) moves.shift();
    this.epoch++;
    const spent = Math.max(0, this.fullAtScaled - now * this.limit) / this.interval;
    this.limit = limit;
    this.interval = interval;
    this.burst = burst;
    this.fullAtScaled = spent === 0 ? Number.NEGATIVE_INFINITY : now * limit + spent * interval;
  }

  idleAt(now: number): number {
    return Math.max(now, this.fullAtScaled / this.limit);
  }

  /** Whether the bucket is full at `now` (used to retire a sliding window's ramp). */
  isFull(now: number): boolean {
    return this.fullAtScaled <= now * this.limit;
  }
}

/** One charge in a sliding window's log. */
export class WindowEntry {
  constructor(
    readonly at: number,
    public cost: number,
  ) {}
}

/** What the server said a sliding window has left: at most `left` more cost before `until`. */
interface ServerCap {
  left: number;
  until: number;
}

/** Compact the log once this many expired entries sit at its front. */
const COMPACT_AFTER = 1024;

/**
 * An exact sliding window: at most `limit` cost in any half-open window `[t, t + interval)`.
 *
 * Admission at `now` counts the charges made in `(now - interval, now]`. That is enough for every
 * window: a window `[t, t + interval)` holding a charge made at `s` is checked in full when its last
 * charge was admitted, because all its charges lie in `(s - interval, s]`.
 */
export class SlidingWindow implements RateBucket {
  readonly algorithm = "sliding-window" as const;
  /** Charges in admission order; `entries[first..]` are the ones not yet expired (`at + interval > now`). */
  private entries: WindowEntry[] = [];
  private first = 0;
  /** Invariant: `used` is the sum of `entries[first..].cost`. */
  private used = 0;
  /**
   * After a pause, a bucket of the same rate that starts empty at the pause's end, so the window fills
   * again at the steady rate instead of all at once. Retired once it is full.
   */
  private ramp: TokenBucket | undefined = undefined;
  private cap: ServerCap | undefined = undefined;

  constructor(
    readonly unit: string,
    public limit: number,
    public interval: number,
  ) {}

  get capacity(): number {
    return this.limit;
  }

  readyAt(cost: number, now: number): number {
    this.expire(now);
    let ready = now;
    const excess = this.used + cost - this.limit;
    if (excess > 0) {
      // Wait for enough of the oldest charges to leave the window. If rounding makes `used` a hair more
      // than the entries' sum (fractional costs), `freed` never reaches `excess`: then everything must
      // leave, not nothing (regression: a cost equal to the limit was admitted into a non-empty window).
      let freed = 0;
      for (let i = this.first; i < this.entries.length; i++) {
        const entry = this.entries[i] as WindowEntry;
        freed += entry.cost;
        ready = entry.at + this.interval;
        if (freed >= excess) break;
      }
    }
    const ramp = this.ramp;
    if (ramp !== undefined) {
      if (ramp.isFull(now)) this.ramp = undefined;
      else ready = Math.max(ready, ramp.readyAt(cost, now));
    }
    const cap = this.cap;
    if (cap !== undefined) {
      if (cap.until <= now) this.cap = undefined;
      else if (cost > cap.left) ready = Math.max(ready, cap.until);
    }
    return ready;
  }

  charge(cost: number, now: number): ChargeHandle {
    const entry = new WindowEntry(now, cost);
    this.entries.push(entry);
    this.used += cost;
    this.ramp?.charge(cost, now);
    if (this.cap !== undefined) this.cap.left -= cost;
    return entry;
  }

  adjust(handle: ChargeHandle, delta: number, now: number): void {
    if (delta > 0) {
      // The extra is charged now, as a charge of its own: it counts in the windows from now on.
      this.charge(delta, now);
      return;
    }
    // A refund comes out of the original charge while that is still in the window; once it has left
    // the window there is nothing to give back.
    if (!(handle instanceof WindowEntry) || handle.at + this.interval <= now) return;
    const refund = Math.min(-delta, handle.cost);
    handle.cost -= refund;
    this.used -= refund;
  }

  available(now: number): number {
    this.expire(now);
    let available = this.limit - this.used;
    if (this.ramp !== undefined) available = Math.min(available, this.ramp.available(now));
    if (this.cap !== undefined && this.cap.until > now) available = Math.min(available, this.cap.left);
    return available;
  }

  tighten(remaining: number, resetAt: number | undefined, now: number): void {
    // Until the server's window resets, at most `remaining` more. Merging with an earlier report keeps
    // the tighter of both numbers, so a stale report can never loosen a fresh one.
    const until = resetAt !== undefined && resetAt > now ? resetAt : now + this.interval;
    const cap = this.cap;
    if (cap !== undefined && cap.until > now) {
      cap.left = Math.min(cap.left, remaining);
      cap.until = Math.max(cap.until, until);
    } else {
      this.cap = { left: remaining, until };
    }
  }

  emptyAt(until: number): void {
    this.ramp ??= new TokenBucket(this.unit, this.limit, this.interval, this.limit);
    this.ramp.emptyAt(until);
  }

  reconfigure(limit: number, interval: number, _burst: number, now: number): void {
    this.limit = limit;
    this.interval = interval;
    this.ramp?.reconfigure(limit, interval, limit, now);
  }

  idleAt(now: number): number {
    this.expire(now);
    const last = this.entries[this.entries.length - 1];
    let at = last === undefined ? now : last.at + this.interval;
    if (this.ramp !== undefined) at = Math.max(at, this.ramp.idleAt(now));
    if (this.cap !== undefined) at = Math.max(at, this.cap.until);
    return at;
  }

  /** Drops the charges that have left the window `(now - interval, now]`. */
  private expire(now: number): void {
    const entries = this.entries;
    let first = this.first;
    while (first < entries.length && (entries[first] as WindowEntry).at + this.interval <= now) {
      this.used -= (entries[first] as WindowEntry).cost;
      first++;
    }
    if (first === entries.length) {
      // Empty: reset exactly, so rounding in fractional costs cannot accumulate.
      this.entries = [];
      this.first = 0;
      this.used = 0;
      return;
    }
    if (first >= COMPACT_AFTER && first * 2 >= entries.length) {
      this.entries = entries.slice(first);
      first = 0;
    }
    this.first = first;
  }
}

/** A new, full limit of the same configuration as `bucket` (nothing spent, no pause, no server cap). */
export function emptyLike(bucket: RateBucket): RateBucket {
  return bucket instanceof TokenBucket
    ? new TokenBucket(bucket.unit, bucket.limit, bucket.interval, bucket.burst)
    : new SlidingWindow(bucket.unit, bucket.limit, bucket.interval);
}

/** @internal A new limit of this configuration: a token bucket (the default) or a sliding window. */
export function newRateBucket(config: {
  unit: string;
  limit: number;
  intervalMs: number;
  burst: number;
  algorithm: "token-bucket" | "sliding-window";
}): RateBucket {
  return config.algorithm === "sliding-window"
    ? new SlidingWindow(config.unit, config.limit, config.intervalMs)
    : new TokenBucket(config.unit, config.limit, config.intervalMs, config.burst);
}
