/**
 * `sluice run` and `sluice fetch` export sluice's OpenTelemetry metrics (see docs/observability.md) when
 * the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`) is set and the
 * OpenTelemetry packages are installed next to sluice; when they are not, it says which are missing and
 * the command runs without exporting.
 *
 * Everything OpenTelemetry is imported at run time, from where sluice is installed: the command must
 * start, and run, on a machine that has none of it.
 */

/** The packages the export needs, besides sluice. */
export const TELEMETRY_PACKAGES = [
  "@opentelemetry/api",
  "@opentelemetry/sdk-metrics",
  "@opentelemetry/exporter-metrics-otlp-http",
] as const;

/** A started export: `stop()` exports what is left and shuts the exporter down. */
export interface Telemetry {
  stop(): Promise<void>;
}

interface SdkMetrics {
  MeterProvider: new (options: {
    readers: unknown[];
    resource?: unknown;
  }) => {
    shutdown(): Promise<void>;
  };
  PeriodicExportingMetricReader: new (options: {
    exporter: unknown;
    exportIntervalMillis?: number;
    metricProducers?: unknown[];
  }) => unknown;
}
interface OtlpHttp {
  OTLPMetricExporter: new () => unknown;
}
interface SluiceOtel {
  instrumentSluice(options: { meterProvider: unknown; spans: "none"; histograms: unknown }): { disable(): void };
  sluiceMetricProducer(): unknown;
}

/**
 * Starts exporting if the environment asks for it; `undefined` when it does not, or when a package is
 * missing (said on `warn`).
 */
export async function startTelemetry(
  environment: NodeJS.ProcessEnv,
  command: string,
  warn: (line: string) => void,
): Promise<Telemetry | undefined> {
  const endpoint = environment.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT ?? environment.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (endpoint === undefined || endpoint === "") return undefined;
  const loaded: unknown[] = [];
  const missing: string[] = [];
  for (const name of TELEMETRY_PACKAGES) {
    try {
      loaded.push(await import(name));
    } catch {
      missing.push(name);
    }
  }
  if (missing.length > 0) {
    warn(
      `sluice ${command}: OTEL_EXPORTER_OTLP_ENDPOINT is set, but ${missing.join(", ")} ${missing.length === 1 ? "is" : "are"} not installed next to sluice, so no metrics are exported; install with: npm install ${TELEMETRY_PACKAGES.join(" ")}`,
    );
    return undefined;
  }
  const [, sdk, otlp] = loaded as [unknown, SdkMetrics, OtlpHttp];
  // sluice/otel sits next to this file in dist/; a computed URL keeps the bundler from inlining it.
  const otel = (await import(new URL("./otel.js", import.meta.url).href)) as SluiceOtel;
  // The histograms kept by sluice and collected by the reader: 0.4 µs per acquire + release instead of
  // two SDK records of about 1 µs each (docs/observability.md).
  const histograms = otel.sluiceMetricProducer();
  const reader = new sdk.PeriodicExportingMetricReader({
    exporter: new otlp.OTLPMetricExporter(),
    metricProducers: [histograms],
  });
  const meterProvider = new sdk.MeterProvider({ readers: [reader] });
  const instrumentation = otel.instrumentSluice({ meterProvider, spans: "none", histograms });
  return {
    async stop() {
      // Shut down (the last export) before disabling: disabling removes the callbacks that report the
      // counters and gauges, which the last export would then miss.
      try {
        await meterProvider.shutdown();
      } catch (error) {
        warn(`sluice ${command}: exporting the metrics to ${endpoint} failed: ${describe(error)}`);
      } finally {
        instrumentation.disable();
      }
    },
  };
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
