/**
 * From a parsed command line to one checked settings object per command. Every option is read here,
 * once, and every rule that involves more than one option lives here: an option that would do nothing
 * is refused, two outputs that are one file are refused, and every number is bounded. The rest of the
 * CLI receives the settings object and never looks at the command line again.
 */
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import type { MockServerOptions } from "../testing/mock-server.js";
import type { ParsedCommandLine } from "./command-line.js";
import { type NamedFile, sameFileConflict } from "./files.js";
import { DURATIONS, OptionValues } from "./option-values.js";
import { parseRate, type RateSpec, REQUESTS } from "./rates.js";

const { SECOND, MINUTE, DAY } = DURATIONS;

/** The limits a command line asked for. */
export interface LimitSettings {
  /** Jobs at once: shared through Redis when given explicitly with `--redis`, else this process's cap. */
  readonly concurrency: number;
  /** Whether `--concurrency` was given (with `--redis`, only then is concurrency shared). */
  readonly concurrencyGiven: boolean;
  /**
   * `-c auto[:MIN-MAX]`: the concurrency adapts between `min` and `max` in this process (an
   * AdaptiveLimiter), under `concurrency` (= `max`) as the ceiling, shared through Redis with `--redis`.
   */
  readonly adaptive: { readonly min: number; readonly max: number } | undefined;
  readonly rates: readonly RateSpec[];
  /** Milliseconds. */
  readonly minInterval: number | undefined;
  /**
   * How `--rate` counts. `sliding-window` (the default here): at most LIMIT in any window of INTERVAL,
   * literally what `10/s` says, and always accepted by a provider's token bucket of the same size.
   * `token-bucket`: continuous refill, which lets a full bucket's burst through at the start.
   */
  readonly algorithm: "sliding-window" | "token-bucket";
  readonly redis: RedisSettings | undefined;
  /** `--key-field`: limits per key and fair turns between the keys; `undefined` without it. */
  readonly keys?: KeySettings | undefined;
}

/** The limits per key of `--key-field` and how far ahead the lines are read for the keys to take turns. */
export interface KeySettings {
  /** The JSON field (dotted for a nested one) whose value is a line's key. */
  readonly field: string;
  /** `--rate-per-key`: every key's own rates. */
  readonly rates: readonly RateSpec[];
  /** `--concurrency-per-key`: every key's own concurrency; `undefined` for none. */
  readonly concurrency: number | undefined;
  /** `--read-ahead`: lines read ahead of those started, waiting for their turn. */
  readonly readAhead: number;
}

export interface RedisSettings {
  readonly url: string;
  readonly key: string;
  /** Milliseconds: the lease of shared concurrency permits. */
  readonly lease: number;
}

/** What every run of jobs reads: input, retries, timeout, results, report, progress. */
export interface SessionSettings {
  readonly inputPath: string | undefined;
  readonly retries: number;
  /** Milliseconds, as every duration below. */
  readonly retryDelay: number;
  readonly retryMaxDelay: number;
  readonly timeout: number | undefined;
  readonly json: boolean;
  readonly reportPath: string | undefined;
  /**
   * `--resume FILE`: every result is appended there durably, and lines the file records as succeeded
   * are skipped (see `resume-file.ts`).
   */
  readonly resumePath: string | undefined;
  readonly quiet: boolean;
  readonly progressInterval: number;
}

/** `sluice run`. */
export interface RunSettings {
  readonly limits: LimitSettings;
  readonly session: SessionSettings;
  /** Per unit some `--rate` counts, the JSON field a job's cost in it is read from. */
  readonly costFields: ReadonlyMap<string, string>;
  /** The job command's argument vector. */
  readonly command: readonly string[];
  readonly shell: boolean;
  readonly maxOutput: number;
}

