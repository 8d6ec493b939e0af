/**
 * `sluice run --redis URL --key NAME` and `sluice inspect`: limits shared by several sluice processes
 * through a private redis-server (started on a free loopback port, never the machine's 6379).
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisServer } from "../support/redis-server.js";
import { ensureBuilt, runCli, startCli } from "./cli-process.js";

let redis: RedisServer;
let directory: string;
let record: string;
/** A short lease keeps the restart guard of a fresh redis-server (one lease) short too. */
const LEASE = "1s";

beforeAll(async () => {
  await ensureBuilt();
  redis = await RedisServer.start();
  directory = mkdtempSync(join(tmpdir(), "sluice-redis-cli-"));
  record = join(directory, "record.sh");
  writeFileSync(
    record,
    '#!/bin/sh\necho "start $2 $(date +%s%N)" >> "$1"\nsleep "$3"\necho "end $2 $(date +%s%N)" >> "$1"\n',
  );
  chmodSync(record, 0o755);
  // Wait out the restart guard once, so every test sees a working server.
  const warm = await runCli(
    ["run", "--redis", redis.url, "--key", "warm-up", "-c", "1", "--lease", LEASE, "--", "true"],
    {
      input: "x\n",
    },
  );
  expect(warm.code, warm.stderr).toBe(0);
}, 60_000);

afterAll(async () => {
  await redis?.stop();
  rmSync(directory, { recursive: true, force: true });
});

function readSpans(log: string): { start: number; end: number }[] {
  const starts = new Map<string, number>();
  const spans: { start: number; end: number }[] = [];
  if (!existsSync(log)) return spans;
  for (const line of readFileSync(log, "utf8").split("\n")) {
    const [kind, tag, ns] = line.split(" ");
    if (tag === undefined || ns === undefined) continue;
    const ms = Number(BigInt(ns) / 1000n) / 1000;
    if (kind === "start") starts.set(tag, ms);
    else spans.push({ start: starts.get(tag) as number, end: ms });
  }
  return spans.sort((a, b) => a.start - b.start);
}

