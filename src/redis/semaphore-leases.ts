/**
 * The permits one key of a RedisSemaphore holds here under the process's lease, and what a check-in
 * learns of that key: squaring what Redis holds with what this process believes, a state recreated
 * after a restart or a flush (its epoch), and the restart guard as Redis reports it. The lease itself,
 * the heartbeat and the check-in timers are the process's, shared by all keys (semaphore-process.ts).
 */

import type { LimiterIdentity } from "../core/diagnostics.js";
import { type ClosedError, LeaseLostError } from "../core/errors.js";
import type { SelfChecking } from "../core/wait-queue.js";
import type { LeasedPermit, LeaseKeeper } from "./permits.js";
import type { SemaphoreContext } from "./semaphore-context.js";
import type { GrantListener } from "./semaphore-grants.js";
import type { ProcessLease } from "./semaphore-process.js";
import type { RequestBatcher } from "./semaphore-requests.js";
import type { Ticket, TicketQueue, Tickets } from "./semaphore-tickets.js";

/** Keeps the permits of one key held here, under the process's lease. */
export class Leases implements LeaseKeeper, SelfChecking {
  /**
   * Permits granted and not released whose lease this process keeps alive, by fencing token.
   * Invariant: a permit is in here exactly while it is held and its lease is not known to be lost.
   */
  private readonly held = new Map<number, LeasedPermit>();
  /** Whether Redis last said the restart guard holds grants back (for the timeout message). */
  private guardSeen = false;
  /** Tokens Redis says we hold but we do not know, seen at the last heartbeat (see `reconcile`). */
  private orphanCandidates = new Set<number>();
  /** The epoch of the state in Redis last seen in a reply (see semaphore-scripts.ts); 0 before any. */
  private seenEpoch = 0;
  private requests!: RequestBatcher;
  private grants!: GrantListener;

  constructor(
    private readonly context: SemaphoreContext,
    /** What the permits' events name (see {@link LeaseKeeper}). */
    readonly identity: LimiterIdentity,
    private readonly tickets: Tickets,
    private readonly queue: TicketQueue,
    /** The process's lease, shared by every key. */
    readonly process: ProcessLease,
  ) {}

  /** The parts it hands tickets and grants to (made after it). */
  connect(requests: RequestBatcher, grants: GrantListener): void {
    this.requests = requests;
    this.grants = grants;
  }

  /** Milliseconds left before the local lease deadline (see {@link LeaseKeeper}). */
  leaseRemaining(): number {
    return this.process.remaining();
  }

  /** The synchronous check behind a permit's `leaseLost` and `signal` (see {@link ProcessLease.checkLease}). */
  checkLease(): void {
    this.process.checkLease();
  }

  /** Whether anything is held or waited for on this key. */
  active(): boolean {
    return this.held.size > 0 || this.tickets.size > 0 || this.queue.size > 0 || this.context.unsure > 0;
  }

  // ---- the permits held ---------------------------------------------------------------------------

  /** The epoch of the state in Redis last seen (see `onEpoch`). */
  get epoch(): number {
    return this.seenEpoch;
  }

  /** Weight held here. */
  get inUse(): number {
    let weight = 0;
    for (const permit of this.held.values()) weight += permit.weight;
    return weight;
  }

  /** Whether any permit is held here. */
  get holding(): boolean {
    return this.held.size > 0;
  }

  /** Whether the permit granted with `token` is held here. */
  holds(token: number): boolean {
    return this.held.has(token);
  }

  /** `permit` was just granted: its lease is kept from now on. */
  hold(permit: LeasedPermit): void {
    this.held.set(permit.fencingToken, permit);
    this.process.holding(1);
  }

  /** `permit` is being released while its lease holds: no longer kept. */
  letGo(permit: LeasedPermit): void {
    if (this.held.delete(permit.fencingToken)) this.process.holding(-1);
  }

  /** `permit` is lost: its signal aborts with `error`, and its token goes back to Redis (see `loseAll`). */
  private lose(permit: LeasedPermit, error: LeaseLostError): void {
    permit.loseLease(error);
    this.grants.discard(permit.fencingToken);
    if (this.held.get(permit.fencingToken) === permit && this.held.delete(permit.fencingToken)) {
      this.process.holding(-1);
    }
  }

  /**
   * Every permit held is lost: its signal aborts with `error`, and its token goes back to Redis (a no-op if
   * Redis already evicted it, and the weight back at once if it had not).
   */
  private loseAll(error: LeaseLostError): void {
    for (const permit of [...this.held.values()]) this.lose(permit, error);
  }