/** `sluice fetch`. */
export interface FetchSettings {
  readonly limits: LimitSettings;
  readonly session: SessionSettings;
  readonly costFields: ReadonlyMap<string, string>;
  readonly headers: Headers;
  /** For lines that do not say; `undefined`: GET, or POST with a body. */
  readonly method: string | undefined;
  readonly retryPost: boolean;
  readonly maxOutput: number;
  /** Where the results go: a file, or stdout when `undefined`. */
  readonly outputPath: string | undefined;
  /** `--api-key` and `--api-key-file`, in order: with any, requests go through a key pool. */
  readonly apiKeys: readonly string[];
  /** `--api-key-header`: the header that carries the key (`authorization`: `Bearer KEY`). */
  readonly apiKeyHeader: string;
}

/** `sluice demo`. */
export interface DemoSettings {
  readonly requests: number;
  readonly reportPath: string;
  readonly quiet: boolean;
  readonly progressInterval: number;
  readonly contrast: boolean;
}

/** `sluice inspect`. */
export interface InspectSettings {
  readonly url: string;
  readonly key: string | undefined;
  readonly prefix: string | undefined;
  readonly json: boolean;
}

/** `sluice mock`. */
export interface MockSettings {
  readonly server: MockServerOptions & { readonly port: number; readonly host: string };
  /** How long a minute of the limits lasts, as given: `1m`, `1s`. */
  readonly minuteText: string;
}

// Bounds. Beyond them a value limits nothing, waits for ever, floods the terminal or cannot be held in
// memory; each message says which.
const MAX_CONCURRENCY = 100_000;
const MAX_RETRIES = 1000;
/** Output kept per job: V8 cannot make one string of much more than 512 MiB. */
const MAX_OUTPUT_BYTES = 256 * 1024 * 1024;
const DEFAULT_MAX_OUTPUT = 1024 * 1024;

export function readRunSettings(parsed: ParsedCommandLine): RunSettings {
  const values = new OptionValues(parsed, "run");
  if (values.jobCommand.length === 0) {
    throw values.error("no command to run: put it after the options, e.g. sluice run -c 4 -- echo {}");
  }
  const limits = readLimits(values, { concurrency: availableParallelism() });
  const session = readSession(values, { retries: 0 });
  checkDistinctFiles(values, jobFiles(values, session, undefined, true));
  return {
    limits,
    session,
    costFields: readCostFields(values, limits, { estimated: [] }),
    command: values.jobCommand,
    shell: values.flag("shell"),
    maxOutput: readMaxOutput(values),
  };
}

export function readFetchSettings(parsed: ParsedCommandLine): FetchSettings {
  const values = new OptionValues(parsed, "fetch");
  const limits = readLimits(values, { concurrency: 16 });
  const session = readSession(values, { retries: 4 });
  const outputPath = values.string("output");
  if (outputPath !== undefined && session.json) {
    throw values.error(
      `--json prints the results on stdout, but ${values.typed("output")} writes them to ${outputPath}: give one of the two`,
    );
  }
  if (session.resumePath !== undefined && (outputPath !== undefined || session.json)) {
    const other = outputPath !== undefined ? `${values.typed("output")} ${outputPath}` : "--json (stdout)";
    throw values.error(
      `${values.typed("resume")} writes the results to ${session.resumePath}, and ${other} would write them too: give one of the two`,
    );
  }
  if (values.flag("retry-post") && session.retries === 0) {
    throw values.error(`--retry-post retries POST requests, but ${values.typed("retries")} is 0: nothing is retried`);
  }
  checkDistinctFiles(
    values,
    jobFiles(values, session, outputPath, outputPath === undefined && session.resumePath === undefined),
  );
  return {
    limits,
    session,
    // Without --cost-field, tokens are estimated from each request's body (characters / 4 + max_tokens).
    costFields: readCostFields(values, limits, { estimated: ["tokens"] }),
    headers: readHeaders(values),
    method: readMethod(values),
    retryPost: values.flag("retry-post"),
    maxOutput: readMaxOutput(values),
    outputPath,
    ...readKeyedApiKeys(values, limits),
  };
}

