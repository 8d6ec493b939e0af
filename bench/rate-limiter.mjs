// RateLimiter benchmarks: sluice against bottleneck, p-queue (interval / intervalCap), p-throttle and
// limiter, in one run.
//
//   npm run bench -- rate-limiter                     (builds, then runs this file)
//   node --expose-gc bench/rate-limiter.mjs [--runs 3] [--only a,b] [--quick]
//
// A job "starts" when its function is called: that is when the API would see the request. On a busy
// machine the process can be descheduled between a limiter's admission and that first line, which
// bunches starts (and shows up as overshoot) for any limiter that runs right at the limit: run this on a
// quiet machine.
//
// (a) 2,000 jobs submitted at once to a limiter of 500/s with a burst of 10, on the real clock:
//     - achieved rate: (jobs - burst) / (last start - submission time), as a share of 500/s (the ideal
//       schedule of either algorithm reaches 100 %);
//     - the most starts in any sliding 1 s window [t, t + 1 s), against the promise burst + rate × 1 s
//       = 510 (overshoot is anything above it), and the most whole starts beyond the token-bucket promise
//       "at most burst + rate × span starts over any span" (fixed windows can start 2 × burst at once);
//     - p99 lateness: how much later than the ideal schedule of its algorithm each job started. Token
//       buckets: 10 at t0, then one every 2 ms (job i at max(0, i - 9) × 2 ms). Windows of 10 per 20 ms:
//       job i at floor(i / 10) × 20 ms. Spacing (bottleneck's minTime): job i at i × 2 ms;
//     - CPU time (user + system) of the whole run.
// (b) 1e5 callers waiting on a limiter that admits nobody for an hour: heap bytes per waiter (after a
//     full GC) and timers alive, with sluice's Semaphore as the yardstick for heap.
//
// Every sample runs in a fresh child process, so no library's timers, JIT state or garbage influence
// another's; samples are taken in rounds (one per subject per round). Tables show medians.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { heapUsed, machine, median, quantile, requireGc, table } from "./harness.mjs";

const self = fileURLToPath(import.meta.url);
// SLUICE_DIST lets a development session point at another build; the benchmark proper uses dist/.
const sluicePath = process.env.SLUICE_DIST ?? new URL("../dist/index.js", import.meta.url).href;

const RATE = 500; // per second
const BURST = 10;
const PROMISE_PER_SECOND = BURST + RATE; // burst + rate × 1 s
const turn = () => new Promise((resolve) => setImmediate(resolve));

// ---------------------------------------------------------------------------------------------------
// (a) Subjects: `make()` returns `submit(job)`, which schedules `job` through the limiter; `ideal` names
// the schedule the algorithm promises (see the header).

const paced = {
  "sluice RateLimiter, token bucket (500/s, burst 10)": {
    ideal: "bucket",
    async make() {
      const { RateLimiter } = await import(sluicePath);
      const limiter = new RateLimiter({ limits: [{ limit: RATE, interval: 1_000, burst: BURST }] });
      return (job) => limiter.run(job);
    },
  },
  "sluice RateLimiter, sliding window (10 per 20 ms)": {
    ideal: "window",
    async make() {
      const { RateLimiter } = await import(sluicePath);
      const limiter = new RateLimiter({ limits: [{ limit: BURST, interval: 20, algorithm: "sliding-window" }] });
      return (job) => limiter.run(job);
    },
  },
  // bottleneck has no burst-plus-rate bucket (its reservoir refills on a 250 ms heartbeat, which caps
  // it near 40/s here): minTime is its way to say 500/s.
  "bottleneck (minTime 2 ms)": {
    ideal: "spacing",
    async make() {
      const { default: Bottleneck } = await import("bottleneck");
      const limiter = new Bottleneck({ minTime: 1_000 / RATE });
      return (job) => limiter.schedule(async () => job());
    },
  },
  "p-queue (intervalCap 10, interval 20 ms)": {
    ideal: "window",
    async make() {
      const { default: PQueue } = await import("p-queue");
      const queue = new PQueue({ intervalCap: BURST, interval: 20 });
      return (job) => queue.add(job);
    },
  },
  "p-throttle (limit 10, interval 20 ms)": {
    ideal: "window",
    async make() {
      const { default: pThrottle } = await import("p-throttle");
      const throttle = pThrottle({ limit: BURST, interval: 20 });
      return (job) => throttle(job)();
    },
  },
  "p-throttle strict (limit 10, interval 20 ms)": {
    ideal: "window",
    async make() {
      const { default: pThrottle } = await import("p-throttle");
      const throttle = pThrottle({ limit: BURST, interval: 20, strict: true });
      return (job) => throttle(job)();
    },
  },
  // limiter's TokenBucket starts empty (sluice's starts full, as DESIGN.md decides): its first jobs are
  // late by construction.
  "limiter TokenBucket (500/s, bucket 10)": {
    ideal: "bucket",
    async make() {
      const { TokenBucket } = await import("limiter");
      const bucket = new TokenBucket({ bucketSize: BURST, tokensPerInterval: RATE, interval: "second" });
      return async (job) => {
        await bucket.removeTokens(1);
        return job();
      };
    },
  },
};

