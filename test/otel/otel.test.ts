/**
 * `sluice/otel` with the real OpenTelemetry SDK (sdk-metrics with an in-memory exporter, sdk-trace-base
 * with an in-memory span exporter): after a scripted run on the fake clock, the exported counters,
 * histograms, up-down counters, gauges and spans are exactly what happened. Bad input fails at set-up;
 * a meter that fails while recording never breaks admission.
 */
import { context, type MeterProvider as MeterProviderApi, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import {
  AggregationTemporality,
  type DataPoint,
  type Histogram,
  InMemoryMetricExporter,
  MeterProvider,
  type MetricData,
  PeriodicExportingMetricReader,
} from "@opentelemetry/sdk-metrics";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { Mutex, RateLimiter, Semaphore } from "sluice";
import { limitedFetch } from "sluice/http";
import { instrumentSluice, METRICS, type SluiceInstrumentation } from "sluice/otel";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { SharedSemaphore } from "sluice/threads";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { everyMetricJob } from "./every-metric.js";
import { attributeKey, collectByName } from "./memory-reader.js";

const contextManager = new AsyncLocalStorageContextManager();
beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable());
});
afterAll(() => {
  context.disable();
});

const running: { disable(): void }[] = [];
afterEach(async () => {
  for (const instrumentation of running.splice(0)) instrumentation.disable();
});

/** A meter provider exporting to memory, a tracer provider likewise, and sluice instrumented into both. */
function setUp(options: { limiters?: object[]; spans?: "queued" | "all" | "none" } = {}) {
  const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  // The interval never elapses in a test: figures are read by `collect()` (forceFlush).
  const reader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 3_600_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const spanExporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spanExporter)] });
  const instrumentation = instrumentSluice({ meterProvider, tracerProvider, ...options });
  running.push(instrumentation, { disable: () => void meterProvider.shutdown() });
  const collect = () => collectByName(reader, metricExporter);
  return { instrumentation, collect, spanExporter, tracer: tracerProvider.getTracer("test") };
}

/** The data points of `metric`, as `attributes => value`, attributes written `key=value,...` sorted. */
function points(metric: MetricData | undefined): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  for (const point of (metric?.dataPoints ?? []) as DataPoint<unknown>[]) {
    const key = attributeKey(point.attributes);
    const value = point.value as number | Histogram;
    result[key] = typeof value === "number" ? value : { count: value.count, sum: Number(value.sum?.toFixed(9)) };
  }
  return result;
}

/** An attribute key as `points` writes it, from parts that may themselves hold several attributes. */
function key(...parts: string[]): string {
  return parts
    .flatMap((part) => part.split(","))
    .sort()
    .join(",");
}

const DB = "sluice.backend=memory,sluice.limiter.kind=semaphore,sluice.limiter.name=db";

