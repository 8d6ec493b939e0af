/**
 * RedisSemaphore and RedisMutex: the Semaphore and Mutex contracts across processes and machines.
 *
 * Redis holds the truth (who holds what, who waits in which order); each process keeps a local
 * {@link WaitQueue} of its callers for abort and timeout handling. The Lua scripts and the key layout
 * are in `semaphore-scripts.ts`; this file is the process side:
 *
 * - acquire: one script. It grants at once when the request fits and nobody waits ahead, or puts a
 *   ticket in the Redis queue (FIFO within a priority, across all processes).
 * - release: one script. It frees the weight and hands it to the tickets that now fit, writing a
 *   notice on each receiving process's channel (grants to the releasing process come back in the
 *   reply instead).
 * - waiting: each semaphore of a process subscribes to its own notice channel, all of them over one
 *   connection per client (`sharedNotices`), and hears of grants by push, not polling. A notice names the request by this process's own number
 *   for it (not Redis' seq), because it can arrive before the reply of the acquire that queued it. A
 *   process with requests queued in Redis also checks in (a heartbeat, which evicts dead processes,
 *   dispatches, and hands over any grant Redis holds for a request still waiting here) at least every
 *   `wakeTimeout`, so a notice lost with a dropped connection costs a delay, never a hang.
 * - leases: one lease per process covers all its permits and tickets, renewed by a heartbeat every
 *   third of the lease. The lease is good locally until a conservative deadline on the monotonic clock,
 *   counted from when the request that wrote it was *sent*, so this process always gives up before Redis
 *   can give the weight to anyone else. The deadline is checked where it matters, synchronously: a
 *   permit's `leaseLost`, `signal` and `release()`, and every grant before it is handed over. A process
 *   frozen past its lease (a GC pause, a VM stall, SIGSTOP) thus learns it lost its permits at its first
 *   look after it thaws, before any timer has had a chance to run.
 * - faults: every check-in squares what Redis holds with what this process believes (see `reconcile`):
 *   a permit Redis no longer counts is lost, a ticket Redis no longer queues is queued again, in order.
 *   Every reply carries the state's epoch, so a state recreated after a restart or a flush is noticed
 *   at the next reply, not at the next check-in.
 */

import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { Admission, type LimiterStatistics } from "../core/admission.js";
import { checkCapacity, checkFunction, checkOptionNames, checkWeight, optionNames } from "../core/arguments.js";
import { systemClock, type TimerHandle } from "../core/clock.js";
import { describe } from "../core/describe.js";
import { identify, type LimiterIdentity } from "../core/diagnostics.js";
import type { Duration } from "../core/duration.js";
import { ClosedError, LeaseLostError, weightAboveCapacity } from "../core/errors.js";
import type { AcquireOptions, Limiter, Permit } from "../core/limiter.js";
import { runHolding } from "../core/permit.js";
import { type CheckedAcquireOptions, checkAcquireOptions } from "../core/wait-options.js";
import type { Waiter, WaitQueue } from "../core/wait-queue.js";
import {
  type NoticeConnection,
  type RedisClient,
  type RedisConnection,
  Script,
  sharedNotices,
  toConnection,
} from "./connection.js";
import { RedisUnavailableError, withDeadline } from "./errors.js";
import { inspectSemaphore, type RedisSemaphoreSnapshot } from "./inspect.js";
import { LocalLease } from "./lease.js";
import {
  checkCloseOptions,
  checkCommandTimeout,
  checkKeyTtl,
  checkLeaseTtl,
  checkNotices,
  checkPrefix,
  checkUnavailablePolicy,
  checkWakeTimeout,
  type RedisCloseOptions,
  type UnavailablePolicy,
} from "./options.js";
import { FallbackPermit, LeasedPermit, type LeaseKeeper, parseSlots, type RedisPermit } from "./permits.js";
import { notifyingSources, type Publish, UNLIMITED } from "./semaphore-scripts.js";

/** The scripts that may tell other processes of a grant, for one way of telling. */
function notifyingScripts(publish: Publish) {
  const sources = notifyingSources(publish);
  return {
    acquire: new Script(sources.acquire),
    release: new Script(sources.release),
    cancel: new Script(sources.cancel),
    heartbeat: new Script(sources.heartbeat),
  };
}

type NotifyingScripts = ReturnType<typeof notifyingScripts>;

const scripts = notifyingScripts("PUBLISH");
/** The same scripts for `notices: "sharded"` (made on first use). */
let shardedScripts: NotifyingScripts | undefined;

/**
 * The semaphore of this process whose requests of the current tick are not sent yet, if any (see
 * `submit`): at most one at a time, so batching never reorders requests across semaphores.
 */
let gathering: RedisSemaphore | undefined;

/** Options for {@link RedisSemaphore}. */
export interface RedisSemaphoreOptions {
  /** Identifies the semaphore in Redis: every process using the same name shares the same permits. */
  name: string;
  /** Permits shared by all processes: an integer >= 0, or Infinity. All processes must agree on it. */
  capacity: number;
  /**
   * How long a permit outlives a process that stops renewing it (crashed, frozen, cut off).
   * Renewed automatically every third of it. Default `"10s"`. All processes should use the same value.
   */
  leaseTtl?: Duration;
  /** Prefix of every key. Default `"sluice:"`. Keys are `<prefix>{<name>}:...`. */
  prefix?: string;
  /** Longest wait for one Redis reply before the call fails with RedisUnavailableError. Default `"5s"`. */
  commandTimeout?: Duration;
  /**
   * The longest a process with waiters goes without checking in with Redis (a heartbeat that also
   * delivers any grant whose notice was lost). Default: a third of the lease, at most 5 s.
   */
  wakeTimeout?: Duration;
  /** How long the keys outlive the last process that used them. Default: 6 leases, at least 60 s. */
  keyTtl?: Duration;
  /**
   * When an acquire cannot reach Redis: `"fail"` (default) rejects with RedisUnavailableError — fail
   * closed, since nobody can vouch for the limit; `"allow"` grants a local permit without a fencing token
   * (the limit is not enforced while Redis is down); a Limiter (say a local `Semaphore` with a smaller
   * capacity) admits through that limiter instead.
   */
  onUnavailable?: UnavailablePolicy;
  /**
   * After a Redis restart that lost the data, grant nothing until one lease has passed since the
   * server started, so holders from before the restart have noticed they lost their leases. Default
   * true; turn it off only with persistence you trust.
   */
  guardRestarts?: boolean;
  /**
   * How grant notices travel: `"publish"` (default; Redis 5.0+) or `"sharded"`: sharded pub/sub
   * (`SPUBLISH`/`SSUBSCRIBE`, Redis 7.0+). On Redis Cluster, a plain `PUBLISH` goes to every node of the
   * cluster; a sharded one stays on the node that holds the semaphore's keys. All processes using the
   * semaphore must choose the same.
   */
  notices?: "publish" | "sharded";
}

