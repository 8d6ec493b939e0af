/**
 * The portable suite in a page: the results land in `window.portableResults` for the runner
 * (test/portable/run.mjs, through playwright-core) to read.
 */
import { portableFiles } from "./files.js";
import { runFiles, type TestResult } from "./harness.js";

const page = globalThis as { portableResults?: TestResult[] | { loadError: string } };

runFiles(portableFiles).then(
  (results) => {
    page.portableResults = results;
  },
  (error: unknown) => {
    page.portableResults = { loadError: String(error) };
  },
);
