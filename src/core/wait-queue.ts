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
 * - enqueue: O(1) for a priority already waiting (a push onto that level's ring); a new priority level
 *   costs a binary search and an array insert over the *distinct priorities* waiting (almost always
 *   1-3), never over the waiters.
 * - removal of any waiter (grant, abort, timeout, clear): O(1) amortized. The head leaves by moving the
 *   ring's start; a waiter from the middle leaves a tombstone, and a ring is compacted once its
 *   tombstones (or its emptied front) outnumber its waiters.
 * - memory: a waiter with neither signal nor timeout costs two array slots next to its promise, no
 *   object of its own until the owner asks for it (see Level).
 * - no timer per waiter unless that waiter asked for a timeout; no closure per waiter unless it passed
 *   a signal or a timeout.
 */
import type { Clock, TimerHandle } from "./clock.js";
import { TimeoutError } from "./errors.js";

/** Why a waiter left the queue without being granted. */
export type CancelReason = "abort" | "timeout";

/**
 * The waiters of one priority level, in arrival order, as a ring of two-slot entries in one array:
 * `items[i]` is the waiter — its bare resolving function, or a {@link Waiter} object — and
 * `items[i + 1]` its request.
 *
 * A caller with neither a signal nor a timeout (the common case: a million queued `acquire()` calls)
 * is stored as those two slots and nothing else: 16 bytes next to its promise, where an object per
 * waiter with its links cost 72. It becomes a `Waiter` object only when the owner asks for it (the head,
 * a walk), which for most is the moment it is granted.
 *
 * Invariants:
 * - entries live between `start` and `end` (both even); every other slot is undefined, so the array
 *   holds no reference to a settled waiter's promise or request. The array keeps its length when the
 *   level empties (`start = end = 0`), so a queue that flips between empty and one waiter on every
 *   hand-off (a channel, a saturated semaphore) reuses the same slots instead of reallocating;
 * - `live` counts the queued entries, `dead` the tombstones: entries removed from the middle, whose
 *   slots hold {@link TOMBSTONE} and `undefined` (never the settled waiter, so a tombstone keeps no
 *   promise, request or closure alive), skipped by every walk and dropped by `compact`;
 * - when `live > 0`, the entry at `start` is queued (tombstones are never left at the front);
 * - a `Waiter` object in the ring knows its own `index`, kept true by every compaction.
 */
class Level {
  items: unknown[] = [];
  start = 0;
  end = 0;
  live = 0;
  dead = 0;
  constructor(readonly priority: number) {}
}

/**
 * One parked caller, as its owner sees it.
 *
 * Invariant: `level` is set exactly while the waiter is queued (`queued === true`); it is cleared, its
 * listener removed and its timer cleared in the same synchronous step that settles its promise, so a
 * late abort or timer can never settle it twice.
 */
export class Waiter<Request, Grant> {
  /** @internal The level whose ring holds this waiter; undefined once settled. */
  level: Level | undefined = undefined;
  /** @internal Where its entry is in `level.items`. */
  index = 0;
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
    this.resolve = resolve;
  }
  /** Whether it is still waiting. */
  get queued(): boolean {
    return this.level !== undefined;
  }
}

/**
 * What a waiter removed from the middle of a ring leaves in its slot. A shared marker rather than the
 * settled waiter itself: the waiter would keep its request (a queued run's function and everything it
 * closes over) and its promise alive until the next compaction, up to one per waiter still queued.
 */
const TOMBSTONE: unknown = Object.freeze({});

