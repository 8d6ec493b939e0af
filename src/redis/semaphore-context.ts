/**
 * What every part of a RedisSemaphore (or of one key of a RedisKeyedSemaphore) reads: the settings of
 * the whole semaphore, shared by all its keys ({@link SemaphoreSettings}: the process's id and lease, its
 * notice channel, whether it is closed, the one way it runs a script), and where one key's state lives
 * ({@link SemaphoreContext}) with the errors that name it.
 */

import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { checkCapacity } from "../core/arguments.js";
import { type Clock, systemClock } from "../core/clock.js";
import { describe } from "../core/describe.js";
import { ClosedError, LeaseLostError, weightAboveCapacity } from "../core/errors.js";
import {
  type NoticeConnection,
  type RedisClient,
  type RedisConnection,
  Script,
  sharedNotices,
  toConnection,
} from "./connection.js";
import { withDeadline } from "./errors.js";
import {
  checkCommandTimeout,
  checkKeyTtl,
  checkLeaseTtl,
  checkNotices,
  checkPrefix,
  checkUnavailablePolicy,
  checkWakeTimeout,
  type UnavailablePolicy,
} from "./options.js";
import type { LeasedPermit, RedisPermit } from "./permits.js";
import type { RedisSemaphoreOptions } from "./semaphore.js";
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

/** The acquire, release, cancel and heartbeat scripts, for one way of telling of a grant. */
export type NotifyingScripts = ReturnType<typeof notifyingScripts>;

const scripts = notifyingScripts("PUBLISH");
/** The same scripts for `notices: "sharded"` (made on first use). */
let shardedScripts: NotifyingScripts | undefined;

/** Numbers as Redis' Lua reads them (tonumber accepts "inf"). */
export function redisNumber(value: number): string | number {
  if (value === Number.POSITIVE_INFINITY) return "inf";
  if (value === Number.NEGATIVE_INFINITY) return "-inf";
  return value;
}

/** What a semaphore's options become: the settings shared by all its keys. */
export class SemaphoreSettings {
  /** The name shared in Redis. */
  readonly name: string;
  /** This process's id in Redis (shows up in `inspect()` and in its notice channel's name). */
  readonly client: string;
  /** The capacity (per key) this process enforces, written to Redis with each call. Settable (`capacity`). */
  capacity: number;
  /** The lease (`leaseTtl`), in ms. */
  readonly leaseMs: number;
  readonly connection: RedisConnection;
  /** The process's notice connection for this client, shared with its other semaphores. */
  readonly notices: NoticeConnection;
  /** `<prefix>{<name>}:`, the start of every key. */
  readonly tag: string;
  /** The lease of every process (`clients`), shared by all keys. */
  readonly clientsKey: string;
  /** This process's notice channel, shared by all keys. */
  readonly wakeKey: string;
  readonly commandMs: number;
  readonly wakeMs: number;
  readonly keyTtlMs: number;
  /** Whether grant notices use sharded pub/sub (`notices: "sharded"`). */
  readonly sharded: boolean;
  readonly scripts: NotifyingScripts;
  readonly guardRestarts: boolean;
  readonly onUnavailable: UnavailablePolicy;
  /** Whether PUBLISH's count is exact, so the scripts may pass over a process that hears nothing. */
  readonly deliveryCounted: boolean;
  readonly clock = systemClock;
  /** Set by `close()`: nothing more is admitted. */
  closed = false;
  /** Set once `close()` gave the leases back: no more timers, heartbeats or Redis calls. */
  gone = false;
  /** The flags every script takes (ARGV 6): the restart guard, exact delivery counts, keyed. */
  private readonly flags: string;

  /**
   * Checks `options` (whose names the caller checked), in the order their errors are documented.
   * `keyed`: the keys of a RedisKeyedSemaphore share the leases (see "keyed" in semaphore-scripts.ts).
   * @throws TypeError or RangeError naming the first bad option.
   */
  constructor(redis: RedisClient, options: RedisSemaphoreOptions, keyed: boolean) {
    this.connection = toConnection(redis);
    this.notices = sharedNotices(redis, this.connection);
    if (typeof options.name !== "string" || options.name === "") {
      throw new TypeError(`name must be a non-empty string; got ${describe(options.name)}`);
    }
    this.name = options.name;
    this.capacity = checkCapacity(options.capacity);
    this.leaseMs = checkLeaseTtl(options.leaseTtl);
    this.commandMs = checkCommandTimeout(options.commandTimeout);
    this.wakeMs = checkWakeTimeout(options.wakeTimeout, this.leaseMs);
    this.keyTtlMs = checkKeyTtl(options.keyTtl, this.leaseMs);
    this.guardRestarts = options.guardRestarts ?? true;
    this.onUnavailable = checkUnavailablePolicy(options.onUnavailable);
    this.sharded = checkNotices(options.notices) === "sharded";
    this.deliveryCounted = this.sharded || this.connection.cluster === false;
    this.scripts = this.sharded ? (shardedScripts ??= notifyingScripts("SPUBLISH")) : scripts;
    const prefix = checkPrefix(options.prefix);
    this.tag = `${prefix}{${this.name}}:`;
    this.clientsKey = `${this.tag}clients`;
    this.client = `${hostname()}/${process.pid}/${randomBytes(6).toString("hex")}`;
    this.wakeKey = `${this.tag}wake:${this.client}`;
    this.flags = (this.guardRestarts ? "1" : "0") + (this.deliveryCounted ? "1" : "0") + (keyed ? "1" : "0");
  }

