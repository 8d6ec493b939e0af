/**
 * `--resume FILE` end to end: the real binary, killed with SIGKILL at random points of a 2,000-request
 * run against the mock provider (sluice/testing) on loopback, then resumed until done. The mock's log
 * of every request it received is the referee, not what sluice believes it sent.
 */
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, readSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { type MockServer, startMockServer } from "sluice/testing";
import { describe, expect, it } from "vitest";
import { type CliProcess, runCli, startCli, useCliScratch } from "./cli-process.js";

let server: MockServer | undefined;
const scratch = useCliScratch(
  "sluice-resume-e2e-",
  () => server,
  () => {
    server = undefined;
  },
);

/** One JSON request per line, each carrying its line number in its body, so the mock's log names it. */
function requests(base: string, count: number): string {
  return Array.from({ length: count }, (_, index) =>
    JSON.stringify({ url: `${base}/v1/echo`, body: { line: index + 1 } }),
  ).join("\n");
}

/** The complete records of a resume file (a torn last line left out, as sluice leaves it out). */
function recordsIn(path: string): { line: number; ok: boolean }[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return [];
  }
  const complete = text.slice(0, text.lastIndexOf("\n") + 1);
  return complete
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as { line: number; ok: boolean });
}

function succeededLines(path: string): Set<number> {
  return new Set(
    recordsIn(path)
      .filter((record) => record.ok)
      .map((record) => record.line),
  );
}

/**
 * Counts the lines appended to a file so far (complete or not), reading only what is new each time:
 * polling must not keep the test's own event loop busy while the CLI runs.
 */
class LineCounter {
  private offset = 0;
  private count = 0;
  private readonly buffer = Buffer.alloc(64 * 1024);

  constructor(private readonly path: string) {}

  lines(): number {
    let fd: number;
    try {
      fd = openSync(this.path, "r");
    } catch {
      return 0;
    }
    try {
      for (;;) {
        const read = readSync(fd, this.buffer, 0, this.buffer.length, this.offset);
        if (read === 0) return this.count;
        this.offset += read;
        for (let at = this.buffer.indexOf(10); at !== -1 && at < read; at = this.buffer.indexOf(10, at + 1)) {
          this.count++;
        }
      }
    } finally {
      closeSync(fd);
    }
  }
}

/** Waits until `cli` has appended `records` lines to `path`, or has ended; resolves whether it still runs. */
async function untilRecorded(cli: CliProcess, path: string, records: number): Promise<boolean> {
  let ended = false;
  void cli.result.then(() => {
    ended = true;
  });
  const counter = new LineCounter(path);
  while (!ended && counter.lines() < records) await new Promise((resolve) => setTimeout(resolve, 10));
  return !ended;
}

/** The line numbers of the requests the mock received from index `from` on. */
function linesReceived(mock: MockServer, from: number): { line: number; status: number | undefined }[] {
  return mock.requests.slice(from).map((request) => ({
    line: (request.body as { line: number }).line,
    status: request.status,
  }));
}

