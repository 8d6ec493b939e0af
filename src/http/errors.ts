/**
 * The errors `limitedFetch` raises when retrying cannot help. Each carries the response that proved it
 * (status, headers and the body text, already read) so the caller can log what the server said.
 */

/** What a non-retryable failure keeps of the response that caused it. */
export interface FailedResponse {
  /** The HTTP status (429, 402, 413, ...). */
  readonly status: number;
  /** The response headers, for the rate-limit and request-id headers a support ticket needs. */
  readonly headers: Headers;
  /** The response body as text (error bodies are small; it was read to classify the failure). */
  readonly body: string;
  /** The URL of the request that failed. */
  readonly url: string;
}

/**
 * The server refused in a way that retrying cannot fix. Subclasses say why; catch this class to handle
 * them all.
 *
 * @example
 * ```ts
 * try { await fetchLimited(url, init); }
 * catch (error) {
 *   if (error instanceof NonRetryableError) console.error(error.message, error.response?.body);
 *   else throw error;
 * }
 * ```
 */
export class NonRetryableError extends Error {
  /** Always "NonRetryableError": compare it where `instanceof` cannot (an error from another copy of sluice). */
  override readonly name: string = "NonRetryableError";
  /** The response that proved it, when a response did (not when sluice refused before sending). */
  readonly response: FailedResponse | undefined;
  constructor(message: string, response?: FailedResponse, options?: { cause?: unknown }) {
    super(message, options);
    this.response = response;
  }
}

/**
 * The account's quota or credit is exhausted (OpenAI 429 `insufficient_quota`, Anthropic 402
 * `billing_error`): no amount of waiting helps, so `limitedFetch` stops — requests waiting in its
 * queue and every later call fail with this error too (see `LimitedFetchOptions.stopOnQuotaExhausted`).
 *
 * @example
 * ```ts
 * try { await fetchLimited(url, init); }
 * catch (error) { if (error instanceof QuotaExhaustedError) console.error("top up the account:", error.message); }
 * ```
 */
export class QuotaExhaustedError extends NonRetryableError {
  /** Always "QuotaExhaustedError": compare it where `instanceof` cannot (an error from another copy of sluice). */
  override readonly name = "QuotaExhaustedError";
}

/**
 * One request costs more than the limit allows in a whole window (more tokens than the tokens-per-minute
 * limit), so it can never be admitted. Raised before sending when the local limiter already knows
 * (its `RangeError` is the `cause`), or from the server's answer: a 429 whose request needs more than
 * `x-ratelimit-limit-tokens`, or a 413. Only the one call fails; the queue goes on.
 *
 * @example
 * ```ts
 * const reply = await fetchLimited(url, init).catch((error) => {
 *   if (error instanceof RequestTooLargeError) return summarizeFirst(); // shrink the prompt instead
 *   throw error;
 * });
 * ```
 */
export class RequestTooLargeError extends NonRetryableError {
  /** Always "RequestTooLargeError": compare it where `instanceof` cannot (an error from another copy of sluice). */
  override readonly name = "RequestTooLargeError";
}
