/**
 * `sluice/otel`: OpenTelemetry metrics and spans for every sluice Limiter — in process, across worker
 * threads, through Redis, and `limitedFetch` — from the `sluice:*` diagnostics channels the one
 * admission step and the one permit publish. `@opentelemetry/api` is an optional peer dependency:
 * install it (your OpenTelemetry set-up already has it) to use this entry point.
 *
 * The metric names, units and attributes are a contract: dashboards and alerts are built on them (see
 * docs/observability.md).
 *
 * @example
 * ```ts
 * import { instrumentSluice } from "sluice/otel";
 * const instrumentation = instrumentSluice({ limiters: [api, database] });
 * // ... on shut-down:
 * instrumentation.disable();
 * ```
 *
 * @packageDocumentation
 * @module sluice/otel
 */
import dc from "node:diagnostics_channel";
import {
  type Attributes,
  type BatchObservableResult,
  type Context,
  type Counter,
  context,
  diag,
  type Histogram,
  type Meter,
  type MeterProvider,
  metrics,
  type Span,
  SpanStatusCode,
  type Tracer,
  type TracerProvider,
  trace,
} from "@opentelemetry/api";
import { checkOptionNames, optionNames } from "../core/arguments.js";
import { describe } from "../core/describe.js";
import type {
  AcquireEvent,
  HoldEvent,
  HttpAttemptEvent,
  LeaseLostEvent,
  LimiterIdentity,
  RatePauseEvent,
} from "../core/diagnostics.js";
import { identityOf } from "../core/diagnostics.js";
import { DURATION_BUCKETS, described, SCOPE } from "./metrics.js";
import { DurationProducer, type SluiceMetricProducer } from "./producer.js";

export { DURATION_BUCKETS, METRICS, type MetricDescription, type MetricName, SCOPE } from "./metrics.js";
export {
  type HistogramDataPoint,
  type HistogramMetricData,
  type MetricProducerOptions,
  type ProducedMetrics,
  type ProducedResource,
  type ProducedScopeMetrics,
  type SluiceMetricProducer,
  sluiceMetricProducer,
} from "./producer.js";

/** Options for {@link instrumentSluice}. Every field is optional. */
export interface InstrumentOptions {
  /** Where the metrics go. Default: the global meter provider (`metrics.getMeterProvider()`). */
  meterProvider?: MeterProvider;
  /** Where the `sluice.wait` spans go. Default: the global tracer provider. */
  tracerProvider?: TracerProvider;
  /**
   * Which waits get a `sluice.wait` span: `"queued"` (default) only those that waited in the queue,
   * `"all"` every acquire (a span of zero length for each uncontended one), `"none"` none.
   */
  spans?: "queued" | "all" | "none";
  /**
   * Limiters whose gauges to report: `sluice.limiter.capacity`, and `sluice.rate.remaining` for rate
   * limiters. (Counters, histograms and up-down counters cover every limiter without being listed.)
   */
  limiters?: readonly object[];
  /**
   * Called when recording fails (an exporter or a meter that throws). Default: OpenTelemetry's `diag`
   * logger, once. Admission is never affected.
   */
  onError?: (error: unknown) => void;
  /**
   * Where the two duration histograms (`sluice.limiter.wait.duration`, `sluice.limiter.hold.duration`)
   * are kept. Default: recorded through the meter, two SDK records per acquire + release (about 2 µs
   * with sdk-metrics 2.x, which hashes the attributes on every record; nothing to set up). A producer
   * from {@link sluiceMetricProducer}, also given to your reader (`metricProducers: [producer]`): sluice
   * keeps the buckets and the reader collects them (tens of ns per record). One running
   * instrumentation per producer.
   */
  histograms?: SluiceMetricProducer;
}

const INSTRUMENT_OPTIONS = /* @__PURE__ */ optionNames<InstrumentOptions>({
  meterProvider: true,
  tracerProvider: true,
  spans: true,
  limiters: true,
  onError: true,
  histograms: true,
});

/** What {@link instrumentSluice} returns: the running instrumentation. */
export interface SluiceInstrumentation extends Disposable {
  /**
   * Adds `limiter` to the gauges (see {@link InstrumentOptions.limiters}).
   * @throws TypeError if `limiter` is not a sluice Limiter.
   */
  observe(limiter: object): void;
  /**
   * Stops recording: unsubscribes from the channels and removes the callbacks that report the counters,
   * up-down counters and gauges (flush or shut down the meter provider first to export their last
   * figures). Idempotent.
   */
  disable(): void;
}

