/**
 * RedisKeyedSemaphore under the faults of test/redis/faults.test.ts: the same scenario (a holder frozen
 * past its lease, processes killed holding and queued, a process cut off from Redis, Redis restarted
 * empty, paused and flushed), with every process's callers on one key of a RedisKeyedSemaphore while 4
 * more callers per process keep 200 other keys of it busy. Each promise is checked for the key under
 * test from the logs, by the same checks (test/redis/fault-checks.ts): the other keys' load must not
 * let its lease, its notices or its recovery slip. No rate limiter in this run.
 *
 * One run, about 50 s of a 2-core machine; the figures are printed whether the checks pass or not.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { keyedRun } from "./fault-scenario.js";
import { type JudgedRun, judgedFaultRun } from "./fault-suite.js";

let judged: JudgedRun;

beforeAll(async () => {
  judged = await judgedFaultRun({ keyed: keyedRun });
}, 150_000);

describe("RedisKeyedSemaphore under faults, one key among 200 busy ones", () => {
  it("the run injected every fault and its workers were served", () => {
    expect(judged.run.faults.map((fault) => fault.kind)).toEqual([
      "freeze",
      "kill-holding",
      "kill-queued",
      "cut-keep",
      "cut-drop",
      "restart-cut",
      "restart",
      "redis-pause",
      "flush",
    ]);
    expect(judged.figures.grants).toBeGreaterThan(500);
  });

  it.each([
    ["never more than the capacity per key held by holders who were not told they lost their lease", ["1 "]],
    ["a lost lease is reported: release() and run() do not resolve for a permit whose lease was lost", ["1b "]],
    ["a fenced resource accepts no stale write", ["2a "]],
    ["a fenced resource refuses no write of a holder whose lease Redis still held", ["2b "]],
    ["every promise settles, and no caller is left behind (after a restart, a flush, a freeze)", ["3 ", "3b "]],
    ["capacity comes back after each fault within its bound", ["4 "]],
    ["no process starves: grants per process within 0.8 of each other", ["5 "]],
  ])("%s", (_promise, prefixes) => {
    for (const prefix of prefixes) judged.expectPassed(prefix);
  });
});
