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
 *   1-3), never over the waiters. A waiter with a timeout also gets a deadline: O(1) in its level's
 *   deadline FIFO when it is due no earlier than those before it with the same timeout (one timeout
 *   for all, the common case), O(log n) in the deadline heap otherwise.
 * - removal of any waiter (grant, abort, timeout, clear): O(1) amortized from its ring (and its
 *   deadline FIFO, which shares the ring's slots), plus O(log n) from the deadline heap if it is there.
 *   The head leaves by moving the ring's start; a waiter from the middle leaves a tombstone, and a ring
 *   is compacted once its tombstones (or its emptied front) outnumber its waiters.
 * - memory: a waiter with neither signal nor timeout costs two array slots next to its promise, no
 *   object of its own until the owner asks for it (see Level). One with a timeout that joins its level's
 *   deadline FIFO costs two unboxed numbers more (its deadline and arrival: 16 bytes), still no object;
 *   one that does not (a shorter timeout behind a longer one) costs one {@link Waiter} (64 bytes) and
 *   three slots of the deadline heap (24 bytes); a signal adds a field, the listener closure and a
 *   two-field object.
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
export class Level {
  items: unknown[] = [];
  start = 0;
  end = 0;
  live = 0;
  dead = 0;
  /**
   * The level's deadline FIFO: the deadline of the entry at ring index `i` is `deadlines[i / 2]`, and
   * its arrival number (which orders equal deadlines across levels and the heap) `arrivals[i / 2]`;
   * `Infinity` for an entry not in the FIFO (no timeout, in the heap, a tombstone, a slot outside the
   * entries). Two arrays of unboxed numbers parallel to the ring, rather than an object per waiter or a
   * heap slot: the ring already orders the level's waiters by arrival, and when they all wait with one
   * timeout (the common case) their deadlines follow that order, so the ring is their deadline queue.
   * `undefined` until the level's first waiter with a timeout, so a level that never sees one pays
   * nothing.
   *
   * Invariants: both are `undefined` or both hold at least `end / 2` numbers; a finite deadline marks
   * exactly the queued entries in the FIFO, `timed` of them; their deadlines do not decrease and their
   * arrivals increase in ring order, each is at most `latest`, and each waited with `timeout`; no FIFO
   * entry lies before ring index `due`.
   */
  deadlines: number[] | undefined = undefined;
  arrivals: number[] | undefined = undefined;
  timed = 0;
  /** The timeout of every waiter in the FIFO (a newcomer with another timeout goes to the heap). */
  timeout = Number.POSITIVE_INFINITY;
  /** The latest deadline that joined the FIFO since it was last empty. */
  latest = Number.NEGATIVE_INFINITY;
  /** Where the search for the FIFO's first entry starts: it only moves forward, past each slot once. */
  due = 0;
  constructor(readonly priority: number) {}
}

/**
 * One parked caller, as its owner sees it.
 *
 * Invariant: `index >= 0` exactly while the waiter is queued; it becomes -1, the waiter leaves the
 * deadline heap and its listener is removed in the same synchronous step that settles its promise, so a
 * late abort or timer can never settle it twice.
 *
 * Its fields are what a waiter in the deadline heap needs and nothing more (five fields, 64 bytes on
 * Node's builds, which have no pointer compression). Its resolving function stays in the ring (see
 * Level), its level is found from its priority, its deadline lives in the heap or its level's deadline
 * FIFO, and only a waiter with a signal has a field for it. (`_Grant`, what its promise resolves to,
 * only names the queue it belongs to.)
 */
export class Waiter<Request, _Grant> implements HeapEntry {
  /** @internal Where its entry is in its level's ring; -1 once it has left the queue. */
  index = 0;
  /**
   * @internal Its slot in the queue's deadline heap; -1 without a timeout, in its level's deadline FIFO
   * or once it has left.
   */
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
export function isDead(slot: unknown): boolean {
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

/** @internal What a wait queue shows its invariant checks (see {@link WaitQueue.assertInvariants}). */
export interface QueueState {
  levels: readonly Level[];
  defaultLevel: Level;
  size: number;
  heap: DeadlineHeap<Waiter<unknown, unknown>>;
  timedInLevels: number;
  armed: boolean;
  timerAt: number;
  expiring: boolean;
  /** Called once the levels are checked: it trusts their deadline FIFOs. */
  earliest: () => number;
}

/** @internal Where `sluice/testing` installs the wait queue's invariant checks (wait-queue-checks.ts). */
export const queueChecks: { check: ((state: QueueState) => void) | undefined } = { check: undefined };

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
   * The queued waiters with a timeout that are not in their level's deadline FIFO (see Level), earliest
   * deadline first: those due before a waiter ahead of them in their level, or with another timeout.
   * Invariant: it holds exactly the queued waiters whose timeout is finite and who are in no FIFO, and
   * no settled one (it would keep the waiter's request, a queued run's function and all it closes over,
   * alive until its deadline).
   */
  private readonly deadlines = new DeadlineHeap<Waiter<Request, Grant>>();
  /** Invariant: the number of waiters in the levels' deadline FIFOs (the sum of their `timed`). */
  private timedInLevels = 0;
  /** Numbers the waiters with a timeout as they arrive: equal deadlines expire in arrival order. */
  private arrived = 0;
  /**
   * The queue's one timer.
   * Invariant: armed exactly while a waiter with a timeout waits, so an empty queue leaves no timer behind
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
  /** Where `earliestDeadline` found the waiter due first: a level and its ring index, or the heap. */
  private dueLevel: Level | undefined = undefined;
  private dueIndex = 0;

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
    if (signal === undefined) {
      // Nothing can take this waiter out but its owner, who reaches it from the head or a walk, and its
      // deadline: two slots in the ring and no object (see Level), unless its deadline must go to the heap.
      level.items[end] = resolve;
      level.items[end + 1] = request;
      if (timeout === Number.POSITIVE_INFINITY) {
        if (level.deadlines !== undefined) this.outOfFifo(level, end, 0);
      } else {
        this.addDeadline(level, end, undefined, timeout);
      }
      return promise;
    }
    const waiter = this.listen(new SignalWaiter<Request, Grant>(request, priority, timeout), signal);
    waiter.index = end;
    level.items[end] = waiter;
    level.items[end + 1] = resolve;
    if (timeout !== Number.POSITIVE_INFINITY) this.addDeadline(level, end, waiter, timeout);
    else if (level.deadlines !== undefined) this.outOfFifo(level, end, 0);
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
   * rings and deadline FIFOs, the deadline heap, the timer) and throws an Error naming the first one
   * broken. O(waiters). The checks themselves are test code, kept out of users' bundles: importing
   * `sluice/testing` installs them (wait-queue-checks.ts); without them this throws.
   */
  assertInvariants(): void {
    const check = queueChecks.check;
    if (check === undefined) throw new Error("the WaitQueue checks are not installed: import sluice/testing first");
    check({
      levels: this.levels,
      defaultLevel: this.defaultLevel,
      size: this.count,
      heap: this.deadlines,
      timedInLevels: this.timedInLevels,
      armed: this.timer !== undefined,
      timerAt: this.timerAt,
      expiring: this.expiring,
      earliest: () => this.earliestDeadline(),
    });
  }

  /** Adds the abort listener of a waiter that passed a signal, and returns the waiter. */
  private listen(waiter: SignalWaiter<Request, Grant>, signal: AbortSignal): SignalWaiter<Request, Grant> {
    const cancellation = new Cancellation(signal, () => this.cancel(waiter, "abort", signal.reason));
    waiter.cancellation = cancellation;
    signal.addEventListener("abort", cancellation.onAbort, ONCE);
    return waiter;
  }

  /**
   * Gives the entry just queued at ring index `index` of `level` its deadline, and moves the timer if it
   * is the first due. It joins the level's deadline FIFO when that keeps the FIFO in deadline order (it
   * waits with the FIFO's timeout and is due no earlier than the latest in it, as with one timeout for
   * everybody and a clock that does not go back), or starts the FIFO if it is empty; otherwise it goes
   * into the deadline heap as a Waiter object (`waiter`, or made now).
   */
  private addDeadline(level: Level, index: number, waiter: Waiter<Request, Grant> | undefined, timeout: number): void {
    const deadline = this.clock.now() + timeout;
    const arrival = this.arrived++;
    if (level.timed === 0 || (timeout === level.timeout && deadline >= level.latest)) {
      const deadlines = level.deadlines ?? this.startFifo(level);
      deadlines[index >> 1] = deadline;
      (level.arrivals as number[])[index >> 1] = arrival;
      level.timed++;
      level.timeout = timeout;
      level.latest = deadline;
      this.timedInLevels++;
    } else {
      this.outOfFifo(level, index, arrival);
      this.deadlines.push(waiter ?? this.materialize(level, index, timeout), deadline, arrival);
    }
    // With one timeout for every waiter, a newcomer is never due before the armed timer: no timer call.
    // The delay is `timeout` itself, so a clock that adds it to its time (FakeClock) fires at `deadline`.
    if (deadline < this.timerAt && !this.expiring) this.arm(deadline, timeout);
  }

  /** Marks the entry at ring index `index` as not in `level`'s deadline FIFO (which must exist). */
  private outOfFifo(level: Level, index: number, arrival: number): void {
    (level.deadlines as number[])[index >> 1] = Number.POSITIVE_INFINITY;
    (level.arrivals as number[])[index >> 1] = arrival;
  }

  /**
   * Gives `level` its deadline FIFO, every entry so far marked as not in it. Written slot by slot from
   * the front, so the arrays stay packed (of unboxed numbers), as every later write keeps them.
   */
  private startFifo(level: Level): number[] {
    const deadlines: number[] = [];
    const arrivals: number[] = [];
    for (let slot = 0; slot < level.end >> 1; slot++) {
      deadlines.push(Number.POSITIVE_INFINITY);
      arrivals.push(0);
    }
    level.deadlines = deadlines;
    level.arrivals = arrivals;
    level.due = 0;
    return deadlines;
  }

  /**
   * Takes the entry at ring index `index` of `level` (`waiter`'s, if it was made an object) out of the
   * deadline FIFO or heap it is in, if any; the last deadline out takes the timer.
   */
  private removeDeadline(level: Level, index: number, waiter: Waiter<Request, Grant> | undefined): void {
    const deadlines = level.deadlines;
    if (deadlines !== undefined && deadlines[index >> 1] !== Number.POSITIVE_INFINITY) {
      deadlines[index >> 1] = Number.POSITIVE_INFINITY;
      level.timed--;
      this.timedInLevels--;
    } else if (waiter !== undefined && waiter.heapIndex >= 0) {
      this.deadlines.remove(waiter);
    } else {
      return;
    }
    if (this.timedInLevels === 0 && this.deadlines.size === 0 && !this.expiring) this.disarm();
  }

  /**
   * The ring index of the first entry in `level`'s deadline FIFO, which must not be empty: the search
   * resumes where the last one stopped, since no entry ever joins the FIFO ahead of one in it.
   */
  private fifoFirst(level: Level): number {
    const deadlines = level.deadlines as number[];
    let index = Math.max(level.due, level.start);
    while (deadlines[index >> 1] === Number.POSITIVE_INFINITY) index += 2;
    level.due = index;
    return index;
  }

  /**
   * The earliest deadline of any waiter (`Infinity` if none waits with a timeout), earliest arrival
   * among equal ones; leaves where that waiter is in `dueLevel` and `dueIndex` (`dueLevel` undefined:
   * the heap's first). O(levels with a deadline FIFO), almost always 1.
   */
  private earliestDeadline(): number {
    let deadline = this.deadlines.earliest;
    let arrival = this.deadlines.firstArrival;
    this.dueLevel = undefined;
    if (this.timedInLevels === 0) return deadline;
    for (const level of this.levels) {
      if (level.timed === 0) continue;
      const index = this.fifoFirst(level);
      const its = (level.deadlines as number[])[index >> 1] as number;
      const arrived = (level.arrivals as number[])[index >> 1] as number;
      if (its < deadline || (its === deadline && arrived < arrival)) {
        deadline = its;
        arrival = arrived;
        this.dueLevel = level;
        this.dueIndex = index;
      }
    }
    return deadline;
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
    try {
      while (this.earliestDeadline() <= now) {
        const level = this.dueLevel;
        const waiter =
          level === undefined
            ? (this.deadlines.first as Waiter<Request, Grant>)
            : this.materialize(level, this.dueIndex);
        this.cancel(waiter, "timeout", new TimeoutError(waiter.timeout, this.timeoutMessage(waiter.timeout)));
      }
    } finally {
      // Also when an owner's listener threw: whoever is still due gets the timer, which fires at once.
      this.expiring = false;
      const earliest = this.earliestDeadline();
      if (earliest !== Number.POSITIVE_INFINITY) this.arm(earliest, delayUntil(earliest, this.clock.now()));
    }
  }

  /**
   * The waiter object of the entry at `index`, creating it the first time it is asked for: the ring's
   * `[resolve, request]` becomes `[waiter, resolve]` (see Level). Its timeout is its level's deadline
   * FIFO's if it is in it, else `timeout`.
   */
  private materialize(level: Level, index: number, timeout = Number.POSITIVE_INFINITY): Waiter<Request, Grant> {
    const items = level.items;
    const slot = items[index];
    if (slot instanceof Waiter) return slot as Waiter<Request, Grant>;
    const deadlines = level.deadlines;
    const inFifo = deadlines !== undefined && deadlines[index >> 1] !== Number.POSITIVE_INFINITY;
    const waiter = new Waiter<Request, Grant>(
      items[index + 1] as Request,
      level.priority,
      inFifo ? level.timeout : timeout,
    );
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
    // Before the ring moves: the FIFO's slots are the ring's.
    this.removeDeadline(level, index, waiter);
    this.count--;
    level.live--;
    if (level.live === 0) {
      // The level empties: drop it and its ring (tombstones included) and its deadline FIFO, now empty.
      this.dropLevel(position);
      if (items.length > KEEP_SLOTS) {
        level.items = [];
        level.deadlines = undefined;
        level.arrivals = undefined;
      } else {
        for (let slot = level.start; slot < level.end; slot++) items[slot] = undefined;
      }
      level.start = 0;
      level.end = 0;
      level.dead = 0;
      level.due = 0;
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
    const { items, deadlines, arrivals } = level;
    let to = 0;
    for (let from = level.start; from < level.end; from += 2) {
      const slot = items[from];
      if (isDead(slot)) continue;
      if (slot instanceof Waiter) slot.index = to;
      items[to] = slot;
      items[to + 1] = items[from + 1];
      if (deadlines !== undefined) {
        deadlines[to >> 1] = deadlines[from >> 1] as number;
        (arrivals as number[])[to >> 1] = (arrivals as number[])[from >> 1] as number;
      }
      to += 2;
    }
    items.length = to;
    if (deadlines !== undefined) {
      deadlines.length = to >> 1;
      (arrivals as number[]).length = to >> 1;
    }
    level.start = 0;
    level.end = to;
    level.dead = 0;
    level.due = 0;
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
