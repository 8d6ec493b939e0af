/**
 * One run of jobs from start to summary, shared by `sluice run`, `sluice fetch` and `sluice demo`:
 * input, limiter, progress, interrupts, report and exit code around a {@link JobRunner}.
 */
import { writeFile } from "node:fs/promises";
import { RedisUnavailableError } from "../redis/errors.js";
import { UsageError } from "./command-line.js";
import { ExitCode } from "./exit-codes.js";
import { checkReadable, checkReadWritable, checkWritable, describeError } from "./files.js";
import { countLines, openInput, readLines } from "./input.js";
import { type Admission, type JobHandler, JobRunner } from "./job-runner.js";
import type { BuiltLimits } from "./limits.js";
import { Output } from "./output.js";
import { Progress, type ProgressMode, summary } from "./progress.js";
import { renderReport } from "./report.js";
import { pendingLines, ResumeFile, WrongResumeFileError } from "./resume-file.js";
import type { SessionSettings } from "./settings.js";
import { PerKeyMeters, RunStatistics } from "./statistics.js";
import { type InputLine, keyReader, readLine } from "./template.js";
import { explainWaits } from "./wait-explainer.js";

/** What a handler may use: where results and job output go, and the run's statistics. */
export interface SessionContext {
  readonly stdout: Output;
  readonly stderr: Output;
  readonly statistics: RunStatistics;
  readonly settings: SessionSettings;
  /** Says something to the user on stderr (unless `--quiet`), above the progress line. */
  readonly note: (message: string) => void;
  /** Stops admitting for good (running jobs finish), e.g. when the API quota is gone; `cause` is shown. */
  readonly stop: (cause: string) => void;
  /**
   * Says that sluice itself cannot go on (the Redis holding the limits is unreachable): stops admitting
   * as `stop` does, and the run exits 3 with `error`'s message instead of failing every remaining line.
   */
  readonly fail: (cause: string, error: unknown) => void;
  /**
   * With `--resume FILE`: appends a finished job's result there and resolves once it is on disk. A
   * record that cannot be written fails the run (exit 3): results with nowhere to go would be paid for
   * again. Without `--resume`, `undefined`.
   */
  readonly record: ((input: InputLine, result: Readonly<Record<string, unknown>>) => Promise<void>) | undefined;
}

export interface SessionOptions<Job, Outcome> {
  /** `run`, `fetch`, `demo`: shown in progress and summary. */
  readonly label: string;
  readonly settings: SessionSettings;
  readonly limits: BuiltLimits;
  readonly handler: (context: SessionContext) => JobHandler<Job, Outcome>;
  /** The command line, for the report's title. */
  readonly commandLine: string;
  /** Lines to run instead of the input file / stdin (the demo makes its own). */
  readonly lines?: AsyncIterable<string>;
  /** Known total when `lines` is given. */
  readonly total?: number;
  /** Force a progress mode (tests, demo); by default: terminal if stderr is one, else lines, off if quiet. */
  readonly progressMode?: ProgressMode;
  /** Whether to install SIGINT/SIGTERM handlers (the demo runs two sessions in a row). */
  readonly handleSignals?: boolean;
  /**
   * Admission for the job loop instead of the limits' own, with `recordsAttempts: false`, when the
   * handler goes through the limiter itself (fetch: the HTTP wrapper acquires once per attempt).
   */
  readonly admission?: Admission;
  readonly recordsAttempts?: boolean;
  /** The statistics to fill (the fetch handler records through them before the session starts). */
  readonly statistics?: RunStatistics;
  /** Writes the summary and the report (default true; the demo prints its own). */
  readonly printSummary?: boolean;
}

export interface SessionResult {
  readonly exitCode: ExitCode;
  readonly statistics: RunStatistics;
  readonly interrupted: boolean;
}

