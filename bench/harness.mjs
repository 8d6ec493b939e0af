// Shared benchmark helpers: every bench/*.mjs file measures with these, so their numbers compare.
// Run benchmarks with `node --expose-gc` (bench/run.mjs does) so heap figures are after a full GC.
import { execFileSync } from "node:child_process";
import os from "node:os";

/** The median of a list of numbers. */
export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** The q-quantile (0..1) of a list of numbers, nearest rank. */
export function quantile(values, q) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** Runs `fn` (sync or async) and returns how long it took, in milliseconds. */
export async function time(fn) {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

/** Runs `fn` `runs` times (after `warmup` unmeasured runs) and returns the median duration in ms. */
export async function medianTime(fn, { runs = 5, warmup = 1 } = {}) {
  for (let i = 0; i < warmup; i++) await fn();
  const samples = [];
  for (let i = 0; i < runs; i++) samples.push(await time(fn));
  return median(samples);
}

/** A full garbage collection, if the process was started with --expose-gc. */
export function collectGarbage() {
  if (typeof globalThis.gc === "function") {
    globalThis.gc();
    globalThis.gc();
  }
}

/** Heap bytes in use after a full collection. */
export function heapUsed() {
  collectGarbage();
  return process.memoryUsage().heapUsed;
}

/** Renders rows (objects with the same keys) as a Markdown table. */
export function table(rows) {
  if (rows.length === 0) return "";
  const keys = Object.keys(rows[0]);
  const cell = (value) => (typeof value === "number" ? formatNumber(value) : String(value));
  const lines = [`| ${keys.join(" | ")} |`, `| ${keys.map(() => "---").join(" | ")} |`];
  for (const row of rows) lines.push(`| ${keys.map((key) => cell(row[key])).join(" | ")} |`);
  return lines.join("\n");
}

/** Numbers with sensible precision: 1,234,567 / 12.3 / 0.123. */
export function formatNumber(value) {
  if (!Number.isFinite(value)) return String(value);
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString("en-US");
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(3);
}

/** One line describing the machine and runtime, for RESULTS.md. */
export function machine() {
  const cpus = os.cpus();
  return `${cpus.length} × ${cpus[0]?.model ?? "unknown CPU"}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}`;
}

/** Whether this process can measure heap precisely. */
export function requireGc() {
  if (typeof globalThis.gc !== "function") {
    console.error("run with node --expose-gc for heap figures (bench/run.mjs does)");
  }
}

/**
 * Takes one sample in a fresh process: runs `script --child <spec as JSON>` under `node --expose-gc`
 * and returns the JSON object the child printed last.
 */
export function sampleInChild(script, spec) {
  const output = execFileSync(process.execPath, ["--expose-gc", script, "--child", JSON.stringify(spec)], {
    encoding: "utf8",
    maxBuffer: 1 << 20,
    stdio: ["ignore", "pipe", "inherit"],
  });
  return JSON.parse(output.trim().split("\n").at(-1));
}
