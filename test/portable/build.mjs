/**
 * Bundles the portable suite (test/portable/files.ts) into one ES module per kind of runtime, with
 * esbuild, as a user's bundler would: `sluice` and `sluice/http` resolve to the built package (run
 * `npm run build` first), `vitest` to the small harness in test/portable/harness.ts, and
 * `sluice/testing` to its portable part, the FakeClock (the rest of it is a Node HTTP server).
 */
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("../..", import.meta.url));
export const outputDirectory = fileURLToPath(new URL("./out/", import.meta.url));

/** The kinds of runtime, each with its entry and how a bundler resolves packages for it. */
const TARGETS = {
  // Node, Bun and Deno: no `node:` module may be reached, so "neutral" (which refuses them) is right.
  program: { entry: "test/portable/main.ts", platform: "neutral", conditions: ["import"] },
  exits: { entry: "test/portable/exits.ts", platform: "neutral", conditions: ["import"] },
  browser: { entry: "test/portable/browser.ts", platform: "browser", conditions: [] },
  worker: { entry: "test/portable/worker.ts", platform: "browser", conditions: ["workerd", "worker"] },
};

/** Builds the bundle for `target` (a key of TARGETS) and returns its path. */
export async function buildPortable(target) {
  const { entry, platform, conditions } = TARGETS[target];
  if (!existsSync(`${root}dist/index.js`)) throw new Error("no dist/: run `npm run build` first");
  await mkdir(outputDirectory, { recursive: true });
  const outfile = `${outputDirectory}${target}.mjs`;
  await build({
    absWorkingDir: root,
    entryPoints: [entry],
    outfile,
    bundle: true,
    format: "esm",
    platform,
    conditions,
    mainFields: ["module", "main"],
    target: "es2022",
    logLevel: "warning",
    alias: {
      vitest: "./test/portable/harness.ts",
      "sluice/testing": "./src/testing/fake-clock.ts",
    },
    // The model tests read their run count from the environment under vitest; a browser has no process.
    define: { "process.env.MODEL_RUNS": "undefined", "process.env.SLUICE_PORTABLE": '"1"' },
  });
  return outfile;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const target of process.argv.slice(2).length > 0 ? process.argv.slice(2) : Object.keys(TARGETS)) {
    console.log(await buildPortable(target));
  }
}
