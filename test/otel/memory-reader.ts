/**
 * What the OpenTelemetry tests share to read what an in-memory exporter received: the metrics of one
 * collection by name, and a data point's attributes as one sortable key.
 */
import type { Attributes } from "@opentelemetry/api";
import type { InMemoryMetricExporter, MetricData, MetricReader } from "@opentelemetry/sdk-metrics";
import { expect } from "vitest";

/** Collects once (forceFlush) and returns the metrics `exporter` received by name; each name appears once. */
export async function collectByName(
  reader: MetricReader,
  exporter: InMemoryMetricExporter,
): Promise<Map<string, MetricData>> {
  exporter.reset();
  await reader.forceFlush();
  const found = new Map<string, MetricData>();
  for (const resource of exporter.getMetrics()) {
    for (const scope of resource.scopeMetrics) {
      for (const metric of scope.metrics) {
        expect(found.has(metric.descriptor.name), `${metric.descriptor.name} exported twice`).toBe(false);
        found.set(metric.descriptor.name, metric);
      }
    }
  }
  return found;
}

/** A data point's attributes written `key=value,...`, sorted. */
export function attributeKey(attributes: Attributes): string {
  return Object.entries(attributes)
    .map(([name, value]) => `${name}=${value}`)
    .sort()
    .join(",");
}
