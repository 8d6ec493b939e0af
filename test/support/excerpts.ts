/**
 * Code shown in the docs must be an excerpt of an example that a test runs: these compare them line by
 * line, ignoring indentation and blank lines (a page may indent or space a block differently).
 */
export function normaliseCode(text: string): string {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "")
    .join("\n");
}
