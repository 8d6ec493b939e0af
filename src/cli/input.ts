/**
 * Input lines, streamed: the command reads one line when it is ready to admit one job, so a file of
 * any size (or an endless pipe) is processed in flat memory.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type { Readable } from "node:stream";

/**
 * The longest input line read, in UTF-16 code units (about bytes for ASCII). One line names one job;
 * a longer one is almost surely the wrong input (a binary file, a stream without newlines), and keeping
 * it whole would hold it all in memory. Generous for JSON requests carrying a large prompt.
 */
export const MAX_LINE_LENGTH = 16 * 1024 * 1024;

/**
 * Yields the non-blank lines of `stream` (blank lines name no job), split at `\n` with a `\r` before it
 * dropped (`\r\n` files read as `\n` ones). A chunk is read only when the consumer asks for the next line,
 * so nothing is read far ahead of the consumer: memory stays flat for a file of any size.
 * @throws Error when a line is longer than `maxLength`, before reading further.
 */
export async function* readLines(
  stream: Readable,
  maxLength = MAX_LINE_LENGTH,
): AsyncGenerator<string, void, undefined> {
  stream.setEncoding("utf8");
  /** The start of the line not finished yet (across chunks). */
  let partial = "";
  for await (const chunk of stream as AsyncIterable<string>) {
    let start = 0;
    for (let end = chunk.indexOf("\n"); end !== -1; end = chunk.indexOf("\n", start)) {
      let line = partial + chunk.slice(start, end);
      partial = "";
      start = end + 1;
      if (line.endsWith("\r")) line = line.slice(0, -1);
      if (line.length > maxLength) throw tooLong(maxLength);
      if (line.trim() !== "") yield line;
    }
    partial += chunk.slice(start);
    if (partial.length > maxLength) throw tooLong(maxLength);
  }
  if (partial.endsWith("\r")) partial = partial.slice(0, -1);
  if (partial.trim() !== "") yield partial;
}

function tooLong(maxLength: number): Error {
  return new Error(
    `a line is longer than ${maxLength / (1024 * 1024)} MiB; sluice reads one job per line (is this the right input?)`,
  );
}

/** Opens the input: `FILE`, or standard input when `path` is undefined or `-`. */
export function openInput(path: string | undefined): Readable {
  if (path === undefined || path === "-") return process.stdin;
  return createReadStream(path, { highWaterMark: 64 * 1024 });
}

/**
 * Counts the non-blank lines of a regular file in one streaming pass (for the total and the ETA), or
 * returns `undefined` for standard input, pipes and anything that is not a regular file.
 */
export async function countLines(path: string | undefined): Promise<number | undefined> {
  if (path === undefined || path === "-") return undefined;
  const info = await stat(path).catch(() => undefined);
  if (info === undefined || !info.isFile()) return undefined;
  let count = 0;
  let lineHasContent = false;
  for await (const chunk of createReadStream(path, { highWaterMark: 256 * 1024 }) as AsyncIterable<Buffer>) {
    for (let index = 0; index < chunk.length; index++) {
      const byte = chunk[index] as number;
      if (byte === 10) {
        if (lineHasContent) count++;
        lineHasContent = false;
      } else if (byte !== 32 && byte !== 9 && byte !== 13) lineHasContent = true;
    }
  }
  return lineHasContent ? count + 1 : count;
}