/** Runs a session to the end and returns its exit code; prints progress, summary, report. */
export async function runSession<Job, Outcome>(options: SessionOptions<Job, Outcome>): Promise<SessionResult> {
  const { settings, limits } = options;
  const statistics = options.statistics ?? new RunStatistics(limits.description.rates, limits.description.algorithm);
  const ratesPerKey = limits.description.ratesPerKey ?? [];
  if (ratesPerKey.length > 0) statistics.perKey ??= new PerKeyMeters(ratesPerKey, limits.description.algorithm);
  const mode: ProgressMode =
    options.progressMode ?? (settings.quiet ? "off" : process.stderr.isTTY ? "terminal" : "lines");
  const progress = new Progress({
    stream: process.stderr,
    statistics,
    limits: limits.description,
    mode,
    interval: settings.progressInterval,
    label: options.label,
  });
  const stopping = new Stopping(limits);
  // Erasing the status line matters only where it is drawn: on the terminal stderr shares with stdout.
  const sharesTerminal = mode === "terminal" && process.stdout.isTTY === true;
  const stdout = new Output(process.stdout, sharesTerminal ? progress : undefined, (error) => {
    // Nobody reads the results any more (`sluice run ... | head`): starting more jobs is pointless.
    stopping.stop(error.code === "EPIPE" ? "stdout closed" : "stdout failed");
  });
  const stderr = new Output(process.stderr, mode === "terminal" ? progress : undefined);
  const note = (message: string) => {
    if (!settings.quiet) stderr.write(`sluice: ${printable(message)}\n`);
  };
  const stop = (cause: string) => stopping.stop(cause);
  const fail = (cause: string, error: unknown) => stopping.fail(cause, error);
  const resume =
    settings.resumePath === undefined ? undefined : await openResumeFile(settings.resumePath, options.label);
  const record = resume === undefined ? undefined : recorder(resume, stopping);
  const context: SessionContext = { stdout, stderr, statistics, settings, note, stop, fail, record };
  const runner = new JobRunner<Job, Outcome>({
    handler: options.handler(context),
    admission: failingOnLostRedis(options.admission ?? limits.admission, stopping),
    recordsAttempts: options.recordsAttempts ?? true,
    statistics,
    retries: settings.retries,
    retryDelay: settings.retryDelay,
    retryMaxDelay: settings.retryMaxDelay,
    ready: () => stdout.ready(),
    ...(limits.keys === undefined ? {} : { keyOf: keyReader(limits.keys.field), readAhead: limits.keys.readAhead }),
    warn: (message, error) => {
      // A release that failed because Redis is gone is that failure, said once at the end.
      if (error instanceof RedisUnavailableError) stopping.fail("Redis unavailable", error);
      else stderr.write(`sluice: warning: ${message}\n`);
    },
  });
  stopping.runner = runner;

  const source = openLines(options, statistics);
  const { lines, skipped } = await linesToRun(options, source, resume, note);
  if (mode !== "off" || settings.reportPath !== undefined) countTotal(options, statistics, skipped);
  const unlisten = options.handleSignals === false ? () => {} : listenForSignals(stopping, statistics, stderr);
  const waits = mode === "off" ? undefined : explainWaits({ statistics, limits, pending: () => runner.pending });
  let inputError: unknown;
  try {
    progress.start();
    await runner.run(lines);
  } catch (error) {
    inputError = error;
  } finally {
    // Learn whether the last results reached stdout before deciding the exit code.
    await stdout.flush();
    statistics.finish();
    waits?.stop();
    progress.stop();
    unlisten();
    // When stopped early, stdin may still be open and waiting: let go of it so the process can end.
    source.input?.destroy();
    // Every record was awaited by its job; this only lets go of the file.
    await resume
      ?.close()
      .catch((error: unknown) => stopping.fail(`cannot write the resume file ${resume.name}`, error));
  }
  return finish(options, { statistics, stopping, stderr, stdout, inputError });
}

/**
 * Why admission stopped before the input ran out (set once), and what kept sluice itself from working
 * (exit 3), with the one runner they stop.
 */
class Stopping {
  cause: string | undefined = undefined;
  failure: { cause: string; error: unknown } | undefined = undefined;
  runner: JobRunner<unknown, unknown> | undefined = undefined;

  constructor(private readonly limits: BuiltLimits) {}

  get interrupted(): boolean {
    return this.cause === "interrupted" || this.cause === "terminated";
  }

  /** Stops admitting for good (running jobs finish); the first cause is the one reported. */
  stop(cause: string): void {
    this.cause ??= cause;
    this.runner?.stopAdmitting(cause);
  }

  fail(cause: string, error: unknown): void {
    this.failure ??= { cause, error };
    // Nothing more can be asked of a Redis that is gone: let go of it now, so that what still waits
    // on it (releases, the leave on close) fails at once instead of after its retries.
    if (error instanceof RedisUnavailableError) this.limits.abandon();
    this.stop(cause);
  }

  /** SIGTERM: running jobs are ended too, and the run ends as terminated whatever stopped it before. */
  terminate(): void {
    this.cause = "terminated";
    this.runner?.endRunning("terminated");
  }
}

