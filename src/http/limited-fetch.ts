/**
 * `limitedFetch`: a `fetch` that waits for a Limiter before every attempt, learns from the server's
 * rate-limit headers, backs off together with every other caller when the server says "too many", and
 * retries what is safe to retry — so a bulk job against a rate-limited API finishes without being
 * blocked, and as fast as the limits allow.
 */
import { AdaptiveLimiter, type AdaptivePermit } from "../core/adaptive-limit.js";
import { checkOptionNames, optionNames } from "../core/arguments.js";
import { type Clock, systemClock, type TimerHandle } from "../core/clock.js";
import { describe } from "../core/describe.js";
import { type HttpAttemptEvent, httpAttemptChannel, identityOf } from "../core/diagnostics.js";
import { type Duration, toMilliseconds } from "../core/duration.js";
import { TimeoutError } from "../core/errors.js";
import type { AcquireOptions, Limiter, Permit } from "../core/limiter.js";
import { linkSignals } from "../core/linked-signal.js";
import { allowManyListeners } from "../core/many-listeners.js";
import { checkCostValue, normalizeCost } from "../core/rate-cost.js";
import { parseRateLimitHeaders, type RateLimitHeaders } from "../core/rate-headers.js";
import { backoffDelay, sleep } from "../core/sleep.js";
import { type Cost, costFromUsage, costIn, estimateLlmCost, parseJson, type RequestDescription } from "./cost.js";
import { type FailedResponse, type NonRetryableError, QuotaExhaustedError, RequestTooLargeError } from "./errors.js";
import { observeEventStream } from "./stream-usage.js";

/** How much sharper a learned interval must be to replace the one in force (see `learn`). */
const REFINE_BY = 0.005;
/** @internal Statistics before any call: the counters of one fetch, and the start of a key pool's totals. */
export function noFetchesYet(): LimitedFetchStatistics {
  return {
    calls: 0,
    attempts: 0,
    retries: 0,
    rateLimited: 0,
    statuses: {},
    networkErrors: 0,
    pauses: 0,
    stopped: false,
    concurrency: undefined,
  };
}

/** Any function with the signature of the global `fetch`. */
export type FetchFunction = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/** When and how often to try again. */
export interface RetryOptions {
  /** Attempts in all, the first included. Default 5; 1 turns retries off. */
  attempts?: number;
  /**
   * The longest a call may take from start to its last attempt, waiting in the limiter included.
   * Once spent, the call returns the last failed response; when no attempt got a response, it throws
   * the last attempt's error (a network error, or a `TimeoutError` when the limiter did not admit the
   * call in time). A server that asks for a longer wait than the time left (`Retry-After`, a reset),
   * in this call's answer or in an earlier call's that paused everyone, gets the same at once, not at the
   * deadline (a `TimeoutError` when this call has no response yet). Default: no limit (the attempt
   * count bounds it, and a server's `Retry-After` is waited out however long it is).
   */
  totalTime?: Duration;
  /** The backoff before the second attempt; doubles each time (full jitter). Default `"500ms"`. */
  baseDelay?: Duration;
  /** The backoff never exceeds this. Default `"30s"`. */
  maxDelay?: Duration;
  /** Statuses worth retrying. Default `[408, 425, 429, 500, 502, 503, 504, 529]`. */
  statuses?: readonly number[];
  /**
   * Also retry methods that are not idempotent (POST, PATCH) — on failed statuses and network errors.
   * Default false: a request the server may already have acted on is not sent twice unless you say so
   * (or it carries an `Idempotency-Key` header). LLM completions are safe to repeat; opt in for them.
   */
  nonIdempotent?: boolean;
}

/** Why a call is about to be retried, for logging and metrics. */
export interface RetryEvent {
  /** The URL of the request, as its estimator saw it. */
  readonly url: string;
  /** The attempt that failed (1 for the first). */
  readonly attempt: number;
  /** The failed status, or `undefined` for a network error or attempt timeout. */
  readonly status: number | undefined;
  /** What the wrapped fetch threw (a network error, an attempt timeout), or `undefined` for a status. */
  readonly error: unknown;
  /** How long the retry waits before queueing again (0 when a limiter pause does the waiting). */
  readonly delayMs: number;
  /** How long the whole limiter was paused for, if it was. */
  readonly pauseMs: number | undefined;
}

