/**
 * Reading the `{ priority, signal, timeout }` options that Pool, Channel and TaskGroup take for their
 * waits, with the same checks (and the same error messages) as Semaphore's.
 */
import {
  checkFunction,
  checkOptionNames,
  checkPriority,
  checkSignal,
  checkTimeout,
  checkWeight,
  type OptionNames,
  optionNames,
} from "./arguments.js";
import { describe } from "./describe.js";
import type { AcquireOptions, Limiter } from "./limiter.js";

/** How long and in which order to wait: {@link AcquireOptions} without `weight`. */
export type WaitOptions = Omit<AcquireOptions, "weight">;

/** The names {@link WaitOptions} accepts: a wait in a Pool, a Channel, a TaskGroup. */
export const WAIT_OPTIONS = /* @__PURE__ */ optionNames<WaitOptions>({ priority: true, signal: true, timeout: true });

/**
 * The names a {@link Limiter}'s `acquire`/`run` accept: {@link AcquireOptions}, and `cost`, which a
 * limiter that counts no cost (a Semaphore) ignores, so that code written for any Limiter (the HTTP
 * wrapper, the CLI) can pass one whatever limiter it was given.
 */
export const ACQUIRE_OPTIONS = /* @__PURE__ */ optionNames<AcquireOptions & { cost?: unknown }>({
  weight: true,
  priority: true,
  signal: true,
  timeout: true,
  cost: true,
});

/**
 * {@link checkOptionNames} for {@link ACQUIRE_OPTIONS}, for the hot path of every `acquire`/`run` with
 * options: a `switch` on the names lets V8 compare interned strings inline, where the generic check
 * costs acquire-with-options 13-18 % (measured: 9.7 M -> 8.4 M acquire/release pairs a second).
 * A name the switch does not know goes to the generic check, which decides (and names it).
 */
export function checkAcquireOptionNames(options: object): void {
  for (const name in options) {
    switch (name) {
      case "weight":
      case "priority":
      case "signal":
      case "timeout":
      case "cost":
        continue;
      default:
        checkOptionNames(options, ACQUIRE_OPTIONS, "the acquire options");
    }
  }
}

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

/**
 * @param known - the names accepted (a Channel's `values()` takes only `signal`).
 * @throws TypeError/RangeError naming the option and the value.
 */
export function checkWaitOptions(
  options: WaitOptions | undefined,
  known: OptionNames = WAIT_OPTIONS,
  where = "the wait options",
): CheckedWaitOptions {
  if (options === undefined) return NO_OPTIONS;
  checkObject(options);
  checkOptionNames(options, known, where);
  return readWaitOptions(options);
}

function checkObject(options: unknown): void {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object; got ${describe(options)}`);
  }
}

function readWaitOptions(options: WaitOptions): CheckedWaitOptions {
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
  checkObject(options);
  checkAcquireOptionNames(options);
  // Read as `readWaitOptions` does, in the same order, into one object: this runs on every acquire and
  // run with options, and each waiter with a timeout comes through here.
  const priority = options.priority === undefined ? 0 : checkPriority(options.priority);
  const signal = checkSignal(options.signal);
  const timeout = options.timeout === undefined ? Number.POSITIVE_INFINITY : checkTimeout(options.timeout);
  return { weight: options.weight === undefined ? 1 : checkWeight(options.weight), priority, signal, timeout };
}

/**
 * The arguments of a Limiter's `run(fn, options)`, checked in the order every Limiter checks them: the
 * function, then the options.
 *
 * @throws TypeError/RangeError naming the argument and the value.
 */
export function checkRunArguments(fn: unknown, options: AcquireOptions | undefined): CheckedAcquireOptions {
  checkFunction(fn, "fn");
  return checkAcquireOptions(options);
}
