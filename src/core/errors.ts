/**
 * The errors sluice raises. Each is a class with a stable `name`, created fresh for every failure
 * (never a shared singleton, so stack traces point at the caller that failed).
 */

/**
 * A wait ran out of time (`timeout` option).
 *
 * @example
 * ```ts
 * try { await semaphore.acquire({ timeout: 100 }); }
 * catch (error) { if (error instanceof TimeoutError) console.log("busy, try later"); }
 * ```
 */
export class TimeoutError extends Error {
  override readonly name = "TimeoutError";
  /** The timeout that elapsed, in milliseconds. */
  readonly timeout: number;
  constructor(timeout: number, message = `timed out after ${timeout} ms`) {
    super(message);
    this.timeout = timeout;
  }
}

/**
 * A permit, lease or lock was released a second time. Like Python's `BoundedSemaphore`, sluice treats
 * this as a bug in the caller rather than silently adding capacity.
 */
export class ReleasedError extends Error {
  override readonly name = "ReleasedError";
  constructor(message = "this permit was already released") {
    super(message);
  }
}

/** The primitive was closed or drained: a channel after `close()`, a pool after `drain()`. */
export class ClosedError extends Error {
  override readonly name = "ClosedError";
  constructor(message = "closed") {
    super(message);
  }
}

/**
 * A distributed permit's lease ended before it was released (the holder could not renew it in time),
 * so other holders may now be inside: stop the work the permit protected.
 */
export class LeaseLostError extends Error {
  override readonly name = "LeaseLostError";
  constructor(message = "the lease on this permit was lost", options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * The reason `clear()` uses when none is given: the same value `AbortSignal.abort().reason` gives
 * (a `DOMException` named `AbortError`), so callers can treat it like any other cancellation.
 */
export function defaultAbortReason(): unknown {
  return AbortSignal.abort().reason;
}

/**
 * The RangeError for a request heavier than the capacity: the same words from every backend. `subject`
 * names the primitive ("semaphore \"db\"", "Redis rate limiter \"api\" (its concurrency)").
 */
export function weightAboveCapacity(weight: number, capacity: number, subject: string): RangeError {
  return new RangeError(`weight ${weight} is above the capacity ${capacity} of ${subject}; it could never be granted`);
}

/**
 * The RangeError for a cost no limit could ever pay: the same words from every rate limiter. `bound` is
 * the limit's burst (a token bucket) or its limit (a sliding window), as `what` says.
 */
export function costAboveLimit(
  cost: number,
  unit: string,
  limit: { what: "burst" | "limit"; bound: number; limit: number; intervalMs: number },
  subject: string,
): RangeError {
  return new RangeError(
    `cost ${cost} ${unit} is above the ${limit.what} ${limit.bound} of the limit ${limit.limit} ${unit} per ` +
      `${limit.intervalMs} ms of ${subject}; it could never be granted`,
  );
}