/** The API keys, which spread the requests over keys of their own: not with `--key-field` (yet). */
function readKeyedApiKeys(values: OptionValues, limits: LimitSettings): ReturnType<typeof readApiKeys> {
  const apiKeys = readApiKeys(values);
  if (limits.keys !== undefined && apiKeys.apiKeys.length > 0) {
    throw values.error("--key-field and --api-key (or --api-key-file) do not go together (yet): give one of the two");
  }
  return apiKeys;
}

/**
 * `--api-key` (repeatable) and `--api-key-file` (one key a line; blank lines and `#` comments skipped),
 * checked: no key twice, none empty, and no `--header` setting the same header.
 */
function readApiKeys(values: OptionValues): { apiKeys: string[]; apiKeyHeader: string } {
  const given: { key: string; from: string }[] = values.list("api-key").map((key) => ({
    key: key.trim(),
    from: values.typed("api-key"),
  }));
  const file = values.string("api-key-file");
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (error) {
      throw values.error(`${values.typed("api-key-file")} ${file}: ${(error as Error).message}`);
    }
    const lines = text.split(/\r?\n/).map((line) => line.trim());
    for (const [index, line] of lines.entries()) {
      if (line !== "" && !line.startsWith("#")) given.push({ key: line, from: `${file} line ${index + 1}` });
    }
    if (!given.some((entry) => entry.from.startsWith(file))) {
      throw values.error(`${values.typed("api-key-file")} ${file} has no key (one a line; # starts a comment)`);
    }
  }
  const header = (values.string("api-key-header") ?? "authorization").toLowerCase();
  if (values.given("api-key-header") && given.length === 0) {
    throw values.error(`${values.typed("api-key-header")} names the header of --api-key, but no key is given`);
  }
  if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(header)) {
    throw values.error(`${values.typed("api-key-header")} must be a header name; got ${JSON.stringify(header)}`);
  }
  const seen = new Map<string, string>();
  for (const { key, from } of given) {
    if (key === "") throw values.error(`${from}: an API key must not be empty`);
    const first = seen.get(key);
    if (first !== undefined) {
      throw values.error(`${from}: the API key ${maskKey(key)} is given twice (first by ${first})`);
    }
    seen.set(key, from);
  }
  if (given.length > 0 && values.list("header").some((line) => line.split(":")[0]?.trim().toLowerCase() === header)) {
    throw values.error(`--header sets ${header}, which --api-key sets for each request: give one of the two`);
  }
  return { apiKeys: given.map((entry) => entry.key), apiKeyHeader: header };
}

/** An API key as messages show it: never whole. */
function maskKey(key: string): string {
  return key.length <= 10 ? `${key.slice(0, 3)}...` : `${key.slice(0, 3)}...${key.slice(-4)}`;
}

export function readDemoSettings(parsed: ParsedCommandLine): DemoSettings {
  const values = new OptionValues(parsed, "demo");
  const quiet = values.flag("quiet");
  const reportPath = values.string("report") ?? "sluice-demo-report.html";
  checkDistinctFiles(values, [{ what: values.typed("report"), path: reportPath }, STDOUT]);
  return {
    requests: values.integer("requests", { min: 1, max: 100_000 }) ?? 240,
    reportPath,
    quiet,
    progressInterval: readProgressInterval(values, quiet) ?? 2 * SECOND,
    contrast: !values.flag("no-contrast"),
  };
}

export function readInspectSettings(parsed: ParsedCommandLine): InspectSettings {
  const values = new OptionValues(parsed, "inspect");
  const url = values.string("redis");
  if (url === undefined) throw values.error("--redis URL is required");
  checkRedisUrl(values, url);
  const key = values.string("key");
  if (key === "") throw values.error("--key must not be empty");
  return { url, key, prefix: values.string("prefix"), json: values.flag("json") };
}

const FAILURE_KINDS = ["server-error", "overloaded", "reset", "hang"] as const;