/** Options for {@link limitedFetch}. Every field is optional. */
export interface LimitedFetchOptions {
  /** The fetch to wrap. Default: the global `fetch`, looked up at call time. */
  fetch?: FetchFunction;
  /**
   * The cost of a request before it is sent, in the limiter's units. Default {@link estimateLlmCost}:
   * `{ requests: 1, tokens: input + max_tokens, "input-tokens": input, "output-tokens": max_tokens }` for
   * requests with a body (input: `countTokens`'s count, else characters / 4), `1` otherwise.
   * Used only with limiters that take a cost (`RateLimiter`); a `Semaphore` just counts requests.
   */
  estimate?: (request: RequestDescription) => Cost | undefined;
  /**
   * The input tokens of a request, sync or async: usually {@link chatTokens} around a tokenizer,
   * `chatTokens((text) => encoding.encode(text).length)`, which counts the prompt's text and adds the
   * chat's overhead per message. The count is set on the request as `inputTokens`, which the default
   * `estimate` uses instead of characters / 4. Called once per call with a body (with a limiter that
   * takes costs, such as a `RateLimiter`), before the limiter is asked; a hook that throws, or returns anything but a finite number >= 0, rejects that call with a
   * `TypeError` / `RangeError` naming `countTokens` and the value — nothing is sent and the limiter is
   * not charged. Default: none. Recipes for `js-tiktoken` and `gpt-tokenizer` are in docs/http.md.
   */
  countTokens?: (request: RequestDescription) => number | PromiseLike<number>;
  /**
   * The actual cost once the response is in, to settle the estimate (refund or charge the difference).
   * Receives a clone, so reading it leaves the caller's body untouched. Default: `usage` in a JSON body
   * ({@link costFromUsage}), or the final usage of a server-sent-event stream, read as the caller reads
   * it (`costFromEventStream`). Return `undefined` to keep the estimate.
   */
  actualCost?: (response: Response, request: RequestDescription) => Cost | undefined | Promise<Cost | undefined>;
  /**
   * How many attempts this fetch lets run at once under the limiter's own cap, which becomes a ceiling:
   * - `"backoff"` (the default): starts at the ceiling; each overload answer (a 429/503/529, a network
   *   error or attempt timeout) shrinks it to 90% of what was in flight, each success grows it by about
   *   one per round trip (`overloadBackoff`). An overload answer without a server-given wait (a 503, a
   *   429 without `Retry-After`) then pauses nobody: the smaller window is the backoff, and only the
   *   refused call waits before its retry (the pause it would have had). An answer with a wait
   *   (`Retry-After`, a reset) still pauses every caller, and counts as a drop, so they resume a few at
   *   a time; so does any overload answer once the window is down to 1. A limit set too high thus
   *   costs about 1% of refused attempts instead of collapsing throughput.
   * - `"auto"`: an {@link AdaptiveLimiter} with its default algorithm finds the limit from each attempt's
   *   latency and the same drops, up to the ceiling (or 1000).
   * - an `AdaptiveLimiter`: that one (to tune it, read its statistics, or share it between fetches).
   * - `false`: no window of its own (sluice 0.1): only the limiter's cap, and every 429/503/529 pauses
   *   every caller with a growing backoff.
   */
  concurrency?: "backoff" | "auto" | AdaptiveLimiter | false;
  /** Retry policy, or `false` for a single attempt. See {@link RetryOptions}. */
  retry?: RetryOptions | false;
  /**
   * Statuses that mean "everyone slow down": the whole limiter pauses for what the server asked
   * (`retry-after-ms`, `Retry-After`, else the rate-limit reset headers, else the backoff), so calls
   * sharing it stop too instead of each finding out with its own 429. Default `[429, 503, 529]`.
   */
  pauseOn?: readonly number[];
  /** Extra random pause, as a fraction of the pause, so many clients do not resume in step. Default 0.1. */
  pauseJitter?: number;
  /** Abort an attempt that has not answered within this long and treat it as a network error. Default: none. */
  attemptTimeout?: Duration;
  /**
   * On a quota error (nothing left to spend), fail every call queued through this fetch and every later
   * call with the same {@link QuotaExhaustedError}. Default true.
   */
  stopOnQuotaExhausted?: boolean;
  /** Queue priority for each request (higher first). A function decides per request. Default 0. */
  priority?: number | ((request: RequestDescription) => number);
  /** Source of randomness for jitter, in [0, 1). Default `Math.random`. */
  random?: () => number;
  /** Time source for backoff sleeps and attempt timeouts. Default: the system clock. */
  clock?: Clock;
  /** Called before each retry. */
  onRetry?: (event: RetryEvent) => void;
  /**
   * Learn limits the limiter was not configured with from the server's headers (a limiter with settable
   * `limits`: `RateLimiter`, or `RedisRateLimiter`, where every process sharing it learns the same ones).
   * When a response reports a limit for a unit the limiter has no limit for (`x-ratelimit-limit-tokens`,
   * `anthropic-ratelimit-requests-limit`, ...), a token-bucket limit of that size is added; its interval
   * is inferred from how fast the server says the bucket refills (`limit × timeToFull / used`, rounded
   * towards slower), or, until that can be told, `learnLimits.interval` (default `"1m"`: providers
   * publish per-minute limits). Limits the limiter had when the fetch was made are never changed here (limits another process learned into a shared RedisRateLimiter are refined like its own); `observe()` tightens them.
   * Default true; assumes the provider's reset headers mean "full again at" (OpenAI, Anthropic).
   */
  learnLimits?:
    | boolean
    | {
        /** The interval a learned limit is assumed to have until its refill rate shows. Default `"1m"`. */
        interval?: Duration;
      };
}

/** Lifetime counters of a {@link LimitedFetch}. */
export interface LimitedFetchStatistics {
  /** Calls made to the wrapped fetch. */
  calls: number;
  /** Requests actually sent (first attempts and retries). */
  attempts: number;
  /** Attempts that were retried (sent again through the limiter). */
  retries: number;
  /** Responses with status 429. */
  rateLimited: number;
  /** Responses per status. */
  statuses: Record<number, number>;
  /** Attempts that failed without a response (network error, reset, attempt timeout). */
  networkErrors: number;
  /** Times the limiter (or this fetch, for limiters that cannot pause) was paused. */
  pauses: number;
  /** Whether a non-retryable error stopped this fetch. */
  stopped: boolean;
  /** Attempts this fetch lets run at once now (see the `concurrency` option); `undefined` when off. */
  concurrency: number | undefined;
}

/**
 * A fetch-compatible function that goes through a limiter, with a few extras for the program that
 * runs it.
 */
export interface LimitedFetch extends FetchFunction {
  /** Counters for logs and dashboards. */
  statistics(): LimitedFetchStatistics;
  /**
   * Stops this fetch: calls waiting for the limiter reject with `reason`, and so does every later call.
   * Requests already sent are left to finish. Done automatically on a quota error.
   */
  stop(reason?: unknown): void;
  /** Why this fetch stopped, or `undefined` while it runs. */
  readonly stopReason: unknown;
}

/**
 * The parts of `RateLimiter` that this wrapper uses when they are there (feature-detected). A shared
 * limiter (`RedisRateLimiter`) answers with a promise, which may reject when Redis cannot be reached.
 */
interface RateAware {
  pause?(forOrUntil: Duration | Date, reason?: unknown): void | PromiseLike<void>;
  observe?(headers: Headers): void | PromiseLike<void>;
  limits?: readonly LimitConfig[];
}
/** A rate limit as `RateLimiter.limits` holds it. */
interface LimitConfig {
  limit: number;
  interval: Duration;
  unit?: string;
  burst?: number;
  algorithm?: "token-bucket" | "sliding-window";
}
interface SettlablePermit extends Permit {
  settle?(actual: Cost): void;
}

const IDEMPOTENT_METHODS = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);
const DEFAULT_RETRY_STATUSES = [408, 425, 429, 500, 502, 503, 504, 529];
const DEFAULT_PAUSE_STATUSES = [429, 503, 529];
/** Error codes/types meaning "no quota or credit left" (OpenAI, Anthropic). Matched as codes, never as prose. */
const QUOTA_CODES = new Set(["insufficient_quota", "billing_error", "billing_hard_limit_reached"]);

