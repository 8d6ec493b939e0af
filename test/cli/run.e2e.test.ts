/**
 * End-to-end tests of `sluice run`: the real binary (dist/cli.js) in child processes, real jobs.
 *
 * Jobs record their own start and end times (`date +%s%N` from /bin/sh, so spawn jitter is a few ms
 * rather than node's tens), and the limits are checked from those records, not from what sluice says.
 */
import { execFile, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cliPath, ensureBuilt, runCli, startCli, waitFor } from "./cli-process.js";

let directory: string;
let record: string;

beforeAll(async () => {
  await ensureBuilt();
  directory = mkdtempSync(join(tmpdir(), "sluice-cli-"));
  record = join(directory, "record.sh");
  // record.sh LOG TAG SECONDS: logs "start TAG ns PID", sleeps, logs "end TAG ns".
  writeFileSync(
    record,
    '#!/bin/sh\necho "start $2 $(date +%s%N) $$" >> "$1"\nsleep "$3"\necho "end $2 $(date +%s%N)" >> "$1"\n',
  );
  chmodSync(record, 0o755);
}, 120_000);

afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

interface Span {
  tag: string;
  start: number;
  end: number | undefined;
  pid: number;
}

/** Reads record.sh's log: one span per job, times in ms. */
function spans(log: string): Span[] {
  if (!existsSync(log)) return [];
  const byTag = new Map<string, Span>();
  for (const line of readFileSync(log, "utf8").split("\n")) {
    const [kind, tag, ns, pid] = line.split(" ");
    if (tag === undefined || ns === undefined) continue;
    const ms = Number(BigInt(ns) / 1000n) / 1000;
    if (kind === "start") byTag.set(tag, { tag, start: ms, end: undefined, pid: Number(pid) });
    else if (kind === "end") (byTag.get(tag) as Span).end = ms;
  }
  return [...byTag.values()].sort((a, b) => a.start - b.start);
}

/** The most spans open at once. */
function maxOverlap(list: readonly Span[]): number {
  const events = list.flatMap((span) => [
    [span.start, 1],
    [span.end ?? Number.POSITIVE_INFINITY, -1],
  ]);
  // Ends sort before starts at the same instant: a job that ends as another starts does not overlap it.
  events.sort((a, b) => (a[0] as number) - (b[0] as number) || (a[1] as number) - (b[1] as number));
  let open = 0;
  let most = 0;
  for (const [, delta] of events) {
    open += delta as number;
    most = Math.max(most, open);
  }
  return most;
}

const lines = (count: number, make: (index: number) => string = String) =>
  `${Array.from({ length: count }, (_, index) => make(index + 1)).join("\n")}\n`;

/**
 * Spawn jitter allowed when checking a window from the jobs' own clocks: sh + date start within a few
 * ms, but a loaded machine can delay one spawn much more. Each check below would still fail without
 * the limit by a wide margin (unlimited, those starts come within tens of ms of each other).
 */
const JITTER = 150;

describe("sluice run: limits", () => {
  it("never has more jobs running than --concurrency, and never starts more than --rate allows in any window", async () => {
    const log = join(directory, "limits.log");
    const result = await runCli(["run", "-c", "3", "--rate", "10/500ms", "-q", "--", record, log, "{}", "0.05"], {
      input: lines(30),
    });
    expect(result.code).toBe(0);
    const list = spans(log);
    expect(list).toHaveLength(30);
    expect(maxOverlap(list)).toBeLessThanOrEqual(3);
    // At most 10 starts in any 500 ms: the 11th start after any start is at least 500 ms later.
    for (let index = 0; index + 10 < list.length; index++) {
      expect((list[index + 10] as Span).start - (list[index] as Span).start).toBeGreaterThanOrEqual(500 - JITTER);
    }
    // And the limit is what slowed it down: three windows' worth takes at least two intervals.
    expect((list[29] as Span).start - (list[0] as Span).start).toBeGreaterThanOrEqual(1000 - JITTER);
  });

  it("-c auto:1-4 adapts this process's concurrency and never runs more than its MAX at once", async () => {
    const log = join(directory, "auto.log");
    const result = await runCli(["run", "-c", "auto:1-4", "-q", "--", record, log, "{}", "0.02"], { input: lines(40) });
    expect(result.code).toBe(0);
    const list = spans(log);
    expect(list).toHaveLength(40);
    expect(maxOverlap(list)).toBeLessThanOrEqual(4);
  });

  it("spaces starts by --min-interval", async () => {
    const log = join(directory, "spacing.log");
    const result = await runCli(["run", "-c", "4", "--min-interval", "300ms", "-q", "--", record, log, "{}", "0"], {
      input: lines(5),
    });
    expect(result.code).toBe(0);
    const list = spans(log);
    expect(list).toHaveLength(5);
    for (let index = 1; index < list.length; index++) {
      expect((list[index] as Span).start - (list[index - 1] as Span).start).toBeGreaterThanOrEqual(300 - JITTER);
    }
  });

  it("charges each job its --cost-field against a rate in that unit", async () => {
    const log = join(directory, "tokens.log");
    // 100 tokens per 400 ms and 60 tokens per job: never two jobs in one window.
    const result = await runCli(
      [
        "run",
        "-c",
        "4",
        "--rate",
        "100/400ms:tokens",
        "--cost-field",
        "tokens=size",
        "-q",
        "--",
        record,
        log,
        "{id}",
        "0",
      ],
      { input: lines(4, (index) => JSON.stringify({ id: `job${index}`, size: 60 })) },
    );
    expect(result.code).toBe(0);
    const list = spans(log);
    expect(list.map((span) => span.tag).sort()).toEqual(["job1", "job2", "job3", "job4"]);
    for (let index = 1; index < list.length; index++) {
      expect((list[index] as Span).start - (list[index - 1] as Span).start).toBeGreaterThanOrEqual(400 - JITTER);
    }
  });
});

