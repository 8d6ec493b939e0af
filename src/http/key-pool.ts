/**
 * `keyPoolFetch`: one `limitedFetch` over several credentials or endpoints (org keys, Azure deployments,
 * regions). Each key keeps its own limiter and its own `limitedFetch` — so it learns its own limits,
 * pauses on its own 429s and retries through its own queue, with no second copy of that logic here —
 * and this module only decides which key a request goes to, and takes a key out of rotation when the
 * server says it is spent (quota exhausted) or refused (401, 403).
 */
import { describe } from "../core/describe.js";
import { identityOf, keyRemovedChannel, type LimiterIdentity } from "../core/diagnostics.js";
import type { Limiter } from "../core/limiter.js";
import { normalizeCost } from "../core/rate-cost.js";
import { estimateLlmCost } from "./cost.js";
import { type FailedResponse, NonRetryableError, QuotaExhaustedError } from "./errors.js";
import {
  describeRequest,
  type FetchFunction,
  type LimitedFetch,
  type LimitedFetchOptions,
  type LimitedFetchStatistics,
  limitedFetch,
  noFetchesYet,
} from "./limited-fetch.js";
import { checkKeys, type Routable } from "./pool-keys.js";

/** One credential or endpoint of a {@link keyPoolFetch}. It needs `apiKey` or `headers`. */
export interface PoolKey {
  /**
   * How events, errors and statistics name this key. Default: its place and the API key masked as
   * OpenAI's errors show it, with the `baseURL` when it has one (`key 2 (sk-...a1b2)`). Never the whole
   * secret.
   */
  name?: string;
  /** The credential, sent as `Authorization: Bearer <apiKey>`, or in the pool's `apiKeyHeader`. */
  apiKey?: string;
  /** Headers set on every request sent with this key (Azure's `api-key`, an organization header, ...). */
  headers?: Readonly<Record<string, string>>;
  /**
   * Where this key's requests go: replaces the origin (scheme, host, port) of each request's URL, and a
   * path here goes before the request's path (`https://eastus.example.com/openai/deployments/gpt-4o`).
   * For regions and deployments. Default: the URL the caller gave.
   */
  baseURL?: string;
  /**
   * This key's limits: any `Limiter`, typically a `RateLimiter` with the key's limits, or a
   * `RedisRateLimiter` to share them with other processes. Default: `new RateLimiter()`, which learns
   * the key's limits from its responses' headers (give a limiter of your own for a concurrency cap).
   * Each key needs its own.
   */
  limiter?: Limiter;
}

/** A key that left the rotation, and why (see {@link NoKeysLeftError.reasons}). */
export interface KeyRemoval {
  /** The key's name (see {@link PoolKey.name}). */
  readonly key: string;
  /** What the server said: a {@link QuotaExhaustedError} or a {@link KeyRejectedError}. */
  readonly reason: NonRetryableError;
}

/** Why a key left the rotation, as {@link KeyPoolOptions.onKeyRemoved} hears it. */
export interface KeyRemovedEvent {
  /** The key's name (see {@link PoolKey.name}). */
  readonly key: string;
  /** What the server said: a {@link QuotaExhaustedError} or a {@link KeyRejectedError}. */
  readonly reason: NonRetryableError;
  /** The keys still in rotation. */
  readonly keysLeft: number;
}

/**
 * A key out of rotation, on the `node:diagnostics_channel` channel `sluice:http.key.removed`: what
 * `onKeyRemoved` hears, and the key's limiter.
 */
export interface KeyRemovedDiagnosticsEvent extends KeyRemovedEvent {
  /** The key's limiter; `undefined` for a Limiter that is not sluice's own. */
  readonly limiter: LimiterIdentity | undefined;
}

/** Options for {@link keyPoolFetch}: those of `limitedFetch`, applied to each key, and a few of the pool's own. */
export interface KeyPoolOptions extends Omit<LimitedFetchOptions, "stopOnQuotaExhausted"> {
  /**
   * The header that carries `apiKey`: `"authorization"` (the default) sends `Bearer <apiKey>`; any other
   * name (`"x-api-key"` for Anthropic, `"api-key"` for Azure) sends the key as it is.
   */
  apiKeyHeader?: string;
  /** Statuses that mean "this key is refused": the key leaves the rotation. Default `[401, 403]`. */
  removeOn?: readonly number[];
  /** Called when a key leaves the rotation (quota exhausted, or a status in `removeOn`). */
  onKeyRemoved?: (event: KeyRemovedEvent) => void;
}

