/**
 * The argument parser of the `sluice` command: `node:util` `parseArgs` (no dependency) wrapped so that
 * every command describes its options once, and gets from that description its `--help` (with
 * examples), strict checking, and messages that say what was wrong and what to type instead.
 */
import { parseArgs } from "node:util";
import { nearestName } from "../core/arguments.js";
import type { ExitCodeHelp } from "./exit-codes.js";

/** One option of a command. */
export interface OptionSpec {
  /** Long name without dashes: `concurrency` for `--concurrency`. */
  readonly name: string;
  /** One-letter alias: `c` for `-c`. */
  readonly short?: string;
  /** `string` options take a value; `boolean` options are flags. */
  readonly type: "string" | "boolean";
  /** Whether the option may be given several times (its values are collected in order). */
  readonly multiple?: boolean;
  /**
   * The value's placeholder in help: `N`, `RATE`, `FILE`. `DURATION` marks a duration, whose help line
   * then says how a bare number reads.
   */
  readonly value?: string;
  readonly description: string;
  /** The default, as help shows it. */
  readonly default?: string;
}

/** A command: its options, and what its help says. */
export interface CommandSpec {
  readonly name: string;
  /** One line, for `sluice --help`. */
  readonly summary: string;
  /** The usage line(s), without the leading `sluice `. */
  readonly usage: readonly string[];
  /** Paragraphs after the usage. */
  readonly description?: string;
  readonly options: readonly OptionSpec[];
  /**
   * `none`: no positional arguments. `command`: the first positional argument (or everything after
   * `--`) starts the job command, and everything from there on belongs to it, options included.
   */
  readonly positionals: "none" | "command";
  readonly examples: readonly { readonly command: string; readonly explanation: string }[];
  /** The exit codes this command can return, for its help (each command its own, not the whole list). */
  readonly exitCodes: readonly ExitCodeHelp[];
}

/** The command line was wrong. Exit code 2; the message says what to type instead. */
export class UsageError extends Error {
  override readonly name = "UsageError";
  /** The command whose help to point at, or undefined for `sluice` itself. */
  readonly command: string | undefined;
  constructor(message: string, command?: string) {
    super(message);
    this.command = command;
  }
}

/** The result of parsing: option values by long name, and the job command, if any. */
export interface ParsedCommandLine {
  readonly values: Readonly<Record<string, string | boolean | string[] | undefined>>;
  /**
   * How each option given was written, by long name (the last time it was given): `--lease`, or
   * `-c (--concurrency)` for a short one. Messages name options this way, as the user typed them.
   */
  readonly spelled: ReadonlyMap<string, string>;
  /** The job command's argument vector (for `positionals: "command"`), possibly empty. */
  readonly command: readonly string[];
  /** Whether `--help` was asked for. */
  readonly help: boolean;
}

const HELP_OPTION: OptionSpec = { name: "help", short: "h", type: "boolean", description: "show this help and exit" };

/**
 * Parses `argv` (the arguments after the command name) against `spec`.
 *
 * For `positionals: "command"`, the job command starts at `--` or at the first argument that is not an
 * option or an option's value, so `sluice run -c 4 grep -n x {}` gives `grep` its own `-n`.
 *
 * @throws UsageError for an unknown option, a missing value, a flag given a value, or an unexpected
 *   positional argument.
 */
