/**
 * The lease keeper of a RedisSemaphore: the permits held here under this process's lease, the heartbeat
 * that renews it, the check-ins that square what Redis holds with what this process believes, what
 * happens when the lease is lost, and the restart guard as Redis reports it.
 *
 * One lease per process covers all its permits and tickets, renewed by a heartbeat every third of the
 * lease. The lease is good locally until a conservative deadline on the monotonic clock (see
 * {@link LocalLease}), checked where it matters, synchronously: a permit's `leaseLost`, `signal` and
 * `release()`, and every grant before it is handed over. A process frozen past its lease (a GC pause,
 * a VM stall, SIGSTOP) thus learns it lost its permits at its first look after it thaws, before any
 * timer has had a chance to run.
 */

import type { TimerHandle } from "../core/clock.js";
import type { LimiterIdentity } from "../core/diagnostics.js";
import { type ClosedError, LeaseLostError } from "../core/errors.js";
import type { SelfChecking } from "../core/wait-queue.js";
import { LocalLease } from "./lease.js";
import type { LeasedPermit, LeaseKeeper } from "./permits.js";
import type { SemaphoreContext } from "./semaphore-context.js";
import type { GrantListener } from "./semaphore-grants.js";
import type { RequestBatcher } from "./semaphore-requests.js";
import type { Ticket, TicketQueue, Tickets } from "./semaphore-tickets.js";

/** Keeps this process's lease on a RedisSemaphore, and with it the permits held here. */
export class Leases implements LeaseKeeper, SelfChecking {
  /** What this process knows of its lease. */
  private readonly lease: LocalLease;
  /**
   * Permits granted and not released whose lease this process keeps alive, by fencing token.
   * Invariant: a permit is in here exactly while it is held and its lease is not known to be lost.
   */
  private readonly held = new Map<number, LeasedPermit>();
  private heartbeatTimer: TimerHandle | undefined;
  private heartbeating = false;
  /** A check-in was asked for while a heartbeat was in flight: run one more when it ends. */
  private heartbeatAgain = false;
  /** The safety net while requests wait in Redis: a check-in at most `wakeTimeout` (or `checkBy`) away. */
  private checkTimer: TimerHandle | undefined;
  /** Local time by which a waiting process should check in (the earliest other lease end, the restart guard). */
  private checkBy = Number.POSITIVE_INFINITY;
  /** Whether Redis last said the restart guard holds grants back (for the timeout message). */
  private guardSeen = false;
  /** Tokens Redis says we hold but we do not know, seen at the last heartbeat (see `reconcile`). */
  private orphanCandidates = new Set<number>();
  /** The epoch of the state in Redis last seen in a reply (see semaphore-scripts.ts); 0 before any. */
  private seenEpoch = 0;
  /** While `close()` waits for holders: called each time `held` empties. */
  private onAllReleased: (() => void) | undefined = undefined;
  private requests!: RequestBatcher;
  private grants!: GrantListener;

  constructor(
    private readonly context: SemaphoreContext,
    /** What the permits' events name (see {@link LeaseKeeper}). */
    readonly identity: LimiterIdentity,
    private readonly tickets: Tickets,
    private readonly queue: TicketQueue,
  ) {
    // The watchdog fires at the deadline: the permits are lost if no renewal moved it, and it re-arms.
    this.lease = new LocalLease(context.leaseMs, context.clock, () => {
      this.checkLease();
      this.armWatchdog();
    });
  }

  /** The parts it hands tickets and grants to (made after it). */
  connect(requests: RequestBatcher, grants: GrantListener): void {
    this.requests = requests;
    this.grants = grants;
  }

  /** Milliseconds left before the local lease deadline (see {@link LeaseKeeper}). */
  leaseRemaining(): number {
    return this.lease.remaining();
  }

  /** Whether a script sent at `sentAt` must (re)write the lease (see {@link LocalLease.mustRegister}). */
  mustRegister(sentAt: number): boolean {
    return this.lease.mustRegister(sentAt);
  }

  /** Whether the lease is good now by the local deadline. */
  current(): boolean {
    return this.lease.current();
  }

  /** A script sent at `sentAt` wrote the lease. */
  written(sentAt: number): void {
    this.lease.written(sentAt);
    this.armWatchdog();
  }