  /** `close()`: asks the holders to stop (their signals abort with `stopping`). */
  askToStop(stopping: ClosedError): void {
    for (const permit of this.held.values()) permit.askToStop(stopping);
  }

  /** `close()` gave up waiting: the permits still held are lost with `error`. */
  abandon(error: LeaseLostError): void {
    for (const permit of this.held.values()) {
      permit.loseLease(error);
      this.process.holding(-1);
    }
    this.held.clear();
  }

  /**
   * @internal Throws an Error naming the first broken invariant of `held`: each permit in it is filed
   * under its fencing token, not released, and its lease not known to be lost.
   */
  assertInvariants(): void {
    for (const [token, permit] of this.held) {
      const broken =
        permit.fencingToken !== token
          ? `a permit is kept under its fencing token; ${permit.fencingToken} is under ${token}`
          : !permit.isHeld
            ? `a permit kept under the lease is not released; ${token} is`
            : permit.lossReason !== undefined
              ? `a permit kept under the lease has not lost it; ${token} has`
              : undefined;
      if (broken !== undefined) throw new Error(`RedisSemaphore invariant broken: ${broken}`);
    }
  }

  // ---- the restart guard --------------------------------------------------------------------------

  /** Whether Redis last said the restart guard holds grants back. */
  get restartGuard(): boolean {
    return this.guardSeen;
  }

  /** The restart guard held a request back: check in once a lease has passed. */
  guardHolds(): void {
    this.guardSeen = true;
    this.process.guardHolds();
  }

  /** A `try` (tryAcquire, `timeout: 0`) was refused while the restart guard held grants back. */
  guardRefusedTry(): void {
    this.guardSeen = true;
  }

  /** Redis granted something: the restart guard no longer holds anyone back. */
  guardPassed(): void {
    this.guardSeen = false;
  }

  // ---- check-ins ----------------------------------------------------------------------------------

  /** Keeps the process's heartbeat going while anything is held or waited for. */
  scheduleHeartbeat(): void {
    this.process.scheduleHeartbeat();
  }

  /** Keeps the process's check-in timer while requests wait in Redis. */
  armCheck(): void {
    this.process.armCheck();
  }

  /** A check-in now, or right after the one in flight. */
  checkInSoon(): void {
    this.process.checkInSoon();
  }

  /** What this key believes Redis has at the moment a check-in is sent: the reply must agree. */
  checkingIn(): CheckInSnapshot {
    const queuedBefore = [...this.tickets.values()].filter((ticket) => ticket.seq !== undefined);
    return { heldBefore: [...this.held.values()], queuedBefore, listQueued: queuedBefore.length > 0 };
  }

  /**
   * This key's part of a check-in's reply, from `at` on (see HEARTBEAT): `ready, epoch, created, n, m, q`
   * and their values. `lost`: the process's lease had ended (everything was queued again already).
   * Returns where the next key's part starts.
   */
  checkedIn(reply: unknown[], at: number, before: CheckInSnapshot, lost: boolean, now: number): number {
    const [guardUntil, epoch, created, grants, holding, queued] = reply.slice(at, at + 6) as number[];
    const grantsEnd = at + 6 + (grants as number);
    const holdingEnd = grantsEnd + (holding as number);
    const end = holdingEnd + (queued as number);
    this.guardSeen = (guardUntil as number) > now;
    if (this.context.unsure > 0) this.context.unsure--;
    if (created === 1 && !lost) {
      // The key's state was gone (a restart, a flush, an expiry): what we held or queued there is not.
      this.seenEpoch = epoch as number;
      this.lapse(
        new LeaseLostError(
          `the state of ${this.context.subject()} in Redis was lost (a restart, a flush or an expiry): Redis no longer counts this permit`,
        ),
        true,
      );
    }
    this.grants.takeGrants(reply.slice(0, grantsEnd), at + 6);
    if (!lost && created !== 1) {
      this.reconcile(
        reply.slice(grantsEnd, holdingEnd),
        reply.slice(holdingEnd, end) as number[],
        epoch as number,
        before,
      );
    }
    return end;
  }

