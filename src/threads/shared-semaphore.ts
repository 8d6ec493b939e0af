/**
 * SharedSemaphore: one semaphore for all the worker threads of a process. Its state lives in a
 * SharedArrayBuffer (see `shared-queue.ts` for the layout and the cross-thread protocol); each thread
 * parks its own callers in an ordinary `WaitQueue`, so abort, timeout and listener cleanup are the
 * core's, not re-implemented here.
 */
import { threadId, type Worker } from "node:worker_threads";
import { Admission, type LimiterStatistics } from "../core/admission.js";
import {
  checkCapacity,
  checkClock,
  checkFunction,
  checkName,
  checkOptionNames,
  checkWeight,
  type OptionNames,
  optionNames,
} from "../core/arguments.js";
import { type Clock, systemClock } from "../core/clock.js";
import { describe } from "../core/describe.js";
import { identify, type LimiterIdentity } from "../core/diagnostics.js";
import { weightAboveCapacity } from "../core/errors.js";
import { type AcquireOptions, type Limiter, NEVER_ABORTED, type Permit } from "../core/limiter.js";
import { HeldPermit, runHolding } from "../core/permit.js";
import { type CheckedAcquireOptions, checkAcquireOptions } from "../core/wait-options.js";
import type { Waiter, WaitQueue } from "../core/wait-queue.js";
import { ENTRY_STATUS, OwnRecord, SharedQueue, WINDOW, WINDOW_SIZE_MASK, waitAsync } from "./shared-queue.js";

/**
 * What crosses the thread boundary: pass it in `workerData` or `postMessage`, and rebuild the semaphore
 * on the other side with {@link SharedSemaphore.from}. A plain object, so structured clone keeps it.
 */
export interface SharedSemaphoreHandle {
  /** Marks a handle, so that `from()` can refuse anything else with a clear error. */
  readonly kind: "sluice:SharedSemaphore";
  /** The state every thread reads and writes with atomics. */
  readonly buffer: SharedArrayBuffer;
  /** The name given to the semaphore, for error messages and statistics in every thread. */
  readonly name: string | undefined;
}

/** Options for {@link SharedSemaphore}. */
export interface SharedSemaphoreOptions {
  /** Shows up in error messages and statistics. */
  name?: string;
  /**
   * The most threads that can use the semaphore at the same time (each takes one slot of about 700
   * bytes in the shared buffer until it exits and is reclaimed). Default 64.
   */
  maxThreads?: number;
  /** Time source for this thread's timeouts; defaults to the global timers. */
  clock?: Clock;
}

/** Options for {@link SharedSemaphore.from}: what is local to the thread that rebuilds it. */
export interface SharedSemaphoreAttachOptions {
  /** Time source for this thread's timeouts; defaults to the global timers. */
  clock?: Clock;
}

export const SHARED_SEMAPHORE_OPTIONS = /* @__PURE__ */ optionNames<SharedSemaphoreOptions>({
  name: true,
  maxThreads: true,
  clock: true,
});
const ATTACH_OPTIONS = /* @__PURE__ */ optionNames<SharedSemaphoreAttachOptions>({ clock: true });

/**
 * A snapshot of a shared semaphore: `inUse`, `available` and `waiting` summed over all threads at this
 * instant (held weight includes grants about to be collected); the lifetime counters are this thread's.
 */
export interface SharedSemaphoreStatistics extends LimiterStatistics {
  /** Threads that use the semaphore right now (hold a slot). */
  threads: number;
  /** Grants since creation, in all threads. */
  grantedInAllThreads: number;
}

/** What one local caller asks for, and where it stands in the shared ring. */
interface Request {
  readonly weight: number;
  readonly priority: number;
  /** The caller's place in the cross-thread arrival order. */
  readonly ticket: number;
  readonly signal: AbortSignal;
  /** True while an entry for this caller is in the ring (waiting or granted, not yet collected). */
  published: boolean;
  sequence: number;
  /** Set when granted, so `tryAcquire` can return it synchronously. */
  permit: Permit | undefined;
}

type LocalWaiter = Waiter<Request, Permit>;

/**
 * The heaviest weight (and largest finite capacity): weights and held sums are 32-bit words in the
 * buffer, so anything above would wrap around (a weight of 2^31 came back as a permit of -2^31).
 */