describe("sluice run: results", () => {
  it("prints one --json line per finished job with input, exit code, duration, attempts and output", async () => {
    const input = lines(5, (index) => JSON.stringify({ name: `n${index}`, code: index === 3 ? 7 : 0 }));
    const result = await runCli(
      ["run", "-c", "2", "--json", "-q", "--", "/bin/sh", "-c", 'echo "hello $1"; exit "$2"', "sh", "{name}", "{code}"],
      { input },
    );
    expect(result.code).toBe(1); // one job failed
    const records = result.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(records).toHaveLength(5);
    const third = records.find((entry) => entry["line"] === 3) as Record<string, unknown>;
    expect(third).toMatchObject({
      input: { name: "n3", code: 7 },
      ok: false,
      exitCode: 7,
      attempts: 1,
      output: "hello n3\n",
      error: "exit 7",
    });
    for (const entry of records) {
      expect(typeof entry["durationMs"]).toBe("number");
      if (entry["line"] !== 3) expect(entry).toMatchObject({ ok: true, exitCode: 0, attempts: 1 });
    }
  });

  it("appends the line as the last argument when the command has no placeholder, and prints grouped output", async () => {
    const result = await runCli(["run", "-c", "1", "-q", "echo", "got"], { input: "a b\nc\n" });
    expect(result.code).toBe(0);
    expect(result.stdout).toBe("got a b\ngot c\n");
  });

  it("quotes substituted values for --shell", async () => {
    const tricky = `it's "quoted"; $(echo nope) \`x\``;
    const result = await runCli(["run", "-q", "--shell", "--", "printf '%s|' {}"], { input: `${tricky}\n` });
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`${tricky}|`);
  });

  it("retries a failing job with backoff, and each attempt is counted", async () => {
    // Fails on the first attempt, succeeds on the second (SLUICE_ATTEMPT counts from 1).
    const flaky = ["/bin/sh", "-c", 'test "$SLUICE_ATTEMPT" -ge 2'];
    const ok = await runCli(["run", "--json", "-q", "--retries", "2", "--retry-delay", "10ms", "--", ...flaky], {
      input: "x\n",
    });
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true, attempts: 2 });
    const never = await runCli(["run", "--json", "-q", "--retries", "2", "--retry-delay", "10ms", "--", "false"], {
      input: "x\n",
    });
    expect(never.code).toBe(1);
    expect(JSON.parse(never.stdout)).toMatchObject({ ok: false, attempts: 3, exitCode: 1 });
  });

  it("ends a job that runs past --timeout and reports it as a timeout", async () => {
    const result = await runCli(["run", "--json", "-q", "--timeout", "200ms", "--", "sleep", "{}"], { input: "10\n" });
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout)).toMatchObject({ ok: false, error: "timeout", signal: "SIGTERM" });
    expect(result.durationMs).toBeLessThan(5000);
  });

  it("succeeds with no output on empty input", async () => {
    const result = await runCli(["run", "--json", "--", "echo", "{}"], { input: "" });
    expect(result.code).toBe(0);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain("0 jobs");
  });

  it("fails the lines that lack a template field, and runs the others", async () => {
    const result = await runCli(["run", "--json", "-q", "--", "echo", "{name}"], {
      input: '{"name":"a"}\nnot json\n{"other":1}\n',
    });
    expect(result.code).toBe(1);
    const records = result.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(records.find((entry) => entry["line"] === 1)).toMatchObject({ ok: true, output: "a\n" });
    expect(records.find((entry) => entry["line"] === 2)?.["error"]).toMatch(/line 2 is not a JSON object/);
    expect(records.find((entry) => entry["line"] === 3)?.["error"]).toMatch(/line 3 has no field \{name\}/);
  });
});

