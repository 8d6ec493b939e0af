/**
 * The two duration histograms (`sluice.limiter.wait.duration`, `sluice.limiter.hold.duration`) kept by
 * sluice and handed to the OpenTelemetry SDK when it collects, as a `MetricProducer` (the
 * `metricProducers` option of sdk-metrics' MetricReader, PeriodicExportingMetricReader and
 * PrometheusExporter).
 *
 * Why: a `histogram.record(value, attributes)` through the API costs the SDK 0.84 µs with three
 * attributes and 1.06 µs with four (sdk-metrics 2.x hashes the attributes on every call:
 * `Object.keys().sort()` and `JSON.stringify`), and an acquire + release makes two. Here a record is a
 * few comparisons and additions into a cell sluice found once per limiter, and the SDK reads the cells
 * when it collects.
 *
 * The SDK's types are declared here by their shape: `@opentelemetry/api` is sluice/otel's only peer
 * dependency, and these shapes are what sdk-metrics 2.x's `MetricProducer` and `CollectionResult` take.
 */
import { type Attributes, type AttributeValue, type HrTime, ValueType } from "@opentelemetry/api";
import { checkOptionNames, optionNames } from "../core/arguments.js";
import { describe } from "../core/describe.js";
import { DURATION_BUCKETS, METRICS, type MetricName, SCOPE } from "./metrics.js";

/** Options for {@link sluiceMetricProducer}. Every field is optional. */
export interface MetricProducerOptions {
  /**
   * `"cumulative"` (default: what Prometheus and most OTLP back-ends take): each collection reports
   * everything since the producer began. `"delta"`: each collection reports what happened since the
   * previous one, and starts afresh — so give a delta producer to one reader only (two readers would
   * each get part of the measurements).
   */
  temporality?: "cumulative" | "delta";
  /**
   * The histograms' bucket boundaries, in seconds: finite, strictly increasing, at least one. Each
   * bucket holds the values above the previous boundary and up to its own (as the SDK's explicit
   * buckets do), and a last bucket the values above the last. Default: {@link DURATION_BUCKETS}.
   */
  boundaries?: readonly number[];
}

/**
 * sluice's duration histograms as an OpenTelemetry SDK `MetricProducer`: give it to your reader
 * (`metricProducers: [producer]`) and to {@link instrumentSluice} (`histograms: producer`), and each
 * acquire + release records into sluice's own buckets instead of making two SDK records.
 *
 * A cumulative producer keeps reporting the last point of a limiter that is no longer used (as the SDK
 * does for its own histograms); a delta one reports only what changed since the previous collection.
 */
export interface SluiceMetricProducer {
  /** The temporality of every histogram it reports. */
  readonly temporality: "cumulative" | "delta";
  /** The bucket boundaries, in seconds. */
  readonly boundaries: readonly number[];
  /**
   * The histograms now, for a reader to merge with the SDK's own metrics. Never rejects: a failure is
   * returned in `errors` (the reader reports it), with no metrics. A delta producer starts afresh.
   */
  collect(options?: { timeoutMillis?: number }): Promise<ProducedMetrics>;
}

/** What {@link SluiceMetricProducer.collect} returns: sdk-metrics' `CollectionResult`, by its shape. */
export interface ProducedMetrics {
  /** The histograms, under the `sluice` scope (nothing when nothing was recorded). */
  resourceMetrics: {
    /**
     * An empty resource: a reader keeps its MeterProvider's resource when it merges a producer's
     * metrics, so this one is never exported.
     */
    resource: ProducedResource;
    /** One scope, `sluice`, when anything was recorded; none otherwise. */
    scopeMetrics: ProducedScopeMetrics[];
  };
  /** What failed while collecting (the metrics are then empty). */
  errors: unknown[];
}

/** The resource of {@link ProducedMetrics}: `@opentelemetry/resources`' `Resource`, by its shape. */
export interface ProducedResource {
  /** None. */
  readonly attributes: Attributes;
  /** `other`, or this resource when there is none. */
  merge(other: ProducedResource | null): ProducedResource;
  /** None. */
  getRawAttributes(): [string, AttributeValue | undefined][];
}

/** sdk-metrics' `ScopeMetrics`, by its shape. */
export interface ProducedScopeMetrics {
  /** The instrumentation scope: `{ name: "sluice" }`. */
  scope: {
    /** `sluice`. */
    readonly name: string;
    /** Not set. */
    readonly version?: string;
    /** Not set. */
    readonly schemaUrl?: string;
  };
  /** The histograms that have points. */
  metrics: HistogramMetricData[];
}