const MAX_WEIGHT = 0x7ffffffe;

// The longest timer Node accepts: the keep-alive below never actually fires in practice.
const KEEP_ALIVE_MS = 2_147_483_647;
function keepAliveTick(_semaphore: SharedSemaphore): void {}

/**
 * The doorbell wait's callback, holding the semaphore only weakly. An `Atomics.waitAsync` cannot be
 * cancelled: one left outstanding after the last caller here left (granted by this thread's own release,
 * or aborted) would otherwise keep the instance and its buffer alive for as long as the thread runs.
 * Built outside the class so the closure does not share a context that holds `this`.
 */
function doorbellCallback(semaphore: SharedSemaphore): () => void {
  const weak = new WeakRef(semaphore);
  return () => weak.deref()?.["onDoorbell"]();
}

/**
 * A counting semaphore shared by worker threads: at most `capacity` weight held at once across every
 * thread that uses it, served by priority and then arrival across threads.
 *
 * Create it in one thread, hand `semaphore.handle` to workers through `workerData` or `postMessage`, and
 * rebuild it there with {@link SharedSemaphore.from}. All copies are the same semaphore.
 *
 * Guarantees:
 * - never more than `capacity` weight held across all threads;
 * - waiters are served by priority, then arrival (a ticket taken when `acquire()` is called), across
 *   threads; if the first in line does not fit, nobody behind it is served (head-of-line, so heavy
 *   requests are not starved);
 * - waiting never blocks the event loop: a thread with waiters has one `Atomics.waitAsync` outstanding,
 *   woken by the thread that grants (no polling, no spinning);
 * - abort and timeout remove the waiter; a cancel racing a grant in another thread is settled by one
 *   compare-exchange, so no permit is ever lost or duplicated;
 * - permits of a worker that exits (or is terminated) are reclaimed when the thread that called
 *   {@link SharedSemaphore.track} sees its `exit` event; its waiters stop blocking the line then too.
 *
 * A permit belongs to the thread that acquired it and must be released there.
 *
 * @example
 * ```ts
 * // main thread
 * import { Worker } from "node:worker_threads";
 * import { SharedSemaphore } from "sluice/threads";
 * const semaphore = new SharedSemaphore(3, { name: "gpu" });
 * const worker = semaphore.track(new Worker("./job.js", { workerData: { gpu: semaphore.handle } }));
 *
 * // job.js (in the worker)
 * import { workerData } from "node:worker_threads";
 * const gpu = SharedSemaphore.from(workerData.gpu);
 * await gpu.run(() => render());
 * ```
 */
export class SharedSemaphore implements Limiter {
  /** Optional name, used in error messages and statistics. */
  readonly name: string | undefined;
  /** Pass this to other threads; rebuild the semaphore there with {@link SharedSemaphore.from}. */
  readonly handle: SharedSemaphoreHandle;
  /** Fixed at creation: the shared layout cannot be resized under running threads. */
  readonly capacity: number;
  private readonly shared: SharedQueue;
  /** This thread's slot in the shared buffer; taken on first use, so a handle passed along costs nothing. */
  private own: OwnRecord | undefined;
  /** The admission step; its queue holds this thread's callers. */
  private readonly admission: Admission<Request, Permit>;
  /** What its `sluice:*` events name. */
  private readonly identity: LimiterIdentity;
  /**
   * This thread's callers, in priority-then-arrival order.
   * Invariant (after every public method returns): the ring's WAITING entries are the first not-yet-
   * granted waiters of this queue, in queue order, as many as fit in the ring; `overflow` is set
   * exactly when some waiter is left out.
   */
  private readonly queue: WaitQueue<Request, Permit>;
  /** A permit's weight goes back through here: one function for every permit of this thread. */
  private readonly giveBackPermit = (permit: HeldPermit): void => this.giveBack(permit.weight);
  /** The waiter each ring entry stands for, by `sequence & mask`; `undefined` once it left the queue. */
  private readonly slots: (LocalWaiter | undefined)[] = new Array(WINDOW).fill(undefined);
  /** Set when something changed that a dispatch pass must see (a release, a withdrawn head). */
  private dirty = false;
  /** True while an `Atomics.waitAsync` on the doorbell is outstanding. */
  private armed = false;
  /**
   * A pending `Atomics.waitAsync` does not keep a thread alive; this ref'd timer does, while callers wait.
   * It also holds this instance (as its argument) while they wait, since the doorbell wait does not.
   */
  private keepAlive: ReturnType<typeof setInterval> | undefined;
  private readonly wake = doorbellCallback(this);

