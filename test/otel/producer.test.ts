/**
 * sluice's duration histograms through its own MetricProducer (`sluiceMetricProducer()`), read by the
 * real OpenTelemetry SDK's readers (an in-memory exporter, the Prometheus exporter): after a scripted
 * run on the fake clock, the histograms' counts, sums, min, max and buckets are exactly what happened,
 * and exactly what the SDK's own histograms make of the same run.
 */
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus";
import {
  AggregationTemporality,
  type DataPoint,
  type Histogram,
  InMemoryMetricExporter,
  MeterProvider,
  type MetricData,
  type MetricProducer,
  PeriodicExportingMetricReader,
} from "@opentelemetry/sdk-metrics";
import { Mutex, Semaphore } from "sluice";
import {
  DURATION_BUCKETS,
  instrumentSluice,
  METRICS,
  type SluiceMetricProducer,
  sluiceMetricProducer,
} from "sluice/otel";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { afterEach, describe, expect, it, vi } from "vitest";
import { everyMetricJob } from "./every-metric.js";
import { attributeKey, collectByName } from "./memory-reader.js";

const running: { disable(): void }[] = [];
afterEach(() => {
  for (const each of running.splice(0)) each.disable();
  vi.restoreAllMocks();
});

type Temporality = "cumulative" | "delta";

/** A reader exporting to memory; with `producer`, it collects the producer, and sluice records into it. */
function setUp(options: { producer?: SluiceMetricProducer; temporality?: Temporality; limiters?: object[] } = {}) {
  const exporter = new InMemoryMetricExporter(
    options.temporality === "delta" ? AggregationTemporality.DELTA : AggregationTemporality.CUMULATIVE,
  );
  const reader = new PeriodicExportingMetricReader({
    exporter,
    exportIntervalMillis: 3_600_000,
    metricProducers: options.producer === undefined ? [] : [options.producer],
  });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const instrumentation = instrumentSluice({
    meterProvider,
    spans: "none",
    limiters: options.limiters ?? [],
    ...(options.producer === undefined ? {} : { histograms: options.producer }),
  });
  running.push(instrumentation, { disable: () => void meterProvider.shutdown() });
  const collect = () => collectByName(reader, exporter);
  return { instrumentation, collect, reader };
}

/** The histogram points of `metric`, by their attributes written `key=value,...` sorted. */
function histograms(metric: MetricData | undefined): Record<string, Histogram> {
  const result: Record<string, Histogram> = {};
  for (const point of (metric?.dataPoints ?? []) as DataPoint<Histogram>[]) {
    const key = attributeKey(point.attributes);
    result[key] = point.value;
  }
  return result;
}

/** A histogram over DURATION_BUCKETS holding `values` (seconds), as the exporters should receive it. */
function expected(values: number[]): Histogram {
  const counts = new Array(DURATION_BUCKETS.length + 1).fill(0);
  for (const value of values) {
    const index = DURATION_BUCKETS.findIndex((boundary) => value <= boundary);
    counts[index === -1 ? DURATION_BUCKETS.length : index]++;
  }
  return {
    buckets: { boundaries: [...DURATION_BUCKETS], counts },
    count: values.length,
    sum: values.reduce((sum, value) => sum + value, 0),
    min: Math.min(...values),
    max: Math.max(...values),
  };
}

const DB = "sluice.backend=memory,sluice.limiter.kind=semaphore,sluice.limiter.name=db";
const WAIT = "sluice.limiter.wait.duration";
const HOLD = "sluice.limiter.hold.duration";

/**
 * Waits of 0 (three: two granted at once, one rejected), 10 ms (aborted), 30 ms (timed out), 50 ms
 * (granted), holds of 50, 60 and 110 ms: 10 and 50 ms fall exactly on boundaries (0.01 and 0.05 s),
 * which belong to the bucket they close.
 */
async function scriptedRun(clock: FakeClock, semaphore: Semaphore): Promise<void> {
  const a = await semaphore.acquire();
  const b = await semaphore.acquire();
  const c = semaphore.acquire({ timeout: 100 });
  const d = semaphore.acquire({ timeout: 30 });
  const controller = new AbortController();
  const e = semaphore.acquire({ signal: controller.signal });
  await semaphore.acquire({ weight: 3 }).catch(() => undefined);
  clock.advance(10);
  controller.abort();
  clock.advance(20);
  clock.advance(20);
  a.release();
  const permit = await c;
  clock.advance(10);
  b.release();
  clock.advance(100);
  permit.release();
  await Promise.allSettled([d, e]);
  await flushMicrotasks();
}

