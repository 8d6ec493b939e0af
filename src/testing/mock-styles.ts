/**
 * How the mock server speaks: the rate-limit headers and error bodies of OpenAI and Anthropic, so that
 * clients (sluice/http, the official SDKs) meet the same shapes they meet in production.
 *
 * OpenAI: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, where `reset` is a Go duration
 * (`"6m0s"`, `"17.491s"`, `"20ms"`) until the bucket is full again, plus `retry-after` (seconds) and
 * `retry-after-ms` on 429s; errors are `{ error: { message, type, param, code } }`.
 * Anthropic: `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`, where `reset` is the
 * RFC 3339 instant the bucket is full again, plus `retry-after` (seconds) on 429s; errors are
 * `{ type: "error", error: { type, message } }`.
 */

/** Which provider's headers and bodies the mock server imitates. */
export type MockProviderStyle = "openai" | "anthropic";

/** The state of one server-side limit when a response leaves, as the headers report it. */
export interface LimitReport {
  limit: number;
  remaining: number;
  /** Milliseconds until the bucket is full again. */
  resetMs: number;
}

/** Everything the server failed for, each mapped to its provider-specific status and body. */
export type ErrorKind =
  | "rate-limited"
  | "concurrency-limited"
  | "too-large"
  | "quota"
  | "server-error"
  | "overloaded"
  | "bad-request"
  | "unauthorized";

/**
 * Formats milliseconds the way Go's `time.Duration.String()` does, which is what OpenAI's
 * `x-ratelimit-reset-*` headers carry: `"6m0s"`, `"1.5s"`, `"20ms"`, `"0s"`.
 *
 * @example
 * ```ts
 * import { formatGoDuration } from "sluice/testing";
 * formatGoDuration(360_000); // "6m0s"
 * formatGoDuration(17_491); // "17.491s"
 * ```
 */
export function formatGoDuration(ms: number): string {
  if (!(ms > 0)) return "0s";
  if (ms < 1) return `${trimDecimals(ms * 1000, 3)}µs`;
  if (ms < 1000) return `${trimDecimals(ms, 3)}ms`;
  // Round to whole milliseconds first so that 59_999.9 ms prints as "1m0s", not "60s".
  const total = Math.round(ms);
  const hours = Math.floor(total / 3_600_000);
  const minutes = Math.floor((total % 3_600_000) / 60_000);
  const seconds = (total % 60_000) / 1000;
  let text = "";
  if (hours > 0) text += `${hours}h`;
  if (hours > 0 || minutes > 0) text += `${minutes}m`;
  return `${text}${trimDecimals(seconds, 3)}s`;
}

function trimDecimals(value: number, digits: number): string {
  return String(Number(value.toFixed(digits)));
}

/**
 * The rate-limit headers a response carries, in the style's own names and formats: `requests` and
 * `tokens`, plus the units of `more` (`input-tokens`, `output-tokens`: Anthropic's ITPM and OTPM).
 */
export function rateLimitHeaders(
  style: MockProviderStyle,
  requests: LimitReport | undefined,
  tokens: LimitReport | undefined,
  wallNow: number,
  more: Readonly<Record<string, LimitReport | undefined>> = {},
): Record<string, string> {
  const headers: Record<string, string> = {};
  const entries: [string, LimitReport | undefined][] = [
    ["requests", requests],
    ["tokens", tokens],
    ...Object.entries(more),
  ];
  for (const [unit, report] of entries) {
    if (report === undefined) continue;
    const remaining = String(Math.max(0, Math.floor(report.remaining)));
    if (style === "openai") {
      headers[`x-ratelimit-limit-${unit}`] = String(report.limit);
      headers[`x-ratelimit-remaining-${unit}`] = remaining;
      headers[`x-ratelimit-reset-${unit}`] = formatGoDuration(report.resetMs);
    } else {
      headers[`anthropic-ratelimit-${unit}-limit`] = String(report.limit);
      headers[`anthropic-ratelimit-${unit}-remaining`] = remaining;
      headers[`anthropic-ratelimit-${unit}-reset`] = new Date(wallNow + Math.ceil(report.resetMs)).toISOString();
    }
  }
  return headers;
}

