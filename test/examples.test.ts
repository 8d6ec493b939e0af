/**
 * Every example in examples/ runs and exits 0, and every TypeScript block in the README is an excerpt
 * of an example — so the README's code is code that runs.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { normaliseCode } from "./support/excerpts.js";

const root = join(import.meta.dirname, "..");
const examplesDirectory = join(root, "examples");
const examples = readdirSync(examplesDirectory)
  .filter((file) => file.endsWith(".ts"))
  .sort();

function runExample(file: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(examplesDirectory, file)], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk) => {
      output += chunk;
    });
    child.stderr.on("data", (chunk) => {
      output += chunk;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

beforeAll(() => {
  // Examples import "sluice" by name, which resolves to the built package.
  if (!existsSync(join(root, "dist", "index.js")))
    execFileSync("npm", ["run", "build"], { cwd: root, stdio: "ignore" });
}, 120_000);

describe("examples", () => {
  it.each(examples)(
    "examples/%s runs and exits 0",
    async (file) => {
      const { code, output } = await runExample(file);
      if (code !== 0) console.error(output);
      expect(code).toBe(0);
      expect(output.trim().length).toBeGreaterThan(0);
    },
    90_000,
  );
});

describe("README", () => {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1] as string);
  const normalise = normaliseCode;
  const sources = examples.map((file) => normalise(readFileSync(join(examplesDirectory, file), "utf8")));

  it("has TypeScript examples", () => {
    expect(blocks.length).toBeGreaterThan(0);
  });

  it.each(blocks.map((block, index) => [index + 1, block] as const))(
    "README block %i is an excerpt of a runnable example",
    (_, block) => {
      const excerpt = normalise(block);
      expect(sources.some((source) => source.includes(excerpt))).toBe(true);
    },
  );
});
