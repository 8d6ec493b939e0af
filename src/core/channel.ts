/**
 * Channel: a bounded FIFO between producers and consumers (Go's channel, asyncio.Queue), with
 * backpressure, close, and async iteration. Sends and receives each go through an admission step of
 * their own, and wait in its queue; a value always moves in the same synchronous step that settles the
 * waiter it belongs to.
 */
import { Admission, type LimiterCounters, type LimiterStatistics } from "./admission.js";
import { checkCapacity, checkClock, checkName, checkOptionNames, optionNames } from "./arguments.js";
import { type Clock, systemClock } from "./clock.js";
import { Deque } from "./deque.js";
import { describe } from "./describe.js";
import { ClosedError } from "./errors.js";
import { type CheckedWaitOptions, checkWaitOptions, type WaitOptions } from "./wait-options.js";
import type { SelfChecking, WaitQueue } from "./wait-queue.js";

/** Options for {@link Channel}. */
export interface ChannelOptions {
  /** Shows up in error messages. */
  name?: string;
  /** Time source for `timeout`s; defaults to the global timers. */
  clock?: Clock;
}

const CHANNEL_OPTIONS = /* @__PURE__ */ optionNames<ChannelOptions>({ name: true, clock: true });
const VALUES_OPTIONS = /* @__PURE__ */ optionNames<{ signal?: AbortSignal }>({ signal: true });

/** What {@link Channel.tryReceive} returns: a value, or why there was none. */
export type Received<T> =
  | {
      /** A value was taken. */
      ok: true;
      /** The value, which may itself be `undefined`. */
      value: T;
    }
  | {
      /** Nothing was taken. */
      ok: false;
      /** Why: `true` when the channel is closed and empty (nothing will ever come), `false` when only empty. */
      closed: boolean;
    };

/**
 * A snapshot of a channel's state and lifetime counters. The core fields speak of the buffer: `capacity`
 * is the buffer's, `inUse` the values buffered, `available` the room left; `waiting` counts senders
 * and receivers, and each lifetime counter is the sum of the sends' and the receives' (`sends`,
 * `receives`).
 */
export interface ChannelStatistics extends LimiterStatistics {
  /** Senders waiting for room (or, at capacity 0, for a receiver). */
  waitingSenders: number;
  /** Receivers waiting for a value. */
  waitingReceivers: number;
  /** Whether `close()` was called. */
  closed: boolean;
  /** Values delivered to receivers since creation. */
  delivered: number;
  /**
   * Sends: `granted` values taken, `rejected` sends to a closed channel and senders dropped by
   * `close()`, `aborted` and `timedOut` as everywhere.
   */
  sends: LimiterCounters;
  /**
   * Receives: `granted` values received, `rejected` receives that found the channel closed and empty
   * (an iterator's end included) and receivers ended by `close()`, `aborted` and `timedOut` as everywhere.
   */
  receives: LimiterCounters;
}

/** Marks "nothing to take" where `undefined` is a legitimate value. */
const EMPTY: unique symbol = Symbol("empty");
const RESOLVED: Promise<void> = Promise.resolve();
const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

/**
 * A channel: `send` waits while the buffer is full, `receive` waits while it is empty, values come out
 * in the order they went in, and waiting senders and receivers are each served by priority (higher
 * first, if given), then in arrival order.
 *
 * - `capacity` 0 is hand to hand: `send` completes only when a receiver takes the value.
 * - `close()` stops new sends; values already buffered are still received; after them `receive()`
 *   rejects with `ClosedError` and iterators end. Senders still waiting at `close()` reject with
 *   `ClosedError` (their values were never accepted).
 * - Leaving a `for await` loop early does not close the channel; other consumers keep receiving.
 *
 * Use it for producer/consumer pipelines with backpressure. To cap concurrency, use `Semaphore`;
 * to process a collection N at a time, use `map`.
 *
 * @example
 * ```ts
 * import { Channel } from "sluice";
 * const jobs = new Channel<string>(10);
 * const consumer = (async () => { for await (const job of jobs) console.log("got", job); })();
 * for (const job of ["a", "b", "c"]) await jobs.send(job); // waits while 10 are buffered
 * jobs.close();
 * await consumer;
 * ```
 */
