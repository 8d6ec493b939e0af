/**
 * sluice/otel over the Redis backend, with a real redis-server: a RedisSemaphore's waits and holds are
 * counted under `sluice.backend=redis`, a lease lost (the holder's record evicted behind its back) is
 * counted by `sluice.lease.lost`, and a RedisRateLimiter's wait for its concurrency slot and then the rate
 * is one wait.
 */

import { hrTimeToMilliseconds } from "@opentelemetry/core";
import {
  AggregationTemporality,
  type DataPoint,
  InMemoryMetricExporter,
  MeterProvider,
  type MetricData,
  PeriodicExportingMetricReader,
} from "@opentelemetry/sdk-metrics";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { LeaseLostError } from "sluice";
import { instrumentSluice } from "sluice/otel";
import { RedisMutex, RedisRateLimiter, RedisSemaphore } from "sluice/redis";
import { SharedMutex } from "sluice/threads";
// Installs the wait queue's invariant checks, which the admission check below runs.
import "sluice/testing";
import { describe, expect, it } from "vitest";
import { useRedisServer } from "../support/use-redis-server.js";

const context = useRedisServer();

/** The exported data points of `name`, as `value` by their `sluice.result` (or "" without one). */
async function collect(reader: PeriodicExportingMetricReader, exporter: InMemoryMetricExporter) {
  exporter.reset();
  await reader.forceFlush();
  const found = new Map<string, MetricData>();
  for (const resource of exporter.getMetrics()) {
    for (const scope of resource.scopeMetrics)
      for (const metric of scope.metrics) found.set(metric.descriptor.name, metric);
  }
  return (name: string) =>
    ((found.get(name)?.dataPoints ?? []) as DataPoint<number | { count: number }>[]).map((point) => ({
      attributes: point.attributes,
      value: typeof point.value === "number" ? point.value : point.value.count,
    }));
}

describe("sluice/otel with a RedisSemaphore", () => {
  it("counts requests and holds under sluice.backend=redis, and a lost lease under sluice.lease.lost", async () => {
    const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
    const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
    const meterProvider = new MeterProvider({ readers: [reader] });
    const name = `otel-${process.pid}`;
    const semaphore = context.track(
      new RedisSemaphore(context.redis, { name, capacity: 1, leaseTtl: 30_000, guardRestarts: false }),
    );
    const instrumentation = instrumentSluice({ meterProvider, limiters: [semaphore], spans: "none" });
    try {
      const first = await semaphore.acquire();
      const second = semaphore.acquire({ timeout: 10_000 });
      await first.release();
      const permit = await second;
      // Gone behind its back, as after an eviction: the release finds the lease lost.
      await context.redis.hdel(`sluice:{${name}}:meta`, `h:${(permit as { fencingToken: number }).fencingToken}`);
      expect(await Promise.resolve(permit.release()).catch((error: unknown) => error)).toBeInstanceOf(LeaseLostError);
      const metric = await collect(reader, exporter);
      const redis = { "sluice.limiter.name": name, "sluice.limiter.kind": "semaphore", "sluice.backend": "redis" };
      expect(metric("sluice.limiter.requests")).toEqual([
        { attributes: { ...redis, "sluice.result": "acquired" }, value: 2 },
      ]);
      expect(metric("sluice.limiter.hold.duration")).toEqual([{ attributes: redis, value: 2 }]);
      expect(metric("sluice.limiter.queued")).toEqual([{ attributes: redis, value: 0 }]);
      expect(metric("sluice.limiter.in_use")).toEqual([{ attributes: redis, value: 0 }]);
      expect(metric("sluice.limiter.capacity")).toEqual([{ attributes: redis, value: 1 }]);
      expect(metric("sluice.lease.lost")).toEqual([{ attributes: redis, value: 1 }]);
    } finally {
      instrumentation.disable();
      await meterProvider.shutdown();
    }
  });

  it("labels a RedisMutex's and a SharedMutex's metrics sluice.limiter.kind=mutex", async () => {
    const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
    const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
    const meterProvider = new MeterProvider({ readers: [reader] });
    const name = `otel-mutex-${process.pid}`;
    const mutex = context.track(new RedisMutex(context.redis, { name, leaseTtl: 30_000, guardRestarts: false }));
    const local = new SharedMutex({ name: "shared" });
    const instrumentation = instrumentSluice({ meterProvider, limiters: [mutex, local], spans: "none" });
    try {
      await mutex.runExclusive(() => undefined);
      await local.runExclusive(() => undefined);
      const metric = await collect(reader, exporter);
      expect(metric("sluice.limiter.requests")).toEqual(
        expect.arrayContaining([
          {
            attributes: {
              "sluice.limiter.name": name,
              "sluice.limiter.kind": "mutex",
              "sluice.backend": "redis",
              "sluice.result": "acquired",
            },
            value: 1,
          },
          {
            attributes: {
              "sluice.limiter.name": "shared",
              "sluice.limiter.kind": "mutex",
              "sluice.backend": "threads",
              "sluice.result": "acquired",
            },
            value: 1,
          },
        ]),
      );
    } finally {
      instrumentation.disable();
      await meterProvider.shutdown();
    }
  });
});

