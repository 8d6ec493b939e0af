// Semaphore benchmarks: sluice against p-limit, p-queue, async-mutex, async-sema and bottleneck, plus
// the bare floor (what the same work costs with no limiter at all), in one run.
//
//   npm run bench -- semaphore                       (builds, then runs this file)
//   node --expose-gc bench/semaphore.mjs [--runs 5] [--only a,b,c,d] [--quick]
//   SLUICE_BASELINE_DIST=/tmp/base/dist node --expose-gc bench/semaphore.mjs --only a   (see below)
//
// (a) uncontended `run(async noop)`, sequentially: ops/s.
// (b) 1e5 tasks started at once through capacity 1, 10 and 100: total ms; the task is `async () => {}`,
//     and in (b′) `async () => { await null }` (one microtask of its own).
// (c) heap bytes per waiting task, 1e6 waiters: heapUsed after a full GC, before vs with all queued.
// (d) 1e5 waiters each with its own AbortSignal, all aborted in FIFO and in random order: time to
//     settle them all, heap left afterwards, and whether the limiter still has its full capacity.
//
// Every sample runs in a fresh child process (`--child`), so no library's JIT feedback, heap shape or
// garbage influences another's; samples are taken in rounds, one per subject per round, so the noise
// of a shared machine spreads over all subjects alike. Tables show medians over the rounds.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { heapUsed, machine, median, requireGc, table } from "./harness.mjs";

const self = fileURLToPath(import.meta.url);
// SLUICE_DIST lets a profiling session point at another build; the benchmark proper uses dist/.
const sluicePath = process.env.SLUICE_DIST ?? new URL("../dist/index.js", import.meta.url).href;

const noop = async () => {};
/** The tasks of (b): one that settles at once, and one that waits one microtask first. */
const burstTasks = {
  "`async () => {}`": noop,
  "`async () => { await null }`": async () => {
    await null;
  },
};
/** One macrotask turn: lets every pending microtask (and the peers' internal hops) run. */
const turn = () => new Promise((resolve) => setImmediate(resolve));
/** A shared abort reason: `abort()` without one would allocate (and the signal retain) a DOMException. */
const REASON = new Error("aborted by the benchmark");

// ---------------------------------------------------------------------------------------------------
// Subjects. Each scenario names its subjects; a subject is code written out in full for that library,
// so every call site sees one library only (no shared, polymorphic loop).

/** (a) `run(noop)` n times in a row, on the sluice build at `path`. */
async function runNoop(path) {
  const { Semaphore } = await import(path);
  const semaphore = new Semaphore(1);
  return async (n) => {
    for (let i = 0; i < n; i++) await semaphore.run(noop);
  };
}

/** (a) `acquire()`, `await noop()`, `release()` n times in a row, on the sluice build at `path`. */
async function acquireRelease(path) {
  const { Semaphore } = await import(path);
  const semaphore = new Semaphore(1);
  return async (n) => {
    for (let i = 0; i < n; i++) {
      const permit = await semaphore.acquire();
      try {
        await noop();
      } finally {
        permit.release();
      }
    }
  };
}

