/**
 * Running the real `sluice` binary (`dist/cli.js`) in child processes, for the end-to-end tests.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll } from "vitest";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const BUILT = join(ROOT, "dist", "cli.js");
/**
 * The binary the tests run: a copy of the freshly built `dist/cli.js` (one self-contained file that
 * imports only node: built-ins and, for --redis, ioredis), so another `npm run build` emptying `dist/`
 * meanwhile cannot break a test halfway.
 */
let cli: string | undefined;

function newestSource(directory: string): number {
  let newest = 0;
  for (const entry of readdirSync(directory, { withFileTypes: true })) {
    const path = join(directory, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(path) : statSync(path).mtimeMs);
  }
  return newest;
}

function builtAt(): number {
  try {
    return statSync(BUILT).mtimeMs;
  } catch {
    return 0;
  }
}

/**
 * Builds `dist/` when `dist/cli.js` is older than any source, then copies it aside and returns the
 * copy's path. Test files run in parallel, so one builds while the others wait on a lock directory
 * (mkdir is atomic), then re-check.
 */
export async function ensureBuilt(): Promise<string> {
  const lock = join(ROOT, "node_modules", ".sluice-cli-build-lock");
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (builtAt() >= newestSource(join(ROOT, "src"))) {
      try {
        // Inside node_modules, so that the copy still resolves the optional peer ioredis from the repo.
        const copies = join(ROOT, "node_modules", ".sluice-cli-test");
        mkdirSync(copies, { recursive: true });
        for (const old of readdirSync(copies)) {
          const path = join(copies, old);
          if (Date.now() - statSync(path).mtimeMs > 3_600_000) rmSync(path, { recursive: true, force: true });
        }
        const directory = mkdtempSync(join(copies, "bin-"));
        mkdirSync(join(directory, "dist"));
        copyFileSync(join(ROOT, "package.json"), join(directory, "package.json"));
        copyFileSync(BUILT, join(directory, "dist", "cli.js"));
        cli = join(directory, "dist", "cli.js");
        return cli;
      } catch {
        // dist/ vanished between the check and the copy (someone is building): wait and look again.
      }
    }
    if (Date.now() > deadline) throw new Error(`no fresh ${BUILT} within 2 minutes (build lock: ${lock})`);
    try {
      mkdirSync(lock);
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 250));
      continue;
    }
    try {
      // tsup without the `rm -rf dist` of `npm run build`, so other tests using dist/ are not disturbed.
      if (builtAt() < newestSource(join(ROOT, "src"))) execFileSync("npx", ["tsup"], { cwd: ROOT, stdio: "pipe" });
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 250));
    } finally {
      rmdirSync(lock);
    }
  }
}

/** The path of the binary copy `ensureBuilt` made. */
export function cliPath(): string {
  if (cli === undefined) throw new Error("call ensureBuilt() in beforeAll first");
  return cli;
}

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly durationMs: number;
}

export interface CliOptions {
  /** Written to stdin, which is then closed; default: stdin closed at once (empty input). */
  readonly input?: string;
  /** Leave stdin open for the test to write or pipe into (`input` is ignored). */
  readonly openStdin?: boolean;
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Kill the process (and fail) after this long. */
  readonly timeout?: number;
}

/** A running `sluice` process. */
export interface CliProcess {
  readonly child: ChildProcess;
  readonly result: Promise<CliResult>;
  /** Everything written to stderr so far. */
  stderr(): string;
  stdout(): string;
}

export function startCli(args: readonly string[], options: CliOptions = {}): CliProcess {
  const started = performance.now();
  if (cli === undefined) throw new Error("call ensureBuilt() in beforeAll first");
  const child = spawn(process.execPath, [cli, ...args], {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, ...options.env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  child.stdin.on("error", () => {});
  if (options.openStdin) {
    // The test feeds stdin.
  } else if (options.input !== undefined) child.stdin.end(options.input);
  else child.stdin.end();
  const result = new Promise<CliResult>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`sluice ${args.join(" ")} did not finish within ${options.timeout} ms\nstderr: ${stderr}`));
    }, options.timeout ?? 20_000);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, durationMs: performance.now() - started });
    });
  });
  return { child, result, stderr: () => stderr, stdout: () => stdout };
}

export function runCli(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  return startCli(args, options).result;
}

/** Polls `condition` every 20 ms until it holds, or throws after `timeout`. */
export async function waitFor(condition: () => boolean, timeout = 10_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * What every end-to-end CLI test file against a mock server sets up: the CLI built once, a scratch
 * directory for the file (`scratch.directory`, removed after it), and the mock server the running test
 * started — `current()` — closed after each test, then `forget()`-ten.
 */
export function useCliScratch(
  prefix: string,
  current: () => { close(): Promise<void> } | undefined,
  forget: () => void,
): { readonly directory: string } {
  let directory: string | undefined;
  beforeAll(async () => {
    await ensureBuilt();
    directory = mkdtempSync(join(tmpdir(), prefix));
  }, 120_000);
  afterEach(async () => {
    await current()?.close();
    forget();
  });
  afterAll(() => {
    if (directory !== undefined) rmSync(directory, { recursive: true, force: true });
  });
  return {
    get directory() {
      if (directory === undefined) throw new Error("useCliScratch: the directory is made in beforeAll");
      return directory;
    },
  };
}