export const REDIS_SEMAPHORE_OPTIONS = /* @__PURE__ */ optionNames<RedisSemaphoreOptions>({
  name: true,
  capacity: true,
  leaseTtl: true,
  prefix: true,
  commandTimeout: true,
  wakeTimeout: true,
  keyTtl: true,
  onUnavailable: true,
  guardRestarts: true,
  notices: true,
});

/**
 * A snapshot of a Redis semaphore as this process sees it, without a round trip: `inUse` and `waiting`
 * are this process's (use `inspect()` for every process), the counters count this process's requests.
 */
export interface RedisSemaphoreStatistics extends LimiterStatistics {
  /** The last fencing token this process was granted, or undefined before any. */
  lastFencingToken: number | undefined;
  /** Whether the restart guard held this process's last request back. */
  restartGuard: boolean;
}

/** A caller's place in line: local first, and in Redis once `seq` is known. */
class Ticket {
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
function localOrder(a: Ticket, b: Ticket): number {
  return b.priority - a.priority || a.arrival - b.arrival;
}

/**
 * A semaphore shared by every process that uses the same Redis and `name`: at most `capacity` weight
 * held at once across all of them.
 *
 * Same contract as the in-memory `Semaphore` (weights, priorities, FIFO, timeout, abort), plus:
 * - FIFO across processes: waiters queue in Redis, in one order for everyone;
 * - leases: a crashed holder's permits come back when its lease (`leaseTtl`) ends; a holder that cannot
 *   renew learns it through `permit.signal` (aborted with `LeaseLostError`) and `run` rejects with
 *   `LeaseLostError`;
 * - `permit.fencingToken` increases with every grant;
 * - one round trip to acquire when free and one to release; waiters are woken by push.
 *
 * ioredis is an optional peer dependency: pass an ioredis client (or any {@link RedisConnection}).
 * The first `acquire` that may wait (any but `tryAcquire` and `timeout: 0`, even when it is then granted
 * at once) takes one extra connection (`duplicate()`) to hear grant notices on; every semaphore made
 * from the same client shares it (one channel each), and the last one's `close()` closes it: until
 * then it keeps the process alive, so close semaphores you are done with.
 *
 * @example
 * ```ts
 * import Redis from "ioredis";
 * import { RedisSemaphore } from "sluice/redis";
 * const semaphore = new RedisSemaphore(new Redis(), { name: "openai", capacity: 8 });
 * const answer = await semaphore.run((signal) => callTheApi({ signal }));
 * ```
 */
export class RedisSemaphore implements Limiter, LeaseKeeper {
  /** The name shared in Redis: every process using it shares the same permits. */
  readonly name: string;
  /** This process's id in Redis (shows up in `inspect()` and in its notice channel's name). */
  readonly client: string;
  private limit: number;
  private readonly connection: RedisConnection;
  private readonly keys: [string, string, string];
  private readonly wakeKey: string;
  private readonly tag: string;
  private readonly commandMs: number;
  private readonly wakeMs: number;
  private readonly keyTtlMs: number;
  /** Whether grant notices use sharded pub/sub (`notices: "sharded"`). */
  private readonly sharded: boolean;
  private readonly scripts: NotifyingScripts;
  private readonly guardRestarts: boolean;
  private readonly onUnavailable: UnavailablePolicy;
  private readonly clock = systemClock;
  /** @internal What its `sluice:*` events name. */
  readonly identity: LimiterIdentity;

  /** The admission step; its queue holds this process's callers (the order that counts is Redis'). */
  private readonly admission: Admission<Ticket, Permit>;
  /** Local callers waiting; abort and timeout are handled here, the order that counts is Redis'. */
  private readonly queue: WaitQueue<Ticket, Permit>;
  /** What this process knows of its lease. */
  private readonly lease: LocalLease;
  /** A permit goes back through here: one function for every permit of this semaphore. */
  private readonly giveBackPermit = (permit: LeasedPermit): Promise<void> => this.releasePermit(permit);
  /** The last fencing token granted here, for statistics. */
  private lastToken: number | undefined = undefined;
  /**
   * Tickets submitted and not yet granted — acquire in flight or queued in Redis — by `Ticket.id`.
   * Invariant: each is also in `queue` and not cancelled. A grant for an id not in here belongs to
   * nobody here and is given back. The acquire's reply is *not* awaited before a ticket goes in: its
   * grant may arrive first, on the notice connection (see semaphore-scripts.ts).
   */
  private readonly tickets = new Map<number, Ticket>();
  private lastTicketId = 0;
  /** Callers so far (see `Ticket.arrival`). */
  private arrivals = 0;
  /** Tickets were queued again since the last flush: the next batch is put back in local order. */
  private reordered = false;
  /** Tickets submitted in this tick, sent together by `flush` (a microtask). */
  private unsent: Ticket[] = [];
  /**
   * Tickets in `tickets` whose seq is known: queued in Redis, so a notice may come for them. The
   * check-in timer runs while this is above 0 — not for acquires still in flight, which may never queue
   * (and, when Redis is down, fail on their own deadline).
   */
  private queuedInRedis = 0;
  /**
   * Permits granted and not released whose lease this process keeps alive, by fencing token.
   * Invariant: a permit is in here exactly while it is held and its lease is not known to be lost.
   */
  private readonly held = new Map<number, LeasedPermit>();
  private heartbeatTimer: TimerHandle | undefined;
  private heartbeating = false;
  /** Local time by which a waiting process should check in (the earliest other lease end, the restart guard). */
  private checkBy = Number.POSITIVE_INFINITY;
  /** The process's notice connection for this client, shared with its other semaphores. */
  private readonly notices: NoticeConnection;
  /** Settles when the subscription is confirmed; undefined before the first try or after one failed. */
  private subscription: Promise<void> | undefined;
  /** Whether the subscription is confirmed: requests go out at once from then on. */
  private listening = false;
  /** The safety net while requests wait in Redis: a check-in at most `wakeTimeout` (or `checkBy`) away. */
  private checkTimer: TimerHandle | undefined;
  /** A check-in was asked for while a heartbeat was in flight: run one more when it ends. */
  private heartbeatAgain = false;
  /** Set by `close()`: nothing more is admitted. */
  private closed = false;
  /** Set once `close()` gave the leases back: no more timers, heartbeats or Redis calls. */
  private gone = false;
  /** The `close()` under way or done. */
  private closing: Promise<void> | undefined = undefined;
  /** While `close()` waits for holders: called each time `held` empties. */
  private onAllReleased: (() => void) | undefined = undefined;
  /** The epoch of the state in Redis last seen in a reply (see semaphore-scripts.ts); 0 before any. */
  private epoch = 0;
  /** Whether PUBLISH's count is exact, so the scripts may pass over a process that hears nothing. */
  private readonly deliveryCounted: boolean;
  /** Whether Redis last said the restart guard holds grants back (for the timeout message). */
  private guardSeen = false;
  /** Tokens Redis says we hold but we do not know, seen at the last heartbeat (see `reconcile`). */
  private orphanCandidates = new Set<number>();

