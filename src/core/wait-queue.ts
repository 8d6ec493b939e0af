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
 *   1-3), never over the waiters. A waiter with a timeout also joins the deadline heap: O(1) when
 *   deadlines arrive in order (one timeout for all), O(log n) otherwise.
 * - removal of any waiter (grant, abort, timeout, clear): O(1) amortized from its ring, plus O(log n)
 *   from the deadline heap if it has a timeout. The head leaves by moving the ring's start; a waiter
 *   from the middle leaves a tombstone, and a ring is compacted once its tombstones (or its emptied
 *   front) outnumber its waiters.
 * - memory: a waiter with neither signal nor timeout costs two array slots next to its promise, no
 *   object of its own until the owner asks for it (see Level). One with a timeout and no signal costs
 *   one {@link Waiter} (64 bytes) and three slots of the deadline heap (24 bytes); a signal adds a
 *   field, the listener closure and a two-field object.
 * - no timer per waiter: the waiters with a timeout share the queue's one timer, armed for the
 *   earliest deadline; no closure per waiter unless it passed a signal.
 */
import type { Clock, TimerHandle } from "./clock.js";
import { DeadlineHeap, type HeapEntry } from "./deadline-heap.js";
import { TimeoutError } from "./errors.js";

/** Why a waiter left the queue without being granted. */
export type CancelReason = "abort" | "timeout";

/**
 * The waiters of one priority level, in arrival order, as a ring of two-slot entries in one array. An
 * entry is `[resolve, request]` — the waiter's bare resolving function and its request — until the
 * waiter becomes a {@link Waiter} object, and `[waiter, resolve]` from then on: the object carries the
 * request, so the ring keeps the resolving function instead and the object needs no field for it
 * (8 bytes less per object).
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
 * - a `Waiter` object in the ring knows its own `index` and has the level's priority, kept true by
 *   every compaction; the slot after it holds its resolving function.
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
 * Invariant: `index >= 0` exactly while the waiter is queued; it becomes -1, the waiter leaves the
 * deadline heap and its listener is removed in the same synchronous step that settles its promise, so a
 * late abort or timer can never settle it twice.
 *
 * Its fields are what a waiter with a timeout needs and nothing more (five fields, 64 bytes on Node's
 * builds, which have no pointer compression): a waiter with a timeout is an object from the start, and
 * a hundred thousand of them waiting on one limiter is an ordinary day. Its resolving function stays in
 * the ring (see Level), its level is found from its priority, its deadline lives in the heap, and only
 * a waiter with a signal has a field for it. (`_Grant`, what its promise resolves to, only names the
 * queue it belongs to.)
 */
export class Waiter<Request, _Grant> implements HeapEntry {
  /** @internal Where its entry is in its level's ring; -1 once it has left the queue. */
  index = 0;
  /** @internal Its slot in the queue's deadline heap; -1 without a timeout or once it has left. */
  heapIndex = -1;
  /**
   * Its signal and the queue's listener on it, present only when the waiter passed a signal: only a
   * {@link SignalWaiter} has the field, so the others (a waiter with a timeout and no signal, a waiter
   * made an object for its owner) spend no 8 bytes on it.
   */
  declare cancellation: Cancellation | undefined;
  constructor(
    /** What the waiter asked for: a weight, a cost, a value to send. */
    readonly request: Request,
    readonly priority: number,
    /** How long it may wait, in ms (`Infinity` for no timeout): what its TimeoutError reports. */
    readonly timeout: number,
  ) {}
  /** Whether it is still waiting. */
  get queued(): boolean {
    return this.index >= 0;
  }
}

