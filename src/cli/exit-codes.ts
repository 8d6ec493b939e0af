/**
 * The exit codes of the `sluice` command. Scripts branch on them, so they are part of the interface:
 * a code's meaning never changes once released.
 */
export const ExitCode = {
  /** Every job succeeded (or there was no input). */
  ok: 0,
  /** At least one job failed after its retries (non-zero exit, timeout, HTTP error, missing command). */
  jobFailed: 1,
  /** The command line was wrong: unknown option, bad value, missing command. Nothing was run. */
  usage: 2,
  /**
   * sluice itself could not work: the input file could not be read, Redis was unreachable, the report
   * or results file could not be written.
   */
  failure: 3,
  /** `sluice run`'s program exists but cannot be executed (as xargs). Nothing was run. */
  cannotExecute: 126,
  /** `sluice run`'s program was not found (as xargs). Nothing was run. */
  commandNotFound: 127,
  /** Interrupted by SIGINT (Ctrl-C): admission stopped, the summary was printed. 128 + SIGINT's 2. */
  interrupted: 130,
  /** stdout was closed by its reader (`sluice run ... | head`): admission stopped. 128 + SIGPIPE's 13. */
  brokenPipe: 141,
  /** Terminated by SIGTERM: running jobs were ended. 128 + SIGTERM's 15. */
  terminated: 143,
} as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** One exit code and what it means, as help shows it. */
export type ExitCodeHelp = readonly [code: string, meaning: string];

/**
 * What each exit code means, in the words of `--help`. Each command's help lists only the codes that
 * command can return; `sluice --help` lists them all ({@link EXIT_CODES_HELP}).
 */
export const EXIT_CODE_HELP = {
  ok: ["0", "every job succeeded (or the input was empty)"],
  jobFailed: ["1", "at least one job failed after its retries"],
  usage: ["2", "usage error: a bad option or value, or options that would do nothing; nothing was run"],
  failure: [
    "3",
    "sluice could not work: unreadable input, unwritable output, report or resume file, Redis unreachable or lost",
  ],
  cannotExecute: ["126", "the command exists but cannot be executed; nothing was run"],
  commandNotFound: ["127", "the command was not found; nothing was run"],
  interrupted: ["130", "interrupted by Ctrl-C (SIGINT)"],
  brokenPipe: ["141", "stdout was closed by its reader (as by | head): no new jobs were started"],
  terminated: ["143", "terminated by SIGTERM: running jobs were ended"],
} as const satisfies Record<keyof typeof ExitCode, ExitCodeHelp>;

/** Exit code 2 for the commands that take `--resume` (`run`, `fetch`). */
export const RESUMABLE_USAGE_HELP: ExitCodeHelp = [
  "2",
  "usage error: a bad option or value, options that would do nothing, or a --resume FILE written for another input; nothing was run",
];

/** Every exit code of every command, for `sluice --help`. */
export const EXIT_CODES_HELP: readonly ExitCodeHelp[] = [
  EXIT_CODE_HELP.ok,
  ["1", "at least one job failed after its retries; sluice inspect: --key names nothing"],
  EXIT_CODE_HELP.usage,
  EXIT_CODE_HELP.failure,
  ["126", "sluice run: the command exists but cannot be executed; nothing was run"],
  ["127", "sluice run: the command was not found; nothing was run"],
  EXIT_CODE_HELP.interrupted,
  EXIT_CODE_HELP.brokenPipe,
  EXIT_CODE_HELP.terminated,
];