export function parseCommandLine(spec: CommandSpec, argv: readonly string[]): ParsedCommandLine {
  const options = [...spec.options, HELP_OPTION];
  const byLong = new Map(options.map((option) => [option.name, option]));
  const byShort = new Map(options.filter((o) => o.short !== undefined).map((option) => [option.short, option]));

  // Our own options, as parseArgs will see them: a value that looks like a negative number is joined to
  // its option (`--retries=-1`, `-c-2`), or parseArgs would call it a missing value rather than a bad one.
  const own: string[] = [];
  const spelled = new Map<string, string>();
  let command: string[] = [];
  // Split before parseArgs sees the job command: the job's own options (`grep -n`) are not ours. The
  // same pass checks our options, so the messages do not depend on parseArgs' wording (which varies
  // between Node versions).
  const unknown = (typed: string) => {
    const suggestion = closestOption(typed, options);
    return new UsageError(
      `unknown option ${typed}${suggestion === undefined ? "" : ` (did you mean --${suggestion}?)`}`,
      spec.name,
    );
  };
  const needsValue = (option: OptionSpec, index: number) => {
    if (index + 1 >= argv.length) {
      throw new UsageError(`option --${option.name} needs a value (${option.value ?? "VALUE"})`, spec.name);
    }
  };
  /** The option token followed by the next argument as its value. */
  const withValue = (token: string, joiner: string, value: string) => {
    if (/^-[\d.]/.test(value)) own.push(`${token}${joiner}${value}`);
    else own.push(token, value);
  };
  for (let index = 0; index < argv.length; index++) {
    const token = argv[index] as string;
    if (token === "--") {
      command = argv.slice(index + 1);
      break;
    }
    if (token.startsWith("--")) {
      const [name, value] = splitOnce(token.slice(2), "=");
      const option = byLong.get(name);
      if (option === undefined) throw unknown(`--${name}`);
      spelled.set(option.name, `--${option.name}`);
      if (option.type === "boolean" && value !== undefined) {
        throw new UsageError(`option --${option.name} is a flag and takes no value`, spec.name);
      }
      if (option.type === "string" && value === undefined) {
        needsValue(option, index);
        index++;
        withValue(token, "=", argv[index] as string);
      } else own.push(token);
      continue;
    }
    if (token.startsWith("-") && token.length > 1) {
      // `-qc 4` is a group of flags ending with an option that takes the next argument; `-c4` carries
      // its value.
      let takesNext = false;
      for (let at = 1; at < token.length; at++) {
        const option = byShort.get(token[at] as string);
        if (option === undefined) throw unknown(`-${token[at]}`);
        spelled.set(option.name, `-${option.short} (--${option.name})`);
        if (option.type === "string") {
          if (at === token.length - 1) {
            needsValue(option, index);
            takesNext = true;
          }
          break;
        }
      }
      if (takesNext) {
        index++;
        withValue(token, "", argv[index] as string);
      } else own.push(token);
      continue;
    }
    if (spec.positionals === "command") {
      command = argv.slice(index);
      break;
    }
    throw new UsageError(`unexpected argument ${JSON.stringify(token)}`, spec.name);
  }

  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: own,
      options: Object.fromEntries(
        options.map((option) => [
          option.name,
          {
            type: option.type,
            ...(option.short === undefined ? {} : { short: option.short }),
            ...(option.multiple ? { multiple: true } : {}),
          },
        ]),
      ),
      strict: true,
      allowPositionals: false,
    });
  } catch (error) {
    throw new UsageError(explainParseError(error, spec, options), spec.name);
  }
  const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
  return { values, spelled, command, help: values["help"] === true };
}

function splitOnce(text: string, separator: string): [string, string | undefined] {
  const at = text.indexOf(separator);
  return at === -1 ? [text, undefined] : [text.slice(0, at), text.slice(at + separator.length)];
}

/** Turns parseArgs' messages, written for programmers, into ones written for the person at the shell. */
function explainParseError(error: unknown, spec: CommandSpec, options: readonly OptionSpec[]): string {
  const code = (error as { code?: string }).code;
  const message = error instanceof Error ? error.message : String(error);
  // parseArgs quotes the option as `'--rate'`, `'-r, --rate <value>'` or `'-x'`: prefer the long name.
  const quoted = /'[^']*?(--[\w-]+)/.exec(message)?.[1] ?? /'(-[^' ,]+)/.exec(message)?.[1];
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && quoted !== undefined) {
    const suggestion = closestOption(quoted, options);
    return `unknown option ${quoted}${suggestion === undefined ? "" : ` (did you mean --${suggestion}?)`}`;
  }
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && quoted !== undefined) {
    const option = findOption(quoted, options);
    if (option?.type === "boolean") return `option --${option.name} is a flag and takes no value`;
    if (option !== undefined) return `option --${option.name} needs a value (${option.value ?? "VALUE"})`;
  }
  return `${message} (in sluice ${spec.name})`;
}

