/**
 * `sluice fetch`: one HTTP request per input line through `sluice/http`'s `limitedFetch`, so 429s and
 * `Retry-After` pause every request sharing the limits, and retries queue through the limits again.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { type Limiter, NEVER_ABORTED, type Permit } from "../core/limiter.js";
import { runHolding } from "../core/permit.js";
import type { RateAcquireOptions } from "../core/rate-limiter.js";
import { Semaphore } from "../core/semaphore.js";
import {
  estimateLlmCost,
  type FetchFunction,
  keyPoolFetch,
  type LimitedFetch,
  type LimitedFetchOptions,
  limitedFetch,
} from "../http/index.js";
import { RedisUnavailableError } from "../redis/errors.js";
import type { CommandSpec } from "./command-line.js";
import { EXIT_CODE_HELP, type ExitCode, RESUMABLE_USAGE_HELP } from "./exit-codes.js";
import type { JobHandler, JobResult } from "./job-runner.js";
import { type BuiltLimits, buildLimits } from "./limits.js";
import { normalizeCost, observedLimiter } from "./observed-limiter.js";
import { Output } from "./output.js";
import { checkFiles, runSession, type SessionContext, type SessionResult } from "./session.js";
import type { FetchSettings, LimitSettings, SessionSettings } from "./settings.js";
import { KEY_OPTIONS, LIMIT_OPTIONS, SESSION_OPTIONS, withDefault } from "./shared-options.js";
import { fieldOf, InputError, type InputLine } from "./template.js";

export const FETCH_COMMAND: CommandSpec = {
  name: "fetch",
  summary: "send an HTTP request per input line, under limits, honouring 429 and Retry-After",
  usage: ["fetch [options] < urls.txt", "fetch [options] --input requests.jsonl --output results.jsonl"],
  description: [
    'Each input line is a URL, or a JSON request {"url", "method", "headers", "body"} (a body that is',
    "not a string is sent as JSON). Requests go through sluice/http: a 429, 503 or 529 pauses every",
    "request sharing the limits for as long as the server asks (Retry-After, rate-limit headers),",
    "rate-limit headers tighten the limits, and failed attempts are retried with backoff through the",
    "limits again. Try it against a local mock API: sluice mock (see sluice mock --help).",
    "",
    "Results are JSON lines (input, status, ok, duration, attempts, body) on stdout, or in --output FILE.",
    "A non-2xx final status counts as a failed job (exit code 1).",
    "",
    "With --resume FILE, the results go to FILE instead, appended and synced to disk as they come; run the",
    "same command again after a crash, kill or Ctrl-C and it sends only the lines FILE does not record as",
    "succeeded (failed lines are sent again). FILE is tied to its input: another input is refused (exit 2).",
  ].join("\n"),
  options: [
    ...withDefault(LIMIT_OPTIONS, "concurrency", "16"),
    ...KEY_OPTIONS,
    {
      name: "cost-field",
      type: "string",
      multiple: true,
      value: "UNIT[=FIELD]",
      description:
        "a request's cost in UNIT is the number in field FIELD (default: UNIT) of its JSON line; without it, tokens are estimated from the body (characters / 4 + max_tokens)",
    },
    ...SESSION_OPTIONS.map((option) =>
      option.name === "retries"
        ? { ...option, default: "4" }
        : option.name === "json"
          ? { ...option, description: "results as JSON lines on stdout (the default; not with --output)" }
          : option,
    ),
    {
      name: "output",
      short: "o",
      type: "string",
      value: "FILE",
      description: "write the results (JSON lines) to FILE",
    },
    {
      name: "method",
      short: "X",
      type: "string",
      value: "METHOD",
      description: "method for lines without one",
      default: "GET, or POST with a body",
    },
    {
      name: "header",
      short: "H",
      type: "string",
      multiple: true,
      value: "'NAME: VALUE'",
      description: "a header for every request",
    },
    {
      name: "api-key",
      type: "string",
      multiple: true,
      value: "KEY",
      description:
        "send each request with an API key (Authorization: Bearer KEY); given more than once, a key pool: each key has the limits above of its own (shared through Redis under --key NAME:KEY-HASH with --redis), each request goes to the key that can start it soonest, and a key whose quota runs out or that the server refuses (401, 403) is taken out while the others carry on",
    },
    {
      name: "api-key-file",
      type: "string",
      value: "FILE",
      description: "API keys from FILE, one a line (# starts a comment), as if each were an --api-key",
    },
    {
      name: "api-key-header",
      type: "string",
      value: "NAME",
      description: "the header that carries the key as it is, e.g. x-api-key (Anthropic) or api-key (Azure)",
      default: "authorization (Bearer KEY)",
    },
    {
      name: "retry-post",
      type: "boolean",
      description: "also retry non-idempotent requests (POST, PATCH): right for LLM completions (not with --retries 0)",
    },
    {
      name: "max-output",
      type: "string",
      value: "BYTES",
      description: "response body kept per request in the results (more is cut), at most 256 MiB",
      default: "1048576",
    },
  ],
  positionals: "none",
  examples: [
    {
      command: "sluice fetch --rate 10/s -c 4 < urls.txt > results.jsonl",
      explanation: "GET each URL, 10 per second, 4 at a time",
    },
    {
      command:
        "sluice fetch -i prompts.jsonl -o results.jsonl --rate 500/min --rate 200000/min:tokens --retry-post -H 'authorization: Bearer sk-…'",
      explanation: "LLM requests under RPM and TPM limits, estimated tokens settled from each response's usage",
    },
    {
      command: "sluice fetch -i prompts.jsonl -o results.jsonl --rate 600/min --retry-post --api-key-file keys.txt",
      explanation: "spread over several API keys, each with 600 requests per minute of its own",
    },
    {
      command:
        "sluice fetch -i prompts.jsonl -o results.jsonl --key-field customer --rate-per-key 60/min --rate 500/min --retry-post",
      explanation: "60 per minute for each customer's lines, 500 in all, the customers in fair turns",
    },
    {
      command: "sluice fetch --rate 5/s --report fetch.html < urls.txt",
      explanation: "and a report showing the limits held",
    },
    {
      command: "sluice fetch -i prompts.jsonl --resume results.jsonl --rate 500/min --retry-post",
      explanation: "a batch that survives a crash: run it again to send only what has not succeeded",
    },
  ],
  exitCodes: [
    EXIT_CODE_HELP.ok,
    ["1", "at least one request failed after its retries (a network error, or a final status that is not 2xx)"],
    RESUMABLE_USAGE_HELP,
    EXIT_CODE_HELP.failure,
    EXIT_CODE_HELP.interrupted,
    EXIT_CODE_HELP.brokenPipe,
    EXIT_CODE_HELP.terminated,
  ],
};

/** A request of `sluice fetch`. */
export interface FetchJob {
  readonly url: string;
  readonly init: RequestInit;
  /** From `--cost-field`, or `undefined` to estimate from the body. */
  readonly cost: Record<string, number> | undefined;
}

