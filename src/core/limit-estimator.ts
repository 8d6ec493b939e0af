/**
 * The moving limit itself: an algorithm's unrounded estimate, clamped to `[min, max]`, its floor, the
 * counters and the `"limit"` event. One implementation, used by AdaptiveLimiter (which admits up to it)
 * and by a RateLimiter whose `concurrency` is `"auto"`.
 */
import { describe } from "./describe.js";
import type { LimitAlgorithm, LimitSample } from "./limit-algorithms.js";

/** A change of the limit, as the `"limit"` event reports it. */
export interface LimitChange {
  /** The limit before. */
  previous: number;
  /** The limit now. */
  limit: number;
  /** The sample that moved it. */
  sample: LimitSample;
}

/** What an adaptive limit reports in `statistics()`, besides the core fields. */
export interface AdaptiveLimitStatistics {
  /** The lowest the limit goes. */
  min: number;
  /** The highest the limit goes. */
  max: number;
  /** The algorithm's name. */
  algorithm: string;
  /** The unrounded limit the algorithm works on (the limit is its floor). */
  estimatedLimit: number;
  /** The latency estimates the algorithm works from (ms), e.g. Vegas's `noLoadLatency`. */
  estimates: Record<string, number>;
  /** Samples taken (calls that finished and were not ignored). */
  samples: number;
  /** Of those, drops. */
  drops: number;
  /** How many times the (rounded) limit changed. */
  changes: number;
}

/** @internal See the module comment. */
export class LimitEstimator {
  readonly min: number;
  readonly max: number;
  private readonly algorithm: LimitAlgorithm;
  /** The algorithm's unrounded limit. Invariant: `min <= estimated <= max`, finite. */
  private estimated: number;
  /** `floor(estimated)`. Invariant: `min <= limit <= max`. */
  limit: number;
  private samples = 0;
  private drops = 0;
  private changes = 0;
  private readonly listeners = new Set<(event: LimitChange) => void>();

  /** @throws TypeError/RangeError naming a bad bound, initial limit or algorithm. */
  constructor(min: unknown, max: unknown, initial: unknown, algorithm: unknown) {
    this.min = checkBound(min, "min");
    this.max = checkBound(max, "max");
    if (this.min > this.max) throw new RangeError(`min must be <= max; got min ${this.min} and max ${this.max}`);
    if (typeof initial !== "number" || !Number.isFinite(initial)) {
      throw new RangeError(`initial must be a finite number; got ${describe(initial)}`);
    }
    this.estimated = Math.min(this.max, Math.max(this.min, initial));
    this.limit = Math.floor(this.estimated);
    this.algorithm = checkAlgorithm(algorithm);
  }

  /**
   * Feeds one sample to the algorithm and moves the limit. A result that is not a finite number (NaN from
   * a user's algorithm, or one that threw: rethrown asynchronously) keeps the limit as it is.
   */
  sample(sample: LimitSample): void {
    this.samples++;
    if (sample.dropped) this.drops++;
    let next: number;
    try {
      next = this.algorithm.update(this.estimated, sample);
    } catch (error) {
      rethrowLater(error);
      return;
    }
    if (typeof next !== "number" || !Number.isFinite(next)) return;
    this.estimated = Math.min(this.max, Math.max(this.min, next));
    const previous = this.limit;
    this.limit = Math.floor(this.estimated);
    if (this.limit === previous) return;
    this.changes++;
    const event = { previous, limit: this.limit, sample };
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (error) {
        rethrowLater(error);
      }
    }
  }

  /** Subscribes to changes of the limit; returns the function that unsubscribes. */
  onChange(listener: (event: LimitChange) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  statistics(): AdaptiveLimitStatistics {
    return {
      min: this.min,
      max: this.max,
      algorithm: this.algorithm.name,
      estimatedLimit: this.estimated,
      estimates: this.algorithm.estimates?.() ?? {},
      samples: this.samples,
      drops: this.drops,
      changes: this.changes,
    };
  }

  /** Throws an Error naming a broken invariant: `min <= limit <= max`, `limit = floor(estimated)`. */
  assertInvariants(): void {
    if (!(this.min <= this.limit && this.limit <= this.max && this.limit === Math.floor(this.estimated))) {
      throw new Error(
        `adaptive limit invariant broken: min <= limit <= max; got ${this.min}, ${this.limit}, ${this.max}`,
      );
    }
  }
}

/** An error of the user's (a listener, an algorithm, a classifier) must not disturb the limiter. */
export function rethrowLater(error: unknown): void {
  queueMicrotask(() => {
    throw error;
  });
}

function checkBound(value: unknown, argument: string): number {
  if (typeof value !== "number") throw new TypeError(`${argument} must be a number; got ${describe(value)}`);
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`${argument} must be an integer >= 1 (a limit of 0 would admit nothing, ever); got ${value}`);
  }
  return value;
}

/** An algorithm object (names are resolved by the caller, so a limiter that needs one algorithm bundles one). */
function checkAlgorithm(value: unknown): LimitAlgorithm {
  const algorithm = value as LimitAlgorithm;
  if (
    typeof value !== "object" ||
    value === null ||
    typeof algorithm.update !== "function" ||
    typeof algorithm.name !== "string"
  ) {
    throw new TypeError(
      `algorithm must be "gradient", "aimd", "vegas", "backoff" or a LimitAlgorithm ({ name, update }); got ${describe(value)}`,
    );
  }
  return algorithm;
}