/** (a) Sequential uncontended calls: `loop(n)` makes n calls, one after another. */
const uncontended = {
  "bare `await noop()` (floor)": async () => async (n) => {
    for (let i = 0; i < n; i++) await noop();
  },
  "sluice `run(noop)`": () => runNoop(sluicePath),
  "sluice `acquire()` + `release()`": () => acquireRelease(sluicePath),
  "sluice `acquire({ priority, timeout })` + `release()`": async () => {
    const { Semaphore } = await import(sluicePath);
    const semaphore = new Semaphore(1);
    const options = { priority: 1, timeout: 60_000 };
    return async (n) => {
      for (let i = 0; i < n; i++) {
        const permit = await semaphore.acquire(options);
        try {
          await noop();
        } finally {
          permit.release();
        }
      }
    };
  },
  "sluice Mutex `runExclusive(noop)`": async () => {
    const { Mutex } = await import(sluicePath);
    const mutex = new Mutex();
    return async (n) => {
      for (let i = 0; i < n; i++) await mutex.runExclusive(noop);
    };
  },
  "p-limit `limit(noop)`": async () => {
    const { default: pLimit } = await import("p-limit");
    const limit = pLimit(1);
    return async (n) => {
      for (let i = 0; i < n; i++) await limit(noop);
    };
  },
  "p-queue `add(noop)`": async () => {
    const { default: PQueue } = await import("p-queue");
    const queue = new PQueue({ concurrency: 1 });
    return async (n) => {
      for (let i = 0; i < n; i++) await queue.add(noop);
    };
  },
  "async-mutex `runExclusive(noop)`": async () => {
    const { Semaphore } = await import("async-mutex");
    const semaphore = new Semaphore(1);
    return async (n) => {
      for (let i = 0; i < n; i++) await semaphore.runExclusive(noop);
    };
  },
  "async-sema `acquire`/`try`/`finally release`": async () => {
    const { Sema } = await import("async-sema");
    const sema = new Sema(1);
    return async (n) => {
      for (let i = 0; i < n; i++) {
        await sema.acquire();
        try {
          await noop();
        } finally {
          sema.release();
        }
      }
    };
  },
  "bottleneck `schedule(noop)`": async () => {
    const { default: Bottleneck } = await import("bottleneck");
    const limiter = new Bottleneck({ maxConcurrent: 1 });
    return async (n) => {
      for (let i = 0; i < n; i++) await limiter.schedule(noop);
    };
  },
};
/** bottleneck starts each job through a timer (a few hundred calls a second here): 1,000 calls. */
// SLUICE_BASELINE_DIST: the dist/ of another commit (`git archive <commit>` into a folder, `npm run build`
// there), measured next to this build in the same run, so a change to the hot path shows its cost in one table.
const baselinePath = process.env.SLUICE_BASELINE_DIST;
if (baselinePath !== undefined) {
  const baseline = new URL("index.js", `file://${baselinePath.replace(/\/?$/, "/")}`).href;
  uncontended["sluice `run(noop)`, baseline build"] = () => runNoop(baseline);
  uncontended["sluice `acquire()` + `release()`, baseline build"] = () => acquireRelease(baseline);
}
const uncontendedScale = { "bottleneck `schedule(noop)`": 0.001 };

/**
 * (b) A burst: `burst(n)` starts n calls of `task` at once through capacity `capacity` and waits for
 * them all.
 */
const bursts = {
  "no limit: `Promise.all` of bare calls (floor)": async (_capacity, task) => async (n) => {
    const all = new Array(n);
    for (let i = 0; i < n; i++) all[i] = task();
    await Promise.all(all);
  },
  "sluice `run`": async (capacity, task) => {
    const { Semaphore } = await import(sluicePath);
    const semaphore = new Semaphore(capacity);
    return async (n) => {
      const all = new Array(n);
      for (let i = 0; i < n; i++) all[i] = semaphore.run(task);
      await Promise.all(all);
    };
  },
  "p-limit": async (capacity, task) => {
    const { default: pLimit } = await import("p-limit");
    const limit = pLimit(capacity);
    return async (n) => {
      const all = new Array(n);
      for (let i = 0; i < n; i++) all[i] = limit(task);
      await Promise.all(all);
    };
  },
  "p-queue": async (capacity, task) => {
    const { default: PQueue } = await import("p-queue");
    const queue = new PQueue({ concurrency: capacity });
    return async (n) => {
      const all = new Array(n);
      for (let i = 0; i < n; i++) all[i] = queue.add(task);
      await Promise.all(all);
    };
  },
  "async-mutex": async (capacity, task) => {
    const { Semaphore } = await import("async-mutex");
    const semaphore = new Semaphore(capacity);
    return async (n) => {
      const all = new Array(n);
      for (let i = 0; i < n; i++) all[i] = semaphore.runExclusive(task);
      await Promise.all(all);
    };
  },
  "async-sema (glue)": async (capacity, task) => {
    const { Sema } = await import("async-sema");
    const sema = new Sema(capacity);
    const guarded = async () => {
      await sema.acquire();
      try {
        return await task();
      } finally {
        sema.release();
      }
    };
    return async (n) => {
      const all = new Array(n);
      for (let i = 0; i < n; i++) all[i] = guarded();
      await Promise.all(all);
    };
  },
  bottleneck: async (capacity, task) => {
    const { default: Bottleneck } = await import("bottleneck");
    const limiter = new Bottleneck({ maxConcurrent: capacity });
    return async (n) => {
      const all = new Array(n);
      for (let i = 0; i < n; i++) all[i] = limiter.schedule(task);
      await Promise.all(all);
    };
  },
};

