/**
 * The CLI's pieces against awkward input, in process (from source, no build): option values that are
 * out of range or beyond what a timer can hold, and input lines that name a request fetch cannot send.
 * Each must end as a usage error (exit 2) or as that one line's failure, never as a failed run.
 */
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { parseCommandLine, UsageError } from "../../src/cli/command-line.js";
import { FETCH_COMMAND, prepareRequest } from "../../src/cli/fetch-command.js";
import { readLines } from "../../src/cli/input.js";
import { MOCK_COMMAND } from "../../src/cli/mock-command.js";
import { runProcess } from "../../src/cli/process-job.js";
import { RUN_COMMAND } from "../../src/cli/run-command.js";
import { readFetchSettings, readMockSettings, readRunSettings } from "../../src/cli/settings.js";
import { InputError, parseRecord } from "../../src/cli/template.js";

const runSettings = (...argv: string[]) => readRunSettings(parseCommandLine(RUN_COMMAND, [...argv, "--", "true"]));
const fetchSettings = (...argv: string[]) => readFetchSettings(parseCommandLine(FETCH_COMMAND, argv));
const mockSettings = (...argv: string[]) => readMockSettings(parseCommandLine(MOCK_COMMAND, argv));

function usageErrorOf(action: () => unknown): UsageError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return error as UsageError;
  }
  throw new Error("expected a UsageError");
}

describe("option values", () => {
  it("a negative number is reported as out of range, not as a missing value, naming the option as typed", () => {
    expect(usageErrorOf(() => runSettings("--retries", "-1")).message).toBe(
      '--retries must be an integer from 0 to 1000; got "-1"',
    );
    expect(usageErrorOf(() => runSettings("-qc", "-2")).message).toBe(
      '-c (--concurrency) must be an integer from 1 to 100000 (or unlimited); got "-2"',
    );
  });

  it("-c auto[:MIN-MAX]: bounds are read, checked and refused naming the option as typed", () => {
    expect(fetchSettings("-c", "auto").limits).toMatchObject({ adaptive: { min: 1, max: 64 }, concurrency: 64 });
    expect(fetchSettings("-c", "auto:4-64").limits).toMatchObject({ adaptive: { min: 4, max: 64 }, concurrency: 64 });
    expect(runSettings("--concurrency", "AUTO:2-3").limits.adaptive).toEqual({ min: 2, max: 3 });
    expect(fetchSettings("-c", "12").limits.adaptive).toBeUndefined();
    const refusals: [string, RegExp][] = [
      ["auto:0-4", /^-c \(--concurrency\) auto:MIN-MAX needs MIN >= 1 .*; got "auto:0-4"/],
      ["auto:8-4", /needs MIN <= MAX; got "auto:8-4"/],
      ["auto:1-100001", /needs MAX <= 100000/],
      ["auto:4", /must be auto or auto:MIN-MAX with whole numbers; got "auto:4" \(e.g. auto or auto:4-64\)/],
      ["autox", /must be auto or auto:MIN-MAX/],
      ["auto:1.5-4", /must be auto or auto:MIN-MAX/],
    ];
    for (const [text, message] of refusals)
      expect(usageErrorOf(() => fetchSettings("-c", text)).message).toMatch(message);
  });

  it("sluice mock --overload C[:QUEUE] and --overload-status: read, and refused naming the option", () => {
    expect(mockSettings("--overload", "16").server.overload).toEqual({ capacity: 16, queue: 16, status: 503 });
    expect(mockSettings("--overload", "8:0", "--overload-status", "429").server.overload).toEqual({
      capacity: 8,
      queue: 0,
      status: 429,
    });
    expect(mockSettings().server.overload).toBeUndefined();
    expect(usageErrorOf(() => mockSettings("--overload-status", "429")).message).toBe(
      "--overload-status needs --overload C[:QUEUE]",
    );
    expect(usageErrorOf(() => mockSettings("--overload", "0")).message).toMatch(/^--overload must be C or C:QUEUE/);
    expect(usageErrorOf(() => mockSettings("--overload", "4:x")).message).toMatch(/got "4:x"/);
    expect(usageErrorOf(() => mockSettings("--overload", "4", "--overload-status", "500")).message).toBe(
      '--overload-status must be 503 or 429; got "500"',
    );
  });

  it("integers are decimal digits: hex, exponents and fractions are refused, not read as numbers", () => {
    for (const text of ["0x4", "1e3", "4.0", "0b11", "", " "]) {
      expect(usageErrorOf(() => runSettings("--concurrency", text)).message).toBe(
        `--concurrency must be an integer from 1 to 100000 (or unlimited); got ${JSON.stringify(text)}`,
      );
    }
    for (const read of [() => runSettings("--max-output", "1e3"), () => fetchSettings("--max-output", "1e3")]) {
      expect(usageErrorOf(read).message).toMatch(/^--max-output must be an integer from 0 to 268435456; got "1e3"/);
    }
    expect(runSettings("-c", " 12 ").limits.concurrency).toBe(12);
  });

  it("a value that is not a number still reads as a missing value", () => {
    expect(() => parseCommandLine(RUN_COMMAND, ["--input", "--json", "--", "true"])).toThrow(
      /option --input needs a value/,
    );
  });

  it("--timeout 0 is a usage error, not a run where every job times out at once", () => {
    for (const zero of ["0", "0s", "0ms", "0.0"]) {
      expect(usageErrorOf(() => runSettings("--timeout", zero)).message).toMatch(/--timeout must be longer than 0/);
    }
  });

  it("a rate whose limit is too large to be a number is a usage error naming it", () => {
    const text = `1${"0".repeat(400)}/s`;
    expect(usageErrorOf(() => runSettings("--rate", text)).message).toContain(`rate "${text}"`);
  });
});

