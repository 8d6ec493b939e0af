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
  | "bad-request";

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
  }
}
