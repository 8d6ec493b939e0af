/**
 * A RedisSemaphore's callers as Redis knows them: one {@link Ticket} per caller, and {@link Tickets},
 * the submissions not yet granted, by the number this process gave each.
 */

import type { Permit } from "../core/limiter.js";
import type { Waiter, WaitQueue } from "../core/wait-queue.js";

/** A caller's place in line: local first, and in Redis once `seq` is known. */
export class Ticket {
  /**
   * This process's number for the current submission, sent with the acquire script; Redis names it in
   * the grant. A fresh one per submission, so a grant for an earlier submission (before a lost lease)
   * can never be taken for this one. 0 until submitted.
   */
  id = 0;
  /** The ticket number in Redis; undefined while the acquire script is in flight. */
  seq: number | undefined = undefined;
  /** The epoch of the state the ticket was queued in (see semaphore-scripts.ts). */
  epoch = 0;
  /**
   * Check-ins in a row that found the ticket neither queued nor granted in Redis while its epoch stayed.
   * Two in a row mean it was dropped (see "dead waiters" in semaphore-scripts.ts): one could be a refusal
   * whose notice is still on its way.
   */
  missed = 0;
  /** Set when the caller left (abort, timeout, clear) so a late reply is undone instead of granted. */
  cancelled = false;
  /**
   * Set while its acquire is in flight when callers who asked before it were queued again: whatever the
   * reply says, it queues again behind them (a grant goes back), or it would pass them.
   */
  behind = false;
  /**
   * The send time of the acquire that carried this submission when that acquire also wrote this
   * process's lease; undefined when it did not. A grant notice for the ticket proves the script ran,
   * so the lease was written, even while the reply that would say so is still on its way.
   */
  registeredAt: number | undefined = undefined;
  /** Aborts the `onUnavailable` Limiter's acquire made for this caller once the caller has left. */
  fallback: AbortController | undefined = undefined;
  constructor(
    readonly weight: number,
    readonly priority: number,
    /** When the caller asked, among this process's callers: a ticket queued again keeps its place. */
    readonly arrival: number,
  ) {}
}

/** The order of this process's own callers: priority (higher first), then arrival. */
export function localOrder(a: Ticket, b: Ticket): number {
  return b.priority - a.priority || a.arrival - b.arrival;
}

/** The local queue of a RedisSemaphore: its callers, whose abort and timeout are handled here. */
export type TicketQueue = WaitQueue<Ticket, Permit>;

/** Finds the local waiter of `ticket`: almost always the head, since Redis grants in the same order. */
export function findWaiter(queue: TicketQueue, ticket: Ticket): Waiter<Ticket, Permit> | undefined {
  const head = queue.head;
  if (head === undefined || head.request === ticket) return head;
  let found: Waiter<Ticket, Permit> | undefined;
  queue.forEach((waiter) => {
    if (waiter.request === ticket) found = waiter;
  });
  return found;
}

/**
 * Tickets submitted and not yet granted — acquire in flight or queued in Redis — by `Ticket.id`.
 *
 * Invariant: each is also in the local queue and not cancelled. A grant for an id not in here belongs
 * to nobody here and is given back. The acquire's reply is *not* awaited before a ticket goes in: its
 * grant may arrive first, on the notice connection (see semaphore-scripts.ts).
 */
/** The counts every key of a semaphore shares with the others in this process. */
export interface TicketCounts {
  /** The last ticket id given, on any key: ids are unique in the process, so no grant finds the wrong one. */
  lastId: number;
  /** Tickets waiting for their grant, on every key. */
  waiting: number;
  /** Of those, the ones whose seq is known (queued in Redis), on every key. */
  inRedis: number;
}

export class Tickets {
  private readonly byId = new Map<number, Ticket>();
  /** Callers so far (see `Ticket.arrival`). */
  private arrivals = 0;
  /**
   * Tickets in here whose seq is known: queued in Redis, so a notice may come for them. The check-in
   * timer runs while some key has any — not for acquires still in flight, which may never queue (and,
   * when Redis is down, fail on their own deadline).
   */
  private inRedis = 0;