export class Channel<T> implements AsyncIterable<T> {
  /** Optional name, used in error messages and statistics. */
  readonly name: string | undefined;
  /** How many values can be buffered without a receiver: an integer >= 0, or `Infinity`. */
  readonly capacity: number;
  /**
   * Invariants, after every public method returns:
   * - `buffer.length <= capacity`;
   * - receivers wait only when the buffer is empty and no sender waits (else they would have been
   *   handed a value);
   * - senders wait only when the buffer is full (`length === capacity`) and no receiver waits.
   * So at most one of the two queues is non-empty, and at most one of {receivers, buffer} is.
   */
  private readonly buffer: Deque<T>;
  /** The admission step of sends; its queue holds the waiting senders. */
  private readonly sending: Admission<T, void>;
  /** The admission step of receives; its queue holds the waiting receivers. */
  private readonly receiving: Admission<undefined, T>;
  /** Waiting senders; each waiter's request is the value it wants to send. */
  private readonly senders: WaitQueue<T, void>;
  private readonly receivers: WaitQueue<undefined, T>;
  private isClosed = false;
  private delivered = 0;

  /**
   * @param capacity - values buffered without a receiver: an integer >= 0 (0 = hand to hand) or `Infinity`.
   * @throws RangeError/TypeError for a bad capacity or options.
   */
  constructor(capacity: number, options: ChannelOptions = {}) {
    this.capacity = checkCapacity(capacity);
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`options must be an object; got ${describe(options)}`);
    }
    checkOptionNames(options, CHANNEL_OPTIONS, "the new Channel() options");
    this.name = checkName(options.name);
    const clock = checkClock(options.clock) ?? systemClock;
    this.buffer = new Deque<T>(Math.min(this.capacity, 16));
    const subject = () => (this.name === undefined ? "the channel" : `channel ${JSON.stringify(this.name)}`);
    this.sending = new Admission<T, void>(
      {
        // A closed channel never takes a value: waiting for room would wait forever.
        impossible: () => (this.isClosed ? this.closedError("send to") : undefined),
        fits: () => this.receivers.headToGrant() !== undefined || this.buffer.length < this.capacity,
        take: (value) => {
          this.offer(value);
        },
      },
      clock,
      subject,
    );
    this.receiving = new Admission<undefined, T>(
      {
        // Closed, receivers wait only on an empty buffer with no sender left (close rejected them all).
        impossible: () => (this.isClosed && this.buffer.length === 0 ? this.closedError("receive from") : undefined),
        fits: () => this.buffer.length > 0 || this.senders.headToGrant() !== undefined,
        take: () => this.take() as T,
      },
      clock,
      subject,
    );
    this.senders = this.sending.queue;
    this.receivers = this.receiving.queue;
  }

  /** Values buffered right now. */
  get size(): number {
    return this.buffer.length;
  }

  /** Whether `close()` was called. Buffered values may still be waiting to be received. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** Senders waiting for room. */
  get waitingSenders(): number {
    return this.senders.size;
  }

  /** Receivers waiting for a value. */
  get waitingReceivers(): number {
    return this.receivers.size;
  }

  /**
   * Sends `value`: hands it to a waiting receiver, or buffers it, or waits for room. Resolves once the
   * channel has taken the value.
   *
   * Rejects with `ClosedError` if the channel is closed (also if it closes while this waits),
   * `signal.reason` on abort, `TimeoutError` after `timeout` ms (`0`: only if it can be taken now).
   */
  send(value: T, options?: WaitOptions): Promise<void> {
    // The admission step for the commonest call, no options, on an open channel (nothing to check,
    // nothing aborted, no timeout): granted now if there is room or a receiver, otherwise it waits.
    // Each message of a busy channel takes one of these paths, so they skip the general step's checks.
    if (options === undefined && !this.isClosed) {
      if (!this.offer(value)) {
        this.sending.requested();
        return this.senders.enqueue(value, 0, undefined, Number.POSITIVE_INFINITY);
      }
      this.sending.grantedNow();
      return RESOLVED;
    }
    let wait: CheckedWaitOptions;
    try {
      wait = checkWaitOptions(options);
    } catch (error) {
      return Promise.reject(error);
    }
    const sent = this.sending.admit(value, wait);
    return sent === undefined ? RESOLVED : sent;
  }

  /**
   * Sends `value` only if that is possible without waiting; returns whether the channel took it.
   * At capacity 0 that means a receiver is waiting.
   *
   * @throws ClosedError if the channel is closed (a closed channel never takes a value; returning
   *   `false` would invite a retry loop that spins forever).
   */
  trySend(value: T): boolean {
    if (this.isClosed) throw this.closedError("send to");
    if (!this.offer(value)) return false;
    this.sending.grantedNow();
    return true;
  }

  /**
   * Receives the oldest value, waiting for one if the channel is empty.
   *
   * Rejects with `ClosedError` once the channel is closed and empty (also if it closes while this
   * waits), `signal.reason` on abort, `TimeoutError` after `timeout` ms (`0`: only if a value is ready).
   */
  receive(options?: WaitOptions): Promise<T> {
    // The admission step for the commonest call, no options (as in `send`): granted now if a value is
    // ready, otherwise it waits, unless the channel is closed (then the general step refuses it).
    if (options === undefined) {
      const value = this.receiveNow();
      if (value !== EMPTY) return Promise.resolve(value);
      if (!this.isClosed) return this.waitForValue();
    }
    let wait: CheckedWaitOptions;
    try {
      wait = checkWaitOptions(options);
    } catch (error) {
      return Promise.reject(error);
    }
    const received = this.receiving.admit(undefined, wait);
    return received instanceof Promise ? received : Promise.resolve(received);
  }

  /**
   * Receives a value only if one is ready. Returns `{ ok: true, value }`, or `{ ok: false, closed }`
   * where `closed` says whether the channel is closed and drained (so none will ever come). The wrapper
   * lets a channel carry `undefined` as a value.
   */
  tryReceive(): Received<T> {
    const value = this.receiveNow();
    return value === EMPTY ? { ok: false, closed: this.isClosed } : { ok: true, value };
  }

  /**
   * Stops new sends. Buffered values stay receivable; once they are gone, receivers reject with
   * `ClosedError` and iterators end. Senders still waiting reject with `ClosedError`. Idempotent.
   */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    // Each waiter gets its own error so its stack trace is its own, not a shared singleton's.
    this.sending.rejectAll(() => this.closedError("send to"));
    // Receivers wait only when the buffer is empty (invariant), so for them the channel has ended.
    this.receiving.rejectAll(() => this.closedError("receive from"));
  }

  /**
   * Iterates over received values until the channel is closed and drained. With `signal`, aborting
   * rejects the pending `next()` with `signal.reason`. Breaking out of the loop does not close the
   * channel.
   *
   * @example
   * ```ts
   * for await (const job of jobs.values({ signal: AbortSignal.timeout(60_000) })) await handle(job);
   * ```
   */
  values(options?: { signal?: AbortSignal }): AsyncIterableIterator<T> {
    const { signal } = checkWaitOptions(options, VALUES_OPTIONS, "the values() options");
    return new ChannelIterator(this.receiveOrEnd, { priority: 0, signal, timeout: Number.POSITIVE_INFINITY });
  }

  /** Same as {@link Channel.values} without a signal: `for await (const value of channel)`. */
  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return new ChannelIterator(this.receiveOrEnd, checkWaitOptions(undefined));
  }

  /** @internal For the model tests: the admission steps of sends and receives (their queues and counters). */
  "~selfChecks"(): readonly SelfChecking[] {
    return [this.sending, this.receiving];
  }

  /** A snapshot of the state and lifetime counters. */
  statistics(): ChannelStatistics {
    const sends = this.sending.counters;
    const receives = this.receiving.counters;
    return {
      name: this.name,
      capacity: this.capacity,
      available: this.capacity - this.buffer.length,
      inUse: this.buffer.length,
      waiting: this.senders.size + this.receivers.size,
      granted: sends.granted + receives.granted,
      aborted: sends.aborted + receives.aborted,
      timedOut: sends.timedOut + receives.timedOut,
      rejected: sends.rejected + receives.rejected,
      waitingSenders: this.senders.size,
      waitingReceivers: this.receivers.size,
      closed: this.isClosed,
      delivered: this.delivered,
      sends: { ...sends },
      receives: { ...receives },
    };
  }

  /** Hands `value` to the first waiting receiver, or buffers it if there is room. */
  private offer(value: T): boolean {
    // A receiver whose signal aborted before its listener ran (a send from the caller's own abort
    // listener) is withdrawn: the value must not go to a caller who has left.
    const receiver = this.receivers.headToGrant();
    if (receiver !== undefined) {
      // Receivers wait only on an empty buffer, so giving straight to one keeps FIFO order.
      this.delivered++;
      this.receiving.grant(receiver, value);
      return true;
    }
    if (this.buffer.length < this.capacity) {
      this.buffer.push(value);
      return true;
    }
    return false;
  }

  /** A value ready now, granted (and counted) as the receive admission step would, or `EMPTY`. */
  private receiveNow(): T | typeof EMPTY {
    const value = this.take();
    if (value !== EMPTY) this.receiving.grantedNow();
    return value;
  }

  /** Waits for a value with no options: what the receive admission step does once none is ready. */
  private waitForValue(): Promise<T> {
    this.receiving.requested();
    return this.receivers.enqueue(undefined, 0, undefined, Number.POSITIVE_INFINITY);
  }

  /**
   * Takes the oldest value, or `EMPTY`. Taking from a full buffer makes room, which the first waiting
   * sender fills in the same step, so its value queues behind the buffered ones and no later `send`
   * can overtake it.
   */
  private take(): T | typeof EMPTY {
    const sender = this.senders.headToGrant();
    if (this.buffer.length > 0) {
      const value = this.buffer.shift() as T;
      if (sender !== undefined) {
        this.buffer.push(sender.request);
        this.sending.grant(sender, undefined);
      }
      this.delivered++;
      return value;
    }
    // Capacity 0: the value goes straight from the waiting sender to us.
    if (sender !== undefined) {
      this.sending.grant(sender, undefined);
      this.delivered++;
      return sender.request;
    }
    return EMPTY;
  }

  /**
   * The iterators' receive, through the admission step like `receive`: "closed and empty" is the end
   * of the stream, not an error. One function per channel, handed to its iterators.
   */
  private readonly receiveOrEnd = (wait: CheckedWaitOptions): Promise<IteratorResult<T>> => {
    // A `for await` without a signal takes `receive`'s short path: a value ready, or wait while open.
    if (wait.signal === undefined) {
      const value = this.receiveNow();
      if (value !== EMPTY) return Promise.resolve({ done: false, value });
      if (!this.isClosed) return this.waitForValue().then(toResult, this.endIfClosed);
    }
    const received = this.receiving.admit(undefined, wait);
    if (!(received instanceof Promise)) return Promise.resolve({ done: false, value: received });
    return received.then(toResult, this.endIfClosed);
  };

  /** Only a closed channel rejects an iterator's receive with ClosedError: that is the end of the stream. */
  private readonly endIfClosed = (error: unknown): IteratorResult<T> => {
    if (error instanceof ClosedError && this.isClosed) return DONE;
    throw error;
  };

  private closedError(what: string): ClosedError {
    return new ClosedError(
      `cannot ${what} ${this.name === undefined ? "the channel" : `channel ${JSON.stringify(this.name)}`}: it is closed`,
    );
  }
}

function toResult<T>(value: T): IteratorYieldResult<T> {
  return { done: false, value };
}

class ChannelIterator<T> implements AsyncIterableIterator<T> {
  constructor(
    /** The channel's receive for iterators. */
    private readonly receiveOrEnd: (wait: CheckedWaitOptions) => Promise<IteratorResult<T>>,
    /** How each `next()` waits: with the iterator's signal, without a timeout. */
    private readonly wait: CheckedWaitOptions,
  ) {}
  next(): Promise<IteratorResult<T>> {
    return this.receiveOrEnd(this.wait);
  }
  /** Leaving a loop early must not close the channel: other consumers may still be reading. */
  return(): Promise<IteratorResult<T>> {
    return Promise.resolve(DONE);
  }
  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}
