/**
 * Input lines, streamed: the command reads one line when it is ready to admit one job, so a file of
 * any size (or an endless pipe) is processed in flat memory.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";

/**
 * Yields the non-blank lines of `stream` (blank lines name no job). readline's async iterator pauses
 * the stream while lines wait to be consumed, so nothing is read far ahead of the consumer.
 */
export async function* readLines(stream: Readable): AsyncGenerator<string, void, undefined> {
  const lines = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
  try {
    for await (const line of lines) if (line.trim() !== "") yield line;
  } finally {
    lines.close();
  }
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
