#!/usr/bin/env node
/**
 * The `sluice` command: xargs -P / GNU parallel for people who must respect rate limits.
 *
 *   sluice run [options] -- COMMAND {}     one process per input line, under limits
 *   sluice fetch [options] < urls          one HTTP request per input line, under limits
 *   sluice demo                            the mock provider, with and without sluice
 *   sluice inspect --redis URL [--key K]   the state of limits shared through Redis
 *   sluice mock                            the mock provider alone, to try fetch against
 *
 * Each command line is parsed once into the command's checked settings (settings.ts); the command
 * runs from those and never reads the command line again.
 */
import { readFileSync } from "node:fs";
import {
  type CommandSpec,
  formatHelp,
  type ParsedCommandLine,
  parseCommandLine,
  table,
  UsageError,
} from "./command-line.js";
import { DEMO_COMMAND, demoCommand } from "./demo-command.js";
import { EXIT_CODES_HELP, ExitCode } from "./exit-codes.js";
import { FETCH_COMMAND, fetchCommand } from "./fetch-command.js";
import { INSPECT_COMMAND, inspectCommand } from "./inspect-command.js";
import { MOCK_COMMAND, mockCommand } from "./mock-command.js";
import { RUN_COMMAND, runCommand } from "./run-command.js";
import {
  readDemoSettings,
  readFetchSettings,
  readInspectSettings,
  readMockSettings,
  readRunSettings,
} from "./settings.js";
import { startTelemetry } from "./telemetry.js";

/** A command: its spec (options, help), how its settings are read, and what runs from them. */
interface Command {
  readonly spec: CommandSpec;
  /** Reads the settings (a UsageError for a bad command line), then runs the command from them. */
  readonly start: (parsed: ParsedCommandLine, commandLine: string) => Promise<ExitCode>;
}

function command<S>(
  spec: CommandSpec,
  read: (parsed: ParsedCommandLine) => S,
  run: (settings: S, commandLine: string) => Promise<ExitCode>,
): Command {
  return { spec, start: (parsed, commandLine) => run(read(parsed), commandLine) };
}

const COMMANDS: readonly Command[] = [
  command(RUN_COMMAND, readRunSettings, runCommand),
  command(FETCH_COMMAND, readFetchSettings, fetchCommand),
  command(DEMO_COMMAND, readDemoSettings, demoCommand),
  command(INSPECT_COMMAND, readInspectSettings, inspectCommand),
  command(MOCK_COMMAND, readMockSettings, mockCommand),
];

/** The commands that export sluice's metrics when OTEL_EXPORTER_OTLP_ENDPOINT is set (telemetry.ts). */
const EXPORTING: ReadonlySet<string> = new Set(["run", "fetch"]);

function version(): string {
  try {
    const url = new URL("../package.json", import.meta.url);
    return (JSON.parse(readFileSync(url, "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

function overview(): string {
  return [
    "sluice — run jobs and HTTP requests under concurrency and rate limits, shared across machines if need be",
    "",
    "Usage: sluice COMMAND [options]",
    "",
    "Commands:",
    ...table(COMMANDS.map(({ spec }) => [spec.name, spec.summary])),
    "",
    "Run 'sluice COMMAND --help' for a command's options and examples.",
    "",
    "Examples:",
    "  cat urls.txt | sluice run -c 8 --rate 10/s -- curl -sS -o /dev/null {}",
    "  sluice fetch --rate 600/min -c 8 --output results.jsonl < urls.txt",
    "  sluice demo",
    "  sluice mock --requests-per-minute 600 &   # a local API to try sluice fetch against",
    "",
    "Exit codes:",
    ...table(EXIT_CODES_HELP),
    "",
  ].join("\n");
}

/** Runs the command line `argv` (without `node` and the script) and resolves with the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    const topic = name === "help" ? rest[0] : undefined;
    const spec = COMMANDS.find((entry) => entry.spec.name === topic)?.spec;
    if (topic !== undefined && spec === undefined)
      return usage(new UsageError(`unknown command ${JSON.stringify(topic)}`));
    // `sluice` alone is a usage error for scripts, but help for people: the help on stderr, exit 2.
    if (name === undefined) {
      process.stderr.write(overview());
      return ExitCode.usage;
    }
    process.stdout.write(spec === undefined ? overview() : formatHelp(spec));
    return ExitCode.ok;
  }
  if (name === "--version" || name === "-V") {
    process.stdout.write(`${version()}\n`);
    return ExitCode.ok;
  }
  const entry = COMMANDS.find((candidate) => candidate.spec.name === name);
  if (entry === undefined) {
    const names = COMMANDS.map((candidate) => candidate.spec.name).join(", ");
    const hint = name.startsWith("-") ? "options come after the command" : `the commands are ${names}`;
    return usage(new UsageError(`unknown command ${JSON.stringify(name)} (${hint})`));
  }
  const { spec } = entry;
  try {
    const parsed = parseCommandLine(spec, rest);
    if (parsed.help) {
      process.stdout.write(formatHelp(spec));
      return ExitCode.ok;
    }
    const telemetry = EXPORTING.has(name)
      ? await startTelemetry(process.env, name, (line) => process.stderr.write(`${line}\n`))
      : undefined;
    try {
      return await entry.start(parsed, ["sluice", ...argv].map(quoteIfNeeded).join(" "));
    } finally {
      await telemetry?.stop();
    }
  } catch (error) {
    if (error instanceof UsageError) return usage(error);
    process.stderr.write(`sluice ${name}: ${error instanceof Error ? error.message : String(error)}\n`);
    return ExitCode.failure;
  }
}

function usage(error: UsageError): number {
  const where = error.command === undefined ? "sluice" : `sluice ${error.command}`;
  process.stderr.write(`${where}: ${error.message}\nRun '${where} --help' for usage.\n`);
  return ExitCode.usage;
}

function quoteIfNeeded(argument: string): string {
  return /^[\w@%+=:,./{}#-]+$/.test(argument) ? argument : `'${argument.replaceAll("'", `'\\''`)}'`;
}

main(process.argv.slice(2)).then(
  async (code) => {
    // Set first: should the process end on its own while stdout flushes, it still ends with this code.
    process.exitCode = code;
    // Exit explicitly: an interrupted run may leave stdin open, which would keep the process alive.
    // First let anything still queued for stdout reach it. (Not by waiting for "drain": that event
    // comes only after a write that returned false, so waiting for it can wait forever, and the process
    // then ended with code 0 once the pipe emptied.) A write's callback runs once everything before it
    // has been flushed, or failed.
    if (process.stdout.writableLength > 0) await new Promise((resolve) => process.stdout.write("", resolve));
    process.exit(code);
  },
  (error: unknown) => {
    process.stderr.write(
      `sluice: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(ExitCode.failure);
  },
);
