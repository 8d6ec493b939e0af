/**
 * `--key-field`: a key per JSON input line, limits per key (`--rate-per-key`, `--concurrency-per-key`)
 * and fair turns between the keys at the shared limits, lines read ahead up to `--read-ahead`. The real
 * binary against the in-process mock API; the mock's request log, grouped by the key each request
 * carries in a header, is the referee.
 */
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type MockRequestRecord, type MockServer, startMockServer } from "sluice/testing";
import { describe, expect, it } from "vitest";
import { runCli, startCli, useCliScratch, waitFor } from "./cli-process.js";

let server: MockServer | undefined;
const scratch = useCliScratch(
  "sluice-key-field-",
  () => server,
  () => {
    server = undefined;
  },
);

/** A JSON request line for `customer`, which carries its key in the `x-customer` header too. */
const request = (base: string, customer: string, n: number) =>
  JSON.stringify({ url: `${base}/v1/models?n=${n}`, headers: { "x-customer": customer }, customer });

/** `count` lines for key A, then one for key B. */
const aThenB = (base: string, count: number) =>
  `${[...Array.from({ length: count }, (_, index) => request(base, "A", index)), request(base, "B", 0)].join("\n")}\n`;

const keyOf = (record: MockRequestRecord) => record.headers["x-customer"] as string;

/** The most of `times` (ms) within any window of `width` ms. */
function busiestWindow(times: readonly number[], width: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  let first = 0;
  for (let last = 0; last < sorted.length; last++) {
    while ((sorted[last] as number) - (sorted[first] as number) >= width) first++;
    most = Math.max(most, last - first + 1);
  }
  return most;
}

/**
 * Server-side arrival times can be closer together than the starts sluice admitted: the first requests
 * of a run wait for new connections and for the HTTP client's first use (measured: the first window's
 * arrivals up to 120 ms after their admission on a loaded machine, later ones within a few ms). The
 * window checked is that much shorter, which only weakens the check: without the limit, a key's 15
 * requests arrive within a few ms.
 */
const JITTER = 250;

describe("sluice fetch --key-field", () => {
  it("holds --rate-per-key for each key, while the keys run side by side", async () => {
    server = await startMockServer({ latency: { min: 1, max: 5 } });
    const base = server.url;
    const input = `${["A", "B", "C"]
      .flatMap((customer) => Array.from({ length: 15 }, (_, index) => request(base, customer, index)))
      .join("\n")}\n`;
    const result = await runCli(
      [
        "fetch",
        "--key-field",
        "customer",
        "--rate-per-key",
        "5/s",
        "-c",
        "8",
        "-o",
        join(scratch.directory, "rate.jsonl"),
      ],
      { input, timeout: 30_000 },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/5\/s per key held: at most 5 started by one key in any 1 s/);
    const served = server.requests.filter((record) => record.outcome === "ok");
    expect(served).toHaveLength(45);
    for (const customer of ["A", "B", "C"]) {
      const times = served.filter((record) => keyOf(record) === customer).map((record) => record.arrivedAt);
      expect(times).toHaveLength(15);
      expect(
        busiestWindow(times, 1000 - JITTER),
        `key ${customer}: ${times.map(Math.round).join(" ")}`,
      ).toBeLessThanOrEqual(5);
    }
    // Per key, not shared: the three keys together started more than one key's 5 in some second.
    expect(
      busiestWindow(
        served.map((record) => record.arrivedAt),
        1000,
      ),
    ).toBeGreaterThan(5);
  });

  it("fair turns: key A's 500 lines, then key B's one: B is sent within a few of A's", async () => {
    server = await startMockServer({ latency: { min: 1, max: 3 } });
    const input = aThenB(server.url, 500);
    const result = await runCli(
      ["fetch", "--key-field", "customer", "-c", "4", "--rate", "200/s", "-o", join(scratch.directory, "fair.jsonl")],
      { input, timeout: 30_000 },
    );
    expect(result.code, result.stderr).toBe(0);
    const order = server.requests.map(keyOf);
    expect(order).toHaveLength(501);
    // First come, first served, B would be the 501st; in turns, it goes once a slot frees after it is read.
    expect(order.indexOf("B"), order.slice(0, 20).join("")).toBeLessThan(4 + 4);
  });

  it("reads only --read-ahead lines ahead: with 10, B's line is read, and sent, only among A's last", async () => {
    server = await startMockServer({ latency: { min: 1, max: 3 } });
    const input = aThenB(server.url, 100);
    const result = await runCli(
      [
        "fetch",
        "--key-field",
        "customer",
        "-c",
        "2",
        "--read-ahead",
        "10",
        "-o",
        join(scratch.directory, "ahead.jsonl"),
      ],
      { input, timeout: 30_000 },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(server.requests.map(keyOf).indexOf("B")).toBeGreaterThanOrEqual(100 - 10);
  });

  it("--resume with keys: a stopped batch finishes with each line sent once", async () => {
    server = await startMockServer({ latency: { min: 1, max: 3 } });
    const base = server.url;
    const all = Array.from({ length: 20 }, (_, index) => request(base, index % 3 === 0 ? "B" : "A", index));
    const resume = join(scratch.directory, "resume.jsonl");
    const args = ["fetch", "--key-field", "customer", "--rate-per-key", "50/s", "--resume", resume];
    const first = await runCli(args, { input: `${all.slice(0, 12).join("\n")}\n` });
    expect(first.code, first.stderr).toBe(0);
    const second = await runCli(args, { input: `${all.join("\n")}\n` });
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/12 lines already succeeded, skipped/);
    expect(server.requests).toHaveLength(20);
    const records = readFileSync(resume, "utf8").trim().split("\n");
    expect(records).toHaveLength(20);
  });
});