export function readMockSettings(parsed: ParsedCommandLine): MockSettings {
  const values = new OptionValues(parsed, "mock");
  const perMinute = (name: string) => values.integer(name, { min: 1, max: Number.MAX_SAFE_INTEGER });
  const requestsPerMinute = perMinute("requests-per-minute");
  const tokensPerMinute = perMinute("tokens-per-minute");
  if (values.given("minute") && requestsPerMinute === undefined && tokensPerMinute === undefined) {
    throw values.error(
      `${values.typed("minute")} sets how long a minute of the limits lasts, but no limit is given: add --requests-per-minute or --tokens-per-minute`,
    );
  }
  const host = values.string("host") ?? "127.0.0.1";
  if (host.trim() === "") throw values.error("--host must not be empty");
  const style = values.string("style") ?? "openai";
  if (style !== "openai" && style !== "anthropic") {
    throw values.error(`--style must be openai or anthropic; got ${JSON.stringify(style)}`);
  }
  // With --api-key, the limits and the quota hold per key, each key its own; without, server-wide.
  const accountLimits = {
    ...optional("requestsPerMinute", requestsPerMinute),
    ...optional("tokensPerMinute", tokensPerMinute),
    ...optional("quota", readQuota(values)),
  };
  const keys = values.list("api-key").map((key) => key.trim());
  for (const [index, key] of keys.entries()) {
    if (key === "") throw values.error(`${values.typed("api-key")}: an API key must not be empty`);
    if (keys.indexOf(key) !== index) throw values.error(`${values.typed("api-key")} ${key} is given twice`);
  }
  const server: MockSettings["server"] = {
    port: values.integer("port", { min: 0, max: 65_535 }) ?? 8429,
    host,
    style,
    seed: values.integer("seed", { min: 0, max: 2 ** 32 - 1 }) ?? 1,
    minute: values.duration("minute", { min: 1, max: DAY }) ?? MINUTE,
    ...(keys.length === 0 ? accountLimits : { keys: Object.fromEntries(keys.map((key) => [key, accountLimits])) }),
    ...optional("concurrency", values.integer("concurrency", { min: 1, max: MAX_CONCURRENCY })),
    ...optional("latency", values.range("latency", "duration", { min: 0, max: 10 * MINUTE })),
    ...optional("completionTokens", values.range("completion-tokens", "integer", { min: 0, max: 1_000_000 })),
    ...optional("failures", readFailures(values)),
    ...optional("overload", readOverload(values)),
  };
  return { server, minuteText: values.string("minute")?.trim() ?? "1m" };
}

function optional<K extends string, V>(name: K, value: V | undefined): { [key in K]?: V } {
  return (value === undefined ? {} : { [name]: value }) as { [key in K]?: V };
}

/** `--overload C[:QUEUE]` and `--overload-status`, which does nothing without it and is refused then. */
function readOverload(values: OptionValues): MockServerOptions["overload"] {
  const text = values.string("overload")?.trim();
  const statusText = values.string("overload-status")?.trim();
  if (text === undefined) {
    if (statusText !== undefined) throw values.error(`${values.typed("overload-status")} needs --overload C[:QUEUE]`);
    return undefined;
  }
  const match = /^(\d+)(?::(\d+))?$/.exec(text);
  const capacity = Number(match?.[1]);
  const queue = match?.[2] === undefined ? capacity : Number(match[2]);
  if (match === null || capacity < 1 || capacity > MAX_CONCURRENCY || queue > MAX_CONCURRENCY) {
    throw values.error(
      `${values.typed("overload")} must be C or C:QUEUE, C from 1 to ${MAX_CONCURRENCY} and QUEUE from 0; got ${JSON.stringify(text)}`,
    );
  }
  if (statusText !== undefined && statusText !== "503" && statusText !== "429") {
    throw values.error(`${values.typed("overload-status")} must be 503 or 429; got ${JSON.stringify(statusText)}`);
  }
  return { capacity, queue, status: statusText === "429" ? 429 : 503 };
}