function findOption(token: string, options: readonly OptionSpec[]): OptionSpec | undefined {
  const name = token.replace(/^-+/, "").split(/[= ]/, 1)[0];
  return options.find((option) => option.name === name || option.short === name);
}

/**
 * The option meant by what was typed, for "did you mean": one within two edits (as the library's
 * option names are suggested), else the only one it is the start of (`--conc` for `--concurrency`).
 */
function closestOption(typed: string, options: readonly OptionSpec[]): string | undefined {
  const name = typed.replace(/^-+/, "").split("=", 1)[0] as string;
  const names = options.map((option) => option.name);
  const near = nearestName(name, names);
  if (near !== undefined) return near;
  const extended = name.length >= 3 ? names.filter((candidate) => candidate.startsWith(name)) : [];
  return extended.length === 1 ? extended[0] : undefined;
}

/** The `--help` text of a command. */
export function formatHelp(spec: CommandSpec): string {
  const lines: string[] = [];
  lines.push(`sluice ${spec.name} — ${spec.summary}`, "", "Usage:");
  for (const usage of spec.usage) lines.push(`  sluice ${usage}`);
  if (spec.description !== undefined) lines.push("", ...spec.description.split("\n"));
  lines.push("", "Options:");
  const rows = [...spec.options, HELP_OPTION].map((option) => {
    const flag = `${option.short === undefined ? "    " : `-${option.short}, `}--${option.name}`;
    const value = option.type === "string" ? ` ${option.value ?? "VALUE"}` : "";
    const extra = [
      option.value?.startsWith("DURATION") ? DURATION_RULE : undefined,
      option.multiple ? "repeatable" : undefined,
      option.default && `default ${option.default}`,
    ]
      .filter(Boolean)
      .join("; ");
    return [`${flag}${value}`, `${option.description}${extra === "" ? "" : ` (${extra})`}`] as const;
  });
  lines.push(...table(rows));
  lines.push("", "Examples:");
  for (const example of spec.examples) lines.push(`  ${example.command}`, `      ${example.explanation}`);
  lines.push("", "Exit codes:", ...table(spec.exitCodes));
  return `${lines.join("\n")}\n`;
}

/** How a duration option reads its value, said on each duration's help line. */
export const DURATION_RULE = "a bare number is seconds, or give a unit: 250ms, 10s, 5m, 1h";

/** Two columns, the second aligned (and wrapped at 100 columns, indented under itself). */
export function table(rows: readonly (readonly [string, string])[]): string[] {
  const width = Math.min(34, Math.max(...rows.map(([left]) => left.length)) + 2);
  const out: string[] = [];
  for (const [left, right] of rows) {
    const words = right.split(" ");
    const wrapped: string[] = [];
    let line = "";
    for (const word of words) {
      if (line !== "" && 2 + width + line.length + 1 + word.length > 100) {
        wrapped.push(line);
        line = word;
      } else line = line === "" ? word : `${line} ${word}`;
    }
    wrapped.push(line);
    if (left.length + 2 > width) out.push(`  ${left}`, ...wrapped.map((text) => `  ${" ".repeat(width)}${text}`));
    else {
      out.push(`  ${left.padEnd(width)}${wrapped[0]}`);
      for (const text of wrapped.slice(1)) out.push(`  ${" ".repeat(width)}${text}`);
    }
  }
  return out;
}