  /**
   * The synchronous check behind a permit's `leaseLost` and `signal`: if the local deadline has passed
   * (the process was frozen, or Redis could not be reached in time), the lease may have lapsed, so
   * every permit held is lost now, before any timer has run, and the tickets queue again.
   */
  checkLease(): void {
    if ((this.held.size === 0 && this.tickets.queuedInRedis === 0) || this.lease.current() || this.context.gone) {
      return;
    }
    const late = Math.round(this.lease.age());
    this.lapse(
      new LeaseLostError(
        `the lease on ${this.context.subject()} may have lapsed: it was last renewed ${late} ms ago, and the lease is ${this.lease.ms} ms (the process was frozen, or Redis could not be reached in time)`,
      ),
      false,
    );
    // Renew at once: callers still waiting here need a lease again.
    this.checkInSoon();
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
    this.scheduleHeartbeat();
    this.armWatchdog();
  }

  /** `permit` is being released while its lease holds: no longer kept. */
  letGo(permit: LeasedPermit): void {
    this.held.delete(permit.fencingToken);
    if (this.held.size === 0) this.onAllReleased?.();
  }

  /** `permit` is lost: its signal aborts with `error`, and its token goes back to Redis (see `loseAll`). */
  private lose(permit: LeasedPermit, error: LeaseLostError): void {
    if (this.held.get(permit.fencingToken) === permit) this.held.delete(permit.fencingToken);
    permit.loseLease(error);
    this.grants.discard(permit.fencingToken);
    if (this.held.size === 0) this.onAllReleased?.();
  }

  /**
   * Every permit held is lost: its signal aborts with `error`, and its token goes back to Redis (a no-op if
   * Redis already evicted it, and the weight back at once if it had not).
   */
  private loseAll(error: LeaseLostError): void {
    for (const permit of [...this.held.values()]) this.lose(permit, error);
  }

  /**
   * `close()`: asks the holders to stop (their signals abort with `stopping`) and resolves when no permit
   * is held here any more, or after `timeout` ms.
   */
  drain(stopping: ClosedError, timeout: number): Promise<void> {
    for (const permit of this.held.values()) permit.askToStop(stopping);
    return new Promise<void>((resolve) => {
      const timer = this.context.clock.setTimeout(done, timeout);
      const self = this;
      function done(): void {
        self.context.clock.clearTimeout(timer);
        self.onAllReleased = undefined;
        resolve();
      }
      this.onAllReleased = done;
    });
  }

  /** `close()` gave up waiting: the permits still held are lost with `error`, and every timer stops. */
  abandon(error: LeaseLostError): void {
    for (const permit of this.held.values()) permit.loseLease(error);
    this.held.clear();
    this.stopTimers();
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
    this.checkBy = Math.min(this.checkBy, this.context.clock.now() + this.lease.ms);
  }

  /** Redis granted something: the restart guard no longer holds anyone back. */
  guardPassed(): void {
    this.guardSeen = false;
  }

  // ---- heartbeats and check-ins -------------------------------------------------------------------

  private active(): boolean {
    return !this.context.gone && (this.held.size > 0 || this.tickets.size > 0 || this.queue.size > 0);
  }

  /** Keeps one heartbeat timer, a third of the lease away, while anything is held or waited for. */
  scheduleHeartbeat(): void {
    if (this.heartbeatTimer !== undefined || !this.active()) return;
    const clock = this.context.clock;
    this.heartbeatTimer = clock.setTimeout(() => {
      this.heartbeatTimer = undefined;
      void this.heartbeat().finally(() => this.scheduleHeartbeat());
    }, this.lease.ms / 3);
    // Housekeeping: it stops on its own once nothing is held or waited for, but only when it next
    // fires; until then it must not keep a process alive that has finished (and disconnected its client).
    clock.unref?.(this.heartbeatTimer);
  }

  /** Keeps one check-in timer while requests wait in Redis: the safety net for a notice that was lost. */
  armCheck(): void {
    const { context, tickets } = this;
    if (this.checkTimer !== undefined || tickets.queuedInRedis === 0 || context.closed) return;
    const delay = Math.max(10, Math.min(context.wakeMs, this.checkBy - context.clock.now()));
    this.checkTimer = context.clock.setTimeout(() => {
      this.checkTimer = undefined;
      if (tickets.queuedInRedis === 0 || context.closed) return;
      void this.heartbeat().then((error) => {
        // Callers waiting on a Redis that cannot be reached learn it now, as onUnavailable says.
        if (error !== undefined && tickets.queuedInRedis > 0) this.requests.failWaiters(error);
        this.armCheck();
      });
    }, delay);
  }