function idealStart(kind, index) {
  if (kind === "bucket") return Math.max(0, index - (BURST - 1)) * (1_000 / RATE);
  if (kind === "spacing") return index * (1_000 / RATE);
  return Math.floor(index / BURST) * 20;
}

/** The most starts in any half-open window [t, t + width) (windows starting at a start suffice). */
function mostInWindow(starts, width) {
  let most = 0;
  let first = 0;
  for (let last = 0; last < starts.length; last++) {
    while (starts[last] - starts[first] >= width) first++;
    most = Math.max(most, last - first + 1);
  }
  return most;
}

/** The most starts any span [s_i, s_j] holds beyond burst + rate × (s_j - s_i): 0 keeps the bucket promise. */
function worstBucketExcess(starts) {
  let worst = 0;
  const perMs = RATE / 1_000;
  for (let i = 0; i < starts.length; i++) {
    for (let j = i + BURST; j < starts.length; j++) {
      worst = Math.max(worst, j - i + 1 - (BURST + perMs * (starts[j] - starts[i])));
    }
  }
  return worst;
}

async function pacedSample(spec) {
  const subject = paced[spec.subject];
  // Warm up on a separate instance, so the measured run does not pay for loading and compiling.
  const warm = await subject.make();
  await Promise.all(Array.from({ length: 4 * BURST }, () => warm(() => {})));
  const submit = await subject.make();
  await turn();
  const n = spec.n;
  const starts = new Array(n);
  const cpuBefore = process.cpuUsage();
  const t0 = performance.now();
  const all = new Array(n);
  for (let i = 0; i < n; i++) {
    all[i] = submit(() => {
      starts[i] = performance.now() - t0;
    });
  }
  // The submission loop itself takes a few ms; jobs due before it ended cannot start on time with any
  // limiter (JavaScript runs one thing at a time), so lateness is also reported for the jobs due after it.
  const submitted = performance.now() - t0;
  await Promise.all(all);
  const cpu = process.cpuUsage(cpuBefore);
  // Lateness by job index against the algorithm's ideal; windows and rates over starts in time order.
  const lateness = starts.map((at, index) => at - idealStart(subject.ideal, index));
  const sorted = [...starts].sort((a, b) => a - b);
  const dueAfterSubmission = lateness.filter((_, index) => idealStart(subject.ideal, index) >= submitted);
  // The ideal schedule puts the last start at (n - burst) / rate after t0, for either algorithm.
  return {
    submitMs: submitted,
    p99LatenessAfterSubmission: quantile(dueAfterSubmission, 0.99),
    ratePercent: ((n - BURST) / sorted[n - 1]) * 1_000 * (100 / RATE),
    mostIn1s: mostInWindow(sorted, 1_000),
    bucketExcess: worstBucketExcess(sorted),
    p50Lateness: quantile(lateness, 0.5),
    p99Lateness: quantile(lateness, 0.99),
    maxLateness: Math.max(...lateness),
    cpuMs: (cpu.user + cpu.system) / 1_000,
    fifo: starts.every((at, index) => index === 0 || at >= starts[index - 1]),
  };
}