  /**
   * Runs `script` on `keys` with the arguments every script takes first, then `extra`. Rejects with
   * RedisUnavailableError when Redis does not answer within `commandTimeout`; `onLate` then sees the
   * reply if it still comes, so what the script did can be undone. `subject` names what was called.
   */
  call(
    script: Script,
    keys: readonly string[],
    extra: (string | number)[],
    what: string,
    subject: () => string,
    onLate?: (value: unknown) => void,
  ): Promise<unknown> {
    const args = [
      this.tag,
      this.client,
      this.capacity === Number.POSITIVE_INFINITY ? UNLIMITED : this.capacity,
      this.leaseMs,
      this.keyTtlMs,
      this.flags,
      ...extra,
    ];
    let running: Promise<unknown>;
    try {
      running = script.run(this.connection, keys as string[], args);
    } catch (error) {
      running = Promise.reject(error);
    }
    return withDeadline(running, this.commandMs, () => `${what} on ${subject()}`, onLate);
  }
}

/**
 * Where one key's state lives (a RedisSemaphore is one key: `<tag>meta`; a keyed one's key `k` is
 * `<tag>k:<k>:meta`), the settings it shares with every key, and the errors that name it.
 */
export class SemaphoreContext {
  /** `meta`, `queue`, `clients`: the keys every script takes. */
  readonly keys: [string, string, string];
  /** What grant notices name the key by: the part of `meta` between the tag and `:meta` (empty for one key). */
  readonly label: string;
  private readonly described: string;

  /** `key`: the key of a RedisKeyedSemaphore, or undefined for a RedisSemaphore. */
  constructor(
    readonly settings: SemaphoreSettings,
    readonly key?: string,
  ) {
    this.label = key === undefined ? "" : `k:${key}`;
    const start = key === undefined ? settings.tag : `${settings.tag}${this.label}:`;
    this.keys = [`${start}meta`, `${start}queue`, settings.clientsKey];
    this.described =
      key === undefined
        ? `Redis semaphore ${JSON.stringify(settings.name)}`
        : `Redis keyed semaphore ${JSON.stringify(settings.name)}, key ${JSON.stringify(key)}`;
  }

  get name(): string {
    return this.settings.name;
  }
  get client(): string {
    return this.settings.client;
  }
  get capacity(): number {
    return this.settings.capacity;
  }
  get leaseMs(): number {
    return this.settings.leaseMs;
  }
  get wakeMs(): number {
    return this.settings.wakeMs;
  }
  get connection(): RedisConnection {
    return this.settings.connection;
  }
  get scripts(): NotifyingScripts {
    return this.settings.scripts;
  }
  get onUnavailable(): UnavailablePolicy {
    return this.settings.onUnavailable;
  }
  get clock(): Clock {
    return this.settings.clock;
  }
  get closed(): boolean {
    return this.settings.closed;
  }
  get gone(): boolean {
    return this.settings.gone;
  }

  /**
   * Check-ins still owed to this key because a call on it failed (no reply, or a late one): Redis may hold
   * a grant for this process that nobody here knows of, which only a check-in finds (two in a row, see
   * `Leases.reconcile`). Until then the key counts as in use, so it is checked in and not forgotten.
   */
  unsure = 0;

  /** Runs `script` on this key (see {@link SemaphoreSettings.call}). */
  call(script: Script, extra: (string | number)[], what: string, onLate?: (value: unknown) => void): Promise<unknown> {
    const running = this.settings.call(script, this.keys, extra, what, () => this.subject(), onLate);
    // On the side, so the caller reads the reply as many steps after Redis sent it as before.
    running.catch(() => {
      this.unsure = 3;
    });
    return running;
  }

  /** What error messages call the semaphore (and the key). */
  subject(): string {
    return this.described;
  }

  closedError(): ClosedError {
    return new ClosedError(`${this.subject()} was closed`);
  }

  tooHeavy(weight: number): RangeError {
    return weightAboveCapacity(weight, this.capacity, this.subject());
  }

  /** What `run` rejects with when `fn` failed under a lost lease. */
  lostError(permit: RedisPermit, cause?: unknown): LeaseLostError {
    return new LeaseLostError(
      `the lease on ${this.subject()} (fencing token ${permit.fencingToken}) was lost while the work ran`,
      cause === undefined ? undefined : { cause },
    );
  }

  /** What `release()` of a permit whose lease was lost rejects with. */
  releasedLostError(permit: LeasedPermit, lost: LeaseLostError): LeaseLostError {
    return new LeaseLostError(
      `the lease on ${this.subject()} (fencing token ${permit.fencingToken}) was lost before the permit was released: ${lost.message}`,
      { cause: lost },
    );
  }
}
