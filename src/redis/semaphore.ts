/**
 * RedisSemaphore: the Semaphore contract across processes and machines.
 *
 * Redis holds the truth (who holds what, who waits in which order); each process keeps a local
 * {@link WaitQueue} of its callers for abort and timeout handling. This file is the public class: its
 * options, statistics and the Limiter surface. It stands on four parts, each in its own file:
 *
 * - `semaphore-requests.ts`, acquiring: one script grants at once when the request fits and nobody
 *   waits ahead, or puts a ticket in the Redis queue (FIFO within a priority, across all processes);
 *   the requests of one tick go in one script. `semaphore-tickets.ts` holds the tickets.
 * - `semaphore-grants.ts`, releasing and waking: a release frees the weight and hands it to the tickets
 *   that now fit, writing a notice on each receiving process's channel; each process hears of its
 *   grants by push, and turns them into permits.
 * - `semaphore-leases.ts`, leases: one lease per process covers all its permits and tickets, renewed by a
 *   heartbeat and checked synchronously against a conservative local deadline. A process with requests
 *   queued in Redis also checks in at least every `wakeTimeout`, so a notice lost with a dropped
 *   connection costs a delay, never a hang; every check-in squares what Redis holds with what this
 *   process believes, and every reply carries the state's epoch, so a state recreated after a restart
 *   or a flush is noticed at the next reply.
 * - `semaphore-context.ts`, plumbing: the settings and keys, and the one way to run a script, with a
 *   deadline.
 *
 * The Lua scripts and the key layout are in `semaphore-scripts.ts`; `inspect()` is in `inspect.ts`.
 */

