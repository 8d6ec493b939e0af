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
  /**
   * The weight still in flight as the sample is taken, this call's excluded, when the limiter knows it:
   * the calls whose samples, still to come, were granted before whatever this sample changes.
   */
  readonly pending?: number;
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
  // The long-term latency (Netflix `ExpAvgMeasurement`): an exponential moving average over about
  // `longWindow` samples, a plain average over the first 10, so the first are not drowned by a zero start.
  const factor = 2 / (longWindow + 1);
  let longLatency = 0;
  let count = 0;
  let last = 0;
  return {
    name: "gradient",
    update(limit, { latency, inFlight, dropped }) {
      if (dropped) return limit * backoffRatio;
      last = latency;
      longLatency =
        count < 10 ? longLatency + (latency - longLatency) / ++count : longLatency * (1 - factor) + latency * factor;
      // After a long overload, latency falls back well below the long average: pull the average down
      // faster than its window would, so the limit recovers (Netflix: ×0.9 when long/short > 2).
      if (longLatency / latency > 2) longLatency *= 0.9;
      // An app-limited client (using under half its limit) learns nothing about the service's room.
      if (inFlight < limit / 2) return limit;
      const gradient = Math.max(0.5, Math.min(1, longLatency / latency));
      const next = limit * gradient + queueSize;
      return limit * (1 - smoothing) + next * smoothing;
    },
    estimates: () => ({ longLatency, lastLatency: last }),
  };
}

/** The fewest samples a Vegas window has: with fewer, one late answer would be the window's mean. */
const MIN_WINDOW = 8;
/**
 * The round trips a Vegas window spans. Over one, the window means of a client on a quiet 2-core machine
 * (bench/adaptive.mjs) spread about as much as one call queued at C = 8 adds (2.5 ms); over two, less,
 * and a decision still comes every few round trips: the limit is at 9 within 0.7 s of C dropping from 16
 * to 8 (simulated). Over four, quieter still, but a busy client (long event-loop stalls) sank to 60-70%
 * of the optimum in the simulation, where the right static limit reaches 80%.
 */
const WINDOW_ROUND_TRIPS = 2;
/** The least standing queue Vegas accepts, in calls: at a small limit, `tolerance × limit` is under one. */
const LEAST_QUEUE = 0.5;
/**
 * The windows with room (that would have grown the limit) Vegas waits before probing again a level where a
 * probe found a queue: at first, and at most (doubling in between). Each probe queues a call or two at the
 * service: on the benchmark machine, a static limit of 17 or 18 for C = 16 put 2-4% of the calls over 1.5×
 * the unloaded latency (16: 0.1%), so probing every other window (the second revision: 17, 18, 17, 18)
 * held the p99 at 1.6×. At most 32 windows (2-3 s at C = 16, 20 ms) between probes, so a rise of C is
 * still found within a few seconds.
 */
const FIRST_HOLD = 8;
const LONGEST_HOLD = 32;
/**
 * A window whose mean latency is this many times the unloaded one is far over: a third of the limit queued.
 * Two running, and Vegas cuts to what the service serves (see `vegas`). At 2×, the second window after C
 * halves (1.5-1.6×) did not count, and the cut came no sooner than half the excess.
 */
const FAR = 1.5;

/** Options of {@link vegas}. */
export interface VegasOptions {
  /**
   * Re-measure the unloaded latency every `probeMultiplier × limit` samples (about that many round
   * trips). Default 100 (Netflix's is 30, for a probe that costs nothing; this one drains the queue).
   */
  probeMultiplier?: number;
  /**
   * The most standing queue at the service Vegas accepts (its `beta`), as a fraction of the limit (at
   * least half a call): above it the limit shrinks; below half of it (`alpha`) the limit grows. Default
   * 0.05, about 5% more latency than unloaded. Netflix's thresholds are 3 and 6 × `log10(limit)` calls
   * whatever the limit: for a service of capacity 8, a queue of 40-75% of it; TCP Vegas's (Brakmo &
   * Peterson) are 1 and 3 packets. A queue at the service is latency every call pays (one call queued at
   * C = 8 adds 12% to each), so the p99 target (1.5× unloaded) leaves room for about one.
   */
  tolerance?: number;
}

