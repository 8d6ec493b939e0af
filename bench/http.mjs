// The headline scenario as a benchmark: 2000 LLM calls against sluice's mock provider, which enforces
// 600 requests and 40,000 tokens per minute and 8 requests at once (token buckets, as OpenAI does), with
// time compressed twentyfold (a "minute" lasts 3 s). For each client setup: the wall time as a percentage of
// the theoretical minimum the server's limits allow (the binding limit's throughput), and how many 429s
// the server had to send, in all and after the first "minute".
//
//   node bench/http.mjs             (after `npm run build`)
//   node bench/http.mjs --runs 1    one run per setup instead of 3 (medians are reported)
//   node bench/http.mjs --style anthropic
//                                   Anthropic's Messages API instead, which limits input and output tokens
//                                   apart (ITPM 40,000, OTPM 8,000), with output the binding limit
//   --minute MS                     a "minute" of MS ms (default 3000); --requests N (default 2000);
//   --processes N                   processes sharing one RedisRateLimiter (default 4);
//   --only TEXT                     only the setups whose name contains TEXT
//   --unlimited                     a server enforcing only the concurrency: the clients' own ceiling
//
// Prompts are long enough that a token limit, not requests per minute, binds.
//
// sluice learns the limits from the headers (nothing told but the concurrency), next to sluice told them.
// The peers cannot learn, so they are told the limits, set up as their READMEs advise for an API with such
// limits: bottleneck with a refilling reservoir per limit (a job's weight is its estimated cost in that
// unit: the same estimate sluice charges up front, input characters / 4 plus max_tokens, which the peers
// cannot settle afterwards) and maxConcurrent; p-queue, which has no weights, with `intervalCap` over a
// `strict` (sliding) `interval` of a minute, the cap being the requests the tightest limit allows at that
// estimate, and `concurrency`. Both retry a 429 the way users do by hand: wait the server's retry-after(-ms),
// queue again.
//
// The Redis rows run the same traffic from --processes child processes, each a limitedFetch over a
// RedisRateLimiter of the same name (a redis-server the bench starts on a free loopback port), against one
// mock server in this process. The row "limits configured in Redis" tells every process the limits; the row
// "limits not told" tells them only the concurrency: limitedFetch learns the limits from the headers into
// the RedisRateLimiter's `limits`, which every process sharing it then admits with.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import Bottleneck from "bottleneck";
import { Redis } from "ioredis";
import PQueue from "p-queue";
import { estimateLlmCost, limitedFetch } from "../dist/http.js";
import { RateLimiter } from "../dist/index.js";
import { RedisRateLimiter } from "../dist/redis.js";
import { startMockServer } from "../dist/testing.js";
import { localRedis } from "../examples/redis-server.mjs";
import { machine, median, table } from "./harness.mjs";

const self = fileURLToPath(import.meta.url);
const option = (name, fallback) => {
  const index = process.argv.indexOf(`--${name}`);
  return index === -1 ? fallback : process.argv[index + 1];
};
const RUNS = Number(option("runs", 3));
const ANTHROPIC = option("style", "openai") === "anthropic";
const MINUTE = Number(option("minute", 3000));
const REQUESTS = Number(option("requests", 2000));
const PROCESSES = Number(option("processes", 4));
const ONLY = option("only", "");
const RPM = 600;
const TPM = 40_000;
const CONCURRENCY = 8;
const ITPM = 40_000;
const OTPM = 8_000;
const MAX_TOKENS = ANTHROPIC ? 40 : 20;
const LATENCY = { min: 10, max: 30 };
const PATH = ANTHROPIC ? "/v1/messages" : "/v1/chat/completions";
// --unlimited: the server enforces only the concurrency, to show how fast the clients themselves can go.
const UNLIMITED = process.argv.includes("--unlimited");
const PROVIDER = {
  ...(UNLIMITED
    ? {}
    : {
        requestsPerMinute: RPM,
        ...(ANTHROPIC ? { inputTokensPerMinute: ITPM, outputTokensPerMinute: OTPM } : { tokensPerMinute: TPM }),
      }),
  concurrency: CONCURRENCY,
  minute: MINUTE,
  latency: LATENCY,
  completionTokens: ANTHROPIC ? { min: 10, max: 40 } : { min: 5, max: 20 },
};
/** The provider's limits, as a client told them holds them. */
const LIMITS = [
  { limit: RPM, interval: MINUTE },
  ...(ANTHROPIC
    ? [
        { limit: ITPM, interval: MINUTE, unit: "input-tokens" },
        { limit: OTPM, interval: MINUTE, unit: "output-tokens" },
      ]
    : [{ limit: TPM, interval: MINUTE, unit: "tokens" }]),
];
const RETRY = { retry: { attempts: 20, nonIdempotent: true } };

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

