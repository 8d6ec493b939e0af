/**
 * A local stand-in for a rate-limited LLM API: an HTTP server on loopback that enforces requests per
 * minute, tokens per minute and a concurrency cap the way providers do (continuously refilled token
 * buckets), answers like OpenAI (`/v1/chat/completions`) or Anthropic (`/v1/messages`), can fail on
 * purpose, and records every request it saw so a test can check exactly what happened.
 *
 * It is deliberately written without sluice's own RateLimiter: a client tested against a server that
 * shares its bucket code would pass by construction.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { checkOptionNames, type OptionNames, optionNames } from "../core/arguments.js";
import { describe } from "../core/describe.js";
import { type Duration, toMilliseconds } from "../core/duration.js";
import { allowManyListeners } from "../core/many-listeners.js";
import {
  type CompletionApi,
  type ErrorKind,
  errorResponse,
  type LimitReport,
  type MockProviderStyle,
  rateLimitHeaders,
  responseObject,
  retryAfterHeaders,
  streamFrames,
} from "./mock-styles.js";
import { type MockOverload, type MockOverloadOptions, OverloadGate } from "./overload-gate.js";

export type { MockProviderStyle } from "./mock-styles.js";
export { formatGoDuration } from "./mock-styles.js";
export type { MockOverload, MockOverloadOptions } from "./overload-gate.js";

/** A deliberate failure the server can produce instead of serving a request. */
export type MockFailure =
  /** HTTP 500. */
  | "server-error"
  /** HTTP 503 (OpenAI style) or 529 (Anthropic style), with `retry-after`. */
  | "overloaded"
  /** The connection is destroyed before any response: the client sees a network error. */
  | "reset"
  /** No response ever (until the client gives up or the server closes): a timeout for the client. */
  | "hang"
  /** The non-retryable "quota exhausted" error (429 `insufficient_quota` / 402 `billing_error`). */
  | "quota"
  /** An ordinary 429, as if a limit were exhausted. */
  | "rate-limit";

/** What a failure hook sees about a request before the server decides what to do with it. */
export interface MockRequestInfo {
  /** 0 for the first request the server received, 1 for the next, ... */
  readonly index: number;
  /** `"GET"`, `"POST"`, ... as the client sent it. */
  readonly method: string;
  /** The path without the query: `/v1/chat/completions`. */
  readonly path: string;
  /** The request headers, names in lower case, repeated headers joined with `", "`. */
  readonly headers: Readonly<Record<string, string>>;
  /** The parsed JSON body, or the raw text when it is not JSON, or `undefined` when empty. */
  readonly body: unknown;
}

/** How long the server takes to answer an admitted request, in milliseconds. */
export type MockLatency =
  | number
  | {
      /** The shortest latency, in ms. */
      min: number;
      /** The longest latency, in ms; each request draws uniformly between the two. */
      max: number;
    }
  | ((random: () => number, request: MockRequestInfo) => number);

/** Options for {@link startMockServer}. Every limit defaults to "none". */
export interface MockServerOptions {
  /** Requests admitted per minute: a token bucket of this size, refilled continuously. */
  requestsPerMinute?: number;
  /**
   * Tokens admitted per minute (input and output together), a token bucket refilled continuously.
   * A request is charged on arrival for its input (characters of the body / 4, rounded up) plus its
   * `max_tokens` (or `max_completion_tokens` / `max_output_tokens`; when absent, the completion it will
   * get), and settled to input plus the completion actually produced when it finishes.
   */
  tokensPerMinute?: number;
  /**
   * Input tokens admitted per minute (Anthropic's ITPM), a token bucket: a request is charged its input
   * on arrival — the uncached input and cache writes; cache reads (a prompt prefix up to a
   * `cache_control` block the server has seen before) are exempt, as with Anthropic's current models.
   * Reported in `anthropic-ratelimit-input-tokens-*` headers (or `x-ratelimit-*-input-tokens`).
   */
  inputTokensPerMinute?: number;
  /**
   * Output tokens admitted per minute (Anthropic's OTPM), a token bucket: a request reserves its
   * `max_tokens` on arrival (when absent, the completion it will get) and is settled to the completion
   * actually produced when it finishes. Reported in `anthropic-ratelimit-output-tokens-*` headers.
   */
  outputTokensPerMinute?: number;
  /**
   * Requests admitted per day (OpenAI's RPD), a token bucket refilled over `day`. Like OpenAI, the
   * server sends no headers for it: a request over it gets a 429 whose message names "requests per day
   * (RPD)", with `retry-after` for when it would fit.
   */
  requestsPerDay?: number;
  /** Tokens admitted per day (OpenAI's TPD), charged and settled like `tokensPerMinute`; no headers either. */
  tokensPerDay?: number;
  /** How long "a day" lasts, for `requestsPerDay` / `tokensPerDay`. Default 1440 × `minute`. */
  day?: Duration;
  /**
   * How long "a minute" lasts. Default `"1m"`. Shrink it to run the same scenario faster: with
   * `minute: "6s"` every limit refills ten times as fast and reset headers shrink to match, so a
   * test sees the same shape of traffic in a tenth of the time.
   */
  minute?: Duration;
  /** Requests served at once; one more is answered with a 429 at once. Default: no cap. */
  concurrency?: number;
  /** Response time of an admitted request (the service time, in the overloaded mode). Default 0. */
  latency?: MockLatency;
  /**
   * The overloaded mode: a hidden capacity C served at once, a bounded queue behind it (latency grows
   * with the queue), and beyond the queue a 503 or 429 without `Retry-After`. C can change while the
   * server runs (`server.overload.capacity = 8`). Default: off.
   */
  overload?: MockOverloadOptions;
  /**
   * Completion tokens a chat request produces, never more than its `max_tokens`. A number, a
   * `{ min, max }` range drawn uniformly (integers), or a function. Default 16.
   */
  completionTokens?:
    | number
    | {
        /** The fewest tokens a completion has. */
        min: number;
        /** The most tokens a completion has (and never more than its `max_tokens`). */
        max: number;
      }
    | ((random: () => number, request: MockRequestInfo) => number);
  /**
   * The text a chat request gets back. Default: `"echo:<start of the last user message>"` padded to the
   * completion size. When given, the completion is this text's characters / 4 (rounded up) tokens,
   * cut to `max_tokens`, and `completionTokens` is not used.
   */
  reply?: (request: MockRequestInfo) => string;
  /**
   * A total budget: once this many tokens (or requests) have been served, every request fails with
   * the non-retryable quota error. Default: unlimited.
   */
  quota?: {
    /** Tokens admitted requests may use (input + output; one in flight counts its reservation). */
    tokens?: number;
    /** Requests admitted before the quota runs out. */
    requests?: number;
  };
  /**
   * Limits per API key, the key read from `Authorization: Bearer <key>` or `x-api-key` (as OpenAI and
   * Anthropic send it): each key named here has buckets and a quota of its own, on top of the limits
   * above (which stay server-wide), and its responses report its own buckets in the rate-limit headers.
   * A request with a key not named here, or none, gets 401 (`invalid_api_key` / `authentication_error`).
   * Default: no keys checked.
   *
   * @example
   * ```ts
   * await startMockServer({ keys: { "sk-a": { requestsPerMinute: 600 }, "sk-b": { requestsPerMinute: 600 } } });
   * ```
   */
  keys?: Readonly<Record<string, MockKeyOptions>>;
  /** Probability (0..1) per request of each failure, drawn from the seeded generator. */
  failures?: Partial<Record<"server-error" | "overloaded" | "reset" | "hang", number>>;
  /**
   * Decides a failure for one request; return `undefined` to serve it normally. Runs before the
   * random `failures`, so tests can target exact requests (e.g. "the 10th request is reset").
   */
  inject?: (request: MockRequestInfo) => MockFailure | undefined;
  /**
   * Which provider's headers and bodies to use for paths other than `/v1/chat/completions` and
   * `/v1/responses` (always OpenAI style) and `/v1/messages` (always Anthropic style). Default `"openai"`.
   */
  style?: MockProviderStyle;
  /** Seed for latency, completion sizes and random failures, so runs are reproducible. Default 1. */
  seed?: number;
  /** Interface to listen on. Default `"127.0.0.1"`. */
  host?: string;
  /** Port to listen on. Default 0 (any free port). */
  port?: number;
}