  /**
   * @param capacity - permits available: an integer >= 0 (below 2^31), or `Infinity`.
   * @throws RangeError/TypeError for a bad capacity, `maxThreads`, `name` or `clock`.
   */
  constructor(capacity: number, options?: SharedSemaphoreOptions);
  /** @internal Rebuilds from a handle; use {@link SharedSemaphore.from}. */
  constructor(handle: SharedSemaphoreHandle, options?: SharedSemaphoreAttachOptions);
  constructor(capacityOrHandle: number | SharedSemaphoreHandle, options: SharedSemaphoreOptions = {}) {
    // Checked here, not at the first timed wait: a clock that fails inside `acquire` would leave a
    // caller queued that nobody can settle.
    const clock =
      typeof capacityOrHandle === "number"
        ? checkThreadOptions(options, SHARED_SEMAPHORE_OPTIONS, "the new SharedSemaphore() options")
        : checkThreadOptions(options, ATTACH_OPTIONS, "the SharedSemaphore.from() options");
    if (typeof capacityOrHandle === "number") {
      const capacity = checkCapacity(capacityOrHandle);
      if (capacity !== Number.POSITIVE_INFINITY && capacity > MAX_WEIGHT) {
        throw new RangeError(`capacity must be below 2^31 - 1 or Infinity; got ${capacity}`);
      }
      const maxThreads = options.maxThreads ?? 64;
      if (typeof maxThreads !== "number" || !Number.isInteger(maxThreads) || maxThreads < 1 || maxThreads > 4096) {
        throw new RangeError(`maxThreads must be an integer from 1 to 4096; got ${describe(maxThreads)}`);
      }
      this.name = checkName(options.name);
      this.shared = new SharedQueue(SharedQueue.allocate(capacity, maxThreads));
    } else {
      const handle = checkHandle(capacityOrHandle);
      this.name = handle.name;
      this.shared = new SharedQueue(handle.buffer);
    }
    this.capacity = this.shared.capacity;
    if (instances.get(this.shared.id)?.deref() === undefined) {
      instances.set(this.shared.id, new WeakRef(this));
      forget.register(this, this.shared.id);
    }
    this.handle = Object.freeze({ kind: "sluice:SharedSemaphore", buffer: this.shared.buffer, name: this.name });
    this.identity = identify(this, this.name, "semaphore", "threads", clock);
    this.admission = new Admission<Request, Permit>(
      {
        // A request that can never fit would block everyone behind it in every thread: refuse it.
        impossible: (request) =>
          request.weight > this.capacity || request.weight > MAX_WEIGHT ? this.tooHeavy(request.weight) : undefined,
        // Whether it fits is decided across threads once it is published (`enqueued`), in the same step.
        fits: () => false,
        take: () => {
          throw new Error("sluice internal error: a shared semaphore grants through collect()");
        },
        enqueued: (request) => this.park(request),
        // `timeout: 0`: published and dispatched in this step; granted then, or withdrawn uncounted.
        tryNow: (request) => Promise.resolve(this.tryNow(request)),
        left: (waiter) => this.onCancel(waiter),
        weight: (request) => request.weight,
      },
      clock,
      () => this.subject(),
      undefined,
      this.identity,
    );
    this.queue = this.admission.queue;
  }

  /**
   * Rebuilds, in this thread, the semaphore whose `handle` another thread passed over. Cheap: it takes
   * a thread slot only when first used, and a thread gets one instance per semaphore — calling `from`
   * again (or in the thread that created it) returns the same object, so `options` count only the
   * first time. Once that object is garbage-collected, its slot is freed and the next `from` builds a
   * new one.
   *
   * @example
   * ```ts
   * import { workerData } from "node:worker_threads";
   * import { SharedSemaphore } from "sluice/threads";
   * const semaphore = SharedSemaphore.from(workerData.semaphore);
   * ```
   * @throws TypeError if `handle` is not a SharedSemaphore handle, or `options.clock` not a Clock.
   */
  static from(handle: SharedSemaphoreHandle, options?: SharedSemaphoreAttachOptions): SharedSemaphore {
    checkThreadOptions(options, ATTACH_OPTIONS, "the SharedSemaphore.from() options");
    const existing = instances.get(new SharedQueue(checkHandle(handle).buffer).id)?.deref();
    return existing ?? rebuild(handle, options);
  }

