/**
 * The CLI's pieces in process: rate strings, the argument parser, templates, the run's meters, and the
 * job loop's promise to read no further ahead than it can start.
 */
import { execFileSync } from "node:child_process";
import fc from "fast-check";
import { Semaphore } from "sluice";
import { describe, expect, it } from "vitest";
import { type CommandSpec, formatHelp, parseCommandLine, UsageError } from "../../src/cli/command-line.js";
import { type JobHandler, JobRunner } from "../../src/cli/job-runner.js";
import { parseRate } from "../../src/cli/rates.js";
import { RUN_COMMAND } from "../../src/cli/run-command.js";
import {
  BucketLevel,
  LatencyHistogram,
  PerKeyMeters,
  RunStatistics,
  Timeline,
  TrailingWindow,
} from "../../src/cli/statistics.js";
import { CommandTemplate, type InputLine, parseRecord, quoteForShell } from "../../src/cli/template.js";

describe("rate strings", () => {
  it.each([
    ["10/s", 10, 1000, "requests"],
    ["600/min", 600, 60_000, "requests"],
    ["100/5s", 100, 5000, "requests"],
    ["40000/min:tokens", 40_000, 60_000, "tokens"],
    ["2.5/250ms", 2.5, 250, "requests"],
    ["1/1h:jobs", 1, 3_600_000, "jobs"],
  ])("%s is %d per %d ms of %s", (text, limit, interval, unit) => {
    expect(parseRate(text)).toMatchObject({ limit, interval, unit });
  });

  it.each(["10", "10/", "/s", "0/s", "10/0s", "10/parsec", "ten/s", "10/s:", "10/s:2x"])(
    "refuses %j, naming it",
    (text) => {
      expect(() => parseRate(text)).toThrow(new RegExp(`rate ${JSON.stringify(text).replace(/[/]/g, "\\/")}`));
    },
  );

  it("reads back any LIMIT/INTERVALms:UNIT it is given", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1e6 }),
        fc.integer({ min: 1, max: 1e7 }),
        fc.constantFrom("requests", "tokens", "x_y"),
        (limit, ms, unit) => {
          expect(parseRate(`${limit}/${ms}ms:${unit}`)).toMatchObject({ limit, interval: ms, unit });
        },
      ),
    );
  });
});

describe("the argument parser", () => {
  it("gives the job command everything from its first word, the job's own options included", () => {
    const parsed = parseCommandLine(RUN_COMMAND, ["-c4", "--rate=10/s", "-qr", "5/s", "grep", "-n", "--color", "{}"]);
    expect(parsed.values["concurrency"]).toBe("4");
    expect(parsed.values["rate"]).toEqual(["10/s", "5/s"]);
    expect(parsed.values["quiet"]).toBe(true);
    expect(parsed.command).toEqual(["grep", "-n", "--color", "{}"]);
  });

  it("splits at -- even before a word that looks like an option", () => {
    const parsed = parseCommandLine(RUN_COMMAND, ["--json", "--", "--weird-program", "{}"]);
    expect(parsed.command).toEqual(["--weird-program", "{}"]);
  });

  it("names the unknown option and suggests the close one", () => {
    let error: unknown;
    try {
      parseCommandLine(RUN_COMMAND, ["--retires", "3", "--", "x"]);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(UsageError);
    expect(error).toMatchObject({ message: "unknown option --retires (did you mean --retries?)", command: "run" });
  });

  it("documents every option and shows examples in help", () => {
    const help = formatHelp(RUN_COMMAND);
    for (const option of RUN_COMMAND.options) expect(help).toContain(`--${option.name}`);
    expect(help).toMatch(/Examples:\n {2}\S/);
  });

  it("refuses positional arguments where a command takes none", () => {
    const spec: CommandSpec = { ...RUN_COMMAND, name: "x", positionals: "none" };
    expect(() => parseCommandLine(spec, ["stray"])).toThrow(/unexpected argument "stray"/);
  });
});

describe("job templates", () => {
  const line = (text: string, number = 1): InputLine => ({ line: text, number, record: parseRecord(text) });

  it("fills {}, {#} and JSON fields (dotted paths, non-strings as JSON)", () => {
    const template = new CommandTemplate(["cmd", "--id={#}", "{user.name}", "{tags}", "raw={}"]);
    const input = line('{"user":{"name":"ada"},"tags":["a","b"]}', 7);
    expect(template.expand(input)).toEqual({
      file: "cmd",
      args: ["--id=7", "ada", '["a","b"]', 'raw={"user":{"name":"ada"},"tags":["a","b"]}'],
    });
    expect(template.fields).toEqual(["user.name", "tags"]);
  });

  it("appends the line when there is no placeholder", () => {
    expect(new CommandTemplate(["echo", "x"]).expand(line("a b"))).toEqual({ file: "echo", args: ["x", "a b"] });
  });

  it("quotes for the shell so that any value reaches the program unchanged", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: "binary", maxLength: 40 }).filter((value) => !value.includes("\0")),
        (value) => {
          const output = execFileSync("/bin/sh", ["-c", `printf '%s' ${quoteForShell(value)}`], { encoding: "utf8" });
          expect(output).toBe(value);
        },
      ),
      { numRuns: 40 },
    );
  });
});