/** The limits of one API key of the mock server (see {@link MockServerOptions.keys}). Every limit defaults to "none". */
export interface MockKeyOptions {
  /** Requests this key may make per minute: a token bucket of this size, refilled continuously. */
  requestsPerMinute?: number;
  /** Tokens this key may use per minute, counted as the server-wide `tokensPerMinute` counts them. */
  tokensPerMinute?: number;
  /** This key's total budget: once spent, its requests get the non-retryable quota error. */
  quota?: {
    /** Tokens its admitted requests may use (input + output; one in flight counts its reservation). */
    tokens?: number;
    /** Requests admitted before its quota runs out. */
    requests?: number;
  };
}

/** How the server handled a request. */
export type MockOutcome =
  | "ok"
  | "rate-limited"
  | "concurrency-limited"
  | "too-large"
  | "quota"
  | "server-error"
  | "overloaded"
  | "reset"
  | "hang"
  | "bad-request"
  /** A key the server does not know (with the `keys` option). */
  | "unauthorized"
  /** The client went away before the response was sent. */
  | "aborted";

/** One request as the server saw it. Times are milliseconds since the server started. */
export interface MockRequestRecord extends MockRequestInfo {
  /** The API key it carried (`Authorization: Bearer` or `x-api-key`), if any. */
  readonly apiKey: string | undefined;
  /** When the request's headers arrived. */
  readonly arrivedAt: number;
  /** When the body had been read and the request was admitted or refused. */
  startedAt: number | undefined;
  /** When the response was sent (or the connection reset); `undefined` while in progress or hanging. */
  endedAt: number | undefined;
  /** Prompt tokens: characters of the body / 4, rounded up. */
  readonly inputTokens: number;
  /** Completion tokens produced; 0 unless the request succeeded. */
  outputTokens: number;
  /** Of `inputTokens`, those read from the prompt cache (Anthropic style; exempt from `inputTokensPerMinute`). */
  readonly cacheReadTokens: number;
  /** Of `inputTokens`, those written to the prompt cache (the first request with that cached prefix). */
  readonly cacheWriteTokens: number;
  /** The tokens this request was charged on arrival (input + reserved output), 0 if refused. */
  reservedTokens: number;
  /** HTTP status sent; `undefined` for a reset or a request still hanging. */
  status: number | undefined;
  /** How the server handled it; `undefined` while in progress. */
  outcome: MockOutcome | undefined;
}

/** Counts over every request so far, for assertions and benchmark tables. */
export interface MockServerSummary {
  /** Requests received, in progress included. */
  total: number;
  /** Requests per outcome (only outcomes that happened appear). */
  outcomes: Partial<Record<MockOutcome, number>>;
  /** Every 429, whatever the reason. */
  status429: number;
  /** The most requests the server was serving at once. */
  maxInFlight: number;
  /** Tokens charged for successful requests (input + output). */
  tokensServed: number;
}

/**
 * A running mock API server. Close it with `close()` or `await using`.
 *
 * @example
 * ```ts
 * import { startMockServer } from "sluice/testing";
 * await using server = await startMockServer({ requestsPerMinute: 600, tokensPerMinute: 40_000, minute: "6s" });
 * const response = await fetch(`${server.url}/v1/chat/completions`, {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({ model: "mock", max_tokens: 20, messages: [{ role: "user", content: "hi" }] }),
 * });
 * console.log(response.status, response.headers.get("x-ratelimit-remaining-requests")); // 200 "599"
 * console.log(server.summary().outcomes); // { ok: 1 }
 * ```
 */
