/**
 * What a run records about itself, for the live progress, the summary and the HTML report. Every
 * structure here is bounded by the run's duration or by the limits, never by the number of jobs: a run
 * over a billion input lines records the same few kilobytes as a run over a hundred.
 */
import type { RateSpec } from "./rates.js";

/** Counters and distributions of one run. The command's job loop feeds it; progress and report read it. */
export class RunStatistics {
  /** `performance.now()` when the run began; the time axis of the timeline starts here. */
  readonly startedAt: number;
  /** Input lines, once known (counted up front for files, known at end of input for pipes). */
  total: number | undefined = undefined;
  /** Lines read from the input so far. */
  read = 0;
  /** Attempts started (a retried job starts more than once). */
  attemptsStarted = 0;
  /** Lines read but never started because the run was interrupted first. */
  notStarted = 0;
  /** Jobs that finished, successfully or not. */
  finished = 0;
  succeeded = 0;
  failed = 0;
  /** Attempts running now. Invariant: `0 <= inFlight <= maxInFlight`. */
  inFlight = 0;
  maxInFlight = 0;
  retries = 0;
  /** When the last attempt started (ms since the run began), or `undefined` before the first. */
  lastStartAt: number | undefined = undefined;
  /**
   * Why nothing is starting although jobs are waiting (the restart guard of a fresh Redis, a long
   * `--min-interval`, a server's pause), when that is known; the progress line shows it.
   */
  waitingFor: string | undefined = undefined;
  /** Responses that said "too many requests" (HTTP 429), whether or not they were retried. */
  rateLimited = 0;
  /** Why jobs failed, e.g. `exit 1`, `timeout`, `HTTP 500`, with counts. */
  readonly failures = new Map<string, number>();
  readonly latency = new LatencyHistogram();
  readonly timeline: Timeline;
  /** Per rate, the meter that checks its promise: a trailing window, or a token bucket's level. */
  readonly windows: LimitMeter[];
  private readonly recentStarts: RecentRate;
  private readonly recentFinishes: RecentRate;
  /** With `--rate-per-key`: the meters of each key's own rates (set before the run starts). */
  perKey: PerKeyMeters | undefined = undefined;

  constructor(
    readonly rates: readonly RateSpec[],
    /** How the rates count: what "within the limit" means for the meters. */
    readonly algorithm: "sliding-window" | "token-bucket" = "sliding-window",
    private readonly now: () => number = () => performance.now(),
  ) {
    this.startedAt = now();
    this.windows = rates.map((rate) =>
      algorithm === "token-bucket" ? new BucketLevel(rate.limit, rate.interval) : new TrailingWindow(rate.interval),
    );
    // A bin with no start still has a window: what each window held when the bin began (it only
    // drains from there until the next start), so the report draws one unbroken line.
    this.timeline = new Timeline(rates.length, 1200, (at) => this.windows.map((window) => window.current(at)));
    this.recentStarts = new RecentRate();
    this.recentFinishes = new RecentRate();
  }

  /** When the run ended (`finish()`), or undefined while it runs. */
  private endedAt: number | undefined = undefined;

  /** Milliseconds since the run began, or its whole length once it ended. */
  elapsed(): number {
    return (this.endedAt ?? this.now()) - this.startedAt;
  }

  /** The run is over: `elapsed()` stops there (the summary and report may come later). */
  finish(): void {
    this.endedAt ??= this.now();
  }

  /**
   * An attempt was admitted and starts now; `cost` by unit (a job costs one `requests`). `grantedAt`, on
   * this run's clock, is when the limiter granted it, if it says (an in-process RateLimiter's permit
   * does): the windows then count the instant the limiter charged, not the moment the caller's code got
   * round to it, which on a busy event loop is a few ms later and differs from call to call (so a window
   * could seem to hold one start more than the limiter ever let in).
   */
  attemptStarted(cost: Readonly<Record<string, number>>, grantedAt?: number, key?: string): void {
    const now = this.elapsed();
    const at =
      grantedAt === undefined || !Number.isFinite(grantedAt)
        ? now
        : Math.min(now, Math.max(this.lastStartAt ?? 0, grantedAt - this.startedAt));
    this.lastStartAt = at;
    this.attemptsStarted++;
    this.inFlight++;
    if (this.inFlight > this.maxInFlight) this.maxInFlight = this.inFlight;
    this.recentStarts.add(at);
    const bin = this.timeline.binAt(at, this.inFlight);
    bin.starts++;
    this.windows.forEach((window, index) => {
      const unit = (this.rates[index] as RateSpec).unit;
      const sum = window.add(at, cost[unit] ?? 0);
      if (sum > (bin.window[index] as number)) bin.window[index] = sum;
    });
    if (key !== undefined) this.perKey?.add(key, at, cost);
  }