/** A waiter that passed a signal: the one kind with a field for its {@link Cancellation}. */
class SignalWaiter<Request, Grant> extends Waiter<Request, Grant> {
  override cancellation: Cancellation | undefined = undefined;
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
 * The signal of a waiter that passed one, and the listener the queue added to it.
 *
 * The listener is a function added with `{ once: true }`. A `handleEvent` object would not save the
 * closure: Node 20 wraps such an object in an async closure of its own and calls it through an async
 * function on every abort. And a once-listener is dropped by the abort's own dispatch, so the abort
 * path needs no `removeEventListener`, the costliest step of an abort after Node's dispatch itself.
 */
class Cancellation {
  constructor(
    readonly signal: AbortSignal,
    readonly onAbort: () => void,
  ) {}
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

/**
 * Called after a waiter left by abort or timeout; `wasHead` says whether the owner must re-dispatch;
 * `error` is what its promise rejected with.
 */
export type CancelListener<Request, Grant> = (
  waiter: Waiter<Request, Grant>,
  reason: CancelReason,
  wasHead: boolean,
  error: unknown,
) => void;

// A single shared promise executor: creating a waiter allocates no closure.
let capturedResolve: ((value: never) => void) | undefined;
function capture(resolve: (value: never) => void): void {
  capturedResolve = resolve;
}

/**
 * Creates a promise and returns it together with its resolving function, without a closure per call.
 * (`Promise.withResolvers` is not in Node 20.)
 *
 * Only the resolving function is kept, not the rejecting one: a rejection is delivered as
 * `resolve(new Rejection(error))`, which rejects the caller's promise the same way. Keeping one
 * function instead of two saves 56 bytes per waiter (Node's builds have no pointer compression), and
 * waiter memory is what decides whether a million queued tasks fit.
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
 * @internal The name of the method under which a primitive lists the parts that check their own
 * invariants — its wait queues (or the admissions that own them) and itself — so the model tests can
 * check them after every step without reaching into private fields.
 *
 * A string, not a symbol: a class member keyed by a symbol held in a variable is a computed key, which
 * bundlers (esbuild) must assume has side effects, so every class that had one stayed in every bundle
 * (`import { Semaphore }` weighed 11.6 kB gzipped, Pool and Channel included). A literal key does not.
 */
export const selfChecks = "~selfChecks";

/** @internal What a primitive lists under `"~selfChecks"`: parts that can check themselves. */
export interface SelfChecking {
  /** Throws an Error naming the first broken invariant, if any. */
  assertInvariants(): void;
}

/** @internal A primitive that lists its self-checking parts under `"~selfChecks"`. */
export interface WithSelfChecks {
  "~selfChecks"(): readonly SelfChecking[];
}

/**
 * A priority queue of waiters with O(1) removal. See the module comment for the contract.
 *
 * @typeParam Request - what a waiter asks for (a weight, a cost, a value).
 * @typeParam Grant - what a granted waiter's promise resolves to.
 */
export class WaitQueue<Request, Grant> implements SelfChecking {
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
  /**
   * The queued waiters that have a timeout, earliest deadline first.
   * Invariant: it holds exactly the queued waiters whose timeout is finite, and no settled one (it would
   * keep the waiter's request, a queued run's function and all it closes over, alive until its deadline).
   */
  private readonly deadlines = new DeadlineHeap<Waiter<Request, Grant>>();
  /**
   * The queue's one timer.
   * Invariant: armed exactly while `deadlines` is not empty, so an empty queue leaves no timer behind
   * (a pending timer keeps a process alive), and armed for `timerAt`, no later than the earliest
   * deadline; `timerAt` is `Infinity` while it is not armed.
   *
   * It may be armed for earlier than the earliest deadline: when the earliest waiter is granted, the
   * timer is left alone instead of cleared and set again on every grant; it fires early, finds nothing
   * due and re-arms. A saturated limiter whose waiters all have one timeout thus sets one timer per
   * timeout period, not one per waiter.
   */
  private timer: TimerHandle | undefined = undefined;
  private timerAt = Number.POSITIVE_INFINITY;
  /** Created the first time the timer is armed: a queue that never sees a timeout never makes it. */
  private onTimer: (() => void) | undefined = undefined;
  /** True while the timer's callback times waiters out: arming waits until it is done. */
  private expiring = false;

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
    const end = level.end;
    level.end = end + 2;
    if (signal === undefined && timeout === Number.POSITIVE_INFINITY) {
      // Nothing can take this waiter out but its owner, who reaches it from the head or a walk: two
      // slots in the ring and no object (see Level).
      level.items[end] = resolve;
      level.items[end + 1] = request;
      return promise;
    }
    const waiter =
      signal === undefined
        ? new Waiter<Request, Grant>(request, priority, timeout)
        : this.listen(new SignalWaiter<Request, Grant>(request, priority, timeout), signal);
    waiter.index = end;
    level.items[end] = waiter;
    level.items[end + 1] = resolve;
    if (timeout !== Number.POSITIVE_INFINITY) this.addDeadline(waiter, timeout);
    return promise;
  }

