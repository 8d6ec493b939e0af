/**
 * `--resume FILE` in process: reading a resume file (a torn last line, records of another input,
 * duplicates), checking the input against it, and appending records that reach the file whole.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import {
  inputHashOf,
  pendingLines,
  ResumeFile,
  type ResumeRecords,
  readResumeRecords,
  WrongResumeFileError,
} from "../../src/cli/resume-file.js";
import { type InputLine, readLine } from "../../src/cli/template.js";

const directory = mkdtempSync(join(tmpdir(), "sluice-resume-"));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

const inputOf = (count: number): InputLine[] =>
  Array.from({ length: count }, (_, index) => readLine(`https://example.test/${index + 1}`, index + 1));

function recordOf(input: InputLine, ok: boolean): string {
  return `${JSON.stringify({ line: input.number, inputHash: inputHashOf(input.line), ok, status: ok ? 200 : 503 })}\n`;
}

const read = (text: string, chunkSize = text.length || 1) => {
  const bytes = Buffer.from(text);
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += chunkSize) chunks.push(bytes.subarray(at, at + chunkSize));
  return readResumeRecords(chunks, "results.jsonl");
};

async function* streamOf(lines: readonly InputLine[]): AsyncGenerator<InputLine> {
  yield* lines;
}

async function collect(lines: AsyncIterable<InputLine>): Promise<number[]> {
  const numbers: number[] = [];
  for await (const line of lines) numbers.push(line.number);
  return numbers;
}

describe("reading a resume file", () => {
  it("a torn last line (a kill mid-write) is ignored, and measured so it can be cut off", async () => {
    const input = inputOf(3);
    const complete = recordOf(input[0] as InputLine, true) + recordOf(input[1] as InputLine, true);
    const torn = recordOf(input[2] as InputLine, true).slice(0, 25);
    const records = await read(complete + torn);
    expect([...records.lines.keys()]).toEqual([1, 2]);
    expect(records.completeBytes).toBe(Buffer.byteLength(complete));
    expect(records.tornBytes).toBe(Buffer.byteLength(torn));
  });

  it("reads the same records whatever the chunks, a torn line included (property)", async () => {
    const input = inputOf(20);
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 19 }), fc.boolean()), { maxLength: 30 }),
        fc.integer({ min: 0, max: 40 }),
        fc.integer({ min: 1, max: 64 }),
        async (entries, tornLength, chunkSize) => {
          const text = entries.map(([index, ok]) => recordOf(input[index] as InputLine, ok)).join("");
          const tail = recordOf(input[0] as InputLine, true).slice(0, tornLength);
          const whole = await read(text);
          const chunked = await read(text + tail, chunkSize);
          expect(chunked.lines).toEqual(whole.lines);
          expect(chunked.completeBytes).toBe(Buffer.byteLength(text));
          expect(chunked.tornBytes).toBe(tail.length);
          for (const [line, state] of chunked.lines) {
            const outcomes = entries.filter(([index]) => index + 1 === line).map(([, ok]) => ok);
            expect(state.succeeded).toBe(outcomes.includes(true));
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  it("duplicate records of one line are fine: a failure then its retry's success, or two successes", async () => {
    const [first, second] = inputOf(2) as [InputLine, InputLine];
    const records = await read(
      recordOf(first, false) + recordOf(second, true) + recordOf(first, true) + recordOf(second, true),
    );
    expect(records.lines.get(1)?.succeeded).toBe(true);
    expect(records.lines.get(2)?.succeeded).toBe(true);
    const failedTwice = await read(recordOf(first, false) + recordOf(first, false));
    expect(failedTwice.lines.get(1)?.succeeded).toBe(false);
  });

  it("two records of one line for two different inputs are refused, naming the file and its line", async () => {
    const [first] = inputOf(1) as [InputLine];
    const other = readLine("https://example.test/other", 1);
    await expect(read(recordOf(first, true) + recordOf(other, true))).rejects.toThrow(
      new WrongResumeFileError(
        "results.jsonl line 2 records input line 1 again, for another input than an earlier record: it mixes the results of two inputs",
      ),
    );
  });

  it.each([
    ["not JSON", "hello\n", /results\.jsonl line 1 is not JSON/],
    ["a results file written without --resume", `${JSON.stringify({ line: 1, ok: true })}\n`, /line 1 is not a result/],
    [
      "a line number that is not one",
      `${JSON.stringify({ line: 0, inputHash: "0123456789abcdef", ok: true })}\n`,
      /line 1 is not a result/,
    ],
  ])("a complete line that is %s is refused", async (_, text, message) => {
    await expect(read(text)).rejects.toThrow(message);
    await expect(read(text)).rejects.toBeInstanceOf(WrongResumeFileError);
  });
});

describe("checking the input against the resume file", () => {
  const input = inputOf(6);
  const records = (text: string): Promise<ResumeRecords> => read(text);

  it("yields only the lines not recorded as succeeded, failures included, then the rest of the input", async () => {
    const [one, two, three, four] = input as [InputLine, InputLine, InputLine, InputLine];
    const file = await records(
      recordOf(one, true) + recordOf(three, false) + recordOf(four, true) + recordOf(two, true),
    );
    const { lines, skipped } = await pendingLines(streamOf(input), file, "results.jsonl");
    expect(skipped).toBe(3);
    expect(await collect(lines)).toEqual([3, 5, 6]);
  });

  it("names the first input line that differs from what the file recorded, before yielding anything", async () => {
    const file = await records(input.map((line) => recordOf(line, true)).join(""));
    const changed = input.map((line) => (line.number === 4 ? readLine("https://example.test/changed", 4) : line));
    await expect(pendingLines(streamOf(changed), file, "results.jsonl")).rejects.toThrow(
      /^results\.jsonl was written for another input: input line 4 \("https:\/\/example\.test\/changed"\)/,
    );
  });

  it("an input shorter than the lines recorded is another input", async () => {
    const file = await records(input.map((line) => recordOf(line, true)).join(""));
    await expect(pendingLines(streamOf(input.slice(0, 4)), file, "results.jsonl")).rejects.toThrow(
      "results.jsonl records results up to input line 6, but the input has only 4 lines: it was written for another input",
    );
  });

  it("an empty resume file skips nothing and reads nothing ahead", async () => {
    let pulled = 0;
    async function* counted(): AsyncGenerator<InputLine> {
      for (const line of input) {
        pulled++;
        yield line;
      }
    }
    const { lines, skipped } = await pendingLines(counted(), await records(""), "results.jsonl");
    expect({ skipped, pulled }).toEqual({ skipped: 0, pulled: 0 });
    expect(await collect(lines)).toEqual([1, 2, 3, 4, 5, 6]);
  });
});

describe("the resume file on disk", () => {
  it("cuts a torn last line off before appending, so every record appended is a line of its own", async () => {
    const path = join(directory, "torn.jsonl");
    const [one, two, three] = inputOf(3) as [InputLine, InputLine, InputLine];
    writeFileSync(path, recordOf(one, true) + recordOf(two, true).slice(0, 30));
    const file = await ResumeFile.open(path);
    expect([...file.records.lines.keys()]).toEqual([1]);
    await Promise.all([file.record(two, { ok: true }), file.record(three, { ok: false })]);
    await file.close();
    const reread = await ResumeFile.open(path);
    expect(reread.records.tornBytes).toBe(0);
    expect(reread.records.lines.get(2)).toEqual({ inputHash: inputHashOf(two.line), succeeded: true });
    expect(reread.records.lines.get(3)?.succeeded).toBe(false);
    await reread.close();
    expect(readFileSync(path, "utf8").split("\n")[1]).toBe(
      JSON.stringify({ line: 2, inputHash: inputHashOf(two.line), ok: true }),
    );
  });

  it("creates a missing file, and every append resolves once its record is in the file", async () => {
    const path = join(directory, "new.jsonl");
    const file = await ResumeFile.open(path);
    const input = inputOf(50);
    // Many at once: they go in a few batches (one write and one sync each), in the order recorded.
    await Promise.all(
      input.map(async (line) => {
        await file.record(line, { ok: true });
        expect(readFileSync(path, "utf8")).toContain(`"line":${line.number},`);
      }),
    );
    await file.close();
    const lines = readFileSync(path, "utf8").trimEnd().split("\n");
    expect(lines.map((line) => (JSON.parse(line) as { line: number }).line)).toEqual(input.map((line) => line.number));
  });
});
