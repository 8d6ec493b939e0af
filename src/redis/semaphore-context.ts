/**
 * What every part of a RedisSemaphore shares: its settings, where its state lives in Redis, whether it
 * is closed, the errors that name it, and the one way it runs a script (the arguments every script
 * takes first, under the command deadline).
 */

import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { checkCapacity } from "../core/arguments.js";
import { systemClock } from "../core/clock.js";
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

/** The settings, keys and state of one RedisSemaphore that all its parts read. */
export class SemaphoreContext {
  /** The name shared in Redis. */
  readonly name: string;
  /** This process's id in Redis (shows up in `inspect()` and in its notice channel's name). */
  readonly client: string;
  /** The capacity this process enforces, written to Redis with each call. Settable (`capacity`). */
  capacity: number;
  /** The lease (`leaseTtl`), in ms. */
  readonly leaseMs: number;
  readonly connection: RedisConnection;
  /** The process's notice connection for this client, shared with its other semaphores. */
  readonly notices: NoticeConnection;
  /** `<prefix>{<name>}:`, the start of every key. */
  readonly tag: string;
  readonly keys: [string, string, string];
  /** This process's notice channel. */
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

  /**
   * Checks `options` (whose names the caller checked), in the order their errors are documented.
   * @throws TypeError or RangeError naming the first bad option.
   */
  constructor(redis: RedisClient, options: RedisSemaphoreOptions) {
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
    this.keys = [`${this.tag}meta`, `${this.tag}queue`, `${this.tag}clients`];
    this.client = `${hostname()}/${process.pid}/${randomBytes(6).toString("hex")}`;
    this.wakeKey = `${this.tag}wake:${this.client}`;
  }

  /**
   * Runs `script` with the arguments every script takes first, then `extra`. Rejects with
   * RedisUnavailableError when Redis does not answer within `commandTimeout`; `onLate` then sees the
   * reply if it still comes, so what the script did can be undone.
   */
  call(script: Script, extra: (string | number)[], what: string, onLate?: (value: unknown) => void): Promise<unknown> {
    const args = [
      this.tag,
      this.client,
      this.capacity === Number.POSITIVE_INFINITY ? UNLIMITED : this.capacity,
      this.leaseMs,
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

  /** What error messages call the semaphore. */
  subject(): string {
    return `Redis semaphore ${JSON.stringify(this.name)}`;
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