export interface MockServer extends AsyncDisposable {
  /** `http://<host>:<port>` (`http://127.0.0.1:<port>` by default). The OpenAI SDK's `baseURL` is `${url}/v1`; Anthropic's is `url`. */
  readonly url: string;
  /** The port it listens on (the free one it took, when `port` was 0). */
  readonly port: number;
  /** Every request received, in arrival order; records of requests in progress are updated in place. */
  readonly requests: readonly MockRequestRecord[];
  /** Requests being served right now. */
  readonly inFlight: number;
  /** The overloaded mode's state, with C to change while it runs; `undefined` when it is off. */
  readonly overload: MockOverload | undefined;
  /** Counts over every request so far. */
  summary(): MockServerSummary;
  /** Stops listening and drops every open connection (hanging requests included). */
  close(): Promise<void>;
}

/**
 * Starts a {@link MockServer} on loopback and resolves once it is listening.
 *
 * Limits are continuously refilled token buckets that start full (what OpenAI and Anthropic describe):
 * a bucket of `requestsPerMinute` refills at `requestsPerMinute` per `minute`. A request is admitted
 * only when every bucket can pay for it, and then all are charged together. Refused requests cost
 * nothing. Every response (successes too) carries the current rate-limit headers.
 *
 * `POST /v1/chat/completions` answers like OpenAI — streamed as server-sent events when the body says
 * `stream: true` (with a final `usage` chunk for `stream_options: { include_usage: true }`), a stream
 * holding its concurrency slot until its last chunk; `POST /v1/responses` like OpenAI's Responses API
 * (streamed as its `response.*` events); `POST /v1/messages` answers like Anthropic — streamed as its
 * `message_start` … `message_stop` events when the body says `stream: true`; any
 * other path answers `{ ok: true, path }`, counting the body's characters / 4 as tokens.
 *
 * @example
 * ```ts
 * import OpenAI from "openai";
 * import { startMockServer } from "sluice/testing";
 * await using server = await startMockServer({ requestsPerMinute: 60, latency: { min: 5, max: 20 } });
 * const client = new OpenAI({ apiKey: "test", baseURL: `${server.url}/v1`, maxRetries: 0 });
 * const completion = await client.chat.completions.create({
 *   model: "mock", max_tokens: 10, messages: [{ role: "user", content: "Say hi" }],
 * });
 * console.log(completion.usage); // { prompt_tokens: ..., completion_tokens: 10, total_tokens: ... }
 * ```
 */
export async function startMockServer(options: MockServerOptions = {}): Promise<MockServer> {
  const server = new MockApiServer(options);
  await server.listen();
  return server;
}

/**
 * A continuously refilled token bucket. `level` may go below zero when a finished request turns out to
 * have used more than it reserved (debt), which delays the next admission — what providers do.
 */
class Bucket {
  private level: number;
  private updatedAt: number;
  /** Tokens per millisecond. */
  private readonly rate: number;

  constructor(
    readonly capacity: number,
    minuteMs: number,
    now: number,
  ) {
    this.level = capacity;
    this.updatedAt = now;
    this.rate = capacity / minuteMs;
  }

  private refill(now: number): void {
    if (now > this.updatedAt) {
      this.level = Math.min(this.capacity, this.level + (now - this.updatedAt) * this.rate);
      this.updatedAt = now;
    }
  }

  /** Milliseconds until `cost` fits, 0 if it fits now. */
  waitFor(cost: number, now: number): number {
    this.refill(now);
    return this.level >= cost ? 0 : (cost - this.level) / this.rate;
  }

  charge(cost: number, now: number): void {
    this.refill(now);
    this.level = Math.min(this.capacity, this.level - cost);
  }

  report(now: number): LimitReport {
    this.refill(now);
    return { limit: this.capacity, remaining: this.level, resetMs: (this.capacity - this.level) / this.rate };
  }
}

/**
 * One API key's own limits (the `keys` option): buckets and a quota like the server-wide ones, checked
 * and charged together with them.
 */
class KeyAccount {
  readonly requestBucket: Bucket | undefined;
  readonly tokenBucket: Bucket | undefined;
  quotaTokensUsed = 0;
  quotaRequestsUsed = 0;

  constructor(
    private readonly options: MockKeyOptions,
    where: string,
    minuteMs: number,
    now: number,
  ) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`${where} must be an object of limits; got ${describe(options)}`);
    }
    checkOptionNames(options, MOCK_KEY_OPTIONS, where);
    if (typeof options.quota === "object" && options.quota !== null) {
      checkOptionNames(options.quota, QUOTA_OPTIONS, `${where}.quota`);
    }
    const requests = checkLimit(options.requestsPerMinute, `${where}.requestsPerMinute`);
    const tokens = checkLimit(options.tokensPerMinute, `${where}.tokensPerMinute`);
    this.requestBucket = requests === undefined ? undefined : new Bucket(requests, minuteMs, now);
    this.tokenBucket = tokens === undefined ? undefined : new Bucket(tokens, minuteMs, now);
  }

  /** Whether this key's quota is spent. */
  quotaSpent(): boolean {
    const quota = this.options.quota;
    return (
      (quota?.tokens !== undefined && this.quotaTokensUsed >= quota.tokens) ||
      (quota?.requests !== undefined && this.quotaRequestsUsed >= quota.requests)
    );
  }

  /** Admits a request reserving `reserved` tokens; the caller has checked both buckets' `waitFor`. */
  charge(reserved: number, now: number): void {
    this.requestBucket?.charge(1, now);
    this.tokenBucket?.charge(reserved, now);
    this.quotaTokensUsed += reserved;
    this.quotaRequestsUsed++;
  }

  /** A finished request used `delta` tokens more than it reserved (less, when negative). */
  settle(delta: number, now: number): void {
    this.tokenBucket?.charge(delta, now);
    this.quotaTokensUsed += delta;
  }
}

/** The key a request carries, as OpenAI (`Authorization: Bearer`) and Anthropic (`x-api-key`) send it. */
function apiKeyOf(headers: Readonly<Record<string, string>>): string | undefined {
  const bearer = /^Bearer\s+(.+)$/i.exec(headers.authorization ?? "")?.[1]?.trim();
  return bearer ?? headers["x-api-key"];
}

