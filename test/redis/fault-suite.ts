/**
 * The fault run as the suites judge it (test/redis/faults.test.ts, keyed-semaphore-faults.test.ts): runs
 * test/redis/fault-scenario.ts, computes every check from the logs, prints them, and on a failure saves
 * the whole log and prints what a lost caller and its first passer did.
 */
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import { type FaultRun, type Figures, figuresOf, stallsFigure, type Verdict, verdicts } from "./fault-checks.js";
import { recoveryBounds, runFaultScenario, type ScenarioOptions } from "./fault-scenario.js";

/** The faults every run injects, in order. */
export const INJECTED_FAULTS = [
  "freeze",
  "kill-holding",
  "kill-queued",
  "cut-keep",
  "cut-drop",
  "restart-cut",
  "restart",
  "redis-pause",
  "flush",
];

/** Each promise of the semaphore under faults, and the checks of fault-checks.ts that hold a run to it. */
export const SEMAPHORE_PROMISES: [promise: string, checks: string[]][] = [
  ["never more than the capacity held by holders who were not told they lost their lease", ["1 "]],
  ["a lost lease is reported: release() and run() do not resolve for a permit whose lease was lost", ["1b "]],
  ["a fenced resource accepts no stale write", ["2a "]],
  ["a fenced resource refuses no write of a holder whose lease Redis still held", ["2b "]],
  ["every promise settles, and no caller is left behind (after a restart, a flush, a freeze)", ["3 ", "3b "]],
  ["capacity comes back after each fault within its bound", ["4 "]],
  ["no process starves: grants per process within 0.8 of each other", ["5 "]],
];

export interface JudgedRun {
  run: FaultRun;
  figures: Figures;
  /** Fails with the check's figure in the message unless every check starting with `prefix` passed. */
  expectPassed(prefix: string): void;
}

export async function judgedFaultRun(options: ScenarioOptions = {}): Promise<JudgedRun> {
  const run = await runFaultScenario(options);
  const figures = figuresOf(run, recoveryBounds);
  const all = verdicts(run, figures);
  const verdictOf = (prefix: string): Verdict[] => all.filter((verdict) => verdict.check.startsWith(prefix));
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
      `fault suite${options.keyed === undefined ? "" : " (keyed)"} (fencing ${run.guard}; ${stallsFigure(run)}):`,
      ...all.map((verdict) => `  ${verdict.pass ? "pass" : "FAIL"}  ${verdict.check.padEnd(44)} ${verdict.figure}`),
    ].join("\n"),
  );
  return {
    run,
    figures,
    expectPassed(prefix) {
      const found = verdictOf(prefix);
      expect(found.length).toBeGreaterThan(0);
      for (const verdict of found) expect(verdict.pass, `${verdict.check}: ${verdict.figure}`).toBe(true);
    },
  };
}
