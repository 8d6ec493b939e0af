/**
 * One attempt of a `sluice run` job: a child process started from an argument vector (no shell unless
 * asked), its output captured, ended on timeout or on a second interrupt.
 */
import { spawn } from "node:child_process";
import { accessSync, constants, statSync } from "node:fs";
import { delimiter, isAbsolute, join, resolve } from "node:path";
import { systemClock, type TimerHandle } from "../core/clock.js";

/** How a process attempt ended. */
export interface ProcessOutcome {
  /** The exit code, or `null` if a signal ended the process or it never started. */
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Output beyond the capture limit was left out (only when no overflow handler takes it). */
  readonly truncated: boolean;
  /** Ended by sluice because `--timeout` elapsed. */
  readonly timedOut: boolean;
  /** Ended by sluice because the run was interrupted twice or terminated. */
  readonly interrupted: boolean;
  /** Why the process could not be started (`ENOENT`: no such program), if it could not. */
  readonly spawnError: string | undefined;
}

export interface ProcessOptions {
  readonly timeout?: number;
  /** Aborting ends the process (SIGTERM to its process group, SIGKILL after `killGrace`). */
  readonly signal: AbortSignal;
  /** Bytes kept per stream; past that, output goes to `overflow` or is dropped. */
  readonly maxCapture: number;
  /** Takes output that no longer fits the capture (grouped output flushed early instead of lost). */
  readonly overflow?: (stream: "stdout" | "stderr", data: Buffer) => void;
  readonly env?: NodeJS.ProcessEnv;
  readonly killGrace?: number;
}

/**
 * Runs `file args` to completion. Never rejects: a program that cannot start resolves with
 * `spawnError` and exit code `null`.
 *
 * The child gets its own process group (`detached`), for two reasons: Ctrl-C on a terminal signals the
 * whole foreground group, and sluice promises that the first Ctrl-C lets running jobs finish; and ending
 * a job must end what it started too (`sh -c` pipelines), which only a group kill reaches.
 */
export function runProcess(file: string, args: readonly string[], options: ProcessOptions): Promise<ProcessOutcome> {
  return new Promise((resolvePromise) => {
    const stdout = new Capture(options.maxCapture, options.overflow && ((data) => options.overflow?.("stdout", data)));
    const stderr = new Capture(options.maxCapture, options.overflow && ((data) => options.overflow?.("stderr", data)));
    let timedOut = false;
    let interrupted = false;
    let settled = false;
    let timer: TimerHandle | undefined;
    let graceTimer: ReturnType<typeof setTimeout> | undefined;

    const child = spawn(file, args, {
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
      env: options.env ?? process.env,
    });

    const end = () => {
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
      killGroup(child.pid, "SIGTERM");
      graceTimer ??= setTimeout(() => {
        if (child.pid !== undefined) killGroup(child.pid, "SIGKILL");
      }, options.killGrace ?? 2000);
    };
    const onAbort = () => {
      interrupted = true;
      end();
    };

    const settle = (exitCode: number | null, signal: NodeJS.Signals | null, spawnError: string | undefined) => {
      if (settled) return;
      settled = true;
      if (timer !== undefined) systemClock.clearTimeout(timer);
      clearTimeout(graceTimer);
      options.signal.removeEventListener("abort", onAbort);
      resolvePromise({
        exitCode,
        signal,
        stdout: stdout.text(),
        stderr: stderr.text(),
        truncated: stdout.truncated || stderr.truncated,
        timedOut,
        interrupted,
        spawnError,
      });
    };

    child.stdout.on("data", (data: Buffer) => stdout.add(data));
    child.stderr.on("data", (data: Buffer) => stderr.add(data));
    child.on("error", (error: NodeJS.ErrnoException) => {
      // An error before the process exists means it never started; later errors (a failed kill) are
      // not the job's outcome, and 'close' still follows.
      if (child.pid === undefined) settle(null, null, spawnErrorText(file, error));
    });
    child.on("close", (exitCode, signal) => settle(exitCode, signal, undefined));

    if (child.pid !== undefined) {
      if (options.timeout !== undefined && Number.isFinite(options.timeout)) {
        // The system clock chains timers past setTimeout's 24.8-day ceiling, beyond which Node fires at once.
        timer = systemClock.setTimeout(() => {
          timedOut = true;
          end();
        }, options.timeout);
      }
      if (options.signal.aborted) onAbort();
      else options.signal.addEventListener("abort", onAbort, { once: true });
    }
  });
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is already gone.
  }
}

function spawnErrorText(file: string, error: NodeJS.ErrnoException): string {
  if (error.code === "ENOENT") return `command not found: ${file}`;
  if (error.code === "EACCES") return `permission denied: ${file}`;
  return `${file}: ${error.message}`;
}

/** Output of one stream, kept up to `limit` bytes. */
class Capture {
  private chunks: Buffer[] = [];
  private size = 0;
  truncated = false;
  constructor(
    private readonly limit: number,
    private readonly overflow: ((data: Buffer) => void) | undefined,
  ) {}

  add(data: Buffer): void {
    if (this.size + data.length <= this.limit) {
      this.chunks.push(data);
      this.size += data.length;
      return;
    }
    if (this.overflow !== undefined) {
      // Hand over what was kept plus the new data, in order, and start again empty.
      this.overflow(Buffer.concat([...this.chunks, data]));
      this.chunks = [];
      this.size = 0;
      return;
    }
    const room = this.limit - this.size;
    if (room > 0) {
      this.chunks.push(data.subarray(0, room));
      this.size += room;
    }
    this.truncated = true;
  }

  text(): string {
    return Buffer.concat(this.chunks).toString("utf8");
  }
}

/**
 * Finds `program` the way the shell would (a path with a slash as is, otherwise each `PATH` entry), so
 * a misspelt command stops the run before the first line rather than failing every line.
 * Returns an explanation when it cannot be run, `undefined` when it can.
 */
export function checkProgram(program: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const candidates = program.includes("/")
    ? [isAbsolute(program) ? program : resolve(program)]
    : (env["PATH"] ?? "").split(delimiter).map((directory) => join(directory === "" ? "." : directory, program));
  let foundButNotExecutable: string | undefined;
  for (const candidate of candidates) {
    try {
      const info = statSync(candidate);
      // Named by its path, a directory is there but cannot run (the shell's 126), not "no file".
      if (info.isDirectory() && program.includes("/")) return `cannot execute: ${program} is a directory`;
      if (!info.isFile()) continue;
    } catch {
      continue;
    }
    try {
      accessSync(candidate, constants.X_OK);
      return undefined;
    } catch {
      foundButNotExecutable ??= candidate;
    }
  }
  if (foundButNotExecutable !== undefined) return `permission denied: ${foundButNotExecutable} is not executable`;
  return program.includes("/")
    ? `command not found: no file ${program}`
    : `command not found: ${program} (not in PATH)`;
}
