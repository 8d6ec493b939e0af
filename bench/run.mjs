// `npm run bench` entry point: runs every benchmark file in bench/ (all *.mjs except this file and
// harness.mjs), one after another, each in its own `node --expose-gc` process, and prints their output.
//
//   npm run bench                              every benchmark
//   npm run bench -- semaphore rate-limiter    only these (file names, with or without .mjs)
//   npm run bench -- semaphore --runs 3        arguments from the first `-`-prefixed one on are
//                                              passed to each benchmark
//
// Benchmarks run one at a time on purpose: two at once would measure each other.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { machine } from "./harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const notBenchmarks = new Set(["harness.mjs", "run.mjs"]);
const available = readdirSync(here)
  .filter((file) => file.endsWith(".mjs") && !notBenchmarks.has(file))
  .sort();

const argv = process.argv.slice(2);
const firstOption = argv.findIndex((argument) => argument.startsWith("-"));
const names = firstOption === -1 ? argv : argv.slice(0, firstOption);
const passed = firstOption === -1 ? [] : argv.slice(firstOption);

const selected = names.length === 0 ? available : names.map((name) => `${basename(name).replace(/\.mjs$/, "")}.mjs`);
const unknown = selected.filter((file) => !available.includes(file));
if (unknown.length > 0) {
  console.error(`no such benchmark: ${unknown.join(", ")}; available: ${available.join(", ")}`);
  process.exit(2);
}

console.log(`# sluice benchmarks\n\n${machine()}\n`);
const failed = [];
for (const file of selected) {
  console.log(`## ${file}\n`);
  const started = performance.now();
  // stdio is inherited: a benchmark's progress and tables appear as it produces them.
  const result = spawnSync(process.execPath, ["--expose-gc", join(here, file), ...passed], { stdio: "inherit" });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  if (result.status !== 0) {
    failed.push(file);
    console.log(`\n${file} FAILED (exit ${result.status ?? result.signal}) after ${seconds} s\n`);
  } else {
    console.log(`\n(${file}: ${seconds} s)\n`);
  }
}
if (failed.length > 0) {
  console.error(`failed: ${failed.join(", ")}`);
  process.exit(1);
}
