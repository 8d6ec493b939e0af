/**
 * `sluice fetch --api-key` (repeatable) and `--api-key-file`: one run over several keys, each with the
 * limits of the command line of its own, against the mock provider with limits per key. The real binary;
 * the server's record is the referee.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type MockServer, startMockServer } from "sluice/testing";
import { describe, expect, it } from "vitest";
import { runCli, useCliScratch } from "./cli-process.js";

let server: MockServer | undefined;
const scratch = useCliScratch(
  "sluice-fetch-keys-",
  () => server,
  () => {
    server = undefined;
  },
);

const urls = (base: string, count: number) =>
  `${Array.from({ length: count }, (_, index) => `${base}/v1/models?n=${index + 1}`).join("\n")}\n`;

describe("sluice fetch over several API keys", () => {
  it("spreads the requests over every key, takes out a key whose quota runs out, and serves every line", async () => {
    server = await startMockServer({
      keys: {
        "sk-cli-one": { requestsPerMinute: 20 },
        "sk-cli-two": { requestsPerMinute: 20 },
        "sk-cli-spent": { requestsPerMinute: 20, quota: { requests: 4 } },
      },
      minute: "1s",
      latency: { min: 2, max: 10 },
    });
    const keys = join(scratch.directory, "keys.txt");
    writeFileSync(keys, "# two keys from a file\nsk-cli-two\n\nsk-cli-spent\n");
    const output = join(scratch.directory, "keys.jsonl");
    const result = await runCli(
      ["fetch", "--rate", "20/s", "-c", "4", "--api-key", "sk-cli-one", "--api-key-file", keys, "-o", output],
      { input: urls(server.url, 60) },
    );
    expect(result.code, result.stderr).toBe(0);
    const results = readFileSync(output, "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(results).toHaveLength(60);
    expect(results.every((entry) => entry["ok"] === true)).toBe(true);
    const served = server.requests.filter((record) => record.outcome === "ok");
    expect(served).toHaveLength(60);
    const perKey = (key: string) => served.filter((record) => record.apiKey === key).length;
    expect(perKey("sk-cli-spent")).toBe(4);
    expect(perKey("sk-cli-one")).toBeGreaterThan(15);
    expect(perKey("sk-cli-two")).toBeGreaterThan(15);
    // The quota answers (429 insufficient_quota) are the spent key's requests in flight when it ran out.
    const outcomes = server.summary().outcomes;
    expect(outcomes.quota ?? 0).toBeGreaterThanOrEqual(1);
    expect(outcomes.quota ?? 0).toBeLessThanOrEqual(4);
    expect(outcomes["rate-limited"] ?? 0).toBeLessThanOrEqual(2);
    expect(result.stderr).toMatch(/key 3 \(sk-\.\.\.pent\) taken out \(quota exhausted.*\); 2 key\(s\) left/);
    // The keys themselves are never printed.
    expect(result.stderr).not.toContain("sk-cli-spent");
  });

  it("refuses no keys, a key given twice, and a header option with nothing to carry, naming the option", async () => {
    const empty = join(scratch.directory, "empty.txt");
    writeFileSync(empty, "# nothing here\n\n");
    const noKeys = await runCli(["fetch", "--api-key-file", empty], { input: "" });
    expect(noKeys.code).toBe(2);
    expect(noKeys.stderr).toContain(`--api-key-file ${empty} has no key`);
    const twice = await runCli(["fetch", "--api-key", "sk-twice-0001", "--api-key", "sk-twice-0001"], { input: "" });
    expect(twice.code).toBe(2);
    expect(twice.stderr).toMatch(/--api-key: the API key sk-\.\.\.0001 is given twice \(first by --api-key\)/);
    expect(twice.stderr).not.toContain("sk-twice-0001");
    const empties = await runCli(["fetch", "--api-key", " "], { input: "" });
    expect(empties.code).toBe(2);
    expect(empties.stderr).toContain("an API key must not be empty");
    const header = await runCli(["fetch", "--api-key-header", "x-api-key"], { input: "" });
    expect(header.code).toBe(2);
    expect(header.stderr).toContain("--api-key-header names the header of --api-key, but no key is given");
    const both = await runCli(["fetch", "--api-key", "sk-a", "-H", "authorization: Bearer sk-b"], { input: "" });
    expect(both.code).toBe(2);
    expect(both.stderr).toContain("--header sets authorization");
  });
});