/** Whether a ring slot holds a waiter that has left (a tombstone). */
function isDead(slot: unknown): boolean {
  return slot === TOMBSTONE;
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

/** A level whose ring has grown past this many slots gets a fresh array when it empties. */
const KEEP_SLOTS = 64;
/** Compaction thresholds (slots at the front, tombstones): small, so the tests reach them too. */
const SHIFT_AFTER = 16;
const COMPACT_AFTER = 4;

/**
 * A priority queue of waiters with O(1) removal. See the module comment for the contract.
 *
 * @typeParam Request - what a waiter asks for (a weight, a cost, a value).
 * @typeParam Grant - what a granted waiter's promise resolves to.
 */
export class WaitQueue<Request, Grant> {
  /**
   * The non-empty levels, highest priority first.
   * Invariant: every level in here has at least one queued waiter, and priorities are strictly
   * descending.
   */
  private readonly levels: Level[] = [];
  /** Level 0 is reused rather than reallocated each time the queue empties and fills again. */
  private readonly defaultLevel = new Level(0);
  /** Invariant: `size` equals the sum of `live` over `levels`. */
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
    return level === undefined ? undefined : this.materialize(level, level.start);
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
    const level = this.levelFor(priority);
    this.count++;
    level.live++;
    if (signal === undefined && timeout === Number.POSITIVE_INFINITY) {
      // Nothing can take this waiter out but its owner, who reaches it from the head or a walk: two
      // slots in the ring and no object (see Level).
      const end = level.end;
      level.items[end] = resolve;
      level.items[end + 1] = request;
      level.end = end + 2;
      return promise;
    }
    const waiter = new Waiter<Request, Grant>(request, priority, resolve);
    waiter.level = level;
    const end = level.end;
    waiter.index = end;
    level.items[end] = waiter;
    level.items[end + 1] = request;
    level.end = end + 2;
    const cancellation = new Cancellation(this, waiter, signal, timeout);
    waiter.cancellation = cancellation;
    signal?.addEventListener("abort", cancellation.onAbort, ONCE);
    if (timeout !== Number.POSITIVE_INFINITY) {
      cancellation.timer = this.clock.setTimeout(() => cancellation.expire(), timeout);
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
   * Visits the waiters in queue order. `visit` may grant or reject the waiter it is given, but must
   * not touch others. (The waiters are collected before the first visit, since a removal may compact
   * a ring.)
   */
  forEach(visit: (waiter: Waiter<Request, Grant>) => void): void {
    const all: Waiter<Request, Grant>[] = [];
    for (const level of this.levels) {
      const items = level.items;
      for (let index = level.start; index < level.end; index += 2) {
        if (!isDead(items[index])) all.push(this.materialize(level, index));
      }
    }
    for (const waiter of all) if (waiter.queued) visit(waiter);
  }

  /** Visits the requests in queue order without turning waiters into objects (for statistics). */
  forEachRequest(visit: (request: Request) => void): void {
    for (const level of this.levels) {
      const items = level.items;
      for (let index = level.start; index < level.end; index += 2) {
        if (!isDead(items[index])) visit(items[index + 1] as Request);
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
      if (level.priority !== priority) continue;
      const items = level.items;
      for (let index = level.end - 2; index >= level.start; index -= 2) {
        if (!isDead(items[index])) return this.materialize(level, index);
      }
    }
    return undefined;
  }

  /**
   * The waiter after `waiter` in queue order, or `undefined` if it is the last one or no longer queued.
   * O(1) within a priority level but for tombstones; crossing to the next level costs a search over the
   * distinct levels. (SharedSemaphore walks the first few waiters with it to publish them in order.)
   */
  after(waiter: Waiter<Request, Grant>): Waiter<Request, Grant> | undefined {
    const level = waiter.level;
    if (level === undefined) return undefined;
    const items = level.items;
    for (let index = waiter.index + 2; index < level.end; index += 2) {
      if (!isDead(items[index])) return this.materialize(level, index);
    }
    const following = this.levels[this.levels.indexOf(level) + 1];
    return following === undefined ? undefined : this.materialize(following, following.start);
  }

  /** Abort and timeout land here. A waiter that was already granted is left alone: the grant won. */
  cancel(waiter: Waiter<Request, Grant>, reason: CancelReason, error: unknown): void {
    const level = waiter.level;
    if (level === undefined) return;
    const wasHead = level === this.levels[0] && waiter.index === level.start;
    this.reject(waiter, error);
    this.onCancel(waiter, reason, wasHead);
  }

  /**
   * Withdraws `waiter` as aborted if its signal has aborted already, and says whether it did. An owner
   * calls it in its dispatch loop before granting the head: a signal shared by several waiters calls
   * their listeners one by one, so the first one's re-dispatch (or a release made by an earlier
   * listener of the caller's own) would otherwise grant a waiter whose caller has already aborted —
   * the abort came first, so it wins. The owner hears of it through its cancel listener with
   * `wasHead` false, as it is dispatching already; the waiter's own listener then finds it settled.
   */
  withdrawIfAborted(waiter: Waiter<Request, Grant>): boolean {
    const signal = waiter.cancellation?.signal;
    if (signal === undefined || !signal.aborted) return false;
    this.reject(waiter, signal.reason);
    this.onCancel(waiter, "abort", false);
    return true;
  }

  /**
   * The head to grant to: the head, once any waiters at the front whose signal has already aborted are
   * withdrawn (see {@link WaitQueue.withdrawIfAborted}). What an owner's dispatch loop walks.
   */
  headToGrant(): Waiter<Request, Grant> | undefined {
    let head = this.head;
    while (head !== undefined && head.cancellation !== undefined && this.withdrawIfAborted(head)) head = this.head;
    return head;
  }

  /** @internal */
  timeoutMessage(timeout: number): string {
    return `timed out after ${timeout} ms waiting for ${this.subject()}`;
  }

  /** The waiter object of the entry at `index` (creating it the first time it is asked for). */
  private materialize(level: Level, index: number): Waiter<Request, Grant> {
    const items = level.items;
    const slot = items[index];
    if (slot instanceof Waiter) return slot as Waiter<Request, Grant>;
    const waiter = new Waiter<Request, Grant>(
      items[index + 1] as Request,
      level.priority,
      slot as (value: Grant | PromiseLike<Grant>) => void,
    );
    waiter.level = level;
    waiter.index = index;
    items[index] = waiter;
    return waiter;
  }

  /** Takes the waiter out of its ring and detaches its listener and timer: the one exit path of every waiter. */
  private settle(waiter: Waiter<Request, Grant>): void {
    const level = waiter.level;
    if (level === undefined) throw new Error("sluice internal error: a waiter was settled twice");
    waiter.level = undefined;
    this.count--;
    level.live--;
    const items = level.items;
    if (level.live === 0) {
      // The level empties: drop it and its ring (tombstones included).
      this.dropLevel(level);
      if (items.length > KEEP_SLOTS) level.items = [];
      else for (let index = level.start; index < level.end; index++) items[index] = undefined;
      level.start = 0;
      level.end = 0;
      level.dead = 0;
    } else if (waiter.index === level.start) {
      // The head leaves: advance past it and past any tombstones behind it.
      let start = level.start;
      items[start] = undefined;
      items[start + 1] = undefined;
      start += 2;
      while (start < level.end && isDead(items[start])) {
        items[start] = undefined;
        items[start + 1] = undefined;
        start += 2;
        level.dead--;
      }
      level.start = start;
      if (start >= SHIFT_AFTER && start * 2 >= level.end) this.compact(level);
    } else {
      // From the middle: leave a tombstone, and compact once they outnumber the waiters.
      items[waiter.index] = TOMBSTONE;
      items[waiter.index + 1] = undefined;
      level.dead++;
      if (level.dead >= COMPACT_AFTER && level.dead > level.live) this.compact(level);
    }
    const cancellation = waiter.cancellation;
    if (cancellation !== undefined) {
      waiter.cancellation = undefined;
      const signal = cancellation.signal;
      // An aborted signal has dropped this once-listener already, or drops it in the dispatch under way.
      if (signal !== undefined && !signal.aborted) signal.removeEventListener("abort", cancellation.onAbort);
      if (cancellation.timer !== undefined) this.clock.clearTimeout(cancellation.timer);
    }
  }

  /**
   * Moves the queued entries of `level` to the front of its ring, in order, dropping tombstones and the
   * emptied front, and tells each waiter object its new index. O(entries), run only once the front or
   * the tombstones are at least as many as the entries kept, so each removal pays O(1) for it.
   */
  private compact(level: Level): void {
    const items = level.items;
    let to = 0;
    for (let from = level.start; from < level.end; from += 2) {
      const slot = items[from];
      if (isDead(slot)) continue;
      if (slot instanceof Waiter) slot.index = to;
      items[to] = slot;
      items[to + 1] = items[from + 1];
      to += 2;
    }
    items.length = to;
    level.start = 0;
    level.end = to;
    level.dead = 0;
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