/** bottleneck starts each job through a timer (~2.4 ms a job here, at any capacity): 1,000 tasks. */
const burstScale = { bottleneck: 0.01 };

/**
 * (c) Waiters parked behind a limiter of capacity 1 that is held. `park(slots)` fills `slots` (an
 * array allocated before the baseline, so its own bytes do not count) with one waiting call each.
 * `waiting()` reports how many the limiter says are queued, to prove they really are.
 */
const parked = {
  "pending `new Promise` + its retained `resolve` (V8 floor)": async () => {
    const resolvers = [];
    return {
      // The resolvers array grows, so its bytes count: 8 B a slot, part of any queue's cost.
      park(slots) {
        for (let i = 0; i < slots.length; i++) slots[i] = new Promise((resolve) => resolvers.push(resolve));
      },
      waiting: () => resolvers.length,
    };
  },
  "sluice `acquire()`": async () => {
    const { Semaphore } = await import(sluicePath);
    const semaphore = new Semaphore(1);
    await semaphore.acquire();
    return {
      park(slots) {
        for (let i = 0; i < slots.length; i++) slots[i] = semaphore.acquire();
      },
      waiting: () => semaphore.waiting,
    };
  },
  "sluice `run(fn)`": async () => {
    const { Semaphore } = await import(sluicePath);
    const semaphore = new Semaphore(1);
    await semaphore.acquire();
    return {
      park(slots) {
        for (let i = 0; i < slots.length; i++) slots[i] = semaphore.run(noop);
      },
      waiting: () => semaphore.waiting,
    };
  },
  "p-limit `limit(fn)`": async () => {
    const { default: pLimit } = await import("p-limit");
    const limit = pLimit(1);
    limit(() => new Promise(() => {}));
    return {
      park(slots) {
        for (let i = 0; i < slots.length; i++) slots[i] = limit(noop);
      },
      waiting: () => limit.pendingCount,
    };
  },
  "p-queue `add(fn)`": async () => {
    const { default: PQueue } = await import("p-queue");
    const queue = new PQueue({ concurrency: 1 });
    queue.add(() => new Promise(() => {}));
    return {
      park(slots) {
        for (let i = 0; i < slots.length; i++) slots[i] = queue.add(noop);
      },
      waiting: () => queue.size,
    };
  },
  "async-mutex `acquire()`": async () => {
    const { Semaphore } = await import("async-mutex");
    const semaphore = new Semaphore(1);
    await semaphore.acquire();
    return {
      park(slots) {
        for (let i = 0; i < slots.length; i++) slots[i] = semaphore.acquire();
      },
      waiting: () => semaphore._queue.length, // private, but the only count it keeps
    };
  },
  "async-mutex `runExclusive(fn)`": async () => {
    const { Semaphore } = await import("async-mutex");
    const semaphore = new Semaphore(1);
    await semaphore.acquire();
    return {
      park(slots) {
        for (let i = 0; i < slots.length; i++) slots[i] = semaphore.runExclusive(noop);
      },
      waiting: () => semaphore._queue.length, // private, but the only count it keeps
    };
  },
  "async-sema `acquire()`": async () => {
    const { Sema } = await import("async-sema");
    const sema = new Sema(1);
    await sema.acquire();
    return {
      park(slots) {
        for (let i = 0; i < slots.length; i++) slots[i] = sema.acquire();
      },
      waiting: () => sema.nrWaiting(),
    };
  },
  "bottleneck `schedule(fn)`": async () => {
    const { default: Bottleneck } = await import("bottleneck");
    const limiter = new Bottleneck({ maxConcurrent: 1 });
    limiter.schedule(() => new Promise(() => {}));
    // bottleneck starts jobs through timers: wait until the blocker runs, so it is not counted.
    while (limiter.counts().EXECUTING !== 1) await new Promise((resolve) => setTimeout(resolve, 1));
    return {
      park(slots) {
        for (let i = 0; i < slots.length; i++) slots[i] = limiter.schedule(noop);
      },
      waiting: () => limiter.counts().QUEUED + limiter.counts().RECEIVED,
    };
  },
};
/** bottleneck's queueing is slow enough that a million waiters take minutes; bytes are per waiter. */
const parkedScale = { "bottleneck `schedule(fn)`": 0.1 };