describe("the run's meters", () => {
  const starts = fc
    .array(fc.tuple(fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 0, max: 5 })), { maxLength: 60 })
    .map((list) => list.sort((a, b) => a[0] - b[0]));

  it("TrailingWindow's peak is the most cost any window of the interval held (less the lag tolerance)", () => {
    fc.assert(
      fc.property(starts, fc.integer({ min: 10, max: 2000 }), (list, interval) => {
        const window = new TrailingWindow(interval);
        for (const [at, cost] of list) window.add(at, cost);
        let brute = 0;
        for (const [start] of list) {
          let sum = 0;
          for (const [at, cost] of list) if (at >= start && at < start + interval - window.tolerance) sum += cost;
          brute = Math.max(brute, sum);
        }
        expect(window.peak).toBe(brute);
      }),
    );
  });

  it("BucketLevel's peak is the largest cost in any span beyond what the rate refills in it", () => {
    fc.assert(
      fc.property(
        starts,
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 10, max: 2000 }),
        (list, limit, interval) => {
          const bucket = new BucketLevel(limit, interval);
          for (const [at, cost] of list) bucket.add(at, cost);
          const tolerance = Math.min(5, interval / 100);
          let brute = 0;
          for (let i = 0; i < list.length; i++) {
            let sum = 0;
            for (let j = i; j < list.length; j++) {
              sum += (list[j] as [number, number])[1];
              const span = (list[j] as [number, number])[0] - (list[i] as [number, number])[0];
              brute = Math.max(brute, sum - (limit / interval) * (span + tolerance * (j - i === 0 ? 0 : 1)));
            }
          }
          // The bucket drains with the tolerance once per start, the brute force once per span: compare
          // against the exact value with no tolerance as an upper bound and the tolerant one as a lower.
          expect(bucket.peak).toBeLessThanOrEqual(
            Math.max(brute, 0) + 1e-9 + list.length * (limit / interval) * tolerance,
          );
          expect(bucket.peak).toBeGreaterThanOrEqual(
            Math.max(0, brute - list.length * (limit / interval) * tolerance) - 1e-9,
          );
        },
      ),
    );
  });

  it("Timeline keeps at most maxBins bins and loses no start when it merges", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 1e6 }), { maxLength: 200 }), (times) => {
        const timeline = new Timeline(0, 16);
        for (const at of times.sort((a, b) => a - b)) timeline.binAt(at, 1).starts++;
        expect(timeline.bins.length).toBeLessThanOrEqual(16);
        expect(timeline.bins.reduce((sum, bin) => sum + bin.starts, 0)).toBe(times.length);
      }),
    );
  });

  it("LatencyHistogram's quantiles are upper bounds within one bucket (26%) of the exact ones", () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0.2, max: 1e7, noNaN: true }), { minLength: 1, maxLength: 200 }),
        fc.double({ min: 0.01, max: 1, noNaN: true }),
        (values, q) => {
          const histogram = new LatencyHistogram();
          for (const value of values) histogram.add(value);
          const sorted = [...values].sort((a, b) => a - b);
          const exact = sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] as number;
          const estimate = histogram.quantile(q);
          expect(estimate).toBeGreaterThanOrEqual(exact * (1 - 1e-9));
          expect(estimate).toBeLessThanOrEqual(exact * 10 ** 0.1 * (1 + 1e-9));
        },
      ),
    );
  });

  it("counts a start at the limiter's grant time when the permit says, never before the previous start or after now", () => {
    let now = 1_000;
    const statistics = new RunStatistics([parseRate("2/s")], "sliding-window", () => now);
    now = 1_010; // granted at 1,000 (0 ms into the run), seen by the caller 10 ms later
    statistics.attemptStarted({ requests: 1 }, 1_000);
    now = 2_000; // granted at 2,000 exactly (the window of 1 s has moved on), seen at once
    statistics.attemptStarted({ requests: 1 }, 2_000);
    expect(statistics.lastStartAt).toBe(1_000);
    // Seen at the times the caller got round to them (10 ms late for the first), the two would fall in one
    // window of 1 s; at the grant times they do not.
    expect(statistics.windows[0]?.current(1_000)).toBe(1);
    now = 2_100;
    statistics.attemptStarted({ requests: 1 }, 1_500); // before the previous start: clamped to it
    expect(statistics.lastStartAt).toBe(1_000);
    statistics.attemptStarted({ requests: 1 }, 9_999); // after now: clamped to now
    expect(statistics.lastStartAt).toBe(1_100);
  });

  it("counts in flight and failures by category without growing per job", () => {
    const statistics = new RunStatistics([parseRate("5/s")]);
    for (let index = 0; index < 1000; index++) {
      statistics.attemptStarted({ requests: 1 });
      statistics.attemptEnded(10);
      statistics.jobFinished(index % 2 === 0 ? undefined : "exit 1");
    }
    expect(statistics).toMatchObject({ finished: 1000, succeeded: 500, failed: 500, inFlight: 0, maxInFlight: 1 });
    expect([...statistics.failures]).toEqual([["exit 1", 500]]);
  });
});

