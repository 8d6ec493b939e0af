/**
 * `sluice demo` (what `npm start` runs): a mock LLM API with real limits, a few hundred requests through
 * sluice right at those limits with zero 429s, a report, and the same traffic without sluice's limiter
 * for contrast.
 */
import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { Semaphore } from "../core/semaphore.js";
import { startMockServer } from "../testing/mock-server.js";
import type { CommandSpec } from "./command-line.js";
import { EXIT_CODE_HELP, ExitCode } from "./exit-codes.js";
import { runFetchSession } from "./fetch-command.js";
import { checkWritable } from "./files.js";
import { buildLimits } from "./limits.js";
import type { ProgressMode } from "./progress.js";
import { formatDuration, formatNumber, parseRate } from "./rates.js";
import { renderReport } from "./report.js";
import type { DemoSettings } from "./settings.js";

export const DEMO_COMMAND: CommandSpec = {
  name: "demo",
  summary: "see sluice keep a mock LLM API's limits: zero 429s at full speed, and a report",
  usage: ["demo [options]"],
  description: [
    "Starts a local mock LLM API (sluice/testing) that enforces 40 requests and 4000 tokens per 2 s and",
    "8 requests at once, answering 429 beyond that, as providers do. Sends --requests chat completions",
    "through sluice with the same limits, with live progress, writes the HTML report and says how close",
    "to the limits the run came and how many 429s it got. Then sends the same traffic without sluice's",
    "limiter (32 at once, no retries), briefly, for contrast. Loopback only; about 15 seconds.",
  ].join("\n"),
  options: [
    {
      name: "requests",
      short: "n",
      type: "string",
      value: "N",
      description: "requests to send through sluice",
      default: "240",
    },
    {
      name: "report",
      type: "string",
      value: "FILE.html",
      description: "where to write the report",
      default: "sluice-demo-report.html",
    },
    { name: "no-contrast", type: "boolean", description: "skip the run without sluice's limiter" },
    { name: "quiet", short: "q", type: "boolean", description: "no live progress (the results are still printed)" },
    {
      name: "progress-interval",
      type: "string",
      value: "DURATION",
      description: "between progress lines when stderr is not a terminal, at least 1s",
      default: "2s",
    },
  ],
  positionals: "none",
  examples: [
    { command: "sluice demo", explanation: "the whole demo; open sluice-demo-report.html afterwards" },
    { command: "sluice demo -n 100 --report /tmp/demo.html --no-contrast", explanation: "a shorter run" },
  ],
  exitCodes: [
    ["0", "every request succeeded"],
    ["1", "some request failed after its retries"],
    EXIT_CODE_HELP.usage,
    ["3", "the report could not be written, or the mock API could not start"],
    EXIT_CODE_HELP.interrupted,
  ],
};

/** The mock provider's limits; sluice is given exactly the same. */
const WINDOW = "2s";
const REQUESTS_PER_WINDOW = 40;
const TOKENS_PER_WINDOW = 4000;
const SERVER_CONCURRENCY = 8;
const MAX_TOKENS = 32;

