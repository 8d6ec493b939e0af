/**
 * `--resume FILE`: the results of a run, appended durably as JSON lines, so that a run that died (a
 * crash, kill -9, a deploy, Ctrl-C) can be started again with the same command and skip the lines that
 * already succeeded, without paying for them twice and without losing any.
 *
 * Each record is a result line as `--json` / `--output` write it, with the input line it answers named
 * twice: `line` (its number among the input's non-blank lines) and `inputHash` (a hash of its text). A
 * resume file is therefore tied to its input: given another input, the first line whose hash differs
 * is named, and nothing is sent.
 */
import { createHash } from "node:crypto";
import { type FileHandle, open, stat } from "node:fs/promises";
import { dirname } from "node:path";
import type { InputLine } from "./template.js";

/**
 * The resume file does not belong to this input, or is not a resume file at all: the user named the
 * wrong file (a usage error; nothing was sent).
 */
export class WrongResumeFileError extends Error {
  override readonly name = "WrongResumeFileError";
}

/** What a resume file says about one input line. */
interface LineState {
  readonly inputHash: string;
  /** Whether any record of the line is a success: such a line is never sent again. */
  succeeded: boolean;
}

/** What the records of a resume file say, by input line number. */
export interface ResumeRecords {
  readonly lines: ReadonlyMap<number, Readonly<LineState>>;
  /** The bytes up to the end of the last complete record: a torn last line starts here. */
  readonly completeBytes: number;
  /** The length of a torn last line (no newline: a write cut short by kill -9), 0 when none. */
  readonly tornBytes: number;
}

/** The hash that ties a record to the text of its input line: 16 hex digits of its SHA-256. */
export function inputHashOf(line: string): string {
  return createHash("sha256").update(line).digest("hex").slice(0, 16);
}

const NEWLINE = 0x0a;

/**
 * Reads the records of a resume file's content, chunk by chunk (so a large file is never held whole).
 * A last line without its newline is a record torn by a kill mid-write: it is ignored, and reported in
 * `tornBytes` so the file can be cut back before anything is appended to it. The same line recorded
 * more than once (a failure, then its retry's success) is fine, if each record names the same input.
 *
 * @param name - the file, as the user named it, for messages.
 * @throws WrongResumeFileError for a complete line that is not a record sluice wrote with `--resume`,
 *   or two records of one line that name two different inputs.
 */
export async function readResumeRecords(
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  name: string,
): Promise<ResumeRecords> {
  const lines = new Map<number, LineState>();
  let partial: Buffer[] = [];
  let completeBytes = 0;
  let tornBytes = 0;
  let lineNumber = 0;
  for await (const chunk of chunks) {
    let start = 0;
    for (let end = chunk.indexOf(NEWLINE); end !== -1; end = chunk.indexOf(NEWLINE, start)) {
      const text = Buffer.concat([...partial, chunk.subarray(start, end)]).toString("utf8");
      partial = [];
      lineNumber++;
      completeBytes += tornBytes + (end - start) + 1;
      tornBytes = 0;
      start = end + 1;
      if (text.trim() !== "") addRecord(lines, parseRecord(text, name, lineNumber), name, lineNumber);
    }
    if (start < chunk.length) {
      partial.push(Buffer.from(chunk.subarray(start)));
      tornBytes += chunk.length - start;
    }
  }
  return { lines, completeBytes, tornBytes };
}

function parseRecord(text: string, name: string, lineNumber: number): { line: number; inputHash: string; ok: boolean } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new WrongResumeFileError(
      `${name} line ${lineNumber} is not JSON (${(error as Error).message}): is it a file sluice wrote with --resume?`,
    );
  }
  const record = (typeof value === "object" && value !== null ? value : {}) as Record<string, unknown>;
  const { line, inputHash, ok } = record;
  if (
    typeof line !== "number" ||
    !Number.isSafeInteger(line) ||
    line < 1 ||
    typeof inputHash !== "string" ||
    !/^[0-9a-f]{16}$/.test(inputHash) ||
    typeof ok !== "boolean"
  ) {
    throw new WrongResumeFileError(
      `${name} line ${lineNumber} is not a result sluice wrote with --resume (it needs "line", "inputHash" and "ok"): give a new file, or the one the run wrote`,
    );
  }
  return { line, inputHash, ok };
}

function addRecord(
  lines: Map<number, LineState>,
  record: { line: number; inputHash: string; ok: boolean },
  name: string,
  lineNumber: number,
): void {
  const known = lines.get(record.line);
  if (known === undefined) {
    lines.set(record.line, { inputHash: record.inputHash, succeeded: record.ok });
    return;
  }
  if (known.inputHash !== record.inputHash) {
    throw new WrongResumeFileError(
      `${name} line ${lineNumber} records input line ${record.line} again, for another input than an earlier record: it mixes the results of two inputs`,
    );
  }
  known.succeeded ||= record.ok;
}

/**
 * Checks `input` against the records before anything is sent, and yields only the lines still to do:
 * those with no record, or whose records are all failures (a failed line is retried on resume).
 *
 * The lines up to the last one recorded are read and checked first (those still to do among them are
 * held in memory meanwhile: after a crash, the few that were in flight and the failures); the rest of
 * the input is then streamed as usual.
 *
 * @param onChecked - told, once the input matched, how many lines are skipped as already done.
 * @throws WrongResumeFileError (from the first `next()`, before any line is yielded) naming the file
 *   and the first input line that differs from what the file recorded, or the input's end before the
 *   last line recorded.
 */
