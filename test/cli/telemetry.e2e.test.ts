/**
 * `sluice run` / `sluice fetch` export sluice's metrics over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is
 * set and the OpenTelemetry packages are installed next to sluice (here: a copy of the built package
 * inside the repository's node_modules, which has them), to a collector stand-in on a loopback port; and
 * say which packages are missing, and still run, where they are not (a copy outside any node_modules).
 */
import { execFile } from "node:child_process";
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt, ROOT } from "./cli-process.js";

/** A copy of the built package (dist/ and package.json) in a new folder under `parent`. */
function copyPackage(parent: string): string {
  mkdirSync(parent, { recursive: true });
  const directory = mkdtempSync(join(parent, "sluice-"));
  cpSync(join(ROOT, "dist"), join(directory, "dist"), { recursive: true });
  copyFileSync(join(ROOT, "package.json"), join(directory, "package.json"));
  return directory;
}

/** Runs the copy's CLI to its end. */
function run(
  directory: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [join(directory, "dist", "cli.js"), ...args],
      { env: { ...process.env, ...env }, timeout: 30_000 },
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : (child.exitCode ?? 1), stdout, stderr }),
    );
    child.stdin?.end("a\nb\nc\n");
  });
}

let installed: string;
let bare: string;
let collector: Server;
let collectorUrl: string;
const received: { path: string; body: string }[] = [];

beforeAll(async () => {
  await ensureBuilt();
  installed = copyPackage(join(ROOT, "node_modules", ".sluice-telemetry-test"));
  bare = copyPackage(tmpdir());
  collector = createServer((request, response) => {
    let body = "";
    request.setEncoding("utf8").on("data", (chunk: string) => {
      body += chunk;
    });
    request.on("end", () => {
      received.push({ path: request.url ?? "", body });
      response.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve));
  collectorUrl = `http://127.0.0.1:${(collector.address() as { port: number }).port}`;
}, 120_000);

afterAll(() => {
  collector?.close();
  for (const directory of [installed, bare])
    if (directory !== undefined) rmSync(directory, { recursive: true, force: true });
});

describe("sluice run with OTEL_EXPORTER_OTLP_ENDPOINT", () => {
  it("exports the limiter's metrics to the endpoint when the OpenTelemetry packages are installed", async () => {
    received.length = 0;
    const result = await run(installed, ["run", "-c", "2", "--quiet", "--", "true", "{}"], {
      OTEL_EXPORTER_OTLP_ENDPOINT: collectorUrl,
    });
    expect(result.stderr).not.toMatch(/not installed/);
    expect(result.code).toBe(0);
    const metrics = received.filter(({ path }) => path === "/v1/metrics");
    expect(metrics.length).toBeGreaterThan(0);
    const body = metrics.map(({ body }) => body).join("\n");
    for (const name of ["sluice.limiter.requests", "sluice.limiter.wait.duration", "sluice.limiter.hold.duration"]) {
      expect(body).toContain(`"${name}"`);
    }
    // The histograms come from sluice's producer (sluiceMetricProducer): the OTLP exporter takes its
    // points as it takes the SDK's own. Three jobs, three holds, all in the buckets.
    type Exported = { name: string; histogram?: { dataPoints: Record<string, unknown>[] } };
    const holds = metrics
      .flatMap(
        ({ body }) =>
          (JSON.parse(body) as { resourceMetrics: { scopeMetrics: { metrics: Exported[] }[] }[] }).resourceMetrics,
      )
      .flatMap((resource) => resource.scopeMetrics)
      .flatMap((scope) => scope.metrics)
      .filter((metric) => metric.name === "sluice.limiter.hold.duration");
    const point = holds.at(-1)?.histogram?.dataPoints[0] ?? {};
    expect(Number(point["count"])).toBe(3);
    expect((point["bucketCounts"] as unknown[]).map(Number).reduce((sum, count) => sum + count, 0)).toBe(3);
    expect(point["explicitBounds"]).toHaveLength(18);
  });

  it("says which packages are missing, and runs the jobs anyway, when they are not installed", async () => {
    const result = await run(bare, ["run", "-c", "2", "--quiet", "--", "true", "{}"], {
      OTEL_EXPORTER_OTLP_ENDPOINT: collectorUrl,
    });
    expect(result.code).toBe(0);
    expect(result.stderr).toContain(
      "sluice run: OTEL_EXPORTER_OTLP_ENDPOINT is set, but @opentelemetry/api, @opentelemetry/sdk-metrics, @opentelemetry/exporter-metrics-otlp-http are not installed next to sluice, so no metrics are exported; install with: npm install @opentelemetry/api @opentelemetry/sdk-metrics @opentelemetry/exporter-metrics-otlp-http",
    );
  });

  it("says nothing about OpenTelemetry when the variable is not set", async () => {
    const result = await run(bare, ["run", "-c", "2", "--quiet", "--", "true", "{}"], {
      OTEL_EXPORTER_OTLP_ENDPOINT: "",
      OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: "",
    });
    expect(result.code).toBe(0);
    expect(result.stderr).not.toMatch(/OTEL|opentelemetry/);
  });
});
