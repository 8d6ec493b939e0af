/**
 * `sluice mock`: the mock LLM API of `sluice/testing` on a local port, with the limits, styles and
 * failures its options ask for, until Ctrl-C or SIGTERM. What `sluice fetch` (or any client) can be
 * tried against without a key, a bill or a flaky network.
 */
import { startMockServer } from "../testing/mock-server.js";
import type { CommandSpec } from "./command-line.js";
import { EXIT_CODE_HELP, ExitCode } from "./exit-codes.js";
import { formatNumber } from "./rates.js";
import type { MockSettings } from "./settings.js";

export const MOCK_COMMAND: CommandSpec = {
  name: "mock",
  summary: "start a local mock LLM API that enforces limits (429 beyond them), to try sluice fetch against",
  usage: ["mock [options]"],
  description: [
    "Starts the mock provider of sluice/testing on 127.0.0.1 and prints its URL on stdout, then serves",
    "until Ctrl-C or SIGTERM, and says what it served. POST /v1/chat/completions and /v1/responses",
    "answer like OpenAI, POST /v1/messages like Anthropic (with usage, streamed for stream: true); any",
    "other path answers {ok, path}. Limits are token buckets that start full, as providers enforce",
    "them; a request beyond one gets a 429 with the provider's headers (retry-after, x-ratelimit-*), as",
    "does one beyond --concurrency.",
  ].join("\n"),
  options: [
    {
      name: "port",
      short: "p",
      type: "string",
      value: "PORT",
      description: "port to listen on; 0 takes any free one",
      default: "8429",
    },
    { name: "host", type: "string", value: "HOST", description: "interface to listen on", default: "127.0.0.1" },
    {
      name: "requests-per-minute",
      type: "string",
      value: "N",
      description: "requests admitted per minute (a token bucket of N, refilled continuously)",
      default: "no limit",
    },
    {
      name: "tokens-per-minute",
      type: "string",
      value: "N",
      description: "tokens admitted per minute: a request's body characters / 4, plus its max_tokens",
      default: "no limit",
    },
    {
      name: "minute",
      type: "string",
      value: "DURATION",
      description: "how long a minute of the limits lasts: 1s runs a minute's traffic in a second",
      default: "1m",
    },
    {
      name: "concurrency",
      short: "c",
      type: "string",
      value: "N",
      description: "requests served at once; one more is answered 429",
      default: "no limit",
    },
    {
      name: "latency",
      type: "string",
      value: "DURATION[..DURATION]",
      description: "how long an admitted request takes: fixed (50ms) or drawn from a range (20ms..80ms)",
      default: "0",
    },
    {
      name: "completion-tokens",
      type: "string",
      value: "N[..N]",
      description: "completion tokens a chat request produces (never more than its max_tokens)",
      default: "16",
    },
    {
      name: "api-key",
      type: "string",
      multiple: true,
      value: "KEY",
      description:
        "accept only these API keys (Authorization: Bearer KEY or x-api-key; any other gets 401), each with the limits and quota above of its own",
    },
    { name: "quota-requests", type: "string", value: "N", description: "after N requests served, a quota error" },
    { name: "quota-tokens", type: "string", value: "N", description: "after N tokens served, a quota error" },
    {
      name: "fail",
      type: "string",
      multiple: true,
      value: "KIND=P",
      description: "fail a share P (0 to 1) of requests: server-error (500), overloaded (503/529), reset, hang",
    },
    {
      name: "overload",
      type: "string",
      value: "C[:QUEUE]",
      description:
        "behave like an overloaded service: C requests served at once (each in --latency), QUEUE more waiting (default C), a 503 without Retry-After beyond",
    },
    {
      name: "overload-status",
      type: "string",
      value: "STATUS",
      description: "with --overload: what a refused request gets, 503 or 429 (both without Retry-After)",
      default: "503",
    },
    {
      name: "style",
      type: "string",
      value: "NAME",
      description: "headers and errors of other paths: openai or anthropic",
      default: "openai",
    },
    {
      name: "seed",
      type: "string",
      value: "N",
      description: "seed for latencies, completions and failures",
      default: "1",
    },
  ],
  positionals: "none",
  examples: [
    {
      command: "sluice mock",
      explanation: "a mock API at http://127.0.0.1:8429 without limits; any path answers",
    },
    {
      command: "sluice mock --requests-per-minute 600 --tokens-per-minute 40000 -c 8",
      explanation: "OpenAI-like limits: 10 requests a second, 40000 tokens a minute, 8 at once",
    },
    {
      command: "sluice mock --requests-per-minute 60 --minute 1s --fail overloaded=0.05 --latency 20ms..80ms",
      explanation: "60 requests a second, 5% overloaded answers, 20 to 80 ms each",
    },
    {
      command: "sluice mock --overload 16:16 --latency 20ms",
      explanation: "a service of capacity 16 at 20 ms each, 16 queued, 503 beyond: try sluice fetch -c auto",
    },
  ],
  exitCodes: [
    ["0", "stopped by Ctrl-C (SIGINT) or SIGTERM"],
    EXIT_CODE_HELP.usage,
    ["3", "could not listen on the port (in use, or not allowed)"],
  ],
};