/** How a request ended. */
export interface FetchOutcome {
  readonly status: number | undefined;
  readonly body: unknown;
  readonly truncated: boolean;
  /** Network error, timeout, non-retryable refusal: the message. */
  readonly error: string | undefined;
  /** The same, as a category for the summary. */
  readonly errorKind: string | undefined;
  readonly attempts: number;
  readonly rateLimited: number;
}

/** Per-job state the inner fetch sees through AsyncLocalStorage: attempts are counted per job. */
interface JobState {
  attempts: number;
  rateLimited: number;
  cost: Record<string, number> | undefined;
  /** The line's key (`--key-field`), for the limits limitedFetch acquires. */
  key: string | undefined;
}

export interface FetchSetup {
  readonly settings: SessionSettings;
  readonly limits: BuiltLimits;
  readonly headers: Headers;
  readonly method: string | undefined;
  readonly costFields: ReadonlyMap<string, string>;
  readonly retryPost: boolean;
  readonly maxOutput: number;
  /** Where results go: stdout (`undefined`) or a file. */
  readonly outputPath: string | undefined;
  readonly commandLine: string;
  readonly label: string;
  /** The fetch to wrap; the global one by default. */
  readonly fetch?: FetchFunction;
  /** For the demo: its own lines, total and progress mode, no summary. */
  readonly lines?: AsyncIterable<string>;
  readonly total?: number;
  readonly progressMode?: "terminal" | "lines" | "off";
  readonly printSummary?: boolean;
  readonly handleSignals?: boolean;
  /** Whether a failed request is printed as a note on stderr (default true). */
  readonly noteFailures?: boolean;
  /** `--api-key`s, each with limits of its own (`limits` is the first's): requests go through a key pool. */
  readonly keys?: readonly { readonly apiKey: string; readonly limits: BuiltLimits }[];
  /** The header that carries each key (`authorization`: `Bearer KEY`). */
  readonly apiKeyHeader?: string;
}

