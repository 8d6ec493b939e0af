/**
 * The entry points meant for every runtime (`sluice`, `sluice/http`) load where there is no Node: they
 * reach no `node:` module and no bare Node built-in (which bundlers turn into an npm polyfill or refuse,
 * and browsers cannot resolve: issue 21's `Failed to resolve module specifier "events"`).
 */
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../..", import.meta.url));

/** Every import a browser bundle of `entry` would leave to the runtime, by module specifier. */
async function importsLeftToTheRuntime(entry: string): Promise<string[]> {
  const result = await build({
    entryPoints: [entry],
    absWorkingDir: root,
    bundle: true,
    write: false,
    metafile: true,
    format: "esm",
    platform: "browser",
    logLevel: "silent",
    // Whatever the browser build cannot resolve is left as an import, and shows up below.
    plugins: [
      {
        name: "leave-unresolved",
        setup(plugin) {
          plugin.onResolve({ filter: /^[^./]/ }, (args) => ({ path: args.path, external: true }));
        },
      },
    ],
  });
  return Object.values(result.metafile.outputs).flatMap((output) => output.imports.map((found) => found.path));
}

describe("the portable entry points", () => {
  it.each([
    ["sluice", "src/index.ts"],
    ["sluice/http", "src/http/index.ts"],
  ])("%s reaches no Node built-in", async (_name, entry) => {
    expect(await importsLeftToTheRuntime(entry)).toEqual([]);
  });
});