  /** `counts`: shared with the other keys of the semaphore. */
  constructor(private readonly counts: TicketCounts) {}

  /** The last id given (read by tests to follow a request into Redis). */
  get lastId(): number {
    return this.counts.lastId;
  }

  /** A new caller's ticket, after every caller so far. */
  create(weight: number, priority: number): Ticket {
    return new Ticket(weight, priority, ++this.arrivals);
  }

  /** `ticket` is submitted (again): a fresh id, not yet queued in Redis. */
  track(ticket: Ticket): void {
    ticket.id = ++this.counts.lastId;
    ticket.seq = undefined;
    this.byId.set(ticket.id, ticket);
    this.counts.waiting++;
  }

  /**
   * The acquire script queued `ticket` as `seq`. Whether it is still in here: if not, its caller left
   * while the script was in flight, or its grant overtook the reply.
   */
  queued(ticket: Ticket, seq: number): boolean {
    ticket.seq = seq;
    if (this.byId.get(ticket.id) !== ticket) return false;
    this.inRedis++;
    this.counts.inRedis++;
    return true;
  }

  /** Takes `ticket` out (if in here), keeping `queuedInRedis` true to its definition. */
  untrack(ticket: Ticket): void {
    if (this.byId.get(ticket.id) !== ticket) return;
    this.byId.delete(ticket.id);
    this.counts.waiting--;
    if (ticket.seq === undefined) return;
    this.inRedis--;
    this.counts.inRedis--;
  }

  /** The ticket submitted as `id`, if it is still waiting for its grant. */
  get(id: number): Ticket | undefined {
    return this.byId.get(id);
  }

  has(id: number): boolean {
    return this.byId.has(id);
  }

  /** Whether `ticket`'s current submission is in here. */
  tracks(ticket: Ticket): boolean {
    return this.byId.get(ticket.id) === ticket;
  }

  /** Whether the caller of `ticket` still waits for this submission. */
  isWaiting(ticket: Ticket): boolean {
    return !ticket.cancelled && this.byId.get(ticket.id) === ticket;
  }

  get size(): number {
    return this.byId.size;
  }

  /** See `inRedis`. */
  get queuedInRedis(): number {
    return this.inRedis;
  }

  values(): IterableIterator<Ticket> {
    return this.byId.values();
  }

  /**
   * @internal Throws an Error naming the first broken invariant: each ticket in here is filed under its
   * id, not cancelled, and its caller is in `queue`; `queuedInRedis` counts those whose seq is known.
   */
  assertInvariants(queue: TicketQueue): void {
    const waiting = new Set<Ticket>();
    queue.forEachRequest((ticket) => waiting.add(ticket));
    let inRedis = 0;
    for (const [id, ticket] of this.byId) {
      const broken =
        ticket.id !== id
          ? `a ticket is filed under its id; ticket ${ticket.id} is under ${id}`
          : ticket.cancelled
            ? `a ticket waiting for its grant is not cancelled; ticket ${id} is`
            : !waiting.has(ticket)
              ? `a ticket waiting for its grant has its caller in the local queue; ticket ${id} has not`
              : undefined;
      if (broken !== undefined) throw new Error(`RedisSemaphore invariant broken: ${broken}`);
      if (ticket.seq !== undefined) inRedis++;
    }
    if (inRedis !== this.inRedis) {
      throw new Error(
        `RedisSemaphore invariant broken: queuedInRedis counts the tickets queued in Redis; it is ${this.inRedis}, they are ${inRedis}`,
      );
    }
  }

  /** `close()`: every submission is cancelled, so an acquire still in flight undoes itself on reply. */
  cancelAll(): void {
    for (const ticket of this.byId.values()) ticket.cancelled = true;
    this.counts.waiting -= this.byId.size;
    this.counts.inRedis -= this.inRedis;
    this.byId.clear();
    this.inRedis = 0;
  }
}