/**
 * Wraps `fetch` so that every request first waits for `limiter`.
 *
 * With a `RateLimiter`, each request is charged its estimated cost (requests and tokens), settled to
 * the real cost from the response's `usage`; every response's rate-limit headers are fed to
 * `limiter.observe()`; and a 429/503/529 pauses the whole limiter for as long as the server asks
 * (`retry-after-ms`, `Retry-After`, reset headers), so every caller sharing it backs off together.
 * Limits the server reports and the limiter was not given are learned, refill rate included (see
 * `learnLimits`), so `new RateLimiter({ concurrency: 8 })` is enough to start. With any other `Limiter` (a `Semaphore`, a `RedisSemaphore`) it caps requests in flight and this
 * fetch pauses its own callers on a 429.
 *
 * Failed attempts are retried with exponential backoff and full jitter, each retry queueing through the
 * limiter again so retries count against the limits too. Only idempotent requests are retried unless
 * `retry.nonIdempotent` is set (do set it for LLM completions). When retrying cannot help — quota
 * exhausted, or a request larger than a whole window's limit — the call fails at once with a
 * {@link QuotaExhaustedError} or {@link RequestTooLargeError}, and a quota error stops the queue.
 * After the last attempt, the last response is returned as fetch would (a 429 stays a 429).
 *
 * The permit is held until the response body has arrived — for JSON bodies, read from a clone to find
 * the usage, and for server-sent-event streams (streamed LLM answers), observed as the caller reads them
 * and settled from the usage of their last events when they end (the estimate stays if the caller
 * cancels) — or until the headers have, for other bodies (downloads are not buffered twice). Read or
 * cancel a stream you receive: one left unread holds its permit until it is garbage-collected.
 *
 * @example
 * ```ts
 * import OpenAI from "openai";
 * import { RateLimiter } from "sluice";
 * import { limitedFetch } from "sluice/http";
 * const limiter = new RateLimiter({
 *   limits: [
 *     { limit: 500, interval: "1m" },                   // requests per minute
 *     { limit: 200_000, interval: "1m", unit: "tokens" }, // tokens per minute
 *   ],
 *   concurrency: 16,
 * });
 * const client = new OpenAI({
 *   fetch: limitedFetch(limiter, { retry: { attempts: 6, nonIdempotent: true } }),
 *   maxRetries: 0, // sluice retries, through the limiter
 * });
 * ```
 */
export function limitedFetch(limiter: Limiter, options: LimitedFetchOptions = {}): LimitedFetch {
  return new LimitedFetcher(limiter, options).fetch;
}

interface Settings {
  attempts: number;
  totalTime: number;
  baseDelay: number;
  maxDelay: number;
  retryStatuses: ReadonlySet<number>;
  retryNonIdempotent: boolean;
  pauseStatuses: ReadonlySet<number>;
  pauseJitter: number;
  attemptTimeout: number | undefined;
  stopOnQuotaExhausted: boolean;
  /** The interval assumed for a learned limit until its refill rate shows; `undefined`: do not learn. */
  learnInterval: number | undefined;
  /** This fetch's own concurrency window under the limiter (see the `concurrency` option), if any. */
  window: AdaptiveLimiter | undefined;
}

const LIMITED_FETCH_OPTIONS = /* @__PURE__ */ optionNames<LimitedFetchOptions>({
  fetch: true,
  estimate: true,
  countTokens: true,
  actualCost: true,
  retry: true,
  pauseOn: true,
  pauseJitter: true,
  attemptTimeout: true,
  stopOnQuotaExhausted: true,
  priority: true,
  random: true,
  clock: true,
  onRetry: true,
  learnLimits: true,
  concurrency: true,
});
const RETRY_OPTIONS = /* @__PURE__ */ optionNames<RetryOptions>({
  attempts: true,
  totalTime: true,
  baseDelay: true,
  maxDelay: true,
  statuses: true,
  nonIdempotent: true,
});
const LEARN_LIMITS_OPTIONS = /* @__PURE__ */ optionNames<{ interval?: Duration }>({ interval: true });