/**
 * The `retry-after` headers of a 429/503/529. `retry-after` is whole seconds, rounded up, because that
 * is all the HTTP header allows; OpenAI adds `retry-after-ms` for precision, Anthropic does not.
 */
export function retryAfterHeaders(style: MockProviderStyle, ms: number): Record<string, string> {
  const headers: Record<string, string> = { "retry-after": String(Math.max(1, Math.ceil(ms / 1000))) };
  if (style === "openai") headers["retry-after-ms"] = String(Math.max(1, Math.ceil(ms)));
  return headers;
}

/** The HTTP status and JSON body of a failure, as the provider would send it. */
export function errorResponse(
  style: MockProviderStyle,
  kind: ErrorKind,
  message: string,
  unit: "requests" | "tokens" | "input-tokens" | "output-tokens" = "requests",
): { status: number; body: unknown } {
  if (style === "openai") {
    const openai = (status: number, type: string, code: string | null) => ({
      status,
      body: { error: { message, type, param: null, code } },
    });
    switch (kind) {
      case "rate-limited":
      case "concurrency-limited":
        return openai(429, unit, "rate_limit_exceeded");
      case "too-large":
        // OpenAI answers an over-sized request with an ordinary-looking 429 whose body says so; clients
        // tell it apart by comparing the request with x-ratelimit-limit-tokens, not by the message.
        return openai(429, "tokens", "rate_limit_exceeded");
      case "quota":
        return openai(429, "insufficient_quota", "insufficient_quota");
      case "server-error":
        return openai(500, "server_error", null);
      case "overloaded":
        return openai(503, "server_error", "overloaded");
      case "bad-request":
        return openai(400, "invalid_request_error", null);
      case "unauthorized":
        return openai(401, "invalid_request_error", "invalid_api_key");
    }
  }
  const anthropic = (status: number, type: string) => ({ status, body: { type: "error", error: { type, message } } });
  switch (kind) {
    case "rate-limited":
    case "concurrency-limited":
      return anthropic(429, "rate_limit_error");
    case "too-large":
      return anthropic(413, "request_too_large");
    case "quota":
      return anthropic(402, "billing_error");
    case "server-error":
      return anthropic(500, "api_error");
    case "overloaded":
      return anthropic(529, "overloaded_error");
    case "bad-request":
      return anthropic(400, "invalid_request_error");
    case "unauthorized":
      return anthropic(401, "authentication_error");
  }
}

/** The completion APIs the mock answers: OpenAI's Chat Completions and Responses, Anthropic's Messages. */
export type CompletionApi = "chat" | "responses" | "messages";

/** What a completion reports, for {@link streamFrames} and {@link responseObject}. */
export interface StreamedCompletion {
  /** The completion's id (`chatcmpl-…`, `resp_…`, `msg_…`). */
  id: string;
  /** The model the request named. */
  model: string;
  /** Prompt tokens. */
  input: number;
  /** Completion tokens produced. */
  output: number;
  /** OpenAI chat: whether the request asked for a final usage chunk (`stream_options.include_usage`). */
  includeUsage: boolean;
}

/** A Responses API `response` object with one message of `text`, as `POST /v1/responses` returns it. */
export function responseObject(completion: StreamedCompletion, text: string, status = "completed"): object {
  const done = status === "completed";
  return {
    id: completion.id,
    object: "response",
    created_at: Math.floor(Date.now() / 1000),
    status,
    model: completion.model,
    output: done
      ? [
          {
            type: "message",
            id: `msg_${completion.id}`,
            status: "completed",
            role: "assistant",
            content: [{ type: "output_text", text, annotations: [] }],
          },
        ]
      : [],
    usage: done
      ? {
          input_tokens: completion.input,
          input_tokens_details: { cached_tokens: 0 },
          output_tokens: completion.output,
          output_tokens_details: { reasoning_tokens: 0 },
          total_tokens: completion.input + completion.output,
        }
      : null,
  };
}

