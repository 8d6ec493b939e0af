/**
 * The scheduling core: the one wait queue that every sluice primitive (Semaphore, Mutex, RateLimiter,
 * Pool, Channel) parks its callers in.
 *
 * The queue knows nothing about *what* a waiter waits for. It keeps waiters in order — priority first
 * (higher first), then arrival — and settles them when its owner says so. The owner decides when the
 * head may go (its "dispatch" loop) and hands the grant over with {@link WaitQueue.grant} in the same
 * synchronous step, so nobody can barge in between a release and the next waiter's grant (the hand-off
 * trio and Go use; async-mutex's re-check after wake-up is the bug it avoids).
 *
 * Costs:
 * - enqueue: O(1) for a priority already waiting; a new priority level costs a binary search and an
 *   array insert over the *distinct priorities* waiting (almost always 1-3), never over the waiters.
 * - removal of any waiter (grant, abort, timeout, clear): O(1), by unlinking it from its level's
 *   circular list.
 * - no timer per waiter unless that waiter asked for a timeout; no closure per waiter unless it passed
 *   a signal or a timeout.
 */
import type { Clock, TimerHandle } from "./clock.js";
import { TimeoutError } from "./errors.js";

/** Why a waiter left the queue without being granted. */
export type CancelReason = "abort" | "timeout";

/**
 * A link in a circular doubly linked list. Each priority level is a sentinel {@link Level}; its waiters
 * hang between `level.next` (the oldest) and `level.prev` (the newest).
 */
abstract class Link {
  prev: Link;
  next: Link;
  constructor() {
    this.prev = this;
    this.next = this;
  }
}

/** The sentinel of one priority level. Empty exactly when `next === this`. */
class Level extends Link {
  constructor(readonly priority: number) {
    super();
  }
}

/**
 * One parked caller.
 *
 * Invariant: a waiter is linked into exactly one level while it waits (`queued === true`), and is
 * unlinked, its listener removed and its timer cleared in the same synchronous step that settles its
 * promise. `queued === false` afterwards, so a late abort or timer can never settle it twice.
 */
export class Waiter<Request, Grant> extends Link {
  /**
   * Derived rather than stored (a field would cost 8 bytes a waiter): a linked waiter's `next` is
   * another waiter or its level's sentinel, never itself, and `settle` points it back at itself in
   * the step that unlinks it.
   */
  get queued(): boolean {
    return this.next !== this;
  }
  /**
   * Only the resolving function is kept, not the rejecting one: a rejection is delivered as
   * `resolve(new Rejection(error))`, which rejects the caller's promise the same way. Keeping one
   * function instead of two saves 56 bytes per waiter (Node's builds have no pointer compression), and
   * waiter memory is what decides whether a million queued tasks fit.
   */
  resolve: (value: Grant | PromiseLike<Grant>) => void;
  /** Present only when the waiter passed a signal or a timeout. */
  cancellation: Cancellation<Request, Grant> | undefined = undefined;
  constructor(
    /** What the waiter asked for: a weight, a cost, a value to send. */
    readonly request: Request,
    readonly priority: number,
    resolve: (value: Grant | PromiseLike<Grant>) => void,
  ) {
    super();
    this.resolve = resolve;
  }
}

/**
 * The abort listener and timer of one waiter.
 *
 * The listener is a function added with `{ once: true }`. A `handleEvent` object would not save the
 * closure: Node 20 wraps such an object in an async closure of its own and calls it through an async
 * function on every abort. And a once-listener is dropped by the abort's own dispatch, so the abort
 * path needs no `removeEventListener`, the costliest step of an abort after Node's dispatch itself.
 */
class Cancellation<Request, Grant> {
  timer: TimerHandle | undefined = undefined;
  readonly onAbort = (): void => {
    this.queue.cancel(this.waiter, "abort", (this.signal as AbortSignal).reason);
  };
  constructor(
    readonly queue: WaitQueue<Request, Grant>,
    readonly waiter: Waiter<Request, Grant>,
    readonly signal: AbortSignal | undefined,
    readonly timeout: number,
  ) {}
  expire(): void {
    this.timer = undefined;
    this.queue.cancel(this.waiter, "timeout", new TimeoutError(this.timeout, this.queue.timeoutMessage(this.timeout)));
  }
}

/**
 * A thenable that rejects whatever adopts it: `resolve(new Rejection(reason))` rejects the waiter's
 * promise one microtask later. `resolve(Promise.reject(reason))` would do the same, but its rejected
 * promise is unhandled for a moment, which costs a round trip through Node's unhandled-rejection
 * tracking, plus an extra promise and an extra tick, for every waiter that is aborted or cleared.
 */