function checkOptions(limiter: Limiter, options: LimitedFetchOptions): Settings {
  if (typeof limiter !== "object" || limiter === null || typeof limiter.acquire !== "function") {
    throw new TypeError(`limiter must be a Limiter (an object with acquire()); got ${describe(limiter)}`);
  }
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object; got ${describe(options)}`);
  }
  checkOptionNames(options, LIMITED_FETCH_OPTIONS, "the limitedFetch() options");
  for (const name of ["fetch", "estimate", "countTokens", "actualCost", "random", "onRetry"] as const) {
    if (options[name] !== undefined && typeof options[name] !== "function") {
      throw new TypeError(`options.${name} must be a function; got ${describe(options[name])}`);
    }
  }
  const retry = options.retry === false ? { attempts: 1 } : (options.retry ?? {});
  if (typeof retry !== "object" || retry === null) {
    throw new TypeError(`retry must be an object or false; got ${describe(retry)}`);
  }
  checkOptionNames(retry, RETRY_OPTIONS, "retry");
  if (typeof options.learnLimits === "object" && options.learnLimits !== null) {
    checkOptionNames(options.learnLimits, LEARN_LIMITS_OPTIONS, "learnLimits");
  }
  const attempts = retry.attempts ?? 5;
  if (typeof attempts !== "number" || !Number.isInteger(attempts) || attempts < 1) {
    throw new RangeError(`retry.attempts must be an integer >= 1; got ${describe(attempts)}`);
  }
  const totalTime =
    retry.totalTime === undefined || retry.totalTime === Number.POSITIVE_INFINITY
      ? Number.POSITIVE_INFINITY
      : toMilliseconds(retry.totalTime, "retry.totalTime");
  const pauseJitter = options.pauseJitter ?? 0.1;
  if (typeof pauseJitter !== "number" || !(pauseJitter >= 0) || !Number.isFinite(pauseJitter)) {
    throw new RangeError(`pauseJitter must be a finite number >= 0; got ${describe(pauseJitter)}`);
  }
  const priority = options.priority;
  if (
    priority !== undefined &&
    typeof priority !== "function" &&
    (typeof priority !== "number" || Number.isNaN(priority))
  ) {
    throw new TypeError(`priority must be a number or a function; got ${describe(priority)}`);
  }
  return {
    attempts,
    totalTime,
    baseDelay: toMilliseconds(retry.baseDelay ?? 500, "retry.baseDelay"),
    maxDelay: toMilliseconds(retry.maxDelay ?? 30_000, "retry.maxDelay"),
    retryStatuses: new Set(checkStatuses(retry.statuses ?? DEFAULT_RETRY_STATUSES, "retry.statuses")),
    retryNonIdempotent: retry.nonIdempotent === true,
    pauseStatuses: new Set(checkStatuses(options.pauseOn ?? DEFAULT_PAUSE_STATUSES, "pauseOn")),
    pauseJitter,
    attemptTimeout:
      options.attemptTimeout === undefined ? undefined : toMilliseconds(options.attemptTimeout, "attemptTimeout"),
    stopOnQuotaExhausted: options.stopOnQuotaExhausted !== false,
    window: concurrencyWindow(limiter, options.concurrency),
    learnInterval:
      options.learnLimits === false
        ? undefined
        : toMilliseconds(
            (typeof options.learnLimits === "object" && options.learnLimits !== null
              ? options.learnLimits.interval
              : undefined) ?? "1m",
            "learnLimits.interval",
          ),
  };
}

/**
 * The window the `concurrency` option asks for. Its ceiling is the limiter's capacity when it has a
 * finite one (`statistics().capacity`), read once: a window never needs more than the limiter admits.
 */
function concurrencyWindow(limiter: Limiter, concurrency: unknown): AdaptiveLimiter | undefined {
  if (concurrency === false) return undefined;
  if (concurrency instanceof AdaptiveLimiter) return concurrency;
  if (concurrency !== undefined && concurrency !== "backoff" && concurrency !== "auto") {
    throw new TypeError(
      `concurrency must be "backoff", "auto", an AdaptiveLimiter or false; got ${describe(concurrency)}`,
    );
  }
  // An adaptive limiter's capacity is where it is now; its ceiling is its max.
  const statistics = (
    limiter as { statistics?(): { capacity?: unknown; max?: unknown; adaptiveConcurrency?: { max: unknown } } }
  ).statistics?.();
  const capacity = statistics?.max ?? statistics?.adaptiveConcurrency?.max ?? statistics?.capacity;
  const ceiling = typeof capacity === "number" && Number.isInteger(capacity) && capacity >= 1 ? capacity : undefined;
  if (concurrency === "auto") return new AdaptiveLimiter({ max: ceiling ?? 1000 });
  // Open at the ceiling: until the service refuses, the limiter's own cap is all there is. Without a
  // ceiling, the first drop brings the window down to what was in flight.
  const max = ceiling ?? 1_000_000;
  return new AdaptiveLimiter({ max, initial: max, algorithm: "backoff" });
}

function checkStatuses(statuses: unknown, argument: string): number[] {
  if (!Array.isArray(statuses) || !statuses.every((status) => Number.isInteger(status))) {
    throw new TypeError(`${argument} must be an array of HTTP status codes; got ${describe(statuses)}`);
  }
  return statuses as number[];
}

/** The outcome of one attempt, as the retry loop sees it. */
type Attempt =
  | { kind: "response"; response: Response }
  | {
      kind: "retry";
      response: Response | undefined;
      status: number | undefined;
      error: unknown;
      delayMs: number;
      pauseMs: number | undefined;
      /** When that pause ends (clock time; it was counted from the response's headers, not its body). */
      pauseUntil: number | undefined;
    };

/**
 * What one `limitedFetch` call returns runs on: its settings, its limiter and its retry loop. Not a
 * Limiter itself; it admits through the one it was given.
 */
class LimitedFetcher {
  private readonly settings: Settings;
  private readonly clock: Clock;
  private readonly random: () => number;
  /** Aborted by `stop()`: every acquire of this fetch listens to it, so stopping empties our queue. */
  private readonly stopper = new AbortController();
  /** Whether the limiter takes costs, pauses and observes (a RateLimiter) or only counts (a Semaphore). */
  private readonly rateAware: boolean;
  /**
   * For limiters that cannot pause: the wall-clock-free (clock.now()) time until which this fetch holds
   * back its own new attempts after a 429. A RateLimiter keeps this state itself.
   */
  private pausedUntil = 0;
  /**
   * Limits this fetch added from headers, by unit, with the interval they have now. Only these are ever
   * changed by learning, and their interval only ever shrinks towards the truth from above (see `learn`).
   */
  private readonly learned = new Map<string, { limit: number; interval: number }>();
  /**
   * The limits the limiter had when this fetch was made (`unit:limit:interval`): configured, never changed
   * by learning. A limit it has later that this fetch did not add was learned elsewhere (another process
   * sharing a RedisRateLimiter) and is refined here like one of ours.
   */
  private readonly configuredLimits: ReadonlySet<string>;
  private readonly counters: LimitedFetchStatistics = noFetchesYet();
  readonly fetch: LimitedFetch;

  constructor(
    private readonly limiter: Limiter & RateAware,
    private readonly options: LimitedFetchOptions,
  ) {
    this.settings = checkOptions(limiter, options);
    this.configuredLimits = new Set((limiter.limits ?? []).map(limitKey));
    // Every call waiting for the limiter listens to the stop switch: thousands at once is normal.
    allowManyListeners(this.stopper.signal);
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.rateAware = typeof limiter.pause === "function" && typeof limiter.observe === "function";
    const fetch = ((input: string | URL | Request, init?: RequestInit) => this.call(input, init)) as LimitedFetch;
    Object.defineProperties(fetch, {
      statistics: {
        value: () => ({
          ...this.counters,
          statuses: { ...this.counters.statuses },
          concurrency: this.settings.window?.capacity,
        }),
      },
      stop: { value: (reason?: unknown) => this.stop(reason) },
      stopReason: { get: () => (this.stopper.signal.aborted ? this.stopper.signal.reason : undefined) },
    });
    this.fetch = fetch;
  }

  stop(reason: unknown = new Error("this limitedFetch was stopped")): void {
    if (this.stopper.signal.aborted) return;
    this.counters.stopped = true;
    this.stopper.abort(reason);
  }

  private async call(input: string | URL | Request, init: RequestInit | undefined): Promise<Response> {
    this.counters.calls++;
    if (this.stopper.signal.aborted) throw this.stopper.signal.reason;
    const callerSignal = init?.signal ?? (input instanceof Request ? input.signal : undefined) ?? undefined;
    callerSignal?.throwIfAborted();
    const startedAt = this.clock.now();
    const deadline = startedAt + this.settings.totalTime;
    let request = await describeRequest(input, init);
    if (this.rateAware && this.options.countTokens !== undefined && request.body !== undefined && request.body !== "") {
      request = { ...request, inputTokens: await countInputTokens(this.options.countTokens, request) };
    }
    const cost = this.rateAware ? (this.options.estimate ?? estimateLlmCost)(request) : undefined;
    // A bad estimate is the estimate's fault, not a request too large for the limiter (whose RangeError
    // below means exactly that).
    checkEstimate(cost, request);
    const priorityOption = this.options.priority;
    const priority = typeof priorityOption === "function" ? priorityOption(request) : priorityOption;
    if (priority !== undefined && (typeof priority !== "number" || Number.isNaN(priority))) {
      throw new TypeError(`the priority option returned ${describe(priority)} for ${request.url}; it must be a number`);
    }
    // A retry re-sends the body; a stream body can be sent only once.
    const replayable = !(init?.body instanceof ReadableStream) && !isAsyncIterable(init?.body);
    const retryable =
      replayable &&
      (this.settings.retryNonIdempotent ||
        IDEMPOTENT_METHODS.has(request.method) ||
        request.headers.has("idempotency-key"));

    let lastResponse: Response | undefined;
    const ownWindow = this.settings.window;
    for (let attempt = 1; ; attempt++) {
      let permit: SettlablePermit;
      let window: AdaptivePermit | undefined;
      try {
        await this.waitOutOwnPause(callerSignal, deadline);
        // The window first: a caller waits for this process's share before it takes a slot of a limiter
        // that may be shared (a RedisSemaphore cap), so waiting here never holds anyone else back.
        if (ownWindow !== undefined) {
          window = (await this.acquire(ownWindow, undefined, priority, callerSignal, deadline)) as AdaptivePermit;
        }
        permit = await this.acquire(this.limiter, cost, priority, callerSignal, deadline);
      } catch (error) {
        leaveWindow(window, "ignore");
        if (error instanceof TimeoutError && lastResponse !== undefined) return lastResponse;
        if (error instanceof RangeError && cost !== undefined) {
          // The limiter refuses a cost larger than a whole window: no amount of waiting admits it.
          throw new RequestTooLargeError(
            `${request.method} ${request.url} cannot fit the limiter: ${error.message}`,
            undefined,
            {
              cause: error,
            },
          );
        }
        throw error;
      }
      if (this.pausedUntil > this.clock.now()) {
        // Granted by a limiter that cannot pause while this fetch is paused: wait it out holding the slot
        // (everyone is waiting anyway), so a waiter granted during the pause does not break it.
        try {
          await this.waitOutOwnPause(callerSignal, deadline);
        } catch (error) {
          giveBack(permit);
          leaveWindow(window, "ignore");
          if (error instanceof TimeoutError && lastResponse !== undefined) return lastResponse;
          throw error;
        }
      }
      const outcome = await this.attempt(input, init, request, cost, permit, window, callerSignal, attempt, retryable);
      if (outcome.kind === "response") return outcome.response;
      lastResponse = outcome.response;
      // A wait known to outlast the time left (a Retry-After of a day against a totalTime of minutes) is
      // not sat through: the call ends now, as it would at the deadline.
      const retryAt = Math.max(this.clock.now() + outcome.delayMs, outcome.pauseUntil ?? 0);
      const finalAttempt = attempt >= this.settings.attempts || retryAt >= deadline;
      if (finalAttempt) {
        if (outcome.response !== undefined) return outcome.response;
        throw outcome.error;
      }
      this.counters.retries++;
      this.options.onRetry?.({
        url: request.url,
        attempt,
        status: outcome.status,
        error: outcome.error,
        delayMs: outcome.delayMs,
        pauseMs: outcome.pauseMs,
      });
      if (outcome.delayMs > 0) await this.sleep(outcome.delayMs, callerSignal);
    }
  }

  /**
   * One attempt, from the acquired permit to a decision. Releases the permit on every path, and the
   * window's, telling the window whether the service took the attempt, refused it (a drop), or neither.
   */
  private async attempt(
    input: string | URL | Request,
    init: RequestInit | undefined,
    request: RequestDescription,
    cost: Cost | undefined,
    permit: SettlablePermit,
    window: AdaptivePermit | undefined,
    callerSignal: AbortSignal | undefined,
    attempt: number,
    retryable: boolean,
  ): Promise<Attempt> {
    this.counters.attempts++;
    let response: Response;
    const timeout = this.settings.attemptTimeout;
    const timer = timeout === undefined ? undefined : new AbortController();
    const timerHandle: TimerHandle | undefined =
      timer === undefined
        ? undefined
        : this.clock.setTimeout(
            () => timer.abort(new TimeoutError(timeout as number, `no response within attemptTimeout (${timeout} ms)`)),
            timeout as number,
          );
    const link = linkSignals(callerSignal, timer?.signal);
    const sentAt = this.clock.now();
    // A success's body is still coming: the caller's abort must reach it (a stream) until it has.
    let bodyFollows = false;
    try {
      const target = input instanceof Request ? input.clone() : input;
      const fetchImpl = this.options.fetch ?? globalThis.fetch;
      response = await fetchImpl(target, { ...init, signal: link.signal });
      bodyFollows = response.status < 400;
    } catch (error) {
      giveBack(permit);
      // A reset or an attempt timeout is an overload signal; the caller's own abort says nothing.
      leaveWindow(window, callerSignal?.aborted ? "ignore" : "drop");
      this.counters.networkErrors++;
      this.published(request, attempt, undefined);
      // The caller's own abort is final; anything else (reset, DNS, attempt timeout) may be retried.
      if (callerSignal?.aborted) throw callerSignal.reason;
      if (!retryable) throw error;
      return {
        kind: "retry",
        response: undefined,
        status: undefined,
        error,
        delayMs: this.backoff(attempt),
        pauseMs: undefined,
        pauseUntil: undefined,
      };
    } finally {
      if (!bodyFollows) link.dispose();
      if (timerHandle !== undefined) this.clock.clearTimeout(timerHandle);
    }

    this.counters.statuses[response.status] = (this.counters.statuses[response.status] ?? 0) + 1;
    this.published(request, attempt, response.status);
    if (response.status === 429) this.counters.rateLimited++;
    const nowWall = Date.now();
    let headers: RateLimitHeaders = { units: {} };
    let tooLarge: { unit: string; needed: number; limit: number } | undefined;
    let pauseMs: number | undefined;
    let pauseUntil: number | undefined;
    /** The wait of a refused call whose window shrank instead of pausing everyone: the pause it would have had. */
    let ownDelay: number | undefined;
    // Headers come from the server and may be anything: should the limiter refuse what they say (a
    // retry-after too large to represent), the permit still goes back, or it would be held for good.
    try {
      if (this.rateAware) {
        if (this.settings.learnInterval !== undefined) {
          const roundTrip = this.clock.now() - sentAt;
          this.learn(parseRateLimitHeaders(response.headers, nowWall), nowWall, roundTrip, response.headers);
        }
        this.inBackground(this.limiter.observe?.(response.headers));
      }
      if (response.status >= 400) {
        headers = parseRateLimitHeaders(response.headers, nowWall);
        // A request bigger than a whole window shows in the headers alone; it must not pause everyone else.
        tooLarge = response.status === 429 ? this.exceedsLimit(headers, cost) : undefined;
        // "Everyone slow down" takes effect now, before anything else is sent — not after the body is read.
        if (tooLarge === undefined && this.settings.pauseStatuses.has(response.status)) {
          const wait = serverWait(headers, nowWall);
          const ownWindow = this.settings.window;
          // Without a wait from the server, a window shrinks instead: pausing everyone, then resuming
          // everyone together, is what collapsed throughput under a limit set too high (issue 18). A
          // window already down to its floor cannot back off further: then everyone pauses, as before.
          if (wait !== undefined || ownWindow === undefined || ownWindow.capacity <= ownWindow.min) {
            pauseMs = this.pauseFor(wait, attempt, response.status);
            pauseUntil = this.clock.now() + pauseMs;
          } else {
            ownDelay = this.pauseLength(undefined, attempt);
          }
        }
      }
    } catch (error) {
      giveBack(permit);
      leaveWindow(window, "ignore");
      link.dispose();
      throw error;
    }

    if (response.status < 400) {
      const finished = this.finishSuccess(response, request, cost, permit, () => {
        link.dispose();
        leaveWindow(window, this.clock.now() - sentAt);
      });
      return { kind: "response", response: finished };
    }
    // Then read the (small) error body from a clone to tell "wait" from "never".
    let failure: FailedResponse;
    try {
      failure = await readFailure(response, request.url);
    } catch (error) {
      giveBack(permit);
      leaveWindow(window, "ignore");
      throw error;
    }
    const nonRetryable = this.classify(failure, tooLarge);
    // Stop before releasing: the release hands the slot to the next waiter at once, which would
    // otherwise send one more request into an exhausted quota.
    if (nonRetryable instanceof QuotaExhaustedError && this.settings.stopOnQuotaExhausted) this.stop(nonRetryable);
    giveBack(permit);
    const overload =
      nonRetryable === undefined && tooLarge === undefined && this.settings.pauseStatuses.has(response.status);
    leaveWindow(window, overload ? "drop" : "ignore");
    if (nonRetryable !== undefined) throw nonRetryable;
    const shouldRetry = response.headers.get("x-should-retry");
    const statusRetryable =
      shouldRetry === "true" || (shouldRetry !== "false" && this.settings.retryStatuses.has(response.status));
    if (!statusRetryable || !retryable) return { kind: "response", response };
    // When the whole limiter was paused, the retry's wait for the limiter is the backoff; otherwise back off
    // on our own, honouring the server's Retry-After if it sent one.
    const delayMs =
      ownDelay ??
      (pauseMs !== undefined && this.rateAware ? 0 : Math.max(headers.retryAfterMs ?? 0, this.backoff(attempt)));
    return { kind: "retry", response, status: response.status, error: undefined, delayMs, pauseMs, pauseUntil };
  }

  /** Tells `sluice:http.attempt` subscribers that an attempt answered (`status`) or failed. */
  private published(request: RequestDescription, attempt: number, status: number | undefined): void {
    if (!httpAttemptChannel.hasSubscribers) return;
    httpAttemptChannel.publish({
      limiter: identityOf(this.limiter),
      method: request.method,
      url: request.url,
      attempt,
      retry: attempt > 1,
      status,
    } satisfies HttpAttemptEvent);
  }

  /** The unit and numbers by which `cost` exceeds a limit the server reports, if it does. */
  private exceedsLimit(
    headers: RateLimitHeaders,
    cost: Cost | undefined,
  ): { unit: string; needed: number; limit: number } | undefined {
    if (cost === undefined) return undefined;
    for (const [unit, report] of Object.entries(headers.units)) {
      const needed = costIn(cost, unit);
      if (report.limit !== undefined && needed > report.limit) return { unit, needed, limit: report.limit };
    }
    return undefined;
  }

  /** A non-retryable failure, or `undefined` when waiting might help. */
  private classify(
    failure: FailedResponse,
    tooLarge: { unit: string; needed: number; limit: number } | undefined,
  ): NonRetryableError | undefined {
    const { status } = failure;
    const code = errorCode(failure.body);
    const where = `${failure.url}: HTTP ${status}`;
    const said = serverMessage(failure.body);
    if (status === 402 || (code !== undefined && QUOTA_CODES.has(code))) {
      return new QuotaExhaustedError(
        `quota exhausted (${where}${code === undefined ? "" : ` ${code}`}): ${said ?? "the account has no quota or credit left"}`,
        failure,
      );
    }
    if (status === 413) {
      return new RequestTooLargeError(
        `request too large (${where}): ${said ?? "the server refused its size"}`,
        failure,
      );
    }
    if (tooLarge !== undefined) {
      // A 429 for a request that needs more than the whole limit is not a matter of waiting.
      return new RequestTooLargeError(
        `request too large (${where}): it needs ${tooLarge.needed} ${tooLarge.unit} but the limit is ${tooLarge.limit} per window`,
        failure,
      );
    }
    return undefined;
  }

  /**
   * Pauses the whole limiter for as long as the server asked (`wait`, see {@link serverWait}), else the
   * backoff, plus jitter. Returns the pause in ms.
   */
  private pauseFor(serverWait: number | undefined, attempt: number, status: number): number {
    const pauseMs = this.pauseLength(serverWait, attempt);
    this.counters.pauses++;
    if (this.rateAware) {
      // If a shared limiter cannot record the pause (Redis unreachable), this fetch still honours it.
      this.inBackground(this.limiter.pause?.(pauseMs, `HTTP ${status}`), () => this.pauseHere(pauseMs));
    } else {
      this.pauseHere(pauseMs);
    }
    return pauseMs;
  }

  /** What the server asked, else the backoff (not jittered down to 0: a pause must wait), plus jitter. */
  private pauseLength(serverWait: number | undefined, attempt: number): number {
    const wait = serverWait ?? backoffDelay(attempt, this.settings.baseDelay, this.settings.maxDelay);
    return wait * (1 + this.settings.pauseJitter * this.random());
  }

  /** Pauses this fetch's own callers. Extend-only, like RateLimiter.pause: a shorter pause never cuts a longer one short. */
  private pauseHere(pauseMs: number): void {
    this.pausedUntil = Math.max(this.pausedUntil, this.clock.now() + pauseMs);
  }

  /**
   * What a shared limiter's `observe`/`pause` returned: a failure there (Redis unreachable) must not become
   * an unhandled rejection that ends the process, nor fail a call whose response is already here.
   */
  private inBackground(result: void | PromiseLike<void>, onFailure?: () => void): void {
    if (result === undefined || result === null || typeof (result as PromiseLike<void>).then !== "function") return;
    (result as PromiseLike<void>).then(undefined, () => onFailure?.());
  }

  /**
   * Adds (or refines) limits for units the server reports and the limiter lacks.
   *
   * The server reports, right after charging, `limit`, `remaining` (rounded down) and when the bucket is
   * full again, `timeToFull = (limit - level) / rate`, so `interval = limit / rate =
   * limit × timeToFull / (limit - level)`. Every error is rounded towards a slower, safe limit: `level` is
   * somewhere in `[remaining, remaining + 1)`, so we divide by `limit - remaining - 1`; and an absolute
   * reset (Anthropic's RFC 3339 instant) was computed when the response left the server, up to a round
   * trip before we read it against our clock, so we add the round trip (and a millisecond of rounding);
   * a relative reset (OpenAI's `6m0s`) needs no such correction.
   * The estimate sharpens as more of the bucket is used; we keep the smallest seen. Until one can be
   * made, the assumed interval (per minute) stands.
   */
  private learn(headers: RateLimitHeaders, nowWall: number, roundTrip: number, raw: Headers): void {
    const configured = this.limiter.limits;
    if (configured === undefined) return;
    let next: LimitConfig[] | undefined;
    for (const [unit, report] of Object.entries(headers.units)) {
      const limit = report.limit;
      if (limit === undefined || !(limit > 0) || !Number.isFinite(limit)) continue;
      let known = this.learned.get(unit);
      if (known === undefined) {
        const elsewhere = configured.find(
          (config) =>
            (config.unit ?? "requests") === unit &&
            config.limit === limit &&
            typeof config.interval === "number" &&
            !this.configuredLimits.has(limitKey(config)),
        );
        if (elsewhere !== undefined) {
          known = { limit, interval: elsewhere.interval as number };
          this.learned.set(unit, known);
        }
      }
      // The limit as the limiter holds it may be sharper than ours: another process sharing a
      // RedisRateLimiter learned it. Ours only ever replaces it with a sharper one, or every process
      // would set its own estimate in turn and the shared limit would not only shrink towards the truth.
      const held =
        known && configured.find((config) => (config.unit ?? "requests") === unit && config.limit === known?.limit);
      if (known !== undefined && typeof held?.interval === "number" && held.interval < known.interval) {
        known = { limit: known.limit, interval: held.interval };
        this.learned.set(unit, known);
      }
      // A configured limit of this unit covers the report when it is the one the report describes and
      // of about its size: a daily quota (10,000 or 3 requests) does not cover a reported 500 per
      // minute, which is learned beside it.
      if (
        known === undefined &&
        configured.some(
          (config) => (config.unit ?? "requests") === unit && config.limit <= 2 * limit && config.limit >= limit / 2,
        )
      ) {
        continue;
      }
      let inferred: number | undefined = report.window;
      if (inferred === undefined && report.remaining !== undefined && report.resetAt !== undefined) {
        const used = limit - report.remaining - 1;
        const absolute = isAbsoluteTime(
          raw.get(`anthropic-ratelimit-${unit}-reset`) ?? raw.get(`x-ratelimit-reset-${unit}`),
        );
        const timeToFull = report.resetAt - nowWall + (absolute ? roundTrip + 1 : 0);
        // A reset too far off to represent tells nothing about the refill rate.
        if (used >= 1 && report.resetAt > nowWall && Number.isFinite(timeToFull)) {
          inferred = (limit * timeToFull) / used;
        }
      }
      let interval = known?.interval ?? inferred ?? (this.settings.learnInterval as number);
      if (inferred !== undefined && inferred < interval) interval = inferred;
      // Re-configuring on every response for a sliver of difference would only churn the limiter (and a
      // RedisRateLimiter's processes): a sharper interval is taken when it is REFINE_BY sharper. It was 3%,
      // which left a limit up to 3% slower than the server's for the whole run. But a
      // learned limit the limiter no longer has is added again: a RedisRateLimiter's limits are replaced
      // whole by whichever process set them last, and another may have set them without this one.
      if (
        known !== undefined &&
        known.limit === limit &&
        interval > known.interval * (1 - REFINE_BY) &&
        configured.some((config) => (config.unit ?? "requests") === unit && config.limit === known.limit)
      ) {
        continue;
      }
      this.learned.set(unit, { limit, interval });
      next ??= [...(this.limiter.limits ?? [])];
      // The learned limit itself, not a configured one counting the same unit (a daily quota, whose
      // size differs: one of about the learned size would have kept it from being learned).
      const index =
        known === undefined
          ? -1
          : next.findIndex((config) => (config.unit ?? "requests") === unit && config.limit === known.limit);
      const config: LimitConfig = { limit, interval: Math.ceil(interval), unit };
      if (index === -1) next.push(config);
      else next[index] = config;
    }
    if (next !== undefined) this.limiter.limits = next;
  }

  /** Full jitter (AWS): uniformly random in [0, min(maxDelay, baseDelay * 2^(attempt-1))). */
  private backoff(attempt: number): number {
    return this.random() * backoffDelay(attempt, this.settings.baseDelay, this.settings.maxDelay);
  }

  private acquire(
    limiter: Limiter,
    cost: Cost | undefined,
    priority: number | undefined,
    callerSignal: AbortSignal | undefined,
    deadline: number,
  ): Promise<SettlablePermit> {
    const link = linkSignals(callerSignal, this.stopper.signal);
    const options: AcquireOptions & { cost?: Cost } = { signal: link.signal };
    if (cost !== undefined) options.cost = cost;
    if (priority !== undefined) options.priority = priority;
    if (deadline !== Number.POSITIVE_INFINITY) options.timeout = Math.max(0, deadline - this.clock.now());
    let acquired: Promise<Permit>;
    try {
      acquired = limiter.acquire(options);
    } catch (error) {
      link.dispose();
      return Promise.reject(error);
    }
    return acquired.then(
      (permit) => {
        link.dispose();
        return permit as SettlablePermit;
      },
      (error: unknown) => {
        link.dispose();
        throw error;
      },
    );
  }

  /**
   * Holds the permit until the response body has arrived, then settles it from the usage the body
   * reports and releases it, and returns the response the caller gets. A JSON body (what LLM APIs send)
   * is read from a clone, so the caller's body is untouched. A server-sent-event stream is observed as
   * the caller reads it (see {@link observeEventStream}): it holds its slot until its last event, as the
   * server counts it, settles from the usage its events report, and keeps the estimate when the caller
   * cancels it. Other bodies (downloads) release at once: reading them alongside the caller would buffer
   * whatever the caller has not consumed yet.
   */
  private finishSuccess(
    response: Response,
    request: RequestDescription,
    cost: Cost | undefined,
    permit: SettlablePermit,
    leftWindow: () => void,
  ): Response {
    const canSettle = cost !== undefined && typeof permit.settle === "function";
    const custom = this.options.actualCost;
    const type = response.headers.get("content-type") ?? "";
    const isJson = type.includes("json");
    const isEventStream = type.includes("text/event-stream");
    if (response.body === null || (!isJson && !isEventStream && !(canSettle && custom !== undefined))) {
      giveBack(permit);
      leftWindow();
      return response;
    }
    if (isEventStream && custom === undefined) {
      return observeEventStream(response, (actual) => {
        try {
          if (actual !== undefined && canSettle) permit.settle?.(actual);
        } catch {
          // A usage the limiter refuses keeps the estimate: the charge was already made.
        } finally {
          giveBack(permit);
          leftWindow();
        }
      });
    }
    const clone = response.clone();
    let actual: Promise<Cost | undefined>;
    if (custom !== undefined && canSettle) {
      actual = Promise.resolve().then(() => custom(clone, request));
    } else {
      actual = clone.text().then(
        (text) => costFromUsage(parseJson(text)),
        // The caller aborted or the connection broke mid-body: nothing to settle from.
        () => undefined,
      );
    }
    actual
      .then(
        (value) => {
          if (value !== undefined && canSettle) permit.settle?.(value);
        },
        () => {
          // An actualCost callback that throws keeps the estimate: the charge was already made.
        },
      )
      .finally(() => {
        giveBack(permit);
        leftWindow();
      });
    return response;
  }

  /**
   * Waits while this fetch is paused. A pause that lasts past the call's deadline is not sat through:
   * it rejects at once with a TimeoutError, as the limiter does for a wait that cannot end in time.
   */
  private async waitOutOwnPause(signal: AbortSignal | undefined, deadline: number): Promise<void> {
    const now = this.clock.now();
    const wait = this.pausedUntil - now;
    if (wait <= 0) return;
    if (this.pausedUntil >= deadline) {
      const totalTime = this.settings.totalTime;
      throw new TimeoutError(
        totalTime,
        `the server paused this fetch for another ${Math.ceil(wait)} ms, past the end of retry.totalTime (${totalTime} ms)`,
      );
    }
    await this.sleep(wait, signal);
  }

  /** Waits `ms`; rejects with the reason if the caller's signal or the stop switch aborts first. */
  private async sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
    const link = linkSignals(signal, this.stopper.signal);
    try {
      if (!(await sleep(ms, link.signal, this.clock))) throw link.signal?.reason;
    } finally {
      link.dispose();
    }
  }
}

/**
 * Releases a permit whichever kind it is. A distributed permit's release is a promise that may reject
 * (its lease already lost, Redis unreachable); its lease then ends on its own and the loss was reported
 * through `permit.signal`, so the rejection is not the HTTP caller's error and must not go unhandled.
 */
function giveBack(permit: Permit): void {
  const result = permit.release();
  if (result !== undefined) result.catch(() => {});
}

/**
 * Gives a window permit back with what the attempt said: its latency (the service took it), a drop (it
 * refused: a 429/503/529, a reset, an attempt timeout), or nothing (a 404, the caller's abort).
 */
function leaveWindow(window: AdaptivePermit | undefined, outcome: number | "drop" | "ignore"): void {
  if (window === undefined) return;
  if (outcome === "drop") window.dropped();
  else if (outcome === "ignore") window.ignore();
  else window.reportLatency(outcome);
  window.release();
}

/**
 * How long the server asked callers to wait — `retry-after-ms`/`Retry-After`, else the reset of an
 * exhausted budget — or `undefined` when it did not say.
 */
function serverWait(headers: RateLimitHeaders, nowWall: number): number | undefined {
  // Only a positive, finite wait says when: "0", a date already past (clock skew) or a number too big
  // to represent would otherwise resend at once, in a burst, or never.
  const usable = (ms: number | undefined) => (ms !== undefined && ms > 0 && Number.isFinite(ms) ? ms : undefined);
  let wait = usable(headers.retryAfterMs);
  if (wait === undefined) {
    for (const report of Object.values(headers.units)) {
      if (report.remaining !== undefined && report.remaining < 1 && report.resetAt !== undefined) {
        const untilReset = usable(report.resetAt - nowWall);
        if (untilReset !== undefined) wait = Math.max(wait ?? 0, untilReset);
      }
    }
  }
  return wait;
}

/** The cost an `estimate` returned must be one the limiter can read; the error names the request. */
function checkEstimate(cost: Cost | undefined, request: RequestDescription): void {
  try {
    normalizeCost(cost);
  } catch (error) {
    const message = `the estimate for ${request.method} ${request.url} is not a cost: ${(error as Error).message}`;
    throw error instanceof RangeError
      ? new RangeError(message, { cause: error })
      : new TypeError(message, { cause: error });
  }
}

/** The input tokens of a request by the `countTokens` hook. Whatever goes wrong is the hook's, and says so. */
async function countInputTokens(
  countTokens: NonNullable<LimitedFetchOptions["countTokens"]>,
  request: RequestDescription,
): Promise<number> {
  const where = `countTokens(${request.method} ${request.url})`;
  let count: unknown;
  try {
    count = await countTokens(request);
  } catch (error) {
    throw new TypeError(`${where} threw: ${(error as Error)?.message ?? describe(error)}`, { cause: error });
  }
  // A count is a cost amount: a finite number >= 0, or a TypeError/RangeError naming it and the value.
  return checkCostValue(count, where);
}

/** Whether a reset header names an instant (`2024-06-03T12:34:56Z`) rather than a delay (`6m0s`, `30`). */
/** A limit as `configuredLimits` remembers it. */
function limitKey(config: LimitConfig): string {
  return `${config.unit ?? "requests"}:${config.limit}:${String(config.interval)}`;
}

function isAbsoluteTime(value: string | null): boolean {
  return value !== null && /\d{4}-\d{2}-\d{2}|[a-z]{3},/i.test(value);
}

function isAsyncIterable(value: unknown): boolean {
  return typeof value === "object" && value !== null && Symbol.asyncIterator in value;
}

/** @internal What estimators see: URL, method, headers and the body as text when it is text (the key pool routes by it too). */
export async function describeRequest(
  input: string | URL | Request,
  init: RequestInit | undefined,
): Promise<RequestDescription> {
  const isRequest = input instanceof Request;
  const url = isRequest ? input.url : String(input);
  const method = (init?.method ?? (isRequest ? input.method : "GET")).toUpperCase();
  const headers = new Headers(isRequest ? input.headers : undefined);
  if (init?.headers !== undefined) for (const [name, value] of new Headers(init.headers)) headers.set(name, value);
  let body: string | undefined;
  const raw = init?.body;
  if (typeof raw === "string") body = raw;
  else if (raw instanceof URLSearchParams) body = raw.toString();
  else if (raw instanceof ArrayBuffer || ArrayBuffer.isView(raw)) body = new TextDecoder().decode(raw as ArrayBuffer);
  else if (raw === undefined && isRequest && input.body !== null) body = await input.clone().text();
  const json = body !== undefined && /^\s*[[{]/.test(body) ? parseJson(body) : undefined;
  return { url, method, headers, body, json };
}

async function readFailure(response: Response, url: string): Promise<FailedResponse> {
  const body = await response
    .clone()
    .text()
    .catch(() => "");
  return { status: response.status, headers: response.headers, body, url: response.url || url };
}

/** The machine-readable error code: OpenAI `error.code`/`error.type`, Anthropic `error.type`. */
function errorCode(text: string): string | undefined {
  const json = parseJson(text) as { error?: { code?: unknown; type?: unknown } } | undefined;
  const error = json?.error;
  if (typeof error !== "object" || error === null) return undefined;
  if (typeof error.code === "string" && QUOTA_CODES.has(error.code)) return error.code;
  if (typeof error.type === "string") return error.type;
  return typeof error.code === "string" ? error.code : undefined;
}

function serverMessage(text: string): string | undefined {
  const json = parseJson(text) as { error?: { message?: unknown } } | undefined;
  const message = json?.error?.message;
  return typeof message === "string" ? message : undefined;
}
