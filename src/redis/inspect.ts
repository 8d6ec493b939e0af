/**
 * `inspectRedis`: what the `sluice inspect` command shows — every sluice semaphore, mutex and rate
 * limiter found in a Redis, with holders, leases, waiters, the fencing counter and budgets left.
 * Read-only.
 */
import { checkOptionNames, optionNames } from "../core/arguments.js";
import { describe } from "../core/duration.js";
import { type RedisClient, toConnection } from "./connection.js";
import { inspectRateLimiter, type RedisRateLimiterSnapshot } from "./rate-limiter.js";
import { inspectSemaphore, type RedisSemaphoreSnapshot } from "./semaphore.js";

/** What {@link inspectRedis} returns per primitive; `kind` tells which. */
export type RedisSnapshot = RedisSemaphoreSnapshot | RedisRateLimiterSnapshot;

/** Options for {@link inspectRedis}. */
export interface InspectRedisOptions {
  /**
   * Only the primitives with this name (a rate limiter's concurrency semaphore, `<name>/concurrency`,
   * comes with it). Default: all of them.
   */
  name?: string;
  /** Same as `name` (the CLI's `--key`). */
  key?: string;
  /** Key prefix the primitives were created with. Default `"sluice:"`. */
  prefix?: string;
  /** Longest wait for one Redis reply, in ms. Default 5000. */
  timeout?: number;
}

const INSPECT_OPTIONS = optionNames<InspectRedisOptions>({ name: true, key: true, prefix: true, timeout: true });

const SUFFIXES = { meta: "semaphore", rate: "rate-limiter" } as const;

/**
 * Finds sluice primitives in Redis (by `SCAN` over `<prefix>{*}:meta` and `<prefix>{*}:rate`) and
 * returns a snapshot of each, sorted by name. Keys that expired between the scan and the read are
 * skipped.
 *
 * @example
 * ```ts
 * import { inspectRedis } from "sluice/redis";
 * for (const found of await inspectRedis(redis)) {
 *   if (found.kind === "semaphore") console.log(found.name, `${found.used}/${found.capacity}`, found.waiters.length);
 *   else console.log(found.name, found.limits.map((limit) => `${limit.available} ${limit.unit}`));
 * }
 * ```
 */
export async function inspectRedis(redis: RedisClient, options: InspectRedisOptions = {}): Promise<RedisSnapshot[]> {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object; got ${describe(options)}`);
  }
  checkOptionNames(options, INSPECT_OPTIONS, "the inspectRedis() options");
  const connection = toConnection(redis);
  const prefix = options.prefix ?? "sluice:";
  const timeout = options.timeout ?? 5_000;
  const only = options.name ?? options.key;
  const found: { name: string; kind: "semaphore" | "rate-limiter" }[] = [];
  if (only !== undefined) {
    found.push({ name: only, kind: "semaphore" }, { name: `${only}/concurrency`, kind: "semaphore" });
    found.push({ name: only, kind: "rate-limiter" });
  } else {
    for (const [suffix, kind] of Object.entries(SUFFIXES)) {
      // In SCAN patterns only `*?[]\` are special, so the braces of the hash tag match themselves.
      const pattern = `${escapeGlob(prefix)}{*}:${suffix}`;
      let cursor = "0";
      // Bounded: SCAN ends when the cursor comes back to 0; the cap guards against a misbehaving server.
      for (let round = 0; round < 100_000; round++) {
        const [next, keys] = await connection.scan(cursor, pattern, 500);
        for (const key of keys) {
          const inner = key.slice(prefix.length);
          const end = `}:${suffix}`;
          if (inner.startsWith("{") && inner.endsWith(end)) found.push({ name: inner.slice(1, -end.length), kind });
        }
        cursor = next;
        if (cursor === "0") break;
      }
    }
  }
  const snapshots: RedisSnapshot[] = [];
  const seen = new Set<string>();
  for (const { name, kind } of found) {
    if (seen.has(`${kind}:${name}`)) continue;
    seen.add(`${kind}:${name}`);
    const tag = `${prefix}{${name}}:`;
    if (kind === "semaphore") {
      const snapshot = await inspectSemaphore(connection, tag, name, timeout);
      if (snapshot.capacity !== undefined || snapshot.holders.length > 0 || snapshot.waiters.length > 0) {
        snapshots.push(snapshot);
      }
    } else {
      const snapshot = await inspectRateLimiter(connection, `${tag}rate`, name, timeout);
      if (snapshot.limits.length > 0 || snapshot.pauseRemaining > 0) snapshots.push(snapshot);
    }
  }
  return snapshots.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.kind < b.kind ? -1 : 1));
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, "\\$&");
}
