/**
 * The `sluice` command as a new user meets it (issue 15), through the real binary: no silent no-ops,
 * no lost results, seconds where people expect seconds, values bounded, messages that say what is
 * wrong in the words the user typed. Every refusal is exit 2 with nothing run.
 */
import { spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  linkSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type MockServer, startMockServer } from "sluice/testing";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type CliResult, cliPath, ensureBuilt, runCli } from "./cli-process.js";

let directory: string;
let server: MockServer;
/** A file the job command would create: each test's own. */
let marker: string;
let markers = 0;

beforeAll(async () => {
  await ensureBuilt();
  directory = mkdtempSync(join(tmpdir(), "sluice-command-line-"));
  server = await startMockServer();
}, 120_000);

beforeEach(() => {
  marker = join(directory, `must-not-exist-${++markers}`);
});

afterAll(async () => {
  await server?.close();
  rmSync(directory, { recursive: true, force: true });
});

const file = (name: string) => join(directory, name);
const urls = (count: number) =>
  `${Array.from({ length: count }, (_, i) => `${server.url}/v1/models?n=${i}`).join("\n")}\n`;
/** A job command that creates the marker: it must never run in a refused command line. */
const touch = () => ["touch", marker];

/** Runs the binary with stdin and stdout on files (as `< in > out` in a shell). */
function runWithFiles(args: readonly string[], stdio: { stdin?: string; stdout?: string }): Promise<CliResult> {
  const started = performance.now();
  const stdin = stdio.stdin === undefined ? "ignore" : openSync(stdio.stdin, "r");
  const stdout = stdio.stdout === undefined ? "ignore" : openSync(stdio.stdout, "a");
  const child = spawn(process.execPath, [cliPath(), ...args], { stdio: [stdin, stdout, "pipe"] });
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  return new Promise((resolve) => {
    child.on("close", (code, signal) => {
      if (typeof stdin === "number") closeSync(stdin);
      if (typeof stdout === "number") closeSync(stdout);
      resolve({ code, signal, stdout: "", stderr, durationMs: performance.now() - started });
    });
  });
}

function expectRefused(result: CliResult, message: RegExp): void {
  expect(result.code, result.stderr).toBe(2);
  expect(result.stderr).toMatch(message);
  expect(result.stderr).toMatch(/Run 'sluice \w+ --help' for usage/);
  expect(existsSync(marker)).toBe(false);
}

describe("two outputs that are one file are refused before anything runs (item 1)", () => {
  it.each([
    ["the same path", "same.html", "same.html"],
    ["the same file written two ways", "./two-ways.html", "two-ways.html"],
  ])("sluice fetch -o and --report at %s: exit 2, the results never overwritten", async (_, output, report) => {
    const before = server.summary().total;
    const result = await runCli(["fetch", "-o", output, "--report", report], { input: urls(3), cwd: directory });
    expectRefused(result, /--report and -o \(--output\) are one file \(.*\): one would overwrite the other/);
    expect(server.summary().total).toBe(before);
  });

  it("through a symlink and a hard link to an existing results file", async () => {
    writeFileSync(file("results.jsonl"), "earlier results\n");
    symlinkSync(file("results.jsonl"), file("symlink.jsonl"));
    linkSync(file("results.jsonl"), file("hardlink.jsonl"));
    for (const other of ["symlink.jsonl", "hardlink.jsonl"]) {
      const result = await runCli(["fetch", "-o", file("results.jsonl"), "--report", file(other)], {
        input: urls(2),
      });
      expectRefused(result, /are one file/);
    }
    expect(readFileSync(file("results.jsonl"), "utf8")).toBe("earlier results\n");
  });

  it("an output that is the input: --input, or the file on standard input", async () => {
    writeFileSync(file("requests.txt"), urls(2));
    const named = await runCli(["fetch", "-i", file("requests.txt"), "-o", file("requests.txt")]);
    expectRefused(named, /-i \(--input\) and -o \(--output\) are one file .*: writing it would destroy the input/);
    const piped = await runWithFiles(["fetch", "-o", file("requests.txt")], { stdin: file("requests.txt") });
    expectRefused(piped, /standard input and -o \(--output\) are one file/);
    expect(readFileSync(file("requests.txt"), "utf8")).toBe(urls(2));
  });

  it("a --report that is the file standard output goes to (sluice run ... > out.html)", async () => {
    writeFileSync(file("out.html"), "");
    const result = await runWithFiles(["run", "--report", file("out.html"), "--", ...touch()], {
      stdout: file("out.html"),
    });
    expectRefused(result, /--report and standard output are one file/);
  });

  it("two outputs that are /dev/null lose nothing and are accepted", async () => {
    const result = await runCli(["fetch", "-q", "-o", "/dev/null", "--report", "/dev/null"], { input: urls(2) });
    expect(result.code, result.stderr).toBe(0);
  });
});