describe("the meters of --rate-per-key", () => {
  it("read the most one key started in any window, and keep only the keys of the last interval", () => {
    const meters = new PerKeyMeters([parseRate("3/s")], "sliding-window");
    // Key A: 3 starts within a second, then 3 more a second later; B: 2; then 10,000 keys once each.
    for (const at of [0, 10, 20, 1100, 1110, 1120]) meters.add("A", at, { requests: 1 });
    for (const at of [5, 15]) meters.add("B", at, { requests: 1 });
    expect(meters.peaks).toEqual([3]);
    for (let index = 0; index < 10_000; index++) meters.add(`key-${index}`, 2000 + index, { requests: 1 });
    expect(meters.peaks).toEqual([3]);
    // About the keys of the last second (and those since the last sweep), not all 10,002.
    expect(meters.size).toBeLessThanOrEqual(1001 + 1024 + 2);
    meters.add("A", 12_000, { requests: 1 });
    meters.add("A", 12_001, { requests: 1 });
    meters.add("A", 12_002, { requests: 1 });
    meters.add("A", 12_003, { requests: 1 });
    expect(meters.peaks).toEqual([4]);
  });
});

describe("the job loop", () => {
  /** A handler whose attempts finish when the test says so. */
  function controlled() {
    const pending: (() => void)[] = [];
    const finished: number[] = [];
    const handler: JobHandler<number, string> = {
      prepare: (input) => input.number,
      cost: () => ({}),
      attempt: () => new Promise<string>((resolve) => pending.push(() => resolve("ok"))),
      classify: () => ({ failure: undefined, retryable: false }),
      finished: (result) => {
        finished.push(result.input.number);
      },
    };
    return { handler, pending, finished };
  }

  async function* numbered(count: number, pulled: { count: number }): AsyncGenerator<InputLine> {
    for (let number = 1; number <= count; number++) {
      pulled.count++;
      yield { line: String(number), number, record: undefined };
    }
  }

  const tick = () => new Promise((resolve) => setImmediate(resolve));

  it("reads a line only once the previous one was admitted: at most one line waits", async () => {
    const { handler, pending, finished } = controlled();
    const semaphore = new Semaphore(3);
    const statistics = new RunStatistics([]);
    const runner = new JobRunner({
      handler,
      admission: semaphore,
      statistics,
      retries: 0,
      retryDelay: 0,
      retryMaxDelay: 0,
    });
    const pulled = { count: 0 };
    const done = runner.run(numbered(1000, pulled));
    for (let round = 0; round < 50; round++) {
      await tick();
      // Running (admitted) + the one line waiting for admission, never more.
      expect(pulled.count).toBeLessThanOrEqual(statistics.finished + semaphore.inUse + 1);
      pending.shift()?.();
    }
    runner.stopAdmitting("test");
    while (pending.length > 0) {
      pending.shift()?.();
      await tick();
    }
    await done;
    expect(statistics.notStarted).toBe(1);
    expect(statistics.finished).toBe(finished.length);
    expect(pulled.count).toBe(statistics.finished + 1);
  });

  it("with readAhead, reads ahead of admission but never more than readAhead lines not over; each attempt asks with its key", async () => {
    const { handler, pending } = controlled();
    const semaphore = new Semaphore(2);
    const keys: (string | undefined)[] = [];
    const statistics = new RunStatistics([]);
    const runner = new JobRunner({
      handler,
      admission: {
        acquire: ({ signal, key }) => {
          keys.push(key);
          return semaphore.acquire({ signal });
        },
      },
      statistics,
      retries: 0,
      retryDelay: 0,
      retryMaxDelay: 0,
      keyOf: (input) => (input.number % 2 === 0 ? "even" : "odd"),
      readAhead: 10,
    });
    const pulled = { count: 0 };
    const done = runner.run(numbered(100, pulled));
    for (let round = 0; round < 5; round++) await tick();
    // Two admitted, eight read and waiting: ten lines, not one more.
    expect([pulled.count, semaphore.inUse]).toEqual([10, 2]);
    for (let round = 0; round < 40; round++) {
      pending.shift()?.();
      await tick();
      expect(pulled.count - statistics.finished).toBeLessThanOrEqual(10);
    }
    while (statistics.finished < 100) {
      pending.shift()?.();
      await tick();
    }
    await done;
    expect(keys.slice(0, 4)).toEqual(["odd", "even", "odd", "even"]);
  });

  it("after stopAdmitting, running jobs still finish and nothing new starts", async () => {
    const { handler, pending, finished } = controlled();
    const statistics = new RunStatistics([]);
    const runner = new JobRunner({
      handler,
      admission: new Semaphore(2),
      statistics,
      retries: 0,
      retryDelay: 0,
      retryMaxDelay: 0,
    });
    const done = runner.run(numbered(10, { count: 0 }));
    await tick();
    expect(pending).toHaveLength(2);
    runner.stopAdmitting("test");
    await tick();
    for (const finish of pending.splice(0)) finish();
    await done;
    expect(finished.sort()).toEqual([1, 2]);
    expect(statistics.attemptsStarted).toBe(2);
    expect(runner.stopped).toBe(true);
  });
});