describe("sluice/otel with the OpenTelemetry SDK", () => {
  it("exports exactly what a scripted run did: requests, waits, holds, queued, in use, capacity, spans", async () => {
    const clock = new FakeClock();
    const semaphore = new Semaphore(2, { name: "db", clock });
    const { collect, spanExporter, tracer } = setUp({ limiters: [semaphore] });
    await tracer.startActiveSpan("job", async (job) => {
      const a = await semaphore.acquire(); // at once
      const b = await semaphore.acquire({ priority: 1 }); // at once
      const c = semaphore.acquire({ timeout: 100 }); // queued: granted after 40 ms
      const d = semaphore.acquire({ timeout: 30 }); // queued: times out after 30 ms
      const controller = new AbortController();
      const e = semaphore.acquire({ signal: controller.signal }); // queued: aborted after 10 ms
      const f = semaphore.acquire({ weight: 3 }); // rejected at once
      await f.catch(() => undefined);
      const during = await collect();
      expect(points(during.get("sluice.limiter.queued"))).toEqual({ [DB]: 3 });
      expect(points(during.get("sluice.limiter.in_use"))).toEqual({ [DB]: 2 });
      clock.advance(10);
      controller.abort();
      clock.advance(20);
      clock.advance(10);
      a.release();
      const permit = await c;
      clock.advance(60);
      b.release();
      permit.release();
      await Promise.allSettled([d, e]);
      job.end();
    });
    await flushMicrotasks();
    const metrics = await collect();
    expect(points(metrics.get("sluice.limiter.requests"))).toEqual({
      [`${DB},sluice.result=acquired`]: 3,
      [`${DB},sluice.result=timeout`]: 1,
      [`${DB},sluice.result=aborted`]: 1,
      [`${DB},sluice.result=rejected`]: 1,
    });
    expect(points(metrics.get("sluice.limiter.wait.duration"))).toEqual({
      [`${DB},sluice.result=acquired`]: { count: 3, sum: 0.04 },
      [`${DB},sluice.result=timeout`]: { count: 1, sum: 0.03 },
      [`${DB},sluice.result=aborted`]: { count: 1, sum: 0.01 },
      [`${DB},sluice.result=rejected`]: { count: 1, sum: 0 },
    });
    // a: 0 → 40 ms; b: 0 → 100 ms; c: 40 → 100 ms.
    expect(points(metrics.get("sluice.limiter.hold.duration"))).toEqual({ [DB]: { count: 3, sum: 0.2 } });
    expect(points(metrics.get("sluice.limiter.queued"))).toEqual({ [DB]: 0 });
    expect(points(metrics.get("sluice.limiter.in_use"))).toEqual({ [DB]: 0 });
    expect(points(metrics.get("sluice.limiter.capacity"))).toEqual({ [DB]: 2 });
    expect(metrics.get("sluice.limiter.wait.duration")?.descriptor.unit).toBe("s");
    expect(metrics.get("sluice.limiter.requests")?.descriptor.unit).toBe("{request}");

    const spans = spanExporter.getFinishedSpans();
    const job = spans.find((span) => span.name === "job");
    const waits = spans.filter((span) => span.name === "sluice.wait");
    const ms = (time: [number, number]) => time[0] * 1e3 + time[1] / 1e6;
    expect(
      waits
        .map((span) => ({
          parent: span.parentSpanContext?.spanId === job?.spanContext().spanId,
          trace: span.spanContext().traceId === job?.spanContext().traceId,
          result: span.attributes["sluice.result"],
          name: span.attributes["sluice.limiter.name"],
          milliseconds: Math.round(ms(span.duration) * 1000) / 1000,
          error: span.status.code === 2,
        }))
        .sort((x, y) => x.milliseconds - y.milliseconds),
    ).toEqual([
      { parent: true, trace: true, result: "aborted", name: "db", milliseconds: 10, error: true },
      { parent: true, trace: true, result: "timeout", name: "db", milliseconds: 30, error: true },
      { parent: true, trace: true, result: "acquired", name: "db", milliseconds: 40, error: false },
    ]);
  });

  it("names a Mutex, a RateLimiter and a SharedSemaphore by kind and backend; counts pauses; reports remaining", async () => {
    const clock = new FakeClock();
    const mutex = new Mutex({ name: "m", clock });
    const limiter = new RateLimiter({ name: "api", clock, limits: [{ limit: 10, interval: 1_000 }] });
    const shared = new SharedSemaphore(3, { name: "threads", clock });
    const { collect } = setUp({ limiters: [limiter, shared], spans: "none" });
    await mutex.runExclusive(() => undefined);
    await limiter.run(() => undefined, { cost: 3 });
    limiter.pause(500, "Retry-After");
    await shared.run(() => undefined);
    const metrics = await collect();
    expect(Object.keys(points(metrics.get("sluice.limiter.requests"))).sort()).toEqual([
      "sluice.backend=memory,sluice.limiter.kind=mutex,sluice.limiter.name=m,sluice.result=acquired",
      "sluice.backend=memory,sluice.limiter.kind=rate-limiter,sluice.limiter.name=api,sluice.result=acquired",
      "sluice.backend=threads,sluice.limiter.kind=semaphore,sluice.limiter.name=threads,sluice.result=acquired",
    ]);
    const api = "sluice.backend=memory,sluice.limiter.kind=rate-limiter,sluice.limiter.name=api";
    expect(points(metrics.get("sluice.rate.pauses"))).toEqual({ [api]: 1 });
    // What statistics() says: the pause puts the bucket in debt until it ends (see RateLimiter.pause).
    const remaining = limiter.statistics().remaining.requests as number;
    expect(remaining).toBeLessThan(0);
    expect(points(metrics.get("sluice.rate.remaining"))).toEqual({
      [key(api, "sluice.rate.unit=requests")]: remaining,
    });
    expect(points(metrics.get("sluice.limiter.capacity"))).toEqual({
      "sluice.backend=threads,sluice.limiter.kind=semaphore,sluice.limiter.name=threads": 3,
    });
  });

  it("counts limitedFetch's attempts by status and whether each was a retry", async () => {
    const clock = new FakeClock();
    const semaphore = new Semaphore(1, { name: "http", clock });
    const { collect } = setUp({ spans: "none" });
    const statuses = [500, 500, 200];
    const fetch = limitedFetch(semaphore, {
      clock,
      random: () => 0,
      fetch: async () => new Response("{}", { status: statuses.shift() ?? 200 }),
    });
    const answer = fetch("http://127.0.0.1/x");
    for (let i = 0; i < 10; i++) {
      await flushMicrotasks();
      clock.advance(0);
    }
    expect((await answer).status).toBe(200);
    const http = "sluice.backend=memory,sluice.limiter.kind=semaphore,sluice.limiter.name=http";
    expect(points((await collect()).get("sluice.http.attempts"))).toEqual({
      [key("http.response.status_code=500", http, "sluice.http.retry=false")]: 1,
      [key("http.response.status_code=500", http, "sluice.http.retry=true")]: 1,
      [key("http.response.status_code=200", http, "sluice.http.retry=true")]: 1,
    });
  });

  it("exports only metrics the contract names, and every one it names once it happened", async () => {
    const job = everyMetricJob();
    const { collect } = setUp({ limiters: [job.limiter], spans: "none" });
    await job.run();
    const names = [...(await collect()).keys()].sort();
    for (const name of names) expect(Object.keys(METRICS)).toContain(name);
    expect(names).toEqual(
      Object.keys(METRICS)
        .filter((name) => name !== "sluice.lease.lost")
        .sort(),
    );
  });

  it("adds up limiters that share a name, kind and backend into one point, in the counters as in the histograms", async () => {
    const [a, b] = [new Semaphore(1), new Semaphore(1)];
    const { collect } = setUp({ spans: "none" });
    for (let i = 0; i < 3; i++) a.tryAcquire()?.release();
    for (let i = 0; i < 5; i++) b.tryAcquire()?.release();
    const held = [a.tryAcquire(), b.tryAcquire()];
    const metrics = await collect();
    const unnamed = "sluice.backend=memory,sluice.limiter.kind=semaphore,sluice.limiter.name=";
    expect(points(metrics.get("sluice.limiter.requests"))).toEqual({ [`${unnamed},sluice.result=acquired`]: 10 });
    expect(points(metrics.get("sluice.limiter.in_use"))).toEqual({ [unnamed]: 2 });
    expect(points(metrics.get("sluice.limiter.hold.duration"))).toMatchObject({ [unnamed]: { count: 8 } });
    for (const permit of held) permit?.release();
  });

  it("stops recording when disabled", async () => {
    const semaphore = new Semaphore(1, { name: "off" });
    const { instrumentation, collect } = setUp();
    instrumentation.disable();
    instrumentation.disable();
    await semaphore.run(() => undefined);
    expect(points((await collect()).get("sluice.limiter.requests"))).toEqual({});
  });
});