/**
 * Mulberry32: a tiny seeded generator, good enough for jitter and reproducible enough for tests.
 * @internal Also the adaptive-concurrency simulation's (test/support/overload-simulation.ts).
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function checkLimit(value: unknown, argument: string): number | undefined {
  if (value === undefined || value === Number.POSITIVE_INFINITY) return undefined;
  if (typeof value !== "number") throw new TypeError(`${argument} must be a number; got ${describe(value)}`);
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new RangeError(`${argument} must be a positive number or Infinity; got ${value}`);
  }
  return value;
}

function checkProbability(value: unknown, argument: string): number {
  if (typeof value !== "number" || !(value >= 0 && value <= 1)) {
    throw new RangeError(`${argument} must be a probability between 0 and 1; got ${describe(value)}`);
  }
  return value;
}

const FAILURE_KINDS = ["server-error", "overloaded", "reset", "hang"] as const;

const MOCK_SERVER_OPTIONS = /* @__PURE__ */ optionNames<MockServerOptions>({
  requestsPerMinute: true,
  tokensPerMinute: true,
  inputTokensPerMinute: true,
  outputTokensPerMinute: true,
  requestsPerDay: true,
  tokensPerDay: true,
  day: true,
  minute: true,
  concurrency: true,
  latency: true,
  overload: true,
  completionTokens: true,
  reply: true,
  quota: true,
  failures: true,
  inject: true,
  style: true,
  seed: true,
  host: true,
  port: true,
  keys: true,
});
const QUOTA_OPTIONS = /* @__PURE__ */ optionNames<NonNullable<MockServerOptions["quota"]>>({
  tokens: true,
  requests: true,
});
const MOCK_KEY_OPTIONS = /* @__PURE__ */ optionNames<MockKeyOptions>({
  requestsPerMinute: true,
  tokensPerMinute: true,
  quota: true,
});
const RANGE_OPTIONS = /* @__PURE__ */ optionNames<{ min: number; max: number }>({ min: true, max: true });