  /** `capacity - inUse`, summed over all threads at this instant. */
  get available(): number {
    return this.capacity - this.shared.snapshot().inUse;
  }

  /** Weight held in all threads at this instant. */
  get inUse(): number {
    return this.shared.snapshot().inUse;
  }

  /** Callers waiting in all threads at this instant (this thread's count is exact). */
  get waiting(): number {
    return this.shared.snapshot().waiting;
  }

  /** Whether an `acquire()` of weight 1 would wait right now: nothing free, or someone waiting. */
  isLocked(): boolean {
    const { inUse, waiting } = this.shared.snapshot();
    return waiting > 0 || this.capacity - inUse < 1;
  }

  /**
   * Waits until `weight` permits can be granted and returns them as a {@link Permit}.
   *
   * Rejects (never throws) with a `RangeError`/`TypeError` for bad options, a `RangeError` when
   * `weight > capacity` or more threads than `maxThreads` use the semaphore, `signal.reason` if the
   * signal aborts first, and a `TimeoutError` when `timeout` elapses.
   *
   * @example
   * ```ts
   * await using permit = await semaphore.acquire({ weight: 2, timeout: 5_000 });
   * ```
   */
  acquire(options?: AcquireOptions): Promise<Permit> {
    let checked: CheckedAcquireOptions;
    try {
      checked = checkAcquireOptions(options);
      this.attach();
    } catch (error) {
      return Promise.reject(error);
    }
    return this.admission.admit(
      this.request(checked.weight, checked.priority, checked.signal),
      checked,
    ) as Promise<Permit>;
  }

  /**
   * Takes `weight` permits if that is possible right now without waiting and without passing anyone
   * already in line in any thread; otherwise returns `undefined`.
   *
   * @throws RangeError/TypeError for a bad weight (including one above the capacity, or above 2^31 - 2).
   */
  tryAcquire(weight = 1): Permit | undefined {
    checkWeight(weight);
    if (weight > this.capacity || weight > MAX_WEIGHT) throw this.tooHeavy(weight);
    this.attach();
    const permit = this.tryNow(this.request(weight, 0, undefined));
    // Granted through this thread's queue (counted there); the request is counted here.
    if (permit !== undefined) this.admission.requested();
    return permit;
  }

  /**
   * Runs `fn` once admitted, and releases when it settles — returned, thrown or rejected. `fn` receives
   * the caller's signal (after the grant it means "stop the work").
   *
   * @example
   * ```ts
   * const text = await semaphore.run((signal) => callModel(prompt, { signal }), { timeout: 30_000 });
   * ```
   */
  run<T>(fn: (signal: AbortSignal, permit: Permit) => T | PromiseLike<T>, options?: AcquireOptions): Promise<T> {
    try {
      checkFunction(fn, "fn");
    } catch (error) {
      return Promise.reject(error);
    }
    return this.acquire(options).then((permit) => runHolding(fn, permit));
  }

  /**
   * Watches `worker` and, when it exits for any reason (returned, threw, `process.exit`, terminated),
   * takes back every permit it held and drops its waiters from the line. Call it in the thread that
   * created the worker, for every worker that may use the semaphore. Returns the worker.
   *
   * What is guaranteed: from the moment this thread handles the worker's `exit` event, the worker's
   * permits count as free and its waiters are gone, in every thread; waiters that now fit are granted
   * in that same step. Until then (the worker is still running, or this thread's event loop is busy),
   * they count as held. An untracked worker that dies keeps its slot and what it held for good, and its
   * waiters stay in line: they are still granted in turn (and that weight is lost too), and one the worker
   * had not published yet blocks everyone behind it, in every thread, for good.
   *
   * @example
   * ```ts
   * const worker = semaphore.track(new Worker(file, { workerData: { semaphore: semaphore.handle } }));
   * ```
   */
  track<W extends Worker>(worker: W): W {
    if (
      typeof worker !== "object" ||
      worker === null ||
      typeof worker.once !== "function" ||
      typeof worker.threadId !== "number"
    ) {
      throw new TypeError(`worker must be a Worker (from node:worker_threads); got ${describe(worker)}`);
    }
    const id = worker.threadId;
    worker.once("exit", () => this.reclaim(id));
    return worker;
  }

