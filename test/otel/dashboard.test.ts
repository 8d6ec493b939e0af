/**
 * docs/grafana-dashboard.json queries only metrics sluice exports, under the names the OpenTelemetry
 * Prometheus exporter gives them — checked against the contract (`METRICS`) and against a real scrape of
 * the exporter's `/metrics` after a run that makes every metric but `sluice.lease.lost` (Redis) appear.
 */
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { MeterProvider } from "@opentelemetry/sdk-metrics";
import { instrumentSluice, METRICS } from "sluice/otel";
import { describe, expect, it } from "vitest";
import { everyMetricJob } from "./every-metric.js";

const dashboard = JSON.parse(readFileSync(join(import.meta.dirname, "../../docs/grafana-dashboard.json"), "utf8"));

/** Every PromQL expression in the dashboard: panel targets and template variable queries. */
function expressions(): string[] {
  const found: string[] = [];
  for (const panel of dashboard.panels) for (const target of panel.targets ?? []) found.push(target.expr);
  for (const variable of dashboard.templating.list) {
    if (typeof variable.query === "object") found.push(variable.query.query);
  }
  return found;
}

/** The Prometheus names of a metric of the contract: dots become underscores; counters end in `_total`. */
function prometheusNames(name: string, instrument: string): string[] {
  const base = name.replaceAll(".", "_");
  if (instrument === "counter") return [`${base}_total`];
  if (instrument === "histogram") return [`${base}_bucket`, `${base}_sum`, `${base}_count`];
  return [base];
}
const EXPORTED = new Set(
  Object.entries(METRICS).flatMap(([name, { instrument }]) => prometheusNames(name, instrument)),
);
/** The attributes sluice puts on its metrics, as Prometheus labels. */
const LABELS = new Set([
  "sluice_limiter_name",
  "sluice_limiter_kind",
  "sluice_backend",
  "sluice_result",
  "sluice_rate_unit",
  "sluice_http_retry",
]);

/** The `sluice_*` identifiers of `expression` that are not labels: the metrics it queries. */
function queriedMetrics(expression: string): string[] {
  return [...expression.matchAll(/\bsluice_[a-z_]+\b/g)].map(([name]) => name).filter((name) => !LABELS.has(name));
}

/** Runs a job that makes every metric but the lease's appear, and returns the exporter's /metrics text. */
async function scrape(): Promise<string> {
  const exporter = new PrometheusExporter({ preventServerStart: true });
  const meterProvider = new MeterProvider({ readers: [exporter] });
  const job = everyMetricJob();
  const instrumentation = instrumentSluice({ meterProvider, limiters: [job.limiter], spans: "none" });
  try {
    await job.run();
    const server = createServer((request, response) => exporter.getMetricsRequestHandler(request, response));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as { port: number };
      return await (await globalThis.fetch(`http://127.0.0.1:${port}/metrics`)).text();
    } finally {
      server.close();
    }
  } finally {
    instrumentation.disable();
    await meterProvider.shutdown();
  }
}

describe("docs/grafana-dashboard.json", () => {
  it("queries only metrics sluice exports (by the contract's names), and every panel queries one", () => {
    const queried = expressions().flatMap(queriedMetrics);
    expect(queried.length).toBeGreaterThan(10);
    expect(queried.filter((name) => !EXPORTED.has(name))).toEqual([]);
    for (const panel of dashboard.panels) {
      expect((panel.targets as { expr: string }[]).flatMap(({ expr }) => queriedMetrics(expr)).length).toBeGreaterThan(
        0,
      );
    }
  });

  it("charts the answers an operator asks for first: waiting, results, queue depth, 429s", () => {
    const queried = new Set(expressions().flatMap(queriedMetrics));
    for (const name of [
      "sluice_limiter_wait_duration_bucket",
      "sluice_limiter_requests_total",
      "sluice_limiter_queued",
      "sluice_http_attempts_total",
    ]) {
      expect(queried).toContain(name);
    }
  });

  it("names metrics as the OpenTelemetry Prometheus exporter does", async () => {
    const text = await scrape();
    const scraped = new Set(
      text
        .split("\n")
        .filter((line) => line.startsWith("sluice_"))
        .map((line) => /^[a-z_]+/.exec(line)?.[0] as string),
    );
    expect([...scraped].filter((name) => !EXPORTED.has(name))).toEqual([]);
    const expected = [...EXPORTED].filter((name) => !name.startsWith("sluice_lease_lost"));
    expect([...scraped].sort()).toEqual(expected.sort());
  });
});
