/**
 * The job loop shared by `sluice run` and `sluice fetch`: read a line, wait for admission, start the
 * job, read the next line. Retries, the two-step interrupt and the statistics live here once; what a
 * job *is* (a process, an HTTP request) is the handler's business.
 */
import { setMaxListeners } from "node:events";
import type { Permit } from "../core/limiter.js";
import { Semaphore } from "../core/semaphore.js";
import { backoffDelay, sleep } from "../core/sleep.js";
import { grantTimeOf } from "./observed-limiter.js";
import type { RunStatistics } from "./statistics.js";
import { InputError, type InputLine } from "./template.js";

/** What the runner waits on before each attempt: a limiter seen through the one call the runner needs. */
export interface Admission {
  /** Resolves with a permit when the attempt may start; rejects with `signal.reason` on abort. */
  acquire(options: { cost: Readonly<Record<string, number>>; signal: AbortSignal; key?: string }): Promise<Permit>;
}

/** How an attempt ended, in the runner's terms. */
export interface Verdict {
  /**
   * Why the attempt failed, as a category (`exit 1`, `timeout`, `HTTP 503`), or `undefined` if it
   * succeeded. Categories are counted in the summary, so they must not carry per-job details.
   */
  readonly failure: string | undefined;
  /** The details, for this job's result (defaults to `failure`). */
  readonly detail?: string;
  /** Whether trying again could help (a missing program or a 404 will not get better). */
  readonly retryable: boolean;
  /** The server's wish (Retry-After), in ms: the next attempt waits at least this long. */
  readonly retryAfterMs?: number;
  /** The answer said "too many requests". */
  readonly rateLimited?: boolean;
  /**
   * Nothing was actually started: the work was still queued deeper down (inside the HTTP wrapper) when
   * admission stopped. Counted as not started, like a line that never got past admission.
   */
  readonly notStarted?: boolean;
}

/** Given to each attempt. */
export interface AttemptContext {
  /** 1 for the first attempt. */
  readonly attempt: number;
  /** Fires when running jobs must end now (a second Ctrl-C, SIGTERM). */
  readonly signal: AbortSignal;
  readonly permit: Permit;
  /** The line's key (`--key-field`), if jobs have keys: what the handler's own limiter is asked with. */
  readonly key?: string;
}

/** A job that is over: the last attempt's outcome and how it went. */
export interface JobResult<Job, Outcome> {
  readonly input: InputLine;
  /** `undefined` when the input line could not be turned into a job. */
  readonly job: Job | undefined;
  readonly attempts: number;
  /** From the first attempt's start to the last attempt's end, retries and their waits included. */
  readonly durationMs: number;
  /** The last attempt's outcome, `undefined` if no attempt ran. */
  readonly outcome: Outcome | undefined;
  /** Why the job failed, as a category, `undefined` if it succeeded. */
  readonly failure: string | undefined;
  /** Why the job failed, in detail (the line number, the message), `undefined` if it succeeded. */
  readonly error: string | undefined;
}

/** What a kind of job (process, HTTP request) must provide. */
export interface JobHandler<Job, Outcome> {
  /** Turns an input line into a job; throws `InputError` for a line it cannot use. */
  prepare(input: InputLine): Job;
  /** What one attempt costs, by unit (the runner adds `requests: 1` when the handler leaves it out). */
  cost(job: Job): Readonly<Record<string, number>>;
  /** Runs one attempt. Resolves with the outcome; never rejects for a job that merely failed. */
  attempt(job: Job, context: AttemptContext): Promise<Outcome>;
  classify(outcome: Outcome): Verdict;
  /** Called once per job, in completion order; a returned promise delays nothing but the end of the run. */
  finished(result: JobResult<Job, Outcome>): void | Promise<void>;
  /** Called on the first interrupt, for handlers that queue work of their own (the HTTP wrapper). */
  stopAdmitting?(reason: unknown): void;
}

export interface JobRunnerOptions<Job, Outcome> {
  readonly handler: JobHandler<Job, Outcome>;
  readonly admission: Admission;
  readonly statistics: RunStatistics;
  /** Extra attempts after a retryable failure. */
  readonly retries: number;
  /** Backoff: the n-th retry waits a random time in [0, min(maxDelay, delay * 2^(n-1))] (full jitter). */
  readonly retryDelay: number;
  readonly retryMaxDelay: number;
  /** Called before each new line is admitted; a promise holds admission back (output backpressure). */
  readonly ready?: () => Promise<void> | undefined;
  /** Told about errors of sluice itself (a limiter that failed to release), not about failed jobs. */
  readonly warn?: (message: string, error: unknown) => void;
  readonly random?: () => number;
  /**
   * Whether the runner records attempt starts and ends in the statistics (default true). False when
   * the admission only bounds how many jobs are outstanding and the real limiter, deeper down, records
   * them itself (see `observedLimiter`).
   */
  readonly recordsAttempts?: boolean;
  /**
   * The key of a line (`--key-field`), given to the admission with each attempt; throws `InputError`
   * for a line that has none (the line fails as bad input). Absent: jobs have no key.
   */
  readonly keyOf?: (input: InputLine) => string;
  /**
   * How many lines may be read and not yet over (waiting for admission or running). Absent: the next
   * line is read once the previous job was admitted, so one line at most waits. With keys, lines are
   * read ahead so that several keys can wait at once and take turns.
   */
  readonly readAhead?: number;
}