import { Admission, type LimiterStatistics } from "../core/admission.js";
import { checkCapacity, checkFunction, checkOptionNames, checkWeight, optionNames } from "../core/arguments.js";
import { describe } from "../core/describe.js";
import { identify, type LimiterIdentity } from "../core/diagnostics.js";
import type { Duration } from "../core/duration.js";
import { ClosedError, LeaseLostError } from "../core/errors.js";
import type { AcquireOptions, Limiter, Permit } from "../core/limiter.js";
import { runHolding } from "../core/permit.js";
import { type CheckedAcquireOptions, checkAcquireOptions } from "../core/wait-options.js";
import type { SelfChecking, WaitQueue } from "../core/wait-queue.js";
import type { RedisClient } from "./connection.js";
import { inspectSemaphore, type RedisSemaphoreSnapshot } from "./inspect.js";
import { checkCloseOptions, type RedisCloseOptions, type UnavailablePolicy } from "./options.js";
import type { RedisPermit } from "./permits.js";
import { SemaphoreContext } from "./semaphore-context.js";
import { GrantListener } from "./semaphore-grants.js";
import { Leases } from "./semaphore-leases.js";
import { RequestBatcher } from "./semaphore-requests.js";
import { type Ticket, Tickets } from "./semaphore-tickets.js";

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
  /** @internal What its `sluice:*` events name. */
  readonly identity: LimiterIdentity;
  /** Settings, keys, closed or not, and the way to run a script: what every part reads. */
  private readonly context: SemaphoreContext;
  /** The admission step; its queue holds this process's callers (the order that counts is Redis'). */
  private readonly admission: Admission<Ticket, Permit>;
  /** Local callers waiting; abort and timeout are handled here, the order that counts is Redis'. */
  private readonly queue: WaitQueue<Ticket, Permit>;
  /** The submissions not yet granted. */
  private readonly tickets = new Tickets();
  /** Acquiring: takes the callers to Redis (and back out). */
  private readonly requests: RequestBatcher;
  /** Releasing and waking: hears of grants and hands them over; takes permits back. */
  private readonly grants: GrantListener;
  /** The lease, the permits held under it, heartbeats and check-ins. */
  private readonly leases: Leases;
  /** The `close()` under way or done. */
  private closing: Promise<void> | undefined = undefined;

  constructor(redis: RedisClient, options: RedisSemaphoreOptions) {
    if (options === null || typeof options !== "object") {
      throw new TypeError(`options must be an object with name and capacity; got ${describe(options)}`);
    }
    checkOptionNames(options, REDIS_SEMAPHORE_OPTIONS, "the new RedisSemaphore() options");
    const context = new SemaphoreContext(redis, options);
    this.context = context;
    this.name = context.name;
    this.client = context.client;
    this.identity = identify(this, this.name, "semaphore", "redis", context.clock);
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
      this.identity,
    );
    this.queue = this.admission.queue;
    // The parts call one another (a grant may queue a caller again, a check-in may deliver a grant):
    // each is made with what it needs at once, and told of the ones made after it.
    this.leases = new Leases(context, this.identity, this.tickets, this.queue);
    this.grants = new GrantListener(context, this.tickets, this.admission, this.leases);
    this.requests = new RequestBatcher(context, this.tickets, this.admission, this.leases, this.grants);
    this.leases.connect(this.requests, this.grants);
    this.grants.connect(this.requests);
  }

  /**
   * The capacity this process enforces (and writes to Redis with each call). Settable; every process
   * must be told the same value.
   */
  get capacity(): number {
    return this.context.capacity;
  }
  /**
   * Changes the capacity, as described above. Redis applies it for every process at once.
   * @throws TypeError if `value` is not a number; RangeError if it is not an integer >= 0 or `Infinity`.
   */
  set capacity(value: number) {
    const context = this.context;
    const before = context.capacity;
    context.capacity = checkCapacity(value);
    this.queue.forEach((waiter) => {
      const ticket = waiter.request;
      if (ticket.weight <= context.capacity) return;
      this.requests.forget(ticket);
      this.admission.reject(waiter, context.tooHeavy(ticket.weight));
    });
    // Have Redis apply the new capacity now, for every process: waiters that fit a larger one are
    // served (not at the next release or check-in), and tickets too heavy for a smaller one are refused
    // (a full semaphore, or one shrunk to 0, would never reach them). Token 0 is nobody's (tokens start
    // from the server clock), so this release frees nothing and only dispatches.
    if (context.capacity !== before && !context.closed) this.grants.discard(0);
  }

  /** Callers of this process waiting for a permit. */
  get waiting(): number {
    return this.queue.size;
  }

  /** Weight this process holds (use `inspect()` for every process). */
  get inUse(): number {
    return this.leases.inUse;
  }

  /** `capacity - inUse`, as this process sees it. */
  get available(): number {
    return this.context.capacity - this.inUse;
  }

  /** A snapshot of this process's view, without a round trip (see {@link RedisSemaphoreStatistics}). */
  statistics(): RedisSemaphoreStatistics {
    const inUse = this.inUse;
    const capacity = this.context.capacity;
    return {
      name: this.name,
      capacity,
      available: capacity - inUse,
      inUse,
      waiting: this.queue.size,
      ...this.admission.counters,
      lastFencingToken: this.grants.lastToken,
      restartGuard: this.leases.restartGuard,
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
    return this.admission.admit(this.tickets.create(checked.weight, checked.priority), checked) as Promise<RedisPermit>;
  }

  /**
   * Takes `weight` permits if that is possible right now without passing anyone in line; otherwise
   * resolves `undefined`. One round trip.
   */
  async tryAcquire(weight = 1): Promise<RedisPermit | undefined> {
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
      if (permit.leaseLost && !(error instanceof LeaseLostError)) throw this.context.lostError(permit, error);
      throw error;
    }
  }

  /**
   * A snapshot of the semaphore in Redis: holders with their remaining lease, waiters in queue order,
   * the fencing counter.
   */
  inspect(): Promise<RedisSemaphoreSnapshot> {
    return inspectSemaphore(this.context.connection, this.context.tag, this.name, this.context.commandMs);
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
      timeout = checkCloseOptions(options, this.context.leaseMs);
    } catch (error) {
      return Promise.reject(error);
    }
    this.closing = this.leave(timeout);
    return this.closing;
  }

  /**
   * @internal For the model tests: the admission (its queue and counters), the tickets (filed, counted,
   * each with its caller waiting here) and the permits kept under the lease.
   */
  "~selfChecks"(): readonly SelfChecking[] {
    return [this.admission, { assertInvariants: () => this.tickets.assertInvariants(this.queue) }, this.leases];
  }

  private async leave(timeout: number): Promise<void> {
    const context = this.context;
    context.closed = true;
    const error = context.closedError();
    this.queue.forEachRequest((ticket) => ticket.fallback?.abort());
    this.admission.rejectAll(error);
    // An acquire still in flight then undoes itself when its reply comes (onSubmitted).
    this.tickets.cancelAll();
    if (this.leases.holding) {
      const stopping = new ClosedError(`${context.subject()} is closing: stop the work and release the permit`);
      await this.leases.drain(stopping, timeout);
    }
    context.gone = true;
    this.leases.abandon(
      new LeaseLostError(
        `${context.subject()} was closed before this permit was released (close() waited ${timeout} ms for it)`,
      ),
    );
    try {
      await context.call(context.scripts.heartbeat, ["leave", "0"], "close");
    } catch {
      // Our lease runs out on its own.
    }
    this.grants.stopListening();
  }
}
