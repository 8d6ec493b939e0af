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
 *   third of the lease. A process that cannot renew in time marks every permit it holds as lost (the
 *   permit's signal aborts with LeaseLostError) *before* Redis can give the weight to anyone else,
 *   because the local deadline is counted from when the renewal was sent.
 */

import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { checkCapacity, checkFunction, checkOptionNames, checkWeight, optionNames } from "../core/arguments.js";
import { systemClock, type TimerHandle } from "../core/clock.js";
import { type Duration, describe, toMilliseconds } from "../core/duration.js";
import { ClosedError, LeaseLostError, ReleasedError, TimeoutError } from "../core/errors.js";
import { type AcquireOptions, type Limiter, NEVER_ABORTED, type Permit } from "../core/limiter.js";
import type { LockOptions } from "../core/mutex.js";
import { type CheckedAcquireOptions, checkAcquireOptions } from "../core/wait-options.js";
import { type Waiter, WaitQueue } from "../core/wait-queue.js";
import {
  type NoticeConnection,
  type RedisClient,
  type RedisConnection,
  Script,
  sharedNotices,
  toConnection,
} from "./connection.js";
import { RedisUnavailableError, withDeadline } from "./errors.js";
import { ACQUIRE, CANCEL, HEARTBEAT, INSPECT, RELEASE } from "./semaphore-scripts.js";

/** The scripts that may tell other processes of a grant, with the command that tells them. */
function notifyingScripts(publish: "PUBLISH" | "SPUBLISH") {
  const script = (source: string) =>
    new Script(publish === "PUBLISH" ? source : source.replaceAll("redis.call('PUBLISH',", "redis.call('SPUBLISH',"));
  return {
    acquire: script(ACQUIRE),
    release: script(RELEASE),
    cancel: script(CANCEL),
    heartbeat: script(HEARTBEAT),
  };
}

type NotifyingScripts = ReturnType<typeof notifyingScripts>;

const scripts = { ...notifyingScripts("PUBLISH"), inspect: new Script(INSPECT) };
/** The same scripts for `notices: "sharded"` (made on first use). */
let shardedScripts: NotifyingScripts | undefined;

/**
 * The semaphore of this process whose requests of the current tick are not sent yet, if any (see
 * `submit`): at most one at a time, so batching never reorders requests across semaphores.
 */
let gathering: RedisSemaphore | undefined;

/** The largest capacity Redis counts exactly (Infinity is stored as this). */
const UNLIMITED = Number.MAX_SAFE_INTEGER;

/** What to do when Redis cannot be reached for an acquire. */
export type UnavailablePolicy = "fail" | "allow" | Limiter;

/** Reads the `onUnavailable` option (default `"fail"`: fail closed). */
export function checkUnavailablePolicy(policy: UnavailablePolicy | undefined): UnavailablePolicy {
  const checked = policy ?? "fail";
  if (
    checked !== "fail" &&
    checked !== "allow" &&
    (typeof checked !== "object" || checked === null || typeof checked.acquire !== "function")
  ) {
    throw new TypeError(`onUnavailable must be "fail", "allow" or a Limiter; got ${describe(checked)}`);
  }
  return checked;
}

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

const REDIS_SEMAPHORE_OPTIONS = optionNames<RedisSemaphoreOptions>({
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
const REDIS_MUTEX_OPTIONS = REDIS_SEMAPHORE_OPTIONS.filter((name) => name !== "capacity");

/** A permit of a {@link RedisSemaphore}. */
export interface RedisPermit extends Permit {
  /**
   * Increases with every grant of this semaphore (across processes and restarts of Redis). Pass it to
   * the resource you protect and have it refuse tokens lower than the highest it has seen: a holder
   * that lost its lease without noticing (a long GC pause) then cannot corrupt anything.
   * `undefined` for permits granted by the `onUnavailable` fallback.
   */
  readonly fencingToken: number | undefined;
  /** Whether the lease ended before the permit was released. */
  readonly leaseLost: boolean;
  /** Gives the permit back to Redis. Throws ReleasedError synchronously when already released. */
  release(): Promise<void>;
}

/** One holder, as {@link RedisSemaphore.inspect} reports it. */
export interface RedisHolder {
  fencingToken: number;
  weight: number;
  client: string;
  /** Milliseconds until the holder's lease ends unless renewed; negative when it ended already. */
  leaseRemaining: number;
}

/** One waiting ticket, in queue order. */
export interface RedisWaiter {
  ticket: number;
  weight: number;
  priority: number;
  client: string;
}

/** A snapshot of a semaphore's state in Redis. */
export interface RedisSemaphoreSnapshot {
  kind: "semaphore";
  name: string;
  key: string;
  capacity: number | undefined;
  used: number;
  /** The last fencing token handed out. */
  fencingToken: number;
  holders: RedisHolder[];
  waiters: RedisWaiter[];
  /** Every process with a lease: its id and milliseconds left. */
  clients: { client: string; leaseRemaining: number }[];
  /** Milliseconds the restart guard still holds grants back; 0 when it does not. */
  guardRemaining: number;
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
  /** Set when the caller left (abort, timeout, clear) so a late reply is undone instead of granted. */
  cancelled = false;
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
  ) {}
}

class Permit_ implements RedisPermit {
  private held = true;
  private lost: LeaseLostError | undefined = undefined;
  /** Created on first use of `signal`: most permits are released without anyone asking for it. */
  private lease: AbortController | undefined = undefined;
  private combined: AbortSignal | undefined = undefined;
  constructor(
    private readonly owner: RedisSemaphore | undefined,
    readonly weight: number,
    readonly fencingToken: number | undefined,
    private readonly callerSignal: AbortSignal | undefined,
  ) {}
  get signal(): AbortSignal {
    if (this.combined !== undefined) return this.combined;
    if (this.owner === undefined) return (this.combined = this.callerSignal ?? NEVER_ABORTED);
    this.lease = new AbortController();
    if (this.lost !== undefined) this.lease.abort(this.lost);
    const caller = this.callerSignal;
    this.combined = caller === undefined ? this.lease.signal : AbortSignal.any([caller, this.lease.signal]);
    return this.combined;
  }
  get leaseLost(): boolean {
    return this.lost !== undefined;
  }
  get isHeld(): boolean {
    return this.held;
  }
  release(): Promise<void> {
    if (!this.held) throw new ReleasedError(`this permit (fencing token ${this.fencingToken}) was already released`);
    this.held = false;
    if (this.owner === undefined || this.fencingToken === undefined) return Promise.resolve();
    return this.owner["releasePermit"](this);
  }
  /** @internal */
  loseLease(reason: LeaseLostError): void {
    if (this.lost !== undefined) return;
    this.lost = reason;
    this.lease?.abort(reason);
  }
  [Symbol.dispose](): void {
    // A synchronous dispose cannot wait for Redis; a failed release is covered by the lease running out.
    if (this.held) this.release().catch(() => undefined);
  }
  [Symbol.asyncDispose](): Promise<void> {
    return this.held ? this.release() : Promise.resolve();
  }
}

/**
 * A permit the `onUnavailable` Limiter granted, dressed as a {@link RedisPermit}: a Limiter's permit may
 * release synchronously (`Semaphore`'s returns nothing), while callers of a RedisPermit may chain on
 * `release()` (as `run` does) and read `leaseLost`.
 */
class FallbackPermit implements RedisPermit {
  readonly fencingToken = undefined;
  readonly leaseLost = false;
  constructor(private readonly inner: Permit) {}
  get weight(): number {
    return this.inner.weight;
  }
  get signal(): AbortSignal {
    return this.inner.signal;
  }
  release(): Promise<void> {
    // A second release throws ReleasedError synchronously, as the inner permit's does.
    const releasing = this.inner.release();
    return Promise.resolve(releasing);
  }
  [Symbol.dispose](): void {
    this.inner[Symbol.dispose]();
  }
  [Symbol.asyncDispose](): Promise<void> {
    return Promise.resolve(this.inner[Symbol.asyncDispose]());
  }
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
export class RedisSemaphore implements Limiter {
  /** The name shared in Redis: every process using it shares the same permits. */
  readonly name: string;
  /** This process's id in Redis (shows up in `inspect()` and in its notice channel's name). */
  readonly client: string;
  private limit: number;
  private readonly connection: RedisConnection;
  private readonly keys: [string, string, string];
  private readonly wakeKey: string;
  private readonly tag: string;
  private readonly leaseMs: number;
  private readonly commandMs: number;
  private readonly wakeMs: number;
  private readonly keyTtlMs: number;
  /** Whether grant notices use sharded pub/sub (`notices: "sharded"`). */
  private readonly sharded: boolean;
  private readonly scripts: NotifyingScripts;
  private readonly guardRestarts: boolean;
  private readonly onUnavailable: UnavailablePolicy;
  private readonly clock = systemClock;

  /** Local callers waiting; abort and timeout are handled here, the order that counts is Redis'. */
  private readonly queue: WaitQueue<Ticket, Permit>;
  /**
   * Tickets submitted and not yet granted — acquire in flight or queued in Redis — by `Ticket.id`.
   * Invariant: each is also in `queue` and not cancelled. A grant for an id not in here belongs to
   * nobody here and is given back. The acquire's reply is *not* awaited before a ticket goes in: its
   * grant may arrive first, on the notice connection (see semaphore-scripts.ts).
   */
  private readonly tickets = new Map<number, Ticket>();
  private lastTicketId = 0;
  /** Tickets submitted in this tick, sent together by `flush` (a microtask). */
  private unsent: Ticket[] = [];
  /**
   * Tickets in `tickets` whose seq is known: queued in Redis, so a notice may come for them. The
   * check-in timer runs while this is above 0 — not for acquires still in flight, which may never queue
   * (and, when Redis is down, fail on their own deadline).
   */
  private queuedInRedis = 0;
  /** Permits granted and not released whose lease this process keeps alive. */
  private readonly held = new Set<Permit_>();
  /** Local time the last lease write was *sent*; the lease is good until this + lease - margin. */
  private leaseSentAt = Number.NEGATIVE_INFINITY;
  private heartbeatTimer: TimerHandle | undefined;
  private watchdogTimer: TimerHandle | undefined;
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
  private closed = false;
  /** The `close()` under way or done. */
  private closing: Promise<void> | undefined = undefined;
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
    this.leaseMs = toMilliseconds(options.leaseTtl ?? "10s", "leaseTtl");
    if (this.leaseMs < 30) throw new RangeError(`leaseTtl must be at least 30 ms; got ${this.leaseMs}`);
    this.commandMs = checkCommandTimeout(options.commandTimeout);
    this.wakeMs = toMilliseconds(options.wakeTimeout ?? Math.min(this.leaseMs / 3, 5_000), "wakeTimeout");
    this.keyTtlMs = Math.ceil(toMilliseconds(options.keyTtl ?? Math.max(this.leaseMs * 6, 60_000), "keyTtl"));
    if (this.keyTtlMs < this.leaseMs * 2) {
      throw new RangeError(`keyTtl must be at least twice leaseTtl (${this.leaseMs} ms); got ${this.keyTtlMs}`);
    }
    this.guardRestarts = options.guardRestarts ?? true;
    this.onUnavailable = checkUnavailablePolicy(options.onUnavailable);
    this.sharded = checkNotices(options.notices) === "sharded";
    this.scripts = this.sharded ? (shardedScripts ??= notifyingScripts("SPUBLISH")) : scripts;
    const prefix = checkPrefix(options.prefix);
    this.tag = `${prefix}{${this.name}}:`;
    this.keys = [`${this.tag}meta`, `${this.tag}queue`, `${this.tag}clients`];
    this.client = `${hostname()}/${process.pid}/${randomBytes(6).toString("hex")}`;
    this.wakeKey = `${this.tag}wake:${this.client}`;
    this.queue = new WaitQueue<Ticket, Permit>(
      this.clock,
      (waiter) => this.onCancel(waiter),
      // Read when a wait times out: a wait the restart guard caused must say so, or it looks like a hang.
      () =>
        this.guardSeen
          ? `${this.subject()} (held back by the restart guard: the semaphore's state was missing on a Redis server that started less than one lease ago, so nothing is granted until a lease has passed since it started; see guardRestarts and inspect().guardRemaining)`
          : this.subject(),
    );
  }

  /**
   * The capacity this process enforces (and writes to Redis with each call). Settable; every process
   * must be told the same value.
   */
  get capacity(): number {
    return this.limit;
  }
  set capacity(value: number) {
    const before = this.limit;
    this.limit = checkCapacity(value);
    this.queue.forEach((waiter) => {
      const ticket = waiter.request;
      if (ticket.weight <= this.limit) return;
      this.forget(ticket);
      this.queue.reject(waiter, this.tooHeavy(ticket.weight));
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

  /** Weight this process holds. */
  get heldHere(): number {
    let weight = 0;
    for (const permit of this.held) weight += permit.weight;
    return weight;
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
      if (checked.weight > this.limit) throw this.tooHeavy(checked.weight);
    } catch (error) {
      return Promise.reject(error);
    }
    const { weight, priority, signal, timeout } = checked;
    if (this.closed) return Promise.reject(new ClosedError(`Redis semaphore ${JSON.stringify(this.name)} was closed`));
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (timeout === 0) return this.acquireIfFree(weight, priority, signal);
    const ticket = new Ticket(weight, priority);
    const promise = this.queue.enqueue(ticket, priority, signal, timeout) as Promise<RedisPermit>;
    this.submit(ticket);
    return promise;
  }

  /**
   * Takes `weight` permits if that is possible right now without passing anyone in line; otherwise
   * resolves `undefined`. One round trip.
   */
  async tryAcquire(weight = 1): Promise<RedisPermit | undefined> {
    checkWeight(weight);
    if (weight > this.limit) throw this.tooHeavy(weight);
    if (this.closed) throw new ClosedError(`Redis semaphore ${JSON.stringify(this.name)} was closed`);
    // A caller of this process who asked first may still be on the way to Redis (batched to the end of
    // the tick, or subscribing): Redis cannot see it yet, so the line is checked here too.
    if (!this.queue.isFirstInLine(0)) return undefined;
    const sentAt = this.clock.now();
    const register = this.mustRegister(sentAt);
    const reply = (await this.call(
      this.scripts.acquire,
      ["try", register ? "1" : "0", weight, 0, 0],
      "tryAcquire",
      (late) => this.undoAcquire(late as number[], []),
    )) as number[];
    if (register) this.leaseWritten(sentAt);
    this.takeGrants(reply, 4);
    if (reply[1] === 1) return this.grantUnlessClosed(weight, reply[2] as number, undefined);
    return undefined;
  }

  /**
   * Runs `fn` once admitted and releases afterwards. `fn` receives a signal that aborts when the
   * caller's signal does or when the lease is lost; in the latter case `run` rejects with
   * `LeaseLostError` once `fn` settles, whatever `fn` returned.
   *
   * @example
   * ```ts
   * const rows = await semaphore.run((signal) => db.query(sql, { signal }), { timeout: 10_000 });
   * ```
   */
  async run<T>(fn: (signal: AbortSignal) => T | PromiseLike<T>, options?: AcquireOptions): Promise<T> {
    checkFunction(fn, "fn");
    const permit = await this.acquire(options);
    let result: T;
    try {
      result = await fn(permit.signal);
    } catch (error) {
      await permit.release().catch(() => undefined);
      if (permit.leaseLost) throw this.lostError(permit, error);
      throw error;
    }
    try {
      await permit.release();
    } catch (error) {
      if (!permit.leaseLost) throw error;
    }
    if (permit.leaseLost) throw this.lostError(permit);
    return result;
  }

  /**
   * A snapshot of the semaphore in Redis: holders with their remaining lease, waiters in queue order,
   * the fencing counter.
   */
  inspect(): Promise<RedisSemaphoreSnapshot> {
    return inspectSemaphore(this.connection, this.tag, this.name, this.commandMs);
  }

  /**
   * Leaves: rejects this process's waiters with ClosedError, gives back what it holds (their signals
   * abort with LeaseLostError), removes its entries from Redis and closes the notice connection.
   * The Redis client passed in stays open.
   */
  close(): Promise<void> {
    // A second call waits for the same leave, rather than returning before Redis has it.
    this.closing ??= this.leave();
    return this.closing;
  }

  private async leave(): Promise<void> {
    this.closed = true;
    this.queue.forEachRequest((ticket) => ticket.fallback?.abort());
    this.queue.rejectAll(new ClosedError(`Redis semaphore ${JSON.stringify(this.name)} was closed`));
    for (const permit of this.held) permit.loseLease(new LeaseLostError("the semaphore was closed"));
    this.held.clear();
    // An acquire still in flight then undoes itself when its reply comes (onSubmitted).
    for (const ticket of this.tickets.values()) ticket.cancelled = true;
    this.tickets.clear();
    this.queuedInRedis = 0;
    this.stopTimers();
    try {
      await this.call(this.scripts.heartbeat, ["leave"], "close");
    } catch {
      // Our lease runs out on its own.
    }
    this.notices.leave(this.wakeKey);
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
    const batch = this.unsent;
    this.unsent = [];
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
    const register = this.mustRegister(sentAt);
    const args: (string | number)[] = ["wait", register ? "1" : "0"];
    for (const ticket of batch) {
      ticket.registeredAt = register ? sentAt : undefined;
      args.push(ticket.weight, redisNumber(ticket.priority === 0 ? 0 : -ticket.priority), ticket.id);
    }
    this.call(this.scripts.acquire, args, "acquire", (late) => this.undoAcquire(late as number[], batch)).then(
      (value) => {
        const reply = value as number[];
        if (register) this.leaseWritten(sentAt);
        this.takeGrants(reply, 1 + 3 * batch.length);
        for (const [index, ticket] of batch.entries()) {
          const at = 1 + 3 * index;
          this.onSubmitted(ticket, reply[at] as number, reply[at + 1] as number, reply[at + 2] as number);
        }
      },
      (error: unknown) => {
        for (const ticket of batch) this.onSubmitFailed(ticket, error);
      },
    );
  }

  /** The acquire script's answer for one request: `status` 1 granted (`value` the token), 2 queued (`value` its seq). */
  private onSubmitted(ticket: Ticket, status: number, value: number, guardUntil: number): void {
    if (status === 1) {
      // Granted at once: the grant is in this reply, not in a notice.
      this.onGrant(ticket.id, value);
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
      this.checkBy = Math.min(this.checkBy, this.clock.now() + this.leaseMs);
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
      this.queue.reject(waiter, error);
    } else if (policy === "allow") {
      this.queue.grant(waiter, new Permit_(undefined, ticket.weight, undefined, waiter.cancellation?.signal));
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
          if (waiter.queued) this.queue.grant(waiter, new FallbackPermit(permit));
          else Promise.resolve(permit.release()).catch(() => undefined);
        },
        (fallbackError: unknown) => {
          ticket.fallback = undefined;
          if (waiter.queued) this.queue.reject(waiter, fallbackError);
        },
      );
    }
  }

  /**
   * An acquire that answered after its deadline: give back whatever it took. `batch` holds the tickets
   * it carried (empty for a `try`, whose grant nobody here knows of).
   */
  private undoAcquire(reply: number[], batch: readonly Ticket[]): void {
    const n = reply[0] as number;
    this.takeGrants(reply, 1 + 3 * n);
    for (let index = 0; index < n; index++) {
      const at = 1 + 3 * index;
      const ticket = batch[index];
      if (reply[at] === 1) this.discard(reply[at + 1] as number);
      else if (reply[at] === 2 && ticket !== undefined) {
        ticket.seq = reply[at + 1] as number;
        this.cancelTicket(ticket);
      }
    }
  }

  private async acquireIfFree(weight: number, priority: number, signal: AbortSignal | undefined): Promise<RedisPermit> {
    const refused = () =>
      new TimeoutError(0, `timed out after 0 ms waiting for Redis semaphore ${JSON.stringify(this.name)}`);
    // As in tryAcquire: a caller here who asked first is ahead, whether or not Redis has seen it yet.
    if (!this.queue.isFirstInLine(priority)) throw refused();
    const sentAt = this.clock.now();
    const register = this.mustRegister(sentAt);
    let reply: number[];
    try {
      reply = (await this.call(
        this.scripts.acquire,
        ["try", register ? "1" : "0", weight, redisNumber(priority === 0 ? 0 : -priority), 0],
        "acquire",
        (late) => this.undoAcquire(late as number[], []),
      )) as number[];
    } catch (error) {
      if (!(error instanceof RedisUnavailableError) || this.onUnavailable === "fail") throw error;
      if (this.onUnavailable === "allow") return new Permit_(undefined, weight, undefined, signal);
      return new FallbackPermit(await this.onUnavailable.acquire({ weight, priority, signal, timeout: 0 }));
    }
    if (register) this.leaseWritten(sentAt);
    this.takeGrants(reply, 4);
    if (reply[1] === 1) return this.grantUnlessClosed(weight, reply[2] as number, signal);
    throw refused();
  }

  /**
   * A grant in the reply of an acquire that does not queue (`tryAcquire`, `timeout: 0`). If `close()`
   * came while it was in flight, its "leave" has evicted the grant already (it went out right behind
   * the acquire): a permit now would hold weight Redis no longer counts.
   */
  private grantUnlessClosed(weight: number, token: number, signal: AbortSignal | undefined): Permit_ {
    if (this.closed) {
      this.discard(token);
      throw new ClosedError(`Redis semaphore ${JSON.stringify(this.name)} was closed`);
    }
    return this.makePermit(weight, token, signal);
  }

  private onCancel(waiter: Waiter<Ticket, Permit>): void {
    this.forget(waiter.request);
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
      (reply) => this.takeGrants(reply as number[], 1),
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

  private makePermit(weight: number, token: number, signal: AbortSignal | undefined): Permit_ {
    const permit = new Permit_(this, weight, token, signal);
    this.held.add(permit);
    this.scheduleHeartbeat();
    this.armWatchdog();
    return permit;
  }

  /** Grants Redis made to this process, returned in a script reply from `offset` on as (ticket, token) pairs. */
  private takeGrants(reply: number[], offset: number): void {
    for (let index = offset; index + 1 < reply.length; index += 2) {
      this.onGrant(reply[index] as number, reply[index + 1] as number);
    }
  }

  /**
   * Redis granted ticket `id` with `token` (0: refused as too heavy for the shared capacity). The same
   * grant may be delivered twice — by its notice and by a heartbeat that found it undelivered — so this
   * must be idempotent: the first delivery wins, a repeat is ignored.
   */
  private onGrant(id: number, token: number): void {
    const ticket = this.tickets.get(id);
    if (ticket === undefined) {
      // Cancelled here while Redis granted it, or from before a lost lease: give it back — unless this
      // is a repeat of a grant already delivered and still held (releasing it would free a permit in use;
      // once its permit is released, releasing the token again does nothing).
      if (token !== 0 && !this.holds(token)) this.discard(token);
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
      this.queue.reject(
        waiter,
        new RangeError(`weight ${ticket.weight} is above the capacity another process set for ${this.subject()}`),
      );
    } else {
      this.queue.grant(waiter, this.makePermit(ticket.weight, token, waiter.cancellation?.signal));
    }
  }

  // ---- releasing ----------------------------------------------------------------------------------

  /** Called by a permit's release(). */
  // biome-ignore lint/correctness/noUnusedPrivateClassMembers: permits call it as owner["releasePermit"].
  private releasePermit(permit: Permit_): Promise<void> {
    this.held.delete(permit);
    if (permit.leaseLost) {
      // Redis may have given the weight away already; the token is released only if still ours.
      return this.releaseToken(permit.fencingToken as number).catch(() => undefined);
    }
    return this.releaseToken(permit.fencingToken as number);
  }

  /**
   * Gives back a grant nobody here will use (its caller left, or it was never heard of). If Redis cannot
   * be reached, the lease (or the orphan sweep) returns it later; nothing to report to anyone.
   */
  private discard(token: number): void {
    this.releaseToken(token).catch(() => undefined);
  }

  private releaseToken(token: number): Promise<void> {
    return this.call(this.scripts.release, [redisNumber(token)], "release").then((reply) => {
      this.takeGrants(reply as number[], 1);
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
    if (this.closed || this.tickets.size === 0) return;
    if (this.heartbeating) this.heartbeatAgain = true;
    else void this.heartbeat();
  }

  /** A grant notice: `<ticket>:<token>`. */
  private onNotice(notice: string): void {
    const colon = notice.indexOf(":");
    this.onGrant(Number(notice.slice(0, colon)), Number(notice.slice(colon + 1)));
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

  /** Whether the next script must (re)write this process's lease. */
  private mustRegister(now: number): boolean {
    return now - this.leaseSentAt > this.leaseMs / 3;
  }

  private leaseWritten(sentAt: number): void {
    if (sentAt > this.leaseSentAt) this.leaseSentAt = sentAt;
    this.armWatchdog();
  }

  /** The local time after which this process must assume Redis gave its permits away. */
  private leaseDeadline(): number {
    // Counted from the send time, minus a margin for clock rate differences, so we always give up first.
    return this.leaseSentAt + this.leaseMs - (this.leaseMs / 50 + 5);
  }

  private active(): boolean {
    return !this.closed && (this.held.size > 0 || this.tickets.size > 0 || this.queue.size > 0);
  }

  private scheduleHeartbeat(): void {
    if (this.heartbeatTimer !== undefined || !this.active()) return;
    this.heartbeatTimer = this.clock.setTimeout(() => {
      this.heartbeatTimer = undefined;
      void this.heartbeat().finally(() => this.scheduleHeartbeat());
    }, this.leaseMs / 3);
    // Housekeeping: it stops on its own once nothing is held or waited for, but only when it next
    // fires; until then it must not keep a process alive that has finished (and disconnected its client).
    this.clock.unref?.(this.heartbeatTimer);
  }

  /** Renews this process's lease, evicts dead processes, dispatches; learns whether our lease was lost. */
  private async heartbeat(): Promise<unknown> {
    if (this.heartbeating || this.closed) return undefined;
    this.heartbeating = true;
    const sentAt = this.clock.now();
    let failure: unknown;
    try {
      const reply = (await this.call(this.scripts.heartbeat, ["renew"], "heartbeat")) as number[];
      const [lost, now, earliestOther, guardUntil] = reply as [number, number, number, number];
      if (lost === 1) this.leaseLost(sentAt);
      this.leaseWritten(sentAt);
      let checkIn = Number.POSITIVE_INFINITY;
      if (earliestOther > 0) checkIn = Math.min(checkIn, (earliestOther - now) / 1000 + 1);
      if (guardUntil > 0) checkIn = Math.min(checkIn, (guardUntil - now) / 1000 + 1);
      this.guardSeen = guardUntil > now;
      this.checkBy = this.clock.now() + Math.max(0, checkIn);
      const grantsEnd = 5 + (reply[4] as number);
      this.takeGrants(reply.slice(0, grantsEnd), 5);
      if (lost !== 1) this.reconcile(reply.slice(grantsEnd));
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
   * Squares what Redis holds for this process, as (token, ticket) pairs, with what it knows:
   * - a grant to a ticket still waiting here is delivered now. Its notice was lost (published while
   *   the notice connection was down or not yet subscribed) or is late; either way the waiter must not
   *   wait for it any longer. This is what makes the check-ins a real safety net: a missed wake-up
   *   costs at most one `wakeTimeout`, never a hang. A late notice then finds the grant delivered.
   * - a token no permit here carries and no ticket here waits for: a grant whose reply was lost (a
   *   timeout, a dropped connection). Our lease would keep it alive forever, so it is released — but only
   *   when seen at two heartbeats in a row, because a reply may be on its way for a fresh one.
   */
  private reconcile(pairs: number[]): void {
    const candidates = new Set<number>();
    for (let index = 0; index + 1 < pairs.length; index += 2) {
      const token = pairs[index] as number;
      const id = pairs[index + 1] as number;
      if (this.holds(token)) continue;
      if (id !== 0 && this.tickets.has(id)) {
        this.onGrant(id, token);
        continue;
      }
      if (this.orphanCandidates.has(token)) this.discard(token);
      else candidates.add(token);
    }
    this.orphanCandidates = candidates;
  }

  /** Whether a permit held here carries `token`. */
  private holds(token: number): boolean {
    for (const permit of this.held) if (permit.fencingToken === token) return true;
    return false;
  }

  /** Redis no longer has our lease: every permit we hold is lost, every ticket must queue again. */
  private leaseLost(sentAt: number): void {
    const error = new LeaseLostError(
      `the lease on Redis semaphore ${JSON.stringify(this.name)} ended before it was renewed`,
    );
    for (const permit of this.held) permit.loseLease(error);
    this.held.clear();
    // Tickets were evicted with the lease; queue them again, in their local order.
    // (Acquires still in flight were sent after this heartbeat, so they queue under the new lease.)
    const again: Ticket[] = [];
    this.queue.forEach((waiter) => {
      const ticket = waiter.request;
      if (ticket.seq !== undefined && this.tickets.get(ticket.id) === ticket) again.push(ticket);
    });
    for (const ticket of again) this.untrack(ticket);
    this.leaseSentAt = Math.max(this.leaseSentAt, sentAt);
    // Each gets a new id: a late notice for its old one then finds nobody.
    for (const ticket of again) this.submit(ticket);
  }

  /**
   * One timer at the lease deadline while permits are held: if no renewal moved the deadline by the time
   * it fires, the permits are lost; if one did, it sleeps again until the new deadline. Arming it once
   * rather than on every grant and renewal keeps timers off the hot path.
   */
  private armWatchdog(): void {
    if (this.held.size === 0 || this.closed) {
      if (this.watchdogTimer !== undefined) this.clock.clearTimeout(this.watchdogTimer);
      this.watchdogTimer = undefined;
      return;
    }
    if (this.watchdogTimer !== undefined) return;
    this.watchdogTimer = this.clock.setTimeout(
      () => {
        this.watchdogTimer = undefined;
        if (this.held.size > 0 && this.clock.now() >= this.leaseDeadline()) {
          const error = new LeaseLostError(
            `the lease on Redis semaphore ${JSON.stringify(this.name)} could not be renewed in time (Redis unreachable or too slow)`,
          );
          for (const permit of this.held) permit.loseLease(error);
          this.held.clear();
        }
        this.armWatchdog();
      },
      Math.max(0, this.leaseDeadline() - this.clock.now()),
    );
    // It outlives the last release by up to a lease (see above); like the heartbeat, it must not keep a
    // finished process alive.
    this.clock.unref?.(this.watchdogTimer);
  }

  private stopTimers(): void {
    if (this.heartbeatTimer !== undefined) this.clock.clearTimeout(this.heartbeatTimer);
    if (this.watchdogTimer !== undefined) this.clock.clearTimeout(this.watchdogTimer);
    if (this.checkTimer !== undefined) this.clock.clearTimeout(this.checkTimer);
    this.checkTimer = undefined;
    this.heartbeatTimer = undefined;
    this.watchdogTimer = undefined;
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
      this.leaseMs,
      this.keyTtlMs,
      this.guardRestarts ? "1" : "0",
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

  private lostError(permit: RedisPermit, cause?: unknown): LeaseLostError {
    return new LeaseLostError(
      `the lease on ${this.subject()} (fencing token ${permit.fencingToken}) was lost while the work ran`,
      cause === undefined ? undefined : { cause },
    );
  }

  private tooHeavy(weight: number): RangeError {
    return new RangeError(
      `weight ${weight} is above the capacity ${this.limit} of ${this.subject()}; it could never be granted`,
    );
  }

  private subject(): string {
    return `Redis semaphore ${JSON.stringify(this.name)}`;
  }
}

/** `notices`: `"publish"` (default) or `"sharded"`. */
export function checkNotices(value: unknown): "publish" | "sharded" {
  if (value === undefined || value === "publish" || value === "sharded") return value ?? "publish";
  throw new TypeError(`notices must be "publish" or "sharded"; got ${describe(value)}`);
}

/** `commandTimeout`: a duration > 0 (default 5 s); 0 would fail every call at the first deadline sweep. */
export function checkCommandTimeout(value: Duration | undefined): number {
  const ms = toMilliseconds(value ?? "5s", "commandTimeout");
  if (!(ms > 0)) throw new RangeError(`commandTimeout must be longer than 0; got ${describe(value)}`);
  return ms;
}

/** `prefix`: a string (default `"sluice:"`), the start of every key. */
export function checkPrefix(value: unknown): string {
  if (value === undefined) return "sluice:";
  if (typeof value !== "string") throw new TypeError(`prefix must be a string; got ${describe(value)}`);
  return value;
}

/** Numbers as Redis' Lua reads them (tonumber accepts "inf"). */
function redisNumber(value: number): string | number {
  if (value === Number.POSITIVE_INFINITY) return "inf";
  if (value === Number.NEGATIVE_INFINITY) return "-inf";
  return value;
}

/** A number as Redis prints it (a sorted set score): the infinities are `inf` and `-inf`. */
function fromRedisNumber(text: string): number {
  if (text === "inf" || text === "+inf") return Number.POSITIVE_INFINITY;
  if (text === "-inf") return Number.NEGATIVE_INFINITY;
  return Number(text);
}

/** Reads one semaphore's state. */
export async function inspectSemaphore(
  connection: RedisConnection,
  tag: string,
  name: string,
  timeoutMs = 5_000,
): Promise<RedisSemaphoreSnapshot> {
  const reply = (await withDeadline(
    scripts.inspect.run(connection, [`${tag}meta`, `${tag}queue`, `${tag}clients`], []),
    timeoutMs,
    `inspect ${name}`,
  )) as [number, string[], string[], string[]];
  const [now, metaFlat, queueFlat, clientsFlat] = reply;
  const meta = new Map<string, string>();
  for (let index = 0; index + 1 < metaFlat.length; index += 2)
    meta.set(metaFlat[index] as string, metaFlat[index + 1] as string);
  const leases = new Map<string, number>();
  const clients: { client: string; leaseRemaining: number }[] = [];
  for (let index = 0; index + 1 < clientsFlat.length; index += 2) {
    const remaining = (Number(clientsFlat[index + 1]) - now) / 1000;
    leases.set(clientsFlat[index] as string, remaining);
    clients.push({ client: clientsFlat[index] as string, leaseRemaining: remaining });
  }
  const holders: RedisHolder[] = [];
  for (const [field, value] of meta) {
    if (!field.startsWith("h:")) continue;
    // `<weight>:<ticket>:<client>`; the client id may itself contain colons.
    const colon = value.indexOf(":");
    const client = value.slice(value.indexOf(":", colon + 1) + 1);
    holders.push({
      fencingToken: Number(field.slice(2)),
      weight: Number(value.slice(0, colon)),
      client,
      leaseRemaining: leases.get(client) ?? Number.NEGATIVE_INFINITY,
    });
  }
  holders.sort((a, b) => a.fencingToken - b.fencingToken);
  const waiters: RedisWaiter[] = [];
  for (let index = 0; index + 1 < queueFlat.length; index += 2) {
    const member = queueFlat[index] as string;
    const [seq, weight, , ...client] = member.split(":");
    const score = fromRedisNumber(queueFlat[index + 1] as string);
    waiters.push({
      ticket: Number(seq),
      weight: Number(weight),
      priority: score === 0 ? 0 : -score,
      client: client.join(":"),
    });
  }
  const capacity = meta.get("capacity");
  const guard = Number(meta.get("ready") ?? 0);
  return {
    kind: "semaphore",
    name,
    key: `${tag}meta`,
    capacity:
      capacity === undefined ? undefined : Number(capacity) >= UNLIMITED ? Number.POSITIVE_INFINITY : Number(capacity),
    used: Number(meta.get("used") ?? 0),
    fencingToken: Number(meta.get("fence") ?? 0),
    holders,
    waiters,
    clients,
    guardRemaining: guard > now ? (guard - now) / 1000 : 0,
  };
}

/**
 * A lock shared by every process using the same Redis and `name`: a {@link RedisSemaphore} of
 * capacity 1 with lock vocabulary.
 *
 * @example
 * ```ts
 * import { RedisMutex } from "sluice/redis";
 * const mutex = new RedisMutex(redis, { name: "nightly-report" });
 * await mutex.runExclusive(async (signal) => {
 *   await buildReport({ signal }); // one process at a time, everywhere
 * });
 * ```
 */
export class RedisMutex implements Limiter<LockOptions> {
  private readonly semaphore: RedisSemaphore;

  /**
   * @param redis - an ioredis client (or any {@link RedisConnection}).
   * @param options - as {@link RedisSemaphoreOptions}, without `capacity` (always 1).
   * @throws TypeError/RangeError naming the option and the value.
   */
  constructor(redis: RedisClient, options: Omit<RedisSemaphoreOptions, "capacity">) {
    if (options === null || typeof options !== "object") {
      throw new TypeError(`options must be an object with a name; got ${describe(options)}`);
    }
    checkOptionNames(options, REDIS_MUTEX_OPTIONS, "the new RedisMutex() options");
    this.semaphore = new RedisSemaphore(redis, { ...options, capacity: 1 });
  }

  /** The name shared in Redis: every process using it shares this lock. */
  get name(): string {
    return this.semaphore.name;
  }

  /** Waits for the lock. */
  lock(options?: LockOptions): Promise<RedisPermit> {
    return this.semaphore.acquire(options);
  }

  /** Takes the lock if it is free and nobody waits; otherwise resolves `undefined`. */
  tryLock(): Promise<RedisPermit | undefined> {
    return this.semaphore.tryAcquire(1);
  }

  /** Runs `fn` holding the lock (see {@link RedisSemaphore.run} for lease loss). */
  runExclusive<T>(fn: (signal: AbortSignal) => T | PromiseLike<T>, options?: LockOptions): Promise<T> {
    return this.semaphore.run(fn, options);
  }

  /** Same as {@link RedisMutex.lock}, for code written against the {@link Limiter} interface. */
  acquire(options?: LockOptions): Promise<RedisPermit> {
    return this.lock(options);
  }

  /** Same as {@link RedisMutex.runExclusive}, for code written against the {@link Limiter} interface. */
  run<T>(fn: (signal: AbortSignal) => T | PromiseLike<T>, options?: LockOptions): Promise<T> {
    return this.runExclusive(fn, options);
  }

  /** A snapshot of the lock in Redis: see {@link RedisSemaphore.inspect}. */
  inspect(): Promise<RedisSemaphoreSnapshot> {
    return this.semaphore.inspect();
  }

  /** Leaves, as {@link RedisSemaphore.close}: waiters reject with `ClosedError`, a held lock is given back. */
  close(): Promise<void> {
    return this.semaphore.close();
  }
}