/**
 * TCP Vegas (Netflix `VegasLimit`, after Brakmo & Peterson's TCP Vegas): estimates the queue at the
 * service from the unloaded latency (`noLoad`) and the current one, `queue = limit × (1 − noLoad /
 * latency)`, and with `step = max(1, floor(log10(limit)))`, `beta = max(0.5, tolerance × limit)` and
 * `alpha = beta / 2`: grows by `6 × step` while there is no queue, by `step` while the queue is under
 * `alpha` (into a level where a probe found a queue only after a wait), shrinks when it is over `beta` by
 * more than twice the noise, or by more than the noise twice running (by half the excess, at least `step`;
 * to `limit × noLoad / latency` after two windows at 1.5× `noLoad`), multiplies by 0.9 on a drop, and
 * otherwise holds.
 *
 * Where it departs from Netflix's (per-sample) version, each for a cause measured against an overloaded
 * service (`test/core/adaptive-convergence.test.ts`, a simulation; `bench/adaptive.mjs`):
 * - **Once per round trip, as TCP Vegas decides.** Netflix's moves the limit on every sample, so the
 *   calls still in flight from before a change — granted under the old limit, and saying nothing about
 *   the new one — each move it again: +6 per sample took the limit from 16 to 58 within one 20 ms round
 *   trip, then as far below. Here, after a change, the samples of the calls that were in flight are
 *   skipped, and the next decision is made on the next window of two round trips (`2 × limit` samples,
 *   at least 16): one round trip's mean is too noisy on a busy client to see a queue of one call.
 * - **On the window's mean latency.** By Little's law the mean of a window is the limit over the
 *   throughput, whatever the service's pattern; a single sample, or a window's lowest (a call that came
 *   as a place freed), says little when the service serves in batches.
 * - **Within the noise, no decision.** A client's own delays (its event loop, a busy machine) add to every
 *   latency; the noise is the larger of the window mean's standard error and the spread of successive
 *   windows' means (a stall delays a whole window at once). The limit shrinks only on a queue over `beta`
 *   by twice the noise, or by the noise in two windows running, and grows on a queue over `alpha` only
 *   while it is under the noise less `beta`:
 *   a machine too noisy to tell any queue falls back on drops, as AIMD does. (Growing whenever the queue
 *   was within the noise, as sluice's first version did, held the limit at C + 2.7 on the bench.)
 * - **Thresholds relative to the limit** (`tolerance`), so the standing queue — the latency added and
 *   the room over the service's capacity — is a fraction of the limit, not a fixed count.
 * - **The unloaded latency is the lowest window mean**, re-measured by a probe that drains the queue:
 *   Netflix re-measures `noLoad` by taking the next sample's latency, which under a standing queue is a
 *   loaded one, so the queue looks empty and the limit climbs until the service refuses. Here the probe
 *   lowers the limit for one window to 90% of what the service was serving, so its queue drains, and
 *   takes that window's mean, then restores the limit.
 * - **A drop acts at once and multiplies the limit by 0.9** (then waits for what was in flight), where
 *   Netflix's subtracts `step`: a refusal means the service's queue overflowed, and each call sent
 *   before the limit moves would be refused too.
 * - **A probe that found a queue is not repeated at once.** Growing by `step` into a level where the next
 *   windows show a queue, then shrinking back, then growing again, held the limit half the time one call
 *   over the right one (17, 18, 17, 18 for C = 16 on the benchmark): p99 1.6× unloaded. Now, once such a
 *   probe has found a queue, growing back into that level waits 8 windows, then 16, up to 32 (2-3 s at
 *   C = 16), as BBR probes for more bandwidth one round trip in eight; past that level (C rose), the wait
 *   is forgotten. Only on a client whose latency noise is under `tolerance` (5%): on a noisier one, each
 *   shrink is as likely noise, and the waits would ratchet the limit down.
 * - **A service that lost capacity is followed in two windows.** When two windows running have a mean
 *   latency 1.5× the unloaded one or more (a third of the limit queued: not one stall of the client's, which
 *   delays one window), the limit goes at once to what the service serves without a queue, by Little's law
 *   `limit × noLoad / mean` (at most halving it), as Gradient2's gradient would; otherwise a shrink takes
 *   half the excess. C 16 → 8 took the limit 17, 13, 10, 9 over four decisions, now 17, 13, 8. Also
 *   only on a client whose noise is under `tolerance`.
 * - **No `smoothing`** (Netflix's default, 1, is none): a decision per round trip needs none.
 */
