/**
 * `sluice inspect`: the state of limits shared through Redis — holders, leases and their time left,
 * waiters, the fencing counter, tokens left — read with `sluice/redis`'s `inspectRedis`.
 */
import { inspectRedis, type RedisSnapshot } from "../redis/inspect.js";
import { type CommandSpec, flagOption, type ParsedCommandLine, stringOption, UsageError } from "./command-line.js";
import { ExitCode } from "./exit-codes.js";
import { formatDuration, formatNumber } from "./rates.js";
import { connectRedis } from "./redis-connection.js";

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
};

export async function inspectCommand(parsed: ParsedCommandLine): Promise<ExitCode> {
  const name = INSPECT_COMMAND.name;
  const url = stringOption(parsed, "redis");
  if (url === undefined) throw new UsageError("--redis URL is required", name);
  if (!/^rediss?:\/\//.test(url))
    throw new UsageError(`--redis must be a redis:// or rediss:// URL; got ${JSON.stringify(url)}`, name);
  const key = stringOption(parsed, "key");
  const prefix = stringOption(parsed, "prefix");
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
  if (flagOption(parsed, "json")) {
    process.stdout.write(`${JSON.stringify(snapshots, null, 2)}\n`);
  } else if (snapshots.length === 0) {
    process.stdout.write(
      key === undefined ? `no sluice limits in ${url}\n` : `no sluice limit named ${JSON.stringify(key)} in ${url}\n`,
    );
  } else {
    process.stdout.write(`${snapshots.map(describeSnapshot).join("\n")}`);
  }
  return key !== undefined && snapshots.length === 0 ? ExitCode.jobFailed : ExitCode.ok;
}

/** One primitive's state, for people. */
export function describeSnapshot(snapshot: RedisSnapshot): string {
  const lines: string[] = [];
  if (snapshot.kind === "semaphore") {
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
