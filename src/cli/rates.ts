/**
 * Rate strings as the command line writes them: `10/s`, `600/min`, `100/5s`, `40000/min:tokens`.
 */
import { REQUESTS } from "../core/rate-cost.js";
import { DURATIONS, durationText, parseCommandLineDuration } from "./option-values.js";

/** One rate limit: at most `limit` of `unit` per `interval` milliseconds. */
export interface RateSpec {
  readonly limit: number;
  /** Milliseconds. */
  readonly interval: number;
  /** What is counted: `requests` (one per job) unless the rate names another unit. */
  readonly unit: string;
  /** The text it came from, for messages and the report. */
  readonly text: string;
}

/** The unit a rate counts when it names none: one per job. */
export { REQUESTS };

const RATE = /^\s*(\d+(?:\.\d+)?)\s*\/\s*([^:]+?)\s*(?::\s*([A-Za-z_][\w-]*)\s*)?$/;

/** The longest interval a rate may count over: a month, for monthly quotas. */
const LONGEST_INTERVAL = 31 * DURATIONS.DAY;

/**
 * Parses `LIMIT/INTERVAL[:UNIT]`. The interval is a duration (`s`, `500ms`, `5s`, `min`, `1h`); a bare
 * unit means one of it (`/min` is `/1min`), and a bare number is seconds (`100/5` is `100/5s`), as in
 * every duration on the command line.
 *
 * @example
 * ```ts
 * parseRate("40000/min:tokens"); // { limit: 40000, interval: 60000, unit: "tokens", text: "40000/min:tokens" }
 * ```
 * @throws RangeError naming the text and the expected form.
 */
export function parseRate(text: string): RateSpec {
  const match = RATE.exec(text);
  const fail = (why: string) =>
    new RangeError(
      `rate ${JSON.stringify(text)} ${why}; write LIMIT/INTERVAL[:UNIT], e.g. 10/s, 600/min, 100/5s, 40000/min:tokens`,
    );
  if (match === null) throw fail("is not a rate");
  const limit = Number(match[1]);
  const intervalText = match[2] as string;
  // `/min` means one minute: parseDurationText needs the number, so supply it when only a unit is given.
  const interval = parseCommandLineDuration(/^[a-zµ]+$/i.test(intervalText) ? `1${intervalText}` : intervalText);
  if (interval === undefined) throw fail(`has no valid interval (${intervalText})`);
  if (interval <= 0) throw fail("has an interval of zero");
  if (interval < 1) throw fail("has an interval below 1ms");
  if (interval > LONGEST_INTERVAL) throw fail(`has an interval above ${durationText(LONGEST_INTERVAL)}`);
  if (!(limit > 0)) throw fail("has a limit of zero");
  // Past 2^53 costs are no longer counted exactly; such a limit limits nothing anyway.
  if (limit > Number.MAX_SAFE_INTEGER) throw fail(`has a limit too large to count (above ${Number.MAX_SAFE_INTEGER})`);
  return { limit, interval, unit: match[3] ?? REQUESTS, text: text.trim() };
}

/** A rate per second, for display: `10/s`, `0.5/s`, `1.2k/s`. */
export function perSecond(rate: RateSpec): number {
  return (rate.limit * 1000) / rate.interval;
}

/** A number for people: 3 significant digits at most, with k/M suffixes. */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const magnitude = Math.abs(value);
  if (magnitude >= 1e6) return `${trim(value / 1e6)}M`;
  if (magnitude >= 1e4) return `${trim(value / 1e3)}k`;
  if (magnitude >= 100 || Number.isInteger(value)) return String(Math.round(value));
  return trim(value);
}

function trim(value: number): string {
  return String(Number(value.toPrecision(3)));
}

/** A duration for people: `850 ms`, `12.3 s`, `4 min 05 s`, `2 h 03 min`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return "?";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${Number((ms / 1000).toFixed(1))} s`;
  const seconds = Math.round(ms / 1000);
  if (seconds < 3600) {
    return seconds % 60 === 0
      ? `${seconds / 60} min`
      : `${Math.floor(seconds / 60)} min ${String(seconds % 60).padStart(2, "0")} s`;
  }
  const minutes = Math.round(seconds / 60);
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}