/** sdk-metrics' `HistogramMetricData`, by its shape. */
export interface HistogramMetricData {
  /** The metric's name, description and unit, from {@link METRICS}. */
  readonly descriptor: {
    /** `sluice.limiter.wait.duration` or `sluice.limiter.hold.duration`. */
    readonly name: string;
    /** What it measures. */
    readonly description: string;
    /** `s`. */
    readonly unit: string;
    /** `ValueType.DOUBLE`. */
    readonly valueType: ValueType;
  };
  /** sdk-metrics' `AggregationTemporality`: 0 is `DELTA`, 1 is `CUMULATIVE`. */
  readonly aggregationTemporality: 0 | 1;
  /** sdk-metrics' `DataPointType.HISTOGRAM`. */
  readonly dataPointType: 0;
  /** One point per attribute set recorded. */
  readonly dataPoints: HistogramDataPoint[];
}

/** sdk-metrics' `DataPoint<Histogram>`, by its shape. */
export interface HistogramDataPoint {
  /** Cumulative: when this attribute set was first seen. Delta: the previous collection. */
  readonly startTime: HrTime;
  /** This collection. */
  readonly endTime: HrTime;
  /** `sluice.limiter.name`, `sluice.limiter.kind`, `sluice.backend` (and `sluice.result` on waits). */
  readonly attributes: Attributes;
  /** The histogram. */
  readonly value: {
    /** The boundaries, and the count of each of the `boundaries.length + 1` buckets. */
    buckets: {
      /** The producer's boundaries, in seconds. */
      boundaries: number[];
      /** `counts[i]` values above `boundaries[i - 1]` and up to `boundaries[i]`; the last, above them all. */
      counts: number[];
    };
    /** Sum of the values, in seconds. */
    sum: number;
    /** How many values. */
    count: number;
    /** The least value. */
    min: number;
    /** The greatest value. */
    max: number;
  };
}

/**
 * Makes a producer of sluice's duration histograms for an OpenTelemetry SDK reader.
 *
 * @example
 * ```ts
 * const histograms = sluiceMetricProducer();
 * const reader = new PeriodicExportingMetricReader({ exporter, metricProducers: [histograms] });
 * metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
 * instrumentSluice({ histograms, limiters: [api] });
 * ```
 *
 * @throws TypeError/RangeError for bad options, naming the option and its value.
 */