/** One key's part of {@link KeyPoolStatistics}: its own fetch's counters, and whether it is in rotation. */
export interface PoolKeyStatistics extends LimitedFetchStatistics {
  /** The key's name. */
  name: string;
  /** Calls the pool sent to this key (a call moved to another key counts for both). */
  routed: number;
  /** Why it left the rotation, or `undefined` while it is in. */
  removedBecause: NonRetryableError | undefined;
}

/** Counters of a {@link KeyPoolFetch}: the sums over its keys, and each key's own. */
export interface KeyPoolStatistics extends LimitedFetchStatistics {
  /** Each key, in the order given. */
  keys: PoolKeyStatistics[];
}

/** What {@link keyPoolFetch} returns: a `fetch` over every key, with the pool's statistics. */
export interface KeyPoolFetch extends LimitedFetch {
  /** The pool's counters: `calls` counts each call once; the other counters are the keys' sums. */
  statistics(): KeyPoolStatistics;
}

/**
 * The server refused a key (a status in `removeOn`: 401, 403), which then left the pool's rotation.
 * The call that met it is sent with another key; only when no key is left does a caller see it, as a
 * reason in {@link NoKeysLeftError}.
 */
export class KeyRejectedError extends NonRetryableError {
  /** Always "KeyRejectedError": compare it where `instanceof` cannot (an error from another copy of sluice). */
  override readonly name = "KeyRejectedError";
}

/**
 * Every key of a pool has left the rotation: calls reject with this, naming why each key left.
 *
 * @example
 * ```ts
 * try { await fetchPooled(url, init); }
 * catch (error) {
 *   if (error instanceof NoKeysLeftError) for (const { key, reason } of error.reasons) console.error(key, reason.message);
 * }
 * ```
 */
export class NoKeysLeftError extends NonRetryableError {
  /** Always "NoKeysLeftError": compare it where `instanceof` cannot (an error from another copy of sluice). */
  override readonly name = "NoKeysLeftError";
  /** Each key, in the order given, and why it left. */
  readonly reasons: readonly KeyRemoval[];
  constructor(reasons: readonly KeyRemoval[]) {
    super(
      `no key left in the pool: ${reasons.map(({ key, reason }) => `${key}: ${reason.message}`).join("; ")}`,
      undefined,
      { cause: reasons[reasons.length - 1]?.reason },
    );
    this.reasons = reasons;
  }
}

/**
 * Marks the `init` a pool hands a key's fetch, so the key's wrapped `fetch` knows which call it sends.
 * `limitedFetch` passes `{ ...init, signal }` to the wrapped fetch, and a spread keeps symbol keys.
 */
const CALL = Symbol("sluice.keyPool.call");

/** One call's stay at one key: what it costs, until the key sends it. */
class Stay {
  sent = false;
  private waiting = true;
  constructor(
    readonly cost: Readonly<Record<string, number>>,
    private readonly key: PooledKey,
  ) {
    key.queue(cost, 1);
  }
  /** The key sent it (`sent`: its first attempt) or the call left the key: it waits in front of nobody now. */
  leave(sent = false): void {
    if (sent) this.sent = true;
    if (!this.waiting) return;
    this.waiting = false;
    this.key.queue(this.cost, -1);
  }
}

/** A key of the pool: its settings, its own limitedFetch, and what the pool knows of its queue. */
class PooledKey {
  /**
   * The cost of the calls routed here and not yet sent, per unit: what a new call would wait behind. A
   * running sum, so routing a burst of thousands costs O(keys) per call, not O(calls queued).
   */
  private readonly waitingCost: Record<string, number> = {};
  /** Calls of this pool at this key now, waiting or in flight. */
  active = 0;
  routed = 0;
  removedBecause: NonRetryableError | undefined = undefined;
  readonly fetch: LimitedFetch;

