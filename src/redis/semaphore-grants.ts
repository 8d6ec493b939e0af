/**
 * The grant listener of one key of a RedisSemaphore: hands each grant it hears of — by notice (the
 * process's one subscription passes it on, see semaphore-process.ts), in script replies, from check-ins
 * — to its waiter as a permit, and takes permits back.
 *
 * A notice names the request by this process's own number for it (not Redis' seq), because it can
 * arrive before the reply of the acquire that queued it. A release frees the weight in Redis and hands it
 * to the tickets that now fit, writing a notice on each receiving process's channel (grants to the
 * releasing process come back in the reply instead).
 */

import type { Admission } from "../core/admission.js";
import { LeaseLostError } from "../core/errors.js";
import type { Permit } from "../core/limiter.js";
import { LeasedPermit, parseSlots } from "./permits.js";
import { redisNumber, type SemaphoreContext } from "./semaphore-context.js";
import type { Leases } from "./semaphore-leases.js";
import type { RequestBatcher } from "./semaphore-requests.js";
import { findWaiter, type Ticket, type Tickets } from "./semaphore-tickets.js";

/** Delivers a key's grants to its waiters, and gives its permits back to Redis. */
export class GrantListener {
  /** The last fencing token granted here, for statistics. */
  private lastGranted: number | undefined = undefined;
  /** A permit goes back through here: one function for every permit of this semaphore. */
  private readonly giveBackPermit = (permit: LeasedPermit): Promise<void> => this.releasePermit(permit);
  private requests!: RequestBatcher;

  constructor(
    private readonly context: SemaphoreContext,
    private readonly tickets: Tickets,
    private readonly admission: Admission<Ticket, Permit>,
    private readonly leases: Leases,
  ) {}

  /** The part that submits tickets again (made after this one). */
  connect(requests: RequestBatcher): void {
    this.requests = requests;
  }

  /** The last fencing token granted here, or undefined before any. */
  get lastToken(): number | undefined {
    return this.lastGranted;
  }

  /**
   * Grants Redis made to this process, returned in a script reply from `offset` on as (ticket, token,
   * slots) triples.
   */
  takeGrants(reply: unknown[], offset: number): void {
    for (let index = offset; index + 2 < reply.length; index += 3) {
      this.onGrant(reply[index] as number, reply[index + 1] as number, reply[index + 2]);
    }
  }

  /**
   * Redis granted ticket `id` with `token` (0: refused as too heavy for the shared capacity) and `slots`.
   * The same grant may be delivered twice — by its notice and by a heartbeat that found it undelivered —
   * so this must be idempotent: the first delivery wins, a repeat is ignored.
   */
  onGrant(id: number, token: number, slots: unknown): void {
    const ticket = this.tickets.get(id);
    if (ticket === undefined) {
      // Cancelled here while Redis granted it, or from before a lost lease: give it back — unless this
      // is a repeat of a grant already delivered and still held (releasing it would free a permit in use;
      // once its permit is released, releasing the token again does nothing).
      if (token !== 0 && !this.leases.holds(token)) this.discard(token);
      return;
    }
    this.tickets.untrack(ticket);
    if (token !== 0) this.leases.guardPassed();
    // A notice can overtake the reply of the acquire that wrote our lease; without this, a first grant
    // would meet a lease deadline in the past and the watchdog would take the permit for lost at once.
    if (ticket.registeredAt !== undefined) this.leases.process.written(ticket.registeredAt);
    const waiter = findWaiter(this.admission.queue, ticket);
    if (waiter === undefined) {
      if (token !== 0) this.discard(token);
    } else if (token === 0) {
      this.admission.reject(
        waiter,
        new RangeError(
          `weight ${ticket.weight} is above the capacity another process set for ${this.context.subject()}`,
        ),
      );
    } else if (!this.leases.process.current()) {
      // The grant was read after our lease may have lapsed (a freeze, a slow Redis): Redis may have
      // evicted it and given the weight to someone else. Never hand it over as valid; give it back and
      // queue the caller again, and renew the lease at once.
      this.discard(token);
      this.requests.submit(ticket);
      this.leases.checkInSoon();
    } else {
      this.admission.grant(
        waiter,
        this.makePermit(ticket.weight, token, parseSlots(slots), waiter.cancellation?.signal),
      );
    }
  }

  /** The permit for a grant of `weight` with `token` and `slots`, held under this process's lease. */
  makePermit(weight: number, token: number, slots: number[], signal: AbortSignal | undefined): LeasedPermit {
    const permit = new LeasedPermit(weight, token, slots, signal, this.leases.epoch, this.leases, this.giveBackPermit);
    this.lastGranted = token;
    this.leases.hold(permit);
    return permit;
  }

  /**
   * A permit's release (its give-back function). Resolves when Redis took the permit back while it still
   * held it; rejects with LeaseLostError when the lease was lost first. The deadline is checked first,
   * while the permit still counts as held, so a lapse is not missed.
   */
  private releasePermit(permit: LeasedPermit): Promise<void> {
    permit.unlink();
    this.leases.checkLease();
    const lost = permit.lossReason;
    if (lost !== undefined) {
      // Whatever lost it gave its token back to Redis already (see `Leases.lose`).
      return Promise.reject(this.context.releasedLostError(permit, lost));
    }
    this.leases.letGo(permit);
    return this.releaseToken(permit.fencingToken).then((removed) => {
      if (removed) return;
      // Redis no longer held it: evicted after a lapse no timer of ours caught, or its state was lost.
      const gone = new LeaseLostError(
        `${this.context.subject()} no longer held this permit when it was released: its lease ended (or Redis lost its state) while it was held`,
      );
      permit.loseLease(gone);
      throw this.context.releasedLostError(permit, gone);
    });
  }

  /**
   * Gives back a grant nobody here will use (its caller left, or it was never heard of). If Redis cannot
   * be reached, the lease (or the orphan sweep) returns it later; nothing to report to anyone.
   */
  discard(token: number): void {
    this.releaseToken(token).catch(() => undefined);
  }

  /** Releases `token` in Redis; resolves whether Redis still held it. */
  private releaseToken(token: number): Promise<boolean> {
    return this.context.call(this.context.scripts.release, [redisNumber(token)], "release").then((reply) => {
      this.takeGrants(reply as unknown[], 1);
      return (reply as unknown[])[0] === 1;
    });
  }
}