describe("sluice/otel with a RedisRateLimiter with a concurrency", () => {
  it("publishes the wait for the concurrency slot and then for the rate as one wait: one span, one result", async () => {
    const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
    const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
    const meterProvider = new MeterProvider({ readers: [reader] });
    const spanExporter = new InMemorySpanExporter();
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spanExporter)] });
    const name = `otel-rate-${process.pid}`;
    const limiter = context.track(
      new RedisRateLimiter(context.redis, {
        name,
        concurrency: 1,
        limits: [{ limit: 1, interval: "200ms" }],
        guardRestarts: false,
      }),
    );
    const instrumentation = instrumentSluice({ meterProvider, tracerProvider });
    try {
      const first = await limiter.acquire();
      // Gives up while waiting for the slot: still a wait of the rate limiter, timed out.
      expect(await limiter.acquire({ timeout: 20 }).catch((error: unknown) => error)).toMatchObject({
        name: "TimeoutError",
      });
      // Waits for the slot (released after 50 ms), then for the rate (one call per 200 ms).
      const second = limiter.acquire();
      setTimeout(() => void first.release(), 50);
      await (await second).release();
      const rate = { "sluice.limiter.name": name, "sluice.limiter.kind": "rate-limiter", "sluice.backend": "redis" };
      const metric = await collect(reader, exporter);
      expect(
        metric("sluice.limiter.requests").filter((point) => point.attributes["sluice.limiter.kind"] === "rate-limiter"),
      ).toEqual(
        expect.arrayContaining([
          { attributes: { ...rate, "sluice.result": "acquired" }, value: 2 },
          { attributes: { ...rate, "sluice.result": "timeout" }, value: 1 },
        ]),
      );
      const waits = spanExporter.getFinishedSpans().filter((span) => span.name === "sluice.wait");
      const ofRate = waits.filter((span) => span.attributes["sluice.limiter.name"] === name);
      const ofSlot = waits.filter((span) => span.attributes["sluice.limiter.name"] === `${name}/concurrency`);
      // Every wait of a Redis limiter is a wait (for Redis at least), the first one too.
      expect(ofRate.map((span) => span.attributes["sluice.result"])).toEqual(["acquired", "timeout", "acquired"]);
      expect(ofSlot.map((span) => span.attributes["sluice.result"])).toEqual(["acquired", "timeout", "acquired"]);
      // And each of the three requests is counted once, by how it ended.
      (limiter as unknown as { admission: { assertInvariants(): void } }).admission.assertInvariants();
      // The rate limiter's wait holds the slot's: it starts no later and ends no earlier.
      for (const [index, whole] of ofRate.entries()) {
        const slot = ofSlot[index] as (typeof ofSlot)[0];
        expect(hrTimeToMilliseconds(whole.startTime)).toBeLessThanOrEqual(hrTimeToMilliseconds(slot.startTime));
        expect(hrTimeToMilliseconds(whole.endTime)).toBeGreaterThanOrEqual(hrTimeToMilliseconds(slot.endTime));
      }
    } finally {
      instrumentation.disable();
      await meterProvider.shutdown();
    }
  });
});
