/**
 * map: bounded parallel processing of an iterable or async iterable, in three forms — all results
 * (`map`), a stream of results with backpressure (`mapStream`), per-item outcomes (`mapSettled`) —
 * sharing one engine. The input is pulled lazily, one item at a time, only when there is room.
 */
import { checkCapacity, checkFunction, checkOptionNames, checkSignal, optionNames } from "./arguments.js";
import { systemClock } from "./clock.js";
import { Deque } from "./deque.js";
import { describe } from "./describe.js";
import { type Limiter, NEVER_ABORTED, type Permit } from "./limiter.js";
import { linkSignals } from "./linked-signal.js";
import { allowManyListeners } from "./many-listeners.js";
import { WaitQueue } from "./wait-queue.js";

/** The function `map` applies: gets the item, its index in the input, and a signal to stop early. */
export type Mapper<T, R> = (item: T, index: number, signal: AbortSignal) => R | PromiseLike<R>;

/** Options shared by {@link map}, {@link mapStream} and {@link mapSettled}. */
export interface MapOptions {
  /** At most this many calls of the mapper run at once: an integer >= 1 or `Infinity` (the default). */
  concurrency?: number;
  /**
   * Each item waits for a permit of this limiter (a `Semaphore`, `RateLimiter`, a Redis one...) before
   * it is even pulled from the input, and gives it back when its mapper settles. Combines with
   * `concurrency`: both must admit.
   */
  limiter?: Limiter;
  /** Aborting stops pulling, aborts the running mappers' signals, and rejects with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * `true` (default): results in input order. `false`: in completion order (`map` and `mapSettled`
   * return arrays in that order; `mapStream` yields as they finish).
   */
  ordered?: boolean;
}

/** Options for {@link map}. */
export interface MapAllOptions extends MapOptions {
  /**
   * `true` (default): the first failure aborts the other mappers' signals and rejects with that error.
   * `false`: every item runs; if any failed, rejects with an `AggregateError` of the failures in input
   * order.
   */
  stopOnError?: boolean;
}

/** Options for {@link mapStream}. */
export interface MapStreamOptions extends MapOptions {
  /**
   * How many finished results may wait for the consumer before pulling stops (backpressure): at most
   * `concurrency + buffer` items are pulled ahead of what was consumed. Default: `concurrency`, or 16
   * when concurrency is unlimited.
   */
  buffer?: number;
}

type Mode = "all" | "settled" | "stream";

const MAP_OPTIONS = {
  settled: /* @__PURE__ */ optionNames<MapOptions>({ concurrency: true, limiter: true, signal: true, ordered: true }),
  all: /* @__PURE__ */ optionNames<MapAllOptions>({
    concurrency: true,
    limiter: true,
    signal: true,
    ordered: true,
    stopOnError: true,
  }),
  stream: /* @__PURE__ */ optionNames<MapStreamOptions>({
    concurrency: true,
    limiter: true,
    signal: true,
    ordered: true,
    buffer: true,
  }),
} as const;
const FUNCTION_NAMES = { all: "map", settled: "mapSettled", stream: "mapStream" } as const;

/** A result slot in input order, for the ordered stream: filled when its mapper finishes. */
interface Slot<R> {
  done: boolean;
  value: R | undefined;
}

const EMPTY: unique symbol = Symbol("empty");
const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

/**
 * Runs `fn` over every item of `input` with at most `concurrency` calls at once, and resolves with the
 * results in input order (like p-map). Items are pulled only when a call can start, so an endless or
 * huge generator is fine. The first failure aborts the other calls' signals and rejects with that
 * error — once those calls have settled, so nothing of the map is left running when it rejects.
 *
 * The default concurrency is unlimited unless a `limiter` is given.
 *
 * @example
 * ```ts
 * import { map } from "sluice";
 * const pages = await map(urls, (url, _index, signal) => fetch(url, { signal }).then((r) => r.text()), {
 *   concurrency: 5,
 * });
 * ```
 */
