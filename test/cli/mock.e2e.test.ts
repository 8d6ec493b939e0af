/**
 * `sluice mock`: the mock provider of sluice/testing as a command, through the real binary: it prints
 * its URL, enforces the limits it was given the way a provider does, and stops cleanly on Ctrl-C and
 * SIGTERM (issue 15, item 10).
 */
import { createServer } from "node:net";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { type CliProcess, ensureBuilt, runCli, startCli, waitFor } from "./cli-process.js";

let mock: CliProcess | undefined;

beforeAll(async () => {
  await ensureBuilt();
}, 120_000);

afterEach(async () => {
  if (mock !== undefined && mock.child.exitCode === null) {
    mock.child.kill("SIGKILL");
    await mock.result.catch(() => undefined);
  }
  mock = undefined;
});

/** Starts `sluice mock ARGS --port 0` and resolves with its URL, read from its first stdout line. */
async function startMock(args: readonly string[]): Promise<string> {
  mock = startCli(["mock", "--port", "0", ...args], { openStdin: true, timeout: 30_000 });
  const running = mock;
  await waitFor(() => running.stdout().includes("\n"), 10_000, "the mock's URL");
  return running.stdout().split("\n")[0] as string;
}

const urls = (base: string, count: number) =>
  `${Array.from({ length: count }, (_, index) => `${base}/v1/models?n=${index + 1}`).join("\n")}\n`;

describe("sluice mock", () => {
  it("prints its URL alone on stdout, serves sluice fetch, and on Ctrl-C stops with exit 0 and what it served", async () => {
    const url = await startMock(["--requests-per-minute", "600"]);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const fetched = await runCli(["fetch", "-q", "--rate", "10/s", "-c", "4"], { input: urls(url, 5) });
    expect(fetched.code, fetched.stderr).toBe(0);
    expect(fetched.stdout.trim().split("\n")).toHaveLength(5);
    mock?.child.kill("SIGINT");
    const result = await mock?.result;
    expect(result?.code).toBe(0);
    expect(result?.stdout).toBe(`${url}\n`);
    expect(result?.stderr).toContain("a mock openai API allowing 600 requests per 1m (429 beyond)");
    expect(result?.stderr).toMatch(/stopped \(SIGINT\) after 5 requests: ok 5; 0 × 429/);
  });

  it("enforces its limits as a provider does: a client without sluice's limits gets 429s, sluice fetch gets none", async () => {
    const url = await startMock(["--requests-per-minute", "60", "--minute", "1s", "-c", "4", "--latency", "5ms..20ms"]);
    const requests = urls(url, 20);
    const unlimited = await runCli(["fetch", "-q", "--retries", "0", "-c", "20"], { input: requests });
    expect(unlimited.code).toBe(1);
    expect(unlimited.stdout).toContain('"status":429');
    // Wait for the bucket to refill, then the same traffic within the server's limits.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const limited = await runCli(["fetch", "-q", "--rate", "60/s", "-c", "4"], { input: requests });
    expect(limited.code, limited.stdout).toBe(0);
    expect(limited.stdout).not.toContain('"status":429');
    mock?.child.kill("SIGTERM");
    expect((await mock?.result)?.code).toBe(0);
  });

  it("--overload C:QUEUE behaves like an overloaded service: 503 without Retry-After beyond; sluice fetch -c 64 still gets everything", async () => {
    const url = await startMock(["--overload", "2:2", "--latency", "20ms"]);
    const responses = await Promise.all(Array.from({ length: 8 }, () => fetch(`${url}/work`)));
    const refused = responses.filter((response) => response.status === 503);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused[0]?.headers.get("retry-after")).toBeNull();
    const fetched = await runCli(["fetch", "-q", "-c", "64", "--retries", "10"], { input: urls(url, 60) });
    expect(fetched.code, fetched.stdout).toBe(0);
    mock?.child.kill("SIGTERM");
    expect((await mock?.result)?.code).toBe(0);
  });

  it("a port in use: exit 3 with a message that says what to do", async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      const result = await runCli(["mock", "--port", String(port)]);
      expect(result.code).toBe(3);
      expect(result.stderr).toBe(
        `sluice mock: cannot listen on 127.0.0.1:${port}: port ${port} is in use: give --port N, or --port 0 for any free port\n`,
      );
    } finally {
      taken.close();
    }
  });

  it.each([
    [["--port", "70000"], /--port must be an integer from 0 to 65535/],
    [["--fail", "hang"], /--fail hang: the share must be a number from 0 to 1/],
    [["--fail", "timeout=0.1"], /--fail timeout=0.1: the kind must be one of server-error, overloaded, reset, hang/],
    [["--latency", "80ms..20ms"], /--latency: the range "80ms\.\.20ms" ends before it starts/],
    [["--style", "gemini"], /--style must be openai or anthropic/],
  ])("refuses %j with a usage error", async (args, message) => {
    const result = await runCli(["mock", ...args]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
  });
});

describe("sluice mock --api-key", () => {
  it("accepts only the keys given, each with the limits of its own, and refuses a key given twice", async () => {
    const url = await startMock([
      "--api-key",
      "sk-mock-a",
      "--api-key",
      "sk-mock-b",
      "--requests-per-minute",
      "2",
      "--minute",
      "1h",
    ]);
    const send = (key: string) =>
      fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${key}` } }).then((response) => response.status);
    expect([await send("sk-mock-a"), await send("sk-mock-a"), await send("sk-mock-a")]).toEqual([200, 200, 429]);
    // The other key's bucket is its own; a key not given is refused.
    expect([await send("sk-mock-b"), await send("sk-other")]).toEqual([200, 401]);
    mock?.child.kill("SIGINT");
    const result = await mock?.result;
    expect(result?.stderr).toContain("2 requests per 1h per API key (2 accepted)");
    const twice = await runCli(["mock", "--port", "0", "--api-key", "sk-x", "--api-key", "sk-x"]);
    expect(twice.code).toBe(2);
    expect(twice.stderr).toContain("--api-key sk-x is given twice");
  });
});
