/**
 * `--report FILE.html` opened in headless Chromium (Debian's `chromium` package): the charts render,
 * the page needs no network, its numbers agree with the run, no two labels overlap, no time axis runs
 * past the run's end, and every chart tells the value under the pointer. Without Chromium the tests
 * fail rather than skip: CI installs it (.ci/run).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renderReport } from "../../src/cli/report.js";
import { RunStatistics } from "../../src/cli/statistics.js";
import { CHROMIUM_PATH as CHROMIUM, launchChromium } from "../support/chromium.mjs";
import { ensureBuilt, runCli } from "./cli-process.js";

let directory: string;
let browser: Browser;

beforeAll(async () => {
  expect(existsSync(CHROMIUM), `the report tests need Chromium at ${CHROMIUM} (apt-get install chromium)`).toBe(true);
  await ensureBuilt();
  directory = mkdtempSync(join(tmpdir(), "sluice-report-"));
  browser = await launchChromium();
}, 120_000);

/** Pairs of text elements in one chart whose boxes overlap, as "chart: a / b". */
function overlappingLabels(page: Page): Promise<string[]> {
  return page.$$eval("svg", (svgs) => {
    const found: string[] = [];
    for (const svg of svgs) {
      const texts = [...svg.querySelectorAll("text")].map((text) => ({
        text: text.textContent ?? "",
        box: text.getBoundingClientRect(),
      }));
      for (let i = 0; i < texts.length; i++) {
        for (let j = i + 1; j < texts.length; j++) {
          const a = texts[i] as (typeof texts)[number];
          const b = texts[j] as (typeof texts)[number];
          const apart =
            a.box.right <= b.box.left ||
            b.box.right <= a.box.left ||
            a.box.bottom <= b.box.top ||
            b.box.bottom <= a.box.top;
          if (!apart) found.push(`${svg.parentElement?.id || svg.parentElement?.className}: ${a.text} / ${b.text}`);
        }
      }
    }
    return found;
  });
}

/** The run's duration (s), each time axis' end (s), and the largest time tick label (s). */
function timeAxes(page: Page): Promise<{ seconds: number; ends: number[]; largestTick: number }> {
  return page.$$eval(".chart:not(#chart-latency) svg, #sluice-data", (elements) => {
    const data = elements.find((element) => element.id === "sluice-data");
    const axes = elements.filter((element) => element !== data);
    const ticks = axes.flatMap((svg) =>
      [...svg.querySelectorAll("text.x-tick")].map((text) => Number.parseFloat(text.textContent ?? "")),
    );
    return {
      seconds: (JSON.parse(data?.textContent ?? "{}") as { durationMs: number }).durationMs / 1000,
      ends: axes.map((svg) => Number(svg.getAttribute("data-x-max"))),
      largestTick: Math.max(...ticks),
    };
  });
}

afterAll(async () => {
  await browser?.close();
  rmSync(directory, { recursive: true, force: true });
});

