/**
 * Waiting out a delay: the backoff between attempts, and a sleep that an AbortSignal cuts short. Written
 * once here for every retry loop in sluice (limitedFetch, the pool's creates, the CLI's jobs, the mock
 * server).
 */
import { type Clock, systemClock } from "./clock.js";

/**
 * The exponential backoff before attempt `attempt + 1`: `min(max, base · 2^(attempt - 1))` ms. The exponent
 * stops at 52, past which doubling a finite delay only reaches Infinity.
 */
export function backoffDelay(attempt: number, base: number, max: number): number {
  return Math.min(max, base * 2 ** Math.min(attempt - 1, 52));
}

/**
 * Resolves `true` after `ms`, or `false` as soon as `signal` aborts (at once if it already has). It never
 * rejects: the caller decides what an abort means. The listener and the timer are gone either way.
 */
export function sleep(ms: number, signal?: AbortSignal, clock: Clock = systemClock): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clock.clearTimeout(timer);
      resolve(false);
    };
    const timer = clock.setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