describe("sluiceMetricProducer with the OpenTelemetry SDK", () => {
  it("is a MetricProducer the SDK's readers take", () => {
    const producer: MetricProducer = sluiceMetricProducer();
    expect(typeof producer.collect).toBe("function");
  });

  it("exports exactly what a scripted run did: counts, sums, min, max and every bucket", async () => {
    const clock = new FakeClock();
    const semaphore = new Semaphore(2, { name: "db", clock });
    const { collect } = setUp({ producer: sluiceMetricProducer() });
    await scriptedRun(clock, semaphore);
    const metrics = await collect();
    expect(histograms(metrics.get(WAIT))).toEqual({
      [`${DB},sluice.result=acquired`]: expected([0, 0, 0.05]),
      [`${DB},sluice.result=timeout`]: expected([0.03]),
      [`${DB},sluice.result=aborted`]: expected([0.01]),
      [`${DB},sluice.result=rejected`]: expected([0]),
    });
    expect(histograms(metrics.get(HOLD))).toEqual({ [DB]: expected([0.05, 0.06, 0.11]) });
    // The boundaries are inclusive upper bounds: 0.05 s is in the bucket that ends at 0.05.
    const acquired = histograms(metrics.get(WAIT))[`${DB},sluice.result=acquired`] as Histogram;
    expect(acquired.buckets.counts[DURATION_BUCKETS.indexOf(0.05)]).toBe(1);
    for (const name of [WAIT, HOLD] as const) {
      const metric = metrics.get(name) as MetricData;
      expect(metric.descriptor).toMatchObject({ name, unit: "s", description: METRICS[name].description });
      expect(metric.aggregationTemporality).toBe(AggregationTemporality.CUMULATIVE);
    }
    // The counters still come from the SDK, in the same export.
    expect(metrics.get("sluice.limiter.requests")?.dataPoints).toHaveLength(4);
  });

  it("exports the same histograms as the SDK's own histogram records of the same run", async () => {
    const clock = new FakeClock();
    const semaphore = new Semaphore(2, { name: "db", clock });
    const throughSdk = setUp();
    const throughProducer = setUp({ producer: sluiceMetricProducer() });
    await scriptedRun(clock, semaphore);
    const [sdk, ours] = [await throughSdk.collect(), await throughProducer.collect()];
    for (const name of [WAIT, HOLD]) {
      expect(Object.keys(histograms(ours.get(name))).length).toBeGreaterThan(0);
      expect(histograms(ours.get(name))).toEqual(histograms(sdk.get(name)));
    }
  });

  it("keeps each limiter's points apart, by name and kind", async () => {
    const clock = new FakeClock();
    const [a, b] = [new Semaphore(1, { name: "a", clock }), new Semaphore(1, { name: "b", clock })];
    const mutex = new Mutex({ name: "m", clock });
    const { collect } = setUp({ producer: sluiceMetricProducer() });
    const held = [await a.acquire(), await b.acquire(), await mutex.acquire()];
    for (const [i, permit] of held.entries()) {
      clock.advance(10 * (i + 1));
      permit.release();
    }
    expect(histograms((await collect()).get(HOLD))).toEqual({
      "sluice.backend=memory,sluice.limiter.kind=semaphore,sluice.limiter.name=a": expected([0.01]),
      "sluice.backend=memory,sluice.limiter.kind=semaphore,sluice.limiter.name=b": expected([0.03]),
      "sluice.backend=memory,sluice.limiter.kind=mutex,sluice.limiter.name=m": expected([0.06]),
    });
  });

  it("delta: each collection reports what happened since the previous one, then starts afresh", async () => {
    const clock = new FakeClock();
    const semaphore = new Semaphore(1, { name: "db", clock });
    const { collect } = setUp({ producer: sluiceMetricProducer({ temporality: "delta" }), temporality: "delta" });
    const hold = async (milliseconds: number) => {
      const permit = await semaphore.acquire();
      clock.advance(milliseconds);
      permit.release();
    };
    await hold(10);
    await hold(20);
    const first = await collect();
    expect(histograms(first.get(HOLD))).toEqual({ [DB]: expected([0.01, 0.02]) });
    expect(first.get(HOLD)?.aggregationTemporality).toBe(AggregationTemporality.DELTA);
    // Nothing happened since: no histogram at all (as the SDK reports no delta point for a quiet series).
    const quiet = await collect();
    expect(quiet.has(HOLD)).toBe(false);
    expect(quiet.has(WAIT)).toBe(false);
    await hold(30);
    const third = await collect();
    expect(histograms(third.get(HOLD))).toEqual({ [DB]: expected([0.03]) });
    const [before] = first.get(HOLD)?.dataPoints ?? [];
    const [after] = third.get(HOLD)?.dataPoints ?? [];
    // The third interval starts where the (quiet) second ended: after the first interval's end.
    expect(toNanoseconds(after?.startTime)).toBeGreaterThan(toNanoseconds(before?.endTime));
    expect(toNanoseconds(before?.startTime)).toBeLessThanOrEqual(toNanoseconds(before?.endTime));
  });

  it("cumulative: a limiter no longer used keeps its last point, with the same start", async () => {
    const clock = new FakeClock();
    let dropped: Semaphore | undefined = new Semaphore(1, { name: "gone", clock });
    const { collect } = setUp({ producer: sluiceMetricProducer() });
    await dropped.run(() => clock.advance(10));
    dropped = undefined;
    const gone = "sluice.backend=memory,sluice.limiter.kind=semaphore,sluice.limiter.name=gone";
    const first = await collect();
    const second = await collect();
    expect(histograms(second.get(HOLD))).toEqual({ [gone]: expected([0.01]) });
    expect(second.get(HOLD)?.dataPoints[0]?.startTime).toEqual(first.get(HOLD)?.dataPoints[0]?.startTime);
  });

  it("cumulative: two readers of one producer both get every point, and neither disturbs the other", async () => {
    const clock = new FakeClock();
    const semaphore = new Semaphore(1, { name: "db", clock });
    const producer = sluiceMetricProducer();
    const first = setUp({ producer });
    const second = new PeriodicExportingMetricReader({
      exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE),
      metricProducers: [producer],
    });
    const meterProvider = new MeterProvider({ readers: [second] });
    running.push({ disable: () => void meterProvider.shutdown() });
    await semaphore.run(() => clock.advance(10));
    const holds = async () => {
      const { resourceMetrics } = await second.collect();
      const metric = resourceMetrics.scopeMetrics
        .flatMap((scope) => scope.metrics)
        .find((m) => m.descriptor.name === HOLD);
      return histograms(metric);
    };
    expect(await holds()).toEqual({ [DB]: expected([0.01]) });
    expect(histograms((await first.collect()).get(HOLD))).toEqual({ [DB]: expected([0.01]) });
    await semaphore.run(() => clock.advance(20));
    expect(await holds()).toEqual({ [DB]: expected([0.01, 0.02]) });
    expect(histograms((await first.collect()).get(HOLD))).toEqual({ [DB]: expected([0.01, 0.02]) });
  });

  it("delta: a limiter no longer used is no longer reported", async () => {
    const clock = new FakeClock();
    const { collect } = setUp({ producer: sluiceMetricProducer({ temporality: "delta" }), temporality: "delta" });
    await new Semaphore(1, { name: "gone", clock }).run(() => clock.advance(10));
    expect(Object.keys(histograms((await collect()).get(HOLD)))).toHaveLength(1);
    expect((await collect()).has(HOLD)).toBe(false);
  });

  it("carries on across instrumentations: a cumulative point keeps counting after disable and a new one", async () => {
    const clock = new FakeClock();
    const semaphore = new Semaphore(1, { name: "db", clock });
    const producer = sluiceMetricProducer();
    const { instrumentation, collect } = setUp({ producer });
    await semaphore.run(() => clock.advance(10));
    instrumentation.disable();
    await semaphore.run(() => clock.advance(500)); // not recorded: nobody listens
    running.push(instrumentSluice({ spans: "none", histograms: producer }));
    await semaphore.run(() => clock.advance(20));
    expect(histograms((await collect()).get(HOLD))).toEqual({ [DB]: expected([0.01, 0.02]) });
  });

  it("is read by the Prometheus exporter: buckets, count and sum next to the SDK's counters", async () => {
    const clock = new FakeClock();
    const semaphore = new Semaphore(2, { name: "db", clock });
    const producer = sluiceMetricProducer({ boundaries: [0.01, 0.1] });
    const exporter = new PrometheusExporter({ preventServerStart: true, metricProducers: [producer] });
    const meterProvider = new MeterProvider({ readers: [exporter] });
    running.push(instrumentSluice({ meterProvider, spans: "none", histograms: producer }), {
      disable: () => void meterProvider.shutdown(),
    });
    await scriptedRun(clock, semaphore);
    const { resourceMetrics, errors } = await exporter.collect();
    expect(errors).toEqual([]);
    const lines = new PrometheusSerializer().serialize(resourceMetrics).split("\n");
    const labels = 'sluice_limiter_name="db",sluice_limiter_kind="semaphore",sluice_backend="memory"';
    const scope = 'otel_scope_name="sluice"';
    expect(lines).toContain("# TYPE sluice_limiter_hold_duration histogram");
    // Holds of 0.05, 0.06 and 0.11 s: none up to 0.01, two up to 0.1, three in all.
    for (const line of [
      `sluice_limiter_hold_duration_count{${labels},${scope}} 3`,
      `sluice_limiter_hold_duration_sum{${labels},${scope}} 0.22`,
      `sluice_limiter_hold_duration_bucket{${labels},${scope},le="0.01"} 0`,
      `sluice_limiter_hold_duration_bucket{${labels},${scope},le="0.1"} 2`,
      `sluice_limiter_hold_duration_bucket{${labels},${scope},le="+Inf"} 3`,
      `sluice_limiter_wait_duration_count{${labels},sluice_result="acquired",${scope}} 3`,
      `sluice_limiter_requests_total{${labels},sluice_result="acquired",${scope}} 3`,
    ]) {
      expect(lines).toContain(line);
    }
  });

  it("exports only metrics the contract names, and every one it names once it happened", async () => {
    const job = everyMetricJob();
    const { collect } = setUp({ producer: sluiceMetricProducer(), limiters: [job.limiter] });
    await job.run();
    expect([...(await collect()).keys()].sort()).toEqual(
      Object.keys(METRICS)
        .filter((name) => name !== "sluice.lease.lost")
        .sort(),
    );
  });

  it("never rejects into the reader: a failure while collecting is returned in errors, and loses nothing", async () => {
    const clock = new FakeClock();
    const semaphore = new Semaphore(1, { name: "db", clock });
    const producer = sluiceMetricProducer({ temporality: "delta" });
    setUp({ producer, temporality: "delta" });
    await semaphore.run(() => clock.advance(10));
    const clockFailure = new Error("no time today");
    const now = vi.spyOn(performance, "now").mockImplementation(() => {
      throw clockFailure;
    });
    const failed = await producer.collect();
    now.mockRestore();
    expect(failed.errors).toEqual([clockFailure]);
    expect(failed.resourceMetrics.scopeMetrics).toEqual([]);
    // The failed collection reset nothing: the next one still has the hold.
    const [scope] = (await producer.collect()).resourceMetrics.scopeMetrics;
    expect(scope?.metrics.map((metric) => [metric.descriptor.name, metric.dataPoints[0]?.value.count])).toEqual([
      [WAIT, 1],
      [HOLD, 1],
    ]);
  });
});