  constructor(
    readonly name: string,
    readonly limiter: Limiter & Routable,
    private readonly credentials: Readonly<Record<string, string>>,
    private readonly baseURL: URL | undefined,
    options: KeyPoolOptions,
  ) {
    const send = options.fetch;
    const { apiKeyHeader: _header, removeOn: _removeOn, onKeyRemoved: _onKeyRemoved, ...fetchOptions } = options;
    this.fetch = limitedFetch(limiter, {
      ...fetchOptions,
      // A quota error takes this key out of the pool; its queued calls move to other keys.
      stopOnQuotaExhausted: true,
      fetch: (input, init) => this.send(send ?? globalThis.fetch, input, init),
    });
  }

  /**
   * How long a call costing `cost` would wait here, behind the calls already routed here and not sent:
   * the limiter's own answer when it can give one (`readyIn`), else 0 (the load breaks the tie).
   */
  waitFor(cost: Readonly<Record<string, number>>): number {
    if (typeof this.limiter.readyIn !== "function") return 0;
    const total = { ...cost };
    for (const unit in this.waitingCost) {
      // Never below 0: a sum that went back and forth may be a hair off.
      total[unit] = (total[unit] ?? 0) + Math.max(0, this.waitingCost[unit] as number);
    }
    try {
      return this.limiter.readyIn(total);
    } catch {
      // A cost the limiter refuses: the acquire will say why, with the limiter's own error.
      return 0;
    }
  }

  /** Adds (`sign` 1) or takes away (-1) the cost of a call waiting here. */
  queue(cost: Readonly<Record<string, number>>, sign: 1 | -1): void {
    for (const unit in cost) this.waitingCost[unit] = (this.waitingCost[unit] ?? 0) + sign * (cost[unit] as number);
  }

  /** The wrapped fetch of this key's limitedFetch: the call is sent now, with this key's credentials. */
  private send(
    fetch: FetchFunction,
    input: string | URL | Request,
    init: (RequestInit & { [CALL]?: Stay }) | undefined,
  ): Promise<Response> {
    init?.[CALL]?.leave(true);
    const { [CALL]: _stay, ...rest } = init ?? {};
    const isRequest = input instanceof Request;
    const headers = new Headers(isRequest ? input.headers : undefined);
    if (rest.headers !== undefined) for (const [name, value] of new Headers(rest.headers)) headers.set(name, value);
    for (const [name, value] of Object.entries(this.credentials)) headers.set(name, value);
    let target: string | URL | Request = input;
    if (this.baseURL !== undefined) {
      const url = rebase(isRequest ? input.url : String(input), this.baseURL);
      target = isRequest ? new Request(url, input) : url;
    }
    return fetch(target, { ...rest, headers });
  }
}

/**
 * A `fetch` over several keys (credentials or endpoints), each with its own limiter: every request goes
 * to the key that can start it soonest, and a key the server says is spent or refused leaves the
 * rotation while the others carry on.
 *
 * Each key gets its own {@link limitedFetch} with `options`, so it learns its limits from its own
 * responses' headers, pauses on its own 429s and retries through its own limiter. A request goes to the
 * key whose limiter answers soonest for the request's estimated cost behind the calls already sent there
 * and not yet started (`RateLimiter.readyIn`); ties — and limiters that cannot tell, such as a
 * `RedisRateLimiter` — go to the key with the fewest calls of this pool at it, in turn.
 *
 * A key answering "quota exhausted" ({@link QuotaExhaustedError}) or a status in `removeOn` (401, 403)
 * leaves the rotation: `onKeyRemoved` hears it, and the call that met it, and the calls queued at that
 * key, are sent with the others (a request whose body is a stream cannot be sent twice: its call gets the
 * error, or the 401/403 response). When no key is left, calls reject with a {@link NoKeysLeftError}
 * naming why each key left.
 *
 * @throws TypeError/RangeError for no keys, a key without a credential (`apiKey` or `headers`), two keys
 *   with the same credential and endpoint, two keys sharing a limiter or a name, and bad options.
 *
 * @example
 * ```ts
 * import { RateLimiter } from "sluice";
 * import { keyPoolFetch } from "sluice/http";
 * const fetchPooled = keyPoolFetch(
 *   [
 *     { name: "team-a", apiKey: process.env.OPENAI_KEY_A, limiter: new RateLimiter({ concurrency: 8 }) },
 *     { name: "team-b", apiKey: process.env.OPENAI_KEY_B, limiter: new RateLimiter({ concurrency: 8 }) },
 *   ],
 *   { retry: { attempts: 6, nonIdempotent: true }, onKeyRemoved: (event) => console.warn(event.key, event.reason.message) },
 * );
 * const response = await fetchPooled("https://api.openai.com/v1/chat/completions", { method: "POST", body });
 * ```
 */
