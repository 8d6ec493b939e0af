/**
 * The request batcher of a RedisSemaphore: takes this process's callers to Redis, and back out of it.
 *
 * One acquire script grants at once when a request fits and nobody waits ahead, or puts a ticket in
 * the Redis queue (FIFO within a priority, across all processes). Requests made in the same tick go in
 * one script. A ticket whose caller left is taken out of the Redis queue; tickets Redis lost (a restart,
 * a flush, a lapsed lease) are submitted again in this process's own order. When Redis cannot be
 * reached, `onUnavailable` decides.
 */

import type { Admission } from "../core/admission.js";
import type { Permit } from "../core/limiter.js";
import type { Waiter } from "../core/wait-queue.js";
import { RedisUnavailableError } from "./errors.js";
import { FallbackPermit, type LeasedPermit, parseSlots } from "./permits.js";
import { redisNumber, type SemaphoreContext } from "./semaphore-context.js";
import type { GrantListener } from "./semaphore-grants.js";
import type { Leases } from "./semaphore-leases.js";
import { findWaiter, localOrder, type Ticket, type Tickets } from "./semaphore-tickets.js";

/**
 * The batcher of this process whose requests of the current tick are not sent yet, if any (see
 * `submit`): at most one at a time, so batching never reorders requests across semaphores.
 */
let gathering: RequestBatcher | undefined;

/** Sends a RedisSemaphore's requests to Redis, a tick's worth at a time, and undoes them. */
export class RequestBatcher {
  /** Tickets were queued again since the last flush: the next batch is put back in local order. */
  private reordered = false;
  /** Tickets submitted in this tick, sent together by `flush` (a microtask). */
  private unsent: Ticket[] = [];

  constructor(
    private readonly context: SemaphoreContext,
    private readonly tickets: Tickets,
    private readonly admission: Admission<Ticket, Permit>,
    private readonly leases: Leases,
    private readonly grants: GrantListener,
  ) {}

  /**
   * Queues a local caller's request for Redis. Requests made in the same tick go in one acquire script
   * (see `flush`): a burst of a thousand callers costs one round trip, not a thousand.
   */
  submit(ticket: Ticket): void {
    this.tickets.track(ticket);
    // Another semaphore of this process gathering requests in this tick sends them first, so requests
    // reach Redis in the order they were made here even when semaphores take turns within a tick.
    if (gathering !== undefined && gathering !== this) gathering.flush();
    gathering = this;
    this.unsent.push(ticket);
    if (this.unsent.length === 1) queueMicrotask(this.flush);
  }

  /**
   * Sends the requests gathered by `submit`, in their order, as one script. A caller that left before
   * this (abort or timeout in the same tick) is simply not sent.
   */
  private readonly flush = (): void => {
    if (gathering === this) gathering = undefined;
    if (this.unsent.length === 0) return;
    // This batch will write our lease again; tickets queued under a lease that may have lapsed (a freeze)
    // may have been evicted without Redis saying so later, so they go again, in this batch, ahead.
    if (this.tickets.queuedInRedis > 0) this.leases.checkLease();
    const batch = this.unsent;
    this.unsent = [];
    if (gathering === this) gathering = undefined;
    if (this.reordered) {
      this.reordered = false;
      batch.sort(localOrder);
    }
    if (this.context.closed || !batch.some((ticket) => this.tickets.isWaiting(ticket))) return;
    const lease = this.leases.process;
    if (lease.listening) {
      this.send(batch);
      return;
    }
    // The first time: listen for notices before any request of ours can be queued, so no notice is
    // published before the subscription can hear it.
    lease.subscribe().then(
      () => this.send(batch),
      (error: unknown) => {
        for (const ticket of batch) if (this.tickets.isWaiting(ticket)) this.onSubmitFailed(ticket, error);
      },
    );
  };

