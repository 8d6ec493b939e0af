#!/usr/bin/env node
/**
 * Runs the portable suite (test/portable/files.ts) on every runtime sluice claims, and checks the claims
 * in docs/runtimes.md against what ran. What .ci/run calls after `npm test` (which builds the package).
 *
 *   node test/portable/run.mjs [runtime ...]   runtimes: node20 node20.0 node22 node24 bun deno chromium workerd
 *
 * Bun, Deno and workerd come from .ci/runtimes (npm packages that ship the binaries; .ci/run installs
 * them), Node 20.0, 22 and 24 from `npx -p node@N`, Chromium from Debian. A runtime that cannot be found or
 * started is reported as NOT INSTALLED and fails the run, since the docs table claims it; list it in
 * RUNTIMES_ALLOW_MISSING (comma-separated) to accept that on a machine that cannot have it.
 *
 * Every child process has a deadline; the only network used is 127.0.0.1.
 */
import { execFile, spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { basename } from "node:path";
import { fileURLToPath } from "node:url";
import { launchChromium } from "../support/chromium.mjs";
import { buildPortable, outputDirectory } from "./build.mjs";

const root = fileURLToPath(new URL("../..", import.meta.url));
const toolBin = fileURLToPath(new URL("../../.ci/runtimes/node_modules/.bin/", import.meta.url));
/** A whole runtime's run, loading included: generous, but a hang still ends. */
const DEADLINE_MS = 5 * 60_000;
/** How long a program may take to end once its work is done, before it counts as kept alive. */
const EXIT_DEADLINE_MS = 10_000;

/** Runs a command to its end; resolves with its exit code and output (never rejects). */
function run(command, args, { deadline = DEADLINE_MS, cwd = root } = {}) {
  return new Promise((resolve) => {
    const started = Date.now();
    execFile(command, args, { cwd, timeout: deadline, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
      // A command that could not start (ENOENT) says why in the error, not on stderr.
      const why = stderr || (code === -1 ? error.message : "");
      resolve({ code, stdout, stderr: why, killed: error?.killed === true, milliseconds: Date.now() - started });
    });
  });
}

/** The closing "N passed, N failed" line of the program runner (test/portable/main.ts). */
function summaryOf(output) {
  const match = /: (\d+) passed, (\d+) failed/.exec(output);
  return match === null ? undefined : { passed: Number(match[1]), failed: Number(match[2]) };
}

/** A runtime that runs programs: the suite's program bundle, then the "ends by itself" check. */
function programRuntime(name, version, command, prefix = []) {
  return {
    name,
    async run(bundles) {
      const probe = await run(command, [...prefix, ...version], { deadline: 120_000 });
      if (probe.code !== 0) return { installed: false, reason: firstLine(probe.stderr || probe.stdout) };
      const suite = await run(command, [...prefix, ...bundles.program]);
      const summary = summaryOf(suite.stdout);
      const exits = await run(command, [...prefix, ...bundles.exits], { deadline: EXIT_DEADLINE_MS });
      return {
        installed: true,
        version: firstLine(probe.stdout),
        passed: summary?.passed ?? 0,
        failed: summary === undefined ? 1 : summary.failed,
        failures: summary === undefined || summary.failed > 0 || suite.code !== 0 ? failuresIn(suite) : [],
        exitsByItself: exits.code === 0 && !exits.killed,
        exitNote: exits.killed ? `still running after ${EXIT_DEADLINE_MS} ms` : firstLine(exits.stderr),
      };
    },
  };
}

function firstLine(text) {
  return String(text).trim().split("\n")[0]?.slice(0, 200) ?? "";
}

function failuresIn(result) {
  const lines = `${result.stdout}\n${result.stderr}`.split("\n").filter((line) => line.trim() !== "");
  const failing = lines.filter((line) => line.startsWith("FAIL") || line.startsWith("     "));
  if (result.killed) failing.push(`killed after ${DEADLINE_MS} ms`);
  return failing.length > 0 ? failing.slice(0, 60) : lines.slice(-20);
}

/** Serves `files` (path -> [type, body]) on a free 127.0.0.1 port until `close()`. */
async function serve(files) {
  const server = createServer((request, response) => {
    const file = files[new URL(request.url ?? "/", "http://localhost").pathname];
    if (file === undefined) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { "content-type": file[0] }).end(file[1]);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { origin: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

const chromium = {
  name: "chromium",
  async run(bundles) {
    let browser;
    try {
      browser = await launchChromium();
    } catch (error) {
      return { installed: false, reason: firstLine(error.message) };
    }
    const server = await serve({
      "/": ["text/html", '<!doctype html><script type="module" src="/browser.mjs"></script>'],
      "/browser.mjs": ["text/javascript", await readFile(bundles.browser)],
    });
    try {
      const page = await browser.newPage();
      const problems = [];
      page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
      await page.goto(server.origin);
      await page.waitForFunction(() => window.portableResults !== undefined, undefined, { timeout: DEADLINE_MS });
      const results = await page.evaluate(() => window.portableResults);
      return { installed: true, version: `Chromium ${browser.version()}`, ...tally(results, problems) };
    } finally {
      server.close();
      await browser.close();
    }
  },
};

/** Counts the results a page or a worker returned (an array of TestResult, or a load error). */
function tally(results, problems = []) {
  if (!Array.isArray(results)) return { passed: 0, failed: 1, failures: [String(results?.loadError), ...problems] };
  const failing = results.filter((result) => !result.passed);
  return {
    passed: results.length - failing.length,
    failed: failing.length + problems.length,
    failures: [...failing.map((result) => `FAIL ${result.name}: ${result.error}`), ...problems],
  };
}

const workerd = {
  name: "workerd",
  async run(bundles) {
    const binary = `${toolBin}workerd`;
    const probe = await run(binary, ["--version"], { deadline: 60_000 });
    if (probe.code !== 0) return { installed: false, reason: firstLine(probe.stderr || probe.stdout || "not found") };
    const port = await freePort();
    const config = `${outputDirectory}workerd.capnp`;
    await writeFile(
      config,
      `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [(name = "main", worker = .portable)],
  sockets = [(name = "http", address = "127.0.0.1:${port}", http = (), service = "main")],
);
const portable :Workerd.Worker = (
  modules = [(name = "worker", esModule = embed "${basename(bundles.worker)}")],
  compatibilityDate = "2025-01-01",
);
`,
    );
    const child = spawn(binary, ["serve", config], { cwd: outputDirectory, stdio: ["ignore", "pipe", "pipe"] });
    let log = "";
    child.stdout.on("data", (chunk) => (log += chunk));
    child.stderr.on("data", (chunk) => (log += chunk));
    const deadline = setTimeout(() => child.kill("SIGKILL"), DEADLINE_MS);
    try {
      const response = await fetchWhenUp(`http://127.0.0.1:${port}/`, child);
      const results = await response.json();
      return { installed: true, version: firstLine(probe.stdout), ...tally(results, log.trim() === "" ? [] : [log]) };
    } catch (error) {
      return {
        installed: true,
        version: firstLine(probe.stdout),
        passed: 0,
        failed: 1,
        failures: [error.message, log],
      };
    } finally {
      clearTimeout(deadline);
      child.kill("SIGKILL");
    }
  },
};

async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Fetches `url` once the server behind it accepts connections (at most 200 tries, 100 ms apart). */
async function fetchWhenUp(url, child) {
  for (let attempt = 0; attempt < 200; attempt++) {
    if (child.exitCode !== null) throw new Error(`workerd exited with code ${child.exitCode}`);
    try {
      return await fetch(url, { signal: AbortSignal.timeout(DEADLINE_MS) });
    } catch (error) {
      if (error?.cause?.code !== "ECONNREFUSED") throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(`nothing answered at ${url}`);
}

const RUNTIMES = {
  node20: programRuntime("node20", ["--version"], process.execPath),
  // The oldest Node package.json allows: no Symbol.dispose, no AbortSignal.any, no getBuiltinModule.
  "node20.0": programRuntime("node20.0", ["--version"], "npx", ["-y", "-p", "node@20.0.0", "node"]),
  node22: programRuntime("node22", ["--version"], "npx", ["-y", "-p", "node@22", "node"]),
  node24: programRuntime("node24", ["--version"], "npx", ["-y", "-p", "node@24", "node"]),
  bun: programRuntime("bun", ["--version"], `${toolBin}bun`),
  // --no-prompt: a permission the suite should not need fails at once instead of waiting for an answer.
  deno: programRuntime("deno", ["--version"], `${toolBin}deno`, ["run", "--no-prompt"]),
  chromium,
  workerd,
};

async function main() {
  const chosen = process.argv.slice(2).length > 0 ? process.argv.slice(2) : Object.keys(RUNTIMES);
  const allowMissing = new Set((process.env.RUNTIMES_ALLOW_MISSING ?? "").split(",").filter(Boolean));
  const program = await buildPortable("program");
  const bundles = {
    program: [program],
    exits: [await buildPortable("exits")],
    browser: await buildPortable("browser"),
    worker: await buildPortable("worker"),
  };
  const results = {};
  let failed = false;
  for (const name of chosen) {
    const runtime = RUNTIMES[name];
    if (runtime === undefined) throw new Error(`unknown runtime ${name}; known: ${Object.keys(RUNTIMES).join(" ")}`);
    const started = Date.now();
    const result = await runtime.run(bundles);
    result.seconds = Math.round((Date.now() - started) / 100) / 10;
    results[name] = result;
    if (!result.installed) {
      const accepted = allowMissing.has(name);
      if (!accepted) failed = true;
      console.log(
        `RUNTIME ${name}: NOT INSTALLED (${result.reason})${accepted ? " — accepted by RUNTIMES_ALLOW_MISSING" : ""}`,
      );
      continue;
    }
    const ok = result.failed === 0 && result.exitsByItself !== false;
    if (!ok) failed = true;
    const exit =
      result.exitsByItself === undefined
        ? ""
        : result.exitsByItself
          ? ", ends by itself"
          : `, KEPT ALIVE (${result.exitNote})`;
    console.log(
      `RUNTIME ${name} (${result.version}): ${result.passed} passed, ${result.failed} failed${exit} [${result.seconds} s]`,
    );
    for (const line of result.failures ?? []) console.log(`    ${line}`);
  }
  await writeFile(`${outputDirectory}results.json`, `${JSON.stringify(results, null, 2)}\n`);
  // A runtime accepted as missing is not run here, so its row is not proved here either: reported above.
  const unbacked = await claimsWithoutProof(
    results,
    chosen.filter((name) => !allowMissing.has(name)),
  );
  for (const claim of unbacked) console.log(`docs/runtimes.md claims ${claim}, which this run did not prove`);
  if (unbacked.length > 0) failed = true;
  const accepted = chosen.filter((name) => !results[name].installed && allowMissing.has(name)).length;
  const passed = Object.values(results).filter(
    (result) => result.installed && result.failed === 0 && result.exitsByItself !== false,
  ).length;
  console.log(`runtimes: ${passed} passed, ${chosen.length - passed - accepted} failed, ${accepted} skipped`);
  process.exitCode = failed ? 1 : 0;
}

/**
 * The rows of docs/runtimes.md's table ("| node20 | ... |" with ✓ marks) that this run did not prove:
 * each ✓ in the portable-suite column needs a run with no failure, each ✓ in the ends-by-itself column a
 * program that ended by itself.
 */
async function claimsWithoutProof(results, chosen) {
  const docs = await readFile(`${root}docs/runtimes.md`, "utf8");
  const unbacked = [];
  for (const line of docs.split("\n")) {
    const cells = line.split("|").map((cell) => cell.trim());
    const id = /`([a-z0-9.]+)`/.exec(cells[1] ?? "")?.[1];
    if (id === undefined || !(id in RUNTIMES) || !chosen.includes(id)) continue;
    const result = results[id];
    const [suite, exits] = [cells[3] ?? "", cells[4] ?? ""];
    if (suite.startsWith("✓") && !(result?.installed && result.failed === 0))
      unbacked.push(`${id}: the portable suite`);
    if (exits.startsWith("✓") && result?.exitsByItself !== true) unbacked.push(`${id}: ends by itself`);
  }
  return unbacked;
}

await main();
