/**
 * The options `sluice run` and `sluice fetch` share, as their `--help` describes them: the limits
 * (`--concurrency`, `--rate`, `--min-interval`, `--redis`, ...) and the session (`--input`, `--retries`,
 * `--timeout`, `--report`, ...). Reading and checking them is `settings.ts`'s work.
 */
import type { OptionSpec } from "./command-line.js";

export const LIMIT_OPTIONS: readonly OptionSpec[] = [
  {
    name: "concurrency",
    short: "c",
    type: "string",
    value: "N",
    description:
      "jobs running at once, up to 100000; `unlimited` for no cap; `auto` or auto:MIN-MAX to find it from latency and overload answers (default bounds 1 to 4 times the default)",
  },
  {
    name: "rate",
    short: "r",
    type: "string",
    multiple: true,
    value: "RATE",
    description:
      "at most LIMIT starts per INTERVAL, e.g. 10/s, 600/min, 100/5s (a bare number is seconds: 100/5 is 100/5s); with :UNIT (40000/min:tokens) it counts that unit of each job's cost (see --cost-field); all rates hold together",
  },
  {
    name: "min-interval",
    type: "string",
    value: "DURATION",
    description: "at least this long between two starts, e.g. 0.5 or 100ms; at most 1d",
  },
  {
    name: "redis",
    type: "string",
    value: "URL",
    description:
      "share the limits through Redis with every process using the same --key (redis://host:port); needs the ioredis package",
  },
  { name: "key", type: "string", value: "NAME", description: "the name of the shared limits in Redis (with --redis)" },
  {
    name: "lease",
    type: "string",
    value: "DURATION",
    description:
      "with --redis and --concurrency: how long the permits of a process that died stay taken (renewed every third of it while alive), from 1s to 10m. A Redis that started less than one lease ago grants nothing until a lease has passed since it started (its restart guard): the progress line says so",
    default: "10s",
  },
  {
    name: "algorithm",
    type: "string",
    value: "NAME",
    description:
      "how --rate counts: sliding-window (at most LIMIT in any INTERVAL, exactly) or token-bucket (continuous refill; a full bucket may burst: at most LIMIT more in any INTERVAL)",
    default: "sliding-window; token-bucket with --redis",
  },
];

/**
 * Limits per input line's key (`--key-field`): a limit per key, and fair turns between the keys at the
 * shared limits.
 */
export const KEY_OPTIONS: readonly OptionSpec[] = [
  {
    name: "key-field",
    type: "string",
    value: "FIELD",
    description:
      "each JSON input line's FIELD (a string or a number; a.b for a nested one) is its key: the --*-per-key limits hold per key, and the keys take fair turns at the shared limits (--concurrency, --rate), so one key's 10,000 lines do not hold back another's one. A line without it fails on its own (bad input). Not (yet) with --redis, -c auto, --min-interval or --api-key",
  },
  {
    name: "rate-per-key",
    type: "string",
    multiple: true,
    value: "RATE",
    description: "with --key-field: at most LIMIT starts per INTERVAL for each key, as --rate (10/s, 600/min:tokens)",
  },
  {
    name: "concurrency-per-key",
    type: "string",
    value: "N",
    description: "with --key-field: at most N jobs of one key running at once, up to 100000",
  },
  {
    name: "read-ahead",
    type: "string",
    value: "N",
    description:
      "with --key-field: read up to N lines ahead of those running, so that the keys among them can take turns (the lines in memory), up to 100000",
    default: "1000",
  },
];

export const SESSION_OPTIONS: readonly OptionSpec[] = [
  {
    name: "input",
    short: "i",
    type: "string",
    value: "FILE",
    description: "read input lines from FILE",
    default: "stdin",
  },
  {
    name: "retries",
    type: "string",
    value: "N",
    description:
      "retry a failed job up to N more times (at most 1000), with exponential backoff and full jitter; each retry waits for the limits again",
    default: "0",
  },
  {
    name: "retry-delay",
    type: "string",
    value: "DURATION",
    description: "backoff base: the first retry waits up to this (with --retries)",
    default: "1s",
  },
  {
    name: "retry-max-delay",
    type: "string",
    value: "DURATION",
    description: "backoff ceiling (with --retries)",
    default: "30s",
  },
  {
    name: "timeout",
    short: "t",
    type: "string",
    value: "DURATION",
    description: "end an attempt that runs longer, e.g. 30 (seconds) or 500ms; at most 30d",
  },
  { name: "json", type: "boolean", description: "print one JSON line per finished job on stdout" },
  {
    name: "report",
    type: "string",
    value: "FILE.html",
    description: "write a self-contained HTML report: concurrency and start rate against the limits, latency, 429s",
  },
  {
    name: "resume",
    type: "string",
    value: "FILE",
    description:
      "append each result to FILE as a JSON line, synced to disk, and skip the input lines FILE records as succeeded: after a crash or Ctrl-C, the same command finishes the batch. Failed lines run again; a FILE written for another input is refused (exit 2), nothing sent",
  },
  { name: "quiet", short: "q", type: "boolean", description: "no progress, no summary (the exit code still tells)" },
  {
    name: "progress-interval",
    type: "string",
    value: "DURATION",
    description: "between progress lines when stderr is not a terminal, at least 1s",
    default: "5s",
  },
];

/** `specs` with one option's help default set, for commands whose defaults differ. */
export function withDefault(specs: readonly OptionSpec[], name: string, value: string): OptionSpec[] {
  return specs.map((spec) => (spec.name === name ? { ...spec, default: value } : spec));
}
