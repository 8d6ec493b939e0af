/**
 * Reading the `{ priority, signal, timeout }` options that Pool, Channel and TaskGroup take for their
 * waits, with the same checks (and the same error messages) as Semaphore's.
 */
import { checkPriority, checkSignal, checkTimeout } from "./arguments.js";
import { describe } from "./duration.js";
import type { AcquireOptions } from "./limiter.js";

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
