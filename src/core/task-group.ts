/**
 * TaskGroup: structured concurrency for promises — the TypeScript answer to asyncio.TaskGroup and trio's
 * nurseries. Tasks share a signal; the first failure aborts it; the group ends only when every task has.
 */
import { checkFunction, checkOptionNames, checkSignal, optionNames } from "./arguments.js";
import { describe } from "./describe.js";
import { defineDisposeSymbols } from "./dispose.js";
import { ClosedError } from "./errors.js";
import type { Limiter } from "./limiter.js";
import { allowManyListeners } from "./many-listeners.js";

defineDisposeSymbols();

/** Options for {@link TaskGroup}. */
export interface TaskGroupOptions {
  /** Aborting cancels the group: tasks' signals abort, and `wait()` rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Every task waits for a permit of this limiter (with the group's signal) and runs holding it. */
  limiter?: Limiter;
}

const TASK_GROUP_OPTIONS = /* @__PURE__ */ optionNames<TaskGroupOptions>({ signal: true, limiter: true });

/**
 * A group of tasks that end together.
 *
 * - Every task receives the group's {@link TaskGroup.signal}. The first task to fail aborts it (its
 *   reason is that error), so the siblings can stop; `wait()` rejects with that first error.
 * - `wait()` and `await using` return only when every task has settled, including tasks spawned while
 *   waiting: nothing the group started is left running after the group ends. After that the group is
 *   closed, and `spawn` rejects with `ClosedError`.
 * - `cancel()` aborts every task without it counting as a failure; an aborted outer `signal` does the
 *   same but makes `wait()` reject with its reason.
 * - A task's own promise (what `spawn` returns) never causes an unhandled rejection: failures are
 *   reported once, by `wait()`.
 *
 * Use it when several different tasks belong together; to apply one function to many items, use `map`.
 *
 * @example
 * ```ts
 * import { TaskGroup } from "sluice";
 * {
 *   await using group = new TaskGroup();
 *   group.spawn((signal) => fetch(primary, { signal }));
 *   group.spawn((signal) => warmCache(signal));
 * } // waits for both here; if one failed, the other was aborted and the error is thrown
 * ```
 */
export class TaskGroup implements AsyncDisposable {
  private readonly controller = new AbortController();
  private readonly limiter: Limiter | undefined;
  private readonly outerSignal: AbortSignal | undefined;
  /** Tasks spawned and not yet settled (waiting for the limiter counts). */
  private active = 0;
  /**
   * The group's error: the first task failure, or the outer signal's reason. Set at most once.
   * Failures after the group was cancelled that are just the cancellation echoing back (see
   * {@link isCancellation}) are not failures.
   */
  private failure: { error: unknown } | undefined = undefined;
  /** The outcome promise of `wait()`, created on first call; settles when `active` reaches 0. */
  private ended: Promise<void> | undefined = undefined;
  private endedSettle: { resolve: () => void; reject: (error: unknown) => void } | undefined = undefined;
  private closed = false;
  /** Whether the outer signal's abort has been taken in (by its listener or by `checkOuter`). */
  private outerSeen = false;