/** The cost sluice charges a request up front (before settling it), per unit: what a peer is told to charge. */
function estimate(i) {
  const text = body(i);
  const cost = estimateLlmCost({
    url: PATH,
    method: "POST",
    headers: new Headers(),
    body: text,
    json: JSON.parse(text),
  });
  return (unit) => cost[unit ?? "requests"];
}

/** bottleneck, told the limits: one refilling reservoir per limit, the cost in its unit as the job's weight. */
function bottleneckTold(url) {
  // The refill step: bottleneck wants a multiple of 250 ms; 12 steps a "minute" at the default 3 s minute.
  const step = Math.max(250, Math.round(MINUTE / 12 / 250) * 250);
  const limiters = LIMITS.map((config) => ({
    unit: config.unit,
    limiter: new Bottleneck({
      // The concurrency goes on the request limiter, the innermost: a job holds a slot only while it runs.
      maxConcurrent: config.unit === undefined ? CONCURRENCY : null,
      reservoir: config.limit,
      reservoirIncreaseAmount: (config.limit * step) / MINUTE,
      reservoirIncreaseInterval: step,
      reservoirIncreaseMaximum: config.limit,
    }),
  }));
  return (i) => {
    const weightOf = estimate(i);
    // Nested, as bottleneck's chain() would pass one weight to every limiter: tokens outside, requests inside.
    const schedule = (job) =>
      limiters.reduceRight(
        (inner, { unit, limiter }) =>
          () =>
            limiter.schedule({ weight: weightOf(unit) }, inner),
        job,
      )();
    return callWithManualRetry(schedule, url, i);
  };
}

/** p-queue, told the limits: as many requests per (sliding) minute as the tightest limit allows at the estimate. */
function pQueueTold(url) {
  let perMinute = Number.POSITIVE_INFINITY;
  for (let i = 0; i < REQUESTS; i++) {
    const weightOf = estimate(i);
    for (const config of LIMITS) perMinute = Math.min(perMinute, Math.floor(config.limit / weightOf(config.unit)));
  }
  const queue = new PQueue({ concurrency: CONCURRENCY, intervalCap: perMinute, interval: MINUTE, strict: true });
  return (i) => callWithManualRetry((job) => queue.add(job), url, i);
}

const setups = {
  "sluice limitedFetch, limits configured": () =>
    callThrough.bind(undefined, limitedFetch(new RateLimiter({ limits: LIMITS, concurrency: CONCURRENCY }), RETRY)),
  "sluice limitedFetch, limits learned from headers": () =>
    callThrough.bind(undefined, limitedFetch(new RateLimiter({ concurrency: CONCURRENCY }), RETRY)),
  "bottleneck, limits told: reservoir per limit + maxConcurrent": () => bottleneckTold,
  "p-queue, limits told: intervalCap (strict) + concurrency": () => pQueueTold,
  [`${PROCESSES} processes, RedisRateLimiter, limits configured in Redis`]: { redis: "configured" },
  [`${PROCESSES} processes, RedisRateLimiter, limits not told (learned from headers)`]: { redis: "not told" },
};

/** The limiter of one process of a Redis row. */
function redisLimiter(redis, name, mode) {
  return new RedisRateLimiter(redis, {
    name,
    ...(mode === "configured" ? { limits: LIMITS } : {}),
    concurrency: CONCURRENCY,
    // A redis-server started a moment ago: no restart to guard against (the guard would grant nothing for a lease).
    guardRestarts: false,
  });
}

/**
 * A child process of a Redis row: builds its limiter, says "ready", waits for "go <url>", sends its share of
 * the requests (every PROCESSES-th from its index) and prints their statuses as JSON.
 */
async function child({ redisUrl, name, mode, index }) {
  const redis = new Redis(redisUrl);
  await redis.ping();
  const limiter = redisLimiter(redis, name, mode);
  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  process.stdout.write("ready\n");
  const url = (await lines.next()).value.replace(/^go /, "");
  const call = callThrough(limitedFetch(limiter, RETRY), url);
  const mine = [];
  for (let i = index; i < REQUESTS; i += PROCESSES) mine.push(i);
  const statuses = await Promise.all(mine.map(call));
  // Every permit is back: nothing to close but the process.
  process.stdout.write(`${JSON.stringify({ statuses })}\n`, () => process.exit(0));
}