  /** A heartbeat now, or right after the one in flight (which may have read Redis too early). */
  checkInSoon(): void {
    if (this.context.gone || (this.tickets.size === 0 && this.held.size === 0)) return;
    if (this.heartbeating) this.heartbeatAgain = true;
    else void this.heartbeat();
  }

  /**
   * Renews this process's lease, evicts dead processes, dispatches; learns whether our lease was lost,
   * and squares what Redis holds for us with what we believe (see `reconcile`). Resolves with the
   * failure, if any.
   */
  private async heartbeat(): Promise<unknown> {
    const { context } = this;
    if (this.heartbeating || context.gone) return undefined;
    this.heartbeating = true;
    const sentAt = context.clock.now();
    // What this process believes Redis has at the moment the check-in is sent: the reply must agree.
    const heldBefore = [...this.held.values()];
    const queuedBefore = [...this.tickets.values()].filter((ticket) => ticket.seq !== undefined);
    let failure: unknown;
    try {
      const reply = (await context.call(
        context.scripts.heartbeat,
        ["renew", queuedBefore.length > 0 ? "1" : "0"],
        "heartbeat",
      )) as unknown[];
      const [lost, now, earliestOther, guardUntil, epoch, grants, holding] = reply as number[];
      if (lost === 1) {
        // Everything of ours is queued again below, under the epoch this reply reports.
        this.seenEpoch = epoch as number;
        this.leaseLost(sentAt);
      }
      this.written(sentAt);
      let checkIn = Number.POSITIVE_INFINITY;
      if ((earliestOther as number) > 0)
        checkIn = Math.min(checkIn, ((earliestOther as number) - (now as number)) / 1000 + 1);
      if ((guardUntil as number) > 0)
        checkIn = Math.min(checkIn, ((guardUntil as number) - (now as number)) / 1000 + 1);
      this.guardSeen = (guardUntil as number) > (now as number);
      this.checkBy = context.clock.now() + Math.max(0, checkIn);
      const grantsEnd = 7 + (grants as number);
      const holdingEnd = grantsEnd + (holding as number);
      this.grants.takeGrants(reply.slice(0, grantsEnd), 7);
      if (lost !== 1) {
        this.reconcile(reply.slice(grantsEnd, holdingEnd), reply.slice(holdingEnd) as number[], epoch as number, {
          heldBefore,
          queuedBefore,
        });
      }
    } catch (error) {
      // Unreachable: the watchdog ends the leases when the deadline passes; waiters hear of it from
      // the check-in that called (see armCheck).
      failure = error;
    } finally {
      this.heartbeating = false;
    }
    // `checkBy` may have moved closer: the check-in timer follows it.
    if (this.checkTimer !== undefined) {
      context.clock.clearTimeout(this.checkTimer);
      this.checkTimer = undefined;
    }
    this.armCheck();
    if (this.heartbeatAgain) {
      this.heartbeatAgain = false;
      if (failure === undefined) return this.heartbeat();
    }
    return failure;
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

  /** Redis no longer has our lease: every permit we hold is lost, every ticket must queue again. */
  private leaseLost(sentAt: number): void {
    this.lease.written(sentAt);
    this.lapse(new LeaseLostError(`the lease on ${this.context.subject()} ended before it was renewed`), true);
  }

  /**
   * Our lease ended (`evicted`: Redis said so) or may have (the local deadline passed): every permit is
   * lost, and every ticket queued in Redis queues again in local order (see `RequestBatcher.requeueAll`).
   */
  private lapse(error: LeaseLostError, evicted: boolean): void {
    this.loseAll(error);
    this.requests.requeueAll(evicted);
  }

  /** The lease's watchdog runs while permits are held (see {@link LocalLease.watch}). */
  private armWatchdog(): void {
    this.lease.watch(this.held.size > 0 && !this.context.gone);
  }

  /** Stops every timer of the lease (`close()`; tests, to play a process that crashed). */
  stopTimers(): void {
    const clock = this.context.clock;
    if (this.heartbeatTimer !== undefined) clock.clearTimeout(this.heartbeatTimer);
    this.lease.stop();
    if (this.checkTimer !== undefined) clock.clearTimeout(this.checkTimer);
    this.checkTimer = undefined;
    this.heartbeatTimer = undefined;
  }
}
