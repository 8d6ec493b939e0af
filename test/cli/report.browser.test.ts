/**
 * `--report FILE.html` opened in headless Chromium (Debian's `chromium` package): the charts render,
 * the page needs no network, and its numbers agree with the run.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CHROMIUM_PATH as CHROMIUM, launchChromium } from "../support/chromium.mjs";
import { ensureBuilt, runCli } from "./cli-process.js";

let directory: string;
let browser: Browser;

beforeAll(async () => {
  await ensureBuilt();
  directory = mkdtempSync(join(tmpdir(), "sluice-report-"));
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  rmSync(directory, { recursive: true, force: true });
});

describe.skipIf(!existsSync(CHROMIUM))("sluice --report", () => {
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
    expect(byId["chart-latency"]?.bars).toBeGreaterThan(0);

    // The headline and the cards say what the run did: 40 jobs, the limits held, no 429.
    expect(await page.textContent("h1")).toContain("limits held");
    const cards = await page.$$eval(".card", (elements) => elements.map((element) => element.textContent ?? ""));
    expect(cards).toContain("40jobs finished");
    expect(cards.some((card) => /^[0-8] \/ 8busiest 400 ms window/.test(card))).toBe(true);
    expect(cards.some((card) => /^[0-3] \/ 3most in flight/.test(card))).toBe(true);

    expect(problems).toEqual([]);
    expect(requests.every((url) => url.startsWith("file:") || url.startsWith("data:"))).toBe(true);
    await page.screenshot({ path: join(tmpdir(), "sluice-report-test.png"), fullPage: true });
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