describe("an option that would do nothing is refused (item 2)", () => {
  it.each([
    [
      "a rate in a unit no job is charged (run)",
      ["run", "--rate", "10/s:tokens", "--", "true"],
      /--rate 10\/s:tokens counts tokens, but no job is charged any: add --cost-field tokens/,
    ],
    [
      "a rate in a unit fetch does not estimate",
      ["fetch", "--rate", "10/s:images"],
      /--rate 10\/s:images counts images, but no job is charged any/,
    ],
    [
      "--lease without --redis",
      ["run", "--lease", "2s", "--", "true"],
      /--lease is the lease of limits shared through Redis/,
    ],
    [
      "--lease when no concurrency is shared",
      ["run", "--redis", "redis://127.0.0.1:1", "--key", "k", "--rate", "5/s", "--lease", "2s", "--", "true"],
      /--lease is the lease of the concurrency shared through Redis, and none is shared/,
    ],
    [
      "--algorithm without --rate",
      ["run", "--algorithm", "token-bucket", "--", "true"],
      /--algorithm says how --rate counts, but no --rate/,
    ],
    [
      "--retry-delay without retries",
      ["run", "--retry-delay", "2s", "--", "true"],
      /--retry-delay sets the wait between retries, but --retries is 0/,
    ],
    [
      "--progress-interval with --quiet",
      ["run", "-q", "--progress-interval", "2s", "--", "true"],
      /--progress-interval sets how often progress is printed, but --quiet prints none/,
    ],
    [
      "--retry-post with no retries",
      ["fetch", "--retries", "0", "--retry-post"],
      /--retry-post retries POST requests, but --retries is 0/,
    ],
    [
      "--json with --output",
      ["fetch", "--json", "-o", "/dev/null"],
      /--json prints the results on stdout, but -o \(--output\) writes them to \/dev\/null/,
    ],
    ["--min-interval 0", ["run", "--min-interval", "0", "--", "true"], /--min-interval 0 spaces nothing/],
    [
      "a ceiling below the first wait",
      ["fetch", "--retry-delay", "2s", "--retry-max-delay", "1s"],
      /--retry-max-delay \(the longest wait\) is shorter than --retry-delay/,
    ],
    [
      "mock --minute without a limit",
      ["mock", "--minute", "1s"],
      /--minute sets how long a minute of the limits lasts, but no limit is given/,
    ],
  ])("%s", async (_, args, message) => {
    const before = server.summary().total;
    const result = await runCli(args, { input: urls(2) });
    expectRefused(result, message);
    expect(server.summary().total).toBe(before);
  });

  it("a token rate in fetch is charged by the estimate from each body, so it is accepted", async () => {
    const result = await runCli(["fetch", "-q", "--rate", "100000/s:tokens"], { input: urls(2) });
    expect(result.code, result.stderr).toBe(0);
  });
});

describe("a bare number in a duration is seconds, as in timeout(1) (item 3)", () => {
  it("--timeout 1 lets a 0.3 s job finish (it was 1 ms), and --timeout 0.2 ends a 3 s job", async () => {
    // The input line becomes the shell's $0, so that sleep gets only its own argument.
    const ok = await runCli(["run", "-q", "--timeout", "1", "--", "sh", "-c", "sleep 0.3"], { input: "x\n" });
    expect(ok.code, ok.stderr).toBe(0);
    const ended = await runCli(["run", "-q", "--json", "--timeout", "0.2", "--", "sh", "-c", "sleep 3"], {
      input: "x\n",
    });
    expect(ended.code).toBe(1);
    expect(JSON.parse(ended.stdout)).toMatchObject({ ok: false, error: "timeout" });
    expect(ended.durationMs).toBeLessThan(2500);
  });

  it("a rate's bare interval is seconds too: 4/1 is 4 per second", async () => {
    const result = await runCli(["run", "--rate", "4/1", "--", "true"], { input: "a\nb\nc\nd\ne\n" });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain("4/1 held: at most 4 started in any 1 s");
  });

  it("every duration option's help says how a bare number reads", async () => {
    for (const command of ["run", "fetch", "demo", "inspect", "mock"]) {
      const help = (await runCli([command, "--help"])).stdout;
      // An option's description runs from its line to the next option's.
      const options = help.split(/\n(?= {2}(?:-\w, )?--|\n)/).filter((entry) => /^ {2}(-\w, )?--/.test(entry));
      for (const option of options.filter((entry) => /--[\w-]+ DURATION/.test(entry))) {
        expect(option.replace(/\s+/g, " "), `${command}: ${option}`).toContain("a bare number is seconds");
      }
    }
  });
});