export async function demoCommand(settings: DemoSettings, commandLine: string): Promise<ExitCode> {
  const name = DEMO_COMMAND.name;
  const { requests, quiet, progressInterval } = settings;
  const reportPath = resolve(settings.reportPath);
  await checkWritable("report", reportPath);
  const out = process.stdout;

  await using server = await startMockServer({
    requestsPerMinute: REQUESTS_PER_WINDOW,
    tokensPerMinute: TOKENS_PER_WINDOW,
    minute: WINDOW,
    concurrency: SERVER_CONCURRENCY,
    latency: { min: 20, max: 80 },
    completionTokens: { min: 8, max: MAX_TOKENS },
    seed: 7,
  });
  const endpoint = `${server.url}/v1/chat/completions`;
  const body = (index: number) =>
    JSON.stringify({
      model: "mock-1",
      max_tokens: MAX_TOKENS,
      messages: [
        { role: "user", content: `Rate the answer to question ${index} from 1 to 10, with one sentence of reasons.` },
      ],
    });
  const line = (index: number) =>
    JSON.stringify({
      url: endpoint,
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.parse(body(index)),
    });

  out.write(
    `sluice demo: a mock LLM API at ${server.url} allows ${REQUESTS_PER_WINDOW} requests and ${TOKENS_PER_WINDOW} tokens per ${WINDOW}, ` +
      `${SERVER_CONCURRENCY} at once (429 beyond).\n` +
      `  1. ${requests} chat completions through sluice with the same limits:\n` +
      `     sluice fetch --rate ${REQUESTS_PER_WINDOW}/${WINDOW} --rate ${TOKENS_PER_WINDOW}/${WINDOW}:tokens -c ${SERVER_CONCURRENCY} --retry-post\n`,
  );

  const rates = [parseRate(`${REQUESTS_PER_WINDOW}/${WINDOW}`), parseRate(`${TOKENS_PER_WINDOW}/${WINDOW}:tokens`)];
  const limits = await buildLimits({
    concurrency: SERVER_CONCURRENCY,
    concurrencyGiven: true,
    adaptive: undefined,
    rates,
    minInterval: undefined,
    algorithm: "sliding-window",
    redis: undefined,
  });
  const mode: ProgressMode = quiet ? "off" : process.stderr.isTTY ? "terminal" : "lines";
  const result = await runFetchSession({
    settings: {
      inputPath: undefined,
      retries: 4,
      retryDelay: 500,
      retryMaxDelay: 5000,
      timeout: 10_000,
      json: false,
      // Written below, once the contrast run can be shown beside it.
      reportPath: undefined,
      resumePath: undefined,
      quiet: true,
      progressInterval,
    },
    limits,
    headers: new Headers(),
    method: undefined,
    costFields: new Map(),
    retryPost: true,
    maxOutput: 64 * 1024,
    outputPath: "/dev/null",
    commandLine,
    label: name,
    lines: (async function* () {
      for (let index = 1; index <= requests; index++) yield line(index);
    })(),
    total: requests,
    progressMode: mode,
    printSummary: false,
    handleSignals: true,
  });
  await limits.close();
  const statistics = result.statistics;
  const elapsed = statistics.elapsed();
  const peaks = statistics.peaks();
  const seen = server.summary();
  // The fastest the server's buckets allow: a full bucket at once, then the refill rate.
  const window = rates[0]!.interval;
  const ideal = Math.max(0, (requests - REQUESTS_PER_WINDOW) / REQUESTS_PER_WINDOW) * window;
  out.write(
    `     ${statistics.succeeded}/${requests} succeeded in ${formatDuration(elapsed)}` +
      `${ideal > 0 ? ` (the limits allow ${formatDuration(ideal)} at best: ${Math.round((ideal / elapsed) * 100)}% of the possible speed)` : ""}\n` +
      `     busiest ${WINDOW} window: ${formatNumber(peaks[0] ?? 0)}/${REQUESTS_PER_WINDOW} requests, ` +
      `${formatNumber(peaks[1] ?? 0)}/${TOKENS_PER_WINDOW} tokens (estimated); in flight at most ${statistics.maxInFlight}/${SERVER_CONCURRENCY}\n` +
      `     429 answers: ${seen.status429}${seen.status429 === 0 ? " — none" : ""}\n`,
  );
  const writeReport = async (comparison?: { heading: string; text: string }) => {
    await writeFile(
      reportPath,
      renderReport({
        statistics,
        limits: limits.description,
        title: commandLine,
        label: name,
        interrupted: result.interrupted,
        ...(comparison === undefined ? {} : { comparison }),
      }),
    );
    out.write(`  report: ${reportPath}\n`);
  };
  if (result.interrupted) {
    await writeReport();
    return ExitCode.interrupted;
  }

  if (settings.contrast) {
    const count = Math.min(requests, 120);
    out.write(
      `  2. the first ${count} of them again without sluice's limiter (32 at once, no retries, as a plain Promise.all would):\n`,
    );
    const before = server.summary();
    const started = performance.now();
    const cap = new Semaphore(32);
    const statuses = await Promise.all(
      Array.from({ length: count }, (_, index) =>
        cap.run(async () => {
          try {
            const response = await fetch(endpoint, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: body(index + 1),
            });
            await response.arrayBuffer();
            return response.status;
          } catch {
            return 0;
          }
        }),
      ),
    );
    const after = server.summary();
    const refused = after.status429 - before.status429;
    const ok = statuses.filter((status) => status === 200).length;
    const text =
      `${ok}/${count} succeeded, ${refused} answered 429 (${Math.round((refused / count) * 100)}%) in ` +
      `${formatDuration(performance.now() - started)}`;
    out.write(`     ${text} — each one a request to resend, and on a real API a risk to the key.\n`);
    await writeReport({
      heading: "The same traffic without sluice's limiter",
      text: `The first ${count} requests again, 32 at once with no retries, as a plain Promise.all would send them: ${text}.`,
    });
  } else {
    await writeReport();
  }
  return result.exitCode;
}
