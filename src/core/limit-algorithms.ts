/**
 * The algorithms an `AdaptiveLimiter` can move its concurrency limit with: AIMD, Gradient2 and
 * Vegas, as Netflix's concurrency-limits library defines them (`AIMDLimit`, `Gradient2Limit`,
 * `VegasLimit` in concurrency-limits-core, com.netflix.concurrency.limits.limit), and the small interface
 * a user implements to bring their own. Each is a few lines of arithmetic on one sample at a time; the
 * limiter does the clamping to `[min, max]`, the rounding and the bookkeeping.
 */
import { describe } from "./describe.js";

/** What one finished call tells the algorithm. */
export interface LimitSample {
  /** How long the call took, in milliseconds: from its grant to its settle, or what the caller reported. */
  readonly latency: number;
  /** The weight in flight when the call was granted, its own included. */
  readonly inFlight: number;
  /** Whether the call was an overload signal: a 429/503, a timeout, an error classified as a drop. */
  readonly dropped: boolean;
}

/**
 * How an `AdaptiveLimiter` moves its limit. `update` receives the current (unrounded) limit and one
 * sample, and returns the next limit; the limiter clamps it to `[min, max]` and admits `floor(limit)`
 * weight at once. A result that is not a finite number is ignored (the limit stays), so a broken
 * algorithm cannot stall the limiter at 0 or lift it above `max`.
 *
 * @example
 * ```ts
 * const halveOnDrop: LimitAlgorithm = {
 *   name: "halve-on-drop",
 *   update: (limit, { dropped }) => (dropped ? limit / 2 : limit + 1 / limit),
 * };
 * ```
 */
export interface LimitAlgorithm {
  /** Shown in statistics and events. */
  readonly name: string;
  /** The next limit after `sample`, given the current `limit` (before clamping and rounding). */
  update(limit: number, sample: LimitSample): number;
  /** The estimates the algorithm works from (latencies in ms), for statistics. */
  estimates?(): Record<string, number>;
}

/** The algorithms sluice ships, by name. */
export type LimitAlgorithmName = "gradient" | "aimd" | "vegas" | "backoff";

/** `max(1, floor(log10(limit)))`: Netflix's `Log10RootFunction`, the step Vegas grows and shrinks by. */
function log10Step(limit: number): number {
  return Math.max(1, Math.floor(Math.log10(Math.max(1, limit))));
}

/** Options of {@link aimd}. */
export interface AimdOptions {
  /** The factor a drop multiplies the limit by, in [0.5, 1). Default 0.9 (Netflix's). */
  backoffRatio?: number;
}

/**
 * Additive increase, multiplicative decrease (Netflix `AIMDLimit`): +1 on each success while at least
 * half the limit is in use, `× backoffRatio` (and at least −1) on each drop. Loss-based only: it sees
 * overload only once the service refuses, and ignores latency.
 */
export function aimd(options: AimdOptions = {}): LimitAlgorithm {
  const backoffRatio = checkBackoffRatio(options.backoffRatio ?? 0.9);
  return {
    name: "aimd",
    update(limit, { inFlight, dropped }) {
      if (dropped) return Math.min(limit - 1, limit * backoffRatio);
      // Netflix grows only while the limit is used: an idle client has learnt nothing about the service.
      return inFlight * 2 >= limit ? limit + 1 : limit;
    },
  };
}

/**
 * Loss-based like AIMD, but paced like TCP Reno's congestion avoidance (RFC 5681): a success adds
 * `1 / limit` (about +1 per round trip of a full window, where Netflix's AIMD adds +1 per call), and a
 * drop multiplies what was in flight, not the limit, by `backoffRatio`. Made for a limit that starts at a
 * ceiling nobody measured (`limitedFetch` under a static limit): the first drops bring it to what the
 * service took, and the slow growth keeps the refusals that probe for more room near 1% of calls.
 */
export function overloadBackoff(options: AimdOptions = {}): LimitAlgorithm {
  const backoffRatio = checkBackoffRatio(options.backoffRatio ?? 0.9);
  return {
    name: "backoff",
    update(limit, { inFlight, dropped }) {
      if (dropped) return Math.min(limit, inFlight) * backoffRatio;
      return inFlight * 2 >= limit ? limit + 1 / limit : limit;
    },
  };
}

function checkBackoffRatio(value: unknown): number {
  if (typeof value !== "number" || !(value >= 0.5 && value < 1)) {
    throw new RangeError(`backoffRatio must be a number in [0.5, 1); got ${describe(value)}`);
  }
  return value;
}

/** Options of {@link gradient2}. */
export interface Gradient2Options {
  /** How much the limit may grow per sample while latency holds. Default 4 (Netflix's `queueSize`). */
  queueSize?: number;
  /** Weight of each new estimate, in (0, 1]. Default 0.2 (Netflix's). */
  smoothing?: number;
  /** Samples the long-term latency average spans. Default 600 (Netflix's `longWindow`). */
  longWindow?: number;
  /** The factor a drop multiplies the limit by, in [0.5, 1). Default 0.9 (see below). */
  backoffRatio?: number;
}

/**
 * Gradient2 (Netflix `Gradient2Limit`): compares each call's latency with a long-term exponential
 * average of latency; `gradient = clamp(long / latency, 0.5, 1)`, `next = limit × gradient + queueSize`,
 * smoothed by `smoothing`. While latency stays at its long-term level the limit grows by up to
 * `queueSize`; as a queue builds at the service the gradient falls below 1 and the limit shrinks.
 *
 * Followed as Netflix defines it, with one addition: Netflix's Gradient2 ignores drops, but an HTTP
 * service that refuses (503) answers fast, which would read as "no queue"; so a drop here multiplies the
 * limit by `backoffRatio`, as AIMD does.
 */