  /**
   * Squares what Redis holds for this process — `holding` as (token, ticket, slots) triples, `queued` as
   * ticket ids — with what it believed when the check-in was sent:
   * - a grant to a ticket still waiting here is delivered now. Its notice was lost (published while
   *   the notice connection was down or not yet subscribed) or is late; either way the waiter must not
   *   wait for it any longer. This is what makes the check-ins a real safety net: a missed wake-up
   *   costs at most one `wakeTimeout`, never a hang. A late notice then finds the grant delivered.
   * - a token no permit here carries and no ticket here waits for: a grant whose reply was lost (a
   *   timeout, a dropped connection). Our lease would keep it alive forever, so it is released — but only
   *   when seen at two heartbeats in a row, because a reply may be on its way for a fresh one.
   * - a permit held here whose token Redis no longer has: its state was lost (a restart, a flush, an
   *   expiry) or it was evicted, and others may be granted its weight. The permit is lost.
   * - a ticket queued here that Redis neither queues nor granted: lost with its state (its epoch has
   *   changed), or passed over because its notice found nobody listening (seen missing twice with the same
   *   epoch, since once may be a refusal whose notice is on its way). It is queued again, and with it every
   *   later ticket of this process, so that the process's own callers keep their order.
   */
  private reconcile(
    holding: unknown[],
    queued: number[],
    epoch: number,
    before: { heldBefore: LeasedPermit[]; queuedBefore: Ticket[] },
  ): void {
    const candidates = new Set<number>();
    const tokens = new Set<number>();
    for (let index = 0; index + 2 < holding.length; index += 3) {
      const token = holding[index] as number;
      const id = holding[index + 1] as number;
      tokens.add(token);
      if (this.held.has(token)) continue;
      if (id !== 0 && this.tickets.has(id)) {
        this.grants.onGrant(id, token, holding[index + 2]);
        continue;
      }
      if (this.orphanCandidates.has(token)) this.grants.discard(token);
      else candidates.add(token);
    }
    this.orphanCandidates = candidates;
    for (const permit of before.heldBefore) {
      if (tokens.has(permit.fencingToken) || this.held.get(permit.fencingToken) !== permit) continue;
      this.lose(
        permit,
        new LeaseLostError(
          `${this.context.subject()} no longer counts this permit (fencing token ${permit.fencingToken}): its state in Redis was lost (a restart, a flush or an expiry) or its lease was evicted`,
        ),
      );
    }
    const inQueue = new Set(queued);
    const lost = this.onEpoch(epoch);
    for (const ticket of before.queuedBefore) {
      if (this.tickets.get(ticket.id) !== ticket || inQueue.has(ticket.id) || lost.has(ticket)) {
        ticket.missed = 0;
        continue;
      }
      ticket.missed++;
      if (ticket.epoch !== epoch || ticket.missed >= 2) lost.add(ticket);
    }
    if (lost.size > 0) this.requests.requeue(lost);
  }

  /**
   * A reply carried the state's epoch. If it changed, the state was recreated (a restart, a flush, an
   * expiry): the permits and tickets of the old one are gone. The permits are lost now; the tickets are
   * returned for the caller to queue again (with `requeue`, together with any it found itself).
   */
  onEpoch(epoch: number): Set<Ticket> {
    const lost = new Set<Ticket>();
    if (epoch === this.seenEpoch) return lost;
    const known = this.seenEpoch !== 0;
    this.seenEpoch = epoch;
    if (!known) return lost;
    const gone = new LeaseLostError(
      `the state of ${this.context.subject()} in Redis was lost (a restart, a flush or an expiry): Redis no longer counts this permit`,
    );
    for (const permit of [...this.held.values()]) if (permit.epoch !== epoch) this.lose(permit, gone);
    for (const ticket of this.tickets.values()) {
      if (ticket.seq !== undefined && ticket.epoch !== epoch) lost.add(ticket);
    }
    return lost;
  }

  // ---- losing the lease ---------------------------------------------------------------------------

  /**
   * The lease ended (`evicted`: Redis said so) or may have (the local deadline passed), or this key's
   * state was lost: every permit of this key is lost, and every ticket queued in Redis queues again in
   * local order (see `RequestBatcher.requeueAll`).
   */
  lapse(error: LeaseLostError, evicted: boolean): void {
    this.loseAll(error);
    this.requests.requeueAll(evicted);
  }
}

/** What a key believed when a check-in was sent (see `Leases.checkingIn`). */
export interface CheckInSnapshot {
  heldBefore: LeasedPermit[];
  queuedBefore: Ticket[];
  listQueued: boolean;
}
