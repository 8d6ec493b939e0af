// The headline scenario as a benchmark: 1000 LLM calls against sluice's mock provider, which enforces
// 600 requests and 40,000 tokens per minute and 8 requests at once (token buckets, as OpenAI does), with
// time compressed twentyfold (a "minute" lasts 3 s). For each client setup: the wall time as a percentage of
// the theoretical minimum the server's limits allow, and how many 429s the server had to send.
//
//   node bench/http.mjs             (after `npm run build`)
//   node bench/http.mjs --runs 1    one run per setup instead of 3 (medians are reported)
//   node bench/http.mjs --style anthropic
//                                   Anthropic's Messages API instead, which limits input and output tokens
//                                   apart (ITPM 40,000, OTPM 8,000), with output the binding limit
//
// Prompts are long enough that the tokens-per-minute limit, not requests per minute, binds.
//
// Peers are configured as their READMEs suggest for "N per minute, M at once"; neither can express a
// token budget, and both retry a 429 the way users do by hand: wait the server's retry-after-ms, queue again.
import Bottleneck from "bottleneck";
import PQueue from "p-queue";
import { limitedFetch } from "../dist/http.js";
import { RateLimiter } from "../dist/index.js";
import { startMockServer } from "../dist/testing.js";
import { machine, median, table } from "./harness.mjs";

const runsIndex = process.argv.indexOf("--runs");
const RUNS = runsIndex === -1 ? 3 : Number(process.argv[runsIndex + 1]);
const styleIndex = process.argv.indexOf("--style");
const ANTHROPIC = styleIndex !== -1 && process.argv[styleIndex + 1] === "anthropic";
const MINUTE = 3000;
const RPM = 600;
const TPM = 40_000;
const CONCURRENCY = 8;
const REQUESTS = 1000;
const ITPM = 40_000;
const OTPM = 8_000;
const MAX_TOKENS = ANTHROPIC ? 40 : 20;
const LATENCY = { min: 10, max: 30 };
const PATH = ANTHROPIC ? "/v1/messages" : "/v1/chat/completions";
const PROVIDER = {
  requestsPerMinute: RPM,
  ...(ANTHROPIC ? { inputTokensPerMinute: ITPM, outputTokensPerMinute: OTPM } : { tokensPerMinute: TPM }),
  concurrency: CONCURRENCY,
  minute: MINUTE,
  latency: LATENCY,
  completionTokens: ANTHROPIC ? { min: 10, max: 40 } : { min: 5, max: 20 },
};

function body(i) {
  return JSON.stringify({
    model: "mock",
    max_tokens: MAX_TOKENS,
    messages: [
      { role: "user", content: `Item ${i}: is this answer correct? ${"The quick brown fox jumps. ".repeat(9)}` },
    ],
  });
}

/** One call with a plain fetch; on a 429, wait what the server asked and go through `schedule` again. */
async function callWithManualRetry(schedule, url, i) {
  for (;;) {
    const response = await schedule(() =>
      fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: body(i) }),
    );
    await response.arrayBuffer();
    if (response.status !== 429) return response.status;
    // OpenAI sends retry-after-ms; Anthropic only retry-after, in seconds.
    const wait = Number(
      response.headers.get("retry-after-ms") ?? Number(response.headers.get("retry-after") ?? 1) * 1000,
    );
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

/** One call through sluice's fetch, which handles 429s itself. */
function callThrough(fetchLimited, url) {
  return async (i) => {
    const response = await fetchLimited(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: body(i),
    });
    await response.arrayBuffer();
    return response.status;
  };
}

