/**
 * A view of a limiter that records every grant and release in the run's statistics, for code that
 * acquires on its own (the HTTP wrapper acquires once per attempt, retries included).
 */
import type { Permit } from "../core/limiter.js";
import type { RateAcquireOptions } from "../core/rate-limiter.js";
import type { RunStatistics } from "./statistics.js";

/** Anything with an `acquire` like a `Limiter`'s (RateLimiter, Semaphore, a Redis limiter). */
interface Acquirer {
  acquire(options?: RateAcquireOptions): Promise<Permit>;
}

/**
 * Returns a proxy of `limiter` whose `acquire` reports each grant (`attemptStarted`, with its cost) and
 * each first release (`attemptEnded`) to `statistics`. Everything else — `pause`, `observe`, the
 * `limits` setter the HTTP wrapper uses to learn limits from headers — reaches the limiter untouched.
 */
export function observedLimiter<L extends Acquirer>(
  limiter: L,
  statistics: RunStatistics,
  /**
   * Told when an acquire or a release fails, before the caller hears of it: the HTTP wrapper retries a
   * failed acquire and keeps a failed release to itself, so a Redis that went away would be heard of
   * late, or never.
   */
  onError?: (error: unknown) => void,
): L {
  const acquire = async (options?: RateAcquireOptions): Promise<Permit> => {
    let permit: Permit;
    try {
      permit = await limiter.acquire(options);
    } catch (error) {
      onError?.(error);
      throw error;
    }
    const started = performance.now();
    statistics.attemptStarted(normalizeCost(options?.cost), grantTimeOf(permit), keyOf(permit));
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      statistics.attemptEnded(performance.now() - started);
    };
    // The same object, with release (and disposal, which releases) recorded: `settle` and `cost` stay.
    return new Proxy(permit, {
      get(target, property) {
        if (property === "release") {
          return () => {
            end();
            const released = target.release();
            if (released instanceof Promise) released.catch((error: unknown) => onError?.(error));
            return released;
          };
        }
        if (property === Symbol.dispose || property === Symbol.asyncDispose) {
          return () => {
            end();
            return (Reflect.get(target, property, target) as () => unknown).call(target);
          };
        }
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  };
  return new Proxy(limiter, {
    get(target, property) {
      if (property === "acquire") return acquire;
      const value = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
    set(target, property, value) {
      return Reflect.set(target, property, value, target);
    },
  });
}

/** A cost as the limiter reads it: a number is `requests`; `requests` defaults to 1. */
export function normalizeCost(cost: RateAcquireOptions["cost"]): Record<string, number> {
  if (cost === undefined) return { requests: 1 };
  if (typeof cost === "number") return { requests: cost };
  return { requests: 1, ...cost };
}

/**
 * When the limiter granted `permit`, on `performance.now()`'s clock (the system clock every CLI limiter
 * uses), if the permit says: an in-process RateLimiter's permit carries the instant its limits were
 * charged. Others (Redis, worker threads) do not; their start is when the caller saw the grant.
 */
export function grantTimeOf(permit: Permit): number | undefined {
  const grantedAt = (permit as { grantedAt?: unknown }).grantedAt;
  return typeof grantedAt === "number" ? grantedAt : undefined;
}

/** The key a permit was granted for (`--key-field`: the keyed limits' permits say), if it says. */
export function keyOf(permit: Permit): string | undefined {
  const key = (permit as { key?: unknown }).key;
  return typeof key === "string" ? key : undefined;
}
