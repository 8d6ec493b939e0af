/**
 * Redis could not be reached (connection refused or lost, or no answer within `commandTimeout`).
 * sluice fails closed by default: the caller gets this error rather than a permit nobody guarantees.
 * See the `onUnavailable` option for the alternatives.
 *
 * @example
 * ```ts
 * try { await semaphore.run(work); }
 * catch (error) { if (error instanceof RedisUnavailableError) console.log("Redis is down:", error.cause); }
 * ```
 */
export class RedisUnavailableError extends Error {
  /** Always "RedisUnavailableError": compare it where `instanceof` cannot (an error from another copy of sluice). */
  override readonly name = "RedisUnavailableError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Whether `error` is a reply from Redis (a script bug, a wrong key type) rather than a lost connection. */
export function isReplyError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error.name === "ReplyError") return true;
  return /^(ERR|WRONGTYPE|NOSCRIPT|BUSY|NOPERM|CROSSSLOT|MOVED|ASK)\b/.test(error.message);
}

/** One call waiting for Redis with a deadline. */
interface Pending {
  deadline: number;
  expire(): void;
}

/**
 * The deadlines of calls in flight. One coarse timer sweeps them (every {@link SWEEP_MS}) instead of a
 * setTimeout + clearTimeout per Redis call: three calls per grant on the hot path made the timers a
 * measurable share of a contended hand-off. A deadline may thus fire up to SWEEP_MS late.
 */
const pending = new Set<Pending>();
const SWEEP_MS = 25;
let sweeper: ReturnType<typeof setInterval> | undefined;

function sweep(): void {
  const now = performance.now();
  for (const entry of pending) {
    if (entry.deadline <= now) {
      pending.delete(entry);
      entry.expire();
    }
  }
  if (pending.size === 0 && sweeper !== undefined) {
    clearInterval(sweeper);
    sweeper = undefined;
  }
}

/**
 * Rejects with a {@link RedisUnavailableError} when `promise` does not settle within `ms`, or when it
 * fails for any reason other than a Redis reply. `onLate` sees the value if it arrives after the
 * deadline, so a script that ran anyway can be undone.
 */
export function withDeadline<T>(
  promise: Promise<T>,
  ms: number,
  what: string | (() => string),
  onLate?: (value: T) => void,
): Promise<T> {
  // A function is called only for an error message: most calls succeed, and need no label at all.
  const label = () => (typeof what === "function" ? what() : what);
  return new Promise<T>((resolve, reject) => {
    let late = false;
    const entry: Pending = {
      deadline: performance.now() + ms,
      expire() {
        late = true;
        reject(new RedisUnavailableError(`Redis did not answer within ${ms} ms (${label()})`));
      },
    };
    pending.add(entry);
    if (sweeper === undefined) {
      sweeper = setInterval(sweep, SWEEP_MS);
      // The Redis connection keeps the process alive while a call is in flight; the sweeper need not.
      sweeper.unref?.();
    }
    promise.then(
      (value) => {
        pending.delete(entry);
        if (late) onLate?.(value);
        else resolve(value);
      },
      (error: unknown) => {
        pending.delete(entry);
        if (late) return;
        if (isReplyError(error)) reject(error);
        else {
          const reason = error instanceof Error ? error.message : String(error);
          reject(new RedisUnavailableError(`Redis is unavailable (${label()}): ${reason}`, { cause: error }));
        }
      },
    );
  });
}
