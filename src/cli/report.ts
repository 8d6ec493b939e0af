/**
 * `--report FILE.html`: one self-contained page (no network, no external file) showing that the limits
 * held: in flight and start rate over time against the limits, the busiest window of each rate, the
 * latency distribution, and 429s and retries. The data is embedded as JSON; a small inline script
 * (report-page.ts) draws it as SVG, so the file opens anywhere a browser does.
 */
import type { LimitsDescription } from "./progress.js";
import { formatDuration, perSecond } from "./rates.js";
import { SCRIPT, STYLE } from "./report-page.js";
import type { RunStatistics } from "./statistics.js";

export interface ReportInput {
  readonly statistics: RunStatistics;
  readonly limits: LimitsDescription;
  /** The command line that ran. */
  readonly title: string;
  readonly label: string;
  readonly interrupted: boolean;
  /** When the report was made; defaults to now. */
  readonly date?: Date;
  /** A second run to show beside this one (the demo's "without sluice" contrast). */
  readonly comparison?: { readonly heading: string; readonly text: string };
}

/** The data the page's script draws, as plain JSON. */
export interface ReportData {
  readonly title: string;
  readonly label: string;
  readonly date: string;
  readonly interrupted: boolean;
  readonly durationMs: number;
  readonly binMs: number;
  readonly limits: {
    readonly concurrency: number | null;
    readonly minIntervalMs: number | null;
    readonly scope: string;
    readonly algorithm: "sliding-window" | "token-bucket";
    readonly rates: {
      text: string;
      limit: number;
      intervalMs: number;
      unit: string;
      perSecond: number;
      peak: number;
    }[];
  };
  readonly totals: Record<string, number>;
  readonly series: {
    readonly starts: number[];
    readonly finishes: number[];
    readonly failures: number[];
    readonly retries: number[];
    readonly rateLimited: number[];
    readonly maxInFlight: number[];
    /** Per rate, per bin: the most its trailing window (or bucket level) held during the bin. */
    readonly windows: number[][];
  };
  readonly latency: {
    readonly buckets: { upperMs: number; count: number }[];
    readonly p50: number;
    readonly p95: number;
    readonly p99: number;
    readonly max: number;
  };
  readonly comparison: { readonly heading: string; readonly text: string } | null;
}

/** Collects what the page shows from a finished run. */
export function reportData(input: ReportInput): ReportData {
  const { statistics, limits } = input;
  const bins = statistics.timeline.bins;
  const peaks = statistics.peaks();
  const histogram = statistics.latency;
  let first = histogram.counts.findIndex((count) => count > 0);
  let last = histogram.counts.length - 1 - [...histogram.counts].reverse().findIndex((count) => count > 0);
  if (first === -1) {
    first = 0;
    last = -1;
  }
  const buckets: { upperMs: number; count: number }[] = [];
  for (let bucket = first; bucket <= last; bucket++) {
    buckets.push({ upperMs: round(histogram.upperBound(bucket)), count: histogram.counts[bucket] as number });
  }
  const quantile = (q: number) => (histogram.count === 0 ? 0 : round(histogram.quantile(q)));
  return {
    title: input.title,
    label: input.label,
    date: (input.date ?? new Date()).toISOString(),
    interrupted: input.interrupted,
    durationMs: round(statistics.elapsed()),
    binMs: statistics.timeline.binWidth,
    limits: {
      concurrency: Number.isFinite(limits.concurrency) ? limits.concurrency : null,
      minIntervalMs: limits.minInterval ?? null,
      scope: limits.scope,
      algorithm: limits.algorithm,
      rates: limits.rates.map((rate, index) => ({
        text: rate.text,
        limit: rate.limit,
        intervalMs: rate.interval,
        unit: rate.unit,
        perSecond: perSecond(rate),
        peak: peaks[index] ?? 0,
      })),
    },
    totals: {
      jobs: statistics.finished,
      succeeded: statistics.succeeded,
      failed: statistics.failed,
      attempts: statistics.attemptsStarted,
      retries: statistics.retries,
      rateLimited: statistics.rateLimited,
      maxInFlight: statistics.maxInFlight,
      notStarted: statistics.notStarted,
    },
    series: {
      starts: bins.map((bin) => bin.starts),
      finishes: bins.map((bin) => bin.finishes),
      failures: bins.map((bin) => bin.failures),
      retries: bins.map((bin) => bin.retries),
      rateLimited: bins.map((bin) => bin.rateLimited),
      maxInFlight: bins.map((bin) => bin.maxInFlight),
      windows: limits.rates.map((_, index) => bins.map((bin) => round(bin.window[index] ?? 0))),
    },
    latency: {
      buckets,
      p50: quantile(0.5),
      p95: quantile(0.95),
      p99: quantile(0.99),
      max: round(histogram.count === 0 ? 0 : histogram.max),
    },
    comparison: input.comparison ?? null,
  };
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

/** JSON that is safe inside a `<script>` element (no `</script>`, no `<!--`). */
function embed(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, "\\u003c")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The whole HTML page. */
export function renderReport(input: ReportInput): string {
  const data = reportData(input);
  const held = verdict(data);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>sluice ${escapeHtml(data.label)} report</title>
<style>${STYLE}</style>
</head>
<body>
<header>
<h1>sluice ${escapeHtml(data.label)} <span class="${held.ok ? "ok" : "bad"}">${escapeHtml(held.text)}</span></h1>
<p class="command"><code>${escapeHtml(data.title)}</code></p>
<p class="meta">${escapeHtml(data.date)} · limits in ${escapeHtml(data.limits.scope)} · ${escapeHtml(formatDuration(data.durationMs))}${data.interrupted ? " · <b>interrupted</b>" : ""}</p>
</header>
<section class="cards" id="cards"></section>
${data.comparison === null ? "" : `<section class="comparison"><h2>${escapeHtml(data.comparison.heading)}</h2><p>${escapeHtml(data.comparison.text)}</p></section>`}
<section class="charts">
<figure><figcaption>In flight over time</figcaption><div class="chart" id="chart-concurrency"></div></figure>
<figure><figcaption>Starts over time</figcaption><div class="chart" id="chart-rate"></div></figure>
<div id="window-charts"></div>
<figure><figcaption>Attempt duration (latency) distribution</figcaption><div class="chart" id="chart-latency"></div></figure>
<figure><figcaption>429 answers and retries over time</figcaption><div class="chart" id="chart-429"></div></figure>
</section>
<footer>Made by <code>sluice --report</code>. Self-contained: no network, no external files.</footer>
<script type="application/json" id="sluice-data">${embed(data)}</script>
<script>${SCRIPT}</script>
</body>
</html>
`;
}

/** The headline: did every limit hold? */
export function verdict(data: ReportData): { ok: boolean; text: string } {
  const overRates = data.limits.rates.filter((rate) => rate.peak > rate.limit + 1e-9);
  const overConcurrency = data.limits.concurrency !== null && data.totals["maxInFlight"]! > data.limits.concurrency;
  const limited =
    data.limits.rates.length > 0 || data.limits.concurrency !== null || data.limits.minIntervalMs !== null;
  if (overRates.length > 0 || overConcurrency) return { ok: false, text: "limits exceeded" };
  const rateLimited = data.totals["rateLimited"] ?? 0;
  if (rateLimited > 0) return { ok: false, text: `the server answered 429 × ${rateLimited}` };
  if (!limited) return { ok: true, text: "no limits set" };
  return { ok: true, text: "limits held · 0 × 429" };
}