// ---------------------------------------------------------------------------------------------------
// (b) Subjects: `park(slots)` fills `slots` with waiting calls on a limiter that admits nobody for an
// hour (its budget spent); `waiting()` proves they are queued.

const REMOTE = 3_600_000;
const parked = {
  "sluice Semaphore `acquire()` (yardstick)": async () => {
    const { Semaphore } = await import(sluicePath);
    const semaphore = new Semaphore(1);
    semaphore.tryAcquire();
    return {
      park(slots) {
        for (let i = 0; i < slots.length; i++) slots[i] = semaphore.acquire();
      },
      waiting: () => semaphore.waiting,
    };
  },
  "sluice RateLimiter `acquire()`": async () => {
    const { RateLimiter } = await import(sluicePath);
    const limiter = new RateLimiter({ limits: [{ limit: 1, interval: REMOTE }] });
    await limiter.acquire();
    return {
      park(slots) {
        for (let i = 0; i < slots.length; i++) slots[i] = limiter.acquire();
      },
      waiting: () => limiter.waiting,
    };
  },
  "sluice RateLimiter `acquire({ cost })`, two limits": async () => {
    const { RateLimiter } = await import(sluicePath);
    const limiter = new RateLimiter({
      limits: [
        { limit: 1, interval: REMOTE },
        { limit: 1_000, interval: REMOTE, unit: "tokens" },
      ],
    });
    await limiter.acquire();
    const cost = { tokens: 10 };
    return {
      park(slots) {
        for (let i = 0; i < slots.length; i++) slots[i] = limiter.acquire({ cost });
      },
      waiting: () => limiter.waiting,
    };
  },
  "bottleneck `schedule`": async () => {
    const { default: Bottleneck } = await import("bottleneck");
    const limiter = new Bottleneck({ reservoir: 0 });
    const job = async () => {};
    return {
      park(slots) {
        for (let i = 0; i < slots.length; i++) slots[i] = limiter.schedule(job);
      },
      waiting: () => limiter.counts().QUEUED + limiter.counts().RECEIVED,
    };
  },
  "p-queue `add`": async () => {
    const { default: PQueue } = await import("p-queue");
    const queue = new PQueue({ intervalCap: 1, interval: REMOTE });
    const job = async () => {};
    await queue.add(job);
    return {
      park(slots) {
        for (let i = 0; i < slots.length; i++) slots[i] = queue.add(job);
      },
      waiting: () => queue.size,
    };
  },
  "p-throttle": async () => {
    const { default: pThrottle } = await import("p-throttle");
    // p-throttle gives each call its own timer, delayed by its place in line × interval: 10 s keeps
    // 1e5 × interval under setTimeout's 2^31 ms ceiling.
    const throttled = pThrottle({ limit: 1, interval: 10_000 })(() => {});
    await throttled();
    return {
      park(slots) {
        for (let i = 0; i < slots.length; i++) slots[i] = throttled();
      },
      waiting: () => throttled.queueSize ?? Number.NaN,
    };
  },
  "limiter `removeTokens`": async () => {
    const { TokenBucket } = await import("limiter");
    // limiter's buckets start empty: nobody is admitted for an hour.
    const bucket = new TokenBucket({ bucketSize: 1, tokensPerInterval: 1, interval: "hour" });
    let parkedCount = 0;
    return {
      park(slots) {
        for (let i = 0; i < slots.length; i++) slots[i] = bucket.removeTokens(1);
        parkedCount = slots.length;
      },
      // limiter keeps no queue of its own: each waiter is a pending timer.
      waiting: () => parkedCount,
    };
  },
};