/** Runs `sluice fetch` with its settings; resolves with the exit code. */
export async function fetchCommand(settings: FetchSettings, commandLine: string): Promise<ExitCode> {
  const outputs = settings.outputPath === undefined ? [] : [{ what: "output", path: settings.outputPath }];
  await checkFiles(settings.session, { input: true, outputs });
  const keys: { apiKey: string; limits: BuiltLimits }[] = [];
  try {
    for (const apiKey of settings.apiKeys)
      keys.push({ apiKey, limits: await buildLimits(limitsOfKey(settings, apiKey)) });
  } catch (error) {
    await Promise.all(keys.map((key) => key.limits.close()));
    throw error;
  }
  const limits = keys[0]?.limits ?? (await buildLimits(settings.limits));
  try {
    const result = await runFetchSession({
      settings: settings.session,
      limits,
      ...(keys.length === 0 ? {} : { keys, apiKeyHeader: settings.apiKeyHeader }),
      headers: settings.headers,
      method: settings.method,
      costFields: settings.costFields,
      retryPost: settings.retryPost,
      maxOutput: settings.maxOutput,
      outputPath: settings.outputPath,
      commandLine,
      label: FETCH_COMMAND.name,
    });
    return result.exitCode;
  } finally {
    await Promise.all(keys.length === 0 ? [limits.close()] : keys.map((key) => key.limits.close()));
  }
}

/**
 * The limits of one key of a pool: those given, each key its own. Shared through Redis, each key's live
 * under `--key` and a hash of the key (never the key itself), so every process with that key shares them.
 */
function limitsOfKey(settings: FetchSettings, apiKey: string): LimitSettings {
  const redis = settings.limits.redis;
  if (redis === undefined || settings.apiKeys.length === 1) return settings.limits;
  const hash = createHash("sha256").update(apiKey).digest("hex").slice(0, 12);
  return { ...settings.limits, redis: { ...redis, key: `${redis.key}:${hash}` } };
}

/** Runs a fetch session (also the demo's). */
export async function runFetchSession(setup: FetchSetup): Promise<SessionResult & { fetch: LimitedFetch | undefined }> {
  const { settings, limits } = setup;
  // The output file is opened (and truncated) only now, after the command checked every file: a
  // mistyped --input must not cost old results.
  const file = setup.outputPath === undefined ? undefined : createWriteStream(setup.outputPath);
  if (file !== undefined) {
    await new Promise<void>((resolve, reject) => {
      file.once("open", () => resolve());
      file.once("error", reject);
    });
  }
  const results = file === undefined ? undefined : new Output(file);
  // The job loop only bounds how many requests are outstanding (waiting in the limiter or in flight);
  // the limiter itself is acquired by limitedFetch, once per attempt, and records the attempts.
  // With --key-field, as many as are read ahead: the keys take turns in the limits, not here.
  const outstanding = new Semaphore(
    limits.keys !== undefined
      ? limits.keys.readAhead
      : Number.isFinite(limits.description.concurrency)
        ? limits.description.concurrency * 2 * Math.max(1, setup.keys?.length ?? 1)
        : 1024,
  );
  let fetcher: LimitedFetch | undefined;
  const result = await runSession<FetchJob, FetchOutcome>({
    label: setup.label,
    settings,
    limits,
    commandLine: setup.commandLine,
    admission: { acquire: ({ signal }) => outstanding.acquire({ signal }) },
    recordsAttempts: false,
    ...(setup.lines === undefined ? {} : { lines: setup.lines }),
    ...(setup.total === undefined ? {} : { total: setup.total }),
    ...(setup.progressMode === undefined ? {} : { progressMode: setup.progressMode }),
    ...(setup.printSummary === undefined ? {} : { printSummary: setup.printSummary }),
    ...(setup.handleSignals === undefined ? {} : { handleSignals: setup.handleSignals }),
    handler: (context) => {
      const handler = fetchHandler(context, setup, results ?? context.stdout);
      fetcher = handler.fetcher;
      return handler;
    },
  });
  let exitCode = result.exitCode;
  if (results !== undefined) {
    try {
      await results.close();
    } catch (error) {
      process.stderr.write(`sluice ${setup.label}: cannot write ${setup.outputPath}: ${(error as Error).message}\n`);
      if (exitCode === 0 || exitCode === 1) exitCode = 3;
    }
  }
  return { ...result, exitCode, fetch: fetcher };
}

