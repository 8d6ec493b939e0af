// Wait-queue benchmark: what a timeout costs a waiting caller, now that waiters with a timeout share
// one timer per queue (a deadline heap) instead of a timer, a closure and an object of their own.
//
//   npm run bench -- wait-queue                         (builds, then runs this file)
//   node --expose-gc bench/wait-queue.mjs [--runs 7] [--n 200000] [--baseline path/to/dist/index.js]
//
// For each way of waiting, `n` callers are queued on a held Semaphore(1) (so nobody is granted), and a
// sample reports:
// - bytes per waiter: heapUsed after a full GC with all of them queued, minus before (the array that
//   holds their promises is allocated before the baseline, so its bytes do not count);
// - enqueue ms: wall time of the loop that queues them, and its CPU time (user + system, which includes
//   the garbage collector's threads), steadier than wall time on a shared machine;
// - drain ms: from releasing the held permit until every waiter was granted and released in turn,
//   which for the waiters with a timeout includes taking each one out of the deadline heap;
// - timers: the timers the waiters added, counted through a clock that counts them.
// Pairs to compare: `acquire()` with `acquire({ timeout })`, and `run(fn, { priority: 0 })` (an options
// object, as a timeout needs one) with `run(fn, { timeout })`.
//
// `--baseline` runs the same subjects on another build too (say, one made before a change), in the same
// rounds, so before and after are measured in one run. Put that build in a folder whose package.json
// says `"type": "module"`, as dist's does: without one, Node 20 loads the files by syntax detection, and
// the same build then ran `run(noop)` about 8 % faster here, which would pass for a difference between
// builds. Every sample runs in a fresh child process; samples are taken in rounds, one per subject per
// round; tables show medians.
import { fileURLToPath } from "node:url";
import { heapUsed, machine, median, requireGc, sampleInChild, table } from "./harness.mjs";

const self = fileURLToPath(import.meta.url);
const built = new URL("../dist/index.js", import.meta.url).href;
const TIMEOUT = 60_000;
const noop = async () => {};
const turn = () => new Promise((resolve) => setImmediate(resolve));

/** How each subject queues one caller; `timed` subjects pass a timeout, the others are their yardsticks. */
const subjects = {
  "`acquire()`": { timed: false, wait: (semaphore) => semaphore.acquire() },
  "`acquire({ timeout })`": { timed: true, wait: (semaphore) => semaphore.acquire({ timeout: TIMEOUT }) },
  "`run(fn, { priority: 0 })`": { timed: false, wait: (semaphore) => semaphore.run(noop, { priority: 0 }) },
  "`run(fn, { timeout })`": { timed: true, wait: (semaphore) => semaphore.run(noop, { timeout: TIMEOUT }) },
};
/** Each timed subject and the untimed one it is held against. */
const pairs = [
  ["`acquire({ timeout })`", "`acquire()`"],
  ["`run(fn, { timeout })`", "`run(fn, { priority: 0 })`"],
];

/** The system clock, counting the timers set through it. */
function countingClock() {
  const clock = {
    timers: 0,
    now: () => performance.now(),
    setTimeout(callback, ms) {
      clock.timers++;
      return setTimeout(callback, ms);
    },
    clearTimeout: (handle) => clearTimeout(handle),
  };
  return clock;
}

/** CPU time (user + system, all threads) since `since`, in ms. */
function cpuMs(since) {
  const { user, system } = process.cpuUsage(since);
  return (user + system) / 1000;
}

// ---------------------------------------------------------------------------------------------------
// Child: take one sample and print it as JSON.

async function child({ subject, n, dist }) {
  requireGc();
  const { Semaphore } = await import(dist);
  const { wait } = subjects[subject];
  const clock = countingClock();
  const semaphore = new Semaphore(1, { clock });
  const held = await semaphore.acquire();
  // Warm the code paths up on a few waiters, then let them all go.
  const warm = Array.from({ length: 1_000 }, () => wait(semaphore));
  held.release();
  for (const promise of warm) {
    const value = await promise;
    value?.release?.();
  }
  const blocker = await semaphore.acquire();
  const slots = new Array(n).fill(undefined);
  await turn();
  const timersBefore = clock.timers;
  const before = heapUsed();
  const cpu = process.cpuUsage();
  const start = performance.now();
  for (let i = 0; i < n; i++) slots[i] = wait(semaphore);
  const enqueueMs = performance.now() - start;
  const enqueueCpuMs = cpuMs(cpu);
  await turn();
  const after = heapUsed();
  if (semaphore.waiting !== n) throw new Error(`${subject}: ${semaphore.waiting} waiting, expected ${n}`);
  const timers = clock.timers - timersBefore;
  const drainStart = performance.now();
  blocker.release();
  for (let i = 0; i < n; i++) {
    const value = await slots[i];
    value?.release?.();
  }
  const drainMs = performance.now() - drainStart;
  if (semaphore.inUse !== 0 || semaphore.waiting !== 0) throw new Error(`${subject}: not drained`);
  return { bytesPerWaiter: (after - before) / n, enqueueMs, enqueueCpuMs, drainMs, timers };
}