/** Serves until SIGINT or SIGTERM; resolves with the exit code. */
export async function mockCommand(settings: MockSettings): Promise<ExitCode> {
  let server: Awaited<ReturnType<typeof startMockServer>>;
  try {
    server = await startMockServer(settings.server);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === "EADDRINUSE"
        ? `port ${settings.server.port} is in use: give --port N, or --port 0 for any free port`
        : error instanceof Error
          ? error.message
          : String(error);
    process.stderr.write(`sluice mock: cannot listen on ${settings.server.host}:${settings.server.port}: ${why}\n`);
    return ExitCode.failure;
  }
  // The URL alone on stdout, so that a script can read it; what it is on stderr, for people.
  process.stdout.write(`${server.url}\n`);
  process.stderr.write(`sluice mock: ${describeLimits(settings)}; Ctrl-C stops it\n`);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const stop = (received: NodeJS.Signals) => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      resolve(received);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
  const summary = server.summary();
  await server.close();
  const outcomes = Object.entries(summary.outcomes)
    .map(([outcome, count]) => `${outcome} ${count}`)
    .join(", ");
  process.stderr.write(
    `sluice mock: stopped (${signal}) after ${summary.total} ${summary.total === 1 ? "request" : "requests"}` +
      `${outcomes === "" ? "" : `: ${outcomes}`}; ${summary.status429} × 429, at most ${summary.maxInFlight} at once\n`,
  );
  return ExitCode.ok;
}

function describeLimits(settings: MockSettings): string {
  const { concurrency, keys } = settings.server;
  const accounts = keys === undefined ? [] : Object.values(keys);
  const { requestsPerMinute, tokensPerMinute } = accounts[0] ?? settings.server;
  const limits = [
    requestsPerMinute === undefined ? undefined : `${formatNumber(requestsPerMinute)} requests`,
    tokensPerMinute === undefined ? undefined : `${formatNumber(tokensPerMinute)} tokens`,
  ].filter((limit) => limit !== undefined);
  const per =
    (limits.length === 0 ? "no rate limit" : `${limits.join(" and ")} per ${settings.minuteText}`) +
    (keys === undefined ? "" : ` per API key (${accounts.length} accepted)`);
  const atOnce = concurrency === undefined ? "" : `, ${concurrency} at once`;
  const overload = settings.server.overload;
  const overloaded =
    overload === undefined
      ? ""
      : `; overloaded: ${overload.capacity} served at once, ${overload.queue ?? overload.capacity} queued, ${overload.status ?? 503} beyond`;
  return `a mock ${settings.server.style ?? "openai"} API allowing ${per}${atOnce} (429 beyond)${overloaded}`;
}