  constructor(redis: RedisClient, options: RedisSemaphoreOptions) {
    if (options === null || typeof options !== "object") {
      throw new TypeError(`options must be an object with name and capacity; got ${describe(options)}`);
    }
    checkOptionNames(options, REDIS_SEMAPHORE_OPTIONS, "the new RedisSemaphore() options");
    this.connection = toConnection(redis);
    this.notices = sharedNotices(redis, this.connection);
    if (typeof options.name !== "string" || options.name === "") {
      throw new TypeError(`name must be a non-empty string; got ${describe(options.name)}`);
    }
    this.name = options.name;
    this.limit = checkCapacity(options.capacity);
    const leaseMs = checkLeaseTtl(options.leaseTtl);
    // The watchdog fires at the deadline: the permits are lost if no renewal moved it, and it re-arms.
    this.lease = new LocalLease(leaseMs, this.clock, () => {
      this.checkLease();
      this.armWatchdog();
    });
    this.commandMs = checkCommandTimeout(options.commandTimeout);
    this.wakeMs = checkWakeTimeout(options.wakeTimeout, leaseMs);
    this.keyTtlMs = checkKeyTtl(options.keyTtl, leaseMs);
    this.guardRestarts = options.guardRestarts ?? true;
    this.onUnavailable = checkUnavailablePolicy(options.onUnavailable);
    this.sharded = checkNotices(options.notices) === "sharded";
    this.deliveryCounted = this.sharded || this.connection.cluster === false;
    this.scripts = this.sharded ? (shardedScripts ??= notifyingScripts("SPUBLISH")) : scripts;
    const prefix = checkPrefix(options.prefix);
    this.tag = `${prefix}{${this.name}}:`;
    this.keys = [`${this.tag}meta`, `${this.tag}queue`, `${this.tag}clients`];
    this.client = `${hostname()}/${process.pid}/${randomBytes(6).toString("hex")}`;
    this.wakeKey = `${this.tag}wake:${this.client}`;
    this.identity = identify(this, this.name, "semaphore", "redis", this.clock);
    this.admission = new Admission<Ticket, Permit>(
      {
        impossible: (ticket) =>
          this.closed ? this.closedError() : ticket.weight > this.limit ? this.tooHeavy(ticket.weight) : undefined,
        // Only Redis knows: every request goes there (`enqueued`), where it is granted at once or queued.
        fits: () => false,
        take: () => {
          throw new Error("sluice internal error: a Redis semaphore grants through Redis");
        },
        enqueued: (ticket) => this.submit(ticket),
        tryNow: (ticket, signal) => this.acquireIfFree(ticket, signal),
        left: (waiter) => this.forget(waiter.request),
        weight: (ticket) => ticket.weight,
      },
      this.clock,
      // Read when a wait times out: a wait the restart guard caused must say so, or it looks like a hang.
      () =>
        this.guardSeen
          ? `${this.subject()} (held back by the restart guard: the semaphore's state was missing on a Redis server that started less than one lease ago, so nothing is granted until a lease has passed since it started; see guardRestarts and inspect().guardRemaining)`
          : this.subject(),
      undefined,
      this.identity,
    );
    this.queue = this.admission.queue;
  }

  /**
   * The capacity this process enforces (and writes to Redis with each call). Settable; every process
   * must be told the same value.
   */
  get capacity(): number {
    return this.limit;
  }
  /**
   * Changes the capacity, as described above. Redis applies it for every process at once.
   * @throws TypeError if `value` is not a number; RangeError if it is not an integer >= 0 or `Infinity`.
   */
  set capacity(value: number) {
    const before = this.limit;
    this.limit = checkCapacity(value);
    this.queue.forEach((waiter) => {
      const ticket = waiter.request;
      if (ticket.weight <= this.limit) return;
      this.forget(ticket);
      this.admission.reject(waiter, this.tooHeavy(ticket.weight));
    });
    // Have Redis apply the new capacity now, for every process: waiters that fit a larger one are
    // served (not at the next release or check-in), and tickets too heavy for a smaller one are refused
    // (a full semaphore, or one shrunk to 0, would never reach them). Token 0 is nobody's (tokens start
    // from the server clock), so this release frees nothing and only dispatches.
    if (this.limit !== before && !this.closed) this.discard(0);
  }

  /** Callers of this process waiting for a permit. */
  get waiting(): number {
    return this.queue.size;
  }

  /** Weight this process holds (use `inspect()` for every process). */
  get inUse(): number {
    let weight = 0;
    for (const permit of this.held.values()) weight += permit.weight;
    return weight;
  }

  /** `capacity - inUse`, as this process sees it. */
  get available(): number {
    return this.limit - this.inUse;
  }

  /** A snapshot of this process's view, without a round trip (see {@link RedisSemaphoreStatistics}). */
  statistics(): RedisSemaphoreStatistics {
    const inUse = this.inUse;
    return {
      name: this.name,
      capacity: this.limit,
      available: this.limit - inUse,
      inUse,
      waiting: this.queue.size,
      ...this.admission.counters,
      lastFencingToken: this.lastToken,
      restartGuard: this.guardSeen,
    };
  }