/**
 * The limiter limitedFetch acquires once per attempt: the limits themselves, or, with `--key-field`,
 * their admission asked with the key of the line whose request it is (`keyOf`, from the job's context).
 */
function limiterOf(limits: BuiltLimits, keyOf: () => string | undefined): Limiter<RateAcquireOptions> {
  if (limits.keys === undefined) return limits.limiter;
  const acquire = (options?: RateAcquireOptions): Promise<Permit> => {
    const key = keyOf();
    const request = { cost: normalizeCost(options?.cost), signal: options?.signal ?? NEVER_ABORTED };
    return limits.admission.acquire(key === undefined ? request : { ...request, key });
  };
  return {
    acquire,
    run: async (fn, options) => runHolding(fn, await acquire(options)),
  };
}

function fetchHandler(
  context: SessionContext,
  setup: FetchSetup,
  results: Output,
): JobHandler<FetchJob, FetchOutcome> & { fetcher: LimitedFetch } {
  const { statistics, settings } = context;
  const jobs = new AsyncLocalStorage<JobState>();
  const baseFetch: FetchFunction = setup.fetch ?? ((input, init) => globalThis.fetch(input, init));
  // Sees every attempt (limitedFetch calls it once per attempt, after admission): counts per job.
  const countingFetch: FetchFunction = async (input, init) => {
    const state = jobs.getStore();
    if (state !== undefined) state.attempts++;
    const response = await baseFetch(input, init);
    if (response.status === 429) {
      statistics.sawRateLimit();
      if (state !== undefined) state.rateLimited++;
    }
    return response;
  };
  // Redis gone: stop at the first acquire or release that says so, not once limitedFetch has retried an
  // acquire and given up.
  const onLimiterError = (error: unknown) => {
    if (error instanceof RedisUnavailableError) context.fail("Redis unavailable", error);
  };
  const options: LimitedFetchOptions = {
    fetch: countingFetch,
    estimate: (request) => jobs.getStore()?.cost ?? estimateLlmCost(request),
    retry: {
      attempts: settings.retries + 1,
      baseDelay: settings.retryDelay,
      maxDelay: settings.retryMaxDelay,
      nonIdempotent: setup.retryPost,
    },
    ...(settings.timeout === undefined ? {} : { attemptTimeout: settings.timeout }),
    // -c auto: the window adapts per attempt, from each response's latency and overload answers.
    ...(setup.limits.window === undefined ? {} : { concurrency: setup.limits.window }),
    onRetry: () => statistics.retried(),
  };
  const keys = setup.keys;
  const fetcher =
    keys === undefined
      ? limitedFetch(
          observedLimiter(
            limiterOf(setup.limits, () => jobs.getStore()?.key),
            statistics,
            onLimiterError,
          ),
          options,
        )
      : keyPoolFetch(
          keys.map((key) => ({
            apiKey: key.apiKey,
            limiter: observedLimiter(key.limits.limiter, statistics, onLimiterError),
          })),
          {
            ...options,
            // Each key gets a window of its own (-c auto).
            ...(setup.limits.window === undefined ? {} : { concurrency: "auto" }),
            apiKeyHeader: setup.apiKeyHeader ?? "authorization",
            onKeyRemoved: (event) => {
              context.note(`${event.key} taken out (${event.reason.message}); ${event.keysLeft} key(s) left`);
            },
          },
        );
  return {
    fetcher,
    prepare: (input) => prepareRequest(input, setup),
    cost: () => ({}),
    async attempt(job, { signal, key }) {
      const state: JobState = { attempts: 0, rateLimited: 0, cost: job.cost, key };
      try {
        const response = await jobs.run(state, () => fetcher(job.url, { ...job.init, signal }));
        const { body, truncated } = await readBody(response, setup.maxOutput);
        return {
          status: response.status,
          body,
          truncated,
          error: undefined,
          errorKind: undefined,
          attempts: state.attempts,
          rateLimited: state.rateLimited,
        };
      } catch (error) {
        // The limits' Redis went away: stop sending rather than fail every remaining line (exit 3).
        if (error instanceof RedisUnavailableError) context.fail("Redis unavailable", error);
        const message = describeAttemptError(error);
        return {
          status: undefined,
          body: null,
          truncated: false,
          error: message,
          errorKind: errorKind(error),
          attempts: state.attempts,
          rateLimited: state.rateLimited,
        };
      }
    },
    classify(outcome) {
      if (outcome.error !== undefined) {
        // Stopped by an interrupt while still queued for the limits: never sent, so not a failure.
        const notStarted = outcome.errorKind === "interrupted" && outcome.attempts === 0;
        return { failure: outcome.errorKind, detail: outcome.error, retryable: false, notStarted };
      }
      const ok = outcome.status !== undefined && outcome.status >= 200 && outcome.status < 300;
      // limitedFetch already retried what could be retried; what comes back is final.
      return { failure: ok ? undefined : `HTTP ${outcome.status}`, retryable: false };
    },
    finished(result: JobResult<FetchJob, FetchOutcome>) {
      // No request can succeed once the quota is gone: read no more input (limitedFetch already
      // refuses what was queued).
      if (result.failure === "quota exhausted" || result.failure === "no key left") context.stop(result.failure);
      if (result.failure !== undefined && setup.noteFailures !== false) {
        context.note(`line ${result.input.number} failed (${result.error}): ${result.job?.url ?? result.input.line}`);
      }
      // --resume: the results file is the resume file, and the job is over once its record is on disk.
      if (context.record !== undefined) return context.record(result.input, fetchResult(result));
      results.write(`${JSON.stringify(fetchResult(result))}\n`);
    },
    stopAdmitting(reason) {
      // Requests queued inside limitedFetch (waiting for the limits) are not running yet: drop them.
      fetcher.stop(reason);
    },
  };
}