describe("sluice/otel: bad input", () => {
  it("refuses what is not a sluice limiter, and misspelt options, at set-up", () => {
    expect(() => instrumentSluice({ limiters: [{ acquire() {} }] })).toThrow(
      /limiters\[\] must be a sluice limiter .*; got/,
    );
    expect(() => instrumentSluice({ limiter: [] } as never)).toThrow(/limiters/);
    expect(() => instrumentSluice({ spans: "some" as never })).toThrow(RangeError);
    const instrumentation: SluiceInstrumentation = instrumentSluice({ spans: "none" });
    running.push(instrumentation);
    expect(() => instrumentation.observe(42 as never)).toThrow(TypeError);
  });

  it("says so at set-up when the meter provider throws, and subscribes nothing", async () => {
    const failing = {
      getMeter: () => {
        throw new Error("no meter today");
      },
    } as unknown as MeterProviderApi;
    expect(() => instrumentSluice({ meterProvider: failing })).toThrow(
      /meter or tracer provider failed.*no meter today/,
    );
    const broken = {
      getMeter: () => ({
        createHistogram: () => {
          throw new Error("no histograms");
        },
      }),
    } as unknown as MeterProviderApi;
    expect(() => instrumentSluice({ meterProvider: broken })).toThrow(
      /failed to create sluice's instruments.*no histograms/,
    );
  });

  it("never lets a meter that fails while recording break admission; reports the failure", async () => {
    const failing = () => {
      throw new Error("exporter down");
    };
    const instrument = { add: failing, record: failing };
    const meter = {
      createCounter: () => instrument,
      createHistogram: () => instrument,
      createUpDownCounter: () => instrument,
      createObservableCounter: () => ({}),
      createObservableUpDownCounter: () => ({}),
      createObservableGauge: () => ({}),
      addBatchObservableCallback: () => undefined,
      removeBatchObservableCallback: () => undefined,
    };
    const errors: unknown[] = [];
    const instrumentation = instrumentSluice({
      meterProvider: { getMeter: () => meter } as unknown as MeterProviderApi,
      tracerProvider: trace.getTracerProvider(),
      onError: (error) => errors.push(error),
    });
    running.push(instrumentation);
    const clock = new FakeClock();
    const semaphore = new Semaphore(1, { clock });
    const held = await semaphore.acquire();
    const waiting = semaphore.acquire({ timeout: 5 });
    clock.advance(5);
    await expect(waiting).rejects.toThrow(/timed out/);
    held.release();
    expect(await semaphore.run(() => "still works")).toBe("still works");
    expect(semaphore.statistics()).toMatchObject({ granted: 2, timedOut: 1, inUse: 0, waiting: 0 });
    expect(errors.length).toBeGreaterThan(0);
    expect((errors[0] as Error).message).toBe("exporter down");
  });
});
