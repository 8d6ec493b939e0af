/**
 * What a request costs: estimated before it is sent (from its body) and known after (from the
 * response's `usage`), in the units a `RateLimiter` counts — `requests`, `tokens` (input and output
 * together), and `input-tokens` / `output-tokens` apart, the unit names of Anthropic's headers.
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
  /**
   * The request's input tokens as the `countTokens` option of `limitedFetch` counted them (with
   * {@link chatTokens}: a tokenizer's count of {@link promptText} plus {@link CHAT_OVERHEAD} per message
   * and 3), or `undefined` when no hook was given: {@link estimateLlmCost} then counts characters / 4.
   */
  readonly inputTokens?: number | undefined;
}

/** The names LLM APIs use for "at most this many output tokens". */
const OUTPUT_CAP_FIELDS = ["max_tokens", "max_completion_tokens", "max_output_tokens"] as const;

/** The units of input and output tokens apart: the names of Anthropic's headers, which `observe()` matches. */
const INPUT = "input-tokens";
const OUTPUT = "output-tokens";

/**
 * Tokens a chat API adds per message around its text (role and separators), for the tokenizer count of
 * {@link promptText}: OpenAI's documented count is 3 per message, 1 for the role, and 3 to prime the reply.
 */
export const CHAT_OVERHEAD = 4;

/**
 * The text of a request's prompt, as a tokenizer should see it: the `system` prompt and every message's
 * text (a string `content`, or the `text` of its content blocks), OpenAI's `instructions` and `input`
 * (Responses), `prompt` (completions) — joined by newlines — or `undefined` when the body has none of
 * them (then the whole body is counted). Images, tool schemas and other non-text parts are left out.
 *
 * @example
 * ```ts
 * import { promptText } from "sluice/http";
 * promptText({ system: "Be brief.", messages: [{ role: "user", content: "Hi" }] }); // "Be brief.\nHi"
 * ```
 */
export function promptText(json: unknown): string | undefined {
  if (typeof json !== "object" || json === null || Array.isArray(json)) return undefined;
  const fields = json as Record<string, unknown>;
  const parts: string[] = [];
  let found = false;
  for (const name of ["system", "instructions", "prompt", "input", "messages"] as const) {
    const value = fields[name];
    if (value === undefined) continue;
    found = true;
    collectText(Array.isArray(value) ? value : [value], parts);
  }
  return found ? parts.join("\n") : undefined;
}

/** Appends the text of `items` (strings, content blocks, messages with a `content`) to `parts`. */
function collectText(items: unknown, parts: string[]): void {
  if (typeof items === "string") {
    parts.push(items);
    return;
  }
  if (!Array.isArray(items)) return;
  for (const item of items) {
    if (typeof item === "string") parts.push(item);
    else if (typeof item === "object" && item !== null) {
      const block = item as Record<string, unknown>;
      if (typeof block["text"] === "string") parts.push(block["text"]);
      else if (block["content"] !== undefined) collectText(block["content"], parts);
    }
  }
}

/** How many messages a chat body holds (each costs {@link CHAT_OVERHEAD} tokens besides its text). */
function messageCount(json: unknown): number {
  if (typeof json !== "object" || json === null) return 0;
  const fields = json as Record<string, unknown>;
  const messages = Array.isArray(fields["messages"]) ? fields["messages"] : fields["input"];
  return (Array.isArray(messages) ? messages.length : 0) + (fields["system"] === undefined ? 0 : 1);
}

/** The output cap a request asks for (`max_tokens`, `max_completion_tokens`, `max_output_tokens`), or 0. */
function outputCap(json: unknown): number {
  if (typeof json !== "object" || json === null) return 0;
  const fields = json as Record<string, unknown>;
  for (const name of OUTPUT_CAP_FIELDS) {
    const value = fields[name];
    if (typeof value === "number" && Number.isFinite(value) && value > 0) return value;
  }
  return 0;
}

/**
 * A `countTokens` hook for `limitedFetch` from a tokenizer: `tokenize` (sync or async) counts the
 * prompt's text ({@link promptText}, or the whole body when it has no prompt fields), and the chat's
 * overhead is added: {@link CHAT_OVERHEAD} per message and 3 to prime the reply, as OpenAI counts a chat.
 *
 * @example
 * ```ts
 * import { getEncoding } from "js-tiktoken";
 * import { chatTokens, limitedFetch } from "sluice/http";
 * const o200k = getEncoding("o200k_base");
 * const fetch = limitedFetch(limiter, { countTokens: chatTokens((text) => o200k.encode(text, [], []).length) });
 * ```
 */
export function chatTokens(
  tokenize: (text: string) => number | PromiseLike<number>,
): (request: RequestDescription) => Promise<number> {
  if (typeof tokenize !== "function") {
    throw new TypeError(`chatTokens needs a function from text to its number of tokens; got ${typeof tokenize}`);
  }
  return async (request) => {
    const count = await tokenize(promptText(request.json) ?? request.body ?? "");
    const messages = messageCount(request.json);
    // A count that is not a number stays as it is, for limitedFetch to refuse by name.
    return typeof count === "number" && messages > 0 ? count + messages * CHAT_OVERHEAD + 3 : count;
  };
}

