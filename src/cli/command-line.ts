/**
 * The argument parser of the `sluice` command: `node:util` `parseArgs` (no dependency) wrapped so that
 * every command describes its options once, and gets from that description its `--help` (with
 * examples), strict checking, and messages that say what was wrong and what to type instead.
 */
import { parseArgs } from "node:util";
import { parseDurationText } from "../core/duration.js";
import { EXIT_CODES_HELP } from "./exit-codes.js";

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
  /** The value's placeholder in help: `N`, `RATE`, `FILE`. */
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
  return { values, command, help: values["help"] === true };
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

/** The option whose name is within two edits of what was typed, for "did you mean". */
function closestOption(typed: string, options: readonly OptionSpec[]): string | undefined {
  const name = typed.replace(/^-+/, "").split("=", 1)[0] as string;
  let best: string | undefined;
  let bestDistance = 3;
  for (const option of options) {
    const distance = editDistance(name, option.name);
    if (distance < bestDistance || (option.name.startsWith(name) && name.length >= 3 && bestDistance > 1)) {
      best = option.name;
      bestDistance = Math.min(distance, 1);
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min((previous[j] as number) + 1, (current[j - 1] as number) + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length] as number;
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
    const extra = [option.multiple ? "repeatable" : undefined, option.default && `default ${option.default}`]
      .filter(Boolean)
      .join("; ");
    return [`${flag}${value}`, `${option.description}${extra === "" ? "" : ` (${extra})`}`] as const;
  });
  lines.push(...table(rows));
  lines.push("", "Examples:");
  for (const example of spec.examples) lines.push(`  ${example.command}`, `      ${example.explanation}`);
  lines.push("", "Exit codes:", ...table(EXIT_CODES_HELP));
  return `${lines.join("\n")}\n`;
}

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

// --- Typed option values. Each failure is a UsageError naming the option and the value. ---

/** A string option's value (the last one if given several times), or `undefined`. */
export function stringOption(parsed: ParsedCommandLine, name: string): string | undefined {
  const value = parsed.values[name];
  if (Array.isArray(value)) return value[value.length - 1];
  return typeof value === "string" ? value : undefined;
}

/** Every value of a repeatable option, in order. */
export function listOption(parsed: ParsedCommandLine, name: string): string[] {
  const value = parsed.values[name];
  if (Array.isArray(value)) return value;
  return typeof value === "string" ? [value] : [];
}

export function flagOption(parsed: ParsedCommandLine, name: string): boolean {
  return parsed.values[name] === true;
}

/**
 * An integer option within `[min, max]`, written in decimal digits (`0x10`, `1e3` and `4.0` are refused:
 * a typo should not quietly become a number); `Infinity` is accepted when `max` is Infinity ("unlimited").
 */
export function integerOption(
  parsed: ParsedCommandLine,
  name: string,
  command: string,
  bounds: { min: number; max?: number },
): number | undefined {
  const text = stringOption(parsed, name);
  if (text === undefined) return undefined;
  const max = bounds.max ?? Number.MAX_SAFE_INTEGER;
  if (max === Number.POSITIVE_INFINITY && /^(inf|infinity|unlimited)$/i.test(text.trim())) return max;
  const value = /^\s*[+-]?\d+\s*$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(value) || value < bounds.min || value > max) {
    const range =
      max === Number.POSITIVE_INFINITY
        ? `>= ${bounds.min} (or unlimited)`
        : max === Number.MAX_SAFE_INTEGER
          ? `>= ${bounds.min}`
          : `from ${bounds.min} to ${max}`;
    throw new UsageError(`--${name} must be an integer ${range}; got ${JSON.stringify(text)}`, command);
  }
  return value;
}

/** A duration option (`250ms`, `10s`, `1m30s`, or a bare number of milliseconds), in milliseconds. */
export function durationOption(parsed: ParsedCommandLine, name: string, command: string): number | undefined {
  const text = stringOption(parsed, name);
  if (text === undefined) return undefined;
  const ms = parseDurationText(text);
  if (ms === undefined || !Number.isFinite(ms)) {
    throw new UsageError(
      `--${name} must be a duration such as 500ms, 10s, 1m30s (or a number of milliseconds); got ${JSON.stringify(text)}`,
      command,
    );
  }
  return ms;
}
