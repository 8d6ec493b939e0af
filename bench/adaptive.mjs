// Adaptive concurrency against a service whose capacity nobody told the client (issue 18): sluice's
// mock server in its overloaded mode — C requests served at once in 20 ms each, C more queued (latency
// grows with the queue), 503 without Retry-After beyond that — in a child process, so its timing is not
// disturbed by the client's event loop. The client is `limitedFetch` with far more demand than C
// (256 callers in a loop), under:
//   - static limits: the best one (C, chosen knowing it), a too-low one (C / 4), a too-high one (4 × C)
//     with the default window under it ("backoff"), and the same without it (`concurrency: false`);
//   - `concurrency: "auto"` with each algorithm (vegas — the default —, gradient, aimd).
// Three scenarios: steady (C = 16), a drop (C 16 -> 8 at a third of the run), a rise (C 16 -> 32 at a third).
// Each row: throughput as a % of the optimum (C / 20 ms, per phase), refused attempts, the server-side
// p99 latency as a multiple of the unloaded latency (the median of 30 requests sent one at a time before
// the run) — for a drop or a rise also over the requests that arrived from 2 s after the change, when
// the issue wants its bounds back —, the limit's mean and range over the last half of the run (after the change), and for the
// changes how long until the throughput (in 500 ms bins) is back to 90% of the new optimum, and until the
// limit is within ±20% of the new C for a second.
//
//   node bench/adaptive.mjs            (after `npm run build`) 20 s per run, as the issue asks
//   node bench/adaptive.mjs --quick    4 s per run
//   node bench/adaptive.mjs --only steady,drop    some scenarios
//   node bench/adaptive.mjs --clients vegas,best  some clients (rows whose name contains a word)
//   ADAPTIVE_TRACE=/tmp/trace node bench/adaptive.mjs   also writes each adaptive run's changes of the
//     limit (when, the sample that moved it, the algorithm's estimates) to /tmp/trace-ALGORITHM-SCENARIO.json
//   node bench/adaptive.mjs --tail     also the service's p95 and the share of calls over 1.25x and 1.5x
//     the unloaded latency (what a p99 is made of)
//   node bench/adaptive.mjs --static 17,18    more static limits (no window), e.g. one or two over C
//   ADAPTIVE_COMPARE=/tmp/old.mjs node bench/adaptive.mjs   also a row for that module's `vegas()` (another
//     version, bundled with esbuild), to compare two versions in the same minutes of a loaded machine
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { limitedFetch } from "../dist/http.js";
import { AdaptiveLimiter, Semaphore } from "../dist/index.js";
import { startMockServer } from "../dist/testing.js";
import { machine, quantile, table } from "./harness.mjs";

const SERVICE_MS = 20;
const C = 16;
const CALLERS = 256;
const UNLOADED = 30;
/** How long after a change of C the issue allows before its bounds hold again ("within 2 s"). */
const SETTLE_MS = 2_000;

if (process.argv[2] === "--server") {
  // The child: the overloaded service; reads "capacity N" and "stats" on stdin.
  const server = await startMockServer({ latency: SERVICE_MS, overload: { capacity: C, queue: C } });
  console.log(server.url);
  let changedAt;
  for await (const line of createInterface({ input: process.stdin })) {
    const [command, value] = line.split(" ");
    if (command === "capacity") {
      server.overload.capacity = Number(value);
      // The records' clock (ms since the server started), for "p99 from 2 s after the change".
      changedAt = server.requests.at(-1)?.arrivedAt ?? 0;
    }
    if (command === "stats") {
      // The first UNLOADED requests came one at a time: their median is the unloaded latency here.
      const latency = (record) => record.endedAt - record.arrivedAt;
      const ok = server.requests.filter((record) => record.outcome === "ok");
      const unloaded = quantile(ok.slice(0, UNLOADED).map(latency), 0.5);
      const loaded = ok.slice(UNLOADED).map(latency);
      const p99 = quantile(loaded, 0.99);
      const over = (factor) => loaded.filter((value) => value > factor * unloaded).length / Math.max(1, loaded.length);
      const tail = { p90: quantile(loaded, 0.9), p95: quantile(loaded, 0.95), over125: over(1.25), over15: over(1.5) };
      const settled = ok
        .slice(UNLOADED)
        .filter((record) => record.arrivedAt >= changedAt + SETTLE_MS)
        .map(latency);
      const p99Settled = changedAt === undefined ? undefined : quantile(settled, 0.99);
      console.log(JSON.stringify({ p99, unloaded, tail, p99Settled }));
    }
    if (command === "quit") break;
  }
  await server.close();
  process.exit(0);
}

