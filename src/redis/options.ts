/**
 * The options of the Redis primitives, checked once here so that every primitive refuses the same bad
 * value with the same message.
 */
import { checkOptionNames, optionNames } from "../core/arguments.js";
import { describe } from "../core/describe.js";
import { type Duration, toMilliseconds } from "../core/duration.js";
import type { Limiter } from "../core/limiter.js";

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

/** Options for {@link RedisSemaphore.close}. */
export interface RedisCloseOptions {
  /**
   * How long to wait for permits still held to be released (their signals abort first, asking the work
   * to stop) before their leases are given back regardless. Default: the lease TTL.
   */
  timeout?: Duration;
}

/** The longest lease: the longest delay a timer takes, so that every renewal can be scheduled. */
const MAX_LEASE_MS = 2_147_483_647;

/** `leaseTtl`: a duration from 30 ms (renewals need room) to about 24.8 days; default 10 s. */
export function checkLeaseTtl(value: Duration | undefined): number {
  const ms = toMilliseconds(value ?? "10s", "leaseTtl");
  if (ms < 30 || ms > MAX_LEASE_MS) {
    throw new RangeError(`leaseTtl must be from 30 ms to ${MAX_LEASE_MS} ms (about 24.8 days); got ${describe(value)}`);
  }
  return ms;
}

/**
 * `wakeTimeout`: from 50 ms (each check-in is a Redis call, so a shorter one would flood Redis with
 * calls from every waiting process) to the longest timer; default a third of the lease, at most 5 s.
 */
export function checkWakeTimeout(value: Duration | undefined, leaseMs: number): number {
  const ms = toMilliseconds(value ?? Math.min(leaseMs / 3, 5_000), "wakeTimeout");
  if (ms < 50 || ms > MAX_LEASE_MS) {
    throw new RangeError(`wakeTimeout must be from 50 ms to ${MAX_LEASE_MS} ms; got ${describe(value)}`);
  }
  return ms;
}

/** `keyTtl`: at least twice the lease, at most a hundred times the longest lease; default 6 leases, at least 60 s. */
export function checkKeyTtl(value: Duration | undefined, leaseMs: number): number {
  const ms = Math.ceil(toMilliseconds(value ?? Math.max(leaseMs * 6, 60_000), "keyTtl"));
  if (ms < leaseMs * 2) throw new RangeError(`keyTtl must be at least twice leaseTtl (${leaseMs} ms); got ${ms}`);
  if (ms > MAX_LEASE_MS * 100) throw new RangeError(`keyTtl must be at most ${MAX_LEASE_MS * 100} ms; got ${ms}`);
  return ms;
}

const CLOSE_OPTIONS = /* @__PURE__ */ optionNames<RedisCloseOptions>({ timeout: true });

/** `close({ timeout })`: a duration (default the lease). */
export function checkCloseOptions(options: RedisCloseOptions | undefined, leaseMs: number): number {
  if (options === undefined) return leaseMs;
  if (options === null || typeof options !== "object") {
    throw new TypeError(`options must be an object such as { timeout: "5s" }; got ${describe(options)}`);
  }
  checkOptionNames(options, CLOSE_OPTIONS, "the close() options");
  return options.timeout === undefined ? leaseMs : toMilliseconds(options.timeout, "timeout");
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