const setups = {
  "sluice limitedFetch, limits configured": (url) => {
    const limiter = new RateLimiter({
      limits: [
        { limit: RPM, interval: MINUTE },
        ...(ANTHROPIC
          ? [
              { limit: ITPM, interval: MINUTE, unit: "input-tokens" },
              { limit: OTPM, interval: MINUTE, unit: "output-tokens" },
            ]
          : [{ limit: TPM, interval: MINUTE, unit: "tokens" }]),
      ],
      concurrency: CONCURRENCY,
    });
    return callThrough(limitedFetch(limiter, { retry: { attempts: 20, nonIdempotent: true } }), url);
  },
  "sluice limitedFetch, limits learned from headers": (url) => {
    const limiter = new RateLimiter({ concurrency: CONCURRENCY });
    return callThrough(limitedFetch(limiter, { retry: { attempts: 20, nonIdempotent: true } }), url);
  },
  "bottleneck minTime + maxConcurrent": (url) => {
    const limiter = new Bottleneck({ maxConcurrent: CONCURRENCY, minTime: MINUTE / RPM });
    return (i) => callWithManualRetry((job) => limiter.schedule(job), url, i);
  },
  "bottleneck reservoir (refilling) + maxConcurrent": (url) => {
    const step = 250;
    const limiter = new Bottleneck({
      maxConcurrent: CONCURRENCY,
      reservoir: RPM,
      reservoirIncreaseAmount: (RPM * step) / MINUTE,
      reservoirIncreaseInterval: step,
      reservoirIncreaseMaximum: RPM,
    });
    return (i) => callWithManualRetry((job) => limiter.schedule(job), url, i);
  },
  "p-queue intervalCap + concurrency": (url) => {
    const queue = new PQueue({ concurrency: CONCURRENCY, intervalCap: RPM, interval: MINUTE });
    return (i) => callWithManualRetry((job) => queue.add(job), url, i);
  },
};

/**
 * A lower bound on the run's duration under the server's limits: each bucket starts full and refills at
 * limit/minute, so the work beyond the burst takes at least (total - burst) / rate; and 8 at a time with
 * the latencies the server drew takes at least sum(latency) / 8.
 */
function theoreticalMinimum(server) {
  const served = server.requests.filter((record) => record.outcome === "ok");
  const sum = (of) => served.reduce((total, record) => total + of(record), 0);
  const busy = sum((record) => record.endedAt - record.startedAt);
  const beyond = (used, limit) => (Math.max(0, used - limit) * MINUTE) / limit;
  const byTokens = ANTHROPIC
    ? Math.max(
        beyond(
          sum((record) => record.inputTokens - record.cacheReadTokens),
          ITPM,
        ),
        beyond(
          sum((record) => record.outputTokens),
          OTPM,
        ),
      )
    : beyond(
        sum((record) => record.inputTokens + record.outputTokens),
        TPM,
      );
  return Math.max(beyond(served.length, RPM), byTokens, busy / CONCURRENCY);
}

async function measure(name, makeCall) {
  const server = await startMockServer({ ...PROVIDER, seed: 7 });
  const url = `${server.url}${PATH}`;
  const call = makeCall(url);
  const started = performance.now();
  const statuses = await Promise.all(Array.from({ length: REQUESTS }, (_, i) => call(i)));
  const wall = performance.now() - started;
  const minimum = theoreticalMinimum(server);
  const summary = server.summary();
  // After the first window: once a client that learns limits from headers has seen them.
  const late429 = server.requests.filter((record) => record.status === 429 && record.arrivedAt >= MINUTE).length;
  await server.close();
  return {
    name,
    wall,
    minimum,
    completed: statuses.filter((status) => status === 200).length,
    status429: summary.status429,
    late429,
  };
}

console.log(`${machine()}\n`);
const limits = ANTHROPIC ? `${ITPM} ITPM, ${OTPM} OTPM (Anthropic style)` : `${TPM} TPM`;
console.log(
  `${REQUESTS} chat completions (max_tokens ${MAX_TOKENS}) against a mock provider enforcing ${RPM} RPM, ${limits}, ` +
    `${CONCURRENCY} concurrent; a "minute" lasts ${MINUTE / 1000} s; latency ${LATENCY.min}-${LATENCY.max} ms; ` +
    `median of ${RUNS} run(s).\n`,
);
const rows = [];
for (const [name, makeCall] of Object.entries(setups)) {
  const results = [];
  for (let run = 0; run < RUNS; run++) results.push(await measure(name, makeCall));
  const wall = median(results.map((result) => result.wall));
  const minimum = median(results.map((result) => result.minimum));
  rows.push({
    client: name,
    "wall (s)": wall / 1000,
    "theoretical minimum (s)": minimum / 1000,
    "% of theoretical throughput": (100 * minimum) / wall,
    "429s (median)": median(results.map((result) => result.status429)),
    "429s (% of requests)": (100 * median(results.map((result) => result.status429))) / REQUESTS,
    "429s after the first minute (%)": (100 * median(results.map((result) => result.late429))) / REQUESTS,
    completed: Math.min(...results.map((result) => result.completed)),
  });
  console.error(`done: ${name}`);
}
console.log(table(rows));
