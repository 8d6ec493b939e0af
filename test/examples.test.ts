/**
 * Every example in examples/ runs and exits 0, and every TypeScript, JavaScript or HTML block in the
 * README, CONTRIBUTING.md and docs/ is an excerpt of a file in examples/ — so the docs' code is code that
 * runs. The sluice command lines of their shell blocks must be ones sluice accepts; docs/cli.md's shell
 * blocks run too, in order, against the `sluice mock` the page starts, and its sample outputs must have
 * the shape of what the commands print today. Any other block must say it is not run.
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
import { parseCommandLine } from "../src/cli/command-line.js";
import { DEMO_COMMAND } from "../src/cli/demo-command.js";
import { FETCH_COMMAND } from "../src/cli/fetch-command.js";
import { INSPECT_COMMAND } from "../src/cli/inspect-command.js";
import { MOCK_COMMAND } from "../src/cli/mock-command.js";
import { RUN_COMMAND } from "../src/cli/run-command.js";
import {
  readDemoSettings,
  readFetchSettings,
  readInspectSettings,
  readMockSettings,
  readRunSettings,
} from "../src/cli/settings.js";
import { ensureBuilt } from "./cli/cli-process.js";
import { codeBlocks, shapeOf, sluiceCommands } from "./support/doc-blocks.js";
import { normaliseCode } from "./support/excerpts.js";

const root = join(import.meta.dirname, "..");
const examplesDirectory = join(root, "examples");
const examples = readdirSync(examplesDirectory)
  .filter((file) => file.endsWith(".ts"))
  .sort();

/** Runs a program to its end (killed after a minute), with stdout and stderr as one text. */
function runToEnd(
  program: string,
  args: readonly string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv },
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(program, args, { ...options, stdio: ["ignore", "pipe", "pipe"] });
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

/**
 * Examples run two at a time (each test below is concurrent, and waits here for its turn): most of an
 * example's time is waiting on its limits, not CPU, and one at a time took CI 100 s. Not more: some
 * examples check their own timing, and CI has two cores.
 */
const EXAMPLES_AT_ONCE = 2;
let running = 0;
const turns: (() => void)[] = [];

async function runExample(file: string, cwd = root): Promise<{ code: number | null; output: string }> {
  if (running >= EXAMPLES_AT_ONCE) await new Promise<void>((resolve) => turns.push(resolve));
  else running++;
  try {
    return await runToEnd(process.execPath, ["--import", "tsx", join(cwd === root ? examplesDirectory : cwd, file)], {
      cwd,
    });
  } finally {
    const next = turns.shift();
    if (next !== undefined) next();
    else running--;
  }
}

beforeAll(() => {
  // Examples import "sluice" by name, which resolves to the built package.
  if (!existsSync(join(root, "dist", "index.js")))
    execFileSync("npm", ["run", "build"], { cwd: root, stdio: "ignore" });
}, 120_000);