  /** Sends one acquire script for the requests of `all` whose callers still wait. */
  private send(all: readonly Ticket[]): void {
    const { context, tickets, leases, grants } = this;
    const batch = all.filter((ticket) => tickets.isWaiting(ticket));
    if (batch.length === 0 || context.closed) return;
    const sentAt = context.clock.now();
    const register = leases.process.mustRegister(sentAt);
    const args: (string | number)[] = ["wait", register ? "1" : "0"];
    for (const ticket of batch) {
      ticket.registeredAt = register ? sentAt : undefined;
      args.push(ticket.weight, redisNumber(ticket.priority === 0 ? 0 : -ticket.priority), ticket.id);
    }
    context
      .call(context.scripts.acquire, args, "acquire", (late) => this.undoAcquire(late as unknown[], batch))
      .then(
        (value) => {
          const reply = value as unknown[];
          if (register) leases.process.written(sentAt);
          const epoch = reply[1] as number;
          const lost = leases.onEpoch(epoch);
          grants.takeGrants(reply, 2 + 4 * batch.length);
          for (const [index, ticket] of batch.entries()) {
            const at = 2 + 4 * index;
            ticket.epoch = epoch;
            if (ticket.behind && tickets.isWaiting(ticket)) {
              // Callers who asked before it were queued again after it was sent: it goes behind them.
              ticket.behind = false;
              if (reply[at] === 1) grants.discard(reply[at + 1] as number);
              else if (reply[at] === 2) {
                ticket.seq = reply[at + 1] as number;
                this.cancelTicket(ticket);
                ticket.seq = undefined;
              }
              tickets.untrack(ticket);
              this.resubmit([ticket]);
            } else if (lost.size > 0 && reply[at] === 1 && tickets.isWaiting(ticket)) {
              // Granted by a state recreated after a restart or a flush, while callers of ours who asked
              // earlier were queued in the old one: it goes back, and everyone queues again in order.
              grants.discard(reply[at + 1] as number);
              lost.add(ticket);
            } else {
              this.onSubmitted(
                ticket,
                reply[at] as number,
                reply[at + 1] as number,
                reply[at + 2] as number,
                reply[at + 3],
              );
            }
          }
          if (lost.size > 0) this.requeue(lost);
        },
        (error: unknown) => {
          for (const ticket of batch) this.onSubmitFailed(ticket, error);
        },
      );
  }

  /**
   * The acquire script's answer for one request: `status` 1 granted (`value` the token, `slots` its
   * slots), 2 queued (`value` its seq, `guardUntil` the restart guard's end).
   */
  private onSubmitted(ticket: Ticket, status: number, value: number, guardUntil: number, slots: unknown): void {
    if (status === 1) {
      // Granted at once: the grant is in this reply, not in a notice.
      this.grants.onGrant(ticket.id, value, slots);
      return;
    }
    if (!this.tickets.queued(ticket, value)) {
      // Its caller left while the script was in flight: take the ticket out of the Redis queue (if it
      // was granted meanwhile, the grant was or will be given back by onGrant). Otherwise the grant
      // overtook this reply and was delivered already: nothing left to do.
      if (ticket.cancelled) this.cancelTicket(ticket);
      return;
    }
    if (guardUntil > 0) this.leases.guardHolds();
    this.leases.armCheck();
    this.leases.scheduleHeartbeat();
  }

  private onSubmitFailed(ticket: Ticket, error: unknown): void {
    if (ticket.cancelled) return;
    // Whatever Redis did with this submission, undoAcquire undoes it if the reply still comes: a grant
    // notice for it must find nobody.
    this.tickets.untrack(ticket);
    const waiter = findWaiter(this.admission.queue, ticket);
    if (waiter !== undefined) this.fallBack(waiter, ticket, error);
  }

  /**
   * An acquire that answered after its deadline: give back whatever it took. `batch` holds the tickets
   * it carried (empty for a `try`, whose grant nobody here knows of).
   */
  private undoAcquire(reply: unknown[], batch: readonly Ticket[]): void {
    const n = reply[0] as number;
    this.grants.takeGrants(reply, 2 + 4 * n);
    for (let index = 0; index < n; index++) {
      const at = 2 + 4 * index;
      const ticket = batch[index];
      if (reply[at] === 1) this.grants.discard(reply[at + 1] as number);
      else if (reply[at] === 2 && ticket !== undefined) {
        ticket.seq = reply[at + 1] as number;
        this.cancelTicket(ticket);
      }
    }
  }

  // ---- one round trip, no queueing ------------------------------------------------------------------

