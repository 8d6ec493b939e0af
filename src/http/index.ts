/**
 * `sluice/http`: a `fetch` that never gets blocked. Wrap any fetch-compatible function with a
 * `Limiter` (a `RateLimiter` for API rate limits) and every request waits its turn, the server's
 * rate-limit headers and 429s pace everyone sharing the limiter, and failed attempts are retried
 * through the limiter with backoff.
 *
 * @packageDocumentation
 * @module sluice/http
 */
export type { Cost, RequestDescription } from "./cost.js";
export {
  CHAT_OVERHEAD,
  chatTokens,
  costFromEventStream,
  costFromUsage,
  estimateLlmCost,
  promptText,
} from "./cost.js";
export type { FailedResponse } from "./errors.js";
export { NonRetryableError, QuotaExhaustedError, RequestTooLargeError } from "./errors.js";
export type {
  KeyPoolFetch,
  KeyPoolOptions,
  KeyPoolStatistics,
  KeyRemoval,
  KeyRemovedDiagnosticsEvent,
  KeyRemovedEvent,
  PoolKey,
  PoolKeyStatistics,
} from "./key-pool.js";
export { KeyRejectedError, keyPoolFetch, NoKeysLeftError } from "./key-pool.js";
export type {
  FetchFunction,
  LimitedFetch,
  LimitedFetchOptions,
  LimitedFetchStatistics,
  RetryEvent,
  RetryOptions,
} from "./limited-fetch.js";
export { limitedFetch } from "./limited-fetch.js";