describe("sluice run: bad command lines", () => {
  // Where a case has a job command, it is `touch MARKER`: the marker must not appear.
  const touch = () => ["touch", join(directory, "must-not-exist")];
  const cases: [string, () => string[], RegExp][] = [
    [
      "an unknown option, with a suggestion",
      () => ["run", "--concurency", "3", "--", ...touch()],
      /unknown option --concurency \(did you mean --concurrency\?\)/,
    ],
    [
      "a bad number",
      () => ["run", "-c", "0", "--", ...touch()],
      /-c \(--concurrency\) must be an integer from 1 to 100000 \(or unlimited\); got "0"/,
    ],
    ["a bad rate", () => ["run", "--rate", "5/parsec", "--", ...touch()], /rate "5\/parsec" has no valid interval/],
    ["a bad duration", () => ["run", "--timeout", "soon", "--", ...touch()], /--timeout must be a duration/],
    [
      "a flag given a value",
      () => ["run", "--json=yes", "--", ...touch()],
      /option --json is a flag and takes no value/,
    ],
    ["a missing value", () => ["run", "--rate"], /option --rate needs a value/],
    ["no command", () => ["run", "-c", "2"], /no command to run/],
    ["--redis without --key", () => ["run", "--redis", "redis://127.0.0.1:1", "--", ...touch()], /--redis needs --key/],
    [
      "a cost field no rate counts",
      () => ["run", "--cost-field", "tokens", "--", ...touch()],
      /no --rate counts "tokens"/,
    ],
    ["an unknown command", () => ["runn", ...touch()], /unknown command "runn"/],
  ];
  for (const [what, args, message] of cases) {
    it(`exits 2 with a clear message for ${what}, running nothing`, async () => {
      const result = await runCli(args(), { input: "x\n" });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(message);
      expect(result.stderr).toMatch(/Run 'sluice( \w+)? --help' for usage/);
      expect(result.stdout).toBe("");
      expect(existsSync(join(directory, "must-not-exist"))).toBe(false);
    });
  }

  it("exits 127 before reading any input when the job command does not exist", async () => {
    const result = await runCli(["run", "--", "no-such-command-sluice", "{}"], { input: lines(1000) });
    expect(result.code).toBe(127);
    expect(result.stderr).toContain("command not found: no-such-command-sluice");
    expect(result.stderr.split("\n").filter(Boolean)).toHaveLength(1);
  });

  it("prints help with examples and exit codes for every command", async () => {
    for (const command of ["run", "fetch", "demo", "inspect"]) {
      const result = await runCli([command, "--help"]);
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`sluice ${command}`);
      expect(result.stdout).toContain("Examples:");
      expect(result.stdout).toContain("Exit codes:");
    }
  });
});