  constructor(options: TaskGroupOptions = {}) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`options must be an object; got ${describe(options)}`);
    }
    checkOptionNames(options, TASK_GROUP_OPTIONS, "the new TaskGroup() options");
    const limiter = options.limiter;
    if (
      limiter !== undefined &&
      (typeof limiter !== "object" || limiter === null || typeof limiter.run !== "function")
    ) {
      throw new TypeError(`limiter must be a Limiter (an object with run()); got ${describe(limiter)}`);
    }
    this.limiter = limiter;
    this.outerSignal = checkSignal(options.signal);
    allowManyListeners(this.controller.signal);
    this.checkOuter();
  }

  /** Aborts when the group is cancelled: the first failure, `cancel()`, or the outer signal. */
  get signal(): AbortSignal {
    this.checkOuter();
    return this.controller.signal;
  }

  /** Tasks spawned and not yet settled. */
  get running(): number {
    return this.active;
  }

  /**
   * Starts `fn(signal)` as a task of the group and returns its result. The returned promise may be
   * ignored: a failure is reported by `wait()` (and never as an unhandled rejection).
   *
   * If the group is already cancelled, `fn` is not called and the promise rejects with the
   * cancellation reason; if the group has ended, it rejects with `ClosedError`.
   */
  spawn<R>(fn: (signal: AbortSignal) => R | PromiseLike<R>): Promise<R> {
    if (this.closed) return Promise.reject(new ClosedError("this task group has ended; spawn tasks before it ends"));
    try {
      checkFunction(fn, "fn");
    } catch (error) {
      return Promise.reject(error);
    }
    this.checkOuter();
    const signal = this.controller.signal;
    if (signal.aborted) return handled(Promise.reject(signal.reason));
    // The outer signal is listened to only while tasks run: a group that is never waited on must not
    // stay attached to a long-lived signal (an idle group reads it when next used, see checkOuter).
    if (this.active++ === 0) this.outerSignal?.addEventListener("abort", this.onOuterAbort);
    let task: Promise<R>;
    // A limiter of the user's own may throw instead of rejecting: the task is counted already, so that
    // must settle it like any failure (or `wait()` would wait for it forever).
    try {
      task = this.limiter !== undefined ? this.limiter.run(fn, { signal }) : Promise.resolve(fn(signal));
    } catch (error) {
      task = Promise.reject(error);
    }
    task.then(this.taskSucceeded, this.taskFailed);
    return handled(task);
  }

  /** Aborts every task's signal with `reason` (default: an `AbortError`). Not a failure of the group. */
  cancel(reason: unknown = AbortSignal.abort().reason): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }

  /**
   * Resolves once every task has settled (including ones spawned meanwhile), or rejects with the first
   * failure once they have. The group is closed afterwards.
   */
  wait(): Promise<void> {
    this.checkOuter();
    if (this.ended === undefined) {
      this.ended = new Promise<void>((resolve, reject) => {
        this.endedSettle = { resolve, reject };
      });
      this.settleIfIdle();
    }
    return this.ended;
  }

  /** `await using group = new TaskGroup()`: waits for every task at the end of the block. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.wait();
  }

  private readonly taskSucceeded = (): void => {
    this.taskEnded();
    this.settleIfIdle();
  };

  private readonly taskFailed = (error: unknown): void => {
    this.taskEnded();
    const signal = this.controller.signal;
    if (this.failure === undefined && !(signal.aborted && isCancellation(error, signal.reason))) {
      this.failure = { error };
      this.cancel(error);
    }
    this.settleIfIdle();
  };

  private taskEnded(): void {
    if (--this.active === 0) this.outerSignal?.removeEventListener("abort", this.onOuterAbort);
  }

  /** An outer signal that aborted while no task ran (and nobody listened) cancels the group now. */
  private checkOuter(): void {
    if (!this.outerSeen && !this.closed && this.outerSignal?.aborted) this.onOuterAbort();
  }

  private readonly onOuterAbort = (): void => {
    if (this.outerSeen) return;
    this.outerSeen = true;
    const reason = (this.outerSignal as AbortSignal).reason;
    if (this.failure === undefined) this.failure = { error: reason };
    this.cancel(reason);
  };

  private settleIfIdle(): void {
    const settle = this.endedSettle;
    if (settle === undefined || this.active !== 0) return;
    this.endedSettle = undefined;
    this.closed = true;
    if (this.failure !== undefined) settle.reject(this.failure.error);
    else settle.resolve();
  }
}

/**
 * Whether a task's error is the group's cancellation coming back: the reason itself (what `fetch`
 * rejects with), or an error caused by it — Node's own APIs (`fs`, `timers/promises`, `events.once`)
 * reject with a new `AbortError` whose `cause` is the reason, and `cancel()` must not turn that into a
 * failure.
 */
function isCancellation(error: unknown, reason: unknown): boolean {
  if (error === reason) return true;
  return typeof error === "object" && error !== null && (error as { cause?: unknown }).cause === reason;
}

/** Marks a promise as handled (its failure is reported elsewhere) and returns it unchanged. */
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.then(undefined, () => {});
  return promise;
}