  /**
   * Takes back what thread `threadId` held and waited for. {@link SharedSemaphore.track} calls it for
   * you; call it yourself only for a thread that has certainly exited. Returns whether it held a slot.
   */
  reclaim(threadId: number): boolean {
    // A worker that has already exited reports threadId -1; nothing can be matched to it.
    if (!Number.isInteger(threadId) || threadId < 0) return false;
    // Reclaiming needs no slot of its own: a thread that only tracks workers may find them all taken.
    const own = this.own;
    const self = own === undefined ? -1 : own.index;
    if (this.shared.reclaim(threadId, self) === 0) return false;
    // Hand the freed permits on (to waiters here and, through the pass, in other threads) ...
    if (own === undefined) this.shared.requestDispatch(-1);
    else {
      this.dirty = true;
      this.sync();
    }
    // ... and wake every thread, in case the dead one was dispatching and granted without ringing.
    this.shared.ringAll(self);
    return true;
  }

  /** A snapshot over all threads. */
  statistics(): SharedSemaphoreStatistics {
    const { inUse, waiting, threads, granted } = this.shared.snapshot();
    return {
      name: this.name,
      capacity: this.capacity,
      available: this.capacity - inUse,
      inUse,
      waiting,
      ...this.admission.counters,
      threads,
      grantedInAllThreads: granted,
    };
  }

  /** Takes this thread's slot on first use. */
  private attach(): OwnRecord {
    if (this.own === undefined) {
      const index = this.shared.register(threadId);
      this.own = new OwnRecord(this.shared, index);
      retire.register(this, { shared: this.shared, index });
    }
    return this.own;
  }

  /** A caller's request, with its place in the cross-thread arrival order taken now. */
  private request(weight: number, priority: number, signal: AbortSignal | undefined): Request {
    return {
      weight,
      priority,
      ticket: this.shared.ticket(),
      signal: signal ?? NEVER_ABORTED,
      published: false,
      sequence: 0,
      permit: undefined,
    };
  }

  /** Publishes a caller just queued locally, and dispatches, in the same synchronous step. */
  private park(request: Request): void {
    const waiter = this.queue.newest(request.priority) as LocalWaiter;
    // A caller that sorts ahead of callers already published (a higher priority) would be invisible
    // behind them: take the waiting ones back and publish again in the new order.
    if (this.queue.after(waiter) !== undefined) this.withdrawAll();
    this.sync();
  }

  /**
   * "Only if free right now": queues and publishes the caller and dispatches in this step; returns its
   * permit if that granted it, or withdraws it and returns `undefined`. The withdrawal can lose to a grant
   * made by another thread in between; `collect` then hands that grant back, so nothing is held.
   */
  private tryNow(request: Request): Permit | undefined {
    const waiting = this.queue.enqueue(request, request.priority, undefined, Number.POSITIVE_INFINITY);
    this.park(request);
    if (request.permit !== undefined) return request.permit;
    waiting.catch(ignore);
    const waiter = this.queue.newest(request.priority) as LocalWaiter;
    this.queue.reject(waiter, undefined);
    this.onCancel(waiter);
    return undefined;
  }

  /**
   * Brings this thread and the shared state up to date: collects grants, publishes waiters, dispatches
   * until nothing changes, and waits for the doorbell if callers are left waiting.
   */
  private sync(): void {
    const own = this.own as OwnRecord;
    // Read before looking at the entries: a grant made after this read changes the doorbell, so the wait
    // below returns at once instead of missing it (the futex pattern).
    const doorbell = own.doorbell();
    for (;;) {
      const gaveBack = this.collect(own);
      const published = this.publish(own);
      if (!gaveBack && !published && !this.dirty) break;
      this.dirty = false;
      this.shared.requestDispatch(own.index);
    }
    own.setWaiting(this.queue.size);
    this.arm(own, doorbell);
  }

