/**
 * The one admission step: every Limiter (Semaphore, RateLimiter, Pool, Channel's send and receive, and
 * the thread and Redis backends) admits its callers here, so the order of the checks, what each one
 * counts and what each refusal says are written once.
 *
 * For a request whose options are already checked:
 * 1. a request that can never be admitted (a weight above the capacity, a closed limiter) rejects at
 *    once — counted as `rejected`;
 * 2. an already-aborted signal rejects with its reason, even if room is free — `aborted`;
 * 3. a request first in line that fits is granted in this same step — `granted`;
 * 4. `timeout: 0` ("only if free right now") rejects with a TimeoutError — `timedOut` — unless the
 *    limiter has a last chance to offer (Redis asks the server);
 * 5. otherwise the caller waits in the queue; a later grant, abort, timeout or rejection is counted by
 *    the queue's exits below.
 *
 * Bad options are not requests: they reject with a TypeError/RangeError before step 1, and count nothing.
 */

import type { Clock } from "./clock.js";
import {
  type AcquireEvent,
  type AcquireOutcome,
  acquireChannel,
  acquiredNow,
  admitted,
  endAcquire,
  type LimiterIdentity,
  startAcquire,
} from "./diagnostics.js";
import { TimeoutError } from "./errors.js";
import { NEVER_ABORTED } from "./limiter.js";
import type { CheckedWaitOptions } from "./wait-options.js";
import { type CancelReason, type SelfChecking, type Waiter, WaitQueue } from "./wait-queue.js";

/**
 * Lifetime counters, the same on every Limiter. Each is counted by the admission step or by the queue's
 * exits, never by a primitive on its own, so each means one thing everywhere.
 */
export interface LimiterCounters {
  /** Requests admitted, at once or after waiting. */
  granted: number;
  /** Requests ended by their signal: already aborted when made, or aborted while waiting. */
  aborted: number;
  /** Requests ended by their timeout, `timeout: 0` refusals included. */
  timedOut: number;
  /**
   * Requests the limiter refused or dropped: one that could never be admitted (a weight above the
   * capacity, a closed limiter), or a waiter rejected by `clear()`, `close()`, a capacity shrink or a
   * backend failure.
   */
  rejected: number;
}

/**
 * The core of `statistics()` on every Limiter: the same fields meaning the same thing everywhere. Each
 * primitive adds its own fields next to these.
 */
export interface LimiterStatistics extends LimiterCounters {
  /** The name given at construction, if any. */
  name: string | undefined;
  /** The most weight that may be held at once (`Infinity` when only time limits it). */
  capacity: number;
  /** `capacity - inUse`: weight free right now; negative after a shrink below what is held. */
  available: number;
  /** Weight held right now (by this process, for the distributed backends). */
  inUse: number;
  /** Callers waiting (callers, not weight; of this process, for the distributed backends). */
  waiting: number;
}

/** A request refused within the admission step: its events (if someone listens) and its rejection. */
function refused(event: AcquireEvent | undefined, outcome: AcquireOutcome, error: unknown): Promise<never> {
  if (event !== undefined) {
    admitted(event, false);
    endAcquire(event, outcome, error);
  }
  return Promise.reject(error);
}

/** What a primitive tells the admission step about its requests. */
export interface Gate<Request, Grant> {
  /**
   * Why `request` can never be admitted — a RangeError for a weight above the capacity, a ClosedError
   * for a closed limiter — or `undefined`.
   */
  impossible(request: Request): Error | undefined;
  /** Whether `request` may be granted now, given that it is first in line. */
  fits(request: Request): boolean;
  /**
   * Takes what `request` asks for and returns its grant; called only right after `fits` said yes.
   * `waiter` is the queued caller being served, or `undefined` for a grant made at once.
   */
  take(request: Request, signal: AbortSignal, waiter: Waiter<Request, Grant> | undefined): Grant;
  /**
   * For `timeout: 0` when `fits` said no: a last chance (a backend whose truth is elsewhere asks it).
   * Resolves with the grant — counted by the gate itself, as its grants are made on its own paths — or
   * `undefined` to refuse (then counted as timed out). Absent: refused at once.
   */
  tryNow?(request: Request, signal: AbortSignal | undefined): Promise<Grant | undefined>;
  /**
   * `request` was just queued (a backend sends it on; a primitive whose queue head it became re-arms
   * its timer). `isHead` says whether it became the head. Given the request, not the waiter: most
   * waiters are never made into objects (and equal requests, such as the number 1, are not told apart).
   */
  enqueued?(request: Request, isHead: boolean): void;
  /**
   * Dispatch stopped at `head`, which does not fit (or nobody waits: `undefined`): a primitive whose
   * requests wait for time arms its timer for it.
   */
  stalled?(head: Waiter<Request, Grant> | undefined): void;
  /** A waiter left by abort or timeout (after the counters; before a re-dispatch). */
  left?(waiter: Waiter<Request, Grant>, reason: CancelReason): void;
  /** The weight `request` asks for, for the `sluice:acquire` events; absent: 1. */
  weight?(request: Request): number;
}