export function map<T, R>(
  input: Iterable<T> | AsyncIterable<T>,
  fn: Mapper<T, R>,
  options: MapAllOptions = {},
): Promise<R[]> {
  try {
    // `?.`: a null `options` must reach the constructor's check, which names it.
    const run = new MapRun<T, R>(input, fn, options, "all", options?.stopOnError ?? true);
    return run.start() as Promise<R[]>;
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * Like {@link map}, but never stops at a failure: resolves with one outcome per item,
 * `{ status: "fulfilled", value }` or `{ status: "rejected", reason }` (the shape
 * `Promise.allSettled` gives). Only the input failing or `signal` aborting rejects it.
 *
 * @example
 * ```ts
 * const outcomes = await mapSettled(files, (file) => readFile(file, "utf8"), { concurrency: 5 });
 * const failed = outcomes.filter((outcome) => outcome.status === "rejected");
 * ```
 */
export function mapSettled<T, R>(
  input: Iterable<T> | AsyncIterable<T>,
  fn: Mapper<T, R>,
  options: MapOptions = {},
): Promise<PromiseSettledResult<R>[]> {
  try {
    const run = new MapRun<T, R>(input, fn, options, "settled", false);
    return run.start() as Promise<PromiseSettledResult<R>[]>;
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * The streaming form of {@link map}: an async iterable of results, in input order (or completion
 * order with `ordered: false`), with backpressure — nothing is pulled from the input while
 * `buffer` results wait for the consumer — so memory stays flat for any input length.
 *
 * Work starts at the first `next()`. The first failure aborts the running calls and, once they have
 * settled, the next `next()` rejects with it (results not yet consumed are dropped). Leaving the
 * `for await` loop early aborts the running calls, waits for them, and closes the input.
 *
 * @throws TypeError/RangeError for bad arguments (it is a synchronous function).
 * @example
 * ```ts
 * for await (const line of mapStream(readLines(file), (line) => translate(line), { concurrency: 8 })) {
 *   output.write(line);
 * }
 * ```
 */
export function mapStream<T, R>(
  input: Iterable<T> | AsyncIterable<T>,
  fn: Mapper<T, R>,
  options: MapStreamOptions = {},
): AsyncIterableIterator<R> {
  return new MapRun<T, R>(input, fn, options, "stream", true);
}

/**
 * The engine behind the three forms.
 *
 * State, and the invariants that govern it:
 * - `running`: mappers started and not settled. `running <= concurrency`.
 * - `pulling`: a `next()` of an async input, or a limiter acquire, is pending. At most one at a time,
 *   so the input is never asked for two items at once and the limiter holds at most one waiter of ours.
 * - `ready`: finished results the stream consumer has not taken. The stream pulls only while
 *   `running + ready < concurrency + buffer` (the "pulled ahead" bound).
 * - `stopped`: no more items are started (failure, outer abort, consumer left). `finished`: stopped
 *   or exhausted, and `running === 0` — the outcome is decided and nothing of ours still runs.
 */
class MapRun<T, R> implements AsyncIterableIterator<R> {
  private readonly iterator: Iterator<T> | AsyncIterator<T>;
  private readonly isAsync: boolean;
  private readonly concurrency: number;
  /** Stream only: items pulled and not yet consumed (`running + ready`) stay below this. */
  private readonly aheadLimit: number;
  /**
   * Stream only: finished results waiting for the consumer stay below this. It matters when
   * concurrency is unlimited (a limiter paces the work): `aheadLimit` is then infinite, and this is
   * what stops pulling while the consumer does not keep up.
   */
  private readonly readyLimit: number;
  private readonly limiter: Limiter | undefined;
  private readonly ordered: boolean;
  private readonly outerSignal: AbortSignal | undefined;
  /** Aborted on the first failure, outer abort or early exit: every mapper gets its signal. */
  private readonly controller = new AbortController();
  private running = 0;
  private index = 0;
  private pulling = false;
  private exhausted = false;
  private stopped = false;
  private finished = false;
  private started = false;
  private failure: { error: unknown } | undefined = undefined;
  private failureDelivered = false;
  private ready = 0;
  /** An async input's `next()` is pending (a kind of `pulling`). */
  private nextPending = false;
  private closeInputAfterPull = false;
  /** The stream consumer left (`return()`): later `next()` calls see the end. */
  private consumerLeft = false;

  /** "all" and "settled": the outcome, by index (ordered) or in completion order. */
  private readonly results: unknown[] = [];
  /** "all" with `stopOnError: false`: failures with their index. */
  private errors: { index: number; error: unknown }[] | undefined;
  private settle: { resolve: (value: unknown) => void; reject: (error: unknown) => void } | undefined;

  /** "stream", ordered: one slot per item pulled and not yet consumed, in input order. */
  private readonly slots = new Deque<Slot<R>>();
  /** "stream", unordered: finished results not yet consumed. */
  private readonly completed = new Deque<R>();
  /** "stream": consumers waiting in `next()`. */
  private consumers: WaitQueue<undefined, IteratorResult<R>> | undefined;
  private returning: (() => void)[] | undefined;

  constructor(
    input: Iterable<T> | AsyncIterable<T>,
    private readonly fn: Mapper<T, R>,
    options: MapStreamOptions,
    private readonly mode: Mode,
    private readonly stopOnError: boolean,
  ) {
    checkFunction(fn, "fn");
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`options must be an object; got ${describe(options)}`);
    }
    checkOptionNames(options, MAP_OPTIONS[mode], `the ${FUNCTION_NAMES[mode]}() options`);
    const concurrency = options.concurrency;
    if (concurrency === undefined) this.concurrency = Number.POSITIVE_INFINITY;
    else if (
      typeof concurrency === "number" &&
      (concurrency === Number.POSITIVE_INFINITY || Number.isInteger(concurrency)) &&
      concurrency >= 1
    ) {
      this.concurrency = concurrency;
    } else {
      throw new (typeof concurrency === "number" ? RangeError : TypeError)(
        `concurrency must be an integer >= 1 or Infinity; got ${describe(concurrency)}`,
      );
    }
    const buffer =
      options.buffer === undefined
        ? Number.isFinite(this.concurrency)
          ? this.concurrency
          : 16
        : checkCapacity(options.buffer, "buffer");
    this.aheadLimit = mode === "stream" ? this.concurrency + buffer : Number.POSITIVE_INFINITY;
    this.readyLimit =
      mode === "stream" && !Number.isFinite(this.concurrency) ? Math.max(1, buffer) : Number.POSITIVE_INFINITY;
    const limiter = options.limiter;
    if (
      limiter !== undefined &&
      (typeof limiter !== "object" || limiter === null || typeof limiter.acquire !== "function")
    ) {
      throw new TypeError(`limiter must be a Limiter (an object with acquire()); got ${describe(limiter)}`);
    }
    this.limiter = limiter;
    this.ordered = options.ordered ?? true;
    this.outerSignal = checkSignal(options.signal);
    const asyncIterable = input as AsyncIterable<T> | null | undefined;
    const syncIterable = input as Iterable<T> | null | undefined;
    if (asyncIterable != null && typeof asyncIterable[Symbol.asyncIterator] === "function") {
      this.iterator = asyncIterable[Symbol.asyncIterator]();
      this.isAsync = true;
    } else if (syncIterable != null && typeof syncIterable[Symbol.iterator] === "function") {
      this.iterator = syncIterable[Symbol.iterator]();
      this.isAsync = false;
    } else {
      throw new TypeError(`input must be an iterable or an async iterable; got ${describe(input)}`);
    }
    // Every mapper of a large run listens on the same signal (fetch adds a listener per request).
    allowManyListeners(this.controller.signal);
  }

  /** "all" / "settled": starts the run and returns its outcome. */
  start(): Promise<unknown> {
    const outcome = new Promise<unknown>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    this.begin();
    return outcome;
  }

  // --- the stream's AsyncIterator side ---

  next(): Promise<IteratorResult<R>> {
    if (!this.started) this.begin();
    if (this.consumerLeft) return Promise.resolve(DONE);
    if (this.failure === undefined) {
      const value = this.take();
      if (value !== EMPTY) {
        // Room opened up: pull more, and notice if that found the end of the input.
        this.pump();
        this.finishIfDone();
        return Promise.resolve({ done: false, value });
      }
      if (this.finished) return Promise.resolve(DONE);
    } else if (this.finished) {
      if (this.failureDelivered) return Promise.resolve(DONE);
      this.failureDelivered = true;
      return Promise.reject(this.failure.error);
    }
    if (this.consumers === undefined) {
      this.consumers = new WaitQueue<undefined, IteratorResult<R>>(
        systemClock,
        () => {},
        () => "map results",
      );
    }
    return this.consumers.enqueue(undefined, 0, undefined, Number.POSITIVE_INFINITY);
  }

  /** Leaving the loop early: abort what runs, wait for it, close the input. */
  return(): Promise<IteratorResult<R>> {
    if (!this.started) {
      this.started = true;
      this.stopped = true;
      this.finished = true;
      this.closeInput();
      return Promise.resolve(DONE);
    }
    // What was produced but not consumed is dropped, and later `next()` calls see the end.
    this.consumerLeft = true;
    this.failureDelivered = true;
    this.stop(AbortSignal.abort().reason);
    this.finishIfDone();
    if (this.finished) return Promise.resolve(DONE);
    return new Promise((resolve) => {
      if (this.returning === undefined) this.returning = [];
      this.returning.push(() => resolve(DONE));
    });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<R> {
    return this;
  }

  // --- the engine ---

  private begin(): void {
    this.started = true;
    const outer = this.outerSignal;
    if (outer !== undefined) {
      if (outer.aborted) {
        this.fail(outer.reason);
        this.finishIfDone();
        return;
      }
      outer.addEventListener("abort", this.onOuterAbort);
    }
    this.pump();
    this.finishIfDone();
  }

  private readonly onOuterAbort = (): void => {
    this.fail((this.outerSignal as AbortSignal).reason);
    this.finishIfDone();
  };

  /** Starts items while there is room: concurrency, the stream's buffer, one pull at a time. */
  private pump(): void {
    while (
      !this.stopped &&
      !this.exhausted &&
      !this.pulling &&
      this.running < this.concurrency &&
      this.running + this.ready < this.aheadLimit &&
      this.ready < this.readyLimit
    ) {
      if (this.limiter !== undefined) {
        this.pulling = true;
        let permit: Promise<Permit>;
        try {
          permit = this.limiter.acquire({ signal: this.controller.signal });
        } catch (error) {
          // A limiter of the user's own that throws instead of rejecting: the same failure, not a
          // throw out of a promise callback that would leave `pulling` set and the run pending forever.
          permit = Promise.reject(error);
        }
        permit.then(this.onPermit, this.onPermitFailed);
        return;
      }
      if (!this.pull(undefined)) return;
    }
  }

  private readonly onPermit = (permit: Permit): void => {
    this.pulling = false;
    if (this.stopped) {
      this.release(permit);
      this.finishIfDone();
      return;
    }
    if (this.pull(permit)) this.pump();
    this.finishIfDone();
  };

  private readonly onPermitFailed = (error: unknown): void => {
    this.pulling = false;
    // Our own abort cancelled the wait: that is the stop already under way, not a new failure.
    if (!this.stopped) this.fail(error);
    this.finishIfDone();
  };

  /**
   * Pulls one item and starts it. Returns whether the caller may go on pulling synchronously (a sync
   * input that yielded an item); an async input continues from its promise.
   */
  private pull(permit: Permit | undefined): boolean {
    let result: IteratorResult<T> | Promise<IteratorResult<T>>;
    try {
      result = this.iterator.next();
      if (!this.isAsync && !isObject(result)) throw notAResult(result);
    } catch (error) {
      this.exhausted = true;
      if (permit !== undefined) this.release(permit);
      this.fail(error);
      return false;
    }
    if (!this.isAsync) return this.pulled(result as IteratorResult<T>, permit);
    this.pulling = true;
    this.nextPending = true;
    Promise.resolve(result).then(
      (item) => {
        this.pulling = false;
        this.nextPending = false;
        if (!isObject(item)) {
          this.exhausted = true;
          if (permit !== undefined) this.release(permit);
          this.fail(notAResult(item));
          this.finishIfDone();
          return;
        }
        if (this.closeInputAfterPull && !item.done) this.callReturn();
        if (this.pulled(item, permit)) this.pump();
        this.finishIfDone();
      },
      (error: unknown) => {
        this.pulling = false;
        this.nextPending = false;
        this.exhausted = true;
        if (permit !== undefined) this.release(permit);
        this.fail(error);
        this.finishIfDone();
      },
    );
    return false;
  }

  private pulled(item: IteratorResult<T>, permit: Permit | undefined): boolean {
    if (item.done || this.stopped) {
      if (item.done) this.exhausted = true;
      if (permit !== undefined) this.release(permit);
      return false;
    }
    this.run(item.value, this.index++, permit);
    return true;
  }

  private run(item: T, index: number, permit: Permit | undefined): void {
    this.running++;
    const slot: Slot<R> | undefined =
      this.mode === "stream" && this.ordered ? { done: false, value: undefined } : undefined;
    if (slot !== undefined) this.slots.push(slot);
    let signal = this.controller.signal;
    let unlink: (() => void) | undefined;
    // A distributed permit has a signal of its own (its lease can be lost): the mapper hears both, until
    // it settles (the run's signal outlives the item, and must not keep a listener per item).
    if (permit !== undefined && permit.signal !== signal && permit.signal !== NEVER_ABORTED) {
      const link = linkSignals(signal, permit.signal);
      signal = link.signal as AbortSignal;
      unlink = link.dispose;
    }
    let output: R | PromiseLike<R>;
    try {
      output = this.fn(item, index, signal);
    } catch (error) {
      output = Promise.reject(error);
    }
    Promise.resolve(output).then(
      (value) => {
        unlink?.();
        this.succeeded(index, slot, value, permit);
      },
      (error: unknown) => {
        unlink?.();
        this.failed(index, error, permit);
      },
    );
  }

  private succeeded(index: number, slot: Slot<R> | undefined, value: R, permit: Permit | undefined): void {
    this.running--;
    if (permit !== undefined) this.release(permit);
    if (this.mode === "stream") {
      if (!this.stopped) this.deliver(slot, value);
    } else if (this.mode === "all") {
      if (this.ordered) this.results[index] = value;
      else this.results.push(value);
    } else {
      const outcome: PromiseFulfilledResult<R> = { status: "fulfilled", value };
      if (this.ordered) this.results[index] = outcome;
      else this.results.push(outcome);
    }
    this.pump();
    this.finishIfDone();
  }

  private failed(index: number, error: unknown, permit: Permit | undefined): void {
    this.running--;
    if (permit !== undefined) this.release(permit);
    if (this.mode === "settled") {
      const outcome: PromiseRejectedResult = { status: "rejected", reason: error };
      if (this.ordered) this.results[index] = outcome;
      else this.results.push(outcome);
    } else if (this.stopOnError) {
      this.fail(error);
    } else {
      if (this.errors === undefined) this.errors = [];
      this.errors.push({ index, error });
    }
    this.pump();
    this.finishIfDone();
  }

  /** Stream: hands a result to a waiting consumer, or keeps it (in its slot, in order) until asked. */
  private deliver(slot: Slot<R> | undefined, value: R): void {
    this.ready++;
    if (slot === undefined) {
      this.completed.push(value);
    } else {
      slot.done = true;
      slot.value = value;
    }
    const consumers = this.consumers;
    if (consumers === undefined) return;
    for (let consumer = consumers.head; consumer !== undefined; consumer = consumers.head) {
      const next = this.take();
      if (next === EMPTY) break;
      consumers.grant(consumer, { done: false, value: next });
    }
  }

  /** Stream: the next result the consumer may have, in the promised order, or `EMPTY`. */
  private take(): R | typeof EMPTY {
    if (this.ready === 0) return EMPTY;
    if (this.ordered) {
      const first = this.slots.peekFirst();
      if (first === undefined || !first.done) return EMPTY;
      this.slots.shift();
      this.ready--;
      return first.value as R;
    }
    this.ready--;
    return this.completed.shift() as R;
  }

  /** Records the first failure and stops; later failures (often the siblings' aborts) are dropped. */
  private fail(error: unknown): void {
    if (this.failure !== undefined || this.finished) return;
    this.failure = { error };
    this.stop(error);
  }

  /** Stops starting items and aborts the running ones with `reason`. */
  private stop(reason: unknown): void {
    if (this.stopped) return;
    this.stopped = true;
    this.controller.abort(reason);
  }

  /** Once nothing of ours runs and nothing more will start, settles the outcome. */
  private finishIfDone(): void {
    if (this.finished || this.running > 0) return;
    if (!this.stopped && !(this.exhausted && !this.pulling)) return;
    this.finished = true;
    this.outerSignal?.removeEventListener("abort", this.onOuterAbort);
    if (!this.exhausted) this.closeInput();
    if (this.failure === undefined && this.errors !== undefined) {
      const errors = this.errors.sort((a, b) => a.index - b.index).map((entry) => entry.error);
      this.failure = { error: new AggregateError(errors, `${errors.length} of ${this.index} items failed`) };
    }
    if (this.mode !== "stream") {
      const settle = this.settle as NonNullable<typeof this.settle>;
      if (this.failure !== undefined) settle.reject(this.failure.error);
      else settle.resolve(this.results);
      return;
    }
    const consumers = this.consumers;
    if (consumers !== undefined) {
      for (let consumer = consumers.head; consumer !== undefined; consumer = consumers.head) {
        if (this.failure !== undefined && !this.failureDelivered) {
          this.failureDelivered = true;
          consumers.reject(consumer, this.failure.error);
        } else {
          consumers.grant(consumer, DONE);
        }
      }
    }
    const returning = this.returning;
    this.returning = undefined;
    if (returning !== undefined) for (const resolve of returning) resolve();
  }

  /** Closes an input we stop reading early (a generator's `finally` runs; a file handle closes). */
  private closeInput(): void {
    this.exhausted = true;
    if (this.nextPending) {
      // An async `next()` is pending; close once it settles rather than racing it.
      this.closeInputAfterPull = true;
      return;
    }
    this.callReturn();
  }

  private callReturn(): void {
    const iterator = this.iterator as Iterator<T>;
    if (typeof iterator.return !== "function") return;
    try {
      const closing = iterator.return();
      if (this.isAsync) Promise.resolve(closing).then(undefined, ignore);
    } catch {
      // The input failed while closing; the run's outcome is already decided, and it says why we stopped.
    }
  }

  /** Gives a limiter permit back; a release that fails is a failure of the run. */
  private release(permit: Permit): void {
    try {
      const released = permit.release();
      if (released !== undefined) Promise.resolve(released).then(undefined, (error: unknown) => this.fail(error));
    } catch (error) {
      this.fail(error);
    }
  }
}

function ignore(): void {}

function isObject(value: unknown): boolean {
  return (typeof value === "object" && value !== null) || typeof value === "function";
}

/** What `for...of` throws too when an iterator's `next()` breaks the protocol. */
function notAResult(value: unknown): TypeError {
  return new TypeError(`the input's iterator returned ${describe(value)} from next(), which is not an iterator result`);
}