/**
 * Runs one job per input line under an {@link Admission}, with retries and a two-step interrupt.
 *
 * Memory stays flat for any input: the next line is read only after the previous job was admitted, so
 * at most one job waits for admission, and the jobs in memory are those the limits let run. With
 * `readAhead`, up to that many lines are read and not yet over, whatever the limits admit.
 */
export class JobRunner<Job, Outcome> {
  /**
   * Aborted when admission stops (first Ctrl-C, stdout closed, quota exhausted): no new line is read,
   * waiting jobs give up, running ones go on.
   */
  private readonly admitting = new AbortController();
  /** Aborted by the second Ctrl-C or SIGTERM: running attempts are ended. */
  private readonly ending = new AbortController();
  private readonly running = new Set<Promise<void>>();
  /** With `readAhead`: a slot per line read and not yet over. */
  private readonly readAhead: Semaphore | undefined;

  constructor(private readonly options: JobRunnerOptions<Job, Outcome>) {
    this.readAhead = options.readAhead === undefined ? undefined : new Semaphore(options.readAhead);
    // Every running attempt listens to `ending` (a child process, a fetch), as many as the concurrency.
    setMaxListeners(0, this.admitting.signal, this.ending.signal);
  }

  /** Jobs started and not over: waiting for admission, running, or waiting to be retried. */
  get pending(): number {
    return this.running.size;
  }

  /** Whether admission was stopped before the input ran out. */
  get stopped(): boolean {
    return this.admitting.signal.aborted;
  }

  /** Stops admitting (the first Ctrl-C, and more): jobs already running finish normally. */
  stopAdmitting(reason: string): void {
    if (this.admitting.signal.aborted) return;
    const error = new InterruptedError(reason);
    this.admitting.abort(error);
    this.options.handler.stopAdmitting?.(error);
  }

  /** Second interrupt: end the running jobs too. */
  endRunning(reason: string): void {
    this.stopAdmitting(reason);
    if (!this.ending.signal.aborted) this.ending.abort(new InterruptedError(reason));
  }

  /**
   * Runs every line of `lines`; resolves when every admitted job is over. Rejects only if reading the
   * input fails (after the running jobs are over).
   */
  async run(lines: AsyncIterable<InputLine>): Promise<void> {
    const { statistics } = this.options;
    const iterator = lines[Symbol.asyncIterator]();
    let readError: unknown;
    try {
      // Checked before asking for the next line, so a stop reads nothing more.
      while (!this.stopped) {
        // Read ahead: a slot before the line, given back when its job is over, so memory stays bounded.
        const slot =
          this.readAhead === undefined
            ? undefined
            : await this.readAhead.acquire({ signal: this.admitting.signal }).catch((): typeof STOPPED => STOPPED);
        if (slot === STOPPED) break;
        // Waiting for input (an idle pipe, a terminal) must not delay an interrupt.
        const next = await this.unlessStopped(iterator.next());
        if (next === STOPPED || next.done) {
          slot?.release();
          break;
        }
        statistics.read++;
        const ready = this.options.ready?.();
        if (ready !== undefined) await this.unlessStopped(ready);
        if (this.stopped) {
          slot?.release();
          statistics.notStarted++;
          break;
        }
        const admitted = this.start(next.value, slot);
        if (slot === undefined) await admitted;
      }
    } catch (error) {
      readError = error;
    }
    if (!this.stopped && readError === undefined) statistics.total = statistics.read;
    // Leave the input as it is: when stopped, the iterator may still be blocked in a read.
    if (this.stopped) void iterator.return?.().catch(() => {});
    while (this.running.size > 0) await Promise.all(this.running);
    if (readError !== undefined) throw readError;
  }

  /**
   * Settles with `promise`, or with STOPPED as soon as admission stops. Not `Promise.race` with one
   * long-lived "stopped" promise: every race would leave a reaction on it, one per input line, which
   * is a leak that grows with the input (it was: 200k lines held 250 MB).
   */
  private unlessStopped<T>(promise: Promise<T>): Promise<T | typeof STOPPED> {
    const signal = this.admitting.signal;
    if (signal.aborted) return Promise.resolve(STOPPED);
    return new Promise((resolve, reject) => {
      const onAbort = () => resolve(STOPPED);
      signal.addEventListener("abort", onAbort, { once: true });
      promise.then(
        (value) => {
          signal.removeEventListener("abort", onAbort);
          resolve(value);
        },
        (error: unknown) => {
          signal.removeEventListener("abort", onAbort);
          reject(error);
        },
      );
    });
  }

