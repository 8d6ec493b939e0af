/**
 * The values of a parsed command line, each checked as it is read: integers in decimal digits within
 * bounds, durations in seconds unless a unit is given, with every failure a {@link UsageError} that
 * names the option as the user typed it (`--lease`, `-c (--concurrency)`) and the value.
 */
import { parseDurationText } from "../core/duration.js";
import { DURATION_RULE, type ParsedCommandLine, UsageError } from "./command-line.js";

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** Durations people mean, for bounds: `DAY`, `HOUR`, ... in milliseconds. */
export const DURATIONS = { SECOND, MINUTE, HOUR, DAY } as const;

/**
 * A duration as the command line reads it, in milliseconds, or `undefined` when `text` is not one.
 * A bare number is seconds, as `timeout 10`, `sleep 10` and `curl --max-time 10` read it; `250ms`,
 * `10s`, `1m30s`, `1h`, `1d` carry their unit. (The library's API takes milliseconds: programs are
 * written by people who read its types, command lines by people who type them.)
 */
export function parseCommandLineDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (/^(\d+(\.\d*)?|\.\d+)$/.test(trimmed)) return Number(trimmed) * SECOND;
  const ms = parseDurationText(trimmed);
  return ms === undefined || !Number.isFinite(ms) ? undefined : ms;
}

/** A duration in the command line's own syntax, for messages: `1d`, `90s`, `250ms`. */
export function durationText(ms: number): string {
  for (const [unit, size] of [
    ["d", DAY],
    ["h", HOUR],
    ["m", MINUTE],
    ["s", SECOND],
  ] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** The range a number option accepts. */
export interface Bounds {
  readonly min: number;
  readonly max: number;
  /** Accept `unlimited` (or `inf`) as Infinity. */
  readonly unlimited?: boolean;
  /** Said after the range when the value is outside it: why the bound is where it is. */
  readonly why?: string;
}

/** Typed, checked reads of one parsed command line. */
export class OptionValues {
  constructor(
    private readonly parsed: ParsedCommandLine,
    /** The command, for the `Run 'sluice COMMAND --help'` hint. */
    readonly command: string,
  ) {}

  /** A usage error about this command line. */
  error(message: string): UsageError {
    return new UsageError(message, this.command);
  }

  /** The option as the user wrote it (`--lease`, `-c (--concurrency)`); `--NAME` when not given. */
  typed(name: string): string {
    return this.parsed.spelled.get(name) ?? `--${name}`;
  }

  /** Whether the option was given at all. */
  given(name: string): boolean {
    return this.parsed.values[name] !== undefined;
  }

  /** A string option's value (the last one if given several times), or `undefined`. */
  string(name: string): string | undefined {
    const value = this.parsed.values[name];
    if (Array.isArray(value)) return value[value.length - 1];
    return typeof value === "string" ? value : undefined;
  }

  /** Every value of a repeatable option, in order. */
  list(name: string): string[] {
    const value = this.parsed.values[name];
    if (Array.isArray(value)) return value;
    return typeof value === "string" ? [value] : [];
  }

  flag(name: string): boolean {
    return this.parsed.values[name] === true;
  }

  /** The job command (everything after the options, or after `--`). */
  get jobCommand(): readonly string[] {
    return this.parsed.command;
  }

  /**
   * An integer option within `bounds`, written in decimal digits: `0x10`, `1e3` and `4.0` are refused,
   * so that a typo never quietly becomes a number.
   */
  integer(name: string, bounds: Bounds): number | undefined {
    const text = this.string(name);
    if (text === undefined) return undefined;
    if (bounds.unlimited && /^(inf|infinity|unlimited)$/i.test(text.trim())) return Number.POSITIVE_INFINITY;
    const value = /^\s*[+-]?\d+\s*$/.test(text) ? Number(text) : Number.NaN;
    if (Number.isInteger(value) && value >= bounds.min && value <= bounds.max) return value;
    const range = bounds.max === Number.MAX_SAFE_INTEGER ? `>= ${bounds.min}` : `from ${bounds.min} to ${bounds.max}`;
    throw this.error(
      `${this.typed(name)} must be an integer ${range}${bounds.unlimited ? " (or unlimited)" : ""}; got ${JSON.stringify(text)}${whyText(bounds)}`,
    );
  }

  /**
   * A fixed value or a range `MIN..MAX` of integers or durations (`20ms..80ms`), each within `bounds`.
   */
  range(name: string, kind: "integer" | "duration", bounds: Bounds): number | { min: number; max: number } | undefined {
    const text = this.string(name);
    if (text === undefined) return undefined;
    const parts = text.split("..");
    if (parts.length > 2)
      throw this.error(`${this.typed(name)} must be a value or MIN..MAX; got ${JSON.stringify(text)}`);
    const [min, max] = parts.map((part) => this.checked(name, part, kind, bounds)) as [number, number | undefined];
    if (max === undefined) return min;
    if (max < min) throw this.error(`${this.typed(name)}: the range ${JSON.stringify(text)} ends before it starts`);
    return { min, max };
  }

  private checked(name: string, text: string, kind: "integer" | "duration", bounds: Bounds): number {
    const reader = new OptionValues(
      { values: { [name]: text }, spelled: new Map([[name, this.typed(name)]]), command: [], help: false },
      this.command,
    );
    return (kind === "integer" ? reader.integer(name, bounds) : reader.duration(name, bounds)) as number;
  }

  /** A duration option in milliseconds (see {@link parseCommandLineDuration}), within `bounds`. */
  duration(name: string, bounds: Bounds): number | undefined {
    const text = this.string(name);
    if (text === undefined) return undefined;
    const ms = parseCommandLineDuration(text);
    if (ms === undefined) {
      throw this.error(
        `${this.typed(name)} must be a duration such as 30, 500ms, 10s or 1m30s (${DURATION_RULE}); got ${JSON.stringify(text)}`,
      );
    }
    if (ms < bounds.min || ms > bounds.max) {
      const range =
        bounds.min === 0
          ? `at most ${durationText(bounds.max)}`
          : `from ${durationText(bounds.min)} to ${durationText(bounds.max)}`;
      throw this.error(`${this.typed(name)} must be ${range}; got ${JSON.stringify(text)}${whyText(bounds)}`);
    }
    return ms;
  }
}

function whyText(bounds: Bounds): string {
  return bounds.why === undefined ? "" : ` (${bounds.why})`;
}