describe("sluice run --key-field", () => {
  it("holds --concurrency-per-key for each key, and a line without a usable key fails alone", async () => {
    const log = join(scratch.directory, "per-key.log");
    const script = join(scratch.directory, "per-key.sh");
    // per-key.sh LOG KEY: logs "start KEY ns", sleeps, logs "end KEY ns".
    writeFileSync(script, 'echo "start $2 $(date +%s%N)" >> "$1"\nsleep 0.1\necho "end $2 $(date +%s%N)" >> "$1"\n');
    const good = Array.from({ length: 12 }, (_, index) => JSON.stringify({ customer: ["A", "B", 7][index % 3] }));
    const bad = ['{"other": 1}', "not json", '{"customer": ""}', '{"customer": {"id": 1}}', '{"customer": null}'];
    const result = await runCli(
      [
        "run",
        "--key-field",
        "customer",
        "--concurrency-per-key",
        "1",
        "-c",
        "3",
        "--",
        "sh",
        script,
        log,
        "{customer}",
      ],
      { input: `${[...bad, ...good].join("\n")}\n`, timeout: 30_000 },
    );
    expect(result.code, result.stderr).toBe(1);
    expect(result.stderr).toMatch(/12 succeeded, 5 failed \(bad input: 5\)/);
    expect(result.stderr).toMatch(/line 1 has no key field "customer"/);
    expect(result.stderr).toMatch(/line 2 is not a JSON object, so it has no key field "customer"/);
    expect(result.stderr).toMatch(/line 3: the key field "customer" is empty/);
    expect(result.stderr).toMatch(/line 4: the key field "customer" must be a string or a number; got \{"id":1\}/);
    const events = readFileSync(log, "utf8")
      .trim()
      .split("\n")
      .map((line) => line.split(" ") as [string, string, string]);
    const open = new Map<string, number>();
    let most = 0;
    let together = 0;
    for (const [kind, key] of events.sort((a, b) => Number(BigInt(a[2]) - BigInt(b[2])))) {
      open.set(key, (open.get(key) ?? 0) + (kind === "start" ? 1 : -1));
      most = Math.max(most, ...open.values());
      together = Math.max(
        together,
        [...open.values()].reduce((sum, count) => sum + count, 0),
      );
    }
    expect(most).toBe(1);
    // The three keys ran side by side.
    expect(together).toBeGreaterThan(1);
  });

  it("streams an endless input with keys: reads at most --read-ahead lines ahead, in flat memory", async () => {
    const source = spawn("yes", ['{"customer": "A"}'], { stdio: ["ignore", "pipe", "ignore"] });
    const cli = startCli(
      ["run", "--key-field", "customer", "--read-ahead", "100", "-c", "4", "--progress-interval", "1s", "--", "true"],
      { openStdin: true },
    );
    source.stdout.pipe(cli.child.stdin as NodeJS.WritableStream);
    await waitFor(
      () => Number(/sluice run: (\d+) done/.exec(cli.stderr())?.[1] ?? 0) > 10,
      15_000,
      "a progress line with more than 10 jobs done",
    );
    const status = readFileSync(`/proc/${cli.child.pid}/status`, "utf8");
    const megabytes = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]) / 1024;
    cli.child.kill("SIGINT");
    const result = await cli.result;
    source.kill();
    expect(result.code).toBe(130);
    const notStarted = Number(/(\d+) read but not started/.exec(result.stderr)?.[1]);
    expect(notStarted).toBeLessThanOrEqual(100);
    expect(megabytes).toBeLessThan(150);
  });

  it("refuses options that would do nothing or cannot go together, naming them (exit 2)", async () => {
    const cases: [string[], RegExp][] = [
      [["--rate-per-key", "5/s"], /--rate-per-key needs --key-field FIELD/],
      [["--concurrency-per-key", "2"], /--concurrency-per-key needs --key-field FIELD/],
      [["--read-ahead", "5"], /--read-ahead needs --key-field FIELD/],
      [["--key-field", ""], /--key-field must name a JSON field/],
      [["--key-field", "a..b"], /--key-field must name a JSON field/],
      [["--key-field", "k", "--min-interval", "1"], /not with --min-interval/],
      [["--key-field", "k", "-c", "auto"], /not auto/],
      [["--key-field", "k", "--redis", "redis://127.0.0.1:1", "--key", "x", "-c", "2"], /not with --redis/],
      [["--key-field", "k", "--read-ahead", "0"], /--read-ahead must be an integer from 1 to 100000/],
      [["--key-field", "k", "--rate-per-key", "5/s:tokens"], /counts tokens, but no job is charged any/],
    ];
    for (const [options, message] of cases) {
      const result = await runCli(["run", ...options, "--", "true"], { input: '{"k": 1}\n' });
      expect(result.code, `${options.join(" ")}: ${result.stderr}`).toBe(2);
      expect(result.stderr).toMatch(message);
    }
  });
});
