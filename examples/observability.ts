/**
 * sluice in an existing OpenTelemetry set-up: every limiter's waits, holds, queue, 429s and pauses as
 * metrics, read here through the OpenTelemetry Prometheus exporter's `/metrics`, as Prometheus (and the
 * Grafana dashboard in docs/grafana-dashboard.json) would read them.
 *
 * The API is sluice's mock provider, which allows fewer requests per minute than the client is told
 * (so some calls get a 429, the limiter pauses, and callers wait). Time is compressed: one "minute" of
 * the provider's limits lasts one second.
 *
 * Needs `@opentelemetry/api`, `@opentelemetry/sdk-metrics` and `@opentelemetry/exporter-prometheus`.
 * Run: npm run build && npx tsx examples/observability.ts
 */
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts.
import { createServer } from "node:http";
import { metrics } from "@opentelemetry/api";
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { MeterProvider } from "@opentelemetry/sdk-metrics";
import { RateLimiter } from "sluice";
import { limitedFetch } from "sluice/http";
import { instrumentSluice } from "sluice/otel";
import { startMockServer } from "sluice/testing";

// Your OpenTelemetry set-up, as it already is (here: metrics for Prometheus, on the global provider).
const exporter = new PrometheusExporter({ preventServerStart: true });
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [exporter] }));

// sluice in it: one call. The limiters listed also report their capacity and what their limits have left.
const api = new RateLimiter({ name: "api", limits: [{ limit: 60, interval: 1_000 }], concurrency: 4 });
const instrumentation = instrumentSluice({ limiters: [api] });

// A job: 60 calls to an API that allows only 40 a "minute" (the client was told 60).
await using provider = await startMockServer({ requestsPerMinute: 40, minute: 1_000, latency: { min: 5, max: 15 } });
const fetch = limitedFetch(api, { retry: { attempts: 6, nonIdempotent: true } });
const calls = Array.from({ length: 60 }, (_, i) =>
  fetch(`${provider.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "mock", messages: [{ role: "user", content: `question ${i}` }] }),
  }).then((response) => response.text()),
);
await Promise.all(calls);

// What Prometheus would scrape: the exporter's /metrics, served on a loopback port.
const server = createServer((request, response) => exporter.getMetricsRequestHandler(request, response));
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
const { port } = server.address() as { port: number };
const scraped = await (await globalThis.fetch(`http://127.0.0.1:${port}/metrics`)).text();
server.close();
instrumentation.disable();

const interesting =
  /^sluice_(limiter_requests|limiter_wait_duration_(count|sum)|limiter_queued|limiter_in_use|limiter_capacity|rate_pauses|http_attempts)/;
for (const line of scraped.split("\n")) if (interesting.test(line)) console.log(line);