/**
 * The admission step and the one wait queue of a primitive (Channel has two: one each for senders and
 * receivers).
 */
export class Admission<Request, Grant> implements SelfChecking {
  readonly queue: WaitQueue<Request, Grant>;
  readonly counters: LimiterCounters = { granted: 0, aborted: 0, timedOut: 0, rejected: 0 };
  /**
   * Requests that entered the admission step (and grants made outside it, see `grantedNow`).
   * Invariant: every request is counted once, by how it ended, or is still waiting:
   * `requests = granted + aborted + timedOut + rejected + queue.size`.
   */
  private requests = 0;
  /**
   * The `sluice:acquire` events of the waiters queued while someone listened, ended at the waiter's exit
   * (grant, abort, timeout, rejection) in the same step. `undefined` whenever it would be empty, so the
   * exits of an untraced limiter cost one field read.
   */
  private traced: Map<Waiter<Request, Grant>, AcquireEvent> | undefined = undefined;

  constructor(
    private readonly gate: Gate<Request, Grant>,
    clock: Clock,
    /** Names the primitive in messages ("semaphore \"db\""), read when a message is made. */
    subject: () => string,
    /** Called after a waiter left (abort, timeout) and dispatch ran: a primitive may now be idle. */
    private readonly afterLeave?: () => void,
    /**
     * What the `sluice:acquire` events name; absent for what is not a Limiter (Pool, Channel), which
     * publishes nothing.
     */
    readonly identity?: LimiterIdentity,
  ) {
    this.queue = new WaitQueue<Request, Grant>(
      clock,
      (waiter, reason, wasHead, error) => this.onLeave(waiter, reason, wasHead, error),
      subject,
    );
  }

  /**
   * The admission step (see the module comment). Returns the grant itself when it is made in this step,
   * so that `run` can call its function in the caller's step; otherwise a promise. Never throws.
   */
  admit(request: Request, options: CheckedWaitOptions, secondStage = false): Grant | Promise<Grant> {
    // `secondStage`: the second stage of a wait in two stages, which `refuseEarly` counted already and
    // whose events `stagesWait` publishes as one.
    if (!secondStage) this.requests++;
    // The one `hasSubscribers` read of a request: without a subscriber, `event` stays undefined and
    // nothing below allocates for the events.
    const event = secondStage ? undefined : this.startEvent(request, options.priority);
    const impossible = this.gate.impossible(request);
    if (impossible !== undefined) {
      this.counters.rejected++;
      return refused(event, "rejected", impossible);
    }
    const { signal, priority, timeout } = options;
    // An already-aborted signal never enters the queue, even if room is free: the abort came first.
    if (signal?.aborted) {
      this.counters.aborted++;
      return refused(event, "aborted", signal.reason);
    }
    // A request that sorts to the head and fits is served at once, so a light high-priority request
    // passes a heavy low-priority head that is still waiting for room.
    const first = this.queue.isFirstInLine(priority);
    if (first && this.gate.fits(request)) {
      this.counters.granted++;
      const grant = this.gate.take(request, signal ?? NEVER_ABORTED, undefined);
      if (event !== undefined) {
        admitted(event, false);
        endAcquire(event, "acquired");
      }
      return grant;
    }
    if (timeout === 0) {
      if (this.gate.tryNow !== undefined) return this.whenSettled(event, this.lastChance(request, signal), signal);
      this.counters.timedOut++;
      return refused(event, "timeout", new TimeoutError(0, this.queue.timeoutMessage(0)));
    }
    const promise = this.queue.enqueue(request, priority, signal, timeout);
    // Before `enqueued`, which may grant it at once (a backend's answer, a rate limiter's dispatch).
    if (event !== undefined) this.trace(event, this.queue.newest(priority) as Waiter<Request, Grant>);
    this.gate.enqueued?.(request, first);
    return promise;
  }

