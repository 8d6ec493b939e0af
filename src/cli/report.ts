/**
 * `--report FILE.html`: one self-contained page (no network, no external file) showing that the limits
 * held: in flight and start rate over time against the limits, the busiest window of each rate, the
 * latency distribution, and 429s and retries. The data is embedded as JSON; a small inline script draws
 * it as SVG, so the file opens anywhere a browser does.
 */
import type { LimitsDescription } from "./progress.js";
import { formatDuration, perSecond } from "./rates.js";
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
    /** Per rate, per bin: the busiest trailing window seen at a start in the bin. */
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

const STYLE = `
:root { --fg:#1d2330; --muted:#5b6475; --grid:#e4e7ee; --accent:#2563eb; --limit:#dc2626; --ok:#15803d; --warn:#b45309; --bg:#fff; --card:#f6f7fa; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1100px; padding: 24px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
h1 { font-size: 22px; margin: 0 0 4px; } h1 span { font-size: 14px; padding: 2px 8px; border-radius: 10px; vertical-align: middle; }
h1 .ok { background: #dcfce7; color: var(--ok); } h1 .bad { background: #fee2e2; color: var(--limit); }
h2 { font-size: 16px; margin: 0 0 4px; }
.command code { background: var(--card); padding: 2px 6px; border-radius: 4px; word-break: break-all; }
.meta, footer { color: var(--muted); } footer { margin-top: 24px; font-size: 12px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 8px; margin: 16px 0; }
.card { background: var(--card); border-radius: 8px; padding: 10px 12px; }
.card .value { font-size: 20px; font-weight: 600; } .card .label { color: var(--muted); font-size: 12px; }
.card.bad .value { color: var(--limit); } .card.ok .value { color: var(--ok); }
.comparison { background: #fff7ed; border-left: 4px solid var(--warn); padding: 8px 12px; margin: 8px 0 16px; }
.charts { display: grid; grid-template-columns: 1fr; gap: 16px; }
@media (min-width: 900px) { .charts { grid-template-columns: 1fr 1fr; } #window-charts { display: contents; } }
figure { margin: 0; background: var(--bg); border: 1px solid var(--grid); border-radius: 8px; padding: 10px; }
figcaption { font-weight: 600; margin-bottom: 4px; } .legend { color: var(--muted); font-size: 12px; margin-top: 2px; }
.legend i { display: inline-block; width: 14px; height: 3px; vertical-align: middle; margin: 0 4px 0 10px; }
svg { display: block; width: 100%; height: auto; } svg text { font-size: 11px; fill: var(--muted); }
.empty { color: var(--muted); padding: 40px 0; text-align: center; }
`;

/**
 * The page's drawing code (plain ES2017, no dependencies). Each chart sets `data-rendered` on its
 * container with the number of marks drawn, which the browser test reads.
 */
