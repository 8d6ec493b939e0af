/**
 * Reading the `{ priority, signal, timeout }` options that Pool, Channel and TaskGroup take for their
 * waits, with the same checks (and the same error messages) as Semaphore's.
 */
import { checkPriority, checkSignal, checkTimeout, checkWeight } from "./arguments.js";
import { describe } from "./duration.js";
import type { AcquireOptions, Limiter } from "./limiter.js";

/** How long and in which order to wait: {@link AcquireOptions} without `weight`. */
export type WaitOptions = Omit<AcquireOptions, "weight">;

/** Checked wait options; `timeout` is `Infinity` when none was given. */
export interface CheckedWaitOptions {
  priority: number;
  signal: AbortSignal | undefined;
  timeout: number;
}

const NO_OPTIONS: CheckedWaitOptions = Object.freeze({
  priority: 0,
  signal: undefined,
  timeout: Number.POSITIVE_INFINITY,
});

/** @throws TypeError/RangeError naming the option and the value. */
export function checkWaitOptions(options: WaitOptions | undefined): CheckedWaitOptions {
  if (options === undefined) return NO_OPTIONS;
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object; got ${describe(options)}`);
  }
  return {
    priority: options.priority === undefined ? 0 : checkPriority(options.priority),
    signal: checkSignal(options.signal),
    timeout: options.timeout === undefined ? Number.POSITIVE_INFINITY : checkTimeout(options.timeout),
  };
}

/** Checked acquire options: {@link CheckedWaitOptions} plus the weight (1 when none was given). */
export interface CheckedAcquireOptions extends CheckedWaitOptions {
  weight: number;
}

const DEFAULT_ACQUIRE: CheckedAcquireOptions = Object.freeze({ ...NO_OPTIONS, weight: 1 });

/**
 * Reads `{ weight, priority, signal, timeout }` the same way for every {@link Limiter} (Semaphore,
 * SharedSemaphore, RedisSemaphore), so a bad option gets the same error from each backend.
 *
 * @throws TypeError/RangeError naming the option and the value.
 */
export function checkAcquireOptions(options: AcquireOptions | undefined): CheckedAcquireOptions {
  if (options === undefined) return DEFAULT_ACQUIRE;
  const { priority, signal, timeout } = checkWaitOptions(options);
  return { weight: options.weight === undefined ? 1 : checkWeight(options.weight), priority, signal, timeout };
}