/** Timers alive in this process (Node's own bookkeeping of active handles). */
const activeTimers = () => process.getActiveResourcesInfo().filter((resource) => resource === "Timeout").length;

async function parkedSample(spec) {
  const subject = await parked[spec.subject]();
  const slots = new Array(spec.n).fill(undefined);
  await turn();
  const timersBefore = activeTimers();
  const before = heapUsed();
  subject.park(slots);
  await turn();
  const after = heapUsed();
  const waiting = subject.waiting();
  if (!Number.isNaN(waiting) && waiting !== spec.n)
    throw new Error(`${spec.subject}: ${waiting} waiting, expected ${spec.n}`);
  for (const slot of slots) slot?.catch?.(() => {});
  return {
    bytesPerWaiter: (after - before) / spec.n,
    timers: activeTimers() - timersBefore,
    timersTotal: activeTimers(),
  };
}

// ---------------------------------------------------------------------------------------------------
// Child and parent.

function parseArguments(argv) {
  const options = { runs: 3, only: new Set(["a", "b"]), quick: false, child: undefined };
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i];
    if (argument === "--runs") options.runs = Number(argv[++i]);
    else if (argument === "--only") options.only = new Set(String(argv[++i]).split(","));
    else if (argument === "--quick") options.quick = true;
    else if (argument === "--child") options.child = JSON.parse(argv[++i]);
    else throw new Error(`unknown argument ${argument}`);
  }
  if (!(Number.isInteger(options.runs) && options.runs >= 1))
    throw new RangeError(`--runs must be a positive integer; got ${options.runs}`);
  return options;
}

function sample(spec) {
  const output = execFileSync(process.execPath, ["--expose-gc", self, "--child", JSON.stringify(spec)], {
    encoding: "utf8",
    maxBuffer: 1 << 20,
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env },
  });
  return JSON.parse(output.trim().split("\n").at(-1));
}

function rounds(specs, runs) {
  const samples = specs.map(() => []);
  for (let round = 0; round < runs; round++) {
    specs.forEach((spec, index) => {
      samples[index].push(sample(spec));
      process.stderr.write(".");
    });
  }
  process.stderr.write("\n");
  return samples;
}

const medianOf = (samples, key) => median(samples.map((s) => s[key]));
const ms = (value) => `${value.toFixed(2)} ms`;