  /**
   * Steps 1 and 2 alone, for a limiter whose wait has two stages (a concurrency slot, then the rate): a
   * rejected promise if `request` is refused before any wait, otherwise `undefined`. Counted as `admit`.
   */
  refuseEarly(request: Request, signal: AbortSignal | undefined, event?: AcquireEvent): Promise<never> | undefined {
    this.requests++;
    const impossible = this.gate.impossible(request);
    if (impossible !== undefined) {
      this.counters.rejected++;
      return refused(event, "rejected", impossible);
    }
    if (signal?.aborted) {
      this.counters.aborted++;
      return refused(event, "aborted", signal.reason);
    }
    return undefined;
  }

  /**
   * The `sluice:acquire` event of a request entering the admission step (`start` published), or
   * `undefined` when nobody listens. A wait in two stages starts it before the first (see `stagesWait`).
   */
  startEvent(request: Request, priority: number): AcquireEvent | undefined {
    return this.identity !== undefined && acquireChannel.hasSubscribers
      ? startAcquire(this.identity, this.gate.weight?.(request) ?? 1, priority)
      : undefined;
  }

  /**
   * Publishes a wait in two stages (a concurrency slot from another limiter, then this queue, admitted
   * as `secondStage`) as the one wait the caller sees: `end` (queued) before the first stage starts, and the end
   * of the wait when the stages settle, classified as `countFailure` counts it. Returns their promise.
   */
  stagesWait(
    event: AcquireEvent | undefined,
    stages: () => Promise<Grant>,
    signal: AbortSignal | undefined,
  ): Promise<Grant> {
    if (event === undefined) return stages();
    admitted(event, true);
    return this.endWhenSettled(event, stages(), signal);
  }

  /**
   * Counts a wait that ended in a first stage outside this queue (see {@link Admission.refuseEarly}):
   * by its signal, by a timeout, or refused.
   */
  countFailure(error: unknown, signal: AbortSignal | undefined): void {
    if (signal?.aborted && error === signal.reason) this.counters.aborted++;
    else if (error instanceof TimeoutError) this.counters.timedOut++;
    else this.counters.rejected++;
  }

  /**
   * Serves waiters from the head while the head fits; stops at the first that does not (head-of-line).
   * A head whose signal aborted before its listener ran (a shared signal, a release made by the caller's
   * own abort listener) is withdrawn, not granted: the abort came first.
   */
  dispatch(): void {
    const queue = this.queue;
    for (let head = queue.headToGrant(); head !== undefined; head = queue.headToGrant()) {
      if (!this.gate.fits(head.request)) {
        this.gate.stalled?.(head);
        return;
      }
      this.counters.granted++;
      queue.grant(head, this.gate.take(head.request, head.cancellation?.signal ?? NEVER_ABORTED, head));
      if (this.traced !== undefined) this.untrace(head, "acquired", undefined);
    }
    this.gate.stalled?.(undefined);
  }

  /**
   * Counts a grant made outside the admission step as a request granted at once: a primitive's fast path
   * for the commonest call, and `tryAcquire`.
   */
  grantedNow(weight = 1): void {
    this.requests++;
    this.counters.granted++;
    if (this.identity !== undefined && acquireChannel.hasSubscribers) acquiredNow(this.identity, weight);
  }

  /**
   * Counts a request made outside the admission step whose end is counted where it ends: a backend's
   * `tryAcquire`, granted through its own queue, or an option-free wait a primitive queues itself (its
   * grant, abort or rejection is counted by the queue's exits).
   */
  requested(): void {
    this.requests++;
  }

  /** @internal Counts `granted` grants made elsewhere before this limiter took over (a keyed key's light path). */
  adoptGrants(granted: number): void {
    this.requests += granted;
    this.counters.granted += granted;
  }

  /** Throws an Error naming the first broken invariant: the queue's, then the counters'. */
  assertInvariants(): void {
    const { granted, aborted, timedOut, rejected } = this.counters;
    const ended = granted + aborted + timedOut + rejected;
    if (ended + this.queue.size !== this.requests) {
      throw new Error(
        `admission invariant broken: every request counted once — ${this.requests} requests, ${ended} ended (granted ${granted}, aborted ${aborted}, timed out ${timedOut}, rejected ${rejected}) and ${this.queue.size} waiting`,
      );
    }
    // Last: the portable suite, which cannot install the queue's checks in the built package, skips them.
    this.queue.assertInvariants();
  }

