// Observability benchmark: what one uncontended acquire + release costs with nobody listening, with a
// bare diagnostics_channel subscriber (sluice's own share: making and publishing the events), and with
// `sluice/otel` recording into the real OpenTelemetry SDK (metrics with the histograms recorded through
// the SDK; metrics with the histograms kept by `sluiceMetricProducer()`; metrics and a span per acquire).
//
//   npm run bench -- observability
//   node --expose-gc bench/observability.mjs [--runs 5] [--calls 1000000]
//
// Two loops per subject: `tryAcquire()` + `release()` (synchronous: the bookkeeping alone, least noise),
// and `await acquire()` + `release()` (the path an awaiting caller takes). Every sample runs in a fresh
// child process (nothing subscribed in one can linger into the next); samples are taken in rounds, one
// per subject per round; tables show medians, and the extra ns per call over "nobody listening".
//
// The SDK's reader collects (and exports, to memory) every COLLECT_EVERY calls and once at the end, in
// the timed part: what collection costs is counted, amortised over the calls. A real reader collects far
// less often (every 60 s by default), so this over-counts it.
import dc from "node:diagnostics_channel";
import { fileURLToPath } from "node:url";
import { machine, median, sampleInChild, table } from "./harness.mjs";

const self = fileURLToPath(import.meta.url);
const sluicePath = new URL("../dist/index.js", import.meta.url).href;
const otelPath = new URL("../dist/otel.js", import.meta.url).href;

const PHASES = ["start", "end", "asyncStart", "asyncEnd", "error"];
const COLLECT_EVERY = 100_000;

/** A reader exporting to memory every time it is flushed (never on its own), and its meter provider. */
async function sdkMetrics(metricProducers = []) {
  const { MeterProvider, InMemoryMetricExporter, PeriodicExportingMetricReader, AggregationTemporality } = await import(
    "@opentelemetry/sdk-metrics"
  );
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000, metricProducers });
  const collect = async () => {
    await reader.forceFlush();
    exporter.reset();
  };
  return { meterProvider: new MeterProvider({ readers: [reader] }), collect };
}

/**
 * Subjects: each sets up its listeners in the child, and returns how to make the SDK collect (if it
 * uses one).
 */
const subjects = {
  "nobody listening": async () => undefined,
  "a bare subscriber (sluice's own share)": async () => {
    const noop = () => undefined;
    const handlers = Object.fromEntries(PHASES.map((phase) => [phase, noop]));
    dc.tracingChannel("sluice:acquire").subscribe(handlers);
    dc.tracingChannel("sluice:hold").subscribe(handlers);
  },
  "sluice/otel, SDK metrics": async () => {
    const { instrumentSluice } = await import(otelPath);
    const { meterProvider, collect } = await sdkMetrics();
    instrumentSluice({ meterProvider, spans: "none" });
    return { collect };
  },
  "sluice/otel, SDK metrics, histograms by sluiceMetricProducer()": async () => {
    const { instrumentSluice, sluiceMetricProducer } = await import(otelPath);
    const histograms = sluiceMetricProducer();
    const { meterProvider, collect } = await sdkMetrics([histograms]);
    instrumentSluice({ meterProvider, spans: "none", histograms });
    return { collect };
  },
  "sluice/otel, SDK metrics + a span per acquire": async () => {
    const { instrumentSluice } = await import(otelPath);
    const { BasicTracerProvider, SimpleSpanProcessor, InMemorySpanExporter } = await import(
      "@opentelemetry/sdk-trace-base"
    );
    const { meterProvider, collect } = await sdkMetrics();
    const spans = new InMemorySpanExporter();
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
    instrumentSluice({ meterProvider, tracerProvider, spans: "all" });
    // Keep the exporter from holding a million spans: this measures recording, not memory.
    setInterval(() => spans.reset(), 50).unref();
    return { collect };
  },
};

const loops = {
  "`tryAcquire()` + `release()`": (semaphore) => (n) => {
    for (let i = 0; i < n; i++) semaphore.tryAcquire().release();
  },
  "`await acquire()` + `release()`": (semaphore) => async (n) => {
    for (let i = 0; i < n; i++) (await semaphore.acquire()).release();
  },
};

async function child(spec) {
  const { collect } = (await subjects[spec.subject]()) ?? {};
  const { Semaphore } = await import(sluicePath);
  const semaphore = new Semaphore(1, { name: "bench" });
  const loop = loops[spec.loop](semaphore);
  /** `calls` calls, the SDK collecting every COLLECT_EVERY of them and after the last. */
  const run = async (calls) => {
    for (let done = 0; done < calls; done += COLLECT_EVERY) {
      await loop(Math.min(COLLECT_EVERY, calls - done));
      await collect?.();
    }
  };
  await run(Math.min(spec.calls, 100_000)); // warm-up
  const started = process.hrtime.bigint();
  await run(spec.calls);
  const elapsed = Number(process.hrtime.bigint() - started);
  console.log(JSON.stringify({ nsPerCall: elapsed / spec.calls }));
  process.exit(0);
}

async function main() {
  const options = { runs: 5, calls: 1_000_000 };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--runs") options.runs = Number(argv[++i]);
    else if (argv[i] === "--calls") options.calls = Number(argv[++i]);
    else throw new Error(`unknown option ${argv[i]}`);
  }
  console.log(`Machine: ${machine()}`);
  console.log(
    `Command: \`node --expose-gc bench/observability.mjs --runs ${options.runs} --calls ${options.calls}\` — each sample in a fresh child process; medians of ${options.runs} rounds; the SDK collects every ${COLLECT_EVERY.toLocaleString("en-US")} calls and at the end, timed.\n`,
  );
  for (const loop of Object.keys(loops)) {
    const samples = Object.fromEntries(Object.keys(subjects).map((subject) => [subject, []]));
    for (let round = 0; round < options.runs; round++) {
      for (const subject of Object.keys(subjects)) {
        samples[subject].push(sampleInChild(self, { subject, loop, calls: options.calls }).nsPerCall);
      }
    }
    const floor = median(samples["nobody listening"]);
    console.log(`### ${loop}, ${options.calls.toLocaleString("en-US")} sequential calls, uncontended\n`);
    console.log(
      table(
        Object.entries(samples).map(([subject, values]) => ({
          subject,
          "ns per call (median)": median(values),
          "extra ns over nobody listening": median(values) - floor,
        })),
      ),
    );
    console.log("");
  }
}

const childIndex = process.argv.indexOf("--child");
if (childIndex !== -1) await child(JSON.parse(process.argv[childIndex + 1]));
else await main();