export function keyPoolFetch(keys: readonly PoolKey[], options: KeyPoolOptions = {}): KeyPoolFetch {
  return new KeyPool(keys, options).fetch;
}

class KeyPool {
  private readonly keys: PooledKey[];
  /** Where the tie-break starts next: ties go round the keys in turn. */
  private next = 0;
  private calls = 0;
  private stopped: { reason: unknown } | undefined = undefined;
  private readonly removeOn: ReadonlySet<number>;
  readonly fetch: KeyPoolFetch;

  constructor(
    keys: readonly PoolKey[],
    private readonly options: KeyPoolOptions,
  ) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`options must be an object; got ${describe(options)}`);
    }
    if (typeof options.concurrency === "object") {
      throw new TypeError(
        'concurrency: a key pool gives each key a window of its own; pass "backoff", "auto" or false, not one AdaptiveLimiter',
      );
    }
    if (options.onKeyRemoved !== undefined && typeof options.onKeyRemoved !== "function") {
      throw new TypeError(`options.onKeyRemoved must be a function; got ${describe(options.onKeyRemoved)}`);
    }
    const apiKeyHeader = options.apiKeyHeader ?? "authorization";
    if (typeof apiKeyHeader !== "string" || !/^[!#$%&'*+.^_`|~0-9a-z-]+$/i.test(apiKeyHeader)) {
      throw new TypeError(`options.apiKeyHeader must be a header name; got ${describe(options.apiKeyHeader)}`);
    }
    const removeOn = options.removeOn ?? [401, 403];
    if (!Array.isArray(removeOn) || !removeOn.every((status) => Number.isInteger(status))) {
      throw new TypeError(`options.removeOn must be an array of HTTP status codes; got ${describe(removeOn)}`);
    }
    this.removeOn = new Set(removeOn);
    this.keys = checkKeys(keys, apiKeyHeader.toLowerCase()).map(
      (key) => new PooledKey(key.name, key.limiter, key.credentials, key.baseURL, options),
    );
    const fetch = ((input: string | URL | Request, init?: RequestInit) => this.call(input, init)) as KeyPoolFetch;
    Object.defineProperties(fetch, {
      statistics: { value: () => this.statistics() },
      stop: { value: (reason?: unknown) => this.stop(reason) },
      stopReason: { get: () => this.stopped?.reason },
    });
    this.fetch = fetch;
  }

  private stop(reason: unknown = new Error("this keyPoolFetch was stopped")): void {
    if (this.stopped !== undefined) return;
    this.stopped = { reason };
    for (const key of this.keys) key.fetch.stop(reason);
  }

  private async call(input: string | URL | Request, init: RequestInit | undefined): Promise<Response> {
    this.calls++;
    if (this.stopped !== undefined) throw this.stopped.reason;
    const request = await describeRequest(input, init);
    // Routing needs the cost the keys' limiters will be charged; a bad estimate fails in limitedFetch.
    let cost: Record<string, number>;
    try {
      cost = normalizeCost((this.options.estimate ?? estimateLlmCost)(request));
    } catch {
      cost = normalizeCost(undefined);
    }
    // A stream body can be sent once: a call with one is not moved to another key once it was sent.
    const body = init?.body;
    const replayable =
      !(typeof ReadableStream !== "undefined" && body instanceof ReadableStream) &&
      !(typeof body === "object" && body !== null && Symbol.asyncIterator in body);
    for (;;) {
      const key = this.choose(cost);
      const stay = new Stay(cost, key);
      key.routed++;
      key.active++;
      let response: Response;
      try {
        response = await key.fetch(input, { ...init, [CALL]: stay } as RequestInit);
      } catch (error) {
        // Spent or refused, before or after sending: the server did not act on it, so another key may.
        // Calls in flight when the quota ran out each bring their own QuotaExhaustedError.
        if (error instanceof QuotaExhaustedError) this.remove(key, error);
        const moved =
          error instanceof QuotaExhaustedError || (key.removedBecause !== undefined && error === key.removedBecause);
        if (moved && (replayable || !stay.sent)) continue;
        throw error;
      } finally {
        stay.leave();
        key.active--;
      }
      if (!this.removeOn.has(response.status)) return response;
      // Read from a clone: a call that cannot move gets the response with its body unread.
      const failure = await failureOf(response.clone(), request.url);
      this.remove(key, new KeyRejectedError(`HTTP ${response.status}: the server refused the key`, failure));
      if (!replayable) return response;
      // Moving on: the refused body is not read, so let its connection go.
      response.body?.cancel().catch(() => {});
    }
  }

  /**
   * The key that can start a call soonest: the least wait behind what was routed there and not sent;
   * then the fewest calls at it; then the next in turn, so ties spread over every key.
   */
  private choose(cost: Record<string, number>): PooledKey {
    const count = this.keys.length;
    let best: PooledKey | undefined;
    let bestIndex = 0;
    let bestWait = Number.POSITIVE_INFINITY;
    for (let offset = 0; offset < count; offset++) {
      const index = (this.next + offset) % count;
      const key = this.keys[index] as PooledKey;
      if (key.removedBecause !== undefined) continue;
      const wait = key.waitFor(cost);
      if (best === undefined || wait < bestWait || (wait === bestWait && key.active < best.active)) {
        best = key;
        bestIndex = index;
        bestWait = wait;
      }
    }
    if (best === undefined) {
      throw new NoKeysLeftError(
        this.keys.map((key) => ({ key: key.name, reason: key.removedBecause as NonRetryableError })),
      );
    }
    this.next = (bestIndex + 1) % count;
    return best;
  }

  /** Takes `key` out of the rotation: its queued calls reject with `reason` and move to other keys. */
  private remove(key: PooledKey, reason: NonRetryableError): void {
    if (key.removedBecause !== undefined) return;
    key.removedBecause = reason;
    key.fetch.stop(reason);
    const keysLeft = this.keys.filter((other) => other.removedBecause === undefined).length;
    if (keyRemovedChannel.hasSubscribers) {
      const event: KeyRemovedDiagnosticsEvent = { key: key.name, reason, keysLeft, limiter: identityOf(key.limiter) };
      keyRemovedChannel.publish(event);
    }
    const listener = this.options.onKeyRemoved;
    if (listener === undefined) return;
    try {
      listener({ key: key.name, reason, keysLeft });
    } catch (error) {
      // A listener's bug must not fail the call that happened to meet the spent key; report it as an
      // uncaught error, as an event emitter would.
      queueMicrotask(() => {
        throw error;
      });
    }
  }

  private statistics(): KeyPoolStatistics {
    const keys = this.keys.map((key) => ({
      ...key.fetch.statistics(),
      name: key.name,
      routed: key.routed,
      removedBecause: key.removedBecause,
    }));
    const total: KeyPoolStatistics = {
      ...noFetchesYet(),
      calls: this.calls,
      stopped: this.stopped !== undefined,
      keys,
    };
    for (const key of keys) {
      total.attempts += key.attempts;
      total.retries += key.retries;
      total.rateLimited += key.rateLimited;
      total.networkErrors += key.networkErrors;
      total.pauses += key.pauses;
      for (const [status, count] of Object.entries(key.statuses)) {
        total.statuses[Number(status)] = (total.statuses[Number(status)] ?? 0) + count;
      }
      if (key.concurrency !== undefined && key.removedBecause === undefined) {
        total.concurrency = (total.concurrency ?? 0) + key.concurrency;
      }
    }
    return total;
  }
}

/** `url` sent to `base` instead: its origin replaced, `base`'s path put before its own. */
function rebase(url: string, base: URL): string {
  const original = new URL(url);
  const prefix = base.pathname.replace(/\/$/, "");
  return `${base.origin}${prefix}${original.pathname}${original.search}`;
}

/** What a refusal keeps of its response; the body is read (the response is not handed to anyone). */
async function failureOf(response: Response, url: string): Promise<FailedResponse> {
  const body = await response.text().catch(() => "");
  return { status: response.status, headers: response.headers, body, url: response.url || url };
}
