/**
 * `sluice run`: one process per input line, under concurrency and rate limits.
 */
import type { CommandSpec } from "./command-line.js";
import { EXIT_CODE_HELP, ExitCode, RESUMABLE_USAGE_HELP } from "./exit-codes.js";
import type { JobHandler, JobResult } from "./job-runner.js";
import { buildLimits } from "./limits.js";
import { checkProgram, type ProcessOutcome, runProcess } from "./process-job.js";
import { checkFiles, runSession, type SessionContext } from "./session.js";
import type { RunSettings } from "./settings.js";
import { KEY_OPTIONS, LIMIT_OPTIONS, SESSION_OPTIONS, withDefault } from "./shared-options.js";
import { CommandTemplate, fieldOf, InputError, type InputLine, whyNoRecord } from "./template.js";

export const RUN_COMMAND: CommandSpec = {
  name: "run",
  summary: "run a command once per input line, under concurrency and rate limits",
  usage: ["run [options] -- COMMAND [ARGS...]", "run [options] COMMAND [ARGS...]"],
  description: [
    "Reads lines from stdin (or --input FILE) and runs COMMAND once per line, as xargs -P or GNU parallel",
    "do, but never faster than the limits allow. In COMMAND, {} is the line, {#} the job number, and",
    "{name} (or {a.b}) a field of a JSON-lines input record; with no placeholder the line is appended as",
    "the last argument. COMMAND runs directly from its argument vector, not through a shell, unless --shell.",
    "",
    "Each job's output is printed when it ends (grouped, never interleaved). Progress and the summary go",
    "to stderr. Ctrl-C stops starting jobs, lets the running ones finish and prints the summary; a second",
    "Ctrl-C ends them. The input is streamed: any number of lines runs in flat memory.",
    "",
    "With --resume FILE, each job's --json result is also appended to FILE and synced to disk; run the",
    "same command again after a crash, kill or Ctrl-C and it runs only the lines FILE does not record as",
    "succeeded (failed lines run again). FILE is tied to its input: another input is refused (exit 2).",
  ].join("\n"),
  options: [
    ...withDefault(LIMIT_OPTIONS, "concurrency", "the number of CPUs"),
    ...KEY_OPTIONS,
    {
      name: "cost-field",
      type: "string",
      multiple: true,
      value: "UNIT[=FIELD]",
      description:
        "a job's cost in UNIT (a unit some --rate counts) is the number in field FIELD (default: UNIT) of its JSON input line; every unit a --rate counts needs one",
    },
    ...SESSION_OPTIONS,
    { name: "shell", type: "boolean", description: "run COMMAND with /bin/sh -c (substituted values are quoted)" },
    {
      name: "max-output",
      type: "string",
      value: "BYTES",
      description:
        "output kept per job and stream for --json (more is cut), at most 256 MiB; without --json, printed early instead",
      default: "1048576",
    },
  ],
  positionals: "command",
  examples: [
    {
      command: "cat urls.txt | sluice run -c 8 --rate 10/s -- curl -sS -o /dev/null {}",
      explanation: "8 at a time, 10 starts per second at most",
    },
    {
      command:
        "sluice run -i jobs.jsonl --rate 600/min --rate 40000/min:tokens --cost-field tokens -- ./ask.sh {prompt}",
      explanation: "two limits at once; each job costs its `tokens` field against the second",
    },
    {
      command: "sluice run -i jobs.jsonl --key-field customer --rate-per-key 60/min -c 8 -- ./ask.sh {prompt}",
      explanation: "60 a minute for each customer; the customers take fair turns at the 8 slots",
    },
    {
      command: "sluice run --retries 3 --timeout 30s --json -- ./convert {} < files.txt > results.jsonl",
      explanation: "retry failures, cut hung jobs, one JSON result per job",
    },
    {
      command: "sluice run -i files.txt --resume done.jsonl -- ./convert {}",
      explanation: "run it again after a crash: only the lines not yet done run",
    },
    {
      command: "sluice run --shell -- 'gzip -c {} > {}.gz' < files.txt",
      explanation: "a pipeline per line, through the shell",
    },
    {
      command: "sluice run --redis redis://10.0.0.5:6379 --key openai --rate 500/min -- ./call.sh {}",
      explanation: "the same limit, shared by every machine that uses this key",
    },
  ],
  exitCodes: [
    EXIT_CODE_HELP.ok,
    EXIT_CODE_HELP.jobFailed,
    RESUMABLE_USAGE_HELP,
    EXIT_CODE_HELP.failure,
    EXIT_CODE_HELP.cannotExecute,
    EXIT_CODE_HELP.commandNotFound,
    EXIT_CODE_HELP.interrupted,
    EXIT_CODE_HELP.brokenPipe,
    EXIT_CODE_HELP.terminated,
  ],
};

/** A job of `sluice run`. */
interface ProcessJob {
  /** The input line's number, given to the job as SLUICE_JOB. */
  readonly number: number;
  readonly file: string;
  readonly args: string[];
  readonly cost: Record<string, number>;
}

