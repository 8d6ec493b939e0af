/**
 * End-to-end tests of `sluice fetch` and `sluice demo`: the real binary against the mock provider
 * (sluice/testing) on loopback. The server's own records are the referee.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type MockServer, startMockServer } from "sluice/testing";
import { describe, expect, it } from "vitest";
import { runCli, startCli, useCliScratch, waitFor } from "./cli-process.js";

let server: MockServer | undefined;
const scratch = useCliScratch(
  "sluice-fetch-",
  () => server,
  () => {
    server = undefined;
  },
);

const urls = (base: string, count: number) =>
  `${Array.from({ length: count }, (_, index) => `${base}/v1/models?n=${index + 1}`).join("\n")}\n`;

function readResults(path: string): Record<string, unknown>[] {
  return readFileSync(path, "utf8")
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe("sluice fetch", () => {
  it("with the server's limits, gets zero 429s and writes one result per request", async () => {
    server = await startMockServer({
      requestsPerMinute: 20,
      minute: "1s",
      concurrency: 4,
      latency: { min: 5, max: 30 },
    });
    const output = join(scratch.directory, "ok.jsonl");
    const result = await runCli(["fetch", "--rate", "20/s", "-c", "4", "-q", "-o", output], {
      input: urls(server.url, 50),
    });
    expect(result.code).toBe(0);
    expect(server.summary()).toMatchObject({ total: 50, status429: 0 });
    const results = readResults(output);
    expect(results).toHaveLength(50);
    for (const entry of results) expect(entry).toMatchObject({ ok: true, status: 200, attempts: 1, method: "GET" });
    expect(new Set(results.map((entry) => entry["line"])).size).toBe(50);
    // The rate is what took the time: 50 at 20 per second needs two full windows after the first.
    expect(result.durationMs).toBeGreaterThan(2000);
  });

  it("without limits, honours 429 and Retry-After: every request ends up served, the 429s are counted", async () => {
    server = await startMockServer({
      requestsPerMinute: 20,
      minute: "1s",
      concurrency: 4,
      latency: { min: 5, max: 20 },
    });
    const result = await runCli(["fetch", "-c", "8", "--retries", "10", "--retry-delay", "50ms", "--json"], {
      input: urls(server.url, 30),
    });
    expect(result.code).toBe(0);
    const results = result.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(results).toHaveLength(30);
    expect(results.every((entry) => entry["ok"] === true && entry["status"] === 200)).toBe(true);
    const seen = server.summary();
    expect(seen.status429).toBeGreaterThan(0);
    // Every 429 the server sent was seen, retried and reported: nothing lost, nothing sent twice.
    expect(seen.outcomes.ok).toBe(30);
    const attempts = results.reduce((sum, entry) => sum + (entry["attempts"] as number), 0);
    expect(attempts).toBe(seen.total);
    expect(result.stderr).toContain(`${seen.status429} × 429`);
  });

  it("sends JSON request lines and charges estimated tokens against a token rate", async () => {
    server = await startMockServer({ requestsPerMinute: 600, tokensPerMinute: 600, minute: "1s", latency: 5 });
    const line = (index: number) =>
      JSON.stringify({
        url: `${server?.url}/v1/chat/completions`,
        method: "POST",
        body: { model: "m", max_tokens: 100, messages: [{ role: "user", content: `question ${index}` }] },
      });
    const input = `${Array.from({ length: 10 }, (_, index) => line(index)).join("\n")}\n`;
    const result = await runCli(["fetch", "--rate", "600/s:tokens", "--retry-post", "--json", "-q"], { input });
    expect(result.code).toBe(0);
    const results = result.stdout
      .trim()
      .split("\n")
      .map((text) => JSON.parse(text) as Record<string, unknown>);
    expect(results).toHaveLength(10);
    expect(results[0]).toMatchObject({ ok: true, status: 200, method: "POST" });
    expect((results[0]?.["body"] as { usage?: unknown } | undefined)?.usage).toBeDefined();
    expect(server.summary().status429).toBe(0);
  });

  it("stops on a quota error instead of retrying, and reads no further", async () => {
    server = await startMockServer({ quota: { requests: 3 } });
    const result = await runCli(["fetch", "-c", "1", "--json"], { input: urls(server.url, 50) });
    expect(result.code).toBe(1);
    const results = result.stdout
      .trim()
      .split("\n")
      .map((text) => JSON.parse(text) as Record<string, unknown>);
    expect(results.filter((entry) => entry["ok"] === true)).toHaveLength(3);
    const failed = results.filter((entry) => entry["ok"] === false);
    expect(failed.length).toBeGreaterThan(0);
    expect(failed.every((entry) => /quota/i.test(String(entry["error"])))).toBe(true);
    // Only one request was spent finding out, and the run stopped reading its input.
    expect(server.summary().total).toBe(4);
    expect(results.length).toBeLessThan(10);
    expect(result.stderr).toContain("quota exhausted: admission stopped");
  });

  it("on SIGINT stops sending, keeps the answers of requests already sent, and exits 130", async () => {
    server = await startMockServer({ latency: 20 });
    const cli = startCli(["fetch", "--rate", "10/s", "-c", "4", "--json"], { input: urls(server.url, 100) });
    await waitFor(() => cli.stdout().split("\n").length > 3, 10_000, "a few results");
    cli.child.kill("SIGINT");
    const result = await cli.result;
    expect(result.code).toBe(130);
    const results = result.stdout
      .trim()
      .split("\n")
      .map((text) => JSON.parse(text) as Record<string, unknown>);
    // Everything sent was answered and reported; what was still queued was not sent and not reported.
    expect(results.every((entry) => entry["ok"] === true)).toBe(true);
    expect(results).toHaveLength(server.summary().total);
    expect(results.length).toBeLessThan(100);
    expect(result.stderr).toMatch(/interrupted: admission stopped; \d+ read but not started/);
  });

  it("fails a line that is not a URL and a request to a closed port, with clear errors", async () => {
    const result = await runCli(["fetch", "--json", "-q", "--retries", "0"], {
      input: "not a url\nhttp://127.0.0.1:1/\n",
    });
    expect(result.code).toBe(1);
    const results = result.stdout
      .trim()
      .split("\n")
      .map((text) => JSON.parse(text) as Record<string, unknown>);
    expect(results.find((entry) => entry["line"] === 1)?.["error"]).toMatch(/not an http\(s\) URL/);
    expect(results.find((entry) => entry["line"] === 2)?.["error"]).toMatch(/fetch failed|ECONNREFUSED/);
  });
});

describe("sluice demo", () => {
  it("runs at the mock provider's limits with zero 429s, writes the report, then shows the contrast", async () => {
    const report = join(scratch.directory, "demo.html");
    const result = await runCli(["demo", "-n", "60", "--report", report, "-q"], { timeout: 30_000 });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("60/60 succeeded");
    expect(result.stdout).toMatch(/429 answers: 0 — none/);
    // At the limit, never over it. (The server's rate-limit headers may hold a start or two back: the
    // limiter only ever tightens on what the server reports.)
    const busiest = Number(/busiest 2s window: (\d+)\/40 requests/.exec(result.stdout)?.[1]);
    expect(busiest).toBeLessThanOrEqual(40);
    expect(busiest).toBeGreaterThanOrEqual(30);
    expect(result.stdout).toMatch(/without sluice's limiter[\s\S]*answered 429/);
    expect(existsSync(report)).toBe(true);
    expect(readFileSync(report, "utf8")).toContain("limits held");
  }, 40_000);
});

describe("sluice fetch against an overloaded service (503 without Retry-After beyond a hidden capacity)", () => {
  const overloaded = () => startMockServer({ latency: 10, overload: { capacity: 8, queue: 8 } });
  const attemptsOf = (stdout: string) =>
    stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { status: number; attempts: number });

  it("-c 64 (four times the capacity) backs off under the ceiling: everything served, at most 5% refused", async () => {
    // The service: 16 at once, 16 queued, 503 beyond.
    server = await startMockServer({ latency: 10, overload: { capacity: 16, queue: 16 } });
    // 1,500 requests: the first burst of 64 (the window opens at the ceiling) is refused beyond 32 once.
    const result = await runCli(["fetch", "-c", "64", "--retries", "10", "--json", "-q"], {
      input: urls(server.url, 1_500),
    });
    expect(result.code).toBe(0);
    const results = attemptsOf(result.stdout);
    expect(results.every((entry) => entry.status === 200)).toBe(true);
    const { total, outcomes } = server.summary();
    expect((outcomes.overloaded ?? 0) / total).toBeLessThanOrEqual(0.05);
  });

  it("-c auto:2-32 finds a limit: everything served, through the same retries", async () => {
    server = await overloaded();
    const result = await runCli(["fetch", "-c", "auto:2-32", "--retries", "10", "--json", "-q"], {
      input: urls(server.url, 400),
    });
    expect(result.code).toBe(0);
    expect(attemptsOf(result.stdout).every((entry) => entry.status === 200)).toBe(true);
    expect(server.summary().outcomes.ok).toBe(400);
  });

  it("-c auto: the live progress shows the adaptive limit now, not its MAX", async () => {
    // Capacity 8 and 20 ms each: 1,000 requests take at least 2.5 s, so a line a second shows the limit
    // while it moves; with 8 at once and 8 queued, a limit of MAX (64) would be refused most of the time.
    server = await startMockServer({ latency: 20, overload: { capacity: 8, queue: 8 } });
    const result = await runCli(["fetch", "-c", "auto:2-64", "--retries", "10", "--progress-interval", "1s"], {
      input: urls(server.url, 1000),
    });
    expect(result.code).toBe(0);
    const limits = result.stderr
      .split("\n")
      .map((line) => /^sluice fetch: .* · in flight \d+\/(\d+) \(auto 2-64\) · /.exec(line)?.[1])
      .filter((limit) => limit !== undefined)
      .map(Number);
    expect(limits.length, result.stderr).toBeGreaterThan(0);
    for (const limit of limits) expect(limit).toBeGreaterThanOrEqual(2);
    for (const limit of limits) expect(limit).toBeLessThanOrEqual(64);
    // It starts at 10 and stays near what the service takes: never the bound.
    expect(limits.some((limit) => limit < 64)).toBe(true);
    expect(result.stderr).not.toMatch(/in flight \d+\/64 \(auto/);
  });
});