/** Starts the processes of a Redis row; resolves once each has its limiter and its Redis connection. */
async function startProcesses(redisUrl, name, mode) {
  return Promise.all(
    Array.from({ length: PROCESSES }, async (_, index) => {
      const spec = JSON.stringify({ redisUrl, name, mode, index });
      const process_ = spawn(process.execPath, [self, ...process.argv.slice(2), "--child", spec], {
        stdio: ["pipe", "pipe", "inherit"],
      });
      const lines = createInterface({ input: process_.stdout })[Symbol.asyncIterator]();
      const ready = (await lines.next()).value;
      if (ready !== "ready") throw new Error(`child ${index} said ${ready}`);
      const exited = new Promise((resolve) => process_.once("exit", resolve));
      return {
        go: (url) => process_.stdin.write(`go ${url}\n`),
        done: lines.next().then((line) => JSON.parse(line.value).statuses),
        exited,
      };
    }),
  );
}

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
  if (UNLIMITED) return busy / CONCURRENCY;
  return Math.max(beyond(served.length, RPM), byTokens, busy / CONCURRENCY);
}

let redisServer;
let runNumber = 0;

async function measure(name, setup) {
  let server;
  let started;
  let statuses;
  let processes = [];
  if (typeof setup === "function") {
    server = await startMockServer({ ...PROVIDER, seed: 7 });
    const url = `${server.url}${PATH}`;
    const call = setup()(url);
    started = performance.now();
    statuses = await Promise.all(Array.from({ length: REQUESTS }, (_, i) => call(i)));
  } else {
    redisServer ??= await localRedis({ isolated: true });
    processes = await startProcesses(redisServer.url, `bench-http-${runNumber++}`, setup.redis);
    server = await startMockServer({ ...PROVIDER, seed: 7 });
    started = performance.now();
    for (const each of processes) each.go(`${server.url}${PATH}`);
    statuses = (await Promise.all(processes.map((each) => each.done))).flat();
  }
  const wall = performance.now() - started;
  // Nothing of a Redis row's processes may run into the next row.
  await Promise.all(processes.map((each) => each.exited));
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

const childIndex = process.argv.indexOf("--child");
if (childIndex !== -1) {
  await child(JSON.parse(process.argv[childIndex + 1]));
} else {
  console.log(`${machine()}\n`);
  const limits = ANTHROPIC ? `${ITPM} ITPM, ${OTPM} OTPM (Anthropic style)` : `${TPM} TPM`;
  console.log(
    `${REQUESTS} chat completions (max_tokens ${MAX_TOKENS}) against a mock provider enforcing ${RPM} RPM, ${limits}, ` +
      `${CONCURRENCY} concurrent; a "minute" lasts ${MINUTE / 1000} s; latency ${LATENCY.min}-${LATENCY.max} ms; ` +
      `median of ${RUNS} run(s).\n`,
  );
  const rows = [];
  for (const [name, setup] of Object.entries(setups)) {
    if (!name.includes(ONLY)) continue;
    const results = [];
    for (let run = 0; run < RUNS; run++) results.push(await measure(name, setup));
    const wall = median(results.map((result) => result.wall));
    const minimum = median(results.map((result) => result.minimum));
    rows.push({
      client: name,
      "wall (s)": wall / 1000,
      "theoretical minimum (s)": minimum / 1000,
      "% of theoretical throughput": (100 * minimum) / wall,
      "429s (median)": median(results.map((result) => result.status429)),
      "429s (% of requests)": (100 * median(results.map((result) => result.status429))) / REQUESTS,
      "429s after the first minute (% of requests, worst run)":
        (100 * Math.max(...results.map((result) => result.late429))) / REQUESTS,
      "% of throughput, each run": results
        .map((result) => ((100 * result.minimum) / result.wall).toFixed(1))
        .join(" / "),
      "429s, each run": results.map((result) => result.status429).join(" / "),
      "requests/s": (1000 * REQUESTS) / wall,
      completed: Math.min(...results.map((result) => result.completed)),
    });
    console.error(`done: ${name}`);
  }
  console.log(table(rows));
  redisServer?.stop();
}