  /** An attempt ended after `durationMs` (the job may still be retried). */
  attemptEnded(durationMs: number): void {
    this.inFlight--;
    this.latency.add(durationMs);
    this.timeline.binAt(this.elapsed(), this.inFlight);
  }

  /** A job finished for good. `reason` says why it failed; `undefined` means it succeeded. */
  jobFinished(reason: string | undefined): void {
    const at = this.elapsed();
    this.finished++;
    this.recentFinishes.add(at);
    const bin = this.timeline.binAt(at, this.inFlight);
    bin.finishes++;
    if (reason === undefined) {
      this.succeeded++;
      return;
    }
    this.failed++;
    bin.failures++;
    this.failures.set(reason, (this.failures.get(reason) ?? 0) + 1);
  }

  retried(): void {
    this.retries++;
    this.timeline.binAt(this.elapsed(), this.inFlight).retries++;
  }

  /** A 429 (or equivalent) answer was seen. */
  sawRateLimit(): void {
    this.rateLimited++;
    this.timeline.binAt(this.elapsed(), this.inFlight).rateLimited++;
  }

  /** Starts per second over the last few seconds. */
  startRate(): number {
    return this.recentStarts.perSecond(this.elapsed());
  }

  /** Jobs finished per second over the last few seconds. */
  finishRate(): number {
    return this.recentFinishes.perSecond(this.elapsed());
  }

  /** Milliseconds until every known input line is done, or `undefined` when it cannot be estimated. */
  eta(): number | undefined {
    if (this.total === undefined) return undefined;
    const remaining = this.total - this.finished;
    if (remaining <= 0) return 0;
    const elapsed = this.elapsed();
    const recent = this.finishRate();
    const rate = recent > 0 ? recent : elapsed > 0 ? (this.finished * 1000) / elapsed : 0;
    return rate > 0 ? (remaining * 1000) / rate : undefined;
  }

  /** Per rate, the cost started in its trailing interval, now. */
  windowsNow(): number[] {
    const at = this.elapsed();
    return this.windows.map((window) => window.current(at));
  }

  /** The largest cost any window of each rate's interval admitted (exact, from every start). */
  peaks(): number[] {
    return this.windows.map((window) => window.peak);
  }
}

/** One bucket of the timeline. */
export interface TimelineBin {
  starts: number;
  finishes: number;
  failures: number;
  retries: number;
  rateLimited: number;
  /** The most attempts in flight at any moment of the bin. */
  maxInFlight: number;
  /**
   * Per rate: the largest cost its trailing window (or bucket level) held during the bin: at the bin's
   * start, or after a start in it.
   */
  window: number[];
}

/**
 * Events bucketed by time. Bins start 100 ms wide; when there would be more than `maxBins`, neighbours
 * are merged and the width doubles, so memory depends on nothing but `maxBins`.
 */
export class Timeline {
  binWidth = 100;
  readonly bins: TimelineBin[] = [];

  constructor(
    rateCount: number,
    private readonly maxBins = 1200,
    /** The windows' measures at `at` (ms since the start), for a bin that begins there. */
    private readonly windowsAt: (at: number) => number[] = () => new Array<number>(rateCount).fill(0),
  ) {}

  /** The bin holding time `at` (ms since the start), created with `inFlight` carried into it. */
  binAt(at: number, inFlight: number): TimelineBin {
    let index = Math.floor(Math.max(0, at) / this.binWidth);
    while (index >= this.maxBins) {
      this.halve();
      index = Math.floor(Math.max(0, at) / this.binWidth);
    }
    while (this.bins.length <= index) {
      // A quiet bin still has whatever was running at its start in flight.
      const carried = this.bins.length === 0 ? 0 : this.lastInFlight;
      this.bins.push(this.emptyBin(carried, this.windowsAt(this.bins.length * this.binWidth)));
    }
    const bin = this.bins[index] as TimelineBin;
    if (inFlight > bin.maxInFlight) bin.maxInFlight = inFlight;
    this.lastInFlight = inFlight;
    return bin;
  }

  private lastInFlight = 0;

  private emptyBin(inFlight: number, window: number[]): TimelineBin {
    return { starts: 0, finishes: 0, failures: 0, retries: 0, rateLimited: 0, maxInFlight: inFlight, window };
  }