describe("a --timeout longer than a Node.js timer can hold", () => {
  it("does not end the job at once (30 days is 30 days, not 1 ms)", async () => {
    const outcome = await runProcess("sleep", ["0.2"], {
      timeout: 30 * 86_400_000,
      signal: new AbortController().signal,
      maxCapture: 1024,
    });
    expect(outcome).toMatchObject({ exitCode: 0, timedOut: false });
  });
});

describe("sluice fetch: a JSON request line fetch cannot send fails that line only", () => {
  const setup = { headers: new Headers(), method: undefined, costFields: new Map<string, string>() };
  const line = (json: unknown) => {
    const text = JSON.stringify(json);
    return { line: text, number: 7, record: parseRecord(text) };
  };

  it.each([
    ["a header name with a space", { url: "http://a.test/", headers: { "bad name": "x" } }, /line 7: .*bad name/],
    ["a header value with a newline", { url: "http://a.test/", headers: { x: "a\nb" } }, /line 7: .*header/],
    ["a method that is not a token", { url: "http://a.test/", method: "GE T" }, /line 7: .*GE T/],
    ["a GET with a body", { url: "http://a.test/", method: "GET", body: { a: 1 } }, /line 7: .*body/],
  ])("%s is an InputError (the job fails as bad input; the run goes on)", (_, json, message) => {
    let thrown: unknown;
    try {
      prepareRequest(line(json), setup);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(InputError);
    expect((thrown as Error).message).toMatch(message);
  });

  it("a --method fetch cannot send is a usage error before anything is read", () => {
    expect(usageErrorOf(() => fetchSettings("-X", "GE T")).message).toMatch(/--method "GE T"/);
  });

  it("an ordinary JSON request line still prepares", () => {
    const job = prepareRequest(line({ url: "http://a.test/x", headers: { "x-a": "1" }, body: { q: 1 } }), setup);
    expect(job.init.method).toBe("POST");
    expect(new Headers(job.init.headers).get("content-type")).toBe("application/json");
  });
});

describe("input lines", () => {
  const read = async (chunks: string[], maxLength?: number) => {
    const lines: string[] = [];
    for await (const line of readLines(Readable.from(chunks.map((chunk) => Buffer.from(chunk))), maxLength)) {
      lines.push(line);
    }
    return lines;
  };

  it("splits at newlines across chunks, drops \\r before them and blank lines, keeps a last line without one", async () => {
    expect(await read(["a\nb", "c\r\n\n  \r\nd\n", "e"])).toEqual(["a", "bc", "d", "e"]);
    // A character split between two chunks is decoded whole.
    const snowman = Buffer.from("☃\n");
    const lines: string[] = [];
    for await (const line of readLines(Readable.from([snowman.subarray(0, 2), snowman.subarray(2)]))) lines.push(line);
    expect(lines).toEqual(["☃"]);
  });

  it("a line longer than the limit stops the reading with an error, without holding the rest", async () => {
    await expect(read(["ok\n", "x".repeat(6), "x".repeat(6), "\nnever\n"], 10)).rejects.toThrow(
      /a line is longer than .* MiB; sluice reads one job per line/,
    );
    const seen: string[] = [];
    const reading = (async () => {
      for await (const line of readLines(Readable.from([Buffer.from(`ok\n${"y".repeat(20)}\nlater\n`)]), 10)) {
        seen.push(line);
      }
    })();
    await expect(reading).rejects.toThrow(/longer than/);
    expect(seen).toEqual(["ok"]);
    expect(await read(["x".repeat(10), "\n"], 10)).toEqual(["x".repeat(10)]);
  });
});