export async function pendingLines(
  input: AsyncIterable<InputLine>,
  records: ResumeRecords,
  name: string,
): Promise<{ lines: AsyncIterable<InputLine>; skipped: number }> {
  const iterator = input[Symbol.asyncIterator]();
  let last = 0;
  for (const number of records.lines.keys()) last = Math.max(last, number);
  const pending: InputLine[] = [];
  let skipped = 0;
  let read = 0;
  while (read < last) {
    const next = await iterator.next();
    if (next.done) {
      throw new WrongResumeFileError(
        `${name} records results up to input line ${last}, but the input has only ${read} lines: it was written for another input`,
      );
    }
    read++;
    const line = next.value;
    const recorded = records.lines.get(line.number);
    if (recorded === undefined) {
      pending.push(line);
      continue;
    }
    if (recorded.inputHash !== inputHashOf(line.line)) {
      throw new WrongResumeFileError(
        `${name} was written for another input: input line ${line.number} (${preview(line.line)}) is not the line it recorded; give the input it was made from, or a new file`,
      );
    }
    if (recorded.succeeded) skipped++;
    else pending.push(line);
  }
  async function* lines(): AsyncGenerator<InputLine> {
    // Handed over one by one, so the memory of the lines already run is given back as the run goes.
    while (pending.length > 0) yield pending.shift() as InputLine;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value;
    }
  }
  return { lines: lines(), skipped };
}

function preview(line: string): string {
  const text = JSON.stringify(line);
  return text.length > 60 ? `${text.slice(0, 57)}…"` : text;
}

/**
 * An open resume file: its records, read when it was opened, and appends that are durable when their
 * promise resolves.
 *
 * Appends are group-committed: the records that arrive while one batch is being written and synced
 * (fdatasync) go together in the next write and sync. A record is one complete line written in one
 * write; a kill mid-write can leave only a torn last line, which the next run ignores and cuts off. The
 * records lost to a crash are those not yet synced: their lines run again on resume (at least once,
 * never a recorded success twice).
 */
export class ResumeFile {
  /** The last batch's write and sync, which the next batch waits for (one batch on disk at a time). */
  private writing: Promise<void> = Promise.resolve();
  /** Records waiting for the next batch, and what settles their promises. */
  private queued: string[] = [];
  private queuedBatch: { promise: Promise<void>; settle: (error?: unknown) => void } | undefined;
  /** Set once a write failed: nothing more is appended after a record that may be half written. */
  private failure: unknown;

  private constructor(
    private readonly handle: FileHandle,
    /** The file as the user named it, for messages. */
    readonly name: string,
    readonly records: ResumeRecords,
  ) {}

  /**
   * Opens (or creates) the resume file, reads its records and cuts off a torn last line, so that the
   * records appended next start on a line of their own.
   *
   * @throws WrongResumeFileError when the file is not a resume file; an Error from the file system
   *   when it cannot be read or written.
   */
  static async open(path: string): Promise<ResumeFile> {
    const existed = await stat(path).then(
      () => true,
      () => false,
    );
    const handle = await open(path, "a+");
    try {
      const records = await readResumeRecords(chunksOf(handle), path);
      if (records.tornBytes > 0) {
        await handle.truncate(records.completeBytes);
        await handle.datasync();
      }
      // A new file's name must reach the disk too, or a power cut could lose the file and its records.
      if (!existed) await syncDirectory(dirname(path));
      return new ResumeFile(handle, path, records);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  /**
   * Appends the result of `input` (its fields after `line` and `inputHash`) and resolves once it is on
   * disk. Rejects if it could not be written; every later append then rejects too.
   */
  record(input: InputLine, result: Readonly<Record<string, unknown>>): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    this.queued.push(`${JSON.stringify({ line: input.number, inputHash: inputHashOf(input.line), ...result })}\n`);
    if (this.queuedBatch === undefined) {
      let settle: (error?: unknown) => void = () => {};
      const promise = new Promise<void>((resolve, reject) => {
        settle = (error) => (error === undefined ? resolve() : reject(error));
      });
      this.queuedBatch = { promise, settle };
      this.writing = this.writing.then(() => this.writeBatch());
    }
    return this.queuedBatch.promise;
  }

  private async writeBatch(): Promise<void> {
    const batch = this.queuedBatch as NonNullable<ResumeFile["queuedBatch"]>;
    const data = Buffer.from(this.queued.join(""));
    this.queued = [];
    this.queuedBatch = undefined;
    if (this.failure !== undefined) {
      batch.settle(this.failure);
      return;
    }
    try {
      // A short write (a full disk) is continued, or fails with the reason.
      for (let offset = 0; offset < data.length; ) {
        const { bytesWritten } = await this.handle.write(data, offset);
        offset += bytesWritten;
      }
      await this.handle.datasync();
      batch.settle();
    } catch (error) {
      this.failure = error;
      batch.settle(error);
    }
  }

  /** Waits for the records appended so far, then closes the file. */
  async close(): Promise<void> {
    await this.writing;
    await this.handle.close();
  }
}

async function* chunksOf(handle: FileHandle): AsyncGenerator<Uint8Array> {
  const buffer = Buffer.alloc(256 * 1024);
  for (let position = 0; ; ) {
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
    if (bytesRead === 0) return;
    position += bytesRead;
    yield buffer.subarray(0, bytesRead);
  }
}

/** fsyncs a directory, where the platform allows it (not on Windows): a new entry in it is then durable. */
async function syncDirectory(path: string): Promise<void> {
  try {
    const directory = await open(path, "r");
    try {
      await directory.sync();
    } finally {
      await directory.close();
    }
  } catch {
    // Best effort: the records themselves are synced with every batch.
  }
}
