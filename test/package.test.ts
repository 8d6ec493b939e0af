/**
 * The built package as a CommonJS user gets it (`require("sluice")`, from `npm test`'s fresh build):
 * classes keep their names, the subpaths share one copy of the core (an error from `sluice/http` is an
 * instance of `sluice`'s class), and the code is the same modern JavaScript as the ESM build, not
 * rewritten into helper calls (`?.` as `_optionalChain(...)`, class fields as `__init` methods).
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("..", import.meta.url));
const dist = join(root, "dist");

/**
 * Runs `source` in a child process in the package's directory, where `sluice` resolves to the build
 * (the tests themselves import it from source), and returns what it printed (JSON).
 */
function runInChild(source: string, type: "commonjs" | "module" = "commonjs"): unknown {
  const output = execFileSync(process.execPath, [`--input-type=${type}`, "-e", source], {
    cwd: root,
    encoding: "utf8",
  });
  return JSON.parse(output);
}

const ENTRIES = JSON.stringify([
  "sluice",
  "sluice/http",
  "sluice/redis",
  "sluice/threads",
  "sluice/testing",
  "sluice/otel",
]);

describe("the CommonJS build", () => {
  it("keeps the names of the exported classes and functions", () => {
    const names = runInChild(`
      const names = {};
      for (const entry of ${ENTRIES}) {
        for (const [key, value] of Object.entries(require(entry))) {
          if (typeof value === "function") names[key] = value.name;
        }
      }
      console.log(JSON.stringify(names));
    `) as Record<string, string>;
    expect(Object.keys(names).length).toBeGreaterThan(30);
    for (const [exported, name] of Object.entries(names)) expect(name, exported).toBe(exported);
  });

  it("shares one core between subpaths: a limitedFetch timeout is sluice's TimeoutError, printed by its name", () => {
    const result = runInChild(`
      const { Semaphore, TimeoutError } = require("sluice");
      const { limitedFetch } = require("sluice/http");
      const semaphore = new Semaphore(1);
      semaphore.tryAcquire();
      const fetch = limitedFetch(semaphore, { fetch: async () => new Response("{}"), retry: { totalTime: 1 } });
      fetch("http://api.test/").then(
        () => console.log(JSON.stringify({ settled: "fulfilled" })),
        (error) =>
          console.log(JSON.stringify({
            sameClass: error instanceof TimeoutError,
            printed: require("node:util").inspect(error).split("\\n")[0],
          })),
      );
    `);
    expect(result).toEqual({ sameClass: true, printed: expect.stringMatching(/^TimeoutError: /) });
  });

  it("is not rewritten into helper calls", () => {
    const files = readdirSync(dist).filter((file) => file.endsWith(".cjs"));
    expect(files.length).toBeGreaterThan(5);
    for (const file of files) {
      const code = readFileSync(join(dist, file), "utf8");
      expect(code, file).not.toMatch(/_optionalChain|_nullishCoalesce|\b_class\d*\b|__init\d*\(/);
    }
  });
});

describe("the ESM build", () => {
  it("keeps the names of the exported classes and functions", () => {
    const names = runInChild(
      `
      const names = {};
      for (const entry of ${ENTRIES}) {
        for (const [key, value] of Object.entries(await import(entry))) {
          if (typeof value === "function") names[key] = value.name;
        }
      }
      console.log(JSON.stringify(names));
    `,
      "module",
    ) as Record<string, string>;
    expect(Object.keys(names).length).toBeGreaterThan(30);
    for (const [exported, name] of Object.entries(names)) expect(name, exported).toBe(exported);
  });
});

describe("every entry point, as a bundler sees it", () => {
  const PORTABLE = ["sluice", "sluice/http"];
  const NODE_ONLY = ["sluice/redis", "sluice/threads", "sluice/testing", "sluice/otel"];

  it.each([
    ...PORTABLE.map((entry) => [entry, "browser", "esm"] as const),
    ...PORTABLE.map((entry) => [entry, "browser", "cjs"] as const),
    ...NODE_ONLY.map((entry) => [entry, "node", "esm"] as const),
    ...NODE_ONLY.map((entry) => [entry, "node", "cjs"] as const),
  ])("%s bundles with esbuild for the %s, imported from %s", async (entry, platform, format) => {
    const { build } = await import("esbuild");
    const contents = format === "esm" ? `export * from "${entry}";` : `module.exports = require("${entry}");`;
    const result = await build({
      stdin: { contents, resolveDir: root, sourcefile: `consumer.${format === "esm" ? "mjs" : "cjs"}` },
      bundle: true,
      write: false,
      format,
      platform,
      logLevel: "silent",
      external: ["ioredis", "@opentelemetry/api"],
    });
    expect(result.errors).toEqual([]);
    expect(result.outputFiles[0]?.text.length).toBeGreaterThan(1_000);
  });
});

/** Node 20.19+ and 22.12+ load ES modules with require() (require(esm)) unless they use top-level await. */
const requiresEsm = (process.features as { require_module?: boolean }).require_module === true;

describe.runIf(requiresEsm)(`require(esm) on Node ${process.version}`, () => {
  it("require() of each entry point's ES module gives the same exports as import()", () => {
    const files = ["index", "http", "redis", "threads", "testing", "otel"];
    const result = runInChild(`
      const { pathToFileURL } = require("node:url");
      const outcome = {};
      Promise.all(${JSON.stringify(files)}.map(async (name) => {
        const file = require("node:path").join(${JSON.stringify(dist)}, name + ".js");
        const required = require(file);
        const imported = await import(pathToFileURL(file).href);
        outcome[name] = Object.keys(imported).every((key) => required[key] === imported[key])
          && Object.keys(required).length === Object.keys(imported).length;
      })).then(() => console.log(JSON.stringify(outcome)));
    `);
    expect(result).toEqual(Object.fromEntries(files.map((name) => [name, true])));
  });
});