  /** Removes `waiter` and resolves its promise with `grant`. */
  grant(waiter: Waiter<Request, Grant>, grant: Grant): void {
    this.settle(waiter)(grant);
  }

  /** Removes `waiter` and rejects its promise with `reason`. */
  reject(waiter: Waiter<Request, Grant>, reason: unknown): void {
    this.settle(waiter)(new Rejection(reason) as unknown as PromiseLike<Grant>);
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
        const slot = items[index];
        if (slot instanceof Waiter) visit(slot.request as Request);
        else if (!isDead(slot)) visit(items[index + 1] as Request);
      }
    }
  }

  /**
   * The waiter that arrived last at `priority`, or `undefined` if nobody waits at that priority. Lets an
   * owner find the waiter {@link WaitQueue.enqueue} just created (SharedSemaphore publishes it to other
   * threads and, for `timeout: 0`, withdraws it again in the same step).
   */
  newest(priority: number): Waiter<Request, Grant> | undefined {
    const level = this.levels[this.levelPosition(priority)];
    if (level === undefined) return undefined;
    const items = level.items;
    for (let index = level.end - 2; index >= level.start; index -= 2) {
      if (!isDead(items[index])) return this.materialize(level, index);
    }
    return undefined;
  }

  /**
   * The waiter after `waiter` in queue order, or `undefined` if it is the last one or no longer queued.
   * O(1) within a priority level but for tombstones; crossing to the next level costs a search over the
   * distinct levels. (SharedSemaphore walks the first few waiters with it to publish them in order.)
   */
  after(waiter: Waiter<Request, Grant>): Waiter<Request, Grant> | undefined {
    if (!waiter.queued) return undefined;
    const position = this.levelPosition(waiter.priority);
    const level = this.levels[position] as Level;
    const items = level.items;
    for (let index = waiter.index + 2; index < level.end; index += 2) {
      if (!isDead(items[index])) return this.materialize(level, index);
    }
    const following = this.levels[position + 1];
    return following === undefined ? undefined : this.materialize(following, following.start);
  }

  /** Abort and timeout land here. A waiter that was already granted is left alone: the grant won. */
  cancel(waiter: Waiter<Request, Grant>, reason: CancelReason, error: unknown): void {
    if (!waiter.queued) return;
    const first = this.levels[0] as Level;
    const wasHead = first.priority === waiter.priority && waiter.index === first.start;
    this.reject(waiter, error);
    this.onCancel(waiter, reason, wasHead, error);
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
    this.onCancel(waiter, "abort", false, signal.reason);
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

  /**
   * @internal For tests: checks every invariant written next to the queue's state (the levels and their
   * rings, the deadline heap, the timer) and throws an Error naming the first one broken. O(waiters).
   */
  assertInvariants(): void {
    const timed = assertLevels(this.levels, this.defaultLevel, this.count);
    this.deadlines.assertInvariants((waiter, slot) => {
      if (!waiter.queued) broken("no settled waiter in the deadline heap", `slot ${slot} holds one`);
    });
    if (this.deadlines.size !== timed) {
      broken(
        "the deadline heap holds exactly the queued waiters with a timeout",
        `${this.deadlines.size} in the heap, ${timed} queued`,
      );
    }
    if (this.expiring) broken("no expiry is under way between calls", "expiring is set");
    const armed = this.timer !== undefined;
    if (armed !== timed > 0) {
      broken("the timer is armed exactly while a waiter with a timeout waits", `armed: ${armed}, ${timed} waiting`);
    }
    if (!armed && this.timerAt !== Number.POSITIVE_INFINITY) {
      broken("a timer that is not armed has no time", `timerAt ${this.timerAt}`);
    }
    if (armed && !(this.timerAt <= this.deadlines.earliest)) {
      broken(
        "the timer is armed no later than the earliest deadline",
        `armed for ${this.timerAt}, earliest deadline ${this.deadlines.earliest}`,
      );
    }
  }

  /** Adds the abort listener of a waiter that passed a signal, and returns the waiter. */
  private listen(waiter: SignalWaiter<Request, Grant>, signal: AbortSignal): SignalWaiter<Request, Grant> {
    const cancellation = new Cancellation(signal, () => this.cancel(waiter, "abort", signal.reason));
    waiter.cancellation = cancellation;
    signal.addEventListener("abort", cancellation.onAbort, ONCE);
    return waiter;
  }

  /** Puts a waiter with a timeout into the deadline heap, and moves the timer if it is the first due. */
  private addDeadline(waiter: Waiter<Request, Grant>, timeout: number): void {
    const deadline = this.clock.now() + timeout;
    this.deadlines.push(waiter, deadline);
    // With one timeout for every waiter, a newcomer is never due before the armed timer: no timer call.
    // The delay is `timeout` itself, so a clock that adds it to its time (FakeClock) fires at `deadline`.
    if (deadline < this.timerAt && !this.expiring) this.arm(deadline, timeout);
  }

  /** Takes a waiter that leaves the queue out of the deadline heap; the last one out takes the timer. */
  private removeDeadline(waiter: Waiter<Request, Grant>): void {
    this.deadlines.remove(waiter);
    if (this.deadlines.size === 0 && !this.expiring) this.disarm();
  }

  private arm(at: number, delay: number): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.onTimer ??= () => this.expire();
    this.timer = this.clock.setTimeout(this.onTimer, delay);
    this.timerAt = at;
  }

  private disarm(): void {
    if (this.timer === undefined) return;
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
  }

  /**
   * The timer fired: every waiter whose deadline has come times out, earliest first (equal deadlines in
   * arrival order), each through {@link WaitQueue.cancel} as its own timer used to. The owner's listener
   * may grant or enqueue meanwhile; a waiter granted by it before its turn has left the heap, so it is
   * never also timed out.
   */
  private expire(): void {
    // The timer was armed for `timerAt`, so that moment has come whatever the clock says: a system
    // timer can fire a fraction of a millisecond before `performance.now()` gets there.
    const now = Math.max(this.clock.now(), this.timerAt);
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
    this.expiring = true;
    const deadlines = this.deadlines;
    try {
      for (let waiter = deadlines.first; waiter !== undefined && deadlines.earliest <= now; waiter = deadlines.first) {
        this.cancel(waiter, "timeout", new TimeoutError(waiter.timeout, this.timeoutMessage(waiter.timeout)));
      }
    } finally {
      // Also when an owner's listener threw: whoever is still due gets the timer, which fires at once.
      this.expiring = false;
      const earliest = deadlines.earliest;
      if (earliest !== Number.POSITIVE_INFINITY) this.arm(earliest, delayUntil(earliest, this.clock.now()));
    }
  }

  /**
   * The waiter object of the entry at `index`, creating it the first time it is asked for: the ring's
   * `[resolve, request]` becomes `[waiter, resolve]` (see Level).
   */
  private materialize(level: Level, index: number): Waiter<Request, Grant> {
    const items = level.items;
    const slot = items[index];
    if (slot instanceof Waiter) return slot as Waiter<Request, Grant>;
    const waiter = new Waiter<Request, Grant>(items[index + 1] as Request, level.priority, Number.POSITIVE_INFINITY);
    waiter.index = index;
    items[index] = waiter;
    items[index + 1] = slot;
    return waiter;
  }

  /**
   * Takes the waiter out of its ring and the deadline heap and detaches its listener, and returns its
   * resolving function: the one exit path of every waiter.
   */
  private settle(waiter: Waiter<Request, Grant>): (value: Grant | PromiseLike<Grant>) => void {
    const index = waiter.index;
    if (index < 0) throw new Error("sluice internal error: a waiter was settled twice");
    waiter.index = -1;
    const position = this.levelPosition(waiter.priority);
    const level = this.levels[position] as Level;
    const items = level.items;
    const resolve = items[index + 1] as (value: Grant | PromiseLike<Grant>) => void;
    this.count--;
    level.live--;
    if (level.live === 0) {
      // The level empties: drop it and its ring (tombstones included).
      this.dropLevel(position);
      if (items.length > KEEP_SLOTS) level.items = [];
      else for (let slot = level.start; slot < level.end; slot++) items[slot] = undefined;
      level.start = 0;
      level.end = 0;
      level.dead = 0;
    } else if (index === level.start) {
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
      items[index] = TOMBSTONE;
      items[index + 1] = undefined;
      level.dead++;
      if (level.dead >= COMPACT_AFTER && level.dead > level.live) this.compact(level);
    }
    if (waiter.heapIndex >= 0) this.removeDeadline(waiter);
    const cancellation = waiter.cancellation;
    if (cancellation !== undefined) {
      waiter.cancellation = undefined;
      const signal = cancellation.signal;
      // An aborted signal has dropped this once-listener already, or drops it in the dispatch under way.
      if (!signal.aborted) signal.removeEventListener("abort", cancellation.onAbort);
    }
    return resolve;
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
    const position = this.insertionPoint(priority);
    const found = levels[position];
    if (found !== undefined && found.priority === priority) return found;
    const level = priority === 0 ? this.defaultLevel : new Level(priority);
    // `push` rather than `splice` when the level goes last, as it does each time an empty queue gets
    // its first waiter: a channel or a semaphore at its limit flips between empty and one waiter on
    // every hand-off, and splice's generic path was a sixth of a Channel's time.
    if (position === levels.length) levels.push(level);
    else levels.splice(position, 0, level);
    return level;
  }

  /** Where the level of `priority` is in `levels`; past the end if nobody waits at that priority. */
  private levelPosition(priority: number): number {
    const levels = this.levels;
    const first = levels[0];
    if (first !== undefined && first.priority === priority) return 0;
    const position = this.insertionPoint(priority);
    return levels[position]?.priority === priority ? position : levels.length;
  }

  /** The first position in `levels` (sorted high to low) whose priority is not above `priority`. */
  private insertionPoint(priority: number): number {
    const levels = this.levels;
    let low = 0;
    let high = levels.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if ((levels[middle] as Level).priority > priority) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  private dropLevel(position: number): void {
    const levels = this.levels;
    if (position === levels.length - 1) levels.pop();
    else levels.splice(position, 1);
  }
}