  /**
   * Waits until `weight` permits can be granted across all processes and returns them.
   *
   * Rejects (never throws) with a RangeError/TypeError for bad options, a RangeError when
   * `weight > capacity`, `signal.reason` on abort, TimeoutError on timeout, RedisUnavailableError when
   * Redis cannot be reached (unless `onUnavailable` says otherwise), ClosedError after `close()`.
   *
   * @example
   * ```ts
   * const permit = await semaphore.acquire({ weight: 2, timeout: 5_000 });
   * try { await work(permit.signal, permit.fencingToken); } finally { await permit.release(); }
   * ```
   */
  acquire(options?: AcquireOptions): Promise<RedisPermit> {
    let checked: CheckedAcquireOptions;
    try {
      checked = checkAcquireOptions(options);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.admission.admit(
      new Ticket(checked.weight, checked.priority, ++this.arrivals),
      checked,
    ) as Promise<RedisPermit>;
  }

  /**
   * Takes `weight` permits if that is possible right now without passing anyone in line; otherwise
   * resolves `undefined`. One round trip.
   */
  async tryAcquire(weight = 1): Promise<RedisPermit | undefined> {
    checkWeight(weight);
    if (weight > this.limit) throw this.tooHeavy(weight);
    if (this.closed) throw this.closedError();
    // A caller of this process who asked first may still be on the way to Redis (batched to the end of
    // the tick, or subscribing): Redis cannot see it yet, so the line is checked here too.
    if (!this.queue.isFirstInLine(0)) return undefined;
    const permit = await this.tryInRedis(weight, 0, undefined, "tryAcquire");
    if (permit !== undefined) this.admission.grantedNow();
    return permit;
  }

  /**
   * Runs `fn` once admitted and releases afterwards. `fn` receives a signal that aborts when the
   * caller's signal does or when the lease is lost, and the permit (check `permit.leaseLost` before each
   * write it protects). `run` rejects with `LeaseLostError` when the lease was lost, whatever `fn` returned.
   *
   * @example
   * ```ts
   * const rows = await semaphore.run((signal) => db.query(sql, { signal }), { timeout: 10_000 });
   * ```
   */
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
      if (permit.leaseLost && !(error instanceof LeaseLostError)) throw this.lostError(permit, error);
      throw error;
    }
  }

  /**
   * A snapshot of the semaphore in Redis: holders with their remaining lease, waiters in queue order,
   * the fencing counter.
   */
  inspect(): Promise<RedisSemaphoreSnapshot> {
    return inspectSemaphore(this.connection, this.tag, this.name, this.commandMs);
  }

