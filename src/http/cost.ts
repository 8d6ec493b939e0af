/**
 * What a request costs: estimated before it is sent (from its body) and known after (from the
 * response's `usage`), in the units a `RateLimiter` counts — `requests` and `tokens`.
 */

/** A cost as `RateLimiter` takes it: a number of requests, or an amount per unit. */
export type Cost = number | Record<string, number>;

/** What an estimator sees of a request. The body is given as text when it can be read as text. */
export interface RequestDescription {
  /** The URL as the caller gave it (a `Request`'s URL, or the string or `URL` passed to fetch). */
  readonly url: string;
  /** Upper-case method: `"GET"`, `"POST"`, ... */
  readonly method: string;
  /** The request's headers, with those of `init` over those of a `Request`. */
  readonly headers: Headers;
  /** The body as text, or `undefined` when there is none or it is a stream or binary blob. */
  readonly body: string | undefined;
  /** The body parsed as JSON when it is JSON, else `undefined`. */
  readonly json: unknown;
}

/** The names LLM APIs use for "at most this many output tokens". */
const OUTPUT_CAP_FIELDS = ["max_tokens", "max_completion_tokens", "max_output_tokens"] as const;

/**
 * The default estimate: one request, and — when there is a body — its characters / 4 (rounded up) as
 * input tokens plus the output cap it asks for (`max_tokens`, `max_completion_tokens` or
 * `max_output_tokens`). Four characters per token is the usual rule of thumb for English text and JSON;
 * the estimate is corrected by the response's `usage` (see {@link costFromUsage}).
 *
 * @example
 * ```ts
 * import { estimateLlmCost } from "sluice/http";
 * const body = JSON.stringify({ model: "gpt-4o-mini", max_tokens: 100, messages: [] });
 * estimateLlmCost({ url: "", method: "POST", headers: new Headers(), body, json: JSON.parse(body) });
 * // { requests: 1, tokens: Math.ceil(body.length / 4) + 100 }
 * ```
 */
export function estimateLlmCost(request: RequestDescription): Cost {
  if (request.body === undefined || request.body === "") return 1;
  let output = 0;
  if (typeof request.json === "object" && request.json !== null) {
    const fields = request.json as Record<string, unknown>;
    for (const name of OUTPUT_CAP_FIELDS) {
      const value = fields[name];
      if (typeof value === "number" && Number.isFinite(value) && value > 0) {
        output = value;
        break;
      }
    }
  }
  return { requests: 1, tokens: Math.ceil(request.body.length / 4) + output };
}

/**
 * The actual cost of a call, from the `usage` an LLM API returns in its JSON body: OpenAI
 * (`usage.total_tokens`, or `prompt_tokens + completion_tokens`), Anthropic (`input_tokens +
 * output_tokens`, plus `cache_creation_input_tokens`, which count towards its input limit) and Gemini
 * (`usageMetadata.totalTokenCount`). Returns `undefined` when the body reports no usage.
 *
 * @example
 * ```ts
 * import { costFromUsage } from "sluice/http";
 * costFromUsage({ usage: { prompt_tokens: 12, completion_tokens: 30, total_tokens: 42 } });
 * // { requests: 1, tokens: 42 }
 * ```
 */
export function costFromUsage(json: unknown): Cost | undefined {
  if (typeof json !== "object" || json === null) return undefined;
  const body = json as Record<string, unknown>;
  const gemini = body["usageMetadata"] as Record<string, unknown> | undefined;
  if (typeof gemini === "object" && gemini !== null && isCount(gemini["totalTokenCount"])) {
    return { requests: 1, tokens: gemini["totalTokenCount"] };
  }
  const usage = body["usage"];
  if (typeof usage !== "object" || usage === null) return undefined;
  const fields = usage as Record<string, unknown>;
  if (isCount(fields["total_tokens"])) return { requests: 1, tokens: fields["total_tokens"] };
  const sum = (names: string[]) => names.reduce((total, name) => total + (isCount(fields[name]) ? fields[name] : 0), 0);
  if (isCount(fields["prompt_tokens"]) || isCount(fields["completion_tokens"])) {
    return { requests: 1, tokens: sum(["prompt_tokens", "completion_tokens"]) };
  }
  if (isCount(fields["input_tokens"]) || isCount(fields["output_tokens"])) {
    return { requests: 1, tokens: sum(["input_tokens", "cache_creation_input_tokens", "output_tokens"]) };
  }
  return undefined;
}

/**
 * The actual cost of a streamed call, from its server-sent events: OpenAI's final chunk carries `usage`
 * when the request set `stream_options: { include_usage: true }`, and its Responses API's
 * `response.completed` event carries the response with its `usage`; Anthropic's `message_start` carries
 * the input tokens and its last `message_delta` the output tokens. Returns `undefined` when the stream
 * reports no usage.
 *
 * @example
 * ```ts
 * import { costFromEventStream } from "sluice/http";
 * costFromEventStream('data: {"choices":[],"usage":{"total_tokens":42}}\n\ndata: [DONE]\n\n');
 * // { requests: 1, tokens: 42 }
 * ```
 */
export function costFromEventStream(text: string): Cost | undefined {
  let found: Cost | undefined;
  let anthropicInput: number | undefined;
  let anthropicOutput: number | undefined;
  for (const line of text.split("\n")) {
    if (!line.startsWith("data:")) continue;
    const data = line.slice(5).trim();
    if (data === "" || data === "[DONE]") continue;
    let event: unknown;
    try {
      event = JSON.parse(data);
    } catch {
      continue;
    }
    if (typeof event !== "object" || event === null) continue;
    const fields = event as Record<string, unknown>;
    if (fields["type"] === "message_start") {
      const usage = (fields["message"] as { usage?: Record<string, unknown> } | undefined)?.usage;
      if (usage !== undefined) {
        anthropicInput =
          (isCount(usage["input_tokens"]) ? usage["input_tokens"] : 0) +
          (isCount(usage["cache_creation_input_tokens"]) ? usage["cache_creation_input_tokens"] : 0);
        if (isCount(usage["output_tokens"])) anthropicOutput = usage["output_tokens"];
      }
      continue;
    }
    if (fields["type"] === "message_delta") {
      const usage = fields["usage"] as Record<string, unknown> | undefined;
      if (usage !== undefined && isCount(usage["output_tokens"])) anthropicOutput = usage["output_tokens"];
      continue;
    }
    // OpenAI's Responses API reports it in its last event, `response.completed`, on the response.
    found = costFromUsage(event) ?? costFromUsage(fields["response"]) ?? found;
  }
  if (found !== undefined) return found;
  if (anthropicInput !== undefined || anthropicOutput !== undefined) {
    return { requests: 1, tokens: (anthropicInput ?? 0) + (anthropicOutput ?? 0) };
  }
  return undefined;
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value) && value >= 0;
}

/** The cost in one unit: a plain number counts `requests`; a unit left out costs 0 (`requests`: 1). */
export function costIn(cost: Cost, unit: string): number {
  if (typeof cost === "number") return unit === "requests" ? cost : 0;
  return cost[unit] ?? (unit === "requests" ? 1 : 0);
}
