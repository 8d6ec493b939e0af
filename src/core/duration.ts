/**
 * Durations: milliseconds as a number, or a string such as `"250ms"`, `"10s"`, `"1m"`, `"1h"`,
 * `"1.5s"`, or Go-style compounds such as `"6m0s"` and `"2m52.8s"` (what OpenAI's rate-limit headers send).
 */
import { describe } from "./describe.js";

/** Milliseconds, or a string with units: `"250ms"`, `"10s"`, `"1m30s"`, `"1h"`, `"1d"`. */
export type Duration = number | string;

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  msec: 1,
  millisecond: 1,
  milliseconds: 1,
  s: 1000,
  sec: 1000,
  secs: 1000,
  second: 1000,
  seconds: 1000,
  m: 60_000,
  min: 60_000,
  mins: 60_000,
  minute: 60_000,
  minutes: 60_000,
  h: 3_600_000,
  hr: 3_600_000,
  hrs: 3_600_000,
  hour: 3_600_000,
  hours: 3_600_000,
  d: 86_400_000,
  day: 86_400_000,
  days: 86_400_000,
};

const PART = /(\d+(?:\.\d*)?|\.\d+)\s*([a-zµ]+)/gy;

/**
 * Parses a duration into milliseconds, or returns `undefined` when `text` is not one.
 * Accepts one or more `<number><unit>` parts (`"1m30s"`, `"2m52.8s"`), or a bare number of ms.
 */
export function parseDurationText(text: string): number | undefined {
  const trimmed = text.trim().toLowerCase();
  if (trimmed === "") return undefined;
  if (/^(\d+(\.\d*)?|\.\d+)$/.test(trimmed)) return Number(trimmed);
  let total = 0;
  let position = 0;
  PART.lastIndex = 0;
  while (position < trimmed.length) {
    PART.lastIndex = position;
    const match = PART.exec(trimmed);
    if (match === null) return undefined;
    const unit = UNIT_MS[match[2] as string];
    if (unit === undefined) return undefined;
    total += Number(match[1]) * unit;
    position = PART.lastIndex;
    while (trimmed[position] === " ") position++;
  }
  return total;
}

/**
 * Converts a {@link Duration} to milliseconds, throwing a `RangeError`/`TypeError` that names the
 * argument and the value when it is not a finite, non-negative duration.
 *
 * @example
 * ```ts
 * toMilliseconds("1m30s", "interval"); // 90000
 * toMilliseconds("5 parsecs", "interval"); // RangeError: interval must be a duration ...
 * ```
 */
export function toMilliseconds(value: Duration, argument: string): number {
  if (typeof value === "number") {
    if (!Number.isFinite(value) || value < 0) {
      throw new RangeError(`${argument} must be a finite number of milliseconds >= 0; got ${value}`);
    }
    return value;
  }
  if (typeof value === "string") {
    const ms = parseDurationText(value);
    if (ms === undefined || !Number.isFinite(ms)) {
      throw new RangeError(
        `${argument} must be a duration such as "250ms", "10s", "1m" or a number of milliseconds; got ${describe(value)}`,
      );
    }
    return ms;
  }
  throw new TypeError(`${argument} must be a number of milliseconds or a duration string; got ${describe(value)}`);
}
