/**
 * Reading what a call costs and what it actually cost, the same way for every rate limiter
 * (RateLimiter, RedisRateLimiter): DESIGN.md's numbers rule, in one place.
 */
import { nearestName } from "./arguments.js";
import { describe } from "./describe.js";
import type { RateCost } from "./rate-limiter.js";

/** The default unit: a plain number is a cost in requests, and a cost object costs 1 request unless it says. */
export const REQUESTS = "requests";

/** A cost amount: a finite number >= 0. */
export function checkCostValue(value: unknown, argument: string): number {
  if (typeof value !== "number") throw new TypeError(`${argument} must be a number; got ${describe(value)}`);
  if (!Number.isFinite(value) || value < 0) {
    throw new RangeError(`${argument} must be a finite number >= 0; got ${value}`);
  }
  return value;
}

/** A cost per unit; `requests` is 1 unless given (a unit left out costs 0, requests 1). */
export function normalizeCost(cost: RateCost | undefined): Record<string, number> {
  if (cost === undefined) return { [REQUESTS]: 1 };
  if (typeof cost === "number") return { [REQUESTS]: checkCostValue(cost, "cost") };
  if (typeof cost !== "object" || cost === null || Array.isArray(cost)) {
    throw new TypeError(`cost must be a number or an object of numbers per unit; got ${describe(cost)}`);
  }
  const normalized: Record<string, number> = { [REQUESTS]: 1 };
  for (const [unit, amount] of Object.entries(cost)) normalized[unit] = checkCostValue(amount, `cost.${unit}`);
  return normalized;
}

/** The charge after `settle(actual)`: units `actual` names change, the others keep their charge. */
export function normalizeSettlement(actual: RateCost): Record<string, number> {
  if (typeof actual === "number") return { [REQUESTS]: checkCostValue(actual, "actual") };
  if (typeof actual !== "object" || actual === null || Array.isArray(actual)) {
    throw new TypeError(`actual must be a number or an object of numbers per unit; got ${describe(actual)}`);
  }
  const target: Record<string, number> = {};
  for (const [unit, amount] of Object.entries(actual)) target[unit] = checkCostValue(amount, `actual.${unit}`);
  return target;
}

/**
 * Refuses a cost unit that no limit counts when a counted unit is one typo away from it (`tokenz` or
 * `Tokens` beside `tokens`, `requets` beside `requests`): such a unit would cost nothing, and the limit
 * it was meant for would silently admit too much. A unit far from every counted one passes and costs
 * nothing, as the numbers rule says: one cost record may rightly serve limiters that count different
 * units (the HTTP wrapper's estimate carries `tokens` to a limiter that counts only requests too).
 *
 * @param counted - the units the limits count, `requests` included.
 * @param argument - the cost's name in messages: `cost`, `actual`.
 * @throws TypeError naming the unit, the counted unit it is close to, and every counted unit.
 */
export function checkCostUnits(
  cost: Readonly<Record<string, number>>,
  counted: ReadonlySet<string>,
  argument: string,
): void {
  for (const unit in cost) {
    if (counted.has(unit)) continue;
    const near = nearestName(unit, counted, 1);
    if (near !== undefined) {
      throw new TypeError(
        `${argument}.${unit}: no limit counts ${JSON.stringify(unit)}; did you mean ${JSON.stringify(near)}? ` +
          `(the limits count ${[...counted].join(", ")}; a unit far from all of them is allowed and costs nothing)`,
      );
    }
  }
}

/** The units limits count, for {@link checkCostUnits}: theirs and `requests`, which every call pays. */
export function countedUnits(limits: readonly { readonly unit?: string | undefined }[]): ReadonlySet<string> {
  return new Set([REQUESTS, ...limits.map((limit) => limit.unit ?? REQUESTS)]);
}

/**
 * Which of `limits` a server's report on `unit` describes: of those counting `unit`, the one whose limit
 * is nearest (by ratio) to the reported `limit`, or without one the one with the shortest interval (ties:
 * all of them). A provider's headers describe its per-minute limits; a daily quota counting the same unit
 * is another limit, which a per-minute `remaining` must not empty.
 */
export function reportedLimitsOf<T extends { readonly unit?: string | undefined; readonly limit: number }>(
  limits: readonly T[],
  unit: string,
  reportedLimit: number | undefined,
  intervalOf: (limit: T) => number = (limit) => (limit as unknown as { interval: number }).interval,
): T[] {
  const candidates = limits.filter((limit) => (limit.unit ?? REQUESTS) === unit);
  if (candidates.length <= 1) return candidates;
  const distance = (limit: T) =>
    reportedLimit !== undefined && reportedLimit > 0
      ? Math.abs(Math.log(limit.limit / reportedLimit))
      : intervalOf(limit);
  const best = Math.min(...candidates.map(distance));
  return candidates.filter((limit) => distance(limit) === best);
}
