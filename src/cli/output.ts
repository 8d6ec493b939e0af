/**
 * Writing job output and results without unbounded buffering, and without tearing the progress line.
 */
import { once } from "node:events";
import type { Writable } from "node:stream";
import type { Progress } from "./progress.js";

/**
 * A writable destination (stdout, a results file) that reports backpressure: when the destination is
 * slower than the jobs (stdout piped into a slow consumer), {@link Output.ready} holds admission back,
 * so results never pile up in memory.
 */
export class Output {
  private waiting: Promise<void> | undefined;
  private failure: unknown;

  constructor(
    private readonly stream: Writable,
    /** Progress whose terminal line must be erased before writing (when both share the terminal). */
    private readonly progress?: Progress,
    /** Told once when the destination fails (EPIPE: the reader went away). Later writes are dropped. */
    onError?: (error: NodeJS.ErrnoException) => void,
  ) {
    stream.on("error", (error: NodeJS.ErrnoException) => {
      if (this.failure !== undefined) return;
      this.failure = error;
      onError?.(error);
    });
  }

  write(data: string | Buffer): void {
    if (this.failure !== undefined) return;
    this.progress?.clear();
    if (!this.stream.write(data) && this.waiting === undefined) {
      this.waiting = once(this.stream, "drain").then(
        () => {
          this.waiting = undefined;
        },
        () => {
          this.waiting = undefined;
        },
      );
    }
  }

  /** `undefined` when more may be written now; otherwise a promise for when it may. */
  ready(): Promise<void> | undefined {
    return this.waiting;
  }

  /**
   * Resolves once everything written so far has reached the destination or failed. A failed write is
   * reported a few ticks later (through `error`), so without this a run whose last result could not be
   * written (`> /dev/full`, a reader gone) ended before it heard, and exited 0.
   */
  flush(): Promise<void> {
    if (this.failure !== undefined || this.stream.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      // After the callback, the error (if any) is emitted within the ticks before the next immediate.
      this.stream.write("", () => setImmediate(resolve));
    });
  }

  /** The write error, if the destination failed (a closed pipe, a full disk). */
  get error(): unknown {
    return this.failure;
  }

  /** Ends a file destination and waits until its data is written. */
  async close(): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    await new Promise<void>((resolve, reject) => {
      this.stream.once("error", reject);
      this.stream.end(() => resolve());
    });
  }
}