describe("sluice --report", () => {
  it("renders every chart from the embedded data, offline, with no script errors", async () => {
    const report = join(directory, "run.html");
    const input = `${Array.from({ length: 40 }, (_, index) => String(index % 4)).join("\n")}\n`;
    const result = await runCli(
      [
        "run",
        "-c",
        "3",
        "--rate",
        "8/400ms",
        "-q",
        "--report",
        report,
        "--",
        "/bin/sh",
        "-c",
        "sleep 0.0$1",
        "sh",
        "{}",
      ],
      { input },
    );
    expect(result.code).toBe(0);
    const html = readFileSync(report, "utf8");
    // Self-contained: no URL the browser could fetch.
    expect(html).not.toMatch(/\b(src|href)=["']?https?:/i);

    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const problems: string[] = [];
    const requests: string[] = [];
    page.on("pageerror", (error) => problems.push(`pageerror: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error" || message.type() === "warning") problems.push(`console: ${message.text()}`);
    });
    page.on("request", (request) => requests.push(request.url()));
    await page.goto(`file://${report}`);
    await page.waitForSelector("body[data-charts-ready]", { timeout: 10_000 });

    const rendered = await page.$$eval(".chart", (charts) =>
      charts.map((chart) => ({
        id: chart.id || chart.className,
        marks: Number(chart.getAttribute("data-rendered")),
        svg: chart.querySelectorAll("svg").length,
        limitLines: chart.querySelectorAll("line.limit").length,
        seriesWithPoints: [...chart.querySelectorAll("path.series")].filter(
          (path) => (path.getAttribute("d") ?? "").length > 10,
        ).length,
        bars: chart.querySelectorAll("rect.bar").length,
      })),
    );
    const byId = Object.fromEntries(rendered.map((chart) => [chart.id, chart]));
    expect(Object.keys(byId).sort()).toEqual(
      ["chart window-chart", "chart-429", "chart-concurrency", "chart-latency", "chart-rate"].sort(),
    );
    for (const chart of rendered) {
      expect(chart.svg, chart.id).toBe(1);
      expect(chart.marks, chart.id).toBeGreaterThan(0);
    }
    expect(byId["chart-concurrency"]).toMatchObject({ seriesWithPoints: 1, limitLines: 1 });
    expect(byId["chart-rate"]?.bars).toBeGreaterThan(3);
    expect(byId["chart-rate"]?.limitLines).toBe(1);
    expect(byId["chart window-chart"]).toMatchObject({ seriesWithPoints: 1, limitLines: 1 });
    // The busiest-window line is one unbroken line, not segments with gaps where nothing started.
    const windowPath = await page.$eval(".window-chart path.series", (path) => path.getAttribute("d") ?? "");
    expect(windowPath.match(/M/g)).toHaveLength(1);
    expect(byId["chart-latency"]?.bars).toBeGreaterThan(0);

    // The headline and the cards say what the run did: 40 jobs, the limits held, no 429.
    expect(await page.textContent("h1")).toContain("limits held");
    const cards = await page.$$eval(".card", (elements) => elements.map((element) => element.textContent ?? ""));
    expect(cards).toContain("40jobs finished");
    expect(cards.some((card) => /^[0-8] \/ 8busiest 400 ms window/.test(card))).toBe(true);
    expect(cards.some((card) => /^[0-3] \/ 3most in flight/.test(card))).toBe(true);

    // No two labels collide, and no time axis runs past the run's end (nor a tick label says so).
    expect(await overlappingLabels(page)).toEqual([]);
    const axes = await timeAxes(page);
    for (const end of axes.ends) expect(end).toBeLessThanOrEqual(axes.seconds + 1e-9);
    expect(axes.largestTick).toBeLessThanOrEqual(axes.seconds + 1e-9);

    // The value under the pointer, on a time chart and on the histogram.
    const inFlight = await page.$("#chart-concurrency svg");
    const box = await inFlight?.boundingBox();
    if (box === null || box === undefined) throw new Error("no in-flight chart");
    await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.5);
    expect(await page.isVisible(".tip")).toBe(true);
    expect(await page.textContent(".tip")).toMatch(/s\nat most \d+ in flight \(limit 3\)/);
    const histogram = await (await page.$("#chart-latency svg"))?.boundingBox();
    if (histogram === null || histogram === undefined) throw new Error("no histogram");
    await page.mouse.move(histogram.x + histogram.width * 0.5, histogram.y + histogram.height * 0.5);
    expect(await page.textContent(".tip")).toMatch(/ms\n\d+ attempts/);

    expect(problems).toEqual([]);
    expect(requests.every((url) => url.startsWith("file:") || url.startsWith("data:"))).toBe(true);
    await page.screenshot({ path: join(tmpdir(), "sluice-report-test.png"), fullPage: true });
    await page.close();
  });

  it("latencies spread over decades: the histogram's labels are thinned until none overlaps", async () => {
    // Rendered in this process from attempts of known durations: a run of real jobs measures the machine
    // too (on a loaded one, process start-up squeezed sleeps of 0-0.5 s into too few buckets).
    const report = join(directory, "spread.html");
    let now = 0;
    const statistics = new RunStatistics([], "sliding-window", () => now);
    for (const ms of [0.4, 1, 2.5, 6, 15, 40, 100, 250, 600, 1500, 4000]) {
      for (let copy = 0; copy < 2; copy++) {
        statistics.attemptStarted({ requests: 1 });
        now += ms;
        statistics.attemptEnded(ms);
        statistics.jobFinished(undefined);
      }
    }
    statistics.finish();
    const limits = {
      concurrency: 6,
      rates: [],
      minInterval: undefined,
      scope: "this process",
      algorithm: "sliding-window",
    } as const;
    writeFileSync(
      report,
      renderReport({ statistics, limits, title: "sluice run (spread)", label: "run", interrupted: false }),
    );
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    await page.goto(`file://${report}`);
    await page.waitForSelector("body[data-charts-ready]", { timeout: 10_000 });
    const data = JSON.parse((await page.textContent("#sluice-data")) ?? "{}") as { latency: { buckets: unknown[] } };
    // About four decades: more buckets than labels fit under them, so some labels had to go.
    expect(data.latency.buckets.length).toBeGreaterThan(12);
    const labels = await page.$$eval("#chart-latency text.x-tick", (texts) => texts.map((text) => text.textContent));
    expect(labels.length).toBeGreaterThan(2);
    expect(labels.length).toBeLessThan(data.latency.buckets.length);
    expect(await overlappingLabels(page)).toEqual([]);
    await page.screenshot({ path: join(tmpdir(), "sluice-report-spread.png"), fullPage: true });
    await page.close();
  });

  it("renders an empty run without errors", async () => {
    const report = join(directory, "empty.html");
    const result = await runCli(["run", "-q", "--report", report, "--", "echo"], { input: "" });
    expect(result.code).toBe(0);
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(error.message));
    await page.goto(`file://${report}`);
    await page.waitForSelector("body[data-charts-ready]", { timeout: 10_000 });
    expect(await page.$$eval(".empty", (elements) => elements.length)).toBeGreaterThan(0);
    expect(errors).toEqual([]);
    await page.close();
  });
});