/**
 * Why a request failed, for its result and note. A lost Redis is said as such: the client library's
 * internals (its retry counts, its option names) mean nothing to the user.
 */
function describeAttemptError(error: unknown): string {
  if (error instanceof RedisUnavailableError) return "Redis unavailable: the limits live there";
  return error instanceof Error ? `${error.message}${causeOf(error)}` : String(error);
}

/** A failure category for the summary: the same for every request that failed the same way. */
function errorKind(error: unknown): string {
  const name = error instanceof Error ? error.name : "";
  if (name === "RedisUnavailableError") return "Redis unavailable";
  if (name === "TimeoutError") return "timeout";
  if (name === "QuotaExhaustedError") return "quota exhausted";
  if (name === "RequestTooLargeError") return "request too large";
  if (name === "NoKeysLeftError") return "no key left";
  // A closed limiter is one the run closed because it is ending (Redis went away): like an interrupt.
  if (name === "InterruptedError" || name === "AbortError" || name === "ClosedError") return "interrupted";
  // fetch rejects with a TypeError for every network failure (refused, reset, DNS).
  if (name === "TypeError") return "network error";
  return name === "" || name === "Error" ? "error" : name;
}

function causeOf(error: Error): string {
  const cause = (error as { cause?: unknown }).cause;
  return cause instanceof Error ? ` (${cause.message})` : "";
}