  /**
   * `timeout: 0` through the admission step: one round trip that grants if Redis can now, without
   * queueing (or the `onUnavailable` fallback's answer when Redis cannot be reached). `undefined`:
   * refused, which the admission step reports as a timeout.
   */
  async acquireIfFree(ticket: Ticket, signal: AbortSignal | undefined): Promise<Permit | undefined> {
    // As in tryAcquire: a caller here who asked first is ahead, whether or not Redis has seen it yet.
    if (!this.admission.queue.isFirstInLine(ticket.priority)) return undefined;
    const onUnavailable = this.context.onUnavailable;
    let permit: Permit | undefined;
    try {
      permit = await this.tryInRedis(ticket.weight, ticket.priority, signal, "acquire");
    } catch (error) {
      if (!(error instanceof RedisUnavailableError) || onUnavailable === "fail") throw error;
      const { weight, priority } = ticket;
      permit =
        onUnavailable === "allow"
          ? new FallbackPermit(weight, undefined, signal)
          : new FallbackPermit(
              weight,
              await onUnavailable.acquire({ weight, priority, signal, timeout: 0 }),
              undefined,
            );
    }
    // The admission step counted the request; its grant is counted here, where it is made.
    if (permit !== undefined) this.admission.counters.granted++;
    return permit;
  }