  /** Grants `waiter` (a backend whose grants come from elsewhere), counting it. */
  grant(waiter: Waiter<Request, Grant>, grant: Grant): void {
    this.counters.granted++;
    this.queue.grant(waiter, grant);
    if (this.traced !== undefined) this.untrace(waiter, "acquired", undefined);
  }

  /**
   * Withdraws `waiter` because its signal aborted, found by a backend before its listener ran: the abort
   * came first, so it wins. Counted as aborted; the gate's `left` is not called (the backend knows).
   */
  withdrawAborted(waiter: Waiter<Request, Grant>, reason: unknown): void {
    this.counters.aborted++;
    this.queue.reject(waiter, reason);
    if (this.traced !== undefined) this.untrace(waiter, "aborted", reason);
  }

  /** Rejects `waiter` on the limiter's behalf (a shrink, a backend failure), counting it. */
  reject(waiter: Waiter<Request, Grant>, reason: unknown): void {
    this.counters.rejected++;
    this.queue.reject(waiter, reason);
    if (this.traced !== undefined) this.untrace(waiter, "rejected", reason);
  }

  /** Rejects every waiter with `reason` (clear, close), counting them. */
  rejectAll(reason: unknown | (() => unknown)): void {
    const make = typeof reason === "function" ? (reason as () => unknown) : () => reason;
    for (let waiter = this.queue.head; waiter !== undefined; waiter = this.queue.head) this.reject(waiter, make());
  }

  /** A queued request's event: `end` now, and the rest when `waiter` leaves (see `untrace`). */
  private trace(event: AcquireEvent, waiter: Waiter<Request, Grant>): void {
    (this.traced ??= new Map()).set(waiter, event);
    admitted(event, true);
  }

  /** Ends the event of `waiter`, if it was traced, as it leaves the queue. */
  private untrace(waiter: Waiter<Request, Grant>, outcome: AcquireOutcome, error: unknown): void {
    const traced = this.traced as Map<Waiter<Request, Grant>, AcquireEvent>;
    const event = traced.get(waiter);
    if (event === undefined) return;
    traced.delete(waiter);
    if (traced.size === 0) this.traced = undefined;
    endAcquire(event, outcome, error);
  }

  /**
   * Publishes `end` for a `timeout: 0` request whose last chance goes on in `promise` (or, `queued`, a wait
   * in two stages), and the end of the wait when it settles, classified as `countFailure` does. (The
   * reaction marks `promise` handled.)
   */
  private whenSettled(
    event: AcquireEvent | undefined,
    promise: Promise<Grant>,
    signal: AbortSignal | undefined,
  ): Promise<Grant> {
    if (event === undefined) return promise;
    admitted(event, false);
    return this.endWhenSettled(event, promise, signal);
  }

  /** Publishes the end of `event`'s wait when `promise` settles (see `whenSettled`); returns `promise`. */
  private endWhenSettled(
    event: AcquireEvent,
    promise: Promise<Grant>,
    signal: AbortSignal | undefined,
  ): Promise<Grant> {
    promise.then(
      () => endAcquire(event, "acquired"),
      (error: unknown) =>
        endAcquire(
          event,
          signal?.aborted && error === signal.reason
            ? "aborted"
            : error instanceof TimeoutError
              ? "timeout"
              : "rejected",
          error,
        ),
    );
    return promise;
  }

  /** `timeout: 0` where the limiter has a last chance to offer (see {@link Gate.tryNow}). */
  private async lastChance(request: Request, signal: AbortSignal | undefined): Promise<Grant> {
    const last = await (this.gate.tryNow as NonNullable<Gate<Request, Grant>["tryNow"]>)(request, signal);
    if (last !== undefined) return last;
    this.counters.timedOut++;
    throw new TimeoutError(0, this.queue.timeoutMessage(0));
  }

  private onLeave(waiter: Waiter<Request, Grant>, reason: CancelReason, wasHead: boolean, error: unknown): void {
    if (reason === "abort") this.counters.aborted++;
    else this.counters.timedOut++;
    if (this.traced !== undefined) this.untrace(waiter, reason === "abort" ? "aborted" : "timeout", error);
    this.gate.left?.(waiter, reason);
    // The head may have been what blocked the rest (head-of-line): the next one may fit now.
    if (wasHead) this.dispatch();
    this.afterLeave?.();
  }
}