async function parent(options) {
  requireGc();
  const out = [];
  const targets = [];
  out.push(`Machine: ${machine()}`);
  out.push(
    `Command: \`${["node --expose-gc bench/rate-limiter.mjs", ...process.argv.slice(2)].join(" ")}\` — each sample in a fresh child process; medians of ${options.runs} rounds.`,
  );

  if (options.only.has("a")) {
    const n = options.quick ? 500 : 2_000;
    const names = Object.keys(paced);
    process.stderr.write(`(a) ${n} jobs at ${RATE}/s, burst ${BURST}, ${names.length} subjects `);
    const samples = rounds(
      names.map((subject) => ({ kind: "a", subject, n })),
      options.runs,
    );
    out.push(
      `\n### (a) ${n.toLocaleString("en-US")} jobs submitted at once, ${RATE}/s with a burst of ${BURST}, real clock\n`,
    );
    const rows = names.map((subject, i) => {
      const s = samples[i];
      return {
        subject,
        "rate achieved": `${medianOf(s, "ratePercent").toFixed(2)} %`,
        "most starts in 1 s (promise 510)": Math.max(...s.map((x) => x.mostIn1s)),
        overshoot: Math.max(0, Math.max(...s.map((x) => x.mostIn1s)) - PROMISE_PER_SECOND),
        // Whole starts: a fraction is the jitter between admission and the job's first line, not a start.
        "extra starts over burst + rate × span": Math.floor(Math.max(...s.map((x) => x.bucketExcess)) + 1e-9),
        "p50 lateness": ms(medianOf(s, "p50Lateness")),
        "p99 lateness": ms(medianOf(s, "p99Lateness")),
        "p99, jobs due after submitting": ms(medianOf(s, "p99LatenessAfterSubmission")),
        "max lateness": ms(medianOf(s, "maxLateness")),
        CPU: ms(medianOf(s, "cpuMs")),
        "submitting the jobs": ms(medianOf(s, "submitMs")),
        "in order": s.every((x) => x.fifo) ? "yes" : "no",
      };
    });
    out.push(table(rows));
    for (const [i, name] of names.entries()) {
      if (!name.startsWith("sluice")) continue;
      const s = samples[i];
      const overshoot = Math.max(...s.map((x) => x.mostIn1s)) - PROMISE_PER_SECOND;
      const strict = name.includes("sliding") ? Math.max(...s.map((x) => x.mostIn1s)) <= RATE : true;
      targets.push({
        target: `(a) ${name}: zero overshoot`,
        measured: `${Math.max(0, overshoot)} over 510${name.includes("sliding") ? `; ≤ 500 in every 1 s: ${strict ? "yes" : "no"}` : ""}`,
        met: overshoot <= 0 && strict ? "yes" : "no",
      });
      const rate = medianOf(s, "ratePercent");
      targets.push({
        target: `(a) ${name}: rate ≥ 99.5 %`,
        measured: `${rate.toFixed(2)} %`,
        met: rate >= 99.5 ? "yes" : "no",
      });
      const p99 = medianOf(s, "p99Lateness");
      const p99After = medianOf(s, "p99LatenessAfterSubmission");
      targets.push({
        target: `(a) ${name}: p99 lateness < 2 ms`,
        measured: `${ms(p99)} (jobs due after submitting: ${ms(p99After)})`,
        met: p99 < 2 ? "yes" : "no",
      });
    }
  }

  if (options.only.has("b")) {
    const n = options.quick ? 10_000 : 100_000;
    const names = Object.keys(parked);
    process.stderr.write(`(b) ${n} waiters, ${names.length} subjects `);
    const samples = rounds(
      names.map((subject) => ({ kind: "b", subject, n })),
      Math.min(options.runs, 3),
    );
    out.push(
      `\n### (b) ${n.toLocaleString("en-US")} callers waiting (heap after a full GC; timers the waiters added)\n`,
    );
    const bytes = samples.map((s) => medianOf(s, "bytesPerWaiter"));
    out.push(
      table(
        names.map((subject, i) => ({
          subject,
          "bytes per waiter": bytes[i],
          "÷ Semaphore": `${(bytes[i] / bytes[0]).toFixed(2)}×`,
          "timers alive": medianOf(samples[i], "timersTotal"),
          "timers added by the waiters": medianOf(samples[i], "timers"),
        })),
      ),
    );
    const byName = Object.fromEntries(names.map((name, i) => [name, i]));
    for (const name of names.filter((name) => name.startsWith("sluice RateLimiter"))) {
      const ratio = bytes[byName[name]] / bytes[0];
      targets.push({
        target: `(b) ${name}: heap per waiter ≤ 1.5× the Semaphore's`,
        measured: `${ratio.toFixed(2)}×`,
        met: ratio <= 1.5 ? "yes" : "no",
      });
      const timers = medianOf(samples[byName[name]], "timersTotal");
      targets.push({
        target: `(b) ${name}: one timer for all waiters`,
        measured: String(timers),
        met: timers <= 1 ? "yes" : "no",
      });
    }
  }

  out.push("\n### Targets\n");
  out.push(table(targets));
  console.log(out.join("\n"));
}

const options = parseArguments(process.argv.slice(2));
if (options.child !== undefined) {
  const spec = options.child;
  const result = spec.kind === "a" ? await pacedSample(spec) : await parkedSample(spec);
  console.log(JSON.stringify(result));
  // Waiters parked for an hour (and the peers' timers) must not keep the child alive.
  process.exit(0);
} else {
  await parent(options);
}