  /**
   * One `try` acquire script (`tryAcquire`, `timeout: 0`): the permit if Redis granted it at once and the
   * grant is still good when its reply is read (counted as granted), otherwise `undefined`.
   */
  async tryInRedis(
    weight: number,
    priority: number,
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<LeasedPermit | undefined> {
    const { context, leases } = this;
    const sentAt = context.clock.now();
    const register = leases.process.mustRegister(sentAt);
    const reply = (await context.call(
      context.scripts.acquire,
      ["try", register ? "1" : "0", weight, redisNumber(priority === 0 ? 0 : -priority), 0],
      what,
      (late) => this.undoAcquire(late as unknown[], []),
    )) as unknown[];
    if (register) leases.process.written(sentAt);
    this.requeue(leases.onEpoch(reply[1] as number));
    this.grants.takeGrants(reply, 6);
    if (reply[2] !== 1) {
      // Refused while the restart guard holds grants back: a `timeout: 0` refusal must say why.
      if ((reply[4] as number) > 0) leases.guardRefusedTry();
      return undefined;
    }
    // A reply read after a freeze longer than the lease may carry a grant Redis has since evicted.
    const permit = this.grantNowUnlessLapsed(weight, reply[3] as number, parseSlots(reply[5]), signal);
    return permit;
  }

  /**
   * A grant in the reply of an acquire that does not queue (`tryAcquire`, `timeout: 0`), or `undefined`
   * when the lease may have lapsed before the reply was read (the grant is given back). If `close()` came
   * while it was in flight, its "leave" has evicted the grant already (it went out right behind the
   * acquire): a permit now would hold weight Redis no longer counts.
   */
  private grantNowUnlessLapsed(
    weight: number,
    token: number,
    slots: number[],
    signal: AbortSignal | undefined,
  ): LeasedPermit | undefined {
    if (this.context.closed) {
      this.grants.discard(token);
      throw this.context.closedError();
    }
    if (!this.leases.process.current()) {
      this.grants.discard(token);
      this.leases.checkInSoon();
      return undefined;
    }
    return this.grants.makePermit(weight, token, slots, signal);
  }

  // ---- leaving and queueing again -----------------------------------------------------------------

  /**
   * The caller of `ticket` is leaving (or has left) the local queue: a grant for it from now on is given
   * back, and the ticket leaves the Redis queue — now if its seq is known, else when the acquire's reply
   * brings it (onSubmitted).
   */
  forget(ticket: Ticket): void {
    // Also when it left Redis already (failWaiters): a fallback acquire for it must not wait on.
    ticket.fallback?.abort();
    if (ticket.cancelled) return;
    ticket.cancelled = true;
    this.tickets.untrack(ticket);
    if (ticket.seq !== undefined) this.cancelTicket(ticket);
  }

  /** Takes a ticket out of the Redis queue at once, so it does not hold up the processes behind it. */
  private cancelTicket(ticket: Ticket): void {
    const { context } = this;
    const seq = ticket.seq as number;
    const member = `${String(seq).padStart(16, "0")}:${ticket.weight}:${ticket.id}:${context.client}`;
    context.call(context.scripts.cancel, [member], "cancel").then(
      (reply) => this.grants.takeGrants(reply as unknown[], 1),
      // If Redis is unreachable, the ticket goes when our lease does, or is released when granted.
      () => undefined,
    );
  }

  /**
   * Queues again the tickets in `lost`, which Redis no longer has (or never will grant), and every ticket
   * of this process queued behind the first of them (taken out of the Redis queue first), in local order:
   * a process's own callers keep their order across a restart.
   */
  requeue(lost: ReadonlySet<Ticket>): void {
    if (lost.size === 0) return;
    const again: Ticket[] = [];
    this.admission.queue.forEach((waiter) => {
      const ticket = waiter.request;
      if (!this.tickets.tracks(ticket)) return;
      if (lost.has(ticket) || (again.length > 0 && ticket.seq !== undefined)) again.push(ticket);
    });
    for (const ticket of again) {
      this.tickets.untrack(ticket);
      if (!lost.has(ticket)) this.cancelTicket(ticket);
      ticket.missed = 0;
    }
    this.resubmit(again);
  }

  /**
   * Our lease ended (`evicted`: Redis said so) or may have: every ticket queued in Redis queues again in
   * local order — taken out of Redis first unless Redis evicted it already. (Acquires still in flight
   * queue under the lease they write.)
   */
  requeueAll(evicted: boolean): void {
    const again: Ticket[] = [];
    this.admission.queue.forEach((waiter) => {
      const ticket = waiter.request;
      if (ticket.seq !== undefined && this.tickets.tracks(ticket)) again.push(ticket);
    });
    for (const ticket of again) {
      this.tickets.untrack(ticket);
      if (!evicted) this.cancelTicket(ticket);
    }
    this.resubmit(again);
  }

  /**
   * Submits `again` anew, in local order. Each gets a new id: a late notice for its old one then finds
   * nobody. Acquires in flight for later callers of this process are marked to queue again behind them
   * once their replies come (see `Ticket.behind`).
   */
  private resubmit(again: readonly Ticket[]): void {
    if (again.length === 0) return;
    const first = again.reduce((earliest, ticket) => (localOrder(ticket, earliest) < 0 ? ticket : earliest));
    const unsent = new Set(this.unsent);
    for (const ticket of this.tickets.values()) {
      if (ticket.seq === undefined && !unsent.has(ticket) && localOrder(ticket, first) > 0) {
        ticket.behind = true;
      }
    }
    for (const ticket of again) this.submit(ticket);
    this.reordered = true;
  }

  // ---- Redis unreachable --------------------------------------------------------------------------

  /** Redis cannot be reached while callers wait: every waiter learns it now, as `onUnavailable` says. */
  failWaiters(error: unknown): void {
    const reason =
      error instanceof RedisUnavailableError
        ? error
        : new RedisUnavailableError("Redis is unavailable", { cause: error });
    for (const ticket of [...this.tickets.values()]) {
      // Acquires still in flight fail (or succeed) on their own.
      if (ticket.seq === undefined) continue;
      const waiter = findWaiter(this.admission.queue, ticket);
      // Best effort: if Redis is only slow, the ticket leaves now; if it is gone, it goes with our lease.
      this.forget(ticket);
      // The caller learns it as a caller whose acquire could not reach Redis does: by `onUnavailable`.
      if (waiter !== undefined) this.fallBack(waiter, ticket, reason);
    }
  }

  /** Redis could not admit `waiter`, which is no longer in `tickets`: `onUnavailable` decides. */
  private fallBack(waiter: Waiter<Ticket, Permit>, ticket: Ticket, error: unknown): void {
    const policy = this.context.onUnavailable;
    const admission = this.admission;
    if (!(error instanceof RedisUnavailableError) || policy === "fail") {
      admission.reject(waiter, error);
    } else if (policy === "allow") {
      admission.grant(waiter, new FallbackPermit(ticket.weight, undefined, waiter.cancellation?.signal));
    } else {
      // The waiter stays in the local queue (its timeout and signal still apply) until the fallback admits.
      // When it leaves first (abort, timeout, close), `fallback` withdraws the fallback's waiter too, so a
      // busy fallback does not collect callers that are gone.
      const leaving = new AbortController();
      ticket.fallback = leaving;
      const caller = waiter.cancellation?.signal;
      const signal = caller === undefined ? leaving.signal : AbortSignal.any([caller, leaving.signal]);
      let admitting: Promise<Permit>;
      try {
        admitting = Promise.resolve(policy.acquire({ weight: ticket.weight, priority: ticket.priority, signal }));
      } catch (error) {
        // A Limiter of the user's own that throws instead of rejecting: the caller hears of it the same way.
        admitting = Promise.reject(error);
      }
      admitting.then(
        (permit) => {
          ticket.fallback = undefined;
          if (waiter.queued) admission.grant(waiter, new FallbackPermit(ticket.weight, permit, undefined));
          else Promise.resolve(permit.release()).catch(() => undefined);
        },
        (fallbackError: unknown) => {
          ticket.fallback = undefined;
          if (waiter.queued) admission.reject(waiter, fallbackError);
        },
      );
    }
  }
}