function readQuota(values: OptionValues): MockServerOptions["quota"] {
  const requests = values.integer("quota-requests", { min: 0, max: Number.MAX_SAFE_INTEGER });
  const tokens = values.integer("quota-tokens", { min: 0, max: Number.MAX_SAFE_INTEGER });
  if (requests === undefined && tokens === undefined) return undefined;
  return { ...optional("requests", requests), ...optional("tokens", tokens) };
}

function readFailures(values: OptionValues): MockServerOptions["failures"] {
  const failures: Record<string, number> = {};
  for (const spec of values.list("fail")) {
    const [kind = "", share] = spec.split("=", 2);
    if (!(FAILURE_KINDS as readonly string[]).includes(kind)) {
      throw values.error(
        `--fail ${spec}: the kind must be one of ${FAILURE_KINDS.join(", ")}; write KIND=P, e.g. overloaded=0.05`,
      );
    }
    const probability = share === undefined || share.trim() === "" ? Number.NaN : Number(share);
    if (!(probability >= 0 && probability <= 1)) {
      throw values.error(`--fail ${spec}: the share must be a number from 0 to 1, e.g. ${kind}=0.05`);
    }
    failures[kind] = probability;
  }
  return Object.keys(failures).length === 0 ? undefined : failures;
}

// ---------------------------------------------------------------------------------------------------
// Limits

function readLimits(values: OptionValues, defaults: { concurrency: number }): LimitSettings {
  const adaptive = readAdaptive(values, defaults.concurrency);
  const concurrency =
    adaptive === undefined
      ? values.integer("concurrency", { min: 1, max: MAX_CONCURRENCY, unlimited: true })
      : adaptive.max;
  const rates = values.list("rate").map((text) => {
    try {
      return parseRate(text);
    } catch (error) {
      throw values.error(`${values.typed("rate")}: ${(error as Error).message}`);
    }
  });
  const minInterval = values.duration("min-interval", {
    min: 0,
    max: DAY,
    why: "a longer spacing between starts is a job for cron",
  });
  if (minInterval === 0) throw values.error(`${values.typed("min-interval")} 0 spaces nothing: leave it out`);
  const algorithm = readAlgorithm(values, rates);
  const redis = readRedis(values, { concurrencyGiven: concurrency !== undefined, rates, minInterval });
  if (redis !== undefined && algorithm === "sliding-window" && values.given("algorithm")) {
    throw values.error(
      "--redis shares rates as token buckets (GCRA); --algorithm sliding-window works in one process only",
    );
  }
  const keys = readKeys(values, { adaptive: adaptive !== undefined, redis: redis !== undefined, minInterval });
  return {
    concurrency: concurrency ?? defaults.concurrency,
    concurrencyGiven: concurrency !== undefined,
    adaptive,
    rates,
    minInterval,
    algorithm: values.given("algorithm") ? algorithm : redis === undefined ? "sliding-window" : "token-bucket",
    redis,
    keys,
  };
}

const DEFAULT_READ_AHEAD = 1000;

/**
 * `--key-field` and the limits per key. Each `--*-per-key` option needs `--key-field` (it would limit
 * nothing); `--key-field` alone is fine: the keys then take fair turns at the shared limits.
 */
