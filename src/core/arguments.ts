/**
 * Argument checks shared by every primitive. Each failure names the argument and the value, as
 * DESIGN.md's "Bad input fails at once" promises.
 */
import type { Clock } from "./clock.js";
import { describe } from "./describe.js";

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

/**
 * The names an options type accepts, written as a record so that TypeScript checks the list against
 * the type: a field added to the type and not here (or the reverse) fails to compile, so the runtime
 * check of {@link checkOptionNames} cannot drift from the documented options.
 */
export function optionNames<T extends object>(names: { readonly [K in keyof Required<T>]: true }): OptionNames {
  return Object.freeze(Object.keys(names));
}

/** The names an options bag accepts, from {@link optionNames}. */
export type OptionNames = readonly string[];

/**
 * Refuses an option name that `known` lacks. Without it a misspelt option (`concurency`) is ignored
 * without a word, in plain JavaScript and wherever TypeScript cannot see the literal, and the limit it
 * meant to set silently does nothing. One `for...in` over a handful of keys and a Set lookup each:
 * cheap enough for acquire options, and callers skip it when there are none.
 *
 * @param where - what the options belong to, for the message: `"new RateLimiter() options"`.
 * @throws TypeError naming the unknown option, where it was given, and the nearest known name.
 */
export function checkOptionNames(options: object, known: OptionNames, where: string): void {
  for (const name in options) {
    if (!known.includes(name)) throw unknownOption(name, known, where);
  }
}

function unknownOption(name: string, known: OptionNames, where: string): TypeError {
  const nearest = nearestName(name, known);
  const hint = nearest === undefined ? "" : `; did you mean ${JSON.stringify(nearest)}?`;
  return new TypeError(
    `unknown option ${JSON.stringify(name)} in ${where}${hint} (known: ${[...known].sort().join(", ")})`,
  );
}

/**
 * The name in `names` closest to `typed`, if it is within `maxDistance` edits (an insertion, deletion,
 * substitution, or swap of two neighbours each count one; case is ignored), for "did you mean".
 */
export function nearestName(typed: string, names: Iterable<string>, maxDistance = 2): string | undefined {
  let best: string | undefined;
  let bestDistance = maxDistance + 1;
  const lower = typed.toLowerCase();
  for (const name of names) {
    const distance = editDistance(lower, name.toLowerCase());
    if (distance < bestDistance) {
      best = name;
      bestDistance = distance;
    }
  }
  return best;
}

/** Optimal string alignment distance: Levenshtein plus transpositions (`tokesn` is one edit from `tokens`). */
export function editDistance(a: string, b: string): number {
  let beforePrevious: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      let distance = Math.min(
        (previous[j] as number) + 1,
        (current[j - 1] as number) + 1,
        (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        distance = Math.min(distance, (beforePrevious[j - 2] as number) + 1);
      }
      current[j] = distance;
    }
    beforePrevious = previous;
    previous = current;
  }
  return previous[b.length] as number;
}
