/**
 * The job command template: `{}` is the input line, `{#}` the job's number, `{name}` (or `{a.b}`) a
 * field of a JSON-lines input record. Substitution fills argument vectors, never a shell string, unless
 * `--shell` asks for one (and then every substituted value is quoted).
 */

import { MAX_KEY_LENGTH } from "../core/keyed.js";

/** One input line, numbered from 1, with its JSON record if the line is a JSON object. */
export interface InputLine {
  readonly line: string;
  readonly number: number;
  readonly record: Readonly<Record<string, unknown>> | undefined;
  /** Why a line that starts like a JSON object (`{`) is not one: the parser's message, with its position. */
  readonly jsonError?: string;
}

/** An input line the template cannot use (not JSON, a field missing). The job fails with this message. */
export class InputError extends Error {
  override readonly name = "InputError";
}

const PLACEHOLDER = /\{(#|[A-Za-z_][\w-]*(?:\.[\w-]+)*)?\}/g;

/** Parses a line as a JSON object record, or returns `undefined` if it is not one. */
export function parseRecord(line: string): Record<string, unknown> | undefined {
  return readLine(line, 0).record;
}

/**
 * Numbers an input line and reads it as a JSON object when it starts like one; a line that starts
 * with `{` but does not parse keeps the parser's message (a broken JSON line must be reported as
 * such, not as a URL or a line without fields).
 */
export function readLine(line: string, number: number): InputLine {
  const trimmed = line.trimStart();
  if (!trimmed.startsWith("{")) return { line, number, record: undefined };
  try {
    const value: unknown = JSON.parse(trimmed);
    const record =
      typeof value === "object" && value !== null && !Array.isArray(value)
        ? (value as Record<string, unknown>)
        : undefined;
    return { line, number, record };
  } catch (error) {
    return { line, number, record: undefined, jsonError: (error as Error).message };
  }
}

/** Why `input` has no fields, for a message that goes on `..., so it has no field X`. */
export function whyNoRecord(input: InputLine): string {
  return input.jsonError === undefined
    ? `line ${input.number} is not a JSON object`
    : `line ${input.number} is not valid JSON (${input.jsonError})`;
}

/** Reads a (dotted) field of a record; `undefined` when any step is missing. */
export function fieldOf(record: Readonly<Record<string, unknown>> | undefined, path: string): unknown {
  let value: unknown = record;
  for (const key of path.split(".")) {
    if (typeof value !== "object" || value === null || !Object.hasOwn(value, key)) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

/**
 * What reads a line's key (`--key-field FIELD`): the field's value, a non-empty string (at most
 * {@link MAX_KEY_LENGTH} characters) or a finite number, as text.
 *
 * @throws InputError naming the line and the field when the line is not a JSON object, lacks the
 *   field, or its value is not a usable key: the line fails on its own, as bad input.
 */
export function keyReader(field: string): (input: InputLine) => string {
  return (input) => {
    const where = `line ${input.number}`;
    if (input.record === undefined) throw new InputError(`${whyNoRecord(input)}, so it has no key field "${field}"`);
    const value = fieldOf(input.record, field);
    if (value === undefined) throw new InputError(`${where} has no key field "${field}"`);
    if (typeof value === "number" && Number.isFinite(value)) return String(value);
    if (typeof value !== "string") {
      throw new InputError(
        `${where}: the key field "${field}" must be a string or a number; got ${JSON.stringify(value)}`,
      );
    }
    if (value === "") throw new InputError(`${where}: the key field "${field}" is empty`);
    if (value.length > MAX_KEY_LENGTH) {
      throw new InputError(
        `${where}: the key field "${field}" is longer than ${MAX_KEY_LENGTH} characters (${value.length}, starting ${JSON.stringify(value.slice(0, 32))})`,
      );
    }
    return value;
  };
}

/** The argument vector of a job command with its placeholders. */
export class CommandTemplate {
  /** Named fields the template reads: input lines must then be JSON objects that have them. */
  readonly fields: readonly string[];
  private readonly argv: readonly string[];
  private readonly shell: boolean;
  /** Without any placeholder the line is appended as the last argument, as xargs and parallel do. */
  private readonly appendLine: boolean;

  constructor(argv: readonly string[], options: { shell?: boolean } = {}) {
    if (argv.length === 0) throw new RangeError("the job command is empty");
    this.shell = options.shell ?? false;
    this.argv = this.shell ? [argv.join(" ")] : argv;
    const fields = new Set<string>();
    let placeholders = 0;
    for (const argument of this.argv) {
      for (const match of argument.matchAll(PLACEHOLDER)) {
        placeholders++;
        const name = match[1];
        if (name !== undefined && name !== "#") fields.add(name);
      }
    }
    this.fields = [...fields];
    this.appendLine = placeholders === 0;
  }

  /**
   * The program and its arguments for one input line.
   *
   * @throws InputError when the template reads fields and the line is not a JSON object that has them.
   */
  expand(input: InputLine): { file: string; args: string[] } {
    const substitute = (argument: string) =>
      argument.replace(PLACEHOLDER, (_, name: string | undefined) => {
        const value = this.valueFor(input, name);
        return this.shell ? quoteForShell(value) : value;
      });
    const expanded = this.argv.map(substitute);
    if (this.shell) {
      const script = this.appendLine ? `${expanded[0]} ${quoteForShell(input.line)}` : (expanded[0] as string);
      return { file: "/bin/sh", args: ["-c", script] };
    }
    if (this.appendLine) expanded.push(input.line);
    return { file: expanded[0] as string, args: expanded.slice(1) };
  }

  private valueFor(input: InputLine, name: string | undefined): string {
    if (name === undefined) return input.line;
    if (name === "#") return String(input.number);
    if (input.record === undefined) throw new InputError(`${whyNoRecord(input)}, so it has no field {${name}}`);
    const value = fieldOf(input.record, name);
    if (value === undefined) throw new InputError(`line ${input.number} has no field {${name}}`);
    return typeof value === "string" ? value : JSON.stringify(value);
  }
}

/** Single-quotes a value for /bin/sh: nothing inside single quotes is special except the quote itself. */
export function quoteForShell(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}