export function sluiceMetricProducer(options: MetricProducerOptions = {}): SluiceMetricProducer {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object; got ${describe(options)}`);
  }
  checkOptionNames(options, PRODUCER_OPTIONS, "the sluiceMetricProducer() options");
  const temporality = options.temporality ?? "cumulative";
  if (temporality !== "cumulative" && temporality !== "delta") {
    throw new RangeError(`temporality must be "cumulative" or "delta"; got ${describe(temporality)}`);
  }
  return new DurationProducer(temporality, checkBoundaries(options.boundaries ?? DURATION_BUCKETS));
}

const PRODUCER_OPTIONS = /* @__PURE__ */ optionNames<MetricProducerOptions>({ temporality: true, boundaries: true });

function checkBoundaries(boundaries: unknown): number[] {
  if (!Array.isArray(boundaries)) {
    throw new TypeError(`boundaries must be an array of numbers (seconds); got ${describe(boundaries)}`);
  }
  const valid =
    boundaries.length > 0 &&
    boundaries.every(
      (boundary, i) =>
        typeof boundary === "number" && Number.isFinite(boundary) && (i === 0 || boundary > boundaries[i - 1]),
    );
  if (!valid) {
    const shown = boundaries.length > 12 ? `${boundaries.length} values` : `[${boundaries.map(String).join(", ")}]`;
    throw new RangeError(`boundaries must be finite numbers in strictly increasing order, at least one; got ${shown}`);
  }
  return [...boundaries];
}

/** The two histograms, by the name of the metric each reports. */
type Duration = "wait" | "hold";
const METRIC_OF: Record<Duration, MetricName> = {
  wait: "sluice.limiter.wait.duration",
  hold: "sluice.limiter.hold.duration",
};

/**
 * One histogram for one attribute set: what a record touches. Counts are a Float64Array (exact up to
 * 2^53; a Uint32Array would wrap after 4.3 billion acquires, half a day at 100,000 a second).
 */
export class DurationCell {
  /** Values in each bucket: `counts[i]` holds those in (boundaries[i - 1], boundaries[i]]. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  min = Number.POSITIVE_INFINITY;
  max = Number.NEGATIVE_INFINITY;

  constructor(
    readonly attributes: Attributes,
    private readonly boundaries: Float64Array,
    /** Cumulative: when the cell was made. Delta: the previous collection. */
    public startTime: HrTime,
  ) {
    this.counts = new Float64Array(boundaries.length + 1);
  }

  /** Records `seconds`; as the SDK's histogram does, a negative value or NaN is dropped. */
  record(seconds: number): void {
    if (!(seconds >= 0)) return;
    this.count++;
    this.sum += seconds;
    if (seconds < this.min) this.min = seconds;
    if (seconds > this.max) this.max = seconds;
    // The first boundary at or above `seconds` (the SDK's binarySearchUB): the bucket it belongs to.
    const boundaries = this.boundaries;
    let low = 0;
    let high = boundaries.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (boundaries[middle]! < seconds) low = middle + 1;
      else high = middle;
    }
    this.counts[low]!++;
  }

  reset(startTime: HrTime): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
    this.min = Number.POSITIVE_INFINITY;
    this.max = Number.NEGATIVE_INFINITY;
    this.startTime = startTime;
  }
}

const EMPTY_RESOURCE: ProducedResource = {
  attributes: {},
  merge: (other) => other ?? EMPTY_RESOURCE,
  getRawAttributes: () => [],
};

/**
 * The producer. Its cells are kept by attribute set, as the SDK keeps its accumulations: two limiters
 * with the same name, kind and backend share a point, and a cell outlives the limiters that recorded
 * into it (a cumulative point does not vanish when a limiter is dropped; there is one per name, not per
 * limiter object, so this does not grow with limiters made and dropped under the same names).
 */
export class DurationProducer implements SluiceMetricProducer {
  private readonly cells: Record<Duration, Map<string, DurationCell>> = { wait: new Map(), hold: new Map() };
  private readonly sortedBoundaries: Float64Array;
  /** Whether a running instrumentation records into it (one at a time: two would count everything twice). */
  attached = false;

  constructor(
    readonly temporality: "cumulative" | "delta",
    readonly boundaries: readonly number[],
  ) {
    this.sortedBoundaries = Float64Array.from(boundaries);
  }

  /** The cell of `duration` for `attributes` (made once per attribute set; not on the hot path). */
  cell(duration: Duration, attributes: Attributes): DurationCell {
    const key = JSON.stringify(Object.entries(attributes).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    let cell = this.cells[duration].get(key);
    if (cell === undefined) {
      cell = new DurationCell({ ...attributes }, this.sortedBoundaries, now());
      this.cells[duration].set(key, cell);
    }
    return cell;
  }

  async collect(): Promise<ProducedMetrics> {
    try {
      return { resourceMetrics: { resource: EMPTY_RESOURCE, scopeMetrics: this.snapshot() }, errors: [] };
    } catch (error) {
      return { resourceMetrics: { resource: EMPTY_RESOURCE, scopeMetrics: [] }, errors: [error] };
    }
  }

  /**
   * Every cell with measurements, copied; then, for a delta producer, every cell starts afresh. Copying
   * all before resetting any means a failure part-way loses nothing.
   */
  private snapshot(): ProducedScopeMetrics[] {
    const endTime = now();
    const boundaries = [...this.boundaries];
    const metrics: HistogramMetricData[] = [];
    for (const duration of ["wait", "hold"] as const) {
      const dataPoints: HistogramDataPoint[] = [];
      for (const cell of this.cells[duration].values()) {
        if (cell.count === 0) continue;
        dataPoints.push({
          startTime: cell.startTime,
          endTime,
          attributes: cell.attributes,
          value: {
            buckets: { boundaries, counts: Array.from(cell.counts) },
            sum: cell.sum,
            count: cell.count,
            min: cell.min,
            max: cell.max,
          },
        });
      }
      if (dataPoints.length === 0) continue;
      const { description, unit } = METRICS[METRIC_OF[duration]];
      metrics.push({
        descriptor: { name: METRIC_OF[duration], description, unit, valueType: ValueType.DOUBLE },
        aggregationTemporality: this.temporality === "delta" ? 0 : 1,
        dataPointType: 0,
        dataPoints,
      });
    }
    if (this.temporality === "delta") {
      for (const cells of Object.values(this.cells)) {
        for (const cell of cells.values()) cell.reset(endTime);
      }
    }
    return metrics.length === 0 ? [] : [{ scope: { name: SCOPE }, metrics }];
  }
}

/** Now, as an HrTime (seconds and nanoseconds since the epoch), as the SDK stamps its points. */
function now(): HrTime {
  const milliseconds = performance.timeOrigin + performance.now();
  const seconds = Math.floor(milliseconds / 1000);
  const nanoseconds = Math.round((milliseconds - seconds * 1000) * 1e6);
  return nanoseconds >= 1e9 ? [seconds + 1, nanoseconds - 1e9] : [seconds, nanoseconds];
}