class Rejection {
  constructor(readonly reason: unknown) {}
  // biome-ignore lint/suspicious/noThenProperty: being a thenable is its whole purpose.
  then(_fulfil: unknown, reject: (reason: unknown) => void): void {
    reject(this.reason);
  }
}

const ONCE = { once: true } as const;

/** Called after a waiter left by abort or timeout; `wasHead` says whether the owner must re-dispatch. */
export type CancelListener<Request, Grant> = (
  waiter: Waiter<Request, Grant>,
  reason: CancelReason,
  wasHead: boolean,
) => void;

// A single shared promise executor: creating a waiter allocates no closure.
let capturedResolve: ((value: never) => void) | undefined;
function capture(resolve: (value: never) => void): void {
  capturedResolve = resolve;
}

/**
 * Creates a promise and returns it together with its resolving function, without a closure per call.
 * (`Promise.withResolvers` is not in Node 20.)
 */
function pendingPromise<T>(): [Promise<T>, (value: T | PromiseLike<T>) => void] {
  const promise = new Promise<T>(capture);
  const resolve = capturedResolve as (value: T | PromiseLike<T>) => void;
  capturedResolve = undefined;
  return [promise, resolve];
}

/**
 * A priority queue of waiters with O(1) removal. See the module comment for the contract.
 *
 * @typeParam Request - what a waiter asks for (a weight, a cost, a value).
 * @typeParam Grant - what a granted waiter's promise resolves to.
 */
export class WaitQueue<Request, Grant> {
  /**
   * The non-empty levels, highest priority first.
   * Invariant: every level in here has at least one waiter, and priorities are strictly descending.
   */
  private readonly levels: Level[] = [];
  /** Level 0 is reused rather than reallocated each time the queue empties and fills again. */
  private readonly defaultLevel = new Level(0);
  /** Invariant: `size` equals the number of waiters linked into `levels`. */
  private count = 0;

  constructor(
    private readonly clock: Clock,
    private readonly onCancel: CancelListener<Request, Grant>,
    /** Names the primitive in timeout messages ("waiting for semaphore \"db\""). */
    private readonly subject: () => string,
  ) {}

  /** How many callers wait. */
  get size(): number {
    return this.count;
  }

  /** The waiter to serve next, or `undefined` if nobody waits. */
  get head(): Waiter<Request, Grant> | undefined {
    const level = this.levels[0];
    return level === undefined ? undefined : (level.next as Waiter<Request, Grant>);
  }

  /**
   * Whether a new request at `priority` would be first in line: nobody waits at the same or a higher
   * priority (equal priorities are FIFO, so an equal one waiting is ahead of it).
   */
  isFirstInLine(priority: number): boolean {
    const level = this.levels[0];
    return level === undefined || level.priority < priority;
  }

  /**
   * Parks a caller. The caller must already have checked that `signal` is not aborted and that
   * `timeout` is not 0; `timeout` is in ms (`Infinity` for none).
   */
  enqueue(request: Request, priority: number, signal: AbortSignal | undefined, timeout: number): Promise<Grant> {
    const [promise, resolve] = pendingPromise<Grant>();
    const waiter = new Waiter<Request, Grant>(request, priority, resolve);
    this.link(waiter);
    if (signal !== undefined || timeout !== Number.POSITIVE_INFINITY) {
      const cancellation = new Cancellation(this, waiter, signal, timeout);
      waiter.cancellation = cancellation;
      signal?.addEventListener("abort", cancellation.onAbort, ONCE);
      if (timeout !== Number.POSITIVE_INFINITY) {
        cancellation.timer = this.clock.setTimeout(() => cancellation.expire(), timeout);
      }
    }
    return promise;
  }

  /** Removes `waiter` and resolves its promise with `grant`. */
  grant(waiter: Waiter<Request, Grant>, grant: Grant): void {
    this.settle(waiter);
    waiter.resolve(grant);
  }

  /** Removes `waiter` and rejects its promise with `reason`. */
  reject(waiter: Waiter<Request, Grant>, reason: unknown): void {
    this.settle(waiter);
    waiter.resolve(new Rejection(reason) as unknown as PromiseLike<Grant>);
  }

  /** Rejects every waiter with `reason`, in queue order. */
  rejectAll(reason: unknown): void {
    for (let waiter = this.head; waiter !== undefined; waiter = this.head) this.reject(waiter, reason);
  }