describe("sluice run --redis", () => {
  it("two processes with the same --key share one concurrency limit and one rate", async () => {
    // Each process alone would run 4 at once and 40 per second; together they must stay within both.
    const log = join(directory, "shared.log");
    const args = (tag: string) => [
      "run",
      "-q",
      "--redis",
      redis.url,
      "--key",
      "shared",
      "--lease",
      LEASE,
      "-c",
      "4",
      "--rate",
      "10/s",
      "--",
      record,
      log,
      `${tag}{}`,
      "0.1",
    ];
    const input = `${Array.from({ length: 12 }, (_, index) => String(index)).join("\n")}\n`;
    const [a, b] = await Promise.all([
      runCli(args("a"), { input, timeout: 30_000 }),
      runCli(args("b"), { input, timeout: 30_000 }),
    ]);
    expect([a.code, b.code, a.stderr, b.stderr]).toEqual([0, 0, "", ""]);
    const spans = readSpans(log);
    expect(spans).toHaveLength(24);
    // Never more than 4 jobs at once across both processes (each alone would run 4).
    const events = spans.flatMap((span) => [
      [span.start, 1],
      [span.end, -1],
    ]);
    events.sort((x, y) => (x[0] as number) - (y[0] as number) || (x[1] as number) - (y[1] as number));
    let open = 0;
    let most = 0;
    for (const [, delta] of events) most = Math.max(most, (open += delta as number));
    expect(most).toBeLessThanOrEqual(4);
    // The token bucket's promise across both: at most 10 + 10/s × span starts in any span (plus 150 ms of
    // spawn jitter). Unlimited, 4 at once for 0.1 s each would start 40 per second.
    for (let i = 0; i < spans.length; i++) {
      for (let j = i; j < spans.length; j++) {
        const span = (spans[j] as { start: number }).start - (spans[i] as { start: number }).start;
        expect(j - i + 1).toBeLessThanOrEqual(10 + (10 * (span + 150)) / 1000);
      }
    }
  }, 40_000);

  it("exits 3 with a clear message when Redis cannot be reached", async () => {
    const result = await runCli(["run", "--redis", "redis://127.0.0.1:1", "--key", "k", "-c", "1", "--", "true"], {
      input: "x\n",
    });
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(/cannot reach Redis at redis:\/\/127\.0\.0\.1:1/);
  });

  it("a fresh Redis's restart guard is said on the progress line, with the time left, not a silent stall", async () => {
    const fresh = await RedisServer.start();
    try {
      const result = await runCli(
        [
          "run",
          "--redis",
          fresh.url,
          "--key",
          "fresh",
          "-c",
          "1",
          "--lease",
          "5s",
          "--progress-interval",
          "1s",
          "--",
          "true",
        ],
        { input: "x\n" },
      );
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toMatch(
        /in flight 0\/1 .*waiting: Redis started less than a --lease \(5 s\) ago; its restart guard grants nothing for [\d.]+ m?s more/,
      );
    } finally {
      await fresh.stop();
    }
  }, 20_000);

  it("refuses --algorithm sliding-window with --redis (the shared limiter is a token bucket)", async () => {
    const result = await runCli([
      "run",
      "--redis",
      redis.url,
      "--key",
      "k",
      "--rate",
      "1/s",
      "--algorithm",
      "sliding-window",
      "--",
      "true",
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("token buckets");
  });
});

describe("sluice inspect", () => {
  it("shows the holders, their leases, the waiters and the fencing counter of a run in progress", async () => {
    const run = startCli(
      ["run", "-q", "--redis", redis.url, "--key", "inspected", "--lease", LEASE, "-c", "2", "--", "sleep"],
      {
        input: "5\n5\n5\n",
      },
    );
    try {
      // Poll until both jobs hold their permits and the third waits (the run starts within a second).
      let text = "";
      for (let attempt = 0; attempt < 50 && !text.includes("2/2 held, 1 waiting"); attempt++) {
        text = (await runCli(["inspect", "--redis", redis.url, "--key", "inspected"])).stdout;
        if (!text.includes("2/2 held, 1 waiting")) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(text).toMatch(/semaphore "inspected": 2\/2 held, 1 waiting, fencing token \d+/);
      expect(text.match(/ {2}holder {2}token \d+ {2}weight 1 {2}lease [\d.]+ m?s left/g)).toHaveLength(2);
      expect(text).toMatch(/ {2}waiter {2}ticket \d+ {2}weight 1/);

      const json = await runCli(["inspect", "--redis", redis.url, "--key", "inspected", "--json"]);
      expect(json.code).toBe(0);
      const [snapshot] = JSON.parse(json.stdout) as {
        kind: string;
        used: number;
        capacity: number;
        holders: { leaseRemaining: number; fencingToken: number }[];
      }[];
      expect(snapshot).toMatchObject({ kind: "semaphore", used: 2, capacity: 2 });
      for (const holder of snapshot?.holders ?? []) {
        expect(holder.leaseRemaining).toBeGreaterThan(0);
        expect(holder.leaseRemaining).toBeLessThanOrEqual(1000);
      }
    } finally {
      run.child.kill("SIGINT");
      run.child.kill("SIGINT");
      await run.result;
    }
  }, 30_000);

  it("with --key as without it, a rate limiter whose key expired (nothing spent) is explained, not silently missing", async () => {
    // One request of 20 a second: the bucket is full again 50 ms later, and its key gone a second after
    // that (the scripts' margin). The concurrency semaphore beside it outlives it.
    const ran = await runCli(
      ["run", "-q", "--redis", redis.url, "--key", "idle", "-c", "2", "--rate", "20/s", "--", "true"],
      {
        input: "x\n",
      },
    );
    expect(ran.code, ran.stderr).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 1300));
    const all = await runCli(["inspect", "--redis", redis.url]);
    const one = await runCli(["inspect", "--redis", redis.url, "--key", "idle"]);
    for (const result of [all, one]) {
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toContain('rate limiter "idle": every limit full (nothing spent in its last interval)');
      expect(result.stdout).toContain('semaphore "idle/concurrency"');
      expect(result.stdout).toContain(
        "(a rate limiter that has spent nothing in its last interval keeps no key in Redis",
      );
    }
    const rateOnly = await runCli(
      ["run", "-q", "--redis", redis.url, "--key", "gone", "--rate", "20/s", "--", "true"],
      {
        input: "x\n",
      },
    );
    expect(rateOnly.code, rateOnly.stderr).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 1300));
    const named = await runCli(["inspect", "--redis", redis.url, "--key", "gone"]);
    expect(named.code).toBe(1);
    expect(named.stdout).toContain("keeps no key in Redis, so it is not listed");
  });

  it("exits 1 when --key names nothing, and 2 without --redis", async () => {
    const missing = await runCli(["inspect", "--redis", redis.url, "--key", "no-such-limit"]);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toContain('no sluice limit named "no-such-limit"');
    const usage = await runCli(["inspect"]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("--redis URL is required");
  });
});
