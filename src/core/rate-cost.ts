/**
 * Reading what a call costs and what it actually cost, the same way for every rate limiter
 * (RateLimiter, RedisRateLimiter): DESIGN.md's numbers rule, in one place.
 */
import { describe } from "./duration.js";
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