  /**
   * Visits the waiters in queue order. `visit` may grant or reject the waiter it is given (the walk
   * has already stepped past it), but must not touch others.
   */
  forEach(visit: (waiter: Waiter<Request, Grant>) => void): void {
    for (const level of this.levels.slice()) {
      let link = level.next;
      while (link !== level) {
        const next = link.next;
        visit(link as Waiter<Request, Grant>);
        link = next;
      }
    }
  }

  /**
   * The waiter that arrived last at `priority`, or `undefined` if nobody waits at that priority. Lets an
   * owner find the waiter {@link WaitQueue.enqueue} just created (SharedSemaphore publishes it to other
   * threads and, for `timeout: 0`, withdraws it again in the same step).
   */
  newest(priority: number): Waiter<Request, Grant> | undefined {
    for (const level of this.levels) {
      if (level.priority === priority) return level.prev as Waiter<Request, Grant>;
    }
    return undefined;
  }

  /**
   * The waiter after `waiter` in queue order, or `undefined` if it is the last one or no longer queued.
   * O(1) within a priority level; crossing to the next level costs a search over the distinct levels.
   * (SharedSemaphore walks the first few waiters with it to publish them to other threads in order.)
   */
  after(waiter: Waiter<Request, Grant>): Waiter<Request, Grant> | undefined {
    if (!waiter.queued) return undefined;
    const next = waiter.next;
    if (!(next instanceof Level)) return next as Waiter<Request, Grant>;
    const following = this.levels[this.levels.indexOf(next) + 1];
    return following === undefined ? undefined : (following.next as Waiter<Request, Grant>);
  }

  /** Abort and timeout land here. A waiter that was already granted is left alone: the grant won. */
  cancel(waiter: Waiter<Request, Grant>, reason: CancelReason, error: unknown): void {
    if (!waiter.queued) return;
    const wasHead = this.head === waiter;
    this.reject(waiter, error);
    this.onCancel(waiter, reason, wasHead);
  }

  /** @internal */
  timeoutMessage(timeout: number): string {
    return `timed out after ${timeout} ms waiting for ${this.subject()}`;
  }

  /** Unlinks the waiter and detaches its listener and timer: the one exit path of every waiter. */
  private settle(waiter: Waiter<Request, Grant>): void {
    if (!waiter.queued) throw new Error("sluice internal error: a waiter was settled twice");
    const { prev, next } = waiter;
    prev.next = next;
    next.prev = prev;
    waiter.prev = waiter;
    waiter.next = waiter;
    this.count--;
    // `prev === next` and a Level means the level just lost its last waiter.
    if (prev === next && prev instanceof Level) this.dropLevel(prev);
    const cancellation = waiter.cancellation;
    if (cancellation !== undefined) {
      waiter.cancellation = undefined;
      const signal = cancellation.signal;
      // An aborted signal has dropped this once-listener already, or drops it in the dispatch under way.
      if (signal !== undefined && !signal.aborted) signal.removeEventListener("abort", cancellation.onAbort);
      if (cancellation.timer !== undefined) this.clock.clearTimeout(cancellation.timer);
    }
  }

  private link(waiter: Waiter<Request, Grant>): void {
    const level = this.levelFor(waiter.priority);
    const last = level.prev;
    waiter.prev = last;
    waiter.next = level;
    last.next = waiter;
    level.prev = waiter;
    this.count++;
  }

  /** Finds or inserts the level for `priority`, keeping `levels` sorted high to low. */
  private levelFor(priority: number): Level {
    const levels = this.levels;
    // Fast path: everyone at one priority, by far the common case.
    const first = levels[0];
    if (first !== undefined && first.priority === priority) return first;
    let low = 0;
    let high = levels.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      const found = (levels[middle] as Level).priority;
      if (found === priority) return levels[middle] as Level;
      if (found > priority) low = middle + 1;
      else high = middle;
    }
    const level = priority === 0 ? this.defaultLevel : new Level(priority);
    // `push` rather than `splice` when the level goes last, as it does each time an empty queue gets
    // its first waiter: a channel or a semaphore at its limit flips between empty and one waiter on
    // every hand-off, and splice's generic path was a sixth of a Channel's time.
    if (low === levels.length) levels.push(level);
    else levels.splice(low, 0, level);
    return level;
  }

  private dropLevel(level: Level): void {
    const levels = this.levels;
    if (levels.length === 1) {
      levels.pop();
      return;
    }
    const index = levels[0] === level ? 0 : levels.indexOf(level);
    levels.splice(index, 1);
  }
}