  /**
   * Takes the settled entries at the front of the ring out of it: grants go to their waiters (or
   * straight back, if the waiter left in the meantime); withdrawn entries are dropped. Returns whether
   * weight was given back (then a dispatch pass must run).
   */
  private collect(own: OwnRecord): boolean {
    const end = own.published();
    let gaveBack = false;
    let collected = false;
    for (let sequence = own.collected(); sequence !== end; sequence = (sequence + 1) | 0) {
      const status = own.status(sequence);
      if (status === ENTRY_STATUS.WAITING) break;
      const slot = sequence & WINDOW_SIZE_MASK;
      const waiter = this.slots[slot];
      this.slots[slot] = undefined;
      // A caller whose signal has aborted gets no grant, even one its abort listener has not heard of
      // yet: a signal shared by several callers calls their listeners one by one, and the first one's
      // re-dispatch (or a release made by an earlier listener of the caller's own) can grant the next
      // before its listener runs. The abort came first, so it wins, as in Semaphore; the weight goes back.
      if (waiter?.request.signal.aborted) {
        this.admission.withdrawAborted(waiter, waiter.request.signal.reason);
        if (status === ENTRY_STATUS.GRANTED) gaveBack = true;
        own.advance(sequence, 0);
        continue;
      }
      if (status === ENTRY_STATUS.GRANTED && waiter !== undefined) {
        const weight = own.weight(sequence);
        own.advance(sequence, weight);
        const permit = new HeldPermit(weight, waiter.request.signal, this.giveBackPermit, this.identity);
        waiter.request.permit = permit;
        waiter.request.published = false;
        this.admission.grant(waiter, permit);
        collected = true;
      } else {
        // GRANTED without a waiter: the caller was cancelled after the grant was made in another
        // thread. The weight was never added to `held`, so dropping the entry gives it back.
        if (status === ENTRY_STATUS.GRANTED) gaveBack = true;
        own.advance(sequence, 0);
      }
    }
    // A dispatcher running right now may have counted a just-collected grant twice and stopped early;
    // the note makes it pass again.
    if (collected) this.shared.nudge();
    return gaveBack;
  }

  /**
   * Publishes the first unpublished waiters while the ring has room, and the key of the first one left
   * over. Returns whether anything changed that a dispatch pass must see.
   */
  private publish(own: OwnRecord): boolean {
    let room = own.room();
    let published = false;
    let hidden: LocalWaiter | undefined;
    for (let waiter = this.queue.head; waiter !== undefined; waiter = this.queue.after(waiter)) {
      const request = waiter.request;
      if (request.published) continue;
      if (room === 0) {
        hidden = waiter;
        break;
      }
      request.sequence = own.publish(request.weight, request.ticket, waiter.priority);
      request.published = true;
      this.slots[request.sequence & WINDOW_SIZE_MASK] = waiter;
      room--;
      published = true;
    }
    const changed =
      hidden === undefined ? own.setOverflow(false) : own.setOverflow(true, hidden.request.ticket, hidden.priority);
    return published || changed;
  }

  /**
   * Withdraws every published entry that is still waiting, so the next `publish` re-sorts them. Back to
   * front: while it runs, a dispatcher in another thread sees this thread's true head until that is
   * withdrawn last (front to back, the second entry would show as the head for a moment, and a lighter
   * one behind a heavy head could be granted first).
   */
  private withdrawAll(): void {
    const own = this.own as OwnRecord;
    const before = (own.collected() - 1) | 0;
    for (let sequence = (own.published() - 1) | 0; sequence !== before; sequence = (sequence - 1) | 0) {
      const slot = sequence & WINDOW_SIZE_MASK;
      const waiter = this.slots[slot];
      if (waiter === undefined || !own.withdraw(sequence)) continue;
      this.slots[slot] = undefined;
      waiter.request.published = false;
    }
  }

