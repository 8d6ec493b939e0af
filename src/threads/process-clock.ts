/**
 * A clock on one time scale for every thread of the process.
 *
 * `performance.now()` counts from each thread's own start (`performance.timeOrigin`), so two workers
 * reading it at the same instant get different numbers; `performance.timeOrigin + performance.now()`
 * repairs that only up to how exactly each thread's origin was read from the wall clock, and the wall
 * clock itself can be stepped by NTP. `process.hrtime` reads the system's monotonic clock
 * (CLOCK_MONOTONIC via libuv), which is the same counter in every thread and never steps back — the
 * right scale for a timestamp written by one worker and compared by another.
 */
import { type Clock, systemClock } from "../core/clock.js";

/**
 * Milliseconds (with microsecond precision) on the system's monotonic clock: comparable across all
 * threads of the process. Timers are the global ones, looked up at call time.
 *
 * @example
 * ```ts
 * import { processClock } from "sluice/threads";
 * const startedAt = processClock.now(); // comparable with processClock.now() in any worker
 * ```
 */
export const processClock: Clock = {
  now: () => Number(process.hrtime.bigint() / 1000n) / 1000,
  setTimeout: (callback, ms) => systemClock.setTimeout(callback, ms),
  clearTimeout: (handle) => systemClock.clearTimeout(handle),
};