  /**
   * Leaves. Stops admitting at once (waiters reject with ClosedError, later acquires too), asks the
   * holders of this process to stop (their signals abort with ClosedError), waits up to `timeout` for them
   * to release, then gives back the leases still held (those permits are lost: `leaseLost`, and their
   * `release()` rejects with LeaseLostError), removes this process's entries from Redis and closes the
   * notice connection. The Redis client passed in stays open. A second call returns the same promise.
   *
   * @example
   * ```ts
   * process.once("SIGTERM", () => void semaphore.close({ timeout: "5s" }));
   * ```
   */
  close(options?: RedisCloseOptions): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    let timeout: number;
    try {
      timeout = checkCloseOptions(options, this.lease.ms);
    } catch (error) {
      return Promise.reject(error);
    }
    this.closing = this.leave(timeout);
    return this.closing;
  }

  private async leave(timeout: number): Promise<void> {
    this.closed = true;
    const error = this.closedError();
    this.queue.forEachRequest((ticket) => ticket.fallback?.abort());
    this.admission.rejectAll(error);
    // An acquire still in flight then undoes itself when its reply comes (onSubmitted).
    for (const ticket of this.tickets.values()) ticket.cancelled = true;
    this.tickets.clear();
    this.queuedInRedis = 0;
    if (this.held.size > 0) {
      const stopping = new ClosedError(`${this.subject()} is closing: stop the work and release the permit`);
      for (const permit of this.held.values()) permit.askToStop(stopping);
      await this.allReleased(timeout);
    }
    this.gone = true;
    const unreleased = new LeaseLostError(
      `${this.subject()} was closed before this permit was released (close() waited ${timeout} ms for it)`,
    );
    for (const permit of this.held.values()) permit.loseLease(unreleased);
    this.held.clear();
    this.stopTimers();
    try {
      await this.call(this.scripts.heartbeat, ["leave", "0"], "close");
    } catch {
      // Our lease runs out on its own.
    }
    this.notices.leave(this.wakeKey);
  }

  /** Resolves when no permit is held here any more, or after `timeout` ms. */
  private allReleased(timeout: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = this.clock.setTimeout(done, timeout);
      const self = this;
      function done(): void {
        self.clock.clearTimeout(timer);
        self.onAllReleased = undefined;
        resolve();
      }
      this.onAllReleased = done;
    });
  }

  // ---- acquiring ----------------------------------------------------------------------------------

  /**
   * Queues a local caller's request for Redis. Requests made in the same tick go in one acquire script
   * (see `flush`): a burst of a thousand callers costs one round trip, not a thousand.
   */
  private submit(ticket: Ticket): void {
    ticket.id = ++this.lastTicketId;
    ticket.seq = undefined;
    this.tickets.set(ticket.id, ticket);
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
    if (this.queuedInRedis > 0) this.checkLease();
    const batch = this.unsent;
    this.unsent = [];
    if (gathering === this) gathering = undefined;
    if (this.reordered) {
      this.reordered = false;
      batch.sort(localOrder);
    }
    if (this.closed || !batch.some((ticket) => this.isWaiting(ticket))) return;
    if (this.listening) {
      this.send(batch);
      return;
    }
    // The first time: listen for notices before any request of ours can be queued, so no notice is
    // published before the subscription can hear it.
    this.subscribe().then(
      () => this.send(batch),
      (error: unknown) => {
        for (const ticket of batch) if (this.isWaiting(ticket)) this.onSubmitFailed(ticket, error);
      },
    );
  };

  /** Whether the caller of `ticket` still waits for this submission. */
  private isWaiting(ticket: Ticket): boolean {
    return !ticket.cancelled && this.tickets.get(ticket.id) === ticket;
  }

  /** Sends one acquire script for the requests of `all` whose callers still wait. */
  private send(all: readonly Ticket[]): void {
    const batch = all.filter((ticket) => this.isWaiting(ticket));
    if (batch.length === 0 || this.closed) return;
    const sentAt = this.clock.now();
    const register = this.lease.mustRegister(sentAt);
    const args: (string | number)[] = ["wait", register ? "1" : "0"];
    for (const ticket of batch) {
      ticket.registeredAt = register ? sentAt : undefined;
      args.push(ticket.weight, redisNumber(ticket.priority === 0 ? 0 : -ticket.priority), ticket.id);
    }
    this.call(this.scripts.acquire, args, "acquire", (late) => this.undoAcquire(late as unknown[], batch)).then(
      (value) => {
        const reply = value as unknown[];
        if (register) this.leaseWritten(sentAt);
        const epoch = reply[1] as number;
        const lost = this.onEpoch(epoch);
        this.takeGrants(reply, 2 + 4 * batch.length);
        for (const [index, ticket] of batch.entries()) {
          const at = 2 + 4 * index;
          ticket.epoch = epoch;
          if (ticket.behind && this.isWaiting(ticket)) {
            // Callers who asked before it were queued again after it was sent: it goes behind them.
            ticket.behind = false;
            if (reply[at] === 1) this.discard(reply[at + 1] as number);
            else if (reply[at] === 2) {
              ticket.seq = reply[at + 1] as number;
              this.cancelTicket(ticket);
              ticket.seq = undefined;
            }
            this.untrack(ticket);
            this.resubmit([ticket]);
          } else if (lost.size > 0 && reply[at] === 1 && this.isWaiting(ticket)) {
            // Granted by a state recreated after a restart or a flush, while callers of ours who asked
            // earlier were queued in the old one: it goes back, and everyone queues again in order.
            this.discard(reply[at + 1] as number);
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
      this.onGrant(ticket.id, value, slots);
      return;
    }
    ticket.seq = value;
    if (this.tickets.get(ticket.id) !== ticket) {
      // Its caller left while the script was in flight: take the ticket out of the Redis queue (if it
      // was granted meanwhile, the grant was or will be given back by onGrant). Otherwise the grant
      // overtook this reply and was delivered already: nothing left to do.
      if (ticket.cancelled) this.cancelTicket(ticket);
      return;
    }
    this.queuedInRedis++;
    if (guardUntil > 0) {
      this.guardSeen = true;
      this.checkBy = Math.min(this.checkBy, this.clock.now() + this.lease.ms);
    }
    this.armCheck();
    this.scheduleHeartbeat();
  }

  private onSubmitFailed(ticket: Ticket, error: unknown): void {
    if (ticket.cancelled) return;
    // Whatever Redis did with this submission, undoAcquire undoes it if the reply still comes: a grant
    // notice for it must find nobody.
    this.untrack(ticket);
    const waiter = this.findWaiter(ticket);
    if (waiter !== undefined) this.fallBack(waiter, ticket, error);
  }

  /** Redis could not admit `waiter`, which is no longer in `tickets`: `onUnavailable` decides. */
  private fallBack(waiter: Waiter<Ticket, Permit>, ticket: Ticket, error: unknown): void {
    const policy = this.onUnavailable;
    if (!(error instanceof RedisUnavailableError) || policy === "fail") {
      this.admission.reject(waiter, error);
    } else if (policy === "allow") {
      this.admission.grant(waiter, new FallbackPermit(ticket.weight, undefined, waiter.cancellation?.signal));
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
          if (waiter.queued) this.admission.grant(waiter, new FallbackPermit(ticket.weight, permit, undefined));
          else Promise.resolve(permit.release()).catch(() => undefined);
        },
        (fallbackError: unknown) => {
          ticket.fallback = undefined;
          if (waiter.queued) this.admission.reject(waiter, fallbackError);
        },
      );
    }
  }

  /**
   * An acquire that answered after its deadline: give back whatever it took. `batch` holds the tickets
   * it carried (empty for a `try`, whose grant nobody here knows of).
   */
  private undoAcquire(reply: unknown[], batch: readonly Ticket[]): void {
    const n = reply[0] as number;
    this.takeGrants(reply, 2 + 4 * n);
    for (let index = 0; index < n; index++) {
      const at = 2 + 4 * index;
      const ticket = batch[index];
      if (reply[at] === 1) this.discard(reply[at + 1] as number);
      else if (reply[at] === 2 && ticket !== undefined) {
        ticket.seq = reply[at + 1] as number;
        this.cancelTicket(ticket);
      }
    }
  }

  /**
   * `timeout: 0` through the admission step: one round trip that grants if Redis can now, without
   * queueing (or the `onUnavailable` fallback's answer when Redis cannot be reached). `undefined`:
   * refused, which the admission step reports as a timeout.
   */
  private async acquireIfFree(ticket: Ticket, signal: AbortSignal | undefined): Promise<Permit | undefined> {
    // As in tryAcquire: a caller here who asked first is ahead, whether or not Redis has seen it yet.
    if (!this.queue.isFirstInLine(ticket.priority)) return undefined;
    let permit: Permit | undefined;
    try {
      permit = await this.tryInRedis(ticket.weight, ticket.priority, signal, "acquire");
    } catch (error) {
      if (!(error instanceof RedisUnavailableError) || this.onUnavailable === "fail") throw error;
      const { weight, priority } = ticket;
      permit =
        this.onUnavailable === "allow"
          ? new FallbackPermit(weight, undefined, signal)
          : new FallbackPermit(
              weight,
              await this.onUnavailable.acquire({ weight, priority, signal, timeout: 0 }),
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
  private async tryInRedis(
    weight: number,
    priority: number,
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<LeasedPermit | undefined> {
    const sentAt = this.clock.now();
    const register = this.lease.mustRegister(sentAt);
    const reply = (await this.call(
      this.scripts.acquire,
      ["try", register ? "1" : "0", weight, redisNumber(priority === 0 ? 0 : -priority), 0],
      what,
      (late) => this.undoAcquire(late as unknown[], []),
    )) as unknown[];
    if (register) this.leaseWritten(sentAt);
    this.requeue(this.onEpoch(reply[1] as number));
    this.takeGrants(reply, 6);
    if (reply[2] !== 1) return undefined;
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
    if (this.closed) {
      this.discard(token);
      throw this.closedError();
    }
    if (!this.lease.current()) {
      this.discard(token);
      this.checkInSoon();
      return undefined;
    }
    return this.makePermit(weight, token, slots, signal);
  }

  /**
   * The caller of `ticket` is leaving (or has left) the local queue: a grant for it from now on is given
   * back, and the ticket leaves the Redis queue — now if its seq is known, else when the acquire's reply
   * brings it (onSubmitted).
   */
  private forget(ticket: Ticket): void {
    // Also when it left Redis already (failWaiters): a fallback acquire for it must not wait on.
    ticket.fallback?.abort();
    if (ticket.cancelled) return;
    ticket.cancelled = true;
    this.untrack(ticket);
    if (ticket.seq !== undefined) this.cancelTicket(ticket);
  }

  /** Takes `ticket` out of `tickets` (if there), keeping `queuedInRedis` true to its definition. */
  private untrack(ticket: Ticket): void {
    if (this.tickets.get(ticket.id) !== ticket) return;
    this.tickets.delete(ticket.id);
    if (ticket.seq !== undefined) this.queuedInRedis--;
  }

  /** Takes a ticket out of the Redis queue at once, so it does not hold up the processes behind it. */
  private cancelTicket(ticket: Ticket): void {
    const seq = ticket.seq as number;
    const member = `${String(seq).padStart(16, "0")}:${ticket.weight}:${ticket.id}:${this.client}`;
    this.call(this.scripts.cancel, [member], "cancel").then(
      (reply) => this.takeGrants(reply as unknown[], 1),
      // If Redis is unreachable, the ticket goes when our lease does, or is released when granted.
      () => undefined,
    );
  }

  /** Finds the local waiter of `ticket`: almost always the head, since Redis grants in the same order. */
  private findWaiter(ticket: Ticket): Waiter<Ticket, Permit> | undefined {
    const head = this.queue.head;
    if (head === undefined || head.request === ticket) return head;
    let found: Waiter<Ticket, Permit> | undefined;
    this.queue.forEach((waiter) => {
      if (waiter.request === ticket) found = waiter;
    });
    return found;
  }

  private makePermit(weight: number, token: number, slots: number[], signal: AbortSignal | undefined): LeasedPermit {
    const permit = new LeasedPermit(weight, token, slots, signal, this.epoch, this, this.giveBackPermit);
    this.held.set(token, permit);
    this.lastToken = token;
    this.scheduleHeartbeat();
    this.armWatchdog();
    return permit;
  }

  /**
   * Grants Redis made to this process, returned in a script reply from `offset` on as (ticket, token,
   * slots) triples.
   */
  private takeGrants(reply: unknown[], offset: number): void {
    for (let index = offset; index + 2 < reply.length; index += 3) {
      this.onGrant(reply[index] as number, reply[index + 1] as number, reply[index + 2]);
    }
  }

  /**
   * Redis granted ticket `id` with `token` (0: refused as too heavy for the shared capacity) and `slots`.
   * The same grant may be delivered twice — by its notice and by a heartbeat that found it undelivered —
   * so this must be idempotent: the first delivery wins, a repeat is ignored.
   */
  private onGrant(id: number, token: number, slots: unknown): void {
    const ticket = this.tickets.get(id);
    if (ticket === undefined) {
      // Cancelled here while Redis granted it, or from before a lost lease: give it back — unless this
      // is a repeat of a grant already delivered and still held (releasing it would free a permit in use;
      // once its permit is released, releasing the token again does nothing).
      if (token !== 0 && !this.held.has(token)) this.discard(token);
      return;
    }
    this.untrack(ticket);
    if (token !== 0) this.guardSeen = false;
    // A notice can overtake the reply of the acquire that wrote our lease; without this, a first grant
    // would meet a lease deadline in the past and the watchdog would take the permit for lost at once.
    if (ticket.registeredAt !== undefined) this.leaseWritten(ticket.registeredAt);
    const waiter = this.findWaiter(ticket);
    if (waiter === undefined) {
      if (token !== 0) this.discard(token);
    } else if (token === 0) {
      this.admission.reject(
        waiter,
        new RangeError(`weight ${ticket.weight} is above the capacity another process set for ${this.subject()}`),
      );
    } else if (!this.lease.current()) {
      // The grant was read after our lease may have lapsed (a freeze, a slow Redis): Redis may have
      // evicted it and given the weight to someone else. Never hand it over as valid; give it back and
      // queue the caller again, and renew the lease at once.
      this.discard(token);
      this.submit(ticket);
      this.checkInSoon();
    } else {
      this.admission.grant(
        waiter,
        this.makePermit(ticket.weight, token, parseSlots(slots), waiter.cancellation?.signal),
      );
    }
  }

  // ---- releasing ----------------------------------------------------------------------------------

  /**
   * A permit's release (its give-back function). Resolves when Redis took the permit back while it still
   * held it; rejects with LeaseLostError when the lease was lost first. The deadline is checked first,
   * while the permit still counts as held, so a lapse is not missed.
   */
  private releasePermit(permit: LeasedPermit): Promise<void> {
    permit.unlink();
    this.checkLease();
    const lost = permit.lossReason;
    if (lost !== undefined) {
      // Whatever lost it gave its token back to Redis already (see `lose`).
      return Promise.reject(this.releasedLostError(permit, lost));
    }
    this.held.delete(permit.fencingToken);
    if (this.held.size === 0) this.onAllReleased?.();
    return this.releaseToken(permit.fencingToken).then((removed) => {
      if (removed) return;
      // Redis no longer held it: evicted after a lapse no timer of ours caught, or its state was lost.
      const gone = new LeaseLostError(
        `${this.subject()} no longer held this permit when it was released: its lease ended (or Redis lost its state) while it was held`,
      );
      permit.loseLease(gone);
      throw this.releasedLostError(permit, gone);
    });
  }

  /**
   * Gives back a grant nobody here will use (its caller left, or it was never heard of). If Redis cannot
   * be reached, the lease (or the orphan sweep) returns it later; nothing to report to anyone.
   */
  private discard(token: number): void {
    this.releaseToken(token).catch(() => undefined);
  }

  /** Releases `token` in Redis; resolves whether Redis still held it. */
  private releaseToken(token: number): Promise<boolean> {
    return this.call(this.scripts.release, [redisNumber(token)], "release").then((reply) => {
      this.takeGrants(reply as unknown[], 1);
      return (reply as unknown[])[0] === 1;
    });
  }

  // ---- waking -------------------------------------------------------------------------------------

  /**
   * Subscribes to this process's grant notices, once (again after a failed try); resolves when Redis
   * has confirmed it. After a reconnect (ioredis subscribes again by itself) the process checks in at
   * once: notices published while the connection was down are lost, the grants they told of are not.
   */
  private subscribe(): Promise<void> {
    if (this.subscription !== undefined) return this.subscription;
    const subscribing = this.notices.listen(
      this.wakeKey,
      (notice) => this.onNotice(notice),
      () => this.checkInSoon(),
      this.sharded,
    );
    this.subscription = withDeadline(
      subscribing,
      this.commandMs,
      `subscribing to grant notices of ${this.subject()}`,
    ).then(
      () => {
        if (this.closed) this.notices.leave(this.wakeKey);
        else this.listening = true;
      },
      (error: unknown) => {
        // The next request tries again.
        this.subscription = undefined;
        this.notices.leave(this.wakeKey);
        throw error;
      },
    );
    return this.subscription;
  }

  /** Keeps one check-in timer while requests wait in Redis: the safety net for a notice that was lost. */
  private armCheck(): void {
    if (this.checkTimer !== undefined || this.queuedInRedis === 0 || this.closed) return;
    const delay = Math.max(10, Math.min(this.wakeMs, this.checkBy - this.clock.now()));
    this.checkTimer = this.clock.setTimeout(() => {
      this.checkTimer = undefined;
      if (this.queuedInRedis === 0 || this.closed) return;
      void this.heartbeat().then((error) => {
        // Callers waiting on a Redis that cannot be reached learn it now, as onUnavailable says.
        if (error !== undefined && this.queuedInRedis > 0) this.failWaiters(error);
        this.armCheck();
      });
    }, delay);
  }

  /** A heartbeat now, or right after the one in flight (which may have read Redis too early). */
  private checkInSoon(): void {
    if (this.gone || (this.tickets.size === 0 && this.held.size === 0)) return;
    if (this.heartbeating) this.heartbeatAgain = true;
    else void this.heartbeat();
  }

  /** A grant notice: `<ticket>:<token>:<slots>`. */
  private onNotice(notice: string): void {
    const [ticket, token, slots] = notice.split(":");
    this.onGrant(Number(ticket), Number(token), slots);
  }

  /** Redis cannot be reached while callers wait: every waiter learns it now, as `onUnavailable` says. */
  private failWaiters(error: unknown): void {
    const reason =
      error instanceof RedisUnavailableError
        ? error
        : new RedisUnavailableError("Redis is unavailable", { cause: error });
    for (const ticket of [...this.tickets.values()]) {
      // Acquires still in flight fail (or succeed) on their own.
      if (ticket.seq === undefined) continue;
      const waiter = this.findWaiter(ticket);
      // Best effort: if Redis is only slow, the ticket leaves now; if it is gone, it goes with our lease.
      this.forget(ticket);
      // The caller learns it as a caller whose acquire could not reach Redis does: by `onUnavailable`.
      if (waiter !== undefined) this.fallBack(waiter, ticket, reason);
    }
  }

  // ---- leases -------------------------------------------------------------------------------------

  private leaseWritten(sentAt: number): void {
    this.lease.written(sentAt);
    this.armWatchdog();
  }

  /** @internal Milliseconds left before the local lease deadline (see {@link LeaseKeeper}). */
  leaseRemaining(): number {
    return this.lease.remaining();
  }

  /**
   * @internal The synchronous check behind a permit's `leaseLost` and `signal`: if the local deadline has
   * passed (the process was frozen, or Redis could not be reached in time), the lease may have lapsed, so
   * every permit held is lost now, before any timer has run, and the tickets queue again.
   */
  checkLease(): void {
    if ((this.held.size === 0 && this.queuedInRedis === 0) || this.lease.current() || this.gone) return;
    const late = Math.round(this.lease.age());
    this.lapse(
      new LeaseLostError(
        `the lease on ${this.subject()} may have lapsed: it was last renewed ${late} ms ago, and the lease is ${this.lease.ms} ms (the process was frozen, or Redis could not be reached in time)`,
      ),
      false,
    );
    // Renew at once: callers still waiting here need a lease again.
    this.checkInSoon();
  }

  /** `permit` is lost: its signal aborts with `error`, and its token goes back to Redis (see `loseAll`). */
  private lose(permit: LeasedPermit, error: LeaseLostError): void {
    if (this.held.get(permit.fencingToken) === permit) this.held.delete(permit.fencingToken);
    permit.loseLease(error);
    this.discard(permit.fencingToken);
    if (this.held.size === 0) this.onAllReleased?.();
  }

  /**
   * Every permit held is lost: its signal aborts with `error`, and its token goes back to Redis (a no-op if
   * Redis already evicted it, and the weight back at once if it had not).
   */
  private loseAll(error: LeaseLostError): void {
    for (const permit of [...this.held.values()]) this.lose(permit, error);
  }

  private active(): boolean {
    return !this.gone && (this.held.size > 0 || this.tickets.size > 0 || this.queue.size > 0);
  }

  private scheduleHeartbeat(): void {
    if (this.heartbeatTimer !== undefined || !this.active()) return;
    this.heartbeatTimer = this.clock.setTimeout(() => {
      this.heartbeatTimer = undefined;
      void this.heartbeat().finally(() => this.scheduleHeartbeat());
    }, this.lease.ms / 3);
    // Housekeeping: it stops on its own once nothing is held or waited for, but only when it next
    // fires; until then it must not keep a process alive that has finished (and disconnected its client).
    this.clock.unref?.(this.heartbeatTimer);
  }

  /**
   * Renews this process's lease, evicts dead processes, dispatches; learns whether our lease was lost,
   * and squares what Redis holds for us with what we believe (see `reconcile`).
   */
  private async heartbeat(): Promise<unknown> {
    if (this.heartbeating || this.gone) return undefined;
    this.heartbeating = true;
    const sentAt = this.clock.now();
    // What this process believes Redis has at the moment the check-in is sent: the reply must agree.
    const heldBefore = [...this.held.values()];
    const queuedBefore = [...this.tickets.values()].filter((ticket) => ticket.seq !== undefined);
    let failure: unknown;
    try {
      const reply = (await this.call(
        this.scripts.heartbeat,
        ["renew", queuedBefore.length > 0 ? "1" : "0"],
        "heartbeat",
      )) as unknown[];
      const [lost, now, earliestOther, guardUntil, epoch, grants, holding] = reply as number[];
      if (lost === 1) {
        // Everything of ours is queued again below, under the epoch this reply reports.
        this.epoch = epoch as number;
        this.leaseLost(sentAt);
      }
      this.leaseWritten(sentAt);
      let checkIn = Number.POSITIVE_INFINITY;
      if ((earliestOther as number) > 0)
        checkIn = Math.min(checkIn, ((earliestOther as number) - (now as number)) / 1000 + 1);
      if ((guardUntil as number) > 0)
        checkIn = Math.min(checkIn, ((guardUntil as number) - (now as number)) / 1000 + 1);
      this.guardSeen = (guardUntil as number) > (now as number);
      this.checkBy = this.clock.now() + Math.max(0, checkIn);
      const grantsEnd = 7 + (grants as number);
      const holdingEnd = grantsEnd + (holding as number);
      this.takeGrants(reply.slice(0, grantsEnd), 7);
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
      this.clock.clearTimeout(this.checkTimer);
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
        this.onGrant(id, token, holding[index + 2]);
        continue;
      }
      if (this.orphanCandidates.has(token)) this.discard(token);
      else candidates.add(token);
    }
    this.orphanCandidates = candidates;
    for (const permit of before.heldBefore) {
      if (tokens.has(permit.fencingToken) || this.held.get(permit.fencingToken) !== permit) continue;
      this.lose(
        permit,
        new LeaseLostError(
          `${this.subject()} no longer counts this permit (fencing token ${permit.fencingToken}): its state in Redis was lost (a restart, a flush or an expiry) or its lease was evicted`,
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
    if (lost.size > 0) this.requeue(lost);
  }

  /**
   * Queues again the tickets in `lost`, which Redis no longer has (or never will grant), and every ticket
   * of this process queued behind the first of them (taken out of the Redis queue first), in local order:
   * a process's own callers keep their order across a restart.
   */
  private requeue(lost: ReadonlySet<Ticket>): void {
    if (lost.size === 0) return;
    const again: Ticket[] = [];
    this.queue.forEach((waiter) => {
      const ticket = waiter.request;
      if (this.tickets.get(ticket.id) !== ticket) return;
      if (lost.has(ticket) || (again.length > 0 && ticket.seq !== undefined)) again.push(ticket);
    });
    for (const ticket of again) {
      this.untrack(ticket);
      if (!lost.has(ticket)) this.cancelTicket(ticket);
      ticket.missed = 0;
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

  /**
   * A reply carried the state's epoch. If it changed, the state was recreated (a restart, a flush, an
   * expiry): the permits and tickets of the old one are gone. The permits are lost now; the tickets are
   * returned for the caller to queue again (with `requeue`, together with any it found itself).
   */
  private onEpoch(epoch: number): Set<Ticket> {
    const lost = new Set<Ticket>();
    if (epoch === this.epoch) return lost;
    const known = this.epoch !== 0;
    this.epoch = epoch;
    if (!known) return lost;
    const gone = new LeaseLostError(
      `the state of ${this.subject()} in Redis was lost (a restart, a flush or an expiry): Redis no longer counts this permit`,
    );
    for (const permit of [...this.held.values()]) if (permit.epoch !== epoch) this.lose(permit, gone);
    for (const ticket of this.tickets.values()) {
      if (ticket.seq !== undefined && ticket.epoch !== epoch) lost.add(ticket);
    }
    return lost;
  }

  /** Redis no longer has our lease: every permit we hold is lost, every ticket must queue again. */
  private leaseLost(sentAt: number): void {
    this.lease.written(sentAt);
    this.lapse(
      new LeaseLostError(`the lease on Redis semaphore ${JSON.stringify(this.name)} ended before it was renewed`),
      true,
    );
  }

  /**
   * Our lease ended (`evicted`: Redis said so) or may have (the local deadline passed): every permit is
   * lost, and every ticket queued in Redis queues again in local order — taken out of Redis first unless
   * Redis evicted it already. (Acquires still in flight queue under the lease they write.)
   */
  private lapse(error: LeaseLostError, evicted: boolean): void {
    this.loseAll(error);
    const again: Ticket[] = [];
    this.queue.forEach((waiter) => {
      const ticket = waiter.request;
      if (ticket.seq !== undefined && this.tickets.get(ticket.id) === ticket) again.push(ticket);
    });
    for (const ticket of again) {
      this.untrack(ticket);
      if (!evicted) this.cancelTicket(ticket);
    }
    this.resubmit(again);
  }

  /** The lease's watchdog runs while permits are held (see {@link LocalLease.watch}). */
  private armWatchdog(): void {
    this.lease.watch(this.held.size > 0 && !this.gone);
  }

  private stopTimers(): void {
    if (this.heartbeatTimer !== undefined) this.clock.clearTimeout(this.heartbeatTimer);
    this.lease.stop();
    if (this.checkTimer !== undefined) this.clock.clearTimeout(this.checkTimer);
    this.checkTimer = undefined;
    this.heartbeatTimer = undefined;
  }

  // ---- plumbing -----------------------------------------------------------------------------------

  private call(
    script: Script,
    extra: (string | number)[],
    what: string,
    onLate?: (value: unknown) => void,
  ): Promise<unknown> {
    const args = [
      this.tag,
      this.client,
      this.limit === Number.POSITIVE_INFINITY ? UNLIMITED : this.limit,
      this.lease.ms,
      this.keyTtlMs,
      (this.guardRestarts ? "1" : "0") + (this.deliveryCounted ? "1" : "0"),
      ...extra,
    ];
    let running: Promise<unknown>;
    try {
      running = script.run(this.connection, this.keys, args);
    } catch (error) {
      running = Promise.reject(error);
    }
    return withDeadline(running, this.commandMs, () => `${what} on ${this.subject()}`, onLate);
  }

  /** What `release()` of a permit whose lease was lost rejects with. */
  private releasedLostError(permit: LeasedPermit, lost: LeaseLostError): LeaseLostError {
    return new LeaseLostError(
      `the lease on ${this.subject()} (fencing token ${permit.fencingToken}) was lost before the permit was released: ${lost.message}`,
      { cause: lost },
    );
  }

  private closedError(): ClosedError {
    return new ClosedError(`${this.subject()} was closed`);
  }

  private lostError(permit: RedisPermit, cause?: unknown): LeaseLostError {
    return new LeaseLostError(
      `the lease on ${this.subject()} (fencing token ${permit.fencingToken}) was lost while the work ran`,
      cause === undefined ? undefined : { cause },
    );
  }

  private tooHeavy(weight: number): RangeError {
    return weightAboveCapacity(weight, this.limit, this.subject());
  }

  private subject(): string {
    return `Redis semaphore ${JSON.stringify(this.name)}`;
  }
}

/** Numbers as Redis' Lua reads them (tonumber accepts "inf"). */
function redisNumber(value: number): string | number {
  if (value === Number.POSITIVE_INFINITY) return "inf";
  if (value === Number.NEGATIVE_INFINITY) return "-inf";
  return value;
}
