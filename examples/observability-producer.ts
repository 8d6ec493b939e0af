/**
 * sluice's wait and hold histograms kept by sluice and handed to your OpenTelemetry reader when it
 * collects (`sluiceMetricProducer()`), instead of two SDK records per acquire + release: about 0.4 µs
 * per instrumented acquire + release instead of 2.5-3 µs (bench/RESULTS.md). Same metrics, same names;
 * read here through the OpenTelemetry Prometheus exporter, as Prometheus would read them.
 *
 * Needs `@opentelemetry/api`, `@opentelemetry/sdk-metrics` and `@opentelemetry/exporter-prometheus`.
 * Run: npm run build && npx tsx examples/observability-producer.ts
 */
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts.
import { metrics } from "@opentelemetry/api";
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus";
import { MeterProvider } from "@opentelemetry/sdk-metrics";
import { Semaphore } from "sluice";
import { instrumentSluice, sluiceMetricProducer } from "sluice/otel";

// The producer goes to your reader (any MetricReader takes `metricProducers`) and to instrumentSluice.
const histograms = sluiceMetricProducer();
const exporter = new PrometheusExporter({ preventServerStart: true, metricProducers: [histograms] });
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [exporter] }));
const database = new Semaphore(2, { name: "database" });
const instrumentation = instrumentSluice({ histograms, limiters: [database] });

// A job: 20 queries of 5 ms, two at a time.
const query = () => new Promise((resolve) => setTimeout(resolve, 5));
await Promise.all(Array.from({ length: 20 }, () => database.run(query)));

// What Prometheus would scrape (the exporter's /metrics serves the same text).
const { resourceMetrics } = await exporter.collect();
const scraped = new PrometheusSerializer().serialize(resourceMetrics);
instrumentation.disable();
const interesting = /^sluice_limiter_(hold_duration_(count|sum)|wait_duration_count|requests_total)/;
for (const line of scraped.split("\n")) if (interesting.test(line)) console.log(line);
