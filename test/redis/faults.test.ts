/**
 * Issue 14, "Distributed limits that keep their promise under faults": real processes sharing one
 * RedisSemaphore and one RedisRateLimiter while a holder is frozen (SIGSTOP past its lease), processes
 * are killed (holding, and with callers queued), one process is cut off from Redis by a TCP proxy,
 * Redis is restarted empty (once while that process is cut off), frozen, and flushed. The scenario is
 * test/redis/fault-scenario.ts; every check is computed from the logs by test/redis/fault-checks.ts
 * (tested on its own in fault-checks.test.ts). `node --import tsx test/redis/faults-report.ts` prints
 * the same figures without asserting.
 *
 * One run, about 50 s of a 2-core machine; the figures are printed whether the checks pass or not.
 */
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { type FaultRun, type Figures, figuresOf, stallsFigure, type Verdict, verdicts } from "./fault-checks.js";
import { recoveryBounds, runFaultScenario } from "./fault-scenario.js";

let run: FaultRun;
let figures: Figures;
let verdictOf: (prefix: string) => Verdict[];

beforeAll(async () => {
  run = await runFaultScenario();
  figures = figuresOf(run, recoveryBounds);
  const all = verdicts(run, figures);
  verdictOf = (prefix) => all.filter((verdict) => verdict.check.startsWith(prefix));
  // A failed run's whole log, for reading afterwards: every line of every process and every fault.
  if (all.some((verdict) => !verdict.pass)) {
    const file = join(tmpdir(), `sluice-fault-run-${process.pid}-${Date.now()}.json`);
    writeFileSync(file, JSON.stringify(run));
    console.log(`fault run log: ${file}`);
    // A lost caller (check 3b): its own lines and its first passer's, and the faults around them.
    for (const lost of figures.settled.lost) {
      const worker = run.workers.find((record) => record.label === lost.worker);
      const calls = new Set([lost.call, lost.passer?.call]);
      const from = Math.min(lost.asked, lost.passer?.asked ?? lost.asked) - 100;
      const lines = (worker?.lines ?? []).filter(
        (line) => line.at >= from && line.at <= lost.settled + 100 && (!("call" in line) || calls.has(line.call)),
      );
      const faults = run.faults.filter((fault) => fault.end >= from && fault.at <= lost.settled);
      console.log(
        [
          `${lost.worker} #${lost.call} (times in ms after its ask):`,
          ...faults.map(
            (fault) =>
              `  fault ${fault.kind} ${Math.round(fault.at - lost.asked)}..${Math.round(fault.end - lost.asked)}`,
          ),
          ...lines.map((line) => `  ${Math.round(line.at - lost.asked)} ${JSON.stringify({ ...line, at: undefined })}`),
        ].join("\n"),
      );
    }
  }
  console.log(
    [
      `fault suite (fencing ${run.guard}; ${stallsFigure(run)}):`,
      ...all.map((verdict) => `  ${verdict.pass ? "pass" : "FAIL"}  ${verdict.check.padEnd(44)} ${verdict.figure}`),
    ].join("\n"),
  );
}, 150_000);

/** Fails with the check's figure in the message. */
function expectPassed(prefix: string): void {
  const found = verdictOf(prefix);
  expect(found.length).toBeGreaterThan(0);
  for (const verdict of found) expect(verdict.pass, `${verdict.check}: ${verdict.figure}`).toBe(true);
}

describe("RedisSemaphore and RedisRateLimiter under faults (issue 14)", () => {
  it("the run injected every fault and its workers were served", () => {
    expect(run.faults.map((fault) => fault.kind)).toEqual([
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
    expect(figures.grants).toBeGreaterThan(500);
    expect(figures.rate.admitted).toBeGreaterThan(500);
  });

  // Each promise of the issue, and the checks of fault-checks.ts that hold the run to it.
  it.each([
    ["never more than the capacity held by holders who were not told they lost their lease", ["1 "]],
    ["a lost lease is reported: release() and run() do not resolve for a permit whose lease was lost", ["1b "]],
    ["a fenced resource accepts no stale write", ["2a "]],
    ["a fenced resource refuses no write of a holder whose lease Redis still held", ["2b "]],
    ["every promise settles, and no caller is left behind (after a restart, a flush, a freeze)", ["3 ", "3b "]],
    ["capacity comes back after each fault within its bound", ["4 "]],
    ["no process starves: grants per process within 0.8 of each other", ["5 "]],
    ["the rate limiter keeps its promise in every window, one burst more per restart or flush", ["6 ", "6b "]],
  ])("%s", (_promise, prefixes) => {
    for (const prefix of prefixes) expectPassed(prefix);
  });
});