  /** Abort or timeout of a local caller: take its entry back out of the ring. */
  private onCancel(waiter: LocalWaiter): void {
    const request = waiter.request;
    if (request.published) {
      this.slots[request.sequence & WINDOW_SIZE_MASK] = undefined;
      // If the withdrawal loses to a grant, `collect` finds the entry GRANTED without a waiter and gives
      // the weight back. Either way the line moves on: it may have been the head that blocked others.
      (this.own as OwnRecord).withdraw(request.sequence);
      request.published = false;
    }
    this.dirty = true;
    this.sync();
  }

  /** Waits (without blocking) for the doorbell, while callers are waiting here. */
  private arm(own: OwnRecord, doorbell: number): void {
    if (this.queue.size === 0) {
      if (this.keepAlive !== undefined) {
        clearInterval(this.keepAlive);
        this.keepAlive = undefined;
      }
      return;
    }
    this.keepAlive ??= setInterval(keepAliveTick, KEEP_ALIVE_MS, this);
    if (this.armed) return;
    const result = waitAsync(this.shared.words, own.doorbellIndex(), doorbell);
    this.armed = true;
    if (result.async) result.value.then(this.wake);
    else queueMicrotask(this.wake);
  }

  /** The doorbell rang (or was found changed): catch up with the shared state. */
  // biome-ignore lint/correctness/noUnusedPrivateClassMembers: the doorbell callback calls it (kept off the public API)
  private onDoorbell(): void {
    this.armed = false;
    this.sync();
  }

  /** Gives `weight` back and hands it on in the same synchronous step. Called by permits. */
  private giveBack(weight: number): void {
    (this.own as OwnRecord).release(weight);
    this.dirty = true;
    this.sync();
  }

  private tooHeavy(weight: number): RangeError {
    if (weight > MAX_WEIGHT) {
      return new RangeError(
        `weight must be at most ${MAX_WEIGHT} for ${this.subject()} (a 32-bit word in its buffer); got ${weight}`,
      );
    }
    return weightAboveCapacity(weight, this.capacity, this.subject());
  }

  private subject(): string {
    return this.name === undefined ? "the shared semaphore" : `shared semaphore ${JSON.stringify(this.name)}`;
  }
}

/**
 * `new SharedSemaphore(…)` for `from`, outside the class body: a reference to the class inside its own body makes
 * the bundler rename it (`SharedSemaphore.name` would read `_SharedSemaphore`).
 */
function rebuild(handle: SharedSemaphoreHandle, options: SharedSemaphoreAttachOptions | undefined): SharedSemaphore {
  return new SharedSemaphore(handle, options);
}

function ignore(): void {}

/**
 * This thread's instance of each shared semaphore, by id: one slot (and one doorbell wait) per thread
 * however often a handle is rebuilt. Weak, so a semaphore nobody uses any more can be collected.
 */
const instances = new Map<string, WeakRef<SharedSemaphore>>();
const forget = new FinalizationRegistry<string>((id) => {
  if (instances.get(id)?.deref() === undefined) instances.delete(id);
});

/**
 * Frees the slot of an instance that was garbage-collected. `instances` holds instances weakly, so a
 * thread that rebuilds a semaphore per job (`from(handle)` in a message handler) gets a new instance
 * after a collection; without this, each would take a slot of its own until `maxThreads` ran out.
 */
const retire = new FinalizationRegistry<{ shared: SharedQueue; index: number }>(({ shared, index }) => {
  shared.retire(index, threadId);
});

/** Checks the options every constructor and `from` take; returns the clock for this thread. */
function checkThreadOptions(
  options: SharedSemaphoreAttachOptions | undefined,
  known: OptionNames,
  where: string,
): Clock {
  if (options === undefined) return systemClock;
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object; got ${describe(options)}`);
  }
  checkOptionNames(options, known, where);
  return checkClock(options.clock) ?? systemClock;
}

function checkHandle(handle: unknown): SharedSemaphoreHandle {
  if (
    typeof handle !== "object" ||
    handle === null ||
    (handle as SharedSemaphoreHandle).kind !== "sluice:SharedSemaphore" ||
    !((handle as SharedSemaphoreHandle).buffer instanceof SharedArrayBuffer)
  ) {
    throw new TypeError(`handle must be a SharedSemaphore's handle (semaphore.handle); got ${describe(handle)}`);
  }
  return handle as SharedSemaphoreHandle;
}
