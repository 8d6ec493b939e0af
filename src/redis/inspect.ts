/**
 * `inspectRedis`: what the `sluice inspect` command shows — every sluice semaphore, mutex and rate
 * limiter found in a Redis, with holders, leases, waiters, the fencing counter and budgets left.
 * Read-only.
 */
import { checkOptionNames, optionNames } from "../core/arguments.js";
import { describe } from "../core/describe.js";
import { type RedisClient, type RedisConnection, Script, toConnection } from "./connection.js";
import { withDeadline } from "./errors.js";
import { parseSlots } from "./permits.js";
import { inspectRateLimiter, type RedisRateLimiterSnapshot } from "./rate-limiter.js";
import { INSPECT, UNLIMITED } from "./semaphore-scripts.js";

const inspectScript = new Script(INSPECT);

/** One holder, as {@link RedisSemaphore.inspect} reports it. */
export interface RedisHolder {
  /** The fencing token of the grant (see {@link RedisPermit.fencingToken}). */
  fencingToken: number;
  /** The fencing slots the grant occupies (see {@link RedisPermit.fencingSlots}). */
  fencingSlots: number[];
  /** The permits it holds. */
  weight: number;
  /** The id of the process holding it (as in `clients`). */
  client: string;
  /** Milliseconds until the holder's lease ends unless renewed; negative when it ended already. */
  leaseRemaining: number;
}

/** One waiting ticket, in queue order. */
export interface RedisWaiter {
  /** Its place in Redis' arrival order (lower came first; priority goes before it). */
  ticket: number;
  /** The permits it asks for. */
  weight: number;
  /** Its priority: higher is served first. */
  priority: number;
  /** The id of the process waiting (as in `clients`). */
  client: string;
}

/** A snapshot of a semaphore's state in Redis. */
export interface RedisSemaphoreSnapshot {
  /** Tells it from a {@link RedisRateLimiterSnapshot} in a {@link RedisSnapshot}. */
  kind: "semaphore";
  /** The semaphore's name (a rate limiter's concurrency is `<name>/concurrency`). */
  name: string;
  /** The Redis key of its state (`<prefix>{<name>}:meta`; a keyed semaphore's key `k`: `<prefix>{<name>}:k:<k>:meta`). */
  key: string;
  /** The capacity the state was created with; `undefined` when no state exists (never used, or expired). */
  capacity: number | undefined;
  /** The weight held, by every process together. */
  used: number;
  /** The last fencing token handed out. */
  fencingToken: number;
  /** Every grant held, oldest (lowest token) first. */
  holders: RedisHolder[];
  /** Every waiting ticket, in the order they will be served. */
  waiters: RedisWaiter[];
  /** Every process with a lease: its id and milliseconds left. */
  clients: {
    /** The process's id. */
    client: string;
    /** Milliseconds until its lease ends unless renewed; negative when it ended already. */
    leaseRemaining: number;
  }[];
  /** Milliseconds the restart guard still holds grants back; 0 when it does not. */
  guardRemaining: number;
}

/** A number as Redis prints it (a sorted set score): the infinities are `inf` and `-inf`. */
function fromRedisNumber(text: string): number {
  if (text === "inf" || text === "+inf") return Number.POSITIVE_INFINITY;
  if (text === "-inf") return Number.NEGATIVE_INFINITY;
  return Number(text);
}

/**
 * Reads one semaphore's state: `tag` is `<prefix>{<name>}:`; `keys` its `meta`, `queue` and `clients`
 * when they are not `tag` followed by those (a key of a keyed semaphore).
 */
export async function inspectSemaphore(
  connection: RedisConnection,
  tag: string,
  name: string,
  timeoutMs = 5_000,
  keys: readonly string[] = [`${tag}meta`, `${tag}queue`, `${tag}clients`],
): Promise<RedisSemaphoreSnapshot> {
  const reply = (await withDeadline(
    inspectScript.run(connection, keys as string[], []),
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
    // `<weight>:<ticket>:<slots>:<client>`; the client id may itself contain colons.
    const [, weight, slots, client] = /^(\d+):\d+:([\d,]*):(.+)$/.exec(value) ?? [];
    if (client === undefined) continue;
    holders.push({
      fencingToken: Number(field.slice(2)),
      fencingSlots: parseSlots(slots),
      weight: Number(weight),
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
    key: keys[0] as string,
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

const INSPECT_OPTIONS = /* @__PURE__ */ optionNames<InspectRedisOptions>({
  name: true,
  key: true,
  prefix: true,
  timeout: true,
});

/** What each scan looks for after `<prefix>{*}:` (`k:*:meta`: a keyed semaphore's keys), and what it is. */
const SUFFIXES = { meta: "semaphore", "k:*:meta": "semaphore", rate: "rate-limiter" } as const;

/**
 * Finds sluice primitives in Redis (by `SCAN` over `<prefix>{*}:meta`, `<prefix>{*}:k:*:meta` and `<prefix>{*}:rate`) and
 * returns a snapshot of each, sorted by name; a key `k` of a RedisKeyedSemaphore `name` is the semaphore
 * `name/k`. Keys that expired between the scan and the read are
 * skipped.
 *
 * @example
 * ```ts
 * import { inspectRedis } from "sluice/redis";
 * for (const found of await inspectRedis(redis)) {
 *   if (found.kind === "semaphore") console.log(found.name, `${found.used}/${found.capacity}`, found.waiters.length);
 *   else console.log(found.name, found.limits.map((limit) => `${limit.remaining} ${limit.unit}`));
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
  // A keyed semaphore's key `k` of `name` is found as the semaphore `name/k`, with its own `meta` and
  // `queue` (see "keyed" in semaphore-scripts.ts).
  const found: { name: string; kind: "semaphore" | "rate-limiter"; keys?: string[] }[] = [];
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
          const keyed = suffix === "rate" ? null : /^\{(.+?)\}:k:(.+):meta$/s.exec(inner);
          if (keyed !== null) {
            const start = `${prefix}{${keyed[1]}}:`;
            const keys = [key, `${start}k:${keyed[2]}:queue`, `${start}clients`];
            found.push({ name: `${keyed[1]}/${keyed[2]}`, kind, keys });
          } else if (inner.startsWith("{") && inner.endsWith(end)) {
            found.push({ name: inner.slice(1, -end.length), kind });
          }
        }
        cursor = next;
        if (cursor === "0") break;
      }
    }
  }
  const snapshots: RedisSnapshot[] = [];
  const seen = new Set<string>();
  for (const { name, kind, keys } of found) {
    if (seen.has(`${kind}:${name}`)) continue;
    seen.add(`${kind}:${name}`);
    const tag = `${prefix}{${name}}:`;
    if (kind === "semaphore") {
      const snapshot = await inspectSemaphore(connection, tag, name, timeout, keys);
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