  private halve(): void {
    const merged: TimelineBin[] = [];
    for (let index = 0; index < this.bins.length; index += 2) {
      const a = this.bins[index] as TimelineBin;
      const b = this.bins[index + 1];
      if (b === undefined) {
        merged.push(a);
        continue;
      }
      merged.push({
        starts: a.starts + b.starts,
        finishes: a.finishes + b.finishes,
        failures: a.failures + b.failures,
        retries: a.retries + b.retries,
        rateLimited: a.rateLimited + b.rateLimited,
        maxInFlight: Math.max(a.maxInFlight, b.maxInFlight),
        window: a.window.map((value, i) => Math.max(value, b.window[i] as number)),
      });
    }
    this.bins.length = 0;
    this.bins.push(...merged);
    this.binWidth *= 2;
  }
}

/**
 * Measures one rate limit's promise over the recorded starts: `add` returns the measure after a start,
 * `peak` is the largest seen, and the promise held when `peak <= limit`.
 */
/** The fewest starts between two sweeps of the per-key meters. */
const MIN_SWEEP = 1024;

/**
 * The check of `--rate-per-key`: one meter per rate for each key that started within the longest
 * interval, and the most any key's meter read. A key whose last start is older than every interval reads
 * as a fresh one, so it is dropped; the sweep runs once per as many starts as there are keys (O(1) a start
 * amortized), which keeps memory to the keys of the last interval, not every key of the run.
 */
export class PerKeyMeters {
  /** Per rate, the most one key's meter read. */
  readonly peaks: number[];
  private readonly keys = new Map<string, { meters: LimitMeter[]; lastAt: number }>();
  private readonly longest: number;
  private startsSinceSweep = 0;
  private nextSweep = MIN_SWEEP;

  constructor(
    readonly rates: readonly RateSpec[],
    private readonly algorithm: "sliding-window" | "token-bucket",
  ) {
    this.peaks = rates.map(() => 0);
    this.longest = Math.max(...rates.map((rate) => rate.interval));
  }

  /** A start of `key` at `at` (ms since the run began) costing `cost`. */
  add(key: string, at: number, cost: Readonly<Record<string, number>>): void {
    let entry = this.keys.get(key);
    if (entry === undefined) {
      const meters = this.rates.map(
        (rate): LimitMeter =>
          this.algorithm === "token-bucket"
            ? new BucketLevel(rate.limit, rate.interval)
            : new TrailingWindow(rate.interval),
      );
      entry = { meters, lastAt: at };
      this.keys.set(key, entry);
    }
    entry.lastAt = at;
    entry.meters.forEach((meter, index) => {
      const value = meter.add(at, cost[(this.rates[index] as RateSpec).unit] ?? 0);
      if (value > (this.peaks[index] as number)) this.peaks[index] = value;
    });
    if (++this.startsSinceSweep >= this.nextSweep) this.sweep(at);
  }

  /** How many keys are metered now (tests). */
  get size(): number {
    return this.keys.size;
  }

  private sweep(now: number): void {
    for (const [key, entry] of this.keys) if (now - entry.lastAt > this.longest) this.keys.delete(key);
    // The next sweep after as many starts as keys are left: each sweep's cost is paid by the starts
    // before it, and the keys kept are at most those of the last interval and as many again.
    this.startsSinceSweep = 0;
    this.nextSweep = Math.max(MIN_SWEEP, this.keys.size);
  }
}

export interface LimitMeter {
  add(at: number, cost: number): number;
  current(at: number): number;
  readonly peak: number;
}

/**
 * A token bucket's promise, `cost in any span <= burst + rate × span`, as a level: starts fill a
 * virtual bucket that drains at the rate, so the level after a start is the largest
 * `cost in [s, t] - rate × (t - s)` over every earlier `s`, and the promise holds while the level never
 * exceeds the burst (here the limit, the bucket's default). The same lag tolerance as
 * {@link TrailingWindow} applies, as drain time.
 */
export class BucketLevel implements LimitMeter {
  private level = 0;
  private last = Number.NEGATIVE_INFINITY;
  peak = 0;
  private readonly rate: number;
  private readonly tolerance: number;

  constructor(limit: number, interval: number) {
    this.rate = limit / interval;
    this.tolerance = Math.min(5, interval / 100);
  }

  add(at: number, cost: number): number {
    this.level = this.current(at) + cost;
    this.last = at;
    if (this.level > this.peak) this.peak = this.level;
    return this.level;
  }

  current(at: number): number {
    if (this.last === Number.NEGATIVE_INFINITY) return 0;
    return Math.max(0, this.level - this.rate * (at - this.last + this.tolerance));
  }
}

/**
 * The cost started in the trailing window ending at each start, keeping only the starts of the last
 * interval (which a respected limit bounds by the limit itself).
 *
 * Starts are recorded when the job receives its permit, a fraction of a millisecond after the limiter
 * decided (the promise continuation runs after the rest of the limiter's tick). A sliding window
 * rightly grants a start exactly one interval after an earlier one; recorded with that lag, the two
 * would look like they share a window. So the window is shortened by `tolerance` (1% of the interval,
 * at most 5 ms): measured at the limiter itself, the lag stayed under 1 ms.
 */