/**
 * The delay from `now` until `at`, made small enough that `now + delay` does not round past `at`: a
 * clock that adds the delay to its time (FakeClock) would otherwise fire a hair after the deadline and
 * miss a test that advances exactly to it. Firing a hair early is fine: {@link WaitQueue} treats the
 * moment its timer was armed for as reached.
 */
function delayUntil(at: number, now: number): number {
  let delay = at - now;
  while (delay > 0 && now + delay > at) delay = Math.max(0, delay - delay * Number.EPSILON);
  return delay;
}

/** Throws the Error that names a broken invariant of the queue (see {@link WaitQueue.assertInvariants}). */
function broken(invariant: string, detail: string): never {
  throw new Error(`WaitQueue invariant broken: ${invariant} (${detail})`);
}

/** Checks the levels and their rings; returns how many queued waiters have a timeout. */
function assertLevels(levels: readonly Level[], defaultLevel: Level, size: number): number {
  let live = 0;
  let timed = 0;
  levels.forEach((level, position) => {
    const previous = levels[position - 1];
    if (previous !== undefined && !(previous.priority > level.priority)) {
      broken("levels are sorted by strictly descending priority", `${previous.priority} before ${level.priority}`);
    }
    if (level.live <= 0) broken("every level in the queue has a queued waiter", `level ${level.priority}`);
    timed += assertRing(level);
    live += level.live;
  });
  if (live !== size) broken("size equals the sum of the levels' live counts", `size ${size}, live ${live}`);
  const unused = !levels.includes(defaultLevel);
  const empty =
    defaultLevel.live === 0 && defaultLevel.dead === 0 && defaultLevel.start === 0 && defaultLevel.end === 0;
  if (unused && !(empty && defaultLevel.items.every((slot) => slot === undefined))) {
    broken("the default level holds nothing while nobody waits at priority 0", `live ${defaultLevel.live}`);
  }
  return timed;
}