const SCRIPT = String.raw`
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("sluice-data").textContent);
  var NS = "http://www.w3.org/2000/svg";
  var W = 520, H = 220, L = 48, R = 12, T = 12, B = 30;
  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    for (var key in attrs) node.setAttribute(key, attrs[key]);
    if (parent) parent.appendChild(node);
    return node;
  }
  function fmt(v) {
    if (!isFinite(v)) return String(v);
    var a = Math.abs(v);
    if (a >= 1e6) return +(v / 1e6).toPrecision(3) + "M";
    if (a >= 1e4) return +(v / 1e3).toPrecision(3) + "k";
    if (a >= 100 || Math.round(v) === v) return String(Math.round(v));
    return String(+v.toPrecision(3));
  }
  function timeFormat(v) { return fmt(v) + " s"; }
  function fmtMs(ms) {
    if (ms < 1000) return fmt(ms) + " ms";
    if (ms < 60000) return fmt(ms / 1000) + " s";
    return fmt(ms / 60000) + " min";
  }
  function niceMax(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v))), m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }
  // A chart frame: axes, grid, ticks. Returns scales and the svg.
  function frame(container, xMax, yMax, xLabel, xFormat) {
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img" }, container);
    var x = function (v) { return L + (v / (xMax || 1)) * (W - L - R); };
    var y = function (v) { return H - B - (v / yMax) * (H - T - B); };
    for (var i = 0; i <= 4; i++) {
      var v = (yMax * i) / 4;
      el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e4e7ee" }, svg);
      el("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, svg).textContent = fmt(v);
    }
    // Round steps (1, 2 or 5 times a power of ten) when the axis is time; evenly spaced otherwise.
    var step = xFormat === timeFormat ? niceMax(xMax / 6) : xMax / 5;
    for (var xv = 0; xv <= xMax + 1e-9 && step > 0; xv += step) {
      var anchor = xv === 0 ? "start" : x(xv) > W - R - 20 ? "end" : "middle";
      el("text", { x: x(xv), y: H - B + 16, "text-anchor": anchor }, svg).textContent = (xFormat || fmt)(+xv.toPrecision(6));
    }
    el("text", { x: W - R, y: H - 2, "text-anchor": "end" }, svg).textContent = xLabel;
    el("line", { x1: L, x2: L, y1: T, y2: H - B, stroke: "#9aa3b2" }, svg);
    el("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#9aa3b2" }, svg);
    return { svg: svg, x: x, y: y };
  }
  function limitLine(f, value, label) {
    el("line", { class: "limit", x1: L, x2: W - R, y1: f.y(value), y2: f.y(value), stroke: "#dc2626", "stroke-width": 1.5, "stroke-dasharray": "6 4" }, f.svg);
    el("text", { x: W - R - 2, y: f.y(value) - 4, "text-anchor": "end", style: "fill:#dc2626" }, f.svg).textContent = label;
  }
  function legend(container, items) {
    var div = document.createElement("div");
    div.className = "legend";
    items.forEach(function (item) {
      var swatch = document.createElement("i");
      swatch.style.background = item[1];
      div.appendChild(swatch);
      div.appendChild(document.createTextNode(item[0]));
    });
    container.appendChild(div);
  }
  function empty(container, text) {
    var div = document.createElement("div");
    div.className = "empty";
    div.textContent = text;
    container.appendChild(div);
    container.setAttribute("data-rendered", "0");
  }
  var bins = data.series.starts.length, binMs = data.binMs, seconds = (bins * binMs) / 1000;
  // A step line over the bins of the timeline; \`null\` values leave a gap.
  function stepLine(f, values, scale, color, cls) {
    var d = "", n = 0, open = false;
    values.forEach(function (v, i) {
      if (v === null) { open = false; return; }
      var x0 = f.x((i * binMs * scale) / 1000), x1 = f.x(((i + 1) * binMs * scale) / 1000), yv = f.y(v);
      d += (open ? "L" : "M") + x0.toFixed(1) + " " + yv.toFixed(1) + "L" + x1.toFixed(1) + " " + yv.toFixed(1);
      open = true;
      n++;
    });
    el("path", { class: "series " + cls, d: d, fill: "none", stroke: color, "stroke-width": 1.8 }, f.svg);
    return n;
  }
  // One bar per value, value i spanning [i × slot, (i + 1) × slot) in x units (clipped to the axis).
  function bars(f, values, slot, color, cls, offset, widthShare) {
    var n = 0;
    values.forEach(function (v, i) {
      if (!(v > 0)) return;
      var x0 = f.x((i + (offset || 0)) * slot), x1 = Math.min(f.x((i + (offset || 0) + (widthShare || 1)) * slot), W - R);
      el("rect", { class: "bar " + cls, x: x0.toFixed(2), y: f.y(v).toFixed(2), width: Math.max(0.8, x1 - x0 - 0.3).toFixed(2), height: (H - B - f.y(v)).toFixed(2), fill: color }, f.svg);
      n++;
    });
    return n;
  }
  function card(value, label, state) {
    var div = document.createElement("div");
    div.className = "card" + (state ? " " + state : "");
    div.innerHTML = '<div class="value"></div><div class="label"></div>';
    div.firstChild.textContent = value;
    div.lastChild.textContent = label;
    document.getElementById("cards").appendChild(div);
  }
  var t = data.totals, lim = data.limits, bucket = lim.algorithm === "token-bucket";
  card(fmt(t.jobs), "jobs finished");
  card(fmt(t.failed), "failed", t.failed > 0 ? "bad" : "ok");
  card(fmtMs(data.durationMs), "wall time");
  card(fmt(data.durationMs > 0 ? (t.attempts * 1000) / data.durationMs : 0) + "/s", "average start rate");
  card(t.maxInFlight + (lim.concurrency === null ? "" : " / " + lim.concurrency), "most in flight" + (lim.concurrency === null ? "" : " / limit"), lim.concurrency !== null && t.maxInFlight > lim.concurrency ? "bad" : "");
  lim.rates.forEach(function (rate) {
    var what = bucket ? "fullest token bucket" : "busiest " + fmtMs(rate.intervalMs) + " window";
    card(fmt(rate.peak) + " / " + fmt(rate.limit), what + " (" + rate.unit + ")", rate.peak > rate.limit ? "bad" : "ok");
  });
  card(fmt(t.rateLimited), "429 answers", t.rateLimited > 0 ? "bad" : "ok");
  card(fmt(t.retries), "retries");
  card(fmtMs(data.latency.p50) + " / " + fmtMs(data.latency.p95), "duration p50 / p95");

  // 1. In flight against the concurrency limit.
  (function () {
    var box = document.getElementById("chart-concurrency");
    if (bins === 0) return empty(box, "no jobs ran");
    var top = Math.max.apply(null, data.series.maxInFlight.concat([lim.concurrency || 0, 1]));
    var f = frame(box, seconds, niceMax(top * 1.1), "time", timeFormat);
    if (lim.concurrency !== null) limitLine(f, lim.concurrency, "limit " + lim.concurrency);
    var n = stepLine(f, data.series.maxInFlight, 1, "#2563eb", "in-flight");
    legend(box, [["most in flight per " + fmtMs(binMs), "#2563eb"]].concat(lim.concurrency !== null ? [["concurrency limit", "#dc2626"]] : []));
    box.setAttribute("data-rendered", String(n));
  })();

  // 2. Starts per bar against the request rate. A bar spans at most one window of the rate (a whole
  // number of bins), so a bar can never hold more than the limit when the limit held; bars narrower
  // than the window would show the early use of a window's allowance as an overshoot.
  (function () {
    var box = document.getElementById("chart-rate");
    if (bins === 0) return empty(box, "no jobs ran");
    var requestRates = lim.rates.filter(function (r) { return r.unit === "requests"; });
    var rate = requestRates.sort(function (a, b) { return a.intervalMs - b.intervalMs; })[0];
    // Without a request rate, bars of up to 1 s, narrower for short runs (about 20 bars at least).
    var target = rate ? rate.intervalMs : Math.min(1000, Math.max(binMs, (bins * binMs) / 20));
    var group = Math.max(1, Math.floor(target / binMs)), width = group * binMs;
    var counts = [];
    for (var i = 0; i < bins; i += group) {
      var sum = 0;
      for (var j = i; j < Math.min(bins, i + group); j++) sum += data.series.starts[j];
      counts.push(sum);
    }
    var limits = [];
    // A bar wider than the window (long runs merge bins) may hold one limit per window it touches.
    // A token bucket lets a full burst through on top of a window's refill.
    if (rate) limits.push([rate.limit * (Math.ceil(width / rate.intervalMs - 1e-9) + (bucket ? 1 : 0)), rate.text]);
    if (lim.minIntervalMs) limits.push([Math.floor(width / lim.minIntervalMs) + 1, "spacing " + fmtMs(lim.minIntervalMs)]);
    var top = Math.max.apply(null, counts.concat(limits.map(function (l) { return l[0]; })).concat([1]));
    var f = frame(box, Math.max(seconds, (counts.length * width) / 1000), niceMax(top * 1.1), "time", timeFormat);
    limits.forEach(function (l) { limitLine(f, l[0], l[1] + ": at most " + fmt(l[0])); });
    var n = bars(f, counts, width / 1000, "#60a5fa", "starts", 0.04, 0.92);
    legend(box, [["starts per " + fmtMs(width), "#60a5fa"]].concat(limits.length ? [["allowed per " + fmtMs(width), "#dc2626"]] : []));
    box.setAttribute("data-rendered", String(n));
  })();

  // 3. Per rate: the busiest trailing window against the limit (the exact check of the promise).
  lim.rates.forEach(function (rate, index) {
    var fig = document.createElement("figure");
    fig.innerHTML = "<figcaption></figcaption>";
    fig.firstChild.textContent = bucket
      ? "Token bucket level, " + rate.unit + " (" + rate.text + ": burst " + fmt(rate.limit) + ", refill " + fmt(rate.limit) + " per " + fmtMs(rate.intervalMs) + ")"
      : "Busiest " + fmtMs(rate.intervalMs) + " window, " + rate.unit + " (" + rate.text + ")";
    var box = document.createElement("div");
    box.className = "chart window-chart";
    fig.appendChild(box);
    document.getElementById("window-charts").appendChild(fig);
    // Only bins with a start have a measured window: the line has gaps where nothing started.
    var values = data.series.windows[index].map(function (v, i) { return data.series.starts[i] > 0 ? v : null; });
    if (bins === 0) return empty(box, "no jobs ran");
    var top = Math.max.apply(null, data.series.windows[index].concat([rate.limit]));
    var f = frame(box, seconds, niceMax(top * 1.1), "time", timeFormat);
    limitLine(f, rate.limit, "limit " + fmt(rate.limit));
    var n = stepLine(f, values, 1, "#7c3aed", "window");
    var measured = bucket ? "bucket level after each start" : rate.unit + " started in the trailing " + fmtMs(rate.intervalMs) + ", at each start";
    legend(box, [[measured + " (peak " + fmt(rate.peak) + ")", "#7c3aed"], [bucket ? "burst" : "limit", "#dc2626"]]);
    box.setAttribute("data-rendered", String(n));
  });

  // 4. Latency histogram (logarithmic buckets).
  (function () {
    var box = document.getElementById("chart-latency");
    var buckets = data.latency.buckets;
    if (buckets.length === 0) return empty(box, "no attempts finished");
    var counts = buckets.map(function (b) { return b.count; });
    var f = frame(box, buckets.length, niceMax(Math.max.apply(null, counts) * 1.1), "attempt duration", function () { return ""; });
    // Each bar is one logarithmic bucket; label its upper bound, thinned out to about six labels.
    var every = Math.max(1, Math.ceil(buckets.length / 6)), w = (W - L - R) / buckets.length;
    buckets.forEach(function (b, i) {
      if (i % every !== 0 && i !== buckets.length - 1) return;
      el("text", { x: (L + (i + 0.5) * w).toFixed(1), y: H - B + 16, "text-anchor": "middle" }, f.svg).textContent = "≤" + fmtMs(b.upperMs);
    });
    var n = bars(f, counts, 1, "#0d9488", "latency", 0.05, 0.9);
    legend(box, [["attempts per duration bucket · p50 " + fmtMs(data.latency.p50) + " · p95 " + fmtMs(data.latency.p95) + " · p99 " + fmtMs(data.latency.p99) + " · max " + fmtMs(data.latency.max), "#0d9488"]]);
    box.setAttribute("data-rendered", String(n));
  })();

  // 5. 429s and retries over time.
  (function () {
    var box = document.getElementById("chart-429");
    if (bins === 0) return empty(box, "no jobs ran");
    var top = Math.max.apply(null, data.series.rateLimited.concat(data.series.retries).concat([1]));
    var f = frame(box, seconds, niceMax(top * 1.1), "time", timeFormat);
    var slot = binMs / 1000;
    var n = bars(f, data.series.rateLimited, slot, "#dc2626", "rate-limited", 0, 0.5) + bars(f, data.series.retries, slot, "#f59e0b", "retries", 0.5, 0.5);
    if (t.rateLimited === 0 && t.retries === 0) {
      el("text", { x: (L + W - R) / 2, y: (T + H - B) / 2, "text-anchor": "middle", style: "font-size:14px;fill:#15803d" }, f.svg).textContent = "no 429s, no retries";
    }
    legend(box, [["429 answers (" + t.rateLimited + ")", "#dc2626"], ["retries (" + t.retries + ")", "#f59e0b"]]);
    // The axes count as the drawing when there is nothing to mark.
    box.setAttribute("data-rendered", String(Math.max(n, 1)));
  })();
  document.body.setAttribute("data-charts-ready", "true");
})();
`;
