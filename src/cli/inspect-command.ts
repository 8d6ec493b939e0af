/**
 * `sluice inspect`: the state of limits shared through Redis — holders, leases and their time left,
 * waiters, the fencing counter, tokens left — read with `sluice/redis`'s `inspectRedis`.
 */
import { inspectRedis, type RedisSnapshot } from "../redis/inspect.js";
import type { CommandSpec } from "./command-line.js";
import { EXIT_CODE_HELP, ExitCode } from "./exit-codes.js";
import { formatDuration, formatNumber } from "./rates.js";
import { connectRedis } from "./redis-connection.js";
import type { InspectSettings } from "./settings.js";

export const INSPECT_COMMAND: CommandSpec = {
  name: "inspect",
  summary: "show the state of limits shared through Redis: holders, leases, waiters, tokens left",
  usage: ["inspect --redis URL [--key NAME] [--json]"],
  description: [
    "Reads the state of the distributed semaphores and rate limiters that sluice keeps in Redis (those",
    "`sluice run --redis URL --key NAME` and sluice/redis create): who holds permits and how long their",
    "leases have left, who waits, the fencing counter, and the budget left in each rate limit. Without",
    "--key, shows every sluice key found. Read-only. Exit code 1 when --key names nothing.",
  ].join("\n"),
  options: [
    {
      name: "redis",
      type: "string",
      value: "URL",
      description: "the Redis server (redis://host:port); needs the ioredis package",
    },
    { name: "key", type: "string", value: "NAME", description: "the semaphore or rate limiter to show (default: all)" },
    {
      name: "prefix",
      type: "string",
      value: "PREFIX",
      description: "the key prefix the limits were created with",
      default: "sluice:",
    },
    { name: "json", type: "boolean", description: "print the state as JSON" },
  ],
  positionals: "none",
  examples: [
    { command: "sluice inspect --redis redis://127.0.0.1:6379", explanation: "every sluice limit on that server" },
    { command: "sluice inspect --redis redis://10.0.0.5:6379 --key openai --json", explanation: "one key, as JSON" },
  ],
  exitCodes: [
    ["0", "the state was shown (also when there is none)"],
    ["1", "--key names nothing in that Redis"],
    EXIT_CODE_HELP.usage,
    ["3", "Redis could not be reached, or did not answer"],
  ],
};

export async function inspectCommand(settings: InspectSettings): Promise<ExitCode> {
  const { url, key, prefix } = settings;
  const connection = await connectRedis(url);
  let snapshots: RedisSnapshot[];
  try {
    snapshots = await inspectRedis(connection.client, {
      ...(key === undefined ? {} : { key }),
      ...(prefix === undefined ? {} : { prefix }),
    });
  } finally {
    await connection.close();
  }
  if (settings.json) {
    process.stdout.write(`${JSON.stringify(snapshots, null, 2)}\n`);
  } else if (snapshots.length === 0) {
    const none =
      key === undefined ? `no sluice limits in ${url}` : `no sluice limit named ${JSON.stringify(key)} in ${url}`;
    process.stdout.write(`${none}\n${IDLE_RATE_LIMITERS}\n`);
  } else {
    process.stdout.write(
      `${withIdleRateLimiters(snapshots).map(describeSnapshot).join("\n")}\n${IDLE_RATE_LIMITERS}\n`,
    );
  }
  return key !== undefined && snapshots.length === 0 ? ExitCode.jobFailed : ExitCode.ok;
}

/**
 * Why a rate limiter can be missing, said under every listing: its key expires as soon as every bucket
 * is full again, so one that spent nothing in its last interval has no state in Redis to show, with
 * `--key` as without it.
 */
const IDLE_RATE_LIMITERS =
  "(a rate limiter that has spent nothing in its last interval keeps no key in Redis, so it is not listed: all its budget is left)";

/**
 * The snapshots, with a rate limiter whose key expired (every bucket full) shown beside its
 * concurrency semaphore `NAME/concurrency`, which outlives it: otherwise the semaphore of a rate
 * limiter would be listed and the limiter itself not.
 */
function withIdleRateLimiters(snapshots: readonly RedisSnapshot[]): (RedisSnapshot | IdleRateLimiter)[] {
  const rateLimiters = new Set(snapshots.filter((s) => s.kind === "rate-limiter").map((s) => s.name));
  const result: (RedisSnapshot | IdleRateLimiter)[] = [];
  for (const snapshot of snapshots) {
    const owner = snapshot.kind === "semaphore" ? /^(.*)\/concurrency$/.exec(snapshot.name)?.[1] : undefined;
    if (owner !== undefined && !rateLimiters.has(owner)) result.push({ kind: "idle-rate-limiter", name: owner });
    result.push(snapshot);
  }
  return result;
}

interface IdleRateLimiter {
  readonly kind: "idle-rate-limiter";
  readonly name: string;
}

/** One primitive's state, for people. */
export function describeSnapshot(snapshot: RedisSnapshot | IdleRateLimiter): string {
  const lines: string[] = [];
  if (snapshot.kind === "idle-rate-limiter") {
    lines.push(`rate limiter ${JSON.stringify(snapshot.name)}: every limit full (nothing spent in its last interval)`);
  } else if (snapshot.kind === "semaphore") {
    const capacity = snapshot.capacity === undefined ? "?" : formatNumber(snapshot.capacity);
    lines.push(
      `semaphore ${JSON.stringify(snapshot.name)}: ${snapshot.used}/${capacity} held, ${snapshot.waiters.length} waiting, ` +
        `fencing token ${snapshot.fencingToken}${snapshot.guardRemaining > 0 ? `, restart guard ${formatDuration(snapshot.guardRemaining)} left` : ""}`,
    );
    for (const holder of snapshot.holders) {
      const lease = holder.leaseRemaining >= 0 ? `lease ${formatDuration(holder.leaseRemaining)} left` : "lease ENDED";
      lines.push(`  holder  token ${holder.fencingToken}  weight ${holder.weight}  ${lease}  client ${holder.client}`);
    }
    for (const waiter of snapshot.waiters) {
      lines.push(
        `  waiter  ticket ${waiter.ticket}  weight ${waiter.weight}  priority ${waiter.priority}  client ${waiter.client}`,
      );
    }
    for (const client of snapshot.clients) {
      lines.push(
        `  client  ${client.client}  lease ${client.leaseRemaining >= 0 ? `${formatDuration(client.leaseRemaining)} left` : "ENDED"}`,
      );
    }
  } else {
    lines.push(
      `rate limiter ${JSON.stringify(snapshot.name)}${snapshot.pauseRemaining > 0 ? `: paused, ${formatDuration(snapshot.pauseRemaining)} left` : ""}`,
    );
    for (const limit of snapshot.limits) {
      lines.push(
        `  ${limit.unit}: ${formatNumber(limit.remaining)} of ${formatNumber(limit.limit)} left per ${formatDuration(limit.interval)} (burst ${formatNumber(limit.burst)})`,
      );
    }
  }
  return `${lines.join("\n")}\n`;
}