/** A URL line or a JSON request line, as fetch arguments. */
export function prepareRequest(
  input: InputLine,
  setup: Pick<FetchSetup, "headers" | "method" | "costFields">,
): FetchJob {
  const record = input.record;
  let url: string;
  const headers = new Headers(setup.headers);
  let body: string | undefined;
  let method = setup.method;
  if (input.jsonError !== undefined) throw new InputError(`line ${input.number}: not valid JSON: ${input.jsonError}`);
  if (record === undefined) {
    url = input.line.trim();
  } else {
    if (typeof record["url"] !== "string")
      throw new InputError(`line ${input.number}: a JSON request needs a "url" string`);
    url = record["url"];
    if (record["method"] !== undefined) {
      if (typeof record["method"] !== "string") throw new InputError(`line ${input.number}: "method" must be a string`);
      method = record["method"].toUpperCase();
    }
    const lineHeaders = record["headers"];
    if (lineHeaders !== undefined) {
      if (typeof lineHeaders !== "object" || lineHeaders === null || Array.isArray(lineHeaders)) {
        throw new InputError(`line ${input.number}: "headers" must be an object of strings`);
      }
      for (const [name, value] of Object.entries(lineHeaders)) {
        try {
          headers.set(name, String(value));
        } catch (error) {
          throw new InputError(`line ${input.number}: header ${JSON.stringify(name)}: ${(error as Error).message}`);
        }
      }
    }
    const rawBody = record["body"];
    if (rawBody !== undefined && rawBody !== null) {
      if (typeof rawBody === "string") body = rawBody;
      else {
        body = JSON.stringify(rawBody);
        if (!headers.has("content-type")) headers.set("content-type", "application/json");
      }
    }
  }
  try {
    const parsed = new URL(url);
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new Error("not http(s)");
  } catch {
    throw new InputError(`line ${input.number}: not an http(s) URL: ${JSON.stringify(url.slice(0, 200))}`);
  }
  let cost: Record<string, number> | undefined;
  if (setup.costFields.size > 0) {
    cost = { requests: 1 };
    for (const [unit, field] of setup.costFields) {
      const value = fieldOf(record, field);
      if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
        throw new InputError(`line ${input.number}: the cost field ${field} must be a number >= 0`);
      }
      cost[unit] = value;
    }
  }
  const init: RequestInit = {
    method: method ?? (body === undefined ? "GET" : "POST"),
    headers,
    ...(body === undefined ? {} : { body }),
  };
  // What fetch would refuse (a method that is not a token, a GET with a body) is this line's fault, not
  // a network error worth retrying: say so now.
  try {
    new Request(url, init);
  } catch (error) {
    throw new InputError(`line ${input.number}: ${(error as Error).message}`);
  }
  return { url, init, cost };
}

/** Reads a response body up to `max` bytes; JSON bodies are parsed when complete. */
async function readBody(response: Response, max: number): Promise<{ body: unknown; truncated: boolean }> {
  if (response.body === null) return { body: null, truncated: false };
  const chunks: Uint8Array[] = [];
  let size = 0;
  let truncated = false;
  for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
    if (size + chunk.length > max) {
      chunks.push(chunk.subarray(0, max - size));
      truncated = true;
      break;
    }
    chunks.push(chunk);
    size += chunk.length;
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (!truncated && (response.headers.get("content-type") ?? "").includes("json")) {
    try {
      return { body: JSON.parse(text) as unknown, truncated };
    } catch {
      // Not JSON after all: keep the text.
    }
  }
  return { body: text, truncated };
}

/** The JSON result line of a request. */
function fetchResult(result: JobResult<FetchJob, FetchOutcome>): Record<string, unknown> {
  const outcome = result.outcome;
  return {
    line: result.input.number,
    input: result.input.record ?? result.input.line,
    url: result.job?.url ?? null,
    method: result.job?.init.method ?? null,
    ok: result.failure === undefined,
    status: outcome?.status ?? null,
    durationMs: Math.round(result.durationMs * 10) / 10,
    attempts: outcome?.attempts ?? 0,
    ...(outcome !== undefined && outcome.rateLimited > 0 ? { rateLimited: outcome.rateLimited } : {}),
    body: outcome?.body ?? null,
    ...(outcome?.truncated ? { truncated: true } : {}),
    ...(result.error === undefined ? {} : { error: result.error }),
  };
}