/**
 * The default estimate: one request, and — when there is a body — its input tokens plus the output cap
 * it asks for (`max_tokens`, `max_completion_tokens` or `max_output_tokens`), in `tokens` together and in
 * `input-tokens` / `output-tokens` apart (for a limiter with separate input and output limits, such as
 * Anthropic's ITPM and OTPM). The input is what `countTokens` counted ({@link RequestDescription.inputTokens})
 * or else the body's characters / 4, rounded up: the usual rule of thumb for English text and JSON,
 * far under for CJK text (see docs/http.md, "Token counting"). The estimate is corrected by the response's
 * `usage` (see {@link costFromUsage}), unit by unit.
 *
 * @example
 * ```ts
 * import { estimateLlmCost } from "sluice/http";
 * const body = JSON.stringify({ model: "gpt-4o-mini", max_tokens: 100, messages: [] });
 * estimateLlmCost({ url: "", method: "POST", headers: new Headers(), body, json: JSON.parse(body) });
 * // { requests: 1, tokens: Math.ceil(body.length / 4) + 100,
 * //   "input-tokens": Math.ceil(body.length / 4), "output-tokens": 100 }
 * ```
 */
export function estimateLlmCost(request: RequestDescription): Cost {
  if (request.body === undefined || request.body === "") return 1;
  const output = outputCap(request.json);
  const input = request.inputTokens ?? Math.ceil(request.body.length / 4);
  return { requests: 1, tokens: input + output, [INPUT]: input, [OUTPUT]: output };
}

/**
 * The actual cost of a call, from the `usage` an LLM API returns in its JSON body, in `tokens` and, when
 * the body tells them apart, `input-tokens` and `output-tokens`: OpenAI chat (`prompt_tokens`,
 * `completion_tokens`, `total_tokens`) and Responses (`input_tokens`, `output_tokens`), Anthropic
 * (`input_tokens + cache_creation_input_tokens` as input — cache writes count towards its input limit,
 * cache reads (`cache_read_input_tokens`) do not — and `output_tokens`) and Gemini (`usageMetadata`).
 * Returns `undefined` when the body reports no usage.
 *
 * @example
 * ```ts
 * import { costFromUsage } from "sluice/http";
 * costFromUsage({ usage: { prompt_tokens: 12, completion_tokens: 30, total_tokens: 42 } });
 * // { requests: 1, tokens: 42, "input-tokens": 12, "output-tokens": 30 }
 * ```
 */
export function costFromUsage(json: unknown): Cost | undefined {
  if (typeof json !== "object" || json === null) return undefined;
  const body = json as Record<string, unknown>;
  const gemini = body["usageMetadata"] as Record<string, unknown> | undefined;
  if (typeof gemini === "object" && gemini !== null && isCount(gemini["totalTokenCount"])) {
    const cost: Record<string, number> = { requests: 1, tokens: gemini["totalTokenCount"] };
    if (isCount(gemini["promptTokenCount"])) cost[INPUT] = gemini["promptTokenCount"];
    if (isCount(gemini["candidatesTokenCount"])) {
      cost[OUTPUT] =
        gemini["candidatesTokenCount"] + (isCount(gemini["thoughtsTokenCount"]) ? gemini["thoughtsTokenCount"] : 0);
    }
    return cost;
  }
  const usage = body["usage"];
  if (typeof usage !== "object" || usage === null) return undefined;
  const fields = usage as Record<string, unknown>;
  const count = (name: string) => (isCount(fields[name]) ? fields[name] : 0);
  let input: number | undefined;
  let output: number | undefined;
  if (isCount(fields["prompt_tokens"]) || isCount(fields["completion_tokens"])) {
    input = count("prompt_tokens");
    output = count("completion_tokens");
  } else if (isCount(fields["input_tokens"]) || isCount(fields["output_tokens"])) {
    input = count("input_tokens") + count("cache_creation_input_tokens");
    output = count("output_tokens");
  }
  const total = isCount(fields["total_tokens"]) ? fields["total_tokens"] : undefined;
  if (input === undefined || output === undefined) {
    return total === undefined ? undefined : { requests: 1, tokens: total };
  }
  return { requests: 1, tokens: total ?? input + output, [INPUT]: input, [OUTPUT]: output };
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
  /** Anthropic: the usage of `message_start` (input, cache writes counted), the output of the last `message_delta`. */
  let anthropic: Record<string, number> | undefined;
  let anthropicOutput: number | undefined;
  for (const line of text.split("\n")) {
    if (!line.startsWith("data:")) continue;
    const event = parseJson(line.slice(5).trim());
    if (typeof event !== "object" || event === null) continue;
    const fields = event as Record<string, unknown>;
    if (fields["type"] === "message_start") {
      anthropic = costFromUsage(fields["message"]) as Record<string, number> | undefined;
    } else if (fields["type"] === "message_delta") {
      const output = (fields["usage"] as Record<string, unknown> | undefined)?.["output_tokens"];
      if (isCount(output)) anthropicOutput = output;
    } else {
      // OpenAI's Responses API reports it in its last event, `response.completed`, on the response.
      found = costFromUsage(event) ?? costFromUsage(fields["response"]) ?? found;
    }
  }
  if (found !== undefined || (anthropic === undefined && anthropicOutput === undefined)) return found;
  const input = anthropic?.[INPUT];
  const output = anthropicOutput ?? anthropic?.[OUTPUT];
  const cost: Record<string, number> = { requests: 1, tokens: (input ?? 0) + (output ?? 0) };
  if (input !== undefined) cost[INPUT] = input;
  if (output !== undefined) cost[OUTPUT] = output;
  return cost;
}

/** Text as JSON, or `undefined` when it is not JSON (an event's `[DONE]`, an empty line, an HTML error page). */
export function parseJson(data: string): unknown {
  try {
    return JSON.parse(data);
  } catch {
    return undefined;
  }
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value) && value >= 0;
}

/** The cost in one unit: a plain number counts `requests`; a unit left out costs 0 (`requests`: 1). */
export function costIn(cost: Cost, unit: string): number {
  if (typeof cost === "number") return unit === "requests" ? cost : 0;
  return cost[unit] ?? (unit === "requests" ? 1 : 0);
}