export function vegas(options: VegasOptions = {}): LimitAlgorithm {
  const probeMultiplier = positive(options.probeMultiplier ?? 100, "probeMultiplier");
  const tolerance = fraction(options.tolerance ?? 0.05, "tolerance");
  let noLoad = 0;
  /** Samples still to skip: those of the calls in flight at the last change. */
  let skip = 0;
  /** The window being collected: its samples, the sum and squares of its latencies, whether it was used. */
  let samples = 0;
  let sum = 0;
  let squares = 0;
  let saturated = false;
  let sinceProbe = 0;
  /** While probing: the limit to restore once the drained window is measured; 0 otherwise. */
  let probing = 0;
  let queue = 0;
  /**
   * Whether a queue over beta was ever seen: until then the limit grows by `6 × step` on no queue (Netflix's
   * `beta` increase, a slow start); after, by `step`, as TCP Vegas does once out of slow start. Else a
   * limit shrunk to just under C, where the queue reads 0, jumps 6 over it, and cycles between the two.
   */
  let queued = false;
  /** Whether the last decided window's queue was over beta by more than the noise. */
  let over = false;
  /** The previous window's mean, and the variance of successive windows' means. */
  let previousMean = 0;
  let drift = 0;
  /** The calls in flight besides the one that gave the last sample. */
  let others = 0;
  /** How many decided windows running had a mean `FAR` times the unloaded latency or more. */
  let farRun = 0;
  /**
   * The (rounded) limit at which the last probe found a queue, 0 if none: growing into it waits `hold`
   * more windows, and each probe that finds a queue there again doubles the wait (`holdLength`), up to
   * `LONGEST_HOLD`.
   */
  let ceiling = 0;
  /** The (rounded) limit the last growth reached: a shrink from there means that probe found a queue. */
  let grownTo = 0;
  let hold = 0;
  let holdLength = 0;

  /** Moves the limit to `next`, starting a new window; if its floor changes, what is in flight is skipped. */
  const change = (limit: number, next: number): number => {
    if (Math.floor(next) !== Math.floor(limit)) skip = Math.min(Math.floor(limit), others);
    samples = sum = squares = 0;
    saturated = false;
    return next;
  };

  return {
    name: "vegas",
    update(limit, { latency, inFlight, dropped, pending }) {
      others = pending ?? inFlight - 1;
      if (skip > 0) {
        skip--;
        return limit;
      }
      if (dropped) {
        // The service refused: its queue overflowed, far past where latency would hold the limit. Act
        // now, not at the window's end: each call sent meanwhile would be refused too.
        const from = probing || limit;
        probing = 0;
        return change(limit, from * 0.9);
      }
      sinceProbe++;
      samples++;
      sum += latency;
      squares += latency * latency;
      saturated ||= inFlight * 2 >= limit;
      if (samples < WINDOW_ROUND_TRIPS * Math.max(MIN_WINDOW, Math.floor(limit))) return limit;

      const mean = sum / samples;
      // The standard error of that mean: how much of a queue the latencies' own spread could fake.
      const error = Math.sqrt(Math.max(0, squares / samples - mean * mean) / (samples - 1));
      if (probing) {
        // The drained window: its mean is the unloaded latency now. A rise is taken only if it is more
        // than the noise (else the lower estimate stands): a probe must not trade a good estimate for a
        // noisier one.
        if (mean > noLoad + 2 * error || mean < noLoad) noLoad = mean;
        const restore = probing;
        probing = 0;
        return change(limit, restore);
      }
      // One jump counts for at most 3 standard deviations: the jump when the service's capacity drops is a
      // queue, not noise, and counted in full it tripled the noise and held the limit over C = 8 for 2-4 s.
      const spread = (mean - previousMean) ** 2 / 2;
      if (previousMean) drift = drift ? drift + 0.1 * (Math.min(spread, 9 * drift) - drift) : spread;
      previousMean = mean;
      // A new lowest mean is the unloaded latency: the queue reads 0 against it, so the limit grows below.
      if (!noLoad || mean < noLoad) noLoad = mean;
      if (sinceProbe >= probeMultiplier * limit) {
        sinceProbe = 0;
        probing = limit;
        // 90% of what the service was serving (the limit less the queue this window showed).
        return change(limit, Math.max(1, (0.9 * limit * noLoad) / mean));
      }
      // An app-limited client (using under half its limit) learns nothing about the service's room.
      if (!saturated) return change(limit, limit);
      const step = log10Step(limit);
      queue = limit * (1 - noLoad / mean);
      const noise = (limit * Math.max(error, Math.sqrt(drift))) / mean;
      const beta = Math.max(LEAST_QUEUE, tolerance * limit);
      const alpha = beta / 2;
      // A queue over beta by twice the noise, or by the noise in two windows running (as rare by chance, about
      // 2.5%, but a queue that stays — C dropped — is seen a window sooner, and more often at all).
      const wasOver = over;
      over = queue > beta + noise;
      const shrink = queue > beta + 2 * noise || (over && wasOver);
      queued ||= shrink;
      farRun = mean >= FAR * noLoad ? farRun + 1 : 0;
      const level = Math.floor(limit);
      // Whether this client's noise is under the queue Vegas accepts (`tolerance`: latency 5% over the
      // unloaded): the two moves below need it. Counted in calls (noise < 1), a small limit always passed
      // — one call is much of it — and on a loaded machine (load 10) stalls read as failed probes and
      // cuts at limits of 4-8 and held it there: the limit at 7.7 for C = 16 (bench, 2026-12-07 20:43).
      const sharp = noise < tolerance * limit;
      if (shrink) {
        // A growth that found a queue was a failed probe: the level it reached is the ceiling, and growing
        // back into it waits (see FIRST_HOLD). Only a probe's: every shrink's would ratchet a noisy client
        // down (each shrink a ceiling a step lower; simulated, a client with 40 ms stalls fell to 30%).
        if (level === grownTo && sharp) {
          // A first failure at a new level is remembered without a wait: after C rose, noise makes some
          // level on the way up look like a failed probe, and a wait there held the climb to 32 for 9-10 s.
          // A second failure at the same level is the service's ceiling: wait 8 windows, then doubling.
          hold = holdLength = level !== ceiling ? 0 : Math.min(LONGEST_HOLD, Math.max(FIRST_HOLD, holdLength * 2));
          ceiling = level;
        }
        return change(
          limit,
          farRun > 1 && sharp
            ? // Two windows running at 1.5x the unloaded latency or more: not a stall of the client's
              // (that delays one window), but a service that lost capacity. What it serves without a
              // queue is, by Little's law, limit × noLoad / mean: go there at once, at most halving (C 16
              // -> 8: 17 -> 13 on the first window, 8-9 on the second), as Gradient2's gradient would.
              Math.max(limit / 2, (limit * noLoad) / mean)
            : // Half the excess (less the noise) per decision: the whole of it answered a client's own
              // stall, which looks like a queue of half the limit, by a limit far under C (simulated: a
              // busy client at 75% of the right static limit's throughput).
              limit - Math.max(step, (queue - beta - noise) / 2),
        );
      }
      // A queue under the noise less beta could be none: grow, or a noisy client never would.
      if (queue > 0 && queue >= Math.max(alpha, noise - beta)) return change(limit, limit);
      // Slow start (6 × step) only on no queue at all and until a queue is first seen, as before.
      const next = limit + (queue <= 0 && !queued ? 6 : 1) * step;
      // Into the level where the last probe found a queue: only once the hold is over (hold is 0 while
      // there is no ceiling). Past it, the service took more than at that probe (C rose): forgotten.
      if (Math.floor(next) >= ceiling) {
        if (hold > 0) {
          hold--;
          return change(limit, limit);
        }
        if (level >= ceiling) ceiling = holdLength = 0;
      }
      grownTo = Math.floor(next);
      return change(limit, next);
    },
    estimates: () => ({ noLoadLatency: noLoad, queue, noise: Math.sqrt(drift) }),
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
