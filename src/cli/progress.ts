/**
 * Live progress and the final summary. On a terminal, one status line redrawn in place; otherwise a
 * plain line every few seconds (for CI logs); nothing at all with `--quiet`. Progress goes to stderr,
 * so stdout carries only job output and `--json` results.
 */
import { formatDuration, formatNumber, type RateSpec } from "./rates.js";
import type { RunStatistics } from "./statistics.js";

/** The limits a run was configured with, as progress and report show them. */
export interface LimitsDescription {
  /** Attempts in flight at once; `Infinity` when unbounded. With `-c auto`, the most (its MAX). */
  readonly concurrency: number;
  /** With `-c auto`: the bounds, and the adaptive limit now (what the live progress shows). */
  readonly adaptive?: { readonly min: number; readonly max: number; readonly current: () => number };
  readonly rates: readonly RateSpec[];
  /** With `--key-field`: each key's own rates (`--rate-per-key`). */
  readonly ratesPerKey?: readonly RateSpec[];
  /** Spacing between starts, ms. */
  readonly minInterval: number | undefined;
  /** Where the limits live: `this process`, or `redis://host:port key NAME`. */
  readonly scope: string;
  /** How the rates count. */
  readonly algorithm: "sliding-window" | "token-bucket";
}

export type ProgressMode = "terminal" | "lines" | "off";

export interface ProgressOptions {
  readonly stream: NodeJS.WriteStream;
  readonly statistics: RunStatistics;
  readonly limits: LimitsDescription;
  readonly mode: ProgressMode;
  /** Between plain lines (mode `lines`). */
  readonly interval: number;
  /** Shown first: `run`, `fetch`, `demo`. */
  readonly label: string;
}

/** Redraws every 200 ms on a terminal: fast enough to feel live, slow enough to cost nothing. */
const TERMINAL_REFRESH = 200;

export class Progress {
  private timer: ReturnType<typeof setInterval> | undefined;
  /** Whether a status line is on the terminal now (and must be erased before other output). */
  private drawn = false;

  constructor(private readonly options: ProgressOptions) {}

  get mode(): ProgressMode {
    return this.options.mode;
  }

  start(): void {
    if (this.options.mode === "off" || this.timer !== undefined) return;
    const every = this.options.mode === "terminal" ? TERMINAL_REFRESH : this.options.interval;
    this.timer = setInterval(() => this.tick(), every);
    // Progress must never be what keeps the process alive.
    this.timer.unref();
    if (this.options.mode === "terminal") this.tick();
  }

  /** Stops redrawing and erases the status line (the summary takes its place). */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.clear();
  }

  /** Erases the status line, so that other output starts on a clean line; the next tick redraws it. */
  clear(): void {
    if (!this.drawn) return;
    this.options.stream.write("\r\x1b[2K");
    this.drawn = false;
  }

  /** Redraws now (after output scrolled the terminal), if progress is live on a terminal. */
  redraw(): void {
    if (this.options.mode === "terminal" && this.timer !== undefined) this.tick();
  }

  private tick(): void {
    const text = statusLine(this.options.statistics, this.options.limits, this.options.label);
    if (this.options.mode === "terminal") {
      // A line wider than the terminal wraps, and `\r` then redraws only its last part: cut it to fit.
      // A pseudo-terminal without a size (script, some CI runners) reports 0 columns: nothing to fit.
      const columns = this.options.stream.columns;
      const width = columns > 0 ? Math.max(20, columns - 1) : Number.POSITIVE_INFINITY;
      this.options.stream.write(`\r\x1b[2K${text.length > width ? `${text.slice(0, width - 1)}…` : text}`);
      this.drawn = true;
    } else {
      this.options.stream.write(`${text}\n`);
    }
  }
}

/**
 * The status line: done/total, start rate against the limit, in flight against the limit, 429s and
 * retries, ETA.
 *
 * @example `sluice run: 1234/5000 done (2 failed), ETA 6 min 17 s · 9.8/s · 10/s: 10 in window · in flight 8/8 · 429s 0 · retries 3`
 * @example `sluice fetch: 800/3000 done, ETA 3 s · 760/s · in flight 17/18 (auto 1-64) · 429s 0 · retries 2` (`-c auto`)
 */