/** The parts of a TracingChannel handler set `instrumentSluice` subscribes. */
interface Handlers<Event> {
  start?(event: Event): void;
  end?(event: Event): void;
  asyncStart?(event: Event): void;
  asyncEnd?(event: Event): void;
  error?(event: Event): void;
}

/**
 * Starts recording sluice's metrics (and `sluice.wait` spans) into OpenTelemetry, for every Limiter in
 * this thread, until `disable()`.
 *
 * @throws TypeError/RangeError for bad options (naming the option); an Error when `histograms` is a
 *   producer a running instrumentation already records into; an Error naming what failed when the
 *   meter provider or tracer provider throws while the instruments are made (nothing is subscribed then).
 */
export function instrumentSluice(options: InstrumentOptions = {}): SluiceInstrumentation {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object; got ${describe(options)}`);
  }
  checkOptionNames(options, INSTRUMENT_OPTIONS, "the instrumentSluice() options");
  const spans = options.spans ?? "queued";
  if (spans !== "queued" && spans !== "all" && spans !== "none") {
    throw new RangeError(`spans must be "queued", "all" or "none"; got ${describe(spans)}`);
  }
  if (options.onError !== undefined && typeof options.onError !== "function") {
    throw new TypeError(`onError must be a function; got ${describe(options.onError)}`);
  }
  if (options.limiters !== undefined && !Array.isArray(options.limiters)) {
    throw new TypeError(`limiters must be an array of sluice limiters; got ${describe(options.limiters)}`);
  }
  const producer = checkProducer(options.histograms);
  const observed = new Set<object>();
  for (const limiter of options.limiters ?? []) observed.add(checkLimiter(limiter, "limiters[]"));
  let meter: Meter;
  let tracer: Tracer | undefined;
  try {
    meter = (options.meterProvider ?? metrics.getMeterProvider()).getMeter(SCOPE);
    tracer = spans === "none" ? undefined : (options.tracerProvider ?? trace.getTracerProvider()).getTracer(SCOPE);
  } catch (error) {
    throw new Error(`sluice/otel: the meter or tracer provider failed: ${describeError(error)}`, { cause: error });
  }
  let reported = false;
  const onError =
    options.onError ??
    ((error: unknown) => {
      if (reported) return;
      reported = true;
      diag.error(`sluice/otel: recording failed (reported once): ${describeError(error)}`);
    });
  const recorder = new Recorder(meter, tracer, spans, observed, onError, producer);
  return recorder.start();
}

function checkProducer(histograms: unknown): DurationProducer | undefined {
  if (histograms === undefined) return undefined;
  if (!(histograms instanceof DurationProducer)) {
    throw new TypeError(`histograms must be a producer made by sluiceMetricProducer(); got ${describe(histograms)}`);
  }
  if (histograms.attached) {
    // Two instrumentations recording into one producer would count every wait and hold twice.
    throw new Error(
      "histograms: this producer already keeps the histograms of a running instrumentSluice(); disable that one first, or make another producer",
    );
  }
  return histograms;
}

function checkLimiter(limiter: unknown, argument: string): object {
  if (identityOf(limiter) === undefined) {
    throw new TypeError(
      `${argument} must be a sluice limiter (Semaphore, Mutex, RateLimiter, SharedSemaphore, SharedRateLimiter, RedisSemaphore, RedisRateLimiter); got ${describe(limiter)}`,
    );
  }
  return limiter as object;
}

/** How a request ended, as `sluice.result` says it. */
type Result = "acquired" | "timeout" | "aborted" | "rejected";
const RESULTS: readonly Result[] = ["acquired", "timeout", "aborted", "rejected"];

/** Where one duration histogram's values for one attribute set go: an SDK histogram, or a producer's cell. */
interface DurationRecording {
  record(seconds: number): void;
}

/** Makes the {@link DurationRecording} of a histogram for an attribute set. */
type Durations = (duration: "wait" | "hold", attributes: Attributes) => DurationRecording;

/**
 * What is counted for one limiter between collections. The counters and up-down counters are kept here
 * as plain numbers and reported by observable instruments when the SDK collects: a record into the SDK
 * costs 0.8-1.1 µs (it hashes the attributes each time; measured in bench/observability.mjs's machine).
 * The two histograms go through the SDK's records, or, with a producer, into sluice's own buckets.
 */
class Series {
  /** Requests ended, by result (cumulative). */
  readonly requests: Record<Result, number> = { acquired: 0, timeout: 0, aborted: 0, rejected: 0 };
  /** Callers waiting now (counted by this instrumentation: queued while it listened). */
  queued = 0;
  /** Weight held now (granted while it listened). */
  inUse = 0;
  /** `sluice.limiter.*` and `sluice.backend`, made once. */
  readonly attributes: Attributes;
  /** The same as one string: limiters with the same key share their points. */
  readonly key: string;
  /** The same with `sluice.result`, made once per result. */
  readonly resultAttributes: Record<Result, Attributes>;
  /** `sluice.limiter.wait.duration`, by result. */
  readonly waits: Record<Result, DurationRecording>;
  /** `sluice.limiter.hold.duration`. */
  readonly holds: DurationRecording;
  constructor(limiter: LimiterIdentity, durations: Durations) {
    this.attributes = {
      "sluice.limiter.name": limiter.name ?? "",
      "sluice.limiter.kind": limiter.kind,
      "sluice.backend": limiter.backend,
    };
    this.key = JSON.stringify([limiter.name ?? "", limiter.kind, limiter.backend]);
    const withResult = (result: Result): Attributes => ({ ...this.attributes, "sluice.result": result });
    this.resultAttributes = {
      acquired: withResult("acquired"),
      timeout: withResult("timeout"),
      aborted: withResult("aborted"),
      rejected: withResult("rejected"),
    };
    const wait = (result: Result) => durations("wait", this.resultAttributes[result]);
    this.waits = {
      acquired: wait("acquired"),
      timeout: wait("timeout"),
      aborted: wait("aborted"),
      rejected: wait("rejected"),
    };
    this.holds = durations("hold", this.attributes);
  }
}

/** The instruments, and the handlers that feed them from the channels. */
class Recorder {
  private readonly durations: Durations;
  private readonly pauses: Counter;
  private readonly httpAttempts: Counter;
  private readonly leasesLost: Counter;
  /** Every limiter heard from, with its counts (kept while the instrumentation runs). */
  private readonly series = new Map<LimiterIdentity, Series>();
  /** The open `sluice.wait` spans, by their acquire, with their start (epoch ms). */
  private readonly waits = new Map<AcquireEvent, { span: Span; startedAt: number }>();
  /**
   * The queued requests and the permits counted up in `queued` / `in_use`: only those are counted down,
   * so a wait or a hold that began before this subscribed (another subscriber made the limiter publish)
   * never drives a figure below zero.
   */
  private readonly counted = new WeakSet<AcquireEvent | HoldEvent>();
  private readonly unsubscribe: (() => void)[] = [];
  private removeCallbacks: (() => void) | undefined;
  private enabled = false;

  constructor(
    private readonly meter: Meter,
    private readonly tracer: Tracer | undefined,
    private readonly spans: "queued" | "all" | "none",
    private readonly observed: Set<object>,
    private readonly onError: (error: unknown) => void,
    private readonly producer: DurationProducer | undefined,
  ) {
    try {
      this.durations =
        producer === undefined ? meterDurations(meter) : (duration, attributes) => producer.cell(duration, attributes);
      this.pauses = meter.createCounter("sluice.rate.pauses", described("sluice.rate.pauses"));
      this.httpAttempts = meter.createCounter("sluice.http.attempts", described("sluice.http.attempts"));
      this.leasesLost = meter.createCounter("sluice.lease.lost", described("sluice.lease.lost"));
      this.observables();
    } catch (error) {
      throw new Error(`sluice/otel: the meter failed to create sluice's instruments: ${describeError(error)}`, {
        cause: error,
      });
    }
  }

  start(): SluiceInstrumentation {
    this.subscribe<AcquireEvent>("sluice:acquire", {
      end: (event) => this.admitted(event),
      asyncEnd: (event) => this.acquired(event),
    });
    this.subscribe<HoldEvent>("sluice:hold", {
      start: (event) => {
        this.counted.add(event);
        this.seriesOf(event.limiter).inUse += event.weight;
      },
      asyncEnd: (event) => this.released(event),
    });
    this.listen<RatePauseEvent>("sluice:rate.pause", (event) =>
      this.pauses.add(1, this.seriesOf(event.limiter).attributes),
    );
    this.listen<LeaseLostEvent>("sluice:lease.lost", (event) =>
      this.leasesLost.add(1, this.seriesOf(event.limiter).attributes),
    );
    this.listen<HttpAttemptEvent>("sluice:http.attempt", (event) => this.attempted(event));
    this.enabled = true;
    if (this.producer !== undefined) this.producer.attached = true;
    const disable = () => this.disable();
    return {
      observe: (limiter) => {
        this.observed.add(checkLimiter(limiter, "limiter"));
      },
      disable,
      [Symbol.dispose]: disable,
    };
  }

  private disable(): void {
    if (!this.enabled) return;
    this.enabled = false;
    if (this.producer !== undefined) this.producer.attached = false;
    for (const unsubscribe of this.unsubscribe.splice(0)) unsubscribe();
    this.removeCallbacks?.();
    for (const { span } of this.waits.values()) span.end();
    this.waits.clear();
  }

  /** Subscribes `handlers`, each guarded: a failure is reported, never thrown into admission. */
  private subscribe<Event>(name: string, handlers: Handlers<Event>): void {
    const guarded: Handlers<Event> = {};
    for (const [phase, handler] of Object.entries(handlers) as [keyof Handlers<Event>, (event: Event) => void][]) {
      guarded[phase] = (event: Event) => {
        try {
          handler(event);
        } catch (error) {
          this.onError(error);
        }
      };
    }
    const channel = dc.tracingChannel(name);
    channel.subscribe(guarded as never);
    this.unsubscribe.push(() => channel.unsubscribe(guarded as never));
  }

  private listen<Event>(name: string, handler: (event: Event) => void): void {
    const guarded = (event: unknown) => {
      try {
        handler(event as Event);
      } catch (error) {
        this.onError(error);
      }
    };
    dc.subscribe(name, guarded);
    this.unsubscribe.push(() => dc.unsubscribe(name, guarded));
  }

  /** The observable instruments: counts kept in {@link Series}, and the gauges of the listed limiters. */
  private observables(): void {
    const meter = this.meter;
    const requests = meter.createObservableCounter("sluice.limiter.requests", described("sluice.limiter.requests"));
    const queued = meter.createObservableUpDownCounter("sluice.limiter.queued", described("sluice.limiter.queued"));
    const inUse = meter.createObservableUpDownCounter("sluice.limiter.in_use", described("sluice.limiter.in_use"));
    const capacity = meter.createObservableGauge("sluice.limiter.capacity", described("sluice.limiter.capacity"));
    const remaining = meter.createObservableGauge("sluice.rate.remaining", described("sluice.rate.remaining"));
    const instruments = [requests, queued, inUse, capacity, remaining];
    const callback = (result: BatchObservableResult) => {
      for (const { series, requested, waiting, held } of this.totals()) {
        for (const name of RESULTS) {
          if (requested[name] > 0) result.observe(requests, requested[name], series.resultAttributes[name]);
        }
        result.observe(queued, waiting, series.attributes);
        result.observe(inUse, held, series.attributes);
      }
      for (const limiter of this.observed) {
        try {
          this.reportGauges(limiter, (instrument, value, attributes) =>
            result.observe(instrument === "capacity" ? capacity : remaining, value, attributes),
          );
        } catch (error) {
          this.onError(error);
        }
      }
    };
    meter.addBatchObservableCallback(callback, instruments);
    this.removeCallbacks = () => meter.removeBatchObservableCallback(callback, instruments);
  }

  /**
   * The counts of every attribute set: limiters that share a name, kind and backend (two unnamed
   * semaphores) share a point, as they do in the histograms, so their counts add up. Observed one by
   * one, the SDK would keep only the last limiter's figure for the set.
   */
  private totals(): { series: Series; requested: Record<Result, number>; waiting: number; held: number }[] {
    const totals = new Map<
      string,
      { series: Series; requested: Record<Result, number>; waiting: number; held: number }
    >();
    for (const series of this.series.values()) {
      const total = totals.get(series.key);
      if (total === undefined) {
        totals.set(series.key, {
          series,
          requested: { ...series.requests },
          waiting: series.queued,
          held: series.inUse,
        });
        continue;
      }
      for (const name of RESULTS) total.requested[name] += series.requests[name];
      total.waiting += series.queued;
      total.held += series.inUse;
    }
    return [...totals.values()];
  }

  private reportGauges(
    limiter: object,
    observe: (instrument: "capacity" | "remaining", value: number, attributes: Attributes) => void,
  ): void {
    const statistics = (limiter as { statistics?(): unknown }).statistics?.() as
      | { capacity?: number; remaining?: Record<string, number> }
      | undefined;
    if (statistics === undefined) return;
    const attributes = this.seriesOf(identityOf(limiter) as LimiterIdentity).attributes;
    if (Number.isFinite(statistics.capacity)) observe("capacity", statistics.capacity as number, attributes);
    for (const [unit, left] of Object.entries(statistics.remaining ?? {})) {
      if (Number.isFinite(left)) observe("remaining", left, { ...attributes, "sluice.rate.unit": unit });
    }
  }

  private admitted(event: AcquireEvent): void {
    const series = this.seriesOf(event.limiter);
    if (event.queued) {
      this.counted.add(event);
      series.queued++;
    }
    if (this.tracer !== undefined && (event.queued || this.spans === "all")) {
      const startedAt = performance.timeOrigin + performance.now();
      const span = this.tracer.startSpan(
        "sluice.wait",
        {
          startTime: startedAt,
          attributes: { ...series.attributes, "sluice.weight": event.weight, "sluice.priority": event.priority },
        },
        context.active() as Context,
      );
      this.waits.set(event, { span, startedAt });
    }
  }

  private acquired(event: AcquireEvent): void {
    const outcome = event.outcome as Result;
    const series = this.seriesOf(event.limiter);
    series.requests[outcome]++;
    series.waits[outcome].record((event.endTime - event.startTime) / 1000);
    if (event.queued && this.counted.delete(event)) series.queued--;
    const wait = this.waits.get(event);
    if (wait === undefined) return;
    this.waits.delete(event);
    const { span, startedAt } = wait;
    span.setAttribute("sluice.result", outcome);
    if (outcome !== "acquired") {
      span.setStatus({ code: SpanStatusCode.ERROR, message: `${outcome}: ${describeError(event.error)}` });
    }
    span.end(startedAt + (event.endTime - event.startTime));
  }

  private released(event: HoldEvent): void {
    const series = this.seriesOf(event.limiter);
    if (this.counted.delete(event)) series.inUse -= event.weight;
    series.holds.record((event.endTime - event.startTime) / 1000);
  }

  private attempted(event: HttpAttemptEvent): void {
    const attributes: Attributes = {
      ...(event.limiter === undefined ? {} : this.seriesOf(event.limiter).attributes),
      "sluice.http.retry": event.retry,
    };
    if (event.status === undefined) attributes["error.type"] = "network";
    else attributes["http.response.status_code"] = event.status;
    this.httpAttempts.add(1, attributes);
  }

  private seriesOf(limiter: LimiterIdentity): Series {
    let series = this.series.get(limiter);
    if (series === undefined) {
      series = new Series(limiter, this.durations);
      this.series.set(limiter, series);
    }
    return series;
  }
}

/** The duration histograms recorded through `meter`: two SDK records per acquire + release. */
function meterDurations(meter: Meter): Durations {
  const advice = { advice: { explicitBucketBoundaries: [...DURATION_BUCKETS] } };
  const histograms: Record<"wait" | "hold", Histogram> = {
    wait: meter.createHistogram("sluice.limiter.wait.duration", {
      ...described("sluice.limiter.wait.duration"),
      ...advice,
    }),
    hold: meter.createHistogram("sluice.limiter.hold.duration", {
      ...described("sluice.limiter.hold.duration"),
      ...advice,
    }),
  };
  return (duration, attributes) => {
    const histogram = histograms[duration];
    return { record: (seconds) => histogram.record(seconds, attributes) };
  };
}

function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : describe(error);
}