const quick = process.argv.includes("--quick");
const onlyIndex = process.argv.indexOf("--only");
const only = onlyIndex === -1 ? undefined : process.argv[onlyIndex + 1].split(",");
const clientsIndex = process.argv.indexOf("--clients");
const clients = clientsIndex === -1 ? undefined : process.argv[clientsIndex + 1].split(",");
const staticIndex = process.argv.indexOf("--static");
const extraStatic = staticIndex === -1 ? [] : process.argv[staticIndex + 1].split(",").map(Number);
const showTail = process.argv.includes("--tail");
const compare = process.env.ADAPTIVE_COMPARE && (await import(process.env.ADAPTIVE_COMPARE)).vegas;
const RUN_MS = quick ? 4_000 : 20_000;
const BIN_MS = 500;

/** Starts the service in a child process; returns its URL and a way to send it commands. */
async function startService() {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), "--server"], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const url = (await lines.next()).value;
  return {
    url,
    send: (line) => child.stdin.write(`${line}\n`),
    async ask(line) {
      child.stdin.write(`${line}\n`);
      return JSON.parse((await lines.next()).value);
    },
    async close() {
      child.stdin.write("quit\n");
      await new Promise((resolve) => child.once("exit", resolve));
    },
  };
}

/** The client setups: a name, and the limitedFetch options over a Semaphore of `ceiling`. */
const SETUPS = [
  { name: `static ${C} (best)`, ceiling: C, concurrency: "backoff" },
  { name: `static ${C / 4} (too low)`, ceiling: C / 4, concurrency: "backoff" },
  { name: `static ${C * 4} (too high)`, ceiling: C * 4, concurrency: "backoff" },
  { name: `static ${C * 4}, window off`, ceiling: C * 4, concurrency: false },
  { name: "auto (vegas, the default)", ceiling: 1000, algorithm: "vegas" },
  { name: "auto (gradient)", ceiling: 1000, algorithm: "gradient" },
  { name: "auto (aimd)", ceiling: 1000, algorithm: "aimd" },
  // ADAPTIVE_COMPARE=file.mjs: that module's `vegas()` too (say, the last release's, built with esbuild), to
  // compare two versions in the same minutes of a machine whose load moves.
  ...(compare === undefined ? [] : [{ name: "auto (vegas from ADAPTIVE_COMPARE)", ceiling: 1000, algorithm: compare }]),
  // `--static 17,18`: more static limits (no window under them), to see what a limit a call or two over C costs.
  ...extraStatic.map((limit) => ({ name: `static ${limit} (extra)`, ceiling: limit, concurrency: false })),
];

const SCENARIOS = {
  steady: { capacities: [[0, C]] },
  drop: {
    capacities: [
      [0, C],
      [1 / 3, C / 2],
    ],
  },
  rise: {
    capacities: [
      [0, C],
      [1 / 3, C * 2],
    ],
  },
};

async function run(setup, scenario) {
  const service = await startService();
  const window =
    setup.algorithm === undefined
      ? setup.concurrency
      : new AdaptiveLimiter({
          max: setup.ceiling,
          algorithm: typeof setup.algorithm === "function" ? setup.algorithm() : setup.algorithm,
        });
  const trace = [];
  const traceStart = performance.now();
  if (process.env.ADAPTIVE_TRACE && window instanceof AdaptiveLimiter) {
    window.on("limit", ({ limit, sample }) =>
      trace.push({
        at: Math.round(performance.now() - traceStart),
        limit,
        sample,
        estimates: window.statistics().estimates,
      }),
    );
  }
  for (let i = 0; i < UNLOADED; i++) await (await globalThis.fetch(`${service.url}/unloaded`)).arrayBuffer();
  const fetch = limitedFetch(new Semaphore(setup.ceiling), {
    concurrency: window,
    retry: { attempts: 20, maxDelay: "2s" },
  });
  const start = performance.now();
  const end = start + RUN_MS;
  const bins = new Array(Math.ceil(RUN_MS / BIN_MS)).fill(0);
  const limits = [];
  const sampler = setInterval(() => {
    const concurrency = fetch.statistics().concurrency;
    limits.push([performance.now() - start, Math.min(setup.ceiling, concurrency ?? setup.ceiling)]);
  }, 100);
  const changes = SCENARIOS[scenario].capacities
    .slice(1)
    .map(([at, capacity]) => setTimeout(() => service.send(`capacity ${capacity}`), at * RUN_MS));
  let served = 0;
  const caller = async () => {
    while (performance.now() < end) {
      const response = await fetch(`${service.url}/work`).catch(() => undefined);
      if (response === undefined) continue;
      await response.arrayBuffer();
      const at = performance.now() - start;
      if (response.status === 200 && at < RUN_MS) {
        served++;
        bins[Math.floor(at / BIN_MS)]++;
      }
    }
  };
  await Promise.all(Array.from({ length: CALLERS }, caller));
  clearInterval(sampler);
  for (const change of changes) clearTimeout(change);
  const statistics = fetch.statistics();
  const { p99, unloaded, tail, p99Settled } = await service.ask("stats");
  await service.close();
  if (process.env.ADAPTIVE_TRACE && trace.length > 0) {
    const { writeFileSync } = await import("node:fs");
    const algorithm = typeof setup.algorithm === "function" ? "compare" : setup.algorithm;
    writeFileSync(`${process.env.ADAPTIVE_TRACE}-${algorithm}-${scenario}.json`, JSON.stringify(trace));
  }
  return { served, bins, limits, statistics, p99, unloaded, tail, p99Settled };
}

