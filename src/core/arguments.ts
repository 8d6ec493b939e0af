/**
 * Argument checks shared by every primitive. Each failure names the argument and the value, as
 * DESIGN.md's "Bad input fails at once" promises.
 */
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

export function checkSignal(value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "object" || value === null || typeof (value as AbortSignal).aborted !== "boolean") {
    throw new TypeError(`signal must be an AbortSignal; got ${describe(value)}`);
  }
  return value as AbortSignal;
}

export function checkFunction(value: unknown, argument: string): void {
  if (typeof value !== "function") {
    throw new TypeError(`${argument} must be a function; got ${describe(value)}`);
  }
}
