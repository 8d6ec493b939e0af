/**
 * The metrics `sluice/otel` exports: names, instruments, units and descriptions (a contract dashboards
 * and alerts are built on), and the duration histograms' bucket boundaries. Shared by the recorder
 * (index.ts) and the metric producer (producer.ts).
 */

/** The instrumentation scope name: what the metrics and spans are reported under. */
export const SCOPE = "sluice";

/** One metric of the contract. */
export interface MetricDescription {
  /** The OpenTelemetry instrument that records it. */
  readonly instrument: "counter" | "histogram" | "updowncounter" | "gauge";
  /** Its unit, in OpenTelemetry's notation (UCUM; `{request}` for a count of requests). */
  readonly unit: string;
  /** What it measures (also its description in the exported data). */
  readonly description: string;
}

/** The names of the metrics `sluice/otel` exports. */
export type MetricName =
  | "sluice.limiter.requests"
  | "sluice.limiter.wait.duration"
  | "sluice.limiter.hold.duration"
  | "sluice.limiter.queued"
  | "sluice.limiter.in_use"
  | "sluice.limiter.capacity"
  | "sluice.rate.remaining"
  | "sluice.rate.pauses"
  | "sluice.http.attempts"
  | "sluice.lease.lost";

/**
 * Every metric `sluice/otel` exports, by name (the contract). Each carries `sluice.limiter.name`,
 * `sluice.limiter.kind` and `sluice.backend`; see docs/observability.md for the others.
 */
export const METRICS: Readonly<Record<MetricName, MetricDescription>> = {
  "sluice.limiter.requests": {
    instrument: "counter",
    unit: "{request}",
    description: "Requests to a limiter, by how they ended (sluice.result).",
  },
  "sluice.limiter.wait.duration": {
    instrument: "histogram",
    unit: "s",
    description: "Time from acquire to grant or give-up.",
  },
  "sluice.limiter.hold.duration": { instrument: "histogram", unit: "s", description: "Time from grant to release." },
  "sluice.limiter.queued": {
    instrument: "updowncounter",
    unit: "{request}",
    description: "Callers waiting in a limiter's queue.",
  },
  "sluice.limiter.in_use": {
    instrument: "updowncounter",
    unit: "{permit}",
    description: "Weight held (granted and not yet released).",
  },
  "sluice.limiter.capacity": {
    instrument: "gauge",
    unit: "{permit}",
    description: "The most weight a limiter lets be held at once.",
  },
  "sluice.rate.remaining": {
    instrument: "gauge",
    unit: "{unit}",
    description: "What a rate limit has left to spend now, per unit (sluice.rate.unit).",
  },
  "sluice.rate.pauses": {
    instrument: "counter",
    unit: "{pause}",
    description: "Pauses of a rate limiter (pause(), or a Retry-After).",
  },
  "sluice.http.attempts": {
    instrument: "counter",
    unit: "{request}",
    description: "Requests limitedFetch sent, by response status and whether each was a retry.",
  },
  "sluice.lease.lost": {
    instrument: "counter",
    unit: "{lease}",
    description: "Distributed permits whose lease was lost.",
  },
};

/** The options of the instrument named `name`, from the contract. */
export function described(name: MetricName): { description: string; unit: string } {
  const { description, unit } = METRICS[name];
  return { description, unit };
}

/**
 * Bucket boundaries of the two duration histograms, in seconds: a wait in a limiter runs from a
 * microsecond (uncontended) to minutes (a rate limit's window), which OpenTelemetry's default
 * boundaries (made for milliseconds) would put in their first bucket.
 */
export const DURATION_BUCKETS: readonly number[] = [
  0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
];
