#!/usr/bin/env node
/**
 * What sluice adds to a user's bundle: each import below bundled by esbuild from the built package
 * (`npm run build` first), minified, then gzipped (level 9), as a browser app would ship it. The
 * budgets are read from CONTRIBUTING.md's "Size budget" table, so the page and the check cannot
 * disagree; any figure above its budget fails the run.
 *
 *   node scripts/size.mjs             prints the table (sluice, then p-limit and p-queue for comparison)
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));

/** What is measured: the import a user writes, and the module that re-exports it for the bundler. */
const IMPORTS = [
  ['import { Semaphore } from "sluice"', 'export { Semaphore } from "sluice";'],
  ['import { Mutex } from "sluice"', 'export { Mutex } from "sluice";'],
  ['import { RateLimiter } from "sluice"', 'export { RateLimiter } from "sluice";'],
  ['import { map } from "sluice"', 'export { map } from "sluice";'],
  ['import * from "sluice"', 'export * from "sluice";'],
  ['import { limitedFetch } from "sluice/http"', 'export { limitedFetch } from "sluice/http";'],
  [
    "import { RateLimiter } + { limitedFetch }",
    'export { RateLimiter } from "sluice"; export { limitedFetch } from "sluice/http";',
  ],
  ['import pLimit from "p-limit"', 'export { default } from "p-limit";'],
  ['import PQueue from "p-queue"', 'export { default } from "p-queue";'],
];

/** Minified and gzipped bytes of the bundle of `source` (resolved from the repository's root). */
export async function measure(source) {
  const result = await build({
    stdin: { contents: source, resolveDir: root, sourcefile: "measured.js" },
    bundle: true,
    minify: true,
    write: false,
    format: "esm",
    platform: "browser",
    logLevel: "error",
  });
  const code = result.outputFiles[0].contents;
  return { minified: code.length, gzipped: gzipSync(code, { level: 9 }).length };
}

/** The budgets in CONTRIBUTING.md: rows of "| `import ...` | 3,072 B |". */
export async function readBudgets() {
  const page = await readFile(`${root}CONTRIBUTING.md`, "utf8");
  const budgets = new Map();
  for (const match of page.matchAll(/^\| `(import [^`]+)` \| ([\d,]+) B \|/gm)) {
    budgets.set(match[1], Number(match[2].replaceAll(",", "")));
  }
  return budgets;
}

async function main() {
  const budgets = await readBudgets();
  if (budgets.size === 0) throw new Error("CONTRIBUTING.md has no size budget rows");
  let over = 0;
  console.log("| import | minified | minified + gzip | budget |");
  console.log("| --- | ---: | ---: | ---: |");
  for (const [label, source] of IMPORTS) {
    const { minified, gzipped } = await measure(source);
    const budget = budgets.get(label);
    const verdict = budget === undefined ? "" : gzipped <= budget ? `${format(budget)} B` : `${format(budget)} B OVER`;
    if (budget !== undefined && gzipped > budget) over++;
    console.log(`| \`${label}\` | ${format(minified)} B | ${format(gzipped)} B | ${verdict} |`);
  }
  const missing = [...budgets.keys()].filter((label) => !IMPORTS.some(([measured]) => measured === label));
  for (const label of missing) console.log(`CONTRIBUTING.md budgets \`${label}\`, which this script does not measure`);
  console.log(`size budgets: ${budgets.size - over - missing.length} passed, ${over + missing.length} failed`);
  process.exitCode = over + missing.length > 0 ? 1 : 0;
}

function format(bytes) {
  return bytes.toLocaleString("en-US");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