describe("sluice run: progress", () => {
  it("redraws one status line in place on a terminal: done/total, rate against the limit, in flight, ETA", async () => {
    const input = join(directory, "twenty.txt");
    writeFileSync(input, lines(20));
    // `script` gives the command a pseudo-terminal, as a user's shell would.
    const command = `${process.execPath} ${cliPath()} run -c 2 --rate 10/500ms -i ${input} -- sh -c 'sleep 0.1'`;
    const output = await new Promise<string>((resolve, reject) =>
      execFile("script", ["-qfec", command, "/dev/null"], { encoding: "utf8", timeout: 20_000 }, (error, stdout) =>
        error ? reject(error) : resolve(stdout),
      ),
    );
    const frames = output.split("\r\x1b[2K").filter((frame) => frame.startsWith("sluice run:"));
    expect(frames.length).toBeGreaterThan(3);
    expect(
      frames.some((frame) =>
        /^sluice run: \d+\/20 done, ETA [^·]+ · [\d.]+\/s · 10\/500ms: \d+ in window · in flight [0-2]\/2 · 429s 0 · retries 0/.test(
          frame,
        ),
      ),
    ).toBe(true);
    // The summary replaces the status line at the end.
    expect(output).toContain("\r\x1b[2Ksluice run: 20 jobs in");
  });

  it("prints plain periodic lines when stderr is not a terminal, and nothing with --quiet", async () => {
    // The shortest interval (1 s; shorter would flood a log) over a run of about 2.4 s.
    const plain = await runCli(["run", "-c", "2", "--progress-interval", "1s", "--", "sleep"], {
      input: lines(4, () => "1.2"),
    });
    expect(plain.code).toBe(0);
    expect(plain.stderr).not.toContain("\x1b");
    expect(plain.stderr.split("\n").filter((line) => /^sluice run: \d+(\/4)? done/.test(line)).length).toBeGreaterThan(
      1,
    );
    const quiet = await runCli(["run", "-q", "-c", "2", "--", "sleep"], {
      input: lines(3, () => "0.2"),
    });
    expect(quiet.code).toBe(0);
    expect(quiet.stderr).toBe("");
  });
});

describe("sluice run: interrupts", () => {
  it("on SIGINT stops admitting, lets running jobs finish, prints the summary and exits 130", async () => {
    const log = join(directory, "interrupt.log");
    const cli = startCli(["run", "-c", "2", "--progress-interval", "10s", "--", record, log, "{}", "0.7"], {
      input: lines(10),
    });
    await waitFor(() => spans(log).length === 2, 10_000, "two jobs to start");
    cli.child.kill("SIGINT");
    const result = await cli.result;
    expect(result.code).toBe(130);
    const list = spans(log);
    expect(list).toHaveLength(2); // nothing new started
    expect(list.every((span) => span.end !== undefined)).toBe(true); // the running ones finished
    expect(result.stderr).toContain("interrupted: no new jobs; waiting for 2 running");
    expect(result.stderr).toContain("2 jobs in");
    expect(result.stderr).toMatch(/2 succeeded, 0 failed/);
  });

  it("on a second SIGINT ends the running jobs (and what they started) at once", async () => {
    const log = join(directory, "interrupt-twice.log");
    const cli = startCli(["run", "-c", "2", "--", record, log, "{}", "30"], { input: lines(10) });
    await waitFor(() => spans(log).length === 2, 10_000, "two jobs to start");
    cli.child.kill("SIGINT");
    await waitFor(() => cli.stderr().includes("Ctrl-C again"), 5000, "the first interrupt to be acknowledged");
    const secondAt = performance.now();
    cli.child.kill("SIGINT");
    const result = await cli.result;
    expect(result.code).toBe(130);
    expect(performance.now() - secondAt).toBeLessThan(3000);
    const list = spans(log);
    expect(list).toHaveLength(2);
    expect(list.every((span) => span.end === undefined)).toBe(true);
    // The shells are gone (their `sleep` children with them: the whole process group was signalled).
    for (const span of list) expect(() => process.kill(span.pid, 0)).toThrow();
  });
});

describe("sluice run: ending early", () => {
  it("on SIGTERM ends the running jobs and exits 143", async () => {
    const log = join(directory, "terminate.log");
    const cli = startCli(["run", "-c", "2", "-q", "--", record, log, "{}", "30"], { input: lines(5) });
    await waitFor(() => spans(log).length === 2, 10_000, "two jobs to start");
    cli.child.kill("SIGTERM");
    const result = await cli.result;
    expect(result.code).toBe(143);
    for (const span of spans(log)) expect(() => process.kill(span.pid, 0)).toThrow();
  });

  it("stops admitting when the reader of stdout goes away (| head), exiting 141", async () => {
    const cli = startCli(["run", "-c", "2", "--", "/bin/sh", "-c", 'sleep 0.05; echo "$1"', "sh", "{}"], {
      input: lines(200),
    });
    await new Promise<void>((resolve) => cli.child.stdout?.once("data", () => resolve()));
    cli.child.stdout?.destroy();
    const result = await cli.result;
    expect(result.code).toBe(141);
    expect(result.stderr).toContain("stdout closed: admission stopped");
    const jobs = Number(/sluice run: (\d+) jobs? in/.exec(result.stderr)?.[1]);
    expect(jobs).toBeLessThan(50);
  });

  it("exits 3 without running anything when --input cannot be read", async () => {
    const result = await runCli(["run", "-i", join(directory, "missing.txt"), "--", "echo"]);
    expect(result.code).toBe(3);
    expect(result.stderr).toBe(`sluice run: cannot read the input ${join(directory, "missing.txt")}: no such file\n`);
  });
});