/** Runs `sluice run` with its settings; resolves with the exit code. */
export async function runCommand(settings: RunSettings, commandLine: string): Promise<ExitCode> {
  const template = new CommandTemplate(settings.command, { shell: settings.shell });
  // A misspelt program would fail every line; say so once, before reading any (exit 127, as xargs does).
  const program = settings.command[0] as string;
  if (!settings.shell && !/\{[^}]*\}/.test(program)) {
    const problem = checkProgram(program);
    if (problem !== undefined) {
      process.stderr.write(`sluice run: ${problem}\n`);
      return problem.startsWith("command not found") ? ExitCode.commandNotFound : ExitCode.cannotExecute;
    }
  }

  await checkFiles(settings.session, { input: true });
  const limits = await buildLimits(settings.limits);
  try {
    const result = await runSession<ProcessJob, ProcessOutcome>({
      label: RUN_COMMAND.name,
      settings: settings.session,
      limits,
      commandLine,
      handler: (context) => processHandler(context, template, settings.costFields, settings.maxOutput),
    });
    return result.exitCode;
  } finally {
    await limits.close();
  }
}

function processHandler(
  context: SessionContext,
  template: CommandTemplate,
  costFields: ReadonlyMap<string, string>,
  maxOutput: number,
): JobHandler<ProcessJob, ProcessOutcome> {
  const { settings, stdout, stderr } = context;
  return {
    prepare(input: InputLine): ProcessJob {
      const { file, args } = template.expand(input);
      const cost: Record<string, number> = {};
      for (const [unit, field] of costFields) {
        const value = fieldOf(input.record, field);
        const number = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
        if (typeof number !== "number" || !Number.isFinite(number) || number < 0) {
          throw new InputError(
            input.record === undefined
              ? `${whyNoRecord(input)}, so it has no cost field ${field}`
              : `line ${input.number}: the cost field ${field} must be a number >= 0; got ${JSON.stringify(value) ?? "nothing"}`,
          );
        }
        cost[unit] = number;
      }
      return { number: input.number, file, args, cost };
    },
    cost: (job) => job.cost,
    attempt(job, { attempt, signal }) {
      return runProcess(job.file, job.args, {
        signal,
        timeout: settings.timeout,
        maxCapture: maxOutput,
        // Without --json, output that outgrows the buffer is printed at once rather than lost.
        overflow: settings.json ? undefined : (stream, data) => (stream === "stdout" ? stdout : stderr).write(data),
        env: { ...process.env, SLUICE_JOB: String(job.number), SLUICE_ATTEMPT: String(attempt) },
      });
    },
    classify(outcome) {
      if (outcome.spawnError !== undefined)
        return { failure: "cannot start", detail: outcome.spawnError, retryable: false };
      if (outcome.interrupted) return { failure: "interrupted", retryable: false };
      if (outcome.timedOut) return { failure: "timeout", retryable: true };
      if (outcome.signal !== null) return { failure: `killed by ${outcome.signal}`, retryable: true };
      if (outcome.exitCode === 0) return { failure: undefined, retryable: false };
      // 126 and 127 are the shell's "cannot execute" and "not found": a retry cannot fix either.
      return { failure: `exit ${outcome.exitCode}`, retryable: outcome.exitCode !== 126 && outcome.exitCode !== 127 };
    },
    finished(result: JobResult<ProcessJob, ProcessOutcome>) {
      const outcome = result.outcome;
      // --resume: the job is over once its record is on disk (its output is printed as usual).
      const recorded = context.record?.(result.input, jsonResult(result));
      if (settings.json) {
        stdout.write(`${JSON.stringify(jsonResult(result))}\n`);
        return recorded;
      }
      if (outcome !== undefined) {
        if (outcome.stdout !== "") stdout.write(outcome.stdout);
        if (outcome.stderr !== "") stderr.write(outcome.stderr);
      }
      if (result.failure !== undefined) {
        const attempts = result.attempts > 1 ? `, ${result.attempts} attempts` : "";
        context.note(`line ${result.input.number} failed (${result.error}${attempts}): ${preview(result.input.line)}`);
      }
      return recorded;
    },
  };
}

/** The `--json` line of a finished job. */
export function jsonResult(result: JobResult<ProcessJob, ProcessOutcome>): Record<string, unknown> {
  const outcome = result.outcome;
  return {
    line: result.input.number,
    input: result.input.record ?? result.input.line,
    ok: result.failure === undefined,
    exitCode: outcome?.exitCode ?? null,
    signal: outcome?.signal ?? null,
    durationMs: Math.round(result.durationMs * 10) / 10,
    attempts: result.attempts,
    output: outcome?.stdout ?? "",
    stderr: outcome?.stderr ?? "",
    ...(outcome?.truncated ? { truncated: true } : {}),
    ...(result.error === undefined ? {} : { error: result.error }),
  };
}

function preview(line: string): string {
  return line.length > 80 ? `${line.slice(0, 77)}…` : line;
}