describe("sluiceMetricProducer: bad input", () => {
  it("refuses a temporality, boundaries or an option it does not know, naming it and the value", () => {
    expect(() => sluiceMetricProducer({ temporality: "weekly" as never })).toThrow(
      new RangeError('temporality must be "cumulative" or "delta"; got "weekly"'),
    );
    expect(() => sluiceMetricProducer({ boundaries: "0.1,1" as never })).toThrow(TypeError);
    for (const boundaries of [
      [],
      [1, 0.5],
      [0.5, 0.5],
      [0.1, Number.POSITIVE_INFINITY],
      [Number.NaN],
      ["1" as never],
    ]) {
      expect(() => sluiceMetricProducer({ boundaries })).toThrow(RangeError);
      expect(() => sluiceMetricProducer({ boundaries })).toThrow(/^boundaries must be finite numbers .*; got /);
    }
    expect(() => sluiceMetricProducer({ boundaries: [0.5, 0.1] })).toThrow(/; got \[0\.5, 0\.1\]$/);
    expect(() => sluiceMetricProducer({ temporaltiy: "delta" } as never)).toThrow(/did you mean "temporality"/);
    expect(() => sluiceMetricProducer(null as never)).toThrow(TypeError);
  });

  it("takes only a producer sluiceMetricProducer() made, and one running instrumentation per producer", () => {
    expect(() => instrumentSluice({ histograms: { collect: async () => ({}) } as never })).toThrow(
      /^histograms must be a producer made by sluiceMetricProducer\(\); got /,
    );
    const producer = sluiceMetricProducer();
    const first = instrumentSluice({ spans: "none", histograms: producer });
    running.push(first);
    expect(() => instrumentSluice({ spans: "none", histograms: producer })).toThrow(/already keeps the histograms/);
    first.disable();
    running.push(instrumentSluice({ spans: "none", histograms: producer }));
  });

  it("keeps its own copy of the boundaries it was given", () => {
    const boundaries = [0.1, 1];
    const producer = sluiceMetricProducer({ boundaries });
    boundaries.push(0.5);
    expect(producer.boundaries).toEqual([0.1, 1]);
    expect(producer.temporality).toBe("cumulative");
  });
});

function toNanoseconds(time: [number, number] | undefined): number {
  return time === undefined ? Number.NaN : time[0] * 1e9 + time[1];
}