/**
 * (d) Waiters with signals behind a held limiter of capacity 1. `park(signals, slots)` queues one
 * waiter per signal; `release()` frees the held slot; `full()` says whether, once everything settled,
 * the limiter has its whole capacity back and nothing queued.
 */
const abortable = {
  "bare AbortController + one listener (floor)": async () => ({
    park(signals, slots) {
      for (let i = 0; i < signals.length; i++) {
        slots[i] = new Promise((_, reject) => {
          signals[i].addEventListener("abort", () => reject(signals[i].reason), { once: true });
        });
      }
    },
    release() {},
    full: () => "n/a",
  }),
  "sluice `acquire({ signal })`": async () => {
    const { Semaphore } = await import(sluicePath);
    const semaphore = new Semaphore(1);
    const held = await semaphore.acquire();
    return {
      park(signals, slots) {
        for (let i = 0; i < signals.length; i++) slots[i] = semaphore.acquire({ signal: signals[i] });
      },
      release: () => held.release(),
      full: () => semaphore.available === semaphore.capacity && semaphore.waiting === 0 && semaphore.inUse === 0,
    };
  },
  "sluice `run(fn, { signal })`": async () => {
    const { Semaphore } = await import(sluicePath);
    const semaphore = new Semaphore(1);
    const held = await semaphore.acquire();
    return {
      park(signals, slots) {
        for (let i = 0; i < signals.length; i++) slots[i] = semaphore.run(noop, { signal: signals[i] });
      },
      release: () => held.release(),
      full: () => semaphore.available === semaphore.capacity && semaphore.waiting === 0 && semaphore.inUse === 0,
    };
  },
  "p-queue `add(fn, { signal })`": async () => {
    const { default: PQueue } = await import("p-queue");
    const queue = new PQueue({ concurrency: 1 });
    let unblock;
    queue.add(() => new Promise((resolve) => (unblock = resolve)));
    return {
      park(signals, slots) {
        for (let i = 0; i < signals.length; i++) slots[i] = queue.add(noop, { signal: signals[i] });
      },
      release: () => unblock(),
      async full() {
        if (queue.size !== 0 || queue.pending !== 0) return false;
        // Capacity 1 back: one new task starts at once, a second waits.
        let started = 0;
        const first = queue.add(() => {
          started++;
        });
        const second = queue.add(() => {
          started++;
        });
        const runningNow = queue.pending === 1 && queue.size === 1;
        await Promise.all([first, second]);
        return runningNow && started === 2;
      },
    };
  },
};

// ---------------------------------------------------------------------------------------------------
// Child: take one sample and print it as JSON.

async function child(spec) {
  requireGc();
  if (spec.kind === "a") {
    const loop = await uncontended[spec.subject]();
    await loop(Math.max(1, Math.round(spec.n / 5)));
    const cpu = process.cpuUsage();
    const start = performance.now();
    await loop(spec.n);
    const ms = performance.now() - start;
    return { opsPerSecond: (spec.n / ms) * 1000, cpuNsPerOp: (cpuMs(cpu) / spec.n) * 1e6 };
  }
  if (spec.kind === "b") {
    const burst = await bursts[spec.subject](spec.capacity, burstTasks[spec.task]);
    await burst(Math.max(1, Math.round(spec.n / 10)));
    await turn();
    const cpu = process.cpuUsage();
    const start = performance.now();
    await burst(spec.n);
    return { ms: performance.now() - start, cpuMs: cpuMs(cpu) };
  }
  if (spec.kind === "c") {
    const subject = await parked[spec.subject]();
    const slots = new Array(spec.n).fill(undefined);
    await turn();
    const before = heapUsed();
    subject.park(slots);
    await turn();
    const after = heapUsed();
    const waiting = subject.waiting();
    if (waiting !== spec.n) throw new Error(`${spec.subject}: ${waiting} waiting, expected ${spec.n}`);
    return { bytesPerWaiter: (after - before) / spec.n };
  }
  if (spec.kind === "d") {
    const subject = await abortable[spec.subject]();
    const n = spec.n;
    const order = Array.from({ length: n }, (_, i) => i);
    if (spec.order === "random") shuffle(order, 0x5eed);
    const slots = new Array(n).fill(undefined);
    await turn();
    // The baseline is taken before the controllers exist: an AbortSignal's own size changes when it
    // aborts (in Node 20 a fresh one retains ~776 B, an aborted one ~24 B), so "heap left" is measured
    // with the controllers gone. What remains then is what the limiter itself kept.
    const before = heapUsed();
    let controllers = Array.from({ length: n }, () => new AbortController());
    subject.park(
      controllers.map((controller) => controller.signal),
      slots,
    );
    await turn();
    const cpu = process.cpuUsage();
    const start = performance.now();
    for (let i = 0; i < n; i++) controllers[order[i]].abort(REASON);
    const rejected = await countRejections(slots);
    const ms = performance.now() - start;
    const cpuSpent = cpuMs(cpu);
    if (rejected !== n) throw new Error(`${spec.subject}: ${rejected} of ${n} rejected with the signal's reason`);
    controllers = undefined;
    slots.fill(undefined);
    await turn();
    const after = heapUsed();
    subject.release();
    await turn();
    const full = await subject.full();
    return { ms, cpuMs: cpuSpent, heapLeft: after - before, full };
  }
  throw new Error(`unknown kind ${spec.kind}`);
}

