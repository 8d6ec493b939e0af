/**
 * Prints the fault suite's figures without asserting anything, to compare the library before and after
 * a change:
 *
 *   node --import tsx test/redis/faults-report.ts [runs] [--json file]   runs the scenario `runs` times
 *   node --import tsx test/redis/faults-report.ts --from file            the checks again, on saved runs
 *   ... --keyed                                                           on one key of a RedisKeyedSemaphore
 *
 * Each run is test/redis/fault-scenario.ts (about 45 s); the table shows every check per run, then how
 * many runs failed each check and its main number as median [min, max]. `--json` saves every run's logs
 * (a few MB each), so a changed check can be computed again without running anything (`--from`).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { type FaultRun, figuresOf, stallsFigure, type Verdict, verdicts } from "./fault-checks.js";
import { keyedRun, recoveryBounds, runFaultScenario } from "./fault-scenario.js";

const args = process.argv.slice(2);
const option = (name: string) => {
  const at = args.indexOf(name);
  return at === -1 ? undefined : args[at + 1];
};
const jsonFile = option("--json");
const fromFile = option("--from");
const runCount = Number(args.find((arg, index) => /^\d+$/.test(arg) && !args[index - 1]?.startsWith("--")) ?? 1);

const runs: FaultRun[] = fromFile === undefined ? [] : (JSON.parse(readFileSync(fromFile, "utf8")) as FaultRun[]);
if (fromFile === undefined) {
  for (let index = 1; index <= runCount; index++) {
    const log = (text: string) => process.stderr.write(`  [run ${index}] ${text}\n`);
    runs.push(await runFaultScenario(args.includes("--keyed") ? { log, keyed: keyedRun } : { log }));
    // Saved after each run, so an interrupted series keeps what it measured.
    if (jsonFile !== undefined) writeFileSync(jsonFile, JSON.stringify(runs));
  }
}

const table = runs.map((run, index) => {
  const verdictsOfRun = verdicts(run, figuresOf(run, recoveryBounds));
  const seconds = ((run.endedAt - run.startedAt) / 1000).toFixed(0);
  console.log(
    `\nrun ${index + 1} of ${runs.length} (${seconds} s of faults, fencing ${run.guard}; ${stallsFigure(run)})`,
  );
  for (const verdict of verdictsOfRun) {
    console.log(`  ${verdict.pass ? "pass" : "FAIL"}  ${verdict.check.padEnd(48)} ${verdict.figure}`);
  }
  return verdictsOfRun;
});

if (runs.length > 1) {
  console.log(`\nover ${runs.length} runs: runs failing each check; its main number as median [min, max]`);
  for (const [index, { check }] of (table[0] ?? []).entries()) {
    const ofCheck = table.map((verdictsOfRun) => verdictsOfRun[index] as Verdict);
    const failures = ofCheck.filter((verdict) => !verdict.pass).length;
    const values = ofCheck.map((verdict) => verdict.value).sort((a, b) => a - b);
    const median = values[Math.floor(values.length / 2)];
    const range = `[${values[0]}, ${values[values.length - 1]}]`;
    console.log(`  ${String(failures).padStart(2)} of ${runs.length} failed  ${check.padEnd(48)} ${median} ${range}`);
  }
}