describe("examples", () => {
  it.concurrent.each(examples)(
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
    for (const name of [
      "tsx",
      "ioredis",
      "openai",
      "@opentelemetry",
      "@anthropic-ai",
      "ai",
      "@ai-sdk",
      "js-tiktoken",
      "gpt-tokenizer",
    ]) {
      symlinkSync(join(root, "node_modules", name), join(project, "node_modules", name));
    }
    for (const file of readdirSync(examplesDirectory).filter((name) => name.endsWith(".mjs"))) {
      copyFileSync(join(examplesDirectory, file), join(project, file));
    }
  });

  afterAll(() => {
    if (project !== undefined) rmSync(project, { recursive: true, force: true });
  });

  it.concurrent.each(examples)(
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

const docsDirectory = join(root, "docs");
const pages = [
  "README.md",
  "CONTRIBUTING.md",
  ...readdirSync(docsDirectory)
    .filter((file) => file.endsWith(".md"))
    .map((file) => `docs/${file}`),
];

/** Code a reader may copy: each block must be an excerpt of a file in examples/, which the tests run. */
const EXCERPT_LANGUAGES = new Set(["ts", "js", "html"]);
/** Checked otherwise: shell blocks' sluice command lines (below), sample outputs (docs/cli.md's, below). */
const CHECKED_LANGUAGES = new Set(["sh", "text"]);

describe("README, CONTRIBUTING.md and docs/*.md", () => {
  const blocks = pages.flatMap((page) =>
    codeBlocks(readFileSync(join(root, page), "utf8")).map((block) => ({ where: `${page}:${block.line}`, block })),
  );
  const excerpts = blocks.filter(({ block }) => EXCERPT_LANGUAGES.has(block.language));
  const sources = readdirSync(examplesDirectory, { recursive: true, encoding: "utf8" })
    .filter((file) => /\.(ts|mts|js|mjs|html)$/.test(file))
    .map((file) => normaliseCode(readFileSync(join(examplesDirectory, file), "utf8")));

  it("has code examples", () => {
    expect(excerpts.length).toBeGreaterThan(0);
  });

  it.each(excerpts.map(({ where, block }) => [where, block.language, block.code] as const))(
    "%s: the %s block is an excerpt of a runnable example",
    (_, __, code) => {
      const excerpt = normaliseCode(code);
      expect(sources.some((source) => source.includes(excerpt))).toBe(true);
    },
  );

  it("every test file a page names (a promise and the test that holds it) exists", () => {
    const named = pages.flatMap((page) =>
      [...readFileSync(join(root, page), "utf8").matchAll(/\btest\/[\w./-]+\.(?:ts|mjs)\b/g)].map(
        ([path]) => `${page}: ${path}`,
      ),
    );
    expect(named.length).toBeGreaterThan(0);
    expect(named.filter((entry) => !existsSync(join(root, entry.split(": ")[1] as string)))).toEqual([]);
  });

  it("every other block is a shell block, a sample output, or marked not-run", () => {
    const unchecked = blocks
      .filter(({ block }) => !EXCERPT_LANGUAGES.has(block.language) && !CHECKED_LANGUAGES.has(block.language))
      .filter(({ block }) => !block.marks.includes("not-run"))
      .map(({ where, block }) => `${where} (${block.language})`);
    expect(unchecked).toEqual([]);
  });
});

/** How each command's settings are read, to check a command line in the docs without running it. */
const READERS: Record<
  string,
  [Parameters<typeof parseCommandLine>[0], (parsed: ReturnType<typeof parseCommandLine>) => unknown]
> = {
  run: [RUN_COMMAND, readRunSettings],
  fetch: [FETCH_COMMAND, readFetchSettings],
  demo: [DEMO_COMMAND, readDemoSettings],
  inspect: [INSPECT_COMMAND, readInspectSettings],
  mock: [MOCK_COMMAND, readMockSettings],
};

describe("every sluice command line in the docs' shell blocks is one sluice accepts", () => {
  const commands = pages.flatMap((page) =>
    codeBlocks(readFileSync(join(root, page), "utf8"))
      .filter((block) => block.language === "sh")
      .flatMap((block) => sluiceCommands(block.code).map((argv) => [`${page}:${block.line}`, argv] as const)),
  );

  it("finds them", () => {
    expect(commands.length).toBeGreaterThan(10);
  });

  it.each(commands)("%s: sluice %j", (_, argv) => {
    const [name, ...rest] = argv;
    const reader = READERS[name as string];
    expect(reader, `no command ${name}`).toBeDefined();
    const [spec, read] = reader as NonNullable<typeof reader>;
    expect(() => read(parseCommandLine(spec, rest))).not.toThrow();
  });
});

/**
 * docs/cli.md's shell blocks, run in order in an empty directory with \`sluice\` on PATH, against the
 * mock API its first block starts (on a free port instead of the page's 8429). Blocks marked
 * \`not-run\` need a Redis server: only those may be left out, and only their sample output with them.
 */
describe("docs/cli.md runs as written", () => {
  const page = "docs/cli.md";
  const blocks = codeBlocks(readFileSync(join(root, page), "utf8"));
  let directory: string;
  let mock: ReturnType<typeof spawn> | undefined;
  let port = "";
  let printed = "";

  beforeAll(async () => {
    const cli = await ensureBuilt();
    directory = mkdtempSync(join(tmpdir(), "sluice-docs-"));
    mkdirSync(join(directory, "bin"));
    writeFileSync(join(directory, "bin", "sluice"), `#!/bin/sh\nexec "${process.execPath}" "${cli}" "$@"\n`, {
      mode: 0o755,
    });
    mkdirSync(join(directory, "work"));
    const start = blocks.find((block) => block.language === "sh" && block.code.startsWith("sluice mock"));
    if (start === undefined) throw new Error(`${page} starts no sluice mock`);
    mock = spawn(process.execPath, [cli, ...(sluiceCommands(start.code)[0] ?? []), "--port", "0"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    mock.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      printed += chunk;
    });
    mock.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      printed += chunk;
    });
    const deadline = Date.now() + 10_000;
    while (!/^http:\/\/127\.0\.0\.1:(\d+)\n/.test(printed) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    port = /^http:\/\/127\.0\.0\.1:(\d+)\n/.exec(printed)?.[1] ?? "";
    expect(port, printed).not.toBe("");
  }, 120_000);

  afterAll(() => {
    mock?.kill("SIGINT");
    if (directory !== undefined) rmSync(directory, { recursive: true, force: true });
  });

  it("runs the README's run and fetch examples too: each is one of its own", () => {
    const ran = new Set(
      blocks
        .filter((block) => block.language === "sh" && !block.marks.includes("not-run"))
        .flatMap((block) => sluiceCommands(block.code).map((argv) => argv.join(" "))),
    );
    const readme = codeBlocks(readFileSync(join(root, "README.md"), "utf8")).filter((block) => block.language === "sh");
    const examples = readme
      .flatMap((block) => sluiceCommands(block.code))
      .filter(([name]) => name === "run" || name === "fetch");
    expect(examples.length).toBeGreaterThan(0);
    for (const argv of examples) expect(ran, `README: sluice ${argv.join(" ")}`).toContain(argv.join(" "));
  });

  it("leaves out only what needs a Redis server", () => {
    blocks.forEach((block, index) => {
      if (!block.marks.includes("not-run")) return;
      if (block.language === "sh") expect(block.code, `${page}:${block.line}`).toContain("--redis");
      else expect(blocks[index - 1]?.marks, `${page}:${block.line} follows no not-run block`).toContain("not-run");
    });
  });

  it("every other shell block exits 0, and every sample output has the shape of what sluice prints", async () => {
    for (const block of blocks) {
      if (block.language !== "sh" || block.marks.includes("not-run") || block.code.startsWith("sluice mock")) continue;
      const code = block.code.replaceAll("127.0.0.1:8429", `127.0.0.1:${port}`);
      const result = await runToEnd("bash", ["-e", "-c", code], {
        cwd: join(directory, "work"),
        env: { ...process.env, PATH: `${join(directory, "bin")}:${process.env["PATH"]}` },
      });
      expect(result.code, `${page}:${block.line}\n${result.output}`).toBe(0);
      printed += result.output;
    }
    const shapes = new Set(printed.split("\n").map(shapeOf));
    for (const block of blocks) {
      if (block.language !== "text" || block.marks.includes("not-run")) continue;
      for (const line of block.code.split("\n").filter((text) => text.trim() !== "")) {
        expect(shapes.has(shapeOf(line)), `${page}:${block.line}: nothing printed "${line}"`).toBe(true);
      }
    }
  }, 60_000);
});