function readKeys(
  values: OptionValues,
  other: { adaptive: boolean; redis: boolean; minInterval: number | undefined },
): KeySettings | undefined {
  const field = values.string("key-field");
  if (field === undefined) {
    for (const name of ["rate-per-key", "concurrency-per-key", "read-ahead"]) {
      if (values.given(name))
        throw values.error(
          `${values.typed(name)} needs --key-field FIELD: the field of each JSON line that names its key`,
        );
    }
    return undefined;
  }
  if (field.trim() === "" || field.split(".").some((part) => part === "")) {
    throw values.error(`--key-field must name a JSON field, such as customer or user.id; got ${JSON.stringify(field)}`);
  }
  // Each of these would need keyed limits of its own kind, which the command line does not build yet.
  if (other.redis) throw values.error("--key-field works in one process: not with --redis (yet)");
  if (other.adaptive) throw values.error(`--key-field needs a fixed ${values.typed("concurrency")}: not auto (yet)`);
  if (other.minInterval !== undefined)
    throw values.error("--key-field is not with --min-interval (yet): use --rate-per-key or --rate");
  const rates = values.list("rate-per-key").map((text) => {
    try {
      return parseRate(text);
    } catch (error) {
      throw values.error(`${values.typed("rate-per-key")}: ${(error as Error).message}`);
    }
  });
  return {
    field,
    rates,
    concurrency: values.integer("concurrency-per-key", { min: 1, max: MAX_CONCURRENCY }),
    readAhead: values.integer("read-ahead", { min: 1, max: 100_000 }) ?? DEFAULT_READ_AHEAD,
  };
}

/**
 * `-c auto` or `-c auto:MIN-MAX`, else `undefined` (a number, read by the caller). Without bounds: 1 to
 * four times the command's default concurrency, so a run that only ever sees steady latency stays sane.
 */
function readAdaptive(values: OptionValues, defaultConcurrency: number): LimitSettings["adaptive"] {
  const text = values.string("concurrency")?.trim();
  if (text === undefined || !/^auto/i.test(text)) return undefined;
  const match = /^auto(?::(\d+)-(\d+))?$/i.exec(text);
  const fail = (why: string) =>
    values.error(`${values.typed("concurrency")} ${why}; got ${JSON.stringify(text)} (e.g. auto or auto:4-64)`);
  if (match === null) throw fail("must be auto or auto:MIN-MAX with whole numbers");
  if (match[1] === undefined) return { min: 1, max: Math.min(MAX_CONCURRENCY, defaultConcurrency * 4) };
  const min = Number(match[1]);
  const max = Number(match[2]);
  if (min < 1) throw fail("auto:MIN-MAX needs MIN >= 1 (a limit of 0 admits nothing, ever)");
  if (max > MAX_CONCURRENCY) throw fail(`auto:MIN-MAX needs MAX <= ${MAX_CONCURRENCY}`);
  if (min > max) throw fail("auto:MIN-MAX needs MIN <= MAX");
  return { min, max };
}

function readAlgorithm(values: OptionValues, rates: readonly RateSpec[]): LimitSettings["algorithm"] {
  const algorithm = values.string("algorithm") ?? "sliding-window";
  if (algorithm !== "sliding-window" && algorithm !== "token-bucket") {
    throw values.error(`--algorithm must be sliding-window or token-bucket; got ${JSON.stringify(algorithm)}`);
  }
  if (values.given("algorithm") && rates.length === 0 && !values.given("rate-per-key")) {
    throw values.error(`--algorithm says how --rate counts, but no --rate is given`);
  }
  return algorithm;
}

function readRedis(
  values: OptionValues,
  limits: { concurrencyGiven: boolean; rates: readonly RateSpec[]; minInterval: number | undefined },
): RedisSettings | undefined {
  const url = values.string("redis");
  const key = values.string("key");
  if (url === undefined) {
    if (key !== undefined) throw values.error("--key names limits shared through Redis; give --redis URL too");
    if (values.given("lease")) throw values.error("--lease is the lease of limits shared through Redis: give --redis");
    return undefined;
  }
  if (key === undefined) throw values.error("--redis needs --key NAME: the name under which the limits are shared");
  if (key === "") throw values.error("--key must not be empty");
  checkRedisUrl(values, url);
  if (!limits.concurrencyGiven && limits.rates.length === 0 && limits.minInterval === undefined) {
    throw values.error("--redis shares limits, but none is given: add --concurrency N, --rate or --min-interval");
  }
  // Only shared concurrency holds leases; shared rates and spacing are charged once and hold nothing.
  if (values.given("lease") && !limits.concurrencyGiven) {
    throw values.error(
      "--lease is the lease of the concurrency shared through Redis, and none is shared: add --concurrency N, or leave --lease out",
    );
  }
  const lease = values.duration("lease", {
    min: SECOND,
    max: 10 * MINUTE,
    why: "shorter, a lease renewed over the network is lost to any pause; longer, a dead process holds its permits that long",
  });
  return { url, key, lease: lease ?? 10 * SECOND };
}