/** CPU time (user + system, all threads) since `since`, in ms: steadier than wall time on a busy machine. */
function cpuMs(since) {
  const { user, system } = process.cpuUsage(since);
  return (user + system) / 1000;
}

/** How many of `promises` reject with {@link REASON} (a function of its own, so its garbage dies). */
async function countRejections(promises) {
  const outcomes = await Promise.allSettled(promises);
  return outcomes.filter((outcome) => outcome.status === "rejected" && outcome.reason === REASON).length;
}

/** A deterministic Fisher–Yates shuffle (mulberry32), so every subject sees the same random order. */
function shuffle(array, seed) {
  let state = seed >>> 0;
  const random = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = array.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [array[i], array[j]] = [array[j], array[i]];
  }
}

// ---------------------------------------------------------------------------------------------------
// Parent: rounds of child samples, then tables.

function parseArguments(argv) {
  const options = { runs: 5, only: new Set(["a", "b", "c", "d"]), quick: false, slowRuns: 3, slowSeconds: 8 };
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i];
    if (argument === "--runs") options.runs = Number(argv[++i]);
    else if (argument === "--only") options.only = new Set(String(argv[++i]).split(","));
    else if (argument === "--quick") options.quick = true;
    else throw new Error(`unknown argument ${argument}`);
  }
  if (!(Number.isInteger(options.runs) && options.runs >= 1))
    throw new RangeError(`--runs must be a positive integer; got ${options.runs}`);
  if (options.quick) options.runs = Math.min(options.runs, 3);
  options.slowRuns = Math.min(options.slowRuns, options.runs);
  return options;
}