/** Refuses misspelt option names, also inside the options that take objects. */
function checkMockOptionNames(options: MockServerOptions): void {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object; got ${describe(options)}`);
  }
  checkOptionNames(options, MOCK_SERVER_OPTIONS, "the startMockServer() options");
  const nested: [unknown, OptionNames, string][] = [
    [options.quota, QUOTA_OPTIONS, "quota"],
    [options.failures, FAILURE_KINDS, "failures"],
    [options.latency, RANGE_OPTIONS, "latency"],
    [options.completionTokens, RANGE_OPTIONS, "completionTokens"],
    [options.overload, optionNames<MockOverloadOptions>({ capacity: true, queue: true, status: true }), "overload"],
  ];
  for (const [value, known, where] of nested) {
    if (typeof value === "object" && value !== null) checkOptionNames(value, known, where);
  }
}

class MockApiServer implements MockServer {
  readonly requests: MockRequestRecord[] = [];
  private readonly http: Server;
  private readonly origin = performance.now();
  private readonly random: () => number;
  private readonly style: MockProviderStyle;
  private readonly minuteMs: number;
  private readonly requestBucket: Bucket | undefined;
  private readonly tokenBucket: Bucket | undefined;
  /** Anthropic's ITPM and OTPM, when configured. */
  private readonly inputBucket: Bucket | undefined;
  private readonly outputBucket: Bucket | undefined;
  /** OpenAI's RPD and TPD, when configured. */
  private readonly dailyRequestBucket: Bucket | undefined;
  private readonly dailyTokenBucket: Bucket | undefined;
  /** Prompt prefixes cached so far (Anthropic style `cache_control`): a later request reads them. */
  private readonly promptCache = new Set<string>();
  private readonly concurrency: number;
  readonly overload: OverloadGate | undefined;
  /** Requests admitted and not yet answered: never above `concurrency`. */
  private serving = 0;
  private maxServing = 0;
  private quotaTokensUsed = 0;
  private quotaRequestsUsed = 0;
  private readonly failureRates: [MockFailure, number][];
  /** Each API key's own limits, with the `keys` option; `undefined`: keys are not checked. */
  private readonly accounts: Map<string, KeyAccount> | undefined;
  private address: AddressInfo | undefined;
  private closing: Promise<void> | undefined;
  /** Aborted by close(): cuts every latency wait short, so no timer outlives the server. */
  private readonly closed = new AbortController();

  constructor(private readonly options: MockServerOptions) {
    checkMockOptionNames(options);
    this.minuteMs = toMilliseconds(options.minute ?? "1m", "minute");
    if (!(this.minuteMs > 0)) throw new RangeError(`minute must be longer than 0 ms; got ${describe(options.minute)}`);
    const requests = checkLimit(options.requestsPerMinute, "requestsPerMinute");
    const tokens = checkLimit(options.tokensPerMinute, "tokensPerMinute");
    const inputTokens = checkLimit(options.inputTokensPerMinute, "inputTokensPerMinute");
    const outputTokens = checkLimit(options.outputTokensPerMinute, "outputTokensPerMinute");
    const requestsPerDay = checkLimit(options.requestsPerDay, "requestsPerDay");
    const tokensPerDay = checkLimit(options.tokensPerDay, "tokensPerDay");
    const dayMs = options.day === undefined ? 1440 * this.minuteMs : toMilliseconds(options.day, "day");
    if (!(dayMs > 0)) throw new RangeError(`day must be longer than 0 ms; got ${describe(options.day)}`);
    const concurrency = options.concurrency ?? Number.POSITIVE_INFINITY;
    if (typeof concurrency !== "number" || !(concurrency >= 1)) {
      throw new RangeError(`concurrency must be a number >= 1 or Infinity; got ${describe(options.concurrency)}`);
    }
    this.concurrency = concurrency;
    this.overload = options.overload === undefined ? undefined : new OverloadGate(options.overload);
    // Every request waiting or being served listens to it: hundreds at once is what the server is for.
    allowManyListeners(this.closed.signal);
    this.style = options.style ?? "openai";
    if (this.style !== "openai" && this.style !== "anthropic") {
      throw new RangeError(`style must be "openai" or "anthropic"; got ${describe(options.style)}`);
    }
    this.random = seededRandom(options.seed ?? 1);
    this.failureRates = FAILURE_KINDS.filter((kind) => options.failures?.[kind] !== undefined).map((kind) => [
      kind,
      checkProbability(options.failures?.[kind], `failures["${kind}"]`),
    ]);
    const now = this.now();
    this.requestBucket = requests === undefined ? undefined : new Bucket(requests, this.minuteMs, now);
    this.tokenBucket = tokens === undefined ? undefined : new Bucket(tokens, this.minuteMs, now);
    this.accounts = keyAccounts(options.keys, this.minuteMs, now);
    this.inputBucket = inputTokens === undefined ? undefined : new Bucket(inputTokens, this.minuteMs, now);
    this.outputBucket = outputTokens === undefined ? undefined : new Bucket(outputTokens, this.minuteMs, now);
    this.dailyRequestBucket = requestsPerDay === undefined ? undefined : new Bucket(requestsPerDay, dayMs, now);
    this.dailyTokenBucket = tokensPerDay === undefined ? undefined : new Bucket(tokensPerDay, dayMs, now);
    this.http = createServer((request, response) => {
      this.handle(request, response).catch((error: unknown) => {
        if (!response.headersSent) response.writeHead(500).end(String(error));
      });
    });
    // Clients keep connections alive between requests; so does the server, or a run of a thousand
    // requests would spend its time in TCP handshakes and TIME_WAIT.
    this.http.keepAliveTimeout = 10_000;
  }

  get url(): string {
    const address = this.address;
    if (address === undefined) throw new Error("the mock server is not listening");
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    return `http://${host}:${address.port}`;
  }

  get port(): number {
    return this.address?.port ?? 0;
  }

  get inFlight(): number {
    return this.serving;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.http.once("error", reject);
      this.http.listen(this.options.port ?? 0, this.options.host ?? "127.0.0.1", () => {
        this.http.off("error", reject);
        this.address = this.http.address() as AddressInfo;
        resolve();
      });
    });
  }

  summary(): MockServerSummary {
    const outcomes: Partial<Record<MockOutcome, number>> = {};
    let status429 = 0;
    let tokensServed = 0;
    for (const record of this.requests) {
      if (record.outcome !== undefined) outcomes[record.outcome] = (outcomes[record.outcome] ?? 0) + 1;
      if (record.status === 429) status429++;
      if (record.outcome === "ok") tokensServed += record.inputTokens + record.outputTokens;
    }
    return { total: this.requests.length, outcomes, status429, maxInFlight: this.maxServing, tokensServed };
  }

  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.closed.abort();
      this.http.close(() => resolve());
      // Hanging requests and idle keep-alive sockets would otherwise hold close() open forever.
      this.http.closeAllConnections();
    });
    return this.closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  private now(): number {
    return performance.now() - this.origin;
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const arrivedAt = this.now();
    const path = (request.url ?? "/").split("?")[0] ?? "/";
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(request.headers)) {
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(", ") : value;
    }
    const text = await readBody(request);
    const body = parseBody(text);
    const api = completionApi(path);
    const style: MockProviderStyle = api === undefined ? this.style : api === "messages" ? "anthropic" : "openai";
    const isCompletion = api !== undefined;
    const inputTokens = Math.ceil(text.length / 4);
    const apiKey = apiKeyOf(headers);
    const account = apiKey === undefined ? undefined : this.accounts?.get(apiKey);
    const cache = path === "/v1/messages" ? this.cacheUse(body, inputTokens) : { read: 0, write: 0, prefix: undefined };
    const record: MockRequestRecord = {
      index: this.requests.length,
      method: request.method ?? "GET",
      path,
      headers,
      body,
      apiKey,
      arrivedAt,
      startedAt: undefined,
      endedAt: undefined,
      inputTokens,
      outputTokens: 0,
      cacheReadTokens: cache.read,
      cacheWriteTokens: cache.write,
      reservedTokens: 0,
      status: undefined,
      outcome: undefined,
    };
    this.requests.push(record);
    response.on("close", () => {
      if (record.outcome === undefined || record.outcome === "hang") {
        if (record.outcome === undefined) record.outcome = "aborted";
        record.endedAt ??= this.now();
      }
    });

    const now = this.now();
    record.startedAt = now;
    const send = (status: number, payload: unknown, extra: Record<string, string> = {}) => {
      record.status = status;
      record.endedAt = this.now();
      const headersOut = {
        "content-type": "application/json",
        ...rateLimitHeaders(
          style,
          (account?.requestBucket ?? this.requestBucket)?.report(this.now()),
          (account?.tokenBucket ?? this.tokenBucket)?.report(this.now()),
          Date.now(),
          this.inputOutputReports(),
        ),
        ...extra,
      };
      response.writeHead(status, headersOut).end(JSON.stringify(payload));
    };
    const fail = (kind: ErrorKind, message: string, extra: Record<string, string> = {}, unit?: RateUnit) => {
      record.outcome = kind;
      const { status, body: errorBody } = errorResponse(style, kind, message, unit);
      send(status, errorBody, extra);
    };

    if (isCompletion && (body === undefined || typeof body !== "object" || body === null)) {
      fail("bad-request", "the request body must be a JSON object");
      return;
    }
    if (this.accounts !== undefined && account === undefined) {
      fail("unauthorized", `Incorrect API key provided: ${apiKey === undefined ? "none" : maskKey(apiKey)}.`);
      return;
    }
    const requested = requestedOutputTokens(body);
    const quota = this.options.quota;
    if (
      (quota?.tokens !== undefined && this.quotaTokensUsed >= quota.tokens) ||
      (quota?.requests !== undefined && this.quotaRequestsUsed >= quota.requests) ||
      account?.quotaSpent() === true
    ) {
      fail("quota", "You exceeded your current quota, please check your plan and billing details.");
      return;
    }

    const failure = this.options.inject?.(record) ?? this.randomFailure();
    switch (failure) {
      case undefined:
        break;
      case "reset":
        record.outcome = "reset";
        record.endedAt = this.now();
        request.socket.destroy();
        return;
      case "hang":
        // Left unanswered on purpose; the client's timeout or close() ends it.
        record.outcome = "hang";
        return;
      case "quota":
        fail("quota", "You exceeded your current quota, please check your plan and billing details.");
        return;
      case "rate-limit":
        fail("rate-limited", "Rate limit reached (injected).", retryAfterHeaders(style, 1000));
        return;
      case "overloaded":
        fail("overloaded", "The server is overloaded. Please retry later.", retryAfterHeaders(style, 1000));
        return;
      case "server-error":
        fail("server-error", "The server had an error while processing your request.");
        return;
    }

    if (this.serving >= this.concurrency) {
      const wait = Math.max(10, this.typicalLatency());
      fail(
        "concurrency-limited",
        `Too many concurrent requests: limit ${this.concurrency}.`,
        retryAfterHeaders(style, wait),
      );
      return;
    }
    if (this.overload !== undefined && !this.overload.admits()) {
      // No Retry-After, as most overloaded services answer: the client has to find the pace itself.
      if (this.overload.status === 429) fail("rate-limited", "Too many requests: the service is overloaded.");
      else fail("overloaded", "The service is overloaded. Please retry later.");
      return;
    }
    // What the request reserves: OpenAI counts max_tokens against TPM up front, whatever is produced.
    const replyText = isCompletion ? this.options.reply?.(record) : undefined;
    const produced = replyText === undefined ? this.completionSize(record) : Math.ceil(replyText.length / 4);
    const completion = isCompletion ? Math.min(requested ?? Number.POSITIVE_INFINITY, produced) : 0;
    const reserved = inputTokens + (requested ?? completion);
    if (this.tokenBucket !== undefined && reserved > this.tokenBucket.capacity) {
      fail(
        "too-large",
        `Request too large on tokens per min (TPM): Limit ${this.tokenBucket.capacity}, Requested ${reserved}.`,
        {},
        "tokens",
      );
      return;
    }
    // Anthropic's ITPM counts the uncached input and cache writes, not cache reads; OTPM reserves max_tokens.
    const chargedInput = inputTokens - cache.read;
    const reservedOutput = requested ?? completion;
    for (const [bucket, cost, name] of [
      [this.inputBucket, chargedInput, "input tokens per minute (ITPM)"],
      [this.outputBucket, reservedOutput, "output tokens per minute (OTPM)"],
    ] as const) {
      if (bucket !== undefined && cost > bucket.capacity) {
        fail("too-large", `Request too large on ${name}: Limit ${bucket.capacity}, Requested ${cost}.`, {}, "tokens");
        return;
      }
    }
    // Every limit, with what this request costs in it; the one it waits longest for is named in the 429.
    const limits: [Bucket | undefined, number, RateUnit, string][] = [
      [this.requestBucket, 1, "requests", "requests per min"],
      [this.tokenBucket, reserved, "tokens", "tokens per min"],
      [this.inputBucket, chargedInput, "input-tokens", "input tokens per minute (ITPM)"],
      [this.outputBucket, reservedOutput, "output-tokens", "output tokens per minute (OTPM)"],
      [this.dailyRequestBucket, 1, "requests", "requests per day (RPD)"],
      [this.dailyTokenBucket, reserved, "tokens", "tokens per day (TPD)"],
    ];
    let longest: { wait: number; bucket: Bucket; cost: number; unit: RateUnit; name: string } | undefined;
    // The API key's own limits (keys option) too; its account charges them once admitted.
    const keyLimits: typeof limits = [
      [account?.requestBucket, 1, "requests", "requests per min"],
      [account?.tokenBucket, reserved, "tokens", "tokens per min"],
    ];
    for (const [bucket, cost, unit, name] of [...limits, ...keyLimits]) {
      const wait = bucket?.waitFor(cost, now) ?? 0;
      if (bucket !== undefined && wait > 0 && (longest === undefined || wait > longest.wait)) {
        longest = { wait, bucket, cost, unit, name };
      }
    }
    if (longest !== undefined) {
      const { wait, bucket, cost, unit, name } = longest;
      fail(
        "rate-limited",
        `Rate limit reached on ${name}: Limit ${bucket.capacity}, Requested ${cost}. Please try again in ${Math.ceil(wait)}ms.`,
        retryAfterHeaders(style, wait),
        unit,
      );
      return;
    }

    // Admitted: every bucket pays together, and the prompt's cached prefix is written (a refused request
    // writes nothing, as with Anthropic).
    for (const [bucket, cost] of limits) bucket?.charge(cost, now);
    if (cache.prefix !== undefined) this.promptCache.add(cache.prefix);
    record.reservedTokens = reserved;
    // The quota counts what is admitted, in flight included, so it is never overspent by concurrency.
    this.quotaTokensUsed += reserved;
    this.quotaRequestsUsed++;
    account?.charge(reserved, now);
    // Beyond the hidden capacity, a request waits in the service's queue: its latency grows with it.
    if (this.overload !== undefined) await this.overload.enter(this.closed.signal);
    try {
      await this.serve(response, record, body, path, inputTokens, completion, reserved, replyText, send, account);
    } finally {
      this.overload?.leave();
    }
  }

  /** Serves an admitted request: the latency, then the answer (streamed for a streaming chat request). */
  private async serve(
    response: ServerResponse,
    record: MockRequestRecord,
    body: unknown,
    path: string,
    inputTokens: number,
    completion: number,
    reserved: number,
    replyText: string | undefined,
    send: (status: number, payload: unknown) => void,
    account: KeyAccount | undefined,
  ): Promise<void> {
    this.serving++;
    this.maxServing = Math.max(this.maxServing, this.serving);
    const answer = replyText === undefined ? completionText(body, completion) : replyText.slice(0, completion * 4);
    const api = completionApi(path);
    const streaming = api !== undefined && (body as { stream?: unknown }).stream === true;
    const settle = () => {
      // The unused part of the reservation comes back (or the overrun is charged as debt).
      this.tokenBucket?.charge(inputTokens + completion - reserved, this.now());
      this.dailyTokenBucket?.charge(inputTokens + completion - reserved, this.now());
      this.outputBucket?.charge(completion - (reserved - inputTokens), this.now());
      this.quotaTokensUsed += inputTokens + completion - reserved;
      account?.settle(inputTokens + completion - reserved, this.now());
      record.outputTokens = completion;
    };
    if (streaming) {
      // A stream holds its concurrency slot until its last chunk, as with a real provider.
      try {
        await this.stream(
          response,
          api,
          record,
          body,
          answer,
          inputTokens,
          completion,
          this.latencyFor(record),
          account,
        );
      } finally {
        this.serving--;
        settle();
      }
      return;
    }
    try {
      const latency = this.latencyFor(record);
      if (latency > 0) await sleep(latency, this.closed.signal);
    } finally {
      this.serving--;
    }
    settle();
    // A client that gave up mid-response was still charged, as with a real provider.
    if (this.gone(response)) {
      record.outcome = "aborted";
      record.endedAt ??= this.now();
      return;
    }
    record.outcome = "ok";
    send(
      200,
      successBody(path, body, inputTokens, completion, record.index, answer, {
        read: record.cacheReadTokens,
        write: record.cacheWriteTokens,
      }),
    );
  }

  /**
   * Streams a completion as server-sent events in the API's shapes ({@link streamFrames}): OpenAI's
   * `chat.completion.chunk`s (a final chunk with `usage` when `stream_options.include_usage` is set, then
   * `[DONE]`), its Responses API events (`response.created` … `response.completed`, with the usage), or
   * Anthropic's `message_start` … `message_stop` events: headers after half the latency (time to first
   * token), the text spread over the other half.
   */
  private async stream(
    response: ServerResponse,
    api: CompletionApi,
    record: MockRequestRecord,
    body: unknown,
    answer: string,
    input: number,
    output: number,
    latency: number,
    account: KeyAccount | undefined,
  ): Promise<void> {
    if (latency > 0) await sleep(latency / 2, this.closed.signal);
    if (this.gone(response)) {
      record.outcome = "aborted";
      record.endedAt ??= this.now();
      return;
    }
    record.status = 200;
    response.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      ...rateLimitHeaders(
        api === "messages" ? "anthropic" : "openai",
        (account?.requestBucket ?? this.requestBucket)?.report(this.now()),
        (account?.tokenBucket ?? this.tokenBucket)?.report(this.now()),
        Date.now(),
        this.inputOutputReports(),
      ),
    });
    const model = typeof (body as { model?: unknown }).model === "string" ? (body as { model: string }).model : "mock";
    const options = (body as { stream_options?: { include_usage?: unknown } }).stream_options;
    const frames = streamFrames(
      api,
      {
        id: completionId(api, record.index),
        model,
        input,
        output,
        includeUsage: options?.include_usage === true,
      },
      answer,
    );
    const words = answer.split(/(?<= )/);
    const pieces = Math.max(1, Math.min(8, words.length));
    const perPiece = Math.ceil(words.length / pieces);
    for (const frame of frames.start) response.write(frame);
    for (let i = 0; i < pieces; i++) {
      if (latency > 0) await sleep(latency / 2 / pieces, this.closed.signal);
      if (this.gone(response)) {
        record.outcome = "aborted";
        record.endedAt ??= this.now();
        return;
      }
      response.write(frames.piece(words.slice(i * perPiece, (i + 1) * perPiece).join("")));
    }
    response.end(frames.end.join(""));
    record.outcome = "ok";
    record.endedAt = this.now();
  }

  /** The ITPM/OTPM reports for the headers, when those limits are configured. */
  private inputOutputReports(): Record<string, LimitReport | undefined> {
    return {
      "input-tokens": this.inputBucket?.report(this.now()),
      "output-tokens": this.outputBucket?.report(this.now()),
    };
  }

  /**
   * The prompt cache, as Anthropic's works: the prompt up to the last block marked `cache_control` (in
   * `system`, then the messages) is a cached prefix; the first admitted request with it writes it, later
   * ones read it. Its tokens are its characters / 4 (rounded up), never more than the whole input.
   */
  private cacheUse(body: unknown, inputTokens: number): { read: number; write: number; prefix: string | undefined } {
    const prefix = cachedPrefix(body);
    if (prefix === undefined) return { read: 0, write: 0, prefix };
    const tokens = Math.min(inputTokens, Math.ceil(prefix.length / 4));
    return this.promptCache.has(prefix) ? { read: tokens, write: 0, prefix } : { read: 0, write: tokens, prefix };
  }

  /** Whether nobody will read `response`: the client left, or close() dropped the connection. */
  private gone(response: ServerResponse): boolean {
    // After close(), the socket is destroyed but `response.destroyed` follows only on its close event.
    return response.destroyed || this.closed.signal.aborted;
  }

  private randomFailure(): MockFailure | undefined {
    for (const [kind, probability] of this.failureRates) {
      if (this.random() < probability) return kind;
    }
    return undefined;
  }

  private latencyFor(request: MockRequestInfo): number {
    const latency = this.options.latency ?? 0;
    if (typeof latency === "number") return latency;
    if (typeof latency === "function") return Math.max(0, latency(this.random, request));
    return latency.min + (latency.max - latency.min) * this.random();
  }

  private typicalLatency(): number {
    const latency = this.options.latency ?? 0;
    if (typeof latency === "number") return latency;
    if (typeof latency === "function") return 100;
    return (latency.min + latency.max) / 2;
  }

  private completionSize(request: MockRequestInfo): number {
    const size = this.options.completionTokens ?? 16;
    if (typeof size === "number") return size;
    if (typeof size === "function") return Math.max(0, Math.round(size(this.random, request)));
    return Math.floor(size.min + (size.max - size.min + 1) * this.random());
  }
}