describe("sluice fetch --resume", () => {
  it("killed with SIGKILL at random points of 2,000 requests and resumed until done: every line ends with exactly one recorded success, and no recorded success is sent again", async () => {
    const seed = Number(process.env["SLUICE_RESUME_SEED"] ?? Date.now() % 1_000_000);
    // Where each kill falls: after 1 to 500 more results, drawn from the seed (a failure says it).
    const gaps = fc.sample(fc.array(fc.integer({ min: 1, max: 500 }), { minLength: 5, maxLength: 5 }), {
      seed,
      numRuns: 1,
    })[0] as number[];
    const total = 2000;
    // A few server errors, so that failed lines are recorded, and retried by the next run.
    server = await startMockServer({ latency: { min: 1, max: 8 }, failures: { "server-error": 0.01 }, seed });
    const input = join(scratch.directory, "requests.jsonl");
    writeFileSync(input, `${requests(server.url, total)}\n`);
    const resume = join(scratch.directory, "killed.jsonl");
    const args = ["fetch", "-i", input, "--resume", resume, "-c", "48", "--retries", "0", "-q"];
    const history: string[] = [];
    let runs = 0;
    let kills = 0;
    for (;;) {
      runs++;
      expect(runs, `seed ${seed}: not done after ${runs - 1} runs: ${history.join("; ")}`).toBeLessThan(20);
      const recorded = succeededLines(resume);
      const before = server.requests.length;
      const cli = startCli(args, { timeout: 30_000 });
      let killed = false;
      if (kills < 5) {
        // Somewhere in the next few hundred results, including mid-write of a batch.
        const target = new LineCounter(resume).lines() + (gaps[kills] as number);
        if (await untilRecorded(cli, resume, target)) {
          cli.child.kill("SIGKILL");
          killed = true;
          kills++;
        }
      }
      const result = await cli.result;
      // Let the mock take in what was on the wire when the client died.
      await new Promise((resolve) => setTimeout(resolve, 30));
      const received = linesReceived(server, before);
      history.push(`run ${runs}: ${killed ? "killed" : `exit ${result.code}`} after ${received.length} requests`);
      if (!killed) expect([0, 1], `${result.stderr}`).toContain(result.code);
      const resent = received.filter((request) => recorded.has(request.line)).map((request) => request.line);
      expect(resent, `seed ${seed}: lines recorded as succeeded and sent again; ${history.join("; ")}`).toEqual([]);
      if (result.code === 0) break;
    }
    expect(kills, `seed ${seed}: ${history.join("; ")}`).toBeGreaterThanOrEqual(3);
    const successes = new Map<number, number>();
    for (const record of recordsIn(resume)) {
      if (record.ok) successes.set(record.line, (successes.get(record.line) ?? 0) + 1);
    }
    const wrong = Array.from({ length: total }, (_, index) => index + 1).filter((line) => successes.get(line) !== 1);
    expect(wrong, `seed ${seed}: lines without exactly one recorded success`).toEqual([]);
    // The file is whole: no torn line left behind by the kills.
    expect(readFileSync(resume, "utf8").endsWith("\n")).toBe(true);
  }, 90_000);

  it("Ctrl-C: the requests in flight finish and are recorded, none half; the next run sends only the rest", async () => {
    server = await startMockServer({ latency: { min: 20, max: 40 } });
    const input = join(scratch.directory, "interrupted.jsonl");
    writeFileSync(input, `${requests(server.url, 300)}\n`);
    const resume = join(scratch.directory, "interrupted-results.jsonl");
    const args = ["fetch", "-i", input, "--resume", resume, "-c", "16", "--retries", "0", "-q"];
    const cli = startCli(args);
    await untilRecorded(cli, resume, 40);
    cli.child.kill("SIGINT");
    const result = await cli.result;
    expect(result.code, result.stderr).toBe(130);
    expect(readFileSync(resume, "utf8").endsWith("\n")).toBe(true);
    const recorded = succeededLines(resume);
    // Every request the server answered was recorded: none was paid for and lost.
    const answered = linesReceived(server, 0).filter((request) => request.status === 200);
    expect(answered.filter((request) => !recorded.has(request.line))).toEqual([]);
    expect(recorded.size).toBeLessThan(300);

    const before = server.requests.length;
    const rest = await runCli(args);
    expect(rest.code, rest.stderr).toBe(0);
    expect(
      linesReceived(server, before)
        .map((request) => request.line)
        .sort((a, b) => a - b),
    ).toEqual(Array.from({ length: 300 }, (_, index) => index + 1).filter((line) => !recorded.has(line)));
  }, 60_000);

  it("a resume file written for another input is refused, naming the file and the first line that differs; nothing is sent", async () => {
    server = await startMockServer({});
    const input = join(scratch.directory, "first.jsonl");
    writeFileSync(input, `${requests(server.url, 10)}\n`);
    const resume = join(scratch.directory, "first-results.jsonl");
    expect((await runCli(["fetch", "-i", input, "--resume", resume, "-q"])).code).toBe(0);
    const lines = readFileSync(input, "utf8").split("\n");
    lines[6] = JSON.stringify({ url: `${server.url}/v1/echo`, body: { line: "seven" } });
    const other = join(scratch.directory, "other.jsonl");
    writeFileSync(other, lines.join("\n"));
    const before = server.requests.length;
    const result = await runCli(["fetch", "-i", other, "--resume", resume, "-q"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`sluice fetch: ${resume} was written for another input: input line 7 (`);
    const shorter = await runCli(["fetch", "--resume", resume, "-q"], { input: lines.slice(0, 3).join("\n") });
    expect(shorter.code).toBe(2);
    expect(shorter.stderr).toContain(`${resume} records results up to input line 10, but the input has only 3 lines`);
    expect(server.requests.length).toBe(before);
  }, 30_000);

  it("a torn last line (a kill mid-write) is ignored and cut off: its line is sent again, and the file is whole", async () => {
    server = await startMockServer({});
    const input = join(scratch.directory, "torn-input.jsonl");
    writeFileSync(input, `${requests(server.url, 5)}\n`);
    const resume = join(scratch.directory, "torn-results.jsonl");
    expect((await runCli(["fetch", "-i", input, "--resume", resume, "-q"])).code).toBe(0);
    const [first, second, third] = readFileSync(resume, "utf8").split("\n") as [string, string, string];
    const sentFirst = (JSON.parse(first) as { line: number }).line;
    const sentSecond = (JSON.parse(second) as { line: number }).line;
    const torn = (JSON.parse(third) as { line: number }).line;
    writeFileSync(resume, `${first}\n${second}\n${third.slice(0, 40)}`);
    const before = server.requests.length;
    const result = await runCli(["fetch", "-i", input, "--resume", resume]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain(`sluice: resuming from ${resume}: 2 lines already succeeded, skipped`);
    const resent = linesReceived(server, before).map((request) => request.line);
    expect(resent).toContain(torn);
    expect(resent).not.toContain(sentFirst);
    expect(resent).not.toContain(sentSecond);
    expect(resent).toHaveLength(3);
    expect([...succeededLines(resume)].sort()).toEqual([1, 2, 3, 4, 5]);
    expect(recordsIn(resume)).toHaveLength(5);
  }, 30_000);

  it("refuses --resume without a file (2), a directory or an unusable file (3), and with --output (2)", async () => {
    const noFile = await runCli(["fetch", "--resume"]);
    expect(noFile.code).toBe(2);
    expect(noFile.stderr).toContain("option --resume needs a value (FILE)");
    const folder = join(scratch.directory, "a-scratch.directory");
    mkdirSync(folder);
    const isDirectory = await runCli(["fetch", "--resume", folder], { input: "http://127.0.0.1:9/\n" });
    expect(isDirectory.code).toBe(3);
    expect(isDirectory.stderr).toBe(`sluice fetch: cannot write the resume file ${folder}: it is a directory\n`);
    const missingDirectory = await runCli(["fetch", "--resume", join(folder, "no", "results.jsonl")]);
    expect(missingDirectory.code).toBe(3);
    const device = await runCli(["fetch", "--resume", "/dev/zero"], { input: "http://127.0.0.1:9/\n" });
    expect(device.code).toBe(3);
    expect(device.stderr).toBe("sluice fetch: cannot read the resume file /dev/zero: it is not a regular file\n");
    const notResults = join(scratch.directory, "notes.txt");
    writeFileSync(notResults, "some notes\nmore notes\n");
    const wrongFile = await runCli(["fetch", "--resume", notResults], { input: "http://127.0.0.1:9/\n" });
    expect(wrongFile.code).toBe(2);
    expect(wrongFile.stderr).toContain(`${notResults} line 1 is not JSON`);
    const both = await runCli([
      "fetch",
      "--resume",
      join(scratch.directory, "r.jsonl"),
      "-o",
      join(scratch.directory, "o.jsonl"),
    ]);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain("give one of the two");
    const sameAsInput = await runCli(["fetch", "-i", notResults, "--resume", notResults]);
    expect(sameAsInput.code).toBe(2);
    if (process.getuid?.() !== 0) {
      const unreadable = join(scratch.directory, "unreadable.jsonl");
      writeFileSync(unreadable, "");
      chmodSync(unreadable, 0o200);
      const refused = await runCli(["fetch", "--resume", unreadable], { input: "http://127.0.0.1:9/\n" });
      expect(refused.code).toBe(3);
      expect(refused.stderr).toBe(`sluice fetch: cannot read the resume file ${unreadable}: permission denied\n`);
    }
  }, 30_000);
});

describe("sluice run --resume", () => {
  it("records each job's result, and a re-run runs only the lines that failed", async () => {
    const resume = join(scratch.directory, "run-results.jsonl");
    const marker = join(scratch.directory, "ran.txt");
    const input = "1\n2\n3\n4\n5\n";
    // Line 3 fails the first time only: the marker file says it already tried.
    const script = `echo {} >> '${marker}'; [ {} != 3 ] || [ "$(grep -c '^3$' '${marker}')" -gt 1 ]`;
    const first = await runCli(["run", "-q", "--shell", "--resume", resume, "--", script], { input });
    expect(first.code).toBe(1);
    expect(recordsIn(resume).map((record) => [record.line, record.ok])).toEqual(
      expect.arrayContaining([
        [1, true],
        [2, true],
        [3, false],
        [4, true],
        [5, true],
      ]),
    );
    const second = await runCli(["run", "-q", "--shell", "--resume", resume, "--", script], { input });
    expect(second.code, second.stderr).toBe(0);
    expect(readFileSync(marker, "utf8").split("\n").filter(Boolean).sort()).toEqual(["1", "2", "3", "3", "4", "5"]);
    const third = await runCli(["run", "--shell", "--resume", resume, "--", script], { input });
    expect(third.code).toBe(0);
    expect(third.stderr).toContain(`sluice: resuming from ${resume}: 5 lines already succeeded, skipped`);
  }, 30_000);
});