describe("sluice run: memory", () => {
  it("streams an endless input: reads a line only when it can start a job, in flat memory", async () => {
    // 20 million lines (170 MB) offered through a pipe; sluice must read only what it runs.
    const source = spawn("seq", ["1", "20000000"], { stdio: ["ignore", "pipe", "ignore"] });
    const cli = startCli(["run", "-c", "4", "--progress-interval", "1s", "--", "true"], { openStdin: true });
    source.stdout.pipe(cli.child.stdin as NodeJS.WritableStream);
    const samples: number[] = [];
    const sample = () => {
      try {
        const status = readFileSync(`/proc/${cli.child.pid}/status`, "utf8");
        const kilobytes = /VmRSS:\s+(\d+)/.exec(status)?.[1];
        if (kilobytes !== undefined) samples.push(Number(kilobytes) / 1024);
      } catch {
        // exited
      }
    };
    const sampler = setInterval(sample, 100);
    // Ctrl-C once it has run more than 10 jobs (its progress line says so), not after a fixed time: on a
    // loaded machine a fixed time can end before it started, or before its first jobs.
    await waitFor(
      () => Number(/sluice run: (\d+) done/.exec(cli.stderr())?.[1] ?? 0) > 10,
      15_000,
      "a progress line with more than 10 jobs done",
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    cli.child.kill("SIGINT");
    const result = await cli.result;
    clearInterval(sampler);
    source.kill();
    expect(result.code).toBe(130);
    // Read ahead by at most the one line that was waiting for admission.
    expect(result.stderr).toMatch(/\b[01] read but not started/);
    const jobs = Number(/sluice run: (\d+) jobs? in/.exec(result.stderr)?.[1]);
    expect(jobs).toBeGreaterThan(10);
    expect(samples.length).toBeGreaterThan(5);
    expect(Math.max(...samples), `peak RSS ${Math.max(...samples)} MB`).toBeLessThan(150);
  });

  it("an input line over 16 MiB (the wrong input, say a binary file) stops the reading: exit 3, the jobs before it done", async () => {
    const log = join(directory, "long-line.log");
    const result = await runCli(["run", "-q", "--", record, log, "{}", "0"], {
      input: `first\n${"x".repeat(17 * 1024 * 1024)}\nnever\n`,
    });
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(/cannot read the input: a line is longer than 16 MiB; sluice reads one job per line/);
    expect(spans(log).map((span) => span.tag)).toEqual(["first"]);
  });

  it("runs 200k lines to the end with bounded memory", async () => {
    // Lines that are not JSON fail fast in the template, so 200k jobs finish in seconds without spawning.
    const input = join(directory, "200k.txt");
    writeFileSync(input, lines(200_000));
    // A heap capped far below what 200k lines and results would take: retaining anything per line
    // would end the process with "heap out of memory" instead of 200k results.
    const cli = startCli(["run", "-q", "--json", "-i", input, "--", "echo", "{field}"], {
      timeout: 30_000,
      env: { NODE_OPTIONS: "--max-old-space-size=48" },
    });
    let peak = 0;
    const sampler = setInterval(() => {
      try {
        const status = readFileSync(`/proc/${cli.child.pid}/status`, "utf8");
        const kilobytes = /VmRSS:\s+(\d+)/.exec(status)?.[1];
        if (kilobytes !== undefined) peak = Math.max(peak, Number(kilobytes) / 1024);
      } catch {
        // exited
      }
    }, 50);
    const result = await cli.result;
    clearInterval(sampler);
    expect(result.code, `stderr: ${result.stderr.slice(-2000)}\nstdout tail: ${result.stdout.slice(-300)}`).toBe(1);
    const outputLines = result.stdout.split("\n").filter(Boolean);
    expect(outputLines).toHaveLength(200_000);
    expect(JSON.parse(outputLines[199_999] as string)).toMatchObject({ line: 200_000, ok: false });
    expect(peak).toBeGreaterThan(0);
    // The heap cap above is the real bound; RSS adds Node's own baseline, which differs by version
    // (about 150 MB on Node 20, up to about 220 MB on Node 24 for this run), so this is only a sanity
    // check that nothing outside the JS heap grows with the input.
    expect(peak, `peak RSS ${peak} MB`).toBeLessThan(320);
  }, 40_000);
});
