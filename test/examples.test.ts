/**
 * Every example in examples/ runs and exits 0, and every TypeScript block in the README is an excerpt
 * of an example — so the README's code is code that runs.
 */
import { execFileSync, spawn } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..");
const examplesDirectory = join(root, "examples");
const examples = readdirSync(examplesDirectory)
  .filter((file) => file.endsWith(".ts"))
  .sort();

function runExample(file: string, cwd = root): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(cwd === root ? examplesDirectory : cwd, file)], {
      cwd,
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

/**
 * A project of the most common kind, without `"type": "module"` (CommonJS), where sluice and the
 * examples' other imports are installed: there a copied `.ts` example fails (top-level await in
 * CommonJS), so each example says to save it as `.mts`, and here each runs as its note says.
 */
describe("examples copied into a CommonJS project", () => {
  let project: string;

  beforeAll(() => {
    project = mkdtempSync(join(tmpdir(), "sluice-commonjs-project-"));
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "my-project", version: "1.0.0" }));
    mkdirSync(join(project, "node_modules"));
    symlinkSync(root, join(project, "node_modules", "sluice"));
    for (const name of ["tsx", "ioredis", "openai"]) {
      symlinkSync(join(root, "node_modules", name), join(project, "node_modules", name));
    }
    for (const file of readdirSync(examplesDirectory).filter((name) => name.endsWith(".mjs"))) {
      copyFileSync(join(examplesDirectory, file), join(project, file));
    }
  });

  afterAll(() => {
    if (project !== undefined) rmSync(project, { recursive: true, force: true });
  });

  it.each(examples)(
    "examples/%s says what it needs, and runs saved as .mts as it says",
    async (file) => {
      const source = readFileSync(join(examplesDirectory, file), "utf8");
      expect(source).toContain('copied into a project without "type": "module", save it as .mts');
      for (const helper of source.matchAll(/from "\.\/([\w-]+\.mjs)"|new URL\("\.\/([\w-]+\.mjs)"/g)) {
        expect(source).toContain(`with ${helper[1] ?? helper[2]} beside it`);
      }
      const copy = file.replace(/\.ts$/, ".mts");
      copyFileSync(join(examplesDirectory, file), join(project, copy));
      const { code, output } = await runExample(copy, project);
      if (code !== 0) console.error(output);
      expect(code).toBe(0);
    },
    90_000,
  );
});

describe("README", () => {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1] as string);
  const normalise = (text: string) =>
    text
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line !== "")
      .join("\n");
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