export function gradient2(options: Gradient2Options = {}): LimitAlgorithm {
  const queueSize = positive(options.queueSize ?? 4, "queueSize");
  const smoothing = fraction(options.smoothing ?? 0.2, "smoothing");
  const longWindow = positive(options.longWindow ?? 600, "longWindow");
  const backoffRatio = checkBackoffRatio(options.backoffRatio ?? 0.9);
  const long = new ExponentialAverage(longWindow, 10);
  let last = 0;
  return {
    name: "gradient",
    update(limit, { latency, inFlight, dropped }) {
      if (dropped) return limit * backoffRatio;
      last = latency;
      let longLatency = long.add(latency);
      // After a long overload, latency falls back well below the long average: pull the average down
      // faster than its window would, so the limit recovers (Netflix: ×0.9 when long/short > 2).
      if (longLatency / latency > 2) longLatency = long.scale(0.9);
      // An app-limited client (using under half its limit) learns nothing about the service's room.
      if (inFlight < limit / 2) return limit;
      const gradient = Math.max(0.5, Math.min(1, longLatency / latency));
      const next = limit * gradient + queueSize;
      return limit * (1 - smoothing) + next * smoothing;
    },
    estimates: () => ({ longLatency: long.value, lastLatency: last }),
  };
}

/** Options of {@link vegas}. */
export interface VegasOptions {
  /** Weight of each new estimate, in (0, 1]. Default 1 (Netflix's). */
  smoothing?: number;
  /** Re-measure the unloaded latency every `probeMultiplier × limit` samples. Default 30 (Netflix's). */
  probeMultiplier?: number;
}

/**
 * TCP Vegas (Netflix `VegasLimit`): estimates the queue at the service from the lowest latency seen
 * (`noLoad`), `queue = ceil(limit × (1 − noLoad / latency))`, and with `step = max(1, log10(limit))`:
 * grows by `6 × step` when `queue <= step`, by `step` when `queue < 3 × step`, shrinks by `step` when
 * `queue > 6 × step` or on a drop, and otherwise holds. It probes for a new `noLoad` every
 * `probeMultiplier × limit` samples (Netflix jitters that by 0.5-1×; here the jitter is a fixed 0.75, so
 * that a run can be repeated exactly).
 */
export function vegas(options: VegasOptions = {}): LimitAlgorithm {
  const smoothing = fraction(options.smoothing ?? 1, "smoothing");
  const probeMultiplier = positive(options.probeMultiplier ?? 30, "probeMultiplier");
  let noLoad = 0;
  let samples = 0;
  return {
    name: "vegas",
    update(limit, { latency, inFlight, dropped }) {
      samples++;
      if (samples >= 0.75 * probeMultiplier * limit) {
        samples = 0;
        noLoad = latency;
        return limit;
      }
      // A drop's latency says nothing about the unloaded one (a refusal answers fast; a pause has none).
      if (!dropped && (noLoad === 0 || latency < noLoad)) {
        noLoad = latency;
        return limit;
      }
      const step = log10Step(limit);
      let next: number;
      if (dropped) next = limit - step;
      else if (inFlight * 2 < limit) return limit;
      else {
        const queue = Math.ceil(limit * (1 - noLoad / latency));
        if (queue <= step) next = limit + 6 * step;
        else if (queue < 3 * step) next = limit + step;
        else if (queue > 6 * step) next = limit - step;
        else return limit;
      }
      return (1 - smoothing) * limit + smoothing * next;
    },
    estimates: () => ({ noLoadLatency: noLoad }),
  };
}

/** The algorithm a name stands for, made fresh (each limiter keeps its own estimates). */
export function limitAlgorithm(name: LimitAlgorithmName): LimitAlgorithm {
  switch (name) {
    case "gradient":
      return gradient2();
    case "aimd":
      return aimd();
    case "vegas":
      return vegas();
    case "backoff":
      return overloadBackoff();
    default:
      throw new RangeError(
        `algorithm must be "gradient", "aimd", "vegas", "backoff" or a LimitAlgorithm; got ${describe(name)}`,
      );
  }
}

/**
 * An exponential moving average over about `window` samples, a plain average over the first `warmup`
 * (Netflix `ExpAvgMeasurement`): the first samples are not drowned by a zero start.
 */
class ExponentialAverage {
  value = 0;
  private count = 0;
  constructor(
    private readonly window: number,
    private readonly warmup: number,
  ) {}

  add(sample: number): number {
    if (this.count < this.warmup) {
      this.count++;
      this.value += (sample - this.value) / this.count;
    } else {
      const factor = 2 / (this.window + 1);
      this.value = this.value * (1 - factor) + sample * factor;
    }
    return this.value;
  }

  scale(factor: number): number {
    this.value *= factor;
    return this.value;
  }
}

function positive(value: unknown, argument: string): number {
  if (typeof value !== "number" || !(value > 0) || !Number.isFinite(value)) {
    throw new RangeError(`${argument} must be a finite number > 0; got ${describe(value)}`);
  }
  return value;
}

function fraction(value: unknown, argument: string): number {
  if (typeof value !== "number" || !(value > 0 && value <= 1)) {
    throw new RangeError(`${argument} must be a number in (0, 1]; got ${describe(value)}`);
  }
  return value;
}