export class TrailingWindow implements LimitMeter {
  private times: number[] = [];
  private costs: number[] = [];
  private head = 0;
  private sum = 0;
  /** The largest sum seen. */
  peak = 0;
  readonly tolerance: number;

  constructor(readonly interval: number) {
    this.tolerance = Math.min(5, interval / 100);
  }

  /** Adds a start at `at` with `cost` and returns the cost of the window ending there. */
  add(at: number, cost: number): number {
    this.evict(at);
    if (this.head > 1024 && this.head * 2 > this.times.length) {
      this.times = this.times.slice(this.head);
      this.costs = this.costs.slice(this.head);
      this.head = 0;
    }
    this.times.push(at);
    this.costs.push(cost);
    this.sum += cost;
    if (this.sum > this.peak) this.peak = this.sum;
    return this.sum;
  }

  /** The cost of the window ending at `at` (no later than the last start's time is meaningful too). */
  current(at: number): number {
    this.evict(at);
    return this.sum;
  }

  private evict(at: number): void {
    // Windows are half-open, [t, t + interval): a start exactly `interval` earlier is outside.
    const horizon = at - this.interval + this.tolerance;
    while (this.head < this.times.length && (this.times[this.head] as number) <= horizon) {
      this.sum -= this.costs[this.head] as number;
      this.head++;
    }
  }
}

/**
 * Latencies in logarithmic buckets (10 per decade, 0.1 ms to about 28 hours, longer ones in the last):
 * percentiles as upper bounds within one bucket (26%), in constant memory.
 */
export class LatencyHistogram {
  static readonly BUCKETS_PER_DECADE = 10;
  static readonly LOWEST = 0.1;
  readonly counts: number[] = new Array<number>(90).fill(0);
  count = 0;
  sum = 0;
  min = Number.POSITIVE_INFINITY;
  max = 0;

  add(ms: number): void {
    const value = Math.max(ms, 0);
    this.count++;
    this.sum += value;
    if (value < this.min) this.min = value;
    if (value > this.max) this.max = value;
    this.counts[this.bucketOf(value)]!++;
  }

  /** The bucket's upper bound in ms. */
  upperBound(bucket: number): number {
    return LatencyHistogram.LOWEST * 10 ** ((bucket + 1) / LatencyHistogram.BUCKETS_PER_DECADE);
  }

  /** An upper estimate of the `q` quantile (0..1), clamped to the exact min and max. */
  quantile(q: number): number {
    if (this.count === 0) return Number.NaN;
    const rank = Math.ceil(q * this.count);
    let seen = 0;
    for (let bucket = 0; bucket < this.counts.length; bucket++) {
      seen += this.counts[bucket] as number;
      if (seen >= rank) {
        // The last bucket also holds everything beyond its bound: only the exact max bounds it.
        if (bucket === this.counts.length - 1) return this.max;
        return Math.min(this.max, Math.max(this.min, this.upperBound(bucket)));
      }
    }
    return this.max;
  }

  private bucketOf(ms: number): number {
    if (ms <= LatencyHistogram.LOWEST) return 0;
    const bucket = Math.floor(Math.log10(ms / LatencyHistogram.LOWEST) * LatencyHistogram.BUCKETS_PER_DECADE);
    return Math.min(this.counts.length - 1, Math.max(0, bucket));
  }
}

/** Events per second over the last `span` ms, from a ring of small buckets. */
class RecentRate {
  private readonly counts: number[];
  private readonly stamps: number[];
  constructor(
    private readonly bucketMs = 250,
    private readonly buckets = 20,
  ) {
    this.counts = new Array<number>(buckets).fill(0);
    this.stamps = new Array<number>(buckets).fill(-1);
  }

  add(at: number): void {
    const tick = Math.floor(at / this.bucketMs);
    const slot = tick % this.buckets;
    if (this.stamps[slot] !== tick) {
      this.stamps[slot] = tick;
      this.counts[slot] = 0;
    }
    this.counts[slot]!++;
  }

  perSecond(at: number): number {
    const tick = Math.floor(at / this.bucketMs);
    let total = 0;
    for (let slot = 0; slot < this.buckets; slot++) {
      const stamp = this.stamps[slot] as number;
      if (stamp >= 0 && stamp > tick - this.buckets) total += this.counts[slot] as number;
    }
    // Early in a run the window is shorter than its full span.
    const span = Math.min(at, this.bucketMs * this.buckets);
    return span <= 0 ? 0 : (total * 1000) / span;
  }
}
