/**
 * Time, as every time-based primitive in sluice sees it.
 *
 * Everything that waits, expires or refills takes an optional `clock`, so tests can drive time by hand
 * (see `FakeClock` in `sluice/testing`) instead of sleeping.
 */

/** An opaque handle returned by {@link Clock.setTimeout}. */
export type TimerHandle = unknown;

/**
 * The source of time and timers for a primitive.
 *
 * @example
 * ```ts
 * import { Semaphore } from "sluice";
 * import { FakeClock } from "sluice/testing";
 * const clock = new FakeClock();
 * const semaphore = new Semaphore(1, { clock });
 * ```
 */
export interface Clock {
  /** Milliseconds on a monotonic scale; only differences matter. */
  now(): number;
  /** Calls `callback` once, `ms` milliseconds from now. */
  setTimeout(callback: () => void, ms: number): TimerHandle;
  /** Cancels a timer; cancelling one that already fired or was cancelled does nothing. */
  clearTimeout(handle: TimerHandle): void;
  /**
   * Optional: the timer stops keeping the process alive (Node's `unref`); it still fires while anything
   * else does. For housekeeping a finished program should not wait for, such as a pool's idle eviction.
   * A clock without it keeps every timer as is.
   */
  unref?(handle: TimerHandle): void;
}

interface DenoTimers {
  unrefTimer?(id: number): void;
}

/**
 * Lets a timer stop keeping the process alive, in whatever form the runtime has for it: Node's, Bun's and
 * Deno 2.9's timers are objects with `unref()`; where Deno's timers are numbers (older releases), they go
 * to `Deno.unrefTimer` (issue 21: a timer a library cannot unref keeps a Deno program from exiting).
 * Browsers and workers have no process to keep alive, and nothing to do.
 */
function unrefTimer(handle: unknown): void {
  if (typeof handle === "number") (globalThis as { Deno?: DenoTimers }).Deno?.unrefTimer?.(handle);
  else (handle as { unref?: () => void } | undefined)?.unref?.();
}

/** The longest delay a Node.js timer takes; longer ones fire at once with a warning. */
const MAX_TIMER_DELAY = 2_147_483_647;

/**
 * A chained timer for delays beyond what `setTimeout` accepts (about 24.8 days): it re-arms itself for
 * the remainder, so a one-month timeout means one month rather than "now".
 */
class LongTimer {
  handle: ReturnType<typeof setTimeout> | undefined;
  /** Whether every step should be unref'd (see {@link Clock.unref}). */
  unrefed = false;
  constructor(
    private readonly callback: () => void,
    private remaining: number,
  ) {
    this.arm();
  }
  private arm(): void {
    const step = Math.min(this.remaining, MAX_TIMER_DELAY);
    this.remaining -= step;
    this.handle = globalThis.setTimeout(() => {
      if (this.remaining > 0) this.arm();
      else this.callback();
    }, step);
    if (this.unrefed) this.unref();
  }
  unref(): void {
    this.unrefed = true;
    unrefTimer(this.handle);
  }
}

/**
 * The default clock: `performance.now()` and the global timers, looked up at call time so that test
 * fake timers (vitest, sinon) installed after the primitive was created still take effect.
 */
export const systemClock: Clock = {
  now: () => globalThis.performance.now(),
  setTimeout(callback, ms) {
    if (ms > MAX_TIMER_DELAY) return new LongTimer(callback, ms);
    // A deadline already passed comes as a negative delay: Node 24 warns about each one
    // (TimeoutNegativeWarning), and every runtime treats it as 0 anyway.
    return globalThis.setTimeout(callback, Math.max(ms, 0));
  },
  clearTimeout(handle) {
    if (handle instanceof LongTimer) globalThis.clearTimeout(handle.handle);
    else globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
  unref(handle) {
    if (handle instanceof LongTimer) handle.unref();
    else unrefTimer(handle);
  },
};
