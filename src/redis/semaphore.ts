/**
 * RedisSemaphore: the Semaphore contract across processes and machines.
 *
 * Redis holds the truth (who holds what, who waits in which order); each process keeps a local
 * {@link WaitQueue} of its callers for abort and timeout handling. This file is the public class: its
 * options, statistics and the Limiter surface. It is one key of the machinery a RedisKeyedSemaphore has
 * for each key (`semaphore-key.ts`), with the process's lease, heartbeat and notice subscription
 * (`semaphore-process.ts`) for that one key. A key stands on four parts, each in its own file:
 *
 * - `semaphore-requests.ts`, acquiring: one script grants at once when the request fits and nobody
 *   waits ahead, or puts a ticket in the Redis queue (FIFO within a priority, across all processes);
 *   the requests of one tick go in one script. `semaphore-tickets.ts` holds the tickets.
 * - `semaphore-grants.ts`, releasing and waking: a release frees the weight and hands it to the tickets
 *   that now fit, writing a notice on each receiving process's channel; each process hears of its
 *   grants by push, and turns them into permits.
 * - `semaphore-leases.ts`, leases: one lease per process covers all its permits and tickets (on every key),
 *   renewed by a heartbeat and checked synchronously against a conservative local deadline. A process with requests
 *   queued in Redis also checks in at least every `wakeTimeout`, so a notice lost with a dropped
 *   connection costs a delay, never a hang; every check-in squares what Redis holds with what this
 *   process believes, and every reply carries the state's epoch, so a state recreated after a restart
 *   or a flush is noticed at the next reply.
 * - `semaphore-context.ts`, plumbing: the settings and a key's Redis keys, and the one way to run a
 *   script, with a deadline.
 *
 * The Lua scripts and the key layout are in `semaphore-scripts.ts`; `inspect()` is in `inspect.ts`.
 */

import type { LimiterStatistics } from "../core/admission.js";
import { checkCapacity, checkOptionNames, optionNames } from "../core/arguments.js";
import { describe } from "../core/describe.js";
import { identify, type LimiterIdentity } from "../core/diagnostics.js";
import type { Duration } from "../core/duration.js";
import type { AcquireOptions, Limiter } from "../core/limiter.js";
import type { SelfChecking } from "../core/wait-queue.js";
import type { RedisClient } from "./connection.js";
import { inspectSemaphore, type RedisSemaphoreSnapshot } from "./inspect.js";
import { checkCloseOptions, type RedisCloseOptions, type UnavailablePolicy } from "./options.js";
import type { RedisPermit } from "./permits.js";
import { SemaphoreContext, SemaphoreSettings } from "./semaphore-context.js";
import { SemaphoreKey } from "./semaphore-key.js";
import { ProcessLease } from "./semaphore-process.js";

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
  /** Settings, closed or not, and the way to run a script: what every part reads. */
  private readonly settings: SemaphoreSettings;
  /** Its one key: the callers, tickets, requests, grants and permits. */
  private readonly key: SemaphoreKey;
  /** The lease, heartbeat, check-ins and notice subscription of this process. */
  private readonly lease: ProcessLease;
  /** The `close()` under way or done. */
  private closing: Promise<void> | undefined = undefined;

  constructor(redis: RedisClient, options: RedisSemaphoreOptions) {
    if (options === null || typeof options !== "object") {
      throw new TypeError(`options must be an object with name and capacity; got ${describe(options)}`);
    }
    checkOptionNames(options, REDIS_SEMAPHORE_OPTIONS, "the new RedisSemaphore() options");
    const settings = new SemaphoreSettings(redis, options, false);
    this.settings = settings;
    this.name = settings.name;
    this.client = settings.client;
    this.identity = identify(this, this.name, "semaphore", "redis", settings.clock);
    const context = new SemaphoreContext(settings);
    this.lease = new ProcessLease(
      settings,
      { keys: () => [this.key], find: () => this.key, locate: () => context },
      () => context.subject(),
    );
    this.key = new SemaphoreKey(context, this.lease, this.identity);
  }

  /**
   * The capacity this process enforces (and writes to Redis with each call). Settable; every process
   * must be told the same value.
   */
  get capacity(): number {
    return this.settings.capacity;
  }
  /**
   * Changes the capacity, as described above. Redis applies it for every process at once.
   * @throws TypeError if `value` is not a number; RangeError if it is not an integer >= 0 or `Infinity`.
   */
  set capacity(value: number) {
    const { settings, key } = this;
    const before = settings.capacity;
    settings.capacity = checkCapacity(value);
    key.queue.forEach((waiter) => {
      const ticket = waiter.request;
      if (ticket.weight <= settings.capacity) return;
      key.requests.forget(ticket);
      key.admission.reject(waiter, key.context.tooHeavy(ticket.weight));
    });
    // Have Redis apply the new capacity now, for every process: waiters that fit a larger one are
    // served (not at the next release or check-in), and tickets too heavy for a smaller one are refused
    // (a full semaphore, or one shrunk to 0, would never reach them). Token 0 is nobody's (tokens start
    // from the server clock), so this release frees nothing and only dispatches.
    if (settings.capacity !== before && !settings.closed) key.grants.discard(0);
  }

  /** Callers of this process waiting for a permit. */
  get waiting(): number {
    return this.key.queue.size;
  }

  /** Weight this process holds (use `inspect()` for every process). */
  get inUse(): number {
    return this.key.leases.inUse;
  }

  /** `capacity - inUse`, as this process sees it. */
  get available(): number {
    return this.settings.capacity - this.inUse;
  }

  /** A snapshot of this process's view, without a round trip (see {@link RedisSemaphoreStatistics}). */
  statistics(): RedisSemaphoreStatistics {
    return this.key.statistics(this.name);
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
    return this.key.acquire(options);
  }

  /**
   * Takes `weight` permits if that is possible right now without passing anyone in line; otherwise
   * resolves `undefined`. One round trip.
   */
  tryAcquire(weight = 1): Promise<RedisPermit | undefined> {
    return this.key.tryAcquire(weight);
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
  run<T>(fn: (signal: AbortSignal, permit: RedisPermit) => T | PromiseLike<T>, options?: AcquireOptions): Promise<T> {
    return this.key.run(fn, options);
  }

  /**
   * A snapshot of the semaphore in Redis: holders with their remaining lease, waiters in queue order,
   * the fencing counter.
   */
  inspect(): Promise<RedisSemaphoreSnapshot> {
    return inspectSemaphore(this.settings.connection, this.settings.tag, this.name, this.settings.commandMs);
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
      timeout = checkCloseOptions(options, this.settings.leaseMs);
    } catch (error) {
      return Promise.reject(error);
    }
    this.closing = this.lease.close(timeout);
    return this.closing;
  }

  /**
   * @internal For the model tests: the admission (its queue and counters), the tickets (filed, counted,
   * each with its caller waiting here) and the permits kept under the lease.
   */
  "~selfChecks"(): readonly SelfChecking[] {
    return this.key.selfChecks();
  }
}