/**
 * The admission, with a lost Redis taken as sluice's failure: no line can be admitted until it is back,
 * so the lines are not failed one by one (each after a timeout, for ever on an endless input).
 */
function failingOnLostRedis(admission: Admission, stopping: Stopping): Admission {
  return {
    acquire: async (request) => {
      try {
        return await admission.acquire(request);
      } catch (error) {
        if (error instanceof RedisUnavailableError) stopping.fail("Redis unavailable", error);
        throw error;
      }
    },
  };
}

/**
 * The two-step Ctrl-C (stop admitting, then end the running jobs) and SIGTERM. Returns what removes
 * the handlers.
 */
function listenForSignals(stopping: Stopping, statistics: RunStatistics, stderr: Output): () => void {
  let interrupts = 0;
  const onInterrupt = () => {
    interrupts++;
    if (interrupts === 1) {
      stopping.stop("interrupted");
      // Said even with --quiet: the user pressed a key and must learn what it did.
      stderr.write(
        `\nsluice: interrupted: no new jobs; waiting for ${statistics.inFlight} running (Ctrl-C again to end them)\n`,
      );
    } else {
      stopping.runner?.endRunning("interrupted twice");
      stderr.write(`sluice: ending ${statistics.inFlight} running jobs\n`);
    }
  };
  const onTerminate = () => stopping.terminate();
  process.on("SIGINT", onInterrupt);
  process.on("SIGTERM", onTerminate);
  return () => {
    process.off("SIGINT", onInterrupt);
    process.off("SIGTERM", onTerminate);
  };
}

/** The lines to run: the caller's own (the demo), or the input file / stdin. */
function openLines(
  options: SessionOptions<unknown, unknown>,
  statistics: RunStatistics,
): { lines: AsyncIterable<string>; input: ReturnType<typeof openInput> | undefined } {
  if (options.lines !== undefined) {
    statistics.total = options.total;
    return { lines: options.lines, input: undefined };
  }
  const input = openInput(options.settings.inputPath);
  return { lines: readLines(input), input };
}

/**
 * The total (for the ETA), less the lines a resume skips: it costs one streaming pass over a regular
 * file, so it is counted beside the run; pipes stay unknown.
 */
function countTotal(options: SessionOptions<unknown, unknown>, statistics: RunStatistics, skipped: number): void {
  if (options.lines !== undefined) return;
  void countLines(options.settings.inputPath).then(
    (total) => {
      if (statistics.total === undefined && total !== undefined) statistics.total = total - skipped;
    },
    () => {},
  );
}

/**
 * The input lines less those `--resume`'s file records as succeeded. Resolves before anything is sent;
 * a resume file written for another input is refused here (exit 2).
 */
async function linesToRun(
  options: SessionOptions<unknown, unknown>,
  source: ReturnType<typeof openLines>,
  resume: ResumeFile | undefined,
  note: (message: string) => void,
): Promise<{ lines: AsyncIterable<InputLine>; skipped: number }> {
  const lines = numbered(source.lines);
  if (resume === undefined) return { lines, skipped: 0 };
  try {
    const pending = await pendingLines(lines, resume.records, resume.name);
    if (pending.skipped > 0) note(`resuming from ${resume.name}: ${pending.skipped} lines already succeeded, skipped`);
    return pending;
  } catch (error) {
    source.input?.destroy();
    await resume.close();
    throw error instanceof WrongResumeFileError ? new UsageError(error.message, options.label) : error;
  }
}

/** `SessionContext.record`: a record that cannot be written stops the run, which then exits 3. */
function recorder(resume: ResumeFile, stopping: Stopping): NonNullable<SessionContext["record"]> {
  return (input, result) =>
    resume.record(input, result).catch((error: unknown) => {
      stopping.fail(`cannot write the resume file ${resume.name}`, error);
    });
}

/** Opens `--resume FILE`; a file that is not a resume file is the user's mistake (exit 2). */
async function openResumeFile(path: string, label: string): Promise<ResumeFile> {
  try {
    return await ResumeFile.open(path);
  } catch (error) {
    if (error instanceof WrongResumeFileError) throw new UsageError(error.message, label);
    throw new Error(`cannot use the resume file ${path}: ${describeError(error)}`);
  }
}

