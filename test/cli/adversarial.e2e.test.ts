/**
 * The real `sluice` binary against awkward surroundings: signals before and during a run, outputs that
 * cannot be written, inputs that are not files, a Redis that freezes or goes away mid-run. Each case
 * must end with the documented exit code and a clear message, within seconds, never hang.
 */
import { spawn } from "node:child_process";
import { chmodSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { RedisServer } from "../support/redis-server.js";
import { type CliResult, cliPath, ensureBuilt, runCli, startCli, waitFor } from "./cli-process.js";

let directory: string;
/** A file the job command would create: each test's own, so that one test's failure cannot fail another. */
let marker: string;
let markers = 0;

beforeAll(async () => {
  await ensureBuilt();
  directory = mkdtempSync(join(tmpdir(), "sluice-adversarial-"));
}, 120_000);

/** A job command that creates the marker and nothing else (the input line, appended, becomes `$1`). */
const touch = () => ["sh", "-c", 'touch "$0"', marker];

beforeEach(() => {
  marker = join(directory, `must-not-exist-${++markers}`);
});

afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

const lines = (count: number, make: (index: number) => string = String) =>
  `${Array.from({ length: count }, (_, index) => make(index + 1)).join("\n")}\n`;

/** The control characters in `text` other than newline: what a terminal would interpret. */
function controlCharacters(text: string): string[] {
  return [...text].filter((character) => {
    const code = character.charCodeAt(0);
    return (code < 32 && code !== 10) || code === 127;
  });
}

/** An HTTP server on loopback that answers every request after `delay` ms. */
async function slowServer(delay: number): Promise<{ url: string; close: () => Promise<void> }> {
  const server: Server = createServer((_, response) => {
    setTimeout(() => response.end("ok"), delay).unref();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${address.port}/`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe("stdout that cannot take the results", () => {
  it("exits 3 when the last result cannot be written (a full disk), not 0", async () => {
    const full = openSync("/dev/full", "w");
    try {
      const child = spawn(process.execPath, [cliPath(), "run", "--json", "--", "echo"], {
        stdio: ["pipe", full, "pipe"],
      });
      let stderr = "";
      child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
        stderr += chunk;
      });
      child.stdin?.end("x\n");
      const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
      expect(code).toBe(3);
      expect(stderr).toContain("sluice: cannot write to stdout: ENOSPC");
    } finally {
      closeSync(full);
    }
  });

  it("exits 141 when the reader of stdout is gone before the only result", async () => {
    const cli = startCli(["run", "-q", "--", "echo"], { input: "x\n" });
    cli.child.stdout?.destroy();
    const result = await cli.result;
    expect(result.code).toBe(141);
  });
});

describe("files that cannot be used", () => {
  it("an --input that is a directory: exit 3 and one line, before anything runs", async () => {
    const result = await runCli(["run", "-i", directory, "--", ...touch()]);
    expect(result.code).toBe(3);
    expect(result.stderr).toBe(`sluice run: cannot read the input ${directory}: it is a directory\n`);
    expect(existsSync(marker)).toBe(false);
  });

  it.each([
    [
      "in a directory that does not exist",
      () => join(directory, "no-such-directory", "run.html"),
      () => `the directory ${join(directory, "no-such-directory")} does not exist`,
    ],
    ["that is a directory", () => directory, () => "it is a directory"],
  ])("a --report %s: exit 3 before any job runs, not after the whole run", async (_, path, why) => {
    const report = path();
    const result = await runCli(["run", "--report", report, "--", ...touch()], { input: "x\n" });
    expect(result.code).toBe(3);
    expect(result.stderr).toBe(`sluice run: cannot write the report ${report}: ${why()}\n`);
    expect(existsSync(marker)).toBe(false);
  });

  it("sluice fetch with a missing --input leaves an existing --output file as it was", async () => {
    const output = join(directory, "results.jsonl");
    writeFileSync(output, '{"earlier":"results"}\n');
    const result = await runCli(["fetch", "-i", join(directory, "missing.txt"), "-o", output]);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain("cannot read the input");
    expect(readFileSync(output, "utf8")).toBe('{"earlier":"results"}\n');
  });

  it("a job command that is a directory or not executable: exit 126 before reading any input", async () => {
    const script = join(directory, "not-executable.sh");
    writeFileSync(script, '#!/bin/sh\ntouch "$1"\n');
    chmodSync(script, 0o644);
    const notExecutable = await runCli(["run", "--", script, marker], { input: "x\n" });
    expect(notExecutable.code).toBe(126);
    expect(notExecutable.stderr).toBe(`sluice run: permission denied: ${script} is not executable\n`);
    const aDirectory = await runCli(["run", "--", directory], { input: "x\n" });
    expect(aDirectory.code).toBe(126);
    expect(aDirectory.stderr).toBe(`sluice run: cannot execute: ${directory} is a directory\n`);
    expect(existsSync(marker)).toBe(false);
  });
});

describe("signals", () => {
  it.each([
    ["SIGINT", 130, "interrupted"],
    ["SIGTERM", 143, "terminated"],
  ] as const)(
    "%s before any line arrived (stdin never closed): exit %i at once, with the summary",
    async (signal, code, cause) => {
      const cli = startCli(["run", "--progress-interval", "1s", "--", ...touch()], {
        openStdin: true,
        timeout: 10_000,
      });
      // A progress line says the run has started (its signal handlers are in place) and waits for input.
      await waitFor(() => cli.stderr().includes("sluice run: 0 done"), 10_000, "the run to start");
      cli.child.kill(signal);
      const result = await cli.result;
      expect(result.code).toBe(code);
      expect(result.stderr).toContain("sluice run: 0 jobs in");
      expect(result.stderr).toContain(`${cause}: admission stopped`);
      expect(controlCharacters(result.stderr)).toEqual([]);
      expect(existsSync(marker)).toBe(false);
    },
  );

  it("sluice run: SIGINT mid-run still writes the report and the summary (exit 130)", async () => {
    const report = join(directory, "interrupted-run.html");
    const cli = startCli(["run", "-c", "2", "--report", report, "--progress-interval", "1s", "--", "sleep"], {
      input: lines(10, () => "1.5"),
    });
    await waitFor(() => /in flight 2\/2/.test(cli.stderr()), 10_000, "two jobs running");
    cli.child.kill("SIGINT");
    const result = await cli.result;
    expect(result.code).toBe(130);
    expect(result.stderr).toMatch(/sluice run: 2 jobs in .*: 2 succeeded, 0 failed/);
    expect(result.stderr).toContain(`sluice: report written to ${report}`);
    expect(controlCharacters(result.stderr)).toEqual([]);
    expect(readFileSync(report, "utf8")).toContain("<html");
  });

  it("sluice fetch: SIGTERM mid-run ends the requests, writes their results, the report and the summary (exit 143)", async () => {
    const server = await slowServer(20_000);
    try {
      const report = join(directory, "terminated-fetch.html");
      const output = join(directory, "terminated-fetch.jsonl");
      const cli = startCli(["fetch", "-c", "2", "-o", output, "--report", report, "--progress-interval", "1s"], {
        input: lines(20, () => server.url),
      });
      await waitFor(() => /in flight 2\/2/.test(cli.stderr()), 10_000, "two requests in flight");
      cli.child.kill("SIGTERM");
      const result: CliResult = await cli.result;
      expect(result.code).toBe(143);
      expect(result.durationMs).toBeLessThan(10_000);
      expect(result.stderr).toMatch(/sluice fetch: 2 jobs in/);
      expect(result.stderr).toContain(`sluice: report written to ${report}`);
      expect(controlCharacters(result.stderr)).toEqual([]);
      const results = readFileSync(output, "utf8").trim().split("\n");
      expect(results.map((line) => JSON.parse(line).error)).toEqual(["terminated", "terminated"]);
      expect(existsSync(report)).toBe(true);
    } finally {
      await server.close();
    }
  });
});

describe("what reaches the terminal", () => {
  it("a failed line's note shows control characters escaped, never raw", async () => {
    const result = await runCli(["run", "--", "false"], { input: "\u001b[31mred\u0007\n" });
    expect(result.code).toBe(1);
    expect(controlCharacters(result.stderr)).toEqual([]);
    expect(result.stderr).toContain("\\x1b[31mred\\x07");
  });
});

describe("the command line itself", () => {
  it("sluice alone shows help on stderr and exits 2; help for an unknown command exits 2; options before the command get a hint", async () => {
    const bare = await runCli([]);
    expect([bare.code, bare.stdout]).toEqual([2, ""]);
    expect(bare.stderr).toContain("Usage: sluice COMMAND [options]");
    const helpRun = await runCli(["help", "run"]);
    expect(helpRun.code).toBe(0);
    expect(helpRun.stdout).toContain("sluice run");
    const helpNothing = await runCli(["help", "nope"]);
    expect(helpNothing.code).toBe(2);
    expect(helpNothing.stderr).toContain('unknown command "nope"');
    const early = await runCli(["-c", "3", "run", "--", ...touch()]);
    expect(early.code).toBe(2);
    expect(early.stderr).toContain("options come after the command");
    expect(existsSync(marker)).toBe(false);
  });
});

describe("Redis", () => {
  it("a Redis that accepts the connection but never answers: run and inspect exit 3 within seconds", async () => {
    const redis = await RedisServer.start();
    try {
      redis.pause();
      const [run, inspect] = await Promise.all([
        runCli(["run", "--redis", redis.url, "--key", "k", "-c", "1", "--", ...touch()], {
          input: "x\n",
          timeout: 15_000,
        }),
        runCli(["inspect", "--redis", redis.url], { timeout: 15_000 }),
      ]);
      expect(run.code).toBe(3);
      expect(run.stderr).toBe(`sluice run: cannot reach Redis at ${redis.url}: no answer within 5000 ms\n`);
      expect(inspect.code).toBe(3);
      expect(inspect.stderr).toBe(`sluice inspect: cannot reach Redis at ${redis.url}: no answer within 5000 ms\n`);
      expect(existsSync(marker)).toBe(false);
    } finally {
      redis.resume();
      await redis.stop();
    }
  }, 20_000);

  it("a Redis that goes away mid-run: run and fetch stop admitting and exit 3 at once, saying so in their own words before the summary", async () => {
    const redis = await RedisServer.start();
    const server = await slowServer(50);
    try {
      const common = ["--redis", redis.url, "--lease", "1s", "--rate", "20/s", "--progress-interval", "1s"];
      // Each job takes 0.1 s (the input line is the shell's $0), so that running jobs end soon after.
      const run = startCli(["run", "-c", "2", "--key", "run", ...common, "--", "sh", "-c", "sleep 0.1"], {
        input: lines(400),
        timeout: 25_000,
      });
      const fetch = startCli(["fetch", "-c", "2", "--key", "fetch", ...common], {
        input: lines(400, () => server.url),
        timeout: 25_000,
      });
      // Both under way (past a fresh server's restart guard of one lease) before Redis goes.
      await waitFor(() => /sluice run: [1-9]\d* done/.test(run.stderr()), 10_000, "run to finish a job");
      await waitFor(() => /sluice fetch: [1-9]\d* done/.test(fetch.stderr()), 10_000, "fetch to finish a job");
      await redis.stop();
      const stopped = performance.now();
      const [ran, fetched] = await Promise.all([run.result, fetch.result]);
      // Redis' fate is known within a heartbeat or a release, 0.6 s after the stop; closing waits for
      // nothing more. It once took about 7 s more (a goodbye to a server that is gone, sent through the
      // client's retries), and 5.6 s in about one run in four: ioredis' disconnect() between reconnect
      // attempts leaves the commands in its offline queue pending, each until its 5 s timeout. With that
      // fixed, 20 of 20 runs of this case alone exit within 0.64 s, but a CI run of the whole suite still
      // saw 5.6 s once (2026-12-07 21:5x): some command still waits out its timeout there. Bounded at 7 s
      // (nothing is admitted meanwhile: every admission asks Redis) until that one is found.
      expect(performance.now() - stopped).toBeLessThan(7000);
      for (const [result, label] of [
        [ran, "run"],
        [fetched, "fetch"],
      ] as const) {
        expect(result.code, result.stderr).toBe(3);
        expect(result.stderr).toContain(`sluice ${label}: `);
        expect(result.stderr).toContain("Redis unavailable: admission stopped");
        // Said once, in sluice's words, and before the summary that follows from it.
        const said = `sluice: Redis unavailable: ${redis.url} stopped answering; the limits live there, so no more jobs were admitted\n`;
        expect(result.stderr).toContain(said);
        expect(result.stderr.indexOf(said)).toBeLessThan(result.stderr.lastIndexOf(`sluice ${label}: `));
        expect(result.stderr).not.toMatch(/maxRetriesPerRequest|max retries per request|warning/);
        // Stopped at once: a line or two may fail with Redis, not the hundreds that remain.
        const failed = Number(
          /(\d+) failed/.exec(result.stderr.slice(result.stderr.lastIndexOf(`sluice ${label}: `)))?.[1],
        );
        expect(failed).toBeLessThanOrEqual(4);
      }
    } finally {
      await redis.stop();
      await server.close();
    }
  }, 40_000);

  it("sluice inspect: an empty server, then one with a semaphore and a rate limiter", async () => {
    const redis = await RedisServer.start();
    try {
      const empty = await runCli(["inspect", "--redis", redis.url]);
      expect([empty.code, empty.stdout.split("\n")[0], empty.stderr]).toEqual([
        0,
        `no sluice limits in ${redis.url}`,
        "",
      ]);
      const emptyJson = await runCli(["inspect", "--redis", redis.url, "--json"]);
      expect([emptyJson.code, JSON.parse(emptyJson.stdout)]).toEqual([0, []]);

      const shared = ["--redis", redis.url, "-q"];
      const [semaphore, rate] = await Promise.all([
        runCli(["run", ...shared, "--key", "sem", "-c", "3", "--lease", "1s", "--", "true"], { input: "x\n" }),
        // 5 a minute: its Redis key lives until the bucket is full again (12 s), well past the inspect.
        runCli(["run", ...shared, "--key", "rl", "--rate", "5/min", "--", "true"], { input: "x\n" }),
      ]);
      expect([semaphore.code, semaphore.stderr, rate.code, rate.stderr]).toEqual([0, "", 0, ""]);
      const all = await runCli(["inspect", "--redis", redis.url]);
      expect(all.code).toBe(0);
      expect(all.stdout).toMatch(/^semaphore "sem": 0\/3 held, 0 waiting, fencing token \d+/m);
      expect(all.stdout).toMatch(/^rate limiter "rl"\n {2}requests: [\d.]+ of 5 left per 1 min \(burst 5\)/m);
      const json = JSON.parse((await runCli(["inspect", "--redis", redis.url, "--json"])).stdout) as {
        kind: string;
        name: string;
      }[];
      expect(json.map(({ kind, name }) => `${kind} ${name}`).sort()).toEqual(["rate-limiter rl", "semaphore sem"]);
    } finally {
      await redis.stop();
    }
  }, 20_000);
});