function sample(spec) {
  const started = performance.now();
  const output = execFileSync(process.execPath, ["--expose-gc", self, "--child", JSON.stringify(spec)], {
    encoding: "utf8",
    maxBuffer: 1 << 20,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const result = JSON.parse(output.trim().split("\n").at(-1));
  result.wallSeconds = (performance.now() - started) / 1000;
  return result;
}

/**
 * Takes `runs` samples of each spec in rounds (every spec once per round). A spec whose samples take
 * longer than `slowSeconds` stops at `slowRuns` samples, so one quadratic peer cannot eat the hour.
 */
function rounds(specs, options, runs = options.runs) {
  const samples = specs.map(() => []);
  for (let round = 0; round < runs; round++) {
    specs.forEach((spec, index) => {
      const taken = samples[index];
      const slow = taken.length > 0 && median(taken.map((s) => s.wallSeconds)) > options.slowSeconds;
      if (slow && taken.length >= options.slowRuns) return;
      taken.push(sample(spec));
      process.stderr.write(".");
    });
  }
  process.stderr.write("\n");
  return samples;
}

const medianOf = (samples, key) => median(samples.map((s) => s[key]));
const times = (value) => `${value.toFixed(2)}×`;

async function parent(options) {
  requireGc();
  const scale = options.quick ? 0.1 : 1;
  const out = [];
  const targets = [];
  out.push(`Machine: ${machine()}`);
  out.push(
    `Command: \`${["node --expose-gc bench/semaphore.mjs", ...process.argv.slice(2)].join(" ")}\` — each sample in a fresh child process; medians of up to ${options.runs} rounds (subjects slower than ${options.slowSeconds} s a sample: ${options.slowRuns}).`,
  );

  if (options.only.has("a")) {
    const n = Math.round(1e6 * scale);
    const names = Object.keys(uncontended);
    const specs = names.map((subject) => ({ kind: "a", subject, n: Math.round(n * (uncontendedScale[subject] ?? 1)) }));
    process.stderr.write(`(a) uncontended, ${names.length} subjects `);
    const samples = rounds(specs, options);
    const ops = samples.map((s) => medianOf(s, "opsPerSecond"));
    const floor = ops[0];
    const sluice = ops[1];
    out.push(`\n### (a) Uncontended \`run(async noop)\`, ${n.toLocaleString("en-US")} sequential calls\n`);
    out.push(
      table(
        names.map((subject, i) => ({
          subject,
          calls: specs[i].n,
          "ops/s (median)": ops[i],
          "vs floor": `${((ops[i] / floor) * 100).toFixed(0)} %`,
          "sluice `run` ÷ this": times(sluice / ops[i]),
          runs: String(samples[i].length),
        })),
      ),
    );
    const peers = names
      .map((name, i) => [name, ops[i]])
      .filter(([name]) => !name.startsWith("sluice") && !name.includes("floor"));
    const [fastestName, fastest] = peers.reduce((best, entry) => (entry[1] > best[1] ? entry : best));
    targets.push({
      target: "(a) `run` ≥ 1.5× the fastest peer",
      measured: `${times(sluice / fastest)} ${fastestName}`,
      met: sluice >= 1.5 * fastest ? "yes" : "no",
    });
    targets.push({
      target: "(a) `run` within 2× of the bare-await floor",
      measured: `floor ÷ run = ${times(floor / sluice)}`,
      met: floor <= 2 * sluice ? "yes" : "no",
    });
  }

  if (options.only.has("b")) {
    const n = Math.round(1e5 * scale);
    const names = Object.keys(bursts);
    const capacities = [1, 10, 100];
    for (const [taskIndex, task] of Object.keys(burstTasks).entries()) {
      const label = taskIndex === 0 ? "(b)" : "(b′)";
      const rows = names.map((subject) => ({
        subject: burstScale[subject]
          ? `${subject} (${Math.round(n * burstScale[subject]).toLocaleString("en-US")} tasks, time × ${1 / burstScale[subject]})`
          : subject,
      }));
      for (const capacity of capacities) {
        process.stderr.write(`${label} ${task} through capacity ${capacity} `);
        const specs = names.map((subject) => ({
          kind: "b",
          subject,
          task,
          capacity,
          n: Math.round(n * (burstScale[subject] ?? 1)),
        }));
        const samples = rounds(specs, options);
        // A scaled-down subject's time is extrapolated to n tasks (its cost per task is flat in n).
        const ms = samples.map((s, i) => medianOf(s, "ms") * (n / specs[i].n));
        const floor = ms[0];
        names.forEach((_, i) => {
          rows[i][`cap ${capacity}: ms`] = ms[i];
          rows[i][`cap ${capacity}: ÷ floor`] = times(ms[i] / floor);
          rows[i][`cap ${capacity}: runs`] = String(samples[i].length);
        });
        const peersBest = Math.min(...ms.slice(2));
        const fastestPeer = names[ms.indexOf(peersBest)];
        targets.push({
          target: `${label} ${task}, capacity ${capacity}: within 1.5× of the no-limit floor, ahead of every peer`,
          measured: `${times(ms[1] / floor)} the floor; fastest peer (${fastestPeer}) takes ${times(peersBest / ms[1])} sluice's time`,
          met:
            ms[1] <= 1.5 * floor && ms[1] < peersBest
              ? "yes"
              : ms[1] < peersBest
                ? "ahead of peers; not within 1.5× of the floor"
                : "no",
        });
      }
      out.push(`\n### ${label} ${n.toLocaleString("en-US")} tasks (${task}) started at once, total ms\n`);
      out.push(table(rows));
    }
  }

  if (options.only.has("c")) {
    const n = Math.round(1e6 * scale);
    const names = Object.keys(parked);
    const specs = names.map((subject) => ({ kind: "c", subject, n: Math.round(n * (parkedScale[subject] ?? 1)) }));
    process.stderr.write(`(c) heap per waiter, ${names.length} subjects `);
    const samples = rounds(specs, options, Math.min(options.runs, 3));
    const bytes = samples.map((s) => medianOf(s, "bytesPerWaiter"));
    out.push(`\n### (c) Heap bytes per waiting task (heapUsed after full GC, with vs without the waiters)\n`);
    out.push(
      table(
        names.map((subject, i) => ({
          subject,
          waiters: specs[i].n,
          "bytes per waiter": bytes[i],
          runs: String(samples[i].length),
        })),
      ),
    );
    const byName = Object.fromEntries(names.map((name, i) => [name, bytes[i]]));
    const viaAcquire = byName["sluice `acquire()`"];
    const viaRun = byName["sluice `run(fn)`"];
    targets.push({
      target: "(c) ≤ 200 B per waiter through `acquire()`",
      measured: `${viaAcquire.toFixed(0)} B`,
      met: viaAcquire <= 200 ? "yes" : "no",
    });
    targets.push({
      target: "(c) ≤ 350 B per waiter through `run()`",
      measured: `${viaRun.toFixed(0)} B`,
      met: viaRun <= 350 ? "yes" : "no",
    });
  }

  if (options.only.has("d")) {
    const n = Math.round(1e5 * scale);
    const names = Object.keys(abortable);
    const rows = [];
    for (const order of ["fifo", "random"]) {
      process.stderr.write(`(d) abort in ${order} order `);
      const specs = names.map((subject) => ({ kind: "d", subject, order, n }));
      const samples = rounds(specs, options);
      const ms = samples.map((s) => medianOf(s, "ms"));
      const floor = ms[0];
      names.forEach((subject, i) => {
        const heapLeft = medianOf(samples[i], "heapLeft");
        const fulls = samples[i].map((s) => s.full);
        rows.push({
          subject,
          order,
          "ms to settle all (median)": ms[i],
          "÷ floor": times(ms[i] / floor),
          "heap left, KiB": heapLeft / 1024,
          "full capacity after": fulls.every((full) => full === "n/a")
            ? "n/a"
            : fulls.every((full) => full === true)
              ? "yes"
              : "NO",
          runs: String(samples[i].length),
        });
      });
      for (const [index, label] of [
        [1, "acquire"],
        [2, "run"],
      ]) {
        const heapLeft = medianOf(samples[index], "heapLeft") / n;
        const full = samples[index].every((s) => s.full === true);
        // "Heap back": less than one pointer (8 B) per waiter left, i.e. nothing per waiter retained.
        targets.push({
          target: `(d) ${order} abort via \`${label}\`: ≤ 1.25× the bare-AbortSignal floor, heap back, full capacity`,
          measured: `${times(ms[index] / floor)} the floor; ${heapLeft.toFixed(1)} B per waiter left; full capacity: ${full ? "yes" : "no"}`,
          met: ms[index] <= 1.25 * floor && heapLeft < 8 && full ? "yes" : "no",
        });
      }
    }
    rows.push({
      subject: "async-mutex",
      order: "—",
      "ms to settle all (median)": "n/a",
      "÷ floor": "n/a",
      "heap left, KiB": "n/a",
      "full capacity after": "n/a",
      runs: "no per-waiter signal (only `cancel()`, which rejects every waiter at once)",
    });
    out.push(`\n### (d) ${n.toLocaleString("en-US")} waiters, each with its own AbortSignal, all aborted\n`);
    out.push(table(rows));
    out.push(
      "\nTime runs from the first `abort()` until every waiter's promise has settled. Heap left is heapUsed after a full GC once all settled and the controllers were dropped, minus heapUsed before the controllers were created (what the limiter kept); the floor is a pending promise per controller rejected by a `{ once: true }` abort listener. p-limit, async-sema and bottleneck take no signal.",
    );
  }

  if (targets.length > 0) {
    out.push("\n### Targets (issue 2)\n");
    out.push(table(targets));
  }
  console.log(out.join("\n"));
}

const childIndex = process.argv.indexOf("--child");
if (childIndex !== -1) {
  const result = await child(JSON.parse(process.argv[childIndex + 1]));
  console.log(JSON.stringify(result));
  // Parked waiters are never drained: a million of them through async-mutex would take minutes.
  process.exit(0);
} else {
  await parent(parseArguments(process.argv.slice(2)));
}
