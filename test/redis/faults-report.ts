/**
 * Prints the fault suite's figures without asserting anything, to compare the library before and after
 * a change: `node --import tsx test/redis/faults-report.ts [runs] [--json file]`.
 *
 * Each run is test/redis/fault-scenario.ts (about 50 s); the table shows every check per run, then the
 * median and the range of each check's main number over the runs; `--json` keeps every run's logs.
 */
import { writeFileSync } from "node:fs";
import { type FaultRun, type Figures, figuresOf, type Verdict, verdicts } from "./fault-checks.js";
import { recoveryBounds, runFaultScenario } from "./fault-scenario.js";

const args = process.argv.slice(2);
const jsonAt = args.indexOf("--json");
const jsonFile = jsonAt === -1 ? undefined : args[jsonAt + 1];
const runs = Number(args.find((arg, index) => /^\d+$/.test(arg) && index !== jsonAt + 1) ?? 1);

const results: { verdicts: Verdict[]; figures: Figures; run: FaultRun }[] = [];
for (let index = 1; index <= runs; index++) {
  const started = performance.now();
  const run = await runFaultScenario({ log: (text) => process.stderr.write(`  [run ${index}] ${text}\n`) });
  const figures = figuresOf(run, recoveryBounds);
  const verdictsOfRun = verdicts(run, figures);
  results.push({ verdicts: verdictsOfRun, figures, run });
  console.log(
    `\nrun ${index} of ${runs} (${((performance.now() - started) / 1000).toFixed(0)} s, fencing ${run.guard})`,
  );
  for (const verdict of verdictsOfRun) {
    console.log(`  ${verdict.pass ? "pass" : "FAIL"}  ${verdict.check.padEnd(44)} ${verdict.figure}`);
  }
}

if (runs > 1) {
  console.log(`\nover ${runs} runs: failures per check; its main number as median [min, max]`);
  const checks = results[0]?.verdicts.map((verdict) => verdict.check) ?? [];
  for (const [index, check] of checks.entries()) {
    const ofCheck = results.map((result) => result.verdicts[index] as Verdict);
    const failures = ofCheck.filter((verdict) => !verdict.pass).length;
    const values = ofCheck.map((verdict) => verdict.value).sort((a, b) => a - b);
    const median = values[Math.floor(values.length / 2)];
    console.log(
      `  ${String(failures).padStart(2)} of ${runs} failed  ${check.padEnd(44)} ${median} [${values[0]}, ${values[values.length - 1]}]`,
    );
  }
}

if (jsonFile !== undefined) writeFileSync(jsonFile, JSON.stringify(results));
