/**
 * The report page's style and drawing script, inlined into the one HTML file `--report` writes.
 *
 * Hand-drawn SVG rather than a charting library (uPlot was weighed): five simple charts need about
 * 300 lines, where a library adds ~50 KB to every report and to the command, and draws its axes on a
 * canvas, whose labels neither a reader can select nor a test can measure. What a library would bring
 * is done here: a value under the pointer on every chart, and axis labels laid out, then thinned
 * until no two overlap (measured with getBBox, whatever the fonts); every time axis ends where the
 * run ended.
 */

export const STYLE = `
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
.tip { position: absolute; display: none; pointer-events: none; white-space: pre; background: #1d2330; color: #fff; font-size: 12px; padding: 4px 8px; border-radius: 4px; }
`;

/**
 * The drawing code (plain ES2017, no dependencies). Each chart sets `data-rendered` on its container
 * with the number of marks drawn, and its svg carries `data-x-max` (the end of its x axis, in the
 * axis's unit): the browser test reads both.
 */
export const SCRIPT = String.raw`
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
  function fmtS(v) { return fmt(v) + " s"; }
  function fmtMs(ms) {
    if (ms < 1000) return fmt(ms) + " ms";
    if (ms < 60000) return fmt(ms / 1000) + " s";
    return fmt(ms / 60000) + " min";
  }
  // 1, 2 or 5 times a power of ten, at least v.
  function nice(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v))), m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }
  // Every time axis ends where the run ended: the last bin (and bar) is cut there, never drawn whole.
  var seconds = Math.max(data.durationMs, 1) / 1000, binMs = data.binMs, bins = data.series.starts.length;
  function binEnd(i, width) { return Math.max(i * width, Math.min((i + 1) * width, data.durationMs)) / 1000; }

  // Drops each label that would overlap the one kept before it (4 px apart at least), left to right:
  // labels never collide, whatever the fonts and the data.
  function thin(labels) {
    var last = null;
    labels.forEach(function (label) {
      var box = label.getBBox();
      if (last !== null && box.x < last.x + last.width + 4) label.parentNode.removeChild(label);
      else last = box;
    });
  }
  // A label under the x axis, centred on x but kept within the plot's width.
  function xLabel(svg, x, text) {
    var label = el("text", { class: "x-tick", x: x.toFixed(1), y: H - B + 17, "text-anchor": "middle" }, svg);
    label.textContent = text;
    var box = label.getBBox();
    if (box.x < L) {
      label.setAttribute("x", L);
      label.setAttribute("text-anchor", "start");
    } else if (box.x + box.width > W - R) {
      label.setAttribute("x", W - R);
      label.setAttribute("text-anchor", "end");
    }
    return label;
  }
  // A chart frame: axes, grid, y ticks; x ticks in seconds unless xTicks is false. Returns the scales.
  // (No axis caption: the ticks carry their unit, and the figure's caption says what is drawn.)
  // The y axis rises to a round number above \`top\`, in round steps (counts are never 1.25).
  function frame(container, xMax, top, xTicks) {
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "data-x-max": String(xMax) }, container);
    var step = top >= 1 ? Math.max(1, nice(top / 4)) : nice(top / 4);
    var yMax = step * Math.max(1, Math.ceil(top / step - 1e-9));
    var x = function (v) { return L + (v / (xMax || 1)) * (W - L - R); };
    var y = function (v) { return H - B - (v / yMax) * (H - T - B); };
    for (var v = 0; v <= yMax + 1e-9; v += step) {
      el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e4e7ee" }, svg);
      el("text", { class: "y-tick", x: L - 6, y: y(v) + 4, "text-anchor": "end" }, svg).textContent = fmt(+v.toPrecision(6));
    }
    if (xTicks !== false) {
      var step = nice(xMax / 6), labels = [];
      for (var t = 0; t <= xMax + 1e-9; t += step) labels.push(xLabel(svg, x(t), fmtS(+t.toPrecision(6))));
      thin(labels);
    }
    el("line", { x1: L, x2: L, y1: T, y2: H - B, stroke: "#9aa3b2" }, svg);
    el("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#9aa3b2" }, svg);
    return { svg: svg, x: x, y: y, xMax: xMax, xAt: function (px) { return ((px - L) / (W - L - R)) * xMax; } };
  }
  function limitLine(f, value, label) {
    el("line", { class: "limit", x1: L, x2: W - R, y1: f.y(value), y2: f.y(value), stroke: "#dc2626", "stroke-width": 1.5, "stroke-dasharray": "6 4" }, f.svg);
    el("text", { class: "limit-label", x: W - R - 2, y: f.y(value) - 4, "text-anchor": "end", style: "fill:#dc2626" }, f.svg).textContent = label;
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
  // One unbroken step line over the bins of the timeline, cut at the run's end.
  function stepLine(f, values, color, cls) {
    var d = "";
    values.forEach(function (v, i) {
      var x0 = f.x((i * binMs) / 1000), x1 = f.x(binEnd(i, binMs)), yv = f.y(v);
      d += (i === 0 ? "M" : "L") + x0.toFixed(1) + " " + yv.toFixed(1) + "L" + x1.toFixed(1) + " " + yv.toFixed(1);
    });
    el("path", { class: "series " + cls, d: d, fill: "none", stroke: color, "stroke-width": 1.8 }, f.svg);
    return values.length;
  }
  // One bar per value: value i spans [start(i), end(i)) in x units, with its share of that span.
  function bars(f, values, start, end, color, cls, offset, share) {
    var n = 0;
    values.forEach(function (v, i) {
      if (!(v > 0)) return;
      var a = start(i), b = end(i), x0 = f.x(a + (b - a) * offset), x1 = f.x(a + (b - a) * (offset + share));
      el("rect", { class: "bar " + cls, x: x0.toFixed(2), y: f.y(v).toFixed(2), width: Math.max(0.8, x1 - x0 - 0.3).toFixed(2), height: (H - B - f.y(v)).toFixed(2), fill: color }, f.svg);
      n++;
    });
    return n;
  }

  // The value under the pointer: a guide line and a tip saying what the chart shows there.
  var tip = document.createElement("div");
  tip.className = "tip";
  document.body.appendChild(tip);
  function hover(f, describe) {
    var guide = el("line", { class: "guide", y1: T, y2: H - B, stroke: "#5b6475", "stroke-dasharray": "2 2", visibility: "hidden" }, f.svg);
    var zone = el("rect", { class: "hover-zone", x: L, y: T, width: W - L - R, height: H - T - B, fill: "transparent" }, f.svg);
    var hide = function () {
      tip.style.display = "none";
      guide.setAttribute("visibility", "hidden");
    };
    zone.addEventListener("mousemove", function (event) {
      var point = f.svg.createSVGPoint();
      point.x = event.clientX;
      point.y = event.clientY;
      var px = point.matrixTransform(f.svg.getScreenCTM().inverse()).x;
      var text = describe(f.xAt(px));
      if (!text) return hide();
      guide.setAttribute("x1", px.toFixed(1));
      guide.setAttribute("x2", px.toFixed(1));
      guide.setAttribute("visibility", "visible");
      tip.textContent = text;
      tip.style.display = "block";
      tip.style.left = event.pageX + 12 + "px";
      tip.style.top = event.pageY + 12 + "px";
    });
    zone.addEventListener("mouseleave", hide);
  }
  // The bin of a time on the axis, and its span as the tip says it.
  function binOf(t) {
    var i = Math.floor((t * 1000) / binMs);
    return i >= 0 && i < bins && t <= seconds ? i : -1;
  }
  function span(a, b) { return fmt(a) + "–" + fmt(b) + " s"; }

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
  card(fmt(t.attempts), "attempts started");
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
    var f = frame(box, seconds, top * 1.1);
    if (lim.concurrency !== null) limitLine(f, lim.concurrency, "limit " + lim.concurrency);
    var n = stepLine(f, data.series.maxInFlight, "#2563eb", "in-flight");
    hover(f, function (at) {
      var i = binOf(at);
      if (i < 0) return "";
      return span((i * binMs) / 1000, binEnd(i, binMs)) + "\nat most " + data.series.maxInFlight[i] + " in flight" + (lim.concurrency === null ? "" : " (limit " + lim.concurrency + ")");
    });
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
    var f = frame(box, seconds, top * 1.1);
    limits.forEach(function (l) { limitLine(f, l[0], l[1] + ": at most " + fmt(l[0])); });
    var start = function (k) { return (k * width) / 1000; }, end = function (k) { return binEnd(k, width); };
    var n = bars(f, counts, start, end, "#60a5fa", "starts", 0.04, 0.92);
    hover(f, function (at) {
      var k = Math.floor((at * 1000) / width);
      if (k < 0 || k >= counts.length || at > seconds) return "";
      return span(start(k), end(k)) + "\n" + counts[k] + " started" + (limits.length ? " (at most " + fmt(limits[0][0]) + " allowed)" : "");
    });
    legend(box, [["starts per " + fmtMs(width), "#60a5fa"]].concat(limits.length ? [["allowed per " + fmtMs(width), "#dc2626"]] : []));
    box.setAttribute("data-rendered", String(n));
  })();

  // 3. Per rate: its busiest trailing window (or its bucket's level) against the limit, in every bin:
  // the exact check of the promise.
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
    if (bins === 0) return empty(box, "no jobs ran");
    var values = data.series.windows[index];
    var top = Math.max.apply(null, values.concat([rate.limit]));
    var f = frame(box, seconds, top * 1.1);
    limitLine(f, rate.limit, "limit " + fmt(rate.limit));
    var n = stepLine(f, values, "#7c3aed", "window");
    hover(f, function (at) {
      var i = binOf(at);
      if (i < 0) return "";
      var measure = bucket ? "bucket level at most " : "at most ";
      return span((i * binMs) / 1000, binEnd(i, binMs)) + "\n" + measure + fmt(values[i]) + " " + rate.unit + " in the trailing " + fmtMs(rate.intervalMs) + " (limit " + fmt(rate.limit) + ")";
    });
    var measured = bucket ? "bucket level" : rate.unit + " started in the trailing " + fmtMs(rate.intervalMs);
    legend(box, [[measured + ", most per " + fmtMs(binMs) + " (peak " + fmt(rate.peak) + ")", "#7c3aed"], [bucket ? "burst" : "limit", "#dc2626"]]);
    box.setAttribute("data-rendered", String(n));
  });

  // 4. Latency histogram (logarithmic buckets): one bar per bucket, labelled by its upper bound.
  (function () {
    var box = document.getElementById("chart-latency");
    var buckets = data.latency.buckets;
    if (buckets.length === 0) return empty(box, "no attempts finished");
    var counts = buckets.map(function (b) { return b.count; });
    var f = frame(box, buckets.length, Math.max.apply(null, counts) * 1.1, false);
    var labels = buckets.map(function (b, i) { return xLabel(f.svg, f.x(i + 0.5), "≤" + fmtMs(b.upperMs)); });
    thin(labels);
    var n = bars(f, counts, function (i) { return i; }, function (i) { return i + 1; }, "#0d9488", "latency", 0.05, 0.9);
    hover(f, function (at) {
      var i = Math.floor(at);
      if (i < 0 || i >= buckets.length) return "";
      var lower = i === 0 ? 0 : buckets[i - 1].upperMs;
      return fmtMs(lower) + "–" + fmtMs(buckets[i].upperMs) + "\n" + counts[i] + " attempts";
    });
    legend(box, [["attempts per duration bucket · p50 " + fmtMs(data.latency.p50) + " · p95 " + fmtMs(data.latency.p95) + " · p99 " + fmtMs(data.latency.p99) + " · max " + fmtMs(data.latency.max), "#0d9488"]]);
    box.setAttribute("data-rendered", String(n));
  })();

  // 5. 429s and retries over time.
  (function () {
    var box = document.getElementById("chart-429");
    if (bins === 0) return empty(box, "no jobs ran");
    var top = Math.max.apply(null, data.series.rateLimited.concat(data.series.retries).concat([1]));
    var f = frame(box, seconds, top * 1.1);
    var start = function (i) { return (i * binMs) / 1000; }, end = function (i) { return binEnd(i, binMs); };
    var n = bars(f, data.series.rateLimited, start, end, "#dc2626", "rate-limited", 0, 0.5) + bars(f, data.series.retries, start, end, "#f59e0b", "retries", 0.5, 0.5);
    if (t.rateLimited === 0 && t.retries === 0) {
      el("text", { class: "note", x: (L + W - R) / 2, y: (T + H - B) / 2, "text-anchor": "middle", style: "font-size:14px;fill:#15803d" }, f.svg).textContent = "no 429s, no retries";
    }
    hover(f, function (at) {
      var i = binOf(at);
      if (i < 0) return "";
      return span(start(i), end(i)) + "\n" + data.series.rateLimited[i] + " × 429, " + data.series.retries[i] + " retries";
    });
    legend(box, [["429 answers (" + t.rateLimited + ")", "#dc2626"], ["retries (" + t.retries + ")", "#f59e0b"]]);
    // The axes count as the drawing when there is nothing to mark.
    box.setAttribute("data-rendered", String(Math.max(n, 1)));
  })();
  document.body.setAttribute("data-charts-ready", "true");
})();
`;