describe("usage errors name the option as typed, never the library's name (item 4)", () => {
  it.each(["1ms", "0"])("--lease %s with --redis: exit 2 naming --lease, before connecting", async (lease) => {
    const result = await runCli([
      "run",
      "--redis",
      "redis://127.0.0.1:1",
      "--key",
      "k",
      "-c",
      "2",
      "--lease",
      lease,
      "--",
      ...touch(),
    ]);
    expectRefused(result, new RegExp(`--lease must be from 1s to 10m; got "${lease}"`));
    expect(result.stderr).not.toContain("leaseTtl");
  });
});

describe("values beyond any sense are refused with a message (item 6)", () => {
  it.each([
    [["-c", "99999999999999999999"], /-c \(--concurrency\) must be an integer from 1 to 100000 \(or unlimited\)/],
    [["--rate", "99999999999999999999/s"], /rate "99999999999999999999\/s" has a limit too large to count/],
    [["--min-interval", "99999999999d"], /--min-interval must be at most 1d; got "99999999999d" \(a longer spacing/],
    [["--progress-interval", "0"], /--progress-interval must be from 1s to 1d; got "0" \(more often would flood/],
    [["--retries", "99999"], /--retries must be an integer from 0 to 1000/],
    [["--max-output", "9999999999"], /--max-output must be an integer from 0 to 268435456/],
    [["--timeout", "99999d"], /--timeout must be at most 30d/],
  ])("sluice run %j", async (args, message) => {
    expectRefused(await runCli(["run", ...args, "--", ...touch()], { input: "x\n" }), message);
  });

  it("a long --min-interval says on the progress line when the next job starts", async () => {
    const result = await runCli(["run", "--min-interval", "2.5", "--progress-interval", "1s", "--", "true"], {
      input: "a\nb\n",
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/waiting: next start in [\d.]+ (s|ms) \(--min-interval 2\.5 s\)/);
  });
});

describe("messages that mislead no more (item 7)", () => {
  it("a broken JSON line in sluice fetch is a JSON error with its position, not a bad URL", async () => {
    const result = await runCli(["fetch", "-q"], { input: `{broken\n${server.url}/ok\n` });
    expect(result.code).toBe(1);
    const [first, second] = result.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(first?.["error"]).toMatch(/^line 1: not valid JSON: .*position 1/);
    expect(first?.["error"]).not.toContain("URL");
    expect(second).toMatchObject({ ok: true });
  });

  it("an output in a directory that does not exist: exit 3 and one clear line, before any request", async () => {
    const before = server.summary().total;
    const output = file("no-such-directory/results.jsonl");
    const result = await runCli(["fetch", "-o", output], { input: urls(3) });
    expect(result.code).toBe(3);
    expect(result.stderr).toBe(
      `sluice fetch: cannot write the output ${output}: the directory ${file("no-such-directory")} does not exist\n`,
    );
    expect(server.summary().total).toBe(before);
  });

  it("each command's help lists the exit codes it can return, and fetch's help names 429, 503 and 529", async () => {
    const codes = async (command: string) => {
      const help = (await runCli([command, "--help"])).stdout;
      return help.slice(help.indexOf("Exit codes:"));
    };
    const inspect = await codes("inspect");
    expect(inspect).toMatch(/\n {2}1 +--key names nothing/);
    for (const code of ["126", "127", "130", "141", "143"]) expect(inspect).not.toMatch(new RegExp(`\n {2}${code} `));
    const fetch = await codes("fetch");
    for (const code of ["126", "127"]) expect(fetch).not.toMatch(new RegExp(`\n {2}${code} `));
    expect(await codes("run")).toMatch(/\n {2}127 /);
    expect(await codes("mock")).toMatch(/\n {2}0 +stopped by Ctrl-C/);
    expect((await runCli(["fetch", "--help"])).stdout.replace(/\s+/g, " ")).toContain(
      "a 429, 503 or 529 pauses every request",
    );
  });

  it("an empty --cost-field unit is named as such, not answered with --rate 40000/min:", async () => {
    const result = await runCli(["run", "--rate", "10/s:tokens", "--cost-field", "", "--", ...touch()]);
    expectRefused(result, /--cost-field "": the unit is empty/);
    expect(result.stderr).not.toContain("/min:)");
  });
});

describe("the summary shows what proves each limit held (item 8)", () => {
  it("no average start rate that a first burst pushes above the limit; the busiest window against it", async () => {
    const result = await runCli(["run", "--rate", "5/s", "--", "true"], { input: "a\nb\nc\nd\ne\nf\ng\nh\n" });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).not.toMatch(/on average/);
    expect(result.stderr).toMatch(/\n {2}8 started; 5\/s held: at most [1-5] started in any 1 s; in flight at most/);
  });
});