function checkRedisUrl(values: OptionValues, url: string): void {
  if (!/^rediss?:\/\/./.test(url)) {
    throw values.error(`--redis must be a redis:// or rediss:// URL; got ${JSON.stringify(url)}`);
  }
}

// ---------------------------------------------------------------------------------------------------
// Session

function readSession(values: OptionValues, defaults: { retries: number }): SessionSettings {
  const retries = values.integer("retries", { min: 0, max: MAX_RETRIES }) ?? defaults.retries;
  for (const name of ["retry-delay", "retry-max-delay"]) {
    if (values.given(name) && retries === 0) {
      throw values.error(
        `${values.typed(name)} sets the wait between retries, but ${values.typed("retries")} is 0: add --retries N`,
      );
    }
  }
  const retryDelay = values.duration("retry-delay", { min: 0, max: DAY }) ?? SECOND;
  const retryMaxDelay = values.duration("retry-max-delay", { min: 0, max: DAY }) ?? 30 * SECOND;
  if (values.given("retry-max-delay") && retryMaxDelay < retryDelay) {
    throw values.error(
      `${values.typed("retry-max-delay")} (the longest wait) is shorter than ${values.typed("retry-delay")} (the first); give a ceiling at least as long`,
    );
  }
  const quiet = values.flag("quiet");
  return {
    inputPath: values.string("input"),
    retries,
    retryDelay,
    retryMaxDelay,
    timeout: readTimeout(values),
    json: values.flag("json"),
    reportPath: values.string("report"),
    resumePath: readResumePath(values),
    quiet,
    progressInterval: readProgressInterval(values, quiet) ?? 5 * SECOND,
  };
}

function readResumePath(values: OptionValues): string | undefined {
  const path = values.string("resume");
  if (path !== undefined && path.trim() === "") {
    throw values.error(`${values.typed("resume")} needs a FILE: the results file to append to and resume from`);
  }
  return path;
}

function readTimeout(values: OptionValues): number | undefined {
  const timeout = values.duration("timeout", { min: 0, max: 30 * DAY });
  // A zero timeout would end every attempt the moment it starts: surely not what was meant.
  if (timeout === 0) {
    throw values.error(
      `${values.typed("timeout")} must be longer than 0; got ${JSON.stringify(values.string("timeout"))} (leave it out for no timeout)`,
    );
  }
  return timeout;
}

function readProgressInterval(values: OptionValues, quiet: boolean): number | undefined {
  if (quiet && values.given("progress-interval")) {
    throw values.error(
      `${values.typed("progress-interval")} sets how often progress is printed, but --quiet prints none`,
    );
  }
  return values.duration("progress-interval", {
    min: SECOND,
    max: DAY,
    why: "more often would flood the log with progress lines",
  });
}

function readMaxOutput(values: OptionValues): number {
  return (
    values.integer("max-output", {
      min: 0,
      max: MAX_OUTPUT_BYTES,
      why: "256 MiB per job is the most that can be kept in memory",
    }) ?? DEFAULT_MAX_OUTPUT
  );
}

// ---------------------------------------------------------------------------------------------------
// Costs: which unit each rate counts, and what charges it

/**
 * `--cost-field tokens` or `--cost-field tokens=estimated_tokens`, checked against the rates' units;
 * and every unit a rate counts must be charged by something (a cost field, or an estimate the command
 * makes itself), or that rate would limit nothing: `--rate 10/s:tokens` with no cost in tokens admits
 * every job for free.
 */
