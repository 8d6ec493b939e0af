/**
 * One key of a Redis semaphore in this process: its local callers (the admission step and its queue),
 * their tickets, the requests that take them to Redis, the grants that come back and the permits held
 * under the process's lease. A RedisSemaphore is one such key; a RedisKeyedSemaphore has one for each
 * key it holds or waits on, and none once the key is idle. None has a timer or a subscription of its
 * own: those are the process's, shared by every key (see semaphore-process.ts).
 */

import { Admission, type LimiterStatistics } from "../core/admission.js";
import { checkFunction, checkWeight } from "../core/arguments.js";
import type { LimiterIdentity } from "../core/diagnostics.js";
import { ClosedError, LeaseLostError } from "../core/errors.js";
import type { AcquireOptions, Permit } from "../core/limiter.js";
import { runHolding } from "../core/permit.js";
import { type CheckedAcquireOptions, checkAcquireOptions } from "../core/wait-options.js";
import type { SelfChecking, WaitQueue } from "../core/wait-queue.js";
import type { RedisPermit } from "./permits.js";
import type { SemaphoreContext } from "./semaphore-context.js";
import { GrantListener } from "./semaphore-grants.js";
import { Leases } from "./semaphore-leases.js";
import type { ProcessLease } from "./semaphore-process.js";
import { RequestBatcher } from "./semaphore-requests.js";
import { type Ticket, Tickets } from "./semaphore-tickets.js";

/** A key's figures as this process sees them (see `RedisSemaphoreStatistics`). */
export interface KeyStatistics extends LimiterStatistics {
  lastFencingToken: number | undefined;
  restartGuard: boolean;
}

/** The parts of one key, made together and told of one another. */
export class SemaphoreKey {
  /** The admission step; its queue holds this process's callers (the order that counts is Redis'). */
  readonly admission: Admission<Ticket, Permit>;
  /** Local callers waiting; abort and timeout are handled here, the order that counts is Redis'. */
  readonly queue: WaitQueue<Ticket, Permit>;
  /** The submissions not yet granted. */
  readonly tickets: Tickets;
  /** Acquiring: takes the callers to Redis (and back out). */
  readonly requests: RequestBatcher;
  /** Releasing and waking: hands grants over; takes permits back. */
  readonly grants: GrantListener;
  /** The permits held here under the process's lease, and what check-ins learn of this key. */
  readonly leases: Leases;

  constructor(
    readonly context: SemaphoreContext,
    process: ProcessLease,
    identity: LimiterIdentity,
  ) {
    this.tickets = new Tickets(process);
    this.admission = new Admission<Ticket, Permit>(
      {
        impossible: (ticket) =>
          context.closed
            ? context.closedError()
            : ticket.weight > context.capacity
              ? context.tooHeavy(ticket.weight)
              : undefined,
        // Only Redis knows: every request goes there (`enqueued`), where it is granted at once or queued.
        fits: () => false,
        take: () => {
          throw new Error("sluice internal error: a Redis semaphore grants through Redis");
        },
        enqueued: (ticket) => this.requests.submit(ticket),
        tryNow: (ticket, signal) => this.requests.acquireIfFree(ticket, signal),
        left: (waiter) => this.requests.forget(waiter.request),
        weight: (ticket) => ticket.weight,
      },
      context.clock,
      // Read when a wait times out: a wait the restart guard caused must say so, or it looks like a hang.
      () =>
        this.leases.restartGuard
          ? `${context.subject()} (held back by the restart guard: the semaphore's state was missing on a Redis server that started less than one lease ago, so nothing is granted until a lease has passed since it started; see guardRestarts and inspect().guardRemaining)`
          : context.subject(),
      undefined,
      identity,
    );
    this.queue = this.admission.queue;
    // The parts call one another (a grant may queue a caller again, a check-in may deliver a grant):
    // each is made with what it needs at once, and told of the ones made after it.
    this.leases = new Leases(context, identity, this.tickets, this.queue, process);
    this.grants = new GrantListener(context, this.tickets, this.admission, this.leases);
    this.requests = new RequestBatcher(context, this.tickets, this.admission, this.leases, this.grants);
    this.leases.connect(this.requests, this.grants);
    this.grants.connect(this.requests);
  }

  /** Whether nothing is held, waited for or asked here: the key can be forgotten. */
  get idle(): boolean {
    return !this.leases.active();
  }

  /** This key's figures, without a round trip. */
  statistics(name: string): KeyStatistics {
    const inUse = this.leases.inUse;
    const capacity = this.context.capacity;
    return {
      name,
      capacity,
      available: capacity - inUse,
      inUse,
      waiting: this.queue.size,
      ...this.admission.counters,
      lastFencingToken: this.grants.lastToken,
      restartGuard: this.leases.restartGuard,
    };
  }

  /** As `RedisSemaphore.acquire`. */
  acquire(options?: AcquireOptions): Promise<RedisPermit> {
    let checked: CheckedAcquireOptions;
    try {
      checked = checkAcquireOptions(options);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.admission.admit(this.tickets.create(checked.weight, checked.priority), checked) as Promise<RedisPermit>;
  }

  /** As `RedisSemaphore.tryAcquire`. */
  async tryAcquire(weight: number): Promise<RedisPermit | undefined> {
    checkWeight(weight);
    if (weight > this.context.capacity) throw this.context.tooHeavy(weight);
    if (this.context.closed) throw this.context.closedError();
    // A caller of this process who asked first may still be on the way to Redis (batched to the end of
    // the tick, or subscribing): Redis cannot see it yet, so the line is checked here too.
    if (!this.queue.isFirstInLine(0)) return undefined;
    const permit = await this.requests.tryInRedis(weight, 0, undefined, "tryAcquire");
    if (permit !== undefined) this.admission.grantedNow();
    return permit;
  }

  /** As `RedisSemaphore.run`. */
  async run<T>(
    fn: (signal: AbortSignal, permit: RedisPermit) => T | PromiseLike<T>,
    options?: AcquireOptions,
  ): Promise<T> {
    checkFunction(fn, "fn");
    const permit = await this.acquire(options);
    try {
      // Its release rejects with LeaseLostError when the lease was lost, whatever fn returned.
      return await runHolding(fn, permit);
    } catch (error) {
      // fn failed under a lost lease: what the caller needs to know first is that the lease was lost.
      if (permit.leaseLost && !(error instanceof LeaseLostError)) throw this.context.lostError(permit, error);
      throw error;
    }
  }

  /** `close()`'s first step: the waiters reject with ClosedError, acquires in flight undo themselves. */
  shut(): void {
    const error = this.context.closedError();
    this.queue.forEachRequest((ticket) => ticket.fallback?.abort());
    this.admission.rejectAll(error);
    // An acquire still in flight then undoes itself when its reply comes (onSubmitted).
    this.tickets.cancelAll();
  }

  /** `close()` gave up waiting: the permits still held are lost. */
  abandon(timeout: number): void {
    this.leases.abandon(
      new LeaseLostError(
        `${this.context.subject()} was closed before this permit was released (close() waited ${timeout} ms for it)`,
      ),
    );
  }

  /** `close()`: what holders are told to stop with. */
  stopping(): ClosedError {
    return new ClosedError(`${this.context.subject()} is closing: stop the work and release the permit`);
  }

  /** @internal For the model tests: the admission, the tickets and the permits kept under the lease. */
  selfChecks(): readonly SelfChecking[] {
    return [this.admission, { assertInvariants: () => this.tickets.assertInvariants(this.queue) }, this.leases];
  }
}