/** Checks one level's ring (see Level); returns how many of its waiters have a timeout. */
function assertRing(level: Level): number {
  const { items, start, end } = level;
  const name = `level ${level.priority}`;
  if (start % 2 !== 0 || end % 2 !== 0 || start < 0 || start > end || end > items.length) {
    broken("entries lie between start and end, both even", `${name}: ${start}..${end} of ${items.length}`);
  }
  for (let slot = 0; slot < items.length; slot++) {
    if ((slot < start || slot >= end) && items[slot] !== undefined) {
      broken("every slot outside the entries is undefined", `${name}: slot ${slot}`);
    }
  }
  let live = 0;
  let dead = 0;
  let timed = 0;
  for (let index = start; index < end; index += 2) {
    const slot = items[index];
    if (isDead(slot)) {
      dead++;
      if (items[index + 1] !== undefined) broken("a tombstone keeps nothing", `${name}: slot ${index + 1}`);
    } else {
      live++;
      if (slot instanceof Waiter) timed += assertWaiter(slot, level, index);
      else if (typeof slot !== "function") broken("an entry starts with a waiter or its resolving function", name);
    }
  }
  if (live !== level.live || dead !== level.dead) {
    broken(
      "live and dead count the ring's entries and tombstones",
      `${name}: live ${level.live}, dead ${level.dead}; the ring has ${live} and ${dead}`,
    );
  }
  if (live > 0 && isDead(items[start])) broken("no tombstone at the front of a ring", name);
  return timed;
}

/** Checks a waiter object found at `index` of `level`'s ring; returns 1 if it has a timeout, else 0. */
function assertWaiter(waiter: Waiter<unknown, unknown>, level: Level, index: number): number {
  const name = `level ${level.priority}, slot ${index}`;
  if (waiter.index !== index) broken("a waiter object knows its index", `${name}: it says ${waiter.index}`);
  if (waiter.priority !== level.priority) broken("a waiter has its level's priority", `${name}: ${waiter.priority}`);
  if (typeof level.items[index + 1] !== "function") broken("a waiter object's resolving function follows it", name);
  const hasTimeout = waiter.timeout !== Number.POSITIVE_INFINITY;
  if (hasTimeout !== waiter.heapIndex >= 0) {
    broken("a waiter is in the deadline heap exactly when it has a timeout", `${name}: heapIndex ${waiter.heapIndex}`);
  }
  return hasTimeout ? 1 : 0;
}