/** The `keys` option's accounts, checked; `undefined` when keys are not checked. */
function keyAccounts(
  keys: MockServerOptions["keys"],
  minuteMs: number,
  now: number,
): Map<string, KeyAccount> | undefined {
  if (keys === undefined) return undefined;
  if (typeof keys !== "object" || keys === null || Array.isArray(keys)) {
    throw new TypeError(`keys must be an object of limits per API key; got ${describe(keys)}`);
  }
  const accounts = new Map<string, KeyAccount>();
  for (const [key, limits] of Object.entries(keys)) {
    if (key.trim() === "") throw new RangeError(`keys must not name an empty API key; got ${describe(key)}`);
    accounts.set(key, new KeyAccount(limits, `keys["${maskKey(key)}"]`, minuteMs, now));
  }
  return accounts;
}

/** An API key as error messages show it: the first 3 and last 4 characters, as OpenAI's errors do. */
function maskKey(key: string): string {
  return key.length <= 10 ? key : `${key.slice(0, 3)}...${key.slice(-4)}`;
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    request.on("error", reject);
  });
}

function parseBody(text: string): unknown {
  if (text === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** A unit a 429 names (OpenAI's error `type`). */
type RateUnit = "requests" | "tokens" | "input-tokens" | "output-tokens";

/**
 * The prompt up to and including the last content block marked `cache_control` (system blocks, then the
 * messages' blocks), serialized, or `undefined` when nothing is marked.
 */
function cachedPrefix(body: unknown): string | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const fields = body as { system?: unknown; messages?: unknown };
  const blocks: unknown[] = [];
  if (Array.isArray(fields.system)) blocks.push(...fields.system);
  if (Array.isArray(fields.messages)) {
    for (const message of fields.messages) {
      const content = (message as { content?: unknown } | null)?.content;
      if (Array.isArray(content)) blocks.push(...content);
      else blocks.push(content);
    }
  }
  let last = -1;
  blocks.forEach((block, index) => {
    if (typeof block === "object" && block !== null && "cache_control" in block) last = index;
  });
  return last === -1 ? undefined : JSON.stringify(blocks.slice(0, last + 1));
}

/** The output cap a chat request asks for, under any of the names the APIs use. */
function requestedOutputTokens(body: unknown): number | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const fields = body as Record<string, unknown>;
  for (const name of ["max_tokens", "max_completion_tokens", "max_output_tokens"]) {
    const value = fields[name];
    if (typeof value === "number" && Number.isFinite(value) && value >= 0) return value;
  }
  return undefined;
}

function lastUserText(body: unknown): string {
  if (typeof body !== "object" || body === null) return "";
  // Chat and messages APIs: `messages`; the Responses API: `input`, a string or a list of messages.
  const { messages: listed, input } = body as { messages?: unknown; input?: unknown };
  if (typeof input === "string") return input;
  const messages = listed ?? input;
  if (!Array.isArray(messages)) return "";
  const last = messages[messages.length - 1] as { content?: unknown } | undefined;
  const content = last?.content;
  if (typeof content === "string") return content;
  // Content as parts (what the Anthropic API takes, and the AI SDK sends): the text of its text parts
  // (`input_text` in the Responses API).
  if (!Array.isArray(content)) return "";
  return content
    .map((part: { type?: unknown; text?: unknown }) =>
      (part?.type === "text" || part?.type === "input_text") && typeof part.text === "string" ? part.text : "",
    )
    .join("");
}

/** A deterministic completion: the same request always gets the same text, so tests can check it. */
function completionText(body: unknown, tokens: number): string {
  const prompt = lastUserText(body);
  const words = [`echo:${prompt.slice(0, 64)}`];
  while (words.length < tokens) words.push("lorem");
  return words.slice(0, Math.max(0, tokens)).join(" ");
}

/** Which completion API a path is, if it is one. */
function completionApi(path: string): CompletionApi | undefined {
  if (path === "/v1/chat/completions") return "chat";
  if (path === "/v1/responses") return "responses";
  return path === "/v1/messages" ? "messages" : undefined;
}

function completionId(api: CompletionApi, index: number): string {
  return api === "chat" ? `chatcmpl-mock-${index}` : api === "responses" ? `resp_mock_${index}` : `msg_mock_${index}`;
}

function successBody(
  path: string,
  body: unknown,
  input: number,
  output: number,
  index: number,
  text: string,
  cache: { read: number; write: number } = { read: 0, write: 0 },
): unknown {
  const model = typeof (body as { model?: unknown })?.model === "string" ? (body as { model: string }).model : "mock";
  if (path === "/v1/responses") {
    return responseObject({ id: completionId("responses", index), model, input, output, includeUsage: true }, text);
  }
  if (path === "/v1/messages") {
    return {
      id: `msg_mock_${index}`,
      type: "message",
      role: "assistant",
      model,
      content: [{ type: "text", text }],
      stop_reason: "end_turn",
      stop_sequence: null,
      // Anthropic's input_tokens are those after the last cache breakpoint: neither read nor written.
      usage:
        cache.read === 0 && cache.write === 0
          ? { input_tokens: input, output_tokens: output }
          : {
              input_tokens: input - cache.read - cache.write,
              cache_creation_input_tokens: cache.write,
              cache_read_input_tokens: cache.read,
              output_tokens: output,
            },
    };
  }
  if (path === "/v1/chat/completions") {
    return {
      id: `chatcmpl-mock-${index}`,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model,
      choices: [
        {
          index: 0,
          message: { role: "assistant", content: text, refusal: null },
          finish_reason: "stop",
          logprobs: null,
        },
      ],
      usage: { prompt_tokens: input, completion_tokens: output, total_tokens: input + output },
    };
  }
  return { ok: true, path, usage: { total_tokens: input } };
}

/** Waits `ms`, or less if `signal` aborts first (the server closing). */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