export function statusLine(statistics: RunStatistics, limits: LimitsDescription, label: string): string {
  const total = statistics.total === undefined ? "" : `/${statistics.total}`;
  const eta = statistics.eta();
  const etaText =
    eta !== undefined && statistics.finished < (statistics.total ?? 0) ? `, ETA ${formatDuration(eta)}` : "";
  const parts = [
    `sluice ${label}: ${statistics.finished}${total} done${statistics.failed ? ` (${statistics.failed} failed)` : ""}${etaText}`,
  ];
  parts.push(`${formatNumber(statistics.startRate())}/s`);
  // Against each rate, what its own trailing window holds now: a per-second figure would read as an
  // overshoot whenever a window's allowance is used early, though the limit holds.
  const windows = statistics.windowsNow();
  limits.rates.forEach((rate, index) => {
    const value = formatNumber(windows[index] ?? 0);
    parts.push(
      limits.algorithm === "token-bucket" ? `${rate.text}: bucket ${value}` : `${rate.text}: ${value} in window`,
    );
  });
  if (limits.adaptive !== undefined) {
    // The limit now, not the bound: under `-c auto` the bound is only how far it may go.
    const { min, max, current } = limits.adaptive;
    parts.push(`in flight ${statistics.inFlight}/${current()} (auto ${min}-${max})`);
  } else {
    parts.push(
      `in flight ${statistics.inFlight}${Number.isFinite(limits.concurrency) ? `/${limits.concurrency}` : ""}`,
    );
  }
  parts.push(`429s ${statistics.rateLimited}`, `retries ${statistics.retries}`);
  if (statistics.waitingFor !== undefined) parts.push(`waiting: ${statistics.waitingFor}`);
  return parts.join(" · ");
}

/** The summary printed at the end of a run (a few lines, for people). */
export function summary(
  statistics: RunStatistics,
  limits: LimitsDescription,
  options: { label: string; stopCause: string | undefined },
): string {
  const elapsed = statistics.elapsed();
  const lines: string[] = [];
  const failures = [...statistics.failures].sort((a, b) => b[1] - a[1]);
  const failureText =
    failures.length === 0
      ? ""
      : ` (${failures
          .slice(0, 4)
          .map(([reason, count]) => `${reason}: ${count}`)
          .join(", ")}${failures.length > 4 ? ", …" : ""})`;
  lines.push(
    `sluice ${options.label}: ${statistics.finished} ${statistics.finished === 1 ? "job" : "jobs"} in ${formatDuration(elapsed)}: ` +
      `${statistics.succeeded} succeeded, ${statistics.failed} failed${failureText}`,
  );
  if (options.stopCause !== undefined) {
    lines.push(
      `  ${options.stopCause}: admission stopped; ${statistics.notStarted} read but not started, the rest of the input not read`,
    );
  }
  // No average rate here: divided by the wall time, the first window's burst makes a held `10/s` read
  // as 11.6/s. What proves a limit held is the most any window of it admitted, against the limit.
  const checks = [
    ...limits.rates.map((rate, index) => rateCheck(rate, statistics.peaks()[index] ?? 0, limits.algorithm)),
    ...(limits.ratesPerKey ?? []).map((rate, index) =>
      rateCheck(rate, statistics.perKey?.peaks[index] ?? 0, limits.algorithm, true),
    ),
  ];
  lines.push(
    `  ${statistics.attemptsStarted} started${checks.length ? `; ${checks.join("; ")}` : ""}; ` +
      `in flight at most ${statistics.maxInFlight}${Number.isFinite(limits.concurrency) ? ` of ${limits.concurrency}` : ""}; ` +
      `${statistics.retries} ${statistics.retries === 1 ? "retry" : "retries"}; ${statistics.rateLimited} × 429`,
  );
  const latency = statistics.latency;
  if (latency.count > 0) {
    lines.push(
      `  attempt duration p50 ${formatDuration(latency.quantile(0.5))}, p95 ${formatDuration(latency.quantile(0.95))}, ` +
        `max ${formatDuration(latency.max)}`,
    );
  }
  return `${lines.join("\n")}\n`;
}

/**
 * One rate's check, for the summary: `10/s held: at most 10 started in any 1 s`. A sliding window's
 * promise is the most started in any window of the interval; a token bucket's, the fullest the bucket
 * got (never more than the burst: `burst + rate × span` in any span).
 */
export function rateCheck(
  rate: RateSpec,
  peak: number,
  algorithm: LimitsDescription["algorithm"],
  perKey = false,
): string {
  const held = peak <= rate.limit + 1e-9 ? "held" : "EXCEEDED";
  const what = rate.unit === "requests" ? "started" : rate.unit;
  const name = perKey ? `${rate.text} per key` : rate.text;
  if (algorithm === "token-bucket") {
    return `${name} ${held}: ${perKey ? "a key's" : "the"} bucket at most ${formatNumber(peak)} full of ${formatNumber(rate.limit)}`;
  }
  return `${name} ${held}: at most ${formatNumber(peak)} ${what}${perKey ? " by one key" : ""} in any ${formatDuration(rate.interval)}`;
}
