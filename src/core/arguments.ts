/**
 * Argument checks shared by every primitive. Each failure names the argument and the value, as
 * DESIGN.md's "Bad input fails at once" promises.
 */
import type { Clock } from "./clock.js";
import { describe } from "./duration.js";

export function checkCapacity(value: unknown, argument = "capacity"): number {
  if (typeof value !== "number") {
    throw new TypeError(`${argument} must be a number; got ${describe(value)}`);
  }
  if (value !== Number.POSITIVE_INFINITY && (!Number.isInteger(value) || value < 0)) {
    throw new RangeError(`${argument} must be an integer >= 0 or Infinity; got ${value}`);
  }
  return value;
}

export function checkWeight(value: unknown, argument = "weight"): number {
  if (typeof value !== "number") {
    throw new TypeError(`${argument} must be a number; got ${describe(value)}`);
  }
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`${argument} must be a positive integer; got ${value}`);
  }
  // Held weight is summed in doubles: past 2^53 a grant and its release would not cancel out exactly.
  if (value > Number.MAX_SAFE_INTEGER) {
    throw new RangeError(
      `${argument} must be at most Number.MAX_SAFE_INTEGER (${Number.MAX_SAFE_INTEGER}); got ${value}`,
    );
  }
  return value;
}

export function checkPriority(value: unknown): number {
  if (typeof value !== "number") {
    throw new TypeError(`priority must be a number; got ${describe(value)}`);
  }
  if (Number.isNaN(value)) throw new RangeError(`priority must not be NaN; got ${value}`);
  return value;
}

/** A wait timeout in ms: finite and >= 0, or Infinity (no timeout). */
export function checkTimeout(value: unknown): number {
  if (typeof value !== "number") {
    throw new TypeError(`timeout must be a number of milliseconds; got ${describe(value)}`);
  }
  if (Number.isNaN(value) || value < 0) {
    throw new RangeError(`timeout must be a number of milliseconds >= 0; got ${value}`);
  }
  return value;
}

/**
 * Checks the whole shape a wait relies on, not just `aborted`: a look-alike without the listener methods
 * would fail only once queued, leaving a waiter that nothing can remove and that a release then feeds.
 */
export function checkSignal(value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  const signal = value as AbortSignal;
  if (
    typeof value !== "object" ||
    value === null ||
    typeof signal.aborted !== "boolean" ||
    typeof signal.addEventListener !== "function" ||
    typeof signal.removeEventListener !== "function"
  ) {
    throw new TypeError(`signal must be an AbortSignal; got ${describe(value)}`);
  }
  return signal;
}

/** A clock is called only once someone waits with a timeout, so a broken one is refused up front. */
export function checkClock(value: unknown): Clock | undefined {
  if (value === undefined) return undefined;
  const clock = value as Clock;
  if (
    typeof value !== "object" ||
    value === null ||
    typeof clock.now !== "function" ||
    typeof clock.setTimeout !== "function" ||
    typeof clock.clearTimeout !== "function"
  ) {
    throw new TypeError(`clock must be a Clock (now, setTimeout and clearTimeout); got ${describe(value)}`);
  }
  return clock;
}

export function checkName(value: unknown): string | undefined {
  if (value !== undefined && typeof value !== "string") {
    throw new TypeError(`name must be a string; got ${describe(value)}`);
  }
  return value;
}

export function checkFunction(value: unknown, argument: string): void {
  if (typeof value !== "function") {
    throw new TypeError(`${argument} must be a function; got ${describe(value)}`);
  }
}