function readCostFields(
  values: OptionValues,
  limits: LimitSettings,
  made: { estimated: readonly string[] },
): Map<string, string> {
  const allRates = [...limits.rates, ...(limits.keys?.rates ?? [])];
  const units = [...new Set(allRates.map((rate) => rate.unit).filter((unit) => unit !== REQUESTS))];
  const option = values.typed("cost-field");
  const fields = new Map<string, string>();
  for (const spec of values.list("cost-field")) {
    const [unit, field = unit] = spec.split("=", 2) as [string, string | undefined];
    if (unit.trim() === "") {
      throw values.error(`${option} ${JSON.stringify(spec)}: the unit is empty; write UNIT or UNIT=FIELD, e.g. tokens`);
    }
    if (unit === REQUESTS) throw values.error(`${option}: every job costs one request; name another unit`);
    if (!units.includes(unit)) {
      const known = units.length === 0 ? "no --rate names a unit" : `the --rate units are ${units.join(", ")}`;
      throw values.error(
        `${option} ${spec}: no --rate counts ${JSON.stringify(unit)} (${known}; e.g. --rate 40000/min:${unit})`,
      );
    }
    if (field === "") throw values.error(`${option} ${spec}: the field name is empty`);
    if (fields.has(unit)) throw values.error(`${option}: the unit ${unit} is given twice`);
    fields.set(unit, field);
  }
  for (const rate of allRates) {
    if (rate.unit === REQUESTS || fields.has(rate.unit) || made.estimated.includes(rate.unit)) continue;
    throw values.error(
      `--rate ${rate.text} counts ${rate.unit}, but no job is charged any: add --cost-field ${rate.unit} (the number in each JSON input line's "${rate.unit}" field), or --cost-field ${rate.unit}=FIELD`,
    );
  }
  return fields;
}

// ---------------------------------------------------------------------------------------------------
// fetch's own

function readHeaders(values: OptionValues): Headers {
  const headers = new Headers();
  for (const header of values.list("header")) {
    const colon = header.indexOf(":");
    if (colon <= 0) throw values.error(`--header must be 'NAME: VALUE'; got ${JSON.stringify(header)}`);
    try {
      headers.append(header.slice(0, colon).trim(), header.slice(colon + 1).trim());
    } catch (error) {
      throw values.error(`--header ${JSON.stringify(header)}: ${(error as Error).message}`);
    }
  }
  return headers;
}

function readMethod(values: OptionValues): string | undefined {
  const method = values.string("method")?.toUpperCase();
  if (method === undefined) return undefined;
  try {
    new Request("http://localhost/", { method });
  } catch (error) {
    throw values.error(`--method ${JSON.stringify(method)}: ${(error as Error).message}`);
  }
  return method;
}

// ---------------------------------------------------------------------------------------------------
// Files

const STDOUT: NamedFile = { what: "standard output", fd: 1 };

function checkDistinctFiles(values: OptionValues, files: readonly NamedFile[]): void {
  const conflict = sameFileConflict(files);
  if (conflict !== undefined) throw values.error(conflict);
}

/**
 * The files a run of jobs reads and writes: the input (a file, or standard input), the report, the
 * results file, and standard output when it carries results.
 */
function jobFiles(
  values: OptionValues,
  session: SessionSettings,
  outputPath: string | undefined,
  writesStdout: boolean,
): NamedFile[] {
  const files: NamedFile[] = [];
  const input = session.inputPath;
  files.push(
    input === undefined || input === "-"
      ? { what: "standard input", fd: 0, input: true }
      : { what: values.typed("input"), path: input, input: true },
  );
  if (session.reportPath !== undefined) files.push({ what: values.typed("report"), path: session.reportPath });
  if (outputPath !== undefined) files.push({ what: values.typed("output"), path: outputPath });
  if (session.resumePath !== undefined) files.push({ what: values.typed("resume"), path: session.resumePath });
  if (writesStdout) files.push(STDOUT);
  return files;
}