/** The optimum served per bin at time `at` (ms from start). */
function optimumAt(scenario, at) {
  let capacity = C;
  for (const [from, value] of SCENARIOS[scenario].capacities) if (at >= from * RUN_MS) capacity = value;
  return (capacity / SERVICE_MS) * BIN_MS;
}

/** Seconds from the change until the limit is within ±20% of the new C (and stays there for 1 s). */
function convergence(scenario, limits) {
  const changes = SCENARIOS[scenario].capacities;
  if (changes.length < 2) return "";
  const [at, capacity] = changes[1];
  const near = ([, value]) => Math.abs(value - capacity) <= 0.2 * capacity;
  const after = limits.filter(([time]) => time >= at * RUN_MS);
  for (let i = 0; i + 10 < after.length; i++) {
    if (after.slice(i, i + 10).every(near)) return `${((after[i][0] - at * RUN_MS) / 1000).toFixed(1)} s`;
  }
  return "never";
}

/** Seconds from the change until a bin reaches 90% of the new optimum and the next one does too. */
function recovery(scenario, bins) {
  const changes = SCENARIOS[scenario].capacities;
  if (changes.length < 2) return "";
  const from = Math.ceil((changes[1][0] * RUN_MS) / BIN_MS);
  for (let i = from; i + 1 < bins.length; i++) {
    const optimum = optimumAt(scenario, i * BIN_MS);
    if (bins[i] >= 0.9 * optimum && bins[i + 1] >= 0.9 * optimum) return `${((i - from) * BIN_MS) / 1000} s`;
  }
  return "never";
}

function describeLimits(limits, scenario) {
  const last = SCENARIOS[scenario].capacities.at(-1);
  const from = Math.max(last[0] * RUN_MS, RUN_MS / 2);
  const values = limits.filter(([at]) => at >= from).map(([, value]) => value);
  if (values.length === 0) return "";
  const mean = values.reduce((sum, value) => sum + value, 0) / values.length;
  return `${mean.toFixed(1)} (${Math.min(...values).toFixed(0)}–${Math.max(...values).toFixed(0)})`;
}

console.log(`## Adaptive concurrency (bench/adaptive.mjs${quick ? " --quick" : ""})\n`);
console.log(
  `${machine()}; runs of ${RUN_MS / 1000} s; service: C = ${C} at once, ${SERVICE_MS} ms each, queue ${C}, 503 beyond\n`,
);
for (const scenario of Object.keys(SCENARIOS)) {
  if (only !== undefined && !only.includes(scenario)) continue;
  const rows = [];
  for (const setup of SETUPS) {
    if (clients !== undefined && !clients.some((word) => setup.name.includes(word))) continue;
    const result = await run(setup, scenario);
    const optimum = result.bins.reduce((sum, _, i) => sum + optimumAt(scenario, i * BIN_MS), 0);
    const { attempts, statuses } = result.statistics;
    rows.push({
      client: setup.name,
      "throughput % of optimum": (result.served / optimum) * 100,
      "refused %": ((statuses[503] ?? 0) / Math.max(1, attempts)) * 100,
      "p99 / unloaded": result.p99 / result.unloaded,
      ...(scenario !== "steady" && {
        "p99 / unloaded from 2 s after the change":
          result.p99Settled === undefined ? "" : result.p99Settled / result.unloaded,
      }),
      ...(showTail && {
        "p95 / unloaded": result.tail.p95 / result.unloaded,
        "% over 1.25x": result.tail.over125 * 100,
        "% over 1.5x": result.tail.over15 * 100,
      }),
      "limit at the end: mean (range)": describeLimits(result.limits, scenario),
      "throughput back to 90% of optimum after the change": recovery(scenario, result.bins),
      "limit within ±20% of the new C after": convergence(scenario, result.limits),
    });
  }
  console.log(`### ${scenario}\n`);
  console.log(table(rows));
  console.log();
}
process.exit(0);
