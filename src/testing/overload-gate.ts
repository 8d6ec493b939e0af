/**
 * The mock server's "overloaded service": a hidden capacity C served at once, a bounded queue behind it
 * (so latency grows with the queue), and a refusal beyond the queue — what a database or an internal
 * service does, and what adaptive concurrency must find without being told C. Written without sluice's
 * own primitives, so a client is not tested against its own code.
 */
import { describe } from "../core/describe.js";

/** Options of the overloaded mode (`overload` in the mock server's options). */
export interface MockOverloadOptions {
  /** C: requests served at once, each in the server's `latency` (the service time). Changeable later. */
  capacity: number;
  /** Requests waiting for one of the C places; one more is refused. Default: `capacity`. */
  queue?: number;
  /**
   * The status a refused request gets, without `Retry-After` (as most overloaded services answer):
   * 503 (529 in Anthropic style) or 429. Default 503.
   */
  status?: 503 | 429;
}

/** The overloaded mode of a running mock server: its state, and C to change while it runs. */
export interface MockOverload {
  /** C, the requests served at once. Set it to change it while the server runs: growing starts waiters at once. */
  capacity: number;
  /** The most requests that may wait for a place. */
  readonly queue: number;
  /** The status refusals get. */
  readonly status: 503 | 429;
  /** Requests being served (at most `capacity`, except after a shrink, until they finish). */
  readonly serving: number;
  /** Requests waiting for a place. */
  readonly waiting: number;
}

function checkCount(value: unknown, argument: string, least: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < least) {
    throw new RangeError(`${argument} must be an integer >= ${least}; got ${describe(value)}`);
  }
  return value;
}

/** @internal The gate itself. */
export class OverloadGate implements MockOverload {
  private places: number;
  readonly queue: number;
  readonly status: 503 | 429;
  serving = 0;
  private readonly waiters: (() => void)[] = [];

  constructor(options: MockOverloadOptions) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`overload must be an object ({ capacity, queue?, status? }); got ${describe(options)}`);
    }
    this.places = checkCount(options.capacity, "overload.capacity", 1);
    this.queue = checkCount(options.queue ?? this.places, "overload.queue", 0);
    const status = options.status ?? 503;
    if (status !== 503 && status !== 429)
      throw new RangeError(`overload.status must be 503 or 429; got ${describe(status)}`);
    this.status = status;
  }

  get capacity(): number {
    return this.places;
  }

  set capacity(value: number) {
    this.places = checkCount(value, "overload.capacity", 1);
    this.startWaiters();
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /** Whether a new request is taken (served now or queued); otherwise it is refused. */
  admits(): boolean {
    return this.serving < this.places || this.waiters.length < this.queue;
  }

  /**
   * Takes a place, waiting in line for one if all C are busy; call only after `admits()` said yes.
   * `closed` ends the wait when the server closes (the request is then not served).
   */
  enter(closed: AbortSignal): Promise<void> {
    if (this.serving < this.places && this.waiters.length === 0) {
      this.serving++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const done = () => {
        closed.removeEventListener("abort", leaveQueue);
        resolve();
      };
      const leaveQueue = () => {
        const index = this.waiters.indexOf(done);
        if (index !== -1) this.waiters.splice(index, 1);
        // Counted as serving, so the caller's `leave()` balances it.
        this.serving++;
        resolve();
      };
      closed.addEventListener("abort", leaveQueue, { once: true });
      this.waiters.push(done);
    });
  }

  /** Gives a place back and starts the next in line. */
  leave(): void {
    this.serving--;
    this.startWaiters();
  }

  private startWaiters(): void {
    while (this.serving < this.places && this.waiters.length > 0) {
      this.serving++;
      this.waiters.shift()?.();
    }
  }
}