  /**
   * Starts the job for `input` and resolves once its first attempt was admitted (or never will be);
   * `slot` (of the read-ahead) is released once the job is over.
   */
  private start(input: InputLine, slot?: Permit): Promise<void> {
    let job: Job;
    let key: string | undefined;
    try {
      key = this.options.keyOf?.(input);
      job = this.options.handler.prepare(input);
    } catch (error) {
      if (!(error instanceof InputError)) throw error;
      const finished = this.finish(
        { input, job: undefined, attempts: 0, durationMs: 0, outcome: undefined },
        { failure: "bad input", detail: error.message, retryable: false },
      );
      this.track(finished, slot);
      return Promise.resolve();
    }
    return new Promise<void>((admitted) => {
      this.track(this.runJob(input, job, key, admitted), slot);
    });
  }

  private track(promise: Promise<void>, slot: Permit | undefined): void {
    this.running.add(promise);
    void promise.finally(() => {
      this.running.delete(promise);
      slot?.release();
    });
  }

  private async runJob(input: InputLine, job: Job, key: string | undefined, admitted: () => void): Promise<void> {
    const { handler, admission, statistics } = this.options;
    const cost = { requests: 1, ...handler.cost(job) };
    const records = this.options.recordsAttempts !== false;
    let attempts = 0;
    let firstStart = 0;
    let outcome: Outcome | undefined;
    let verdict: Verdict | undefined;
    for (;;) {
      let permit: Permit;
      try {
        permit = await admission.acquire(
          key === undefined ? { cost, signal: this.admitting.signal } : { cost, signal: this.admitting.signal, key },
        );
      } catch (error) {
        admitted();
        if (this.stopped && attempts === 0) {
          statistics.notStarted++;
          return;
        }
        // Stopped between retries: the job ends with its last failure. Otherwise the limiter refused
        // (a cost above a limit, Redis unreachable): that is this job's failure.
        if (!this.stopped)
          verdict = { failure: "not admitted", detail: `not admitted: ${messageOf(error)}`, retryable: false };
        break;
      }
      admitted();
      attempts++;
      const started = performance.now();
      if (attempts === 1) firstStart = started;
      if (records) statistics.attemptStarted(cost, grantTimeOf(permit), key);
      try {
        const context = { attempt: attempts, signal: this.ending.signal, permit };
        outcome = await handler.attempt(job, key === undefined ? context : { ...context, key });
        verdict = handler.classify(outcome);
      } catch (error) {
        outcome = undefined;
        verdict = { failure: "error", detail: `error: ${messageOf(error)}`, retryable: false };
      } finally {
        if (records) statistics.attemptEnded(performance.now() - started);
        try {
          await permit.release();
        } catch (error) {
          this.options.warn?.(`could not release a permit: ${messageOf(error)}`, error);
        }
      }
      if (verdict.rateLimited) statistics.sawRateLimit();
      if (verdict.failure === undefined || !verdict.retryable || attempts > this.options.retries || this.stopped) break;
      statistics.retried();
      if (!(await this.sleep(this.backoff(attempts, verdict.retryAfterMs)))) break;
    }
    if (verdict?.notStarted) {
      statistics.notStarted++;
      return;
    }
    const durationMs = attempts === 0 ? 0 : performance.now() - firstStart;
    await this.finish({ input, job, attempts, durationMs, outcome }, verdict);
  }

  private async finish(
    result: Omit<JobResult<Job, Outcome>, "failure" | "error">,
    verdict: Verdict | undefined,
  ): Promise<void> {
    const failure = verdict?.failure;
    this.options.statistics.jobFinished(failure);
    try {
      const error = failure === undefined ? undefined : (verdict?.detail ?? failure);
      await this.options.handler.finished({ ...result, failure, error });
    } catch (error) {
      this.options.warn?.(`could not record the result of line ${result.input.number}: ${messageOf(error)}`, error);
    }
  }

  /** Full jitter (AWS's "exponential backoff and jitter"), but never sooner than the server asked. */
  private backoff(retry: number, retryAfterMs: number | undefined): number {
    const { retryDelay, retryMaxDelay } = this.options;
    const ceiling = backoffDelay(retry, retryDelay, retryMaxDelay);
    const jittered = (this.options.random ?? Math.random)() * ceiling;
    return Math.max(jittered, retryAfterMs ?? 0);
  }

  /** Waits `ms` (on the system clock, which also waits beyond 24.8 days); `false` if admission stops meanwhile. */
  private sleep(ms: number): Promise<boolean> {
    return sleep(ms, this.admitting.signal);
  }
}

const STOPPED: unique symbol = Symbol("stopped");

/** The reason given to waiting and running jobs when the run is interrupted. */
export class InterruptedError extends Error {
  override readonly name = "InterruptedError";
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