/**
 * The server-sent events of a streamed completion of `text`, in the shapes the providers' SDKs parse: the
 * frames before the text, one frame per piece of it, and the frames after it.
 *
 * Chat (OpenAI): `chat.completion.chunk`s as bare `data:` lines — a first chunk with the role, one per
 * piece, one with `finish_reason`, a last one with `usage` (and no choices) when the request set
 * `stream_options.include_usage`, then `data: [DONE]`.
 * Responses (OpenAI): named events with a `sequence_number` — `response.created`,
 * `response.output_item.added`, `response.content_part.added`, one `response.output_text.delta` per
 * piece, `response.output_text.done`, `response.content_part.done`, `response.output_item.done`, and
 * `response.completed` with the whole response and its usage.
 * Messages (Anthropic): named events — `message_start` (the message with the input tokens),
 * `content_block_start`, a `ping`, one `content_block_delta` (`text_delta`) per piece,
 * `content_block_stop`, `message_delta` (the stop reason and the output tokens), `message_stop`.
 */
export function streamFrames(
  api: CompletionApi,
  completion: StreamedCompletion,
  text: string,
): { start: string[]; piece(text: string): string; end: string[] } {
  if (api === "chat") {
    const base = {
      id: completion.id,
      object: "chat.completion.chunk",
      created: Math.floor(Date.now() / 1000),
      model: completion.model,
    };
    const chunk = (data: unknown) => `data: ${JSON.stringify(data)}\n\n`;
    const end = [chunk({ ...base, choices: [{ index: 0, delta: {}, finish_reason: "stop" }] })];
    if (completion.includeUsage) {
      const { input, output } = completion;
      end.push(
        chunk({
          ...base,
          choices: [],
          usage: { prompt_tokens: input, completion_tokens: output, total_tokens: input + output },
        }),
      );
    }
    end.push("data: [DONE]\n\n");
    return {
      start: [
        chunk({ ...base, choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }] }),
      ],
      piece: (content) => chunk({ ...base, choices: [{ index: 0, delta: { content }, finish_reason: null }] }),
      end,
    };
  }
  if (api === "responses") {
    let sequence = 0;
    const event = (type: string, data: Record<string, unknown>) =>
      `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: sequence++, ...data })}\n\n`;
    const item = { type: "message", id: `msg_${completion.id}`, role: "assistant" };
    const part = { type: "output_text", text, annotations: [] };
    const at = { item_id: item.id, output_index: 0, content_index: 0 };
    return {
      start: [
        event("response.created", { response: responseObject(completion, "", "in_progress") }),
        event("response.output_item.added", { output_index: 0, item: { ...item, status: "in_progress", content: [] } }),
        event("response.content_part.added", { ...at, part: { ...part, text: "" } }),
      ],
      piece: (delta) => event("response.output_text.delta", { ...at, delta, logprobs: [] }),
      end: [
        event("response.output_text.done", { ...at, text, logprobs: [] }),
        event("response.content_part.done", { ...at, part }),
        event("response.output_item.done", {
          output_index: 0,
          item: { ...item, status: "completed", content: [part] },
        }),
        event("response.completed", { response: responseObject(completion, text) }),
      ],
    };
  }
  const event = (type: string, data: Record<string, unknown>) =>
    `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
  return {
    start: [
      event("message_start", {
        message: {
          id: completion.id,
          type: "message",
          role: "assistant",
          content: [],
          model: completion.model,
          stop_reason: null,
          stop_sequence: null,
          // As the API does: the input in full, the output counted so far (the first token).
          usage: { input_tokens: completion.input, output_tokens: Math.min(1, completion.output) },
        },
      }),
      event("content_block_start", { index: 0, content_block: { type: "text", text: "" } }),
      event("ping", {}),
    ],
    piece: (delta) => event("content_block_delta", { index: 0, delta: { type: "text_delta", text: delta } }),
    end: [
      event("content_block_stop", { index: 0 }),
      event("message_delta", {
        delta: { stop_reason: "end_turn", stop_sequence: null },
        usage: { output_tokens: completion.output },
      }),
      event("message_stop", {}),
    ],
  };
}
