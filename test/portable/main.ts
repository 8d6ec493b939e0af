/**
 * The portable suite as a program, for Node, Bun and Deno: prints one line per test and a closing
 * "N passed, N failed" line; exits 1 on a failure. On success it does not call exit: the program must
 * end by itself, which also proves that nothing sluice left behind keeps the process alive.
 */
import { portableFiles } from "./files.js";
import { runFiles } from "./harness.js";

const global = globalThis as { navigator?: { userAgent?: string }; process?: { version?: string } };
// Node 20 has no navigator.
const runtime = global.navigator?.userAgent ?? `Node.js/${global.process?.version}`;
const results = await runFiles(portableFiles, (result) => {
  // Every line of the error indented, so run.mjs keeps them all (a property's seed and counterexample
  // are on the lines after the first), up to 30.
  const error = String(result.error).split("\n").slice(0, 30).join("\n     ");
  if (!result.passed) console.log(`FAIL ${result.name}\n     ${error}`);
});
const failed = results.filter((result) => !result.passed).length;
console.log(`portable suite on ${runtime}: ${results.length - failed} passed, ${failed} failed`);
if (failed > 0) {
  const exits = globalThis as { Deno?: { exit(code: number): never }; process?: { exit(code: number): never } };
  (exits.Deno ?? exits.process)?.exit(1);
}