// ---------------------------------------------------------------------------------------------------
// Parent: rounds of child samples, then tables.

function parseArguments(argv) {
  const options = { runs: 7, n: 200_000, baseline: undefined };
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i];
    if (argument === "--runs") options.runs = Number(argv[++i]);
    else if (argument === "--n") options.n = Number(argv[++i]);
    else if (argument === "--baseline") options.baseline = String(argv[++i]);
    else throw new Error(`unknown argument ${argument}`);
  }
  for (const key of ["runs", "n"]) {
    if (!(Number.isInteger(options[key]) && options[key] >= 1))
      throw new RangeError(`--${key} must be a positive integer; got ${options[key]}`);
  }
  return options;
}

const medianOf = (samples, key) => median(samples.map((s) => s[key]));
const times = (value) => `${value.toFixed(2)}×`;

async function parent(options) {
  requireGc();
  const builds = [["this build", built]];
  if (options.baseline !== undefined) {
    const baseline = options.baseline.startsWith("file:")
      ? options.baseline
      : new URL(`file://${options.baseline}`).href;
    builds.push(["baseline", baseline]);
  }
  const specs = builds.flatMap(([build, dist]) =>
    Object.keys(subjects).map((subject) => ({ build, subject, n: options.n, dist })),
  );
  process.stderr.write(`wait-queue: ${specs.length} subjects × ${options.runs} rounds `);
  const samples = specs.map(() => []);
  for (let round = 0; round < options.runs; round++) {
    specs.forEach((spec, index) => {
      samples[index].push(sampleInChild(self, spec));
      process.stderr.write(".");
    });
  }
  process.stderr.write("\n");
  const results = specs.map((spec, index) => ({
    ...spec,
    bytes: medianOf(samples[index], "bytesPerWaiter"),
    enqueueMs: medianOf(samples[index], "enqueueMs"),
    enqueueCpuMs: medianOf(samples[index], "enqueueCpuMs"),
    drainMs: medianOf(samples[index], "drainMs"),
    timers: medianOf(samples[index], "timers"),
  }));
  const find = (build, subject) => results.find((r) => r.build === build && r.subject === subject);

  const out = [];
  out.push(`Machine: ${machine()}`);
  out.push(
    `Command: \`${["node --expose-gc bench/wait-queue.mjs", ...process.argv.slice(2)].join(" ")}\` — each sample in a fresh child process; medians of ${options.runs} rounds.`,
  );
  out.push(
    `\n### ${options.n.toLocaleString("en-US")} callers queued on a held \`Semaphore(1)\` (timeout ${TIMEOUT.toLocaleString("en-US")} ms)\n`,
  );
  out.push(
    table(
      results.map((r) => ({
        build: r.build,
        subject: r.subject,
        "bytes per waiter": r.bytes,
        "enqueue ms (wall)": r.enqueueMs,
        "enqueue ms (CPU)": r.enqueueCpuMs,
        "drain ms": r.drainMs,
        "timers added": r.timers,
      })),
    ),
  );
  out.push("\n### With a timeout ÷ without\n");
  const rows = [];
  for (const [build] of builds) {
    for (const [timed, plain] of pairs) {
      const t = find(build, timed);
      const p = find(build, plain);
      rows.push({
        build,
        pair: `${timed} ÷ ${plain}`,
        "bytes per waiter": `${times(t.bytes / p.bytes)} (+${(t.bytes - p.bytes).toFixed(1)} B)`,
        "enqueue (wall)": times(t.enqueueMs / p.enqueueMs),
        "enqueue (CPU)": times(t.enqueueCpuMs / p.enqueueCpuMs),
        drain: times(t.drainMs / p.drainMs),
        "timers added": String(t.timers),
      });
    }
  }
  out.push(table(rows));
  out.push("\n### Targets (issue 16: no timer per waiter)\n");
  const targets = [];
  for (const [timed, plain] of pairs) {
    const t = find("this build", timed);
    const p = find("this build", plain);
    targets.push(
      {
        target: `${timed}: heap per waiter ≤ 1.25× ${plain}`,
        measured: times(t.bytes / p.bytes),
        met: t.bytes <= 1.25 * p.bytes ? "yes" : "no",
      },
      {
        target: `${timed}: enqueue time ≤ 1.25× ${plain} (CPU; wall in the table)`,
        measured: times(t.enqueueCpuMs / p.enqueueCpuMs),
        met: t.enqueueCpuMs <= 1.25 * p.enqueueCpuMs ? "yes" : "no",
      },
      {
        target: `${timed}: one timer for all the waiters`,
        measured: String(t.timers),
        met: t.timers <= 1 ? "yes" : "no",
      },
    );
  }
  out.push(table(targets));
  console.log(out.join("\n"));
}

const argv = process.argv.slice(2);
if (argv[0] === "--child") {
  const result = await child(JSON.parse(argv[1]));
  console.log(JSON.stringify(result));
  process.exit(0);
} else {
  await parent(parseArguments(argv));
}