/** After the last job: the failure, the summary, the report, and the exit code that says it all. */
async function finish(
  options: SessionOptions<unknown, unknown>,
  run: { statistics: RunStatistics; stopping: Stopping; stderr: Output; stdout: Output; inputError: unknown },
): Promise<SessionResult> {
  const { settings, limits } = options;
  const { statistics, stopping, stderr, stdout, inputError } = run;
  const { interrupted, failure } = stopping;
  // What kept sluice from working comes first, so the summary below reads as its consequence.
  if (failure !== undefined) stderr.write(`sluice: ${failure.cause}: ${describeFailure(failure.error, limits)}\n`);
  if (options.printSummary !== false && (!settings.quiet || interrupted)) {
    stderr.write(summary(statistics, limits.description, { label: options.label, stopCause: stopping.cause }));
  }
  let exitCode: ExitCode = statistics.failed > 0 ? ExitCode.jobFailed : ExitCode.ok;
  if (inputError !== undefined) {
    stderr.write(
      `sluice: cannot read the input${settings.inputPath ? ` ${settings.inputPath}` : ""}: ${describeError(inputError)}\n`,
    );
    exitCode = ExitCode.failure;
  }
  if (settings.reportPath !== undefined && !(await writeReport(options, statistics, interrupted, stderr))) {
    exitCode = ExitCode.failure;
  }
  if (failure !== undefined) exitCode = ExitCode.failure;
  if (stopping.cause === "stdout failed") {
    stderr.write(`sluice: cannot write to stdout: ${describeError(stdout.error)}\n`);
    exitCode = ExitCode.failure;
  }
  if (stopping.cause === "stdout closed") exitCode = ExitCode.brokenPipe;
  if (stopping.cause === "terminated") exitCode = ExitCode.terminated;
  else if (stopping.cause === "interrupted") exitCode = ExitCode.interrupted;
  return { exitCode, statistics, interrupted };
}

/** Writes `--report`; says where, or why not. Resolves whether it was written. */
async function writeReport(
  options: SessionOptions<unknown, unknown>,
  statistics: RunStatistics,
  interrupted: boolean,
  stderr: Output,
): Promise<boolean> {
  const { settings, limits } = options;
  const path = settings.reportPath as string;
  try {
    const html = renderReport({
      statistics,
      limits: limits.description,
      title: options.commandLine,
      label: options.label,
      interrupted,
    });
    await writeFile(path, html);
    if (!settings.quiet) stderr.write(`sluice: report written to ${path}\n`);
    return true;
  } catch (error) {
    stderr.write(`sluice: cannot write the report ${path}: ${describeError(error)}\n`);
    return false;
  }
}

/**
 * Checks, before anything runs, that the input can be read and every output can be written: said up
 * front rather than as a summary of nothing, or after a long run whose results are then lost.
 *
 * @param outputs - files the run will write besides the report (`sluice fetch --output`).
 * @throws Error naming the file and what is wrong with it.
 */
export async function checkFiles(
  settings: SessionSettings,
  check: { input: boolean; outputs?: readonly { what: string; path: string }[] },
): Promise<void> {
  const input = settings.inputPath;
  if (check.input && input !== undefined && input !== "-") await checkReadable(input);
  if (settings.reportPath !== undefined) await checkWritable("report", settings.reportPath);
  for (const output of check.outputs ?? []) await checkWritable(output.what, output.path);
  if (settings.resumePath !== undefined) await checkReadWritable("resume file", settings.resumePath);
}

/**
 * A failure of sluice itself, for people: a Redis that went away is named by its URL, without the
 * client library's internals (retry counts, option names) that say nothing to the user.
 */
function describeFailure(error: unknown, limits: BuiltLimits): string {
  if (error instanceof RedisUnavailableError && limits.redisUrl !== undefined) {
    return `${limits.redisUrl} stopped answering; the limits live there, so no more jobs were admitted`;
  }
  return describeError(error);
}

/**
 * A note is one line of text for a terminal: control characters in it (from an input line, a URL, a
 * server's error) are shown escaped, as `\x1b`, never sent to the terminal to interpret.
 */
function printable(text: string): string {
  let out = "";
  for (const character of text) {
    const code = character.charCodeAt(0);
    out += code < 32 || (code >= 127 && code < 160) ? `\\x${code.toString(16).padStart(2, "0")}` : character;
  }
  return out;
}

/** Numbers the lines from 1 and parses JSON-object lines once, for templates, cost fields and requests. */
async function* numbered(lines: AsyncIterable<string>): AsyncGenerator<InputLine> {
  let number = 0;
  for await (const line of lines) {
    number++;
    yield readLine(line, number);
  }
}
