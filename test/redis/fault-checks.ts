/**
 * The checks of the fault suite, computed from logs only: what each worker process printed (enter,
 * checks of `leaseLost`, release and its outcome, every acquire's settlement), what the fenced resource
 * recorded for every write, and when the parent injected each fault. Never from what the library
 * believes of itself: a holder that was not told it lost its lease shows up here as overlap.
 *
 * Times are `performance.timeOrigin + performance.now()` in every process: the wall clock's scale, so that
 * fault times compare with rate admissions, which are in Redis server time (`admittedAt`, what the
 * limiter promises its windows in). Across processes this is exact only while NTP does not step or slew
 * the clock between their starts (test/redis/worker.ts uses the monotonic clock for that reason; here the
 * comparison with Redis' clock decides).
 */

/** One JSON line of a fault worker (test/redis/fault-worker.ts). */
export type WorkerEvent =
  | { event: "ready"; at: number; client?: string }
  | { event: "acquire"; at: number; call: number; weight: number; kind: "acquire" | "run" }
  /**
   * Permit received; `lost` is what `leaseLost` said at that moment (a grant handed over already lost);
   * `long` marks the permit the parent asked to be held long (see the worker's `hold-long`).
   */
  | {
      event: "enter";
      at: number;
      call: number;
      token: number;
      slots?: number[];
      weight: number;
      lost: boolean;
      long?: boolean;
    }
  /** An acquire (or run) that settled without a permit: `error` is the error's name. */
  | { event: "refused"; at: number; call: number; error: string }
  /** The synchronous check of `permit.leaseLost` made right before each write. */
  | { event: "check"; at: number; call: number; valid: boolean }
  /** The work under the permit is done: release() (or run's return) starts. */
  | { event: "release"; at: number; call: number }
  /** release() or run() settled: "resolved", or the error's name. */
  | { event: "exit"; at: number; call: number; outcome: string }
  | { event: "rate"; at: number; admittedAt: number }
  /** A rate acquire that settled without admission (the error's name; TimeoutError and aborts at the end are not logged). */
  | { event: "rate-refused"; at: number; error: string }
  | { event: "freezing"; at: number }
  | { event: "dying"; at: number; holding: number; queued: number }
  /** The end of the run: promises started and not settled (after a bounded wait for them). */
  | { event: "done"; at: number; outstanding: number; timeouts: number };

/** One process of the run, as the parent saw it. */
export interface WorkerRecord {
  label: string;
  lines: WorkerEvent[];
  /** When it was killed (SIGKILL), if it was. */
  killedAt?: number;
  /** Started with the run and ran to its end (neither killed nor a replacement). */
  wholeRun: boolean;
  /** Periods it was stopped (SIGSTOP to SIGCONT). */
  frozen: { from: number; to: number }[];
}

/** One write as the fenced resource recorded it, in arrival order. */
export interface ResourceWrite {
  at: number;
  worker: string;
  call: number;
  token: number;
  /** The permit's fencing slots; undefined when the library gives none (one global slot then). */
  slots?: number[];
  /** What the writer's check said right before the write. */
  believedValid: boolean;
  accepted: boolean;
  /**
   * For refused writes: whether Redis still listed the token as a holder with lease time left when the
   * write arrived (read before the write was answered, so the holder could not release meanwhile);
   * undefined when Redis could not be asked.
   */
  heldByRedis?: boolean;
}

export type FaultKind =
  | "freeze"
  | "kill-holding"
  | "kill-queued"
  | "cut-keep"
  | "cut-drop"
  | "restart"
  | "restart-cut"
  | "redis-pause"
  | "flush";

/** One injected fault: from `at` until `end` (SIGCONT, restore, resume, server up, FLUSHALL's reply; `at` for a kill). */
export interface FaultRecord {
  kind: FaultKind;
  at: number;
  end: number;
  /** The worker it hit, for faults of one process. */
  target?: string;
  /**
   * A process killed with callers queued that Redis had just granted to, in the instant of its death (a
   * holder of the dead process found in Redis right after it died, though it held nothing): that grant
   * cannot be told from one to a live process and comes back with the lease (docs/redis.md, "Dead waiters,
   * exactly"), so its bound is the lease's.
   */
  raced?: boolean;
  /** When the target was served again, if later than `end` (a restart while it was cut off: its restore). */
  targetEnd?: number;
}

export interface FaultRunConfig {
  capacity: number;
  leaseTtl: number;
  /** The rate limiter's one limit (a token bucket: at most burst + limit / interval × span). */
  rate: { limit: number; interval: number; burst: number };
  /** The longest an acquire may wait (its timeout), in ms. */
  acquireTimeout: number;
}

export interface FaultRun {
  config: FaultRunConfig;
  startedAt: number;
  endedAt: number;
  /**
   * Times the parent's event loop stood still for more than 100 ms. The parent forwards the proxied
   * workers' traffic and is the fenced resource: while it stalls, so do they (the machine is shared).
   */
  stalls: { at: number; ms: number }[];
  /** "per-slot" (FencingGuard) or "global" (fallback: the old "refuse lower than the highest seen"). */
  guard: "per-slot" | "global";
  workers: WorkerRecord[];
  writes: ResourceWrite[];
  faults: FaultRecord[];
}

/** A permit's life, joined from one worker's lines. */
export interface PermitLife {
  worker: string;
  call: number;
  weight: number;
  token: number;
  slots?: number[];
  kind: "acquire" | "run";
  enter: number;
  lostAtEnter: boolean;
  lastValidCheck?: number;
  firstLostCheck?: number;
  release?: number;
  exit?: number;
  outcome?: string;
  /** When the work under it stopped: release, first lost check, its process frozen or killed. */
  workEnd: number;
}

/** An interval that holds `weight` from `start` (inclusive) to `end` (exclusive). */
export interface Held {
  start: number;
  end: number;
  weight: number;
}

/** The largest total weight held at one instant. [start, end) intervals that touch do not overlap. */
export function peakWeight(intervals: readonly Held[]): number {
  return peak(intervals).weight;
}

/** The largest total weight held at one instant, and the first instant it was held. */
export function peak(intervals: readonly Held[]): { weight: number; at: number } {
  const events: [number, number][] = [];
  for (const { start, end, weight } of intervals) if (end > start) events.push([start, weight], [end, -weight]);
  // At equal times, ends before starts.
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let inside = 0;
  let most = { weight: 0, at: Number.NaN };
  for (const [at, delta] of events) {
    inside += delta;
    if (inside > most.weight) most = { weight: inside, at };
  }
  return most;
}

/** The parent's stalls, as a figure: "2 stalls of the parent, longest 340 ms (at restart +12 ms)". */
export function stallsFigure(run: FaultRun): string {
  const stalls = run.stalls ?? [];
  if (stalls.length === 0) return "no stall of the parent over 100 ms";
  const longest = stalls.reduce((a, b) => (b.ms > a.ms ? b : a));
  return `${stalls.length} stalls of the parent over 100 ms, longest ${Math.round(longest.ms)} ms (at ${afterFault(run, longest.at)})`;
}

/** Names the first fault between `from` and `to` ("flush"), else the latest before `from`. */
export function faultDuring(run: FaultRun, from: number, to: number): string {
  const during = run.faults.find((fault) => fault.at >= from && fault.at <= to);
  if (during === undefined) return `after ${afterFault(run, from)}`;
  return `through ${during.kind}${during.target === undefined ? "" : ` (${during.target})`}`;
}

/** Names the latest fault at or before `at`, and how long before: "freeze (w0) +512 ms". */
export function afterFault(run: FaultRun, at: number): string {
  let latest: FaultRecord | undefined;
  for (const fault of run.faults) if (fault.at <= at && (latest === undefined || fault.at > latest.at)) latest = fault;
  if (latest === undefined) return `before any fault (+${Math.round(at - run.startedAt)} ms into the run)`;
  const target = latest.target === undefined ? "" : ` (${latest.target})`;
  return `${latest.kind}${target} +${Math.round(at - latest.at)} ms`;
}

/** Joins each worker's lines into permit lives (one per grant). */
export function permitLives(run: FaultRun): PermitLife[] {
  const lives: PermitLife[] = [];
  for (const worker of run.workers) {
    const kinds = new Map<number, "acquire" | "run">();
    const byCall = new Map<number, PermitLife>();
    for (const line of worker.lines) {
      if (line.event === "acquire") kinds.set(line.call, line.kind);
      if (line.event === "enter") {
        const life: PermitLife = {
          worker: worker.label,
          call: line.call,
          weight: line.weight,
          token: line.token,
          kind: kinds.get(line.call) ?? "acquire",
          enter: line.at,
          lostAtEnter: line.lost,
          workEnd: Number.POSITIVE_INFINITY,
        };
        if (line.slots !== undefined) life.slots = line.slots;
        byCall.set(line.call, life);
        lives.push(life);
        continue;
      }
      if (!("call" in line)) continue;
      const life = byCall.get(line.call);
      if (life === undefined) continue;
      if (line.event === "check" && line.valid) life.lastValidCheck = line.at;
      if (line.event === "check" && !line.valid) life.firstLostCheck ??= line.at;
      if (line.event === "release") life.release = line.at;
      if (line.event === "exit") {
        life.exit = line.at;
        life.outcome = line.outcome;
      }
    }
    const processEnd = worker.killedAt ?? run.endedAt;
    for (const life of byCall.values()) {
      const freeze = worker.frozen.find((period) => period.from >= life.enter && period.from < life.workEnd);
      life.workEnd = Math.min(
        life.release ?? processEnd,
        life.firstLostCheck ?? Number.POSITIVE_INFINITY,
        freeze?.from ?? Number.POSITIVE_INFINITY,
        processEnd,
      );
    }
  }
  return lives;
}

/** Time windows in which Redis lost its state without a restart (FLUSHALL): one lease from the flush. */
function flushWindows(run: FaultRun): { from: number; to: number }[] {
  return run.faults
    .filter((fault) => fault.kind === "flush")
    .map((fault) => ({ from: fault.at, to: fault.at + run.config.leaseTtl }));
}

/** Clips intervals to what lies outside (or inside) `windows`. */
function clip(intervals: readonly Held[], windows: readonly { from: number; to: number }[], inside: boolean): Held[] {
  if (inside) {
    return windows.flatMap((window) =>
      intervals.map((held) => ({
        start: Math.max(held.start, window.from),
        end: Math.min(held.end, window.to),
        weight: held.weight,
      })),
    );
  }
  let pieces = [...intervals];
  for (const window of windows) {
    pieces = pieces.flatMap((held) => [
      { start: held.start, end: Math.min(held.end, window.from), weight: held.weight },
      { start: Math.max(held.start, window.to), end: held.end, weight: held.weight },
    ]);
  }
  return pieces.filter((held) => held.end > held.start);
}

export interface OverlapFigures {
  /** Peak weight of holders who believed their lease valid ([enter, last valid check]), outside flush windows. */
  believed: number;
  /** When that peak was first reached. */
  believedAt: number;
  /** The same inside the lease after a FLUSHALL, where the docs allow over-admission. */
  believedInFlush: number;
  /** The peak between each fault and the next (the first window starts with the run). */
  byFault: { fault: string; peak: number }[];
  /** Peak weight of [enter, exit] intervals, for reference (a frozen holder counts all along). */
  naive: number;
}

/** Check 1: never more than the capacity held by holders not told they lost their lease. */
export function overlapFigures(run: FaultRun, lives: readonly PermitLife[]): OverlapFigures {
  const believed = lives.map((life) => ({
    start: life.enter,
    // The last check that said valid is the last instant the holder acted on a valid lease (it wrote then).
    end: life.lastValidCheck ?? life.enter,
    weight: life.weight,
  }));
  const killedAt = new Map(run.workers.map((worker) => [worker.label, worker.killedAt ?? run.endedAt]));
  const naive = lives.map((life) => ({
    start: life.enter,
    end: life.exit ?? (killedAt.get(life.worker) as number),
    weight: life.weight,
  }));
  const windows = flushWindows(run);
  const outside = clip(believed, windows, false);
  const { weight, at } = peak(outside);
  const starts = [run.startedAt, ...run.faults.map((fault) => fault.at), Number.POSITIVE_INFINITY];
  const byFault = starts.slice(0, -1).map((from, index) => ({
    fault: index === 0 ? "none" : afterFault(run, from).replace(/ \+\d+ ms$/, ""),
    peak: peakWeight(clip(outside, [{ from, to: starts[index + 1] as number }], true)),
  }));
  return {
    believed: weight,
    believedAt: at,
    byFault,
    believedInFlush: peakWeight(clip(believed, windows, true)),
    naive: peakWeight(naive),
  };
}

export interface FencingFigures {
  guard: "per-slot" | "global";
  accepted: number;
  refused: number;
  /** Accepted although a higher token had been accepted on one of its slots before: must be 0. */
  staleAccepted: number;
  /** Refused although no higher token had been accepted on any of its slots (the guard misapplied its rule). */
  freshRefused: number;
  /** Refused although the writer's check said valid and Redis still held its lease: must be 0. */
  validRefused: number;
  /** Refused, the writer's check said valid, Redis no longer held the lease: a holder not told. */
  untoldRefused: number;
  /** Refused writes Redis could not be asked about. */
  unknownRefused: number;
}

/**
 * Check 2, recomputed from the resource's log: per slot, the highest token accepted so far; a write
 * below it on any of its slots is stale and must have been refused. Writes without slots share one.
 */
export function fencingFigures(run: FaultRun): FencingFigures {
  const highest = new Map<string, number>();
  const figures: FencingFigures = {
    guard: run.guard,
    accepted: 0,
    refused: 0,
    staleAccepted: 0,
    freshRefused: 0,
    validRefused: 0,
    untoldRefused: 0,
    unknownRefused: 0,
  };
  for (const write of run.writes) {
    const slots = write.slots?.map(String) ?? ["global"];
    const stale = slots.some((slot) => (highest.get(slot) ?? Number.NEGATIVE_INFINITY) > write.token);
    if (write.accepted) {
      figures.accepted++;
      if (stale) figures.staleAccepted++;
      for (const slot of slots) highest.set(slot, Math.max(highest.get(slot) ?? Number.NEGATIVE_INFINITY, write.token));
      continue;
    }
    figures.refused++;
    if (!stale) figures.freshRefused++;
    if (write.heldByRedis === undefined) figures.unknownRefused++;
    else if (write.believedValid && write.heldByRedis) figures.validRefused++;
    else if (write.believedValid) figures.untoldRefused++;
  }
  return figures;
}

export interface TellingFigures {
  /** Permits whose lease was lost (a check said so, or a write found Redis no longer held it). */
  lost: number;
  /** ...of which release() or run() still resolved: must be 0. */
  resolvedAfterLoss: number;
  /** Grants whose `leaseLost` was already true when handed over (the issue saw aborted signals). */
  grantedLost: number;
  /** Exits by outcome. */
  outcomes: Record<string, number>;
}

/** How holders were told: release() and run() must report a lost lease whenever Redis or the deadline says so. */
export function tellingFigures(run: FaultRun, lives: readonly PermitLife[]): TellingFigures {
  const droppedByRedis = new Set(
    run.writes.filter((write) => write.heldByRedis === false).map((write) => `${write.worker}/${write.call}`),
  );
  const figures: TellingFigures = { lost: 0, resolvedAfterLoss: 0, grantedLost: 0, outcomes: {} };
  for (const life of lives) {
    if (life.lostAtEnter) figures.grantedLost++;
    if (life.outcome !== undefined) figures.outcomes[life.outcome] = (figures.outcomes[life.outcome] ?? 0) + 1;
    const lost =
      life.lostAtEnter || life.firstLostCheck !== undefined || droppedByRedis.has(`${life.worker}/${life.call}`);
    if (!lost) continue;
    figures.lost++;
    if (life.outcome === "resolved") figures.resolvedAfterLoss++;
  }
  return figures;
}

export interface SettledFigures {
  /** Promises still pending at each surviving worker's end (after a bounded wait): must be 0. */
  outstanding: number;
  /** Surviving workers that never reported their end. */
  silent: string[];
  /** The longest an acquire took to settle. */
  longestWaitMs: number;
  /** Callers served out of order: Redis granted a later caller of the same process first. */
  overtaken: number;
  /**
   * Callers lost: timed out, or still waiting a lease after a later caller of their own process was
   * served (a requeue after a lost lease takes one check-in, a third of a lease; this one was forgotten).
   */
  lost: {
    worker: string;
    call: number;
    asked: number;
    settled: number;
    outcome: string;
    token?: number;
    overtakenBy: number;
    /** The first later caller served before it: its call, token, ask and grant. */
    passer?: { call: number; token?: number; asked: number; granted: number };
  }[];
}

/** One acquire of a worker: from the ask to its grant, its refusal (an error's name), or `pending` at `end`. */
interface Wait {
  call: number;
  from: number;
  to: number;
  outcome: string;
  /** The grant's fencing token: tokens follow the order in which Redis granted. */
  token?: number;
}

/** The waits of one worker's callers; a wait that never settled runs to `end` (the process's end). */
function waitsOf(worker: WorkerRecord, end: number): Wait[] {
  const started = new Map<number, number>();
  const waits: Wait[] = [];
  for (const line of worker.lines) {
    if (line.event === "acquire") started.set(line.call, line.at);
    if (line.event !== "enter" && line.event !== "refused") continue;
    const from = started.get(line.call);
    started.delete(line.call);
    if (from === undefined) continue;
    if (line.event === "enter")
      waits.push({ call: line.call, from, to: line.at, outcome: "granted", token: line.token });
    else waits.push({ call: line.call, from, to: line.at, outcome: line.error });
  }
  for (const [call, from] of started) waits.push({ call, from, to: end, outcome: "pending" });
  return waits;
}

/** Checks 3 and 3b: every promise settled; no caller lost or passed by later callers of its own process. */
export function settledFigures(run: FaultRun): SettledFigures {
  const figures: SettledFigures = { outstanding: 0, silent: [], longestWaitMs: 0, overtaken: 0, lost: [] };
  for (const worker of run.workers) {
    const waits = waitsOf(worker, worker.killedAt ?? run.endedAt);
    const grants = waits.filter((wait) => wait.outcome === "granted");
    for (const wait of waits) {
      if (wait.outcome !== "pending") figures.longestWaitMs = Math.max(figures.longestWaitMs, wait.to - wait.from);
      // Passed: Redis granted a later caller first (a lower token); or, while this one never was, at all.
      // Two grants in Redis' order can still arrive the other way round by a millisecond, one by notice
      // and one in a reply, on two connections: that is no passing, and the tokens tell them apart.
      const passers = grants.filter(
        (other) =>
          other.from > wait.from &&
          (wait.token === undefined ? other.to < wait.to : (other.token as number) < wait.token),
      );
      if (passers.length > 0) figures.overtaken++;
      const firstPassed = Math.min(...passers.map((other) => other.to));
      if (wait.to - firstPassed > run.config.leaseTtl || wait.outcome === "TimeoutError") {
        const { call, from: asked, to: settled, outcome, token } = wait;
        const first = passers.find((other) => other.to === firstPassed);
        const passer = first && { call: first.call, token: first.token, asked: first.from, granted: first.to };
        figures.lost.push({
          worker: worker.label,
          call,
          asked,
          settled,
          outcome,
          token,
          overtakenBy: passers.length,
          passer,
        });
      }
    }
    if (worker.killedAt !== undefined) continue;
    const done = worker.lines.find((line) => line.event === "done");
    if (done === undefined) figures.silent.push(worker.label);
    else figures.outstanding += done.outstanding;
  }
  return figures;
}

/** How long after a fault capacity may stay short while callers wait. */
export interface RecoveryBounds {
  /** A holder killed, frozen or cut off: its lease must run out first. */
  lease: number;
  /** A process killed with callers queued: its grants come back fast (not a lease). */
  deadWaiter: number;
  /** After a restart, counted from the server's start: the restart guard (a lease, plus up to 2 s). */
  restart: number;
  /** After FLUSHALL: the next check-in of the waiting processes. */
  flush: number;
}

export interface Recovery {
  kind: FaultKind;
  target?: string;
  /** The longest stretch after the fault with less than the capacity working while callers waited. */
  ms: number;
  bound: number;
}

/**
 * Stretches during which the weight held by working permits (alive, not frozen, not told lost, not
 * released) was below the capacity while at least one caller waited.
 */
export function shortStretches(run: FaultRun, lives: readonly PermitLife[]): { from: number; to: number }[] {
  // [time, change of held weight, change of waiting callers]
  const events: [number, number, number][] = [];
  for (const life of lives) events.push([life.enter, life.weight, 0], [life.workEnd, -life.weight, 0]);
  for (const worker of run.workers) {
    for (const { from, to } of waitsOf(worker, worker.killedAt ?? run.endedAt)) events.push([from, 0, 1], [to, 0, -1]);
  }
  events.sort((a, b) => a[0] - b[0]);
  const stretches: { from: number; to: number }[] = [];
  let held = 0;
  let waiting = 0;
  let since: number | undefined;
  for (let index = 0; index < events.length; ) {
    const at = (events[index] as [number, number, number])[0];
    // Everything at one instant applies together: a hand-off (release and grant at once) is no stretch.
    for (; index < events.length && (events[index] as [number, number, number])[0] === at; index++) {
      const [, weight, waiter] = events[index] as [number, number, number];
      held += weight;
      waiting += waiter;
    }
    const short = held < run.config.capacity && waiting > 0;
    if (short && since === undefined) since = at;
    if (!short && since !== undefined) {
      stretches.push({ from: since, to: at });
      since = undefined;
    }
  }
  if (since !== undefined) stretches.push({ from: since, to: run.endedAt });
  return stretches;
}

/** Check 4: capacity back after each fault within its bound. */
export function recoveries(run: FaultRun, lives: readonly PermitLife[], bounds: RecoveryBounds): Recovery[] {
  const stretches = shortStretches(run, lives);
  return run.faults.map((fault) => {
    const bound = fault.raced === true ? bounds.lease : boundOf(fault.kind, bounds);
    // A restart is counted from the server's start (the guard's promise); a frozen Redis from its resume.
    const from =
      fault.kind === "restart" || fault.kind === "restart-cut" || fault.kind === "redis-pause" ? fault.end : fault.at;
    let ms = 0;
    for (const stretch of stretches) {
      if (stretch.to <= from || stretch.from >= from + bound + 1_000) continue;
      ms = Math.max(ms, stretch.to - Math.max(stretch.from, from));
    }
    const recovery: Recovery = { kind: fault.kind, ms, bound };
    if (fault.target !== undefined) recovery.target = fault.target;
    return recovery;
  });
}

function boundOf(kind: FaultKind, bounds: RecoveryBounds): number {
  if (kind === "kill-queued") return bounds.deadWaiter;
  if (kind === "restart" || kind === "restart-cut") return bounds.restart;
  if (kind === "flush") return bounds.flush;
  return bounds.lease;
}

export interface FairnessFigures {
  /** Grants per surviving process outside the windows where one process was frozen or cut off. */
  grants: Record<string, number>;
  /** min / max of `grants`. */
  ratio: number;
  /** min / max over the whole run, windows included (for reference). */
  rawRatio: number;
}

/**
 * Check 5: no process starved. Compared over the processes that lived through the whole run, outside
 * the windows where one of them was frozen or cut off (plus a lease after), where that one getting
 * fewer grants is its due, not starvation; restarts and flushes stay in.
 */
export function fairnessFigures(run: FaultRun, lives: readonly PermitLife[]): FairnessFigures {
  const outages = run.faults
    .filter((fault) => ["freeze", "cut-keep", "cut-drop", "restart-cut"].includes(fault.kind))
    .map((fault) => ({ from: fault.at, to: (fault.targetEnd ?? fault.end) + run.config.leaseTtl }));
  const survivors = run.workers
    .filter((worker) => worker.wholeRun && worker.killedAt === undefined)
    .map((worker) => worker.label);
  const grants: Record<string, number> = {};
  const raw: Record<string, number> = {};
  for (const label of survivors) {
    grants[label] = 0;
    raw[label] = 0;
  }
  for (const life of lives) {
    if (!(life.worker in grants)) continue;
    raw[life.worker] = (raw[life.worker] as number) + 1;
    if (outages.some((window) => life.enter >= window.from && life.enter < window.to)) continue;
    grants[life.worker] = (grants[life.worker] as number) + 1;
  }
  const ratio = (counts: Record<string, number>) => {
    const values = Object.values(counts);
    return values.length === 0 ? 1 : Math.min(...values) / Math.max(...values, 1);
  };
  return { grants, ratio: ratio(grants), rawRatio: ratio(raw) };
}

export interface RateWindow {
  from: number;
  to: number;
  admitted: number;
  /** What one token bucket promises for that span: burst + limit / interval × span. */
  promised: number;
  /** Losses of Redis' state (restart, flush) the window may span. */
  losses: number;
}

export interface RateFigures {
  admitted: number;
  /** The window with the most admissions above the promise, among windows within one Redis lifetime. */
  worst: RateWindow | undefined;
  /** The same among windows that may span a restart or flush (the bucket's state was lost there). */
  worstSpanning: RateWindow | undefined;
  /**
   * Admissions above what the docs promise across losses: a bucket starts full again after each, so
   * one more burst per loss spanned. Must be <= 0.
   */
  worstExcessAcrossLosses: number;
}

/** Admissions above one bucket's promise for the window. */
export function rateExcess(window: RateWindow | undefined): number {
  return window === undefined ? Number.NEGATIVE_INFINITY : window.admitted - window.promised;
}

/** A token bucket's promise: at most `burst + limit / interval × span` admissions in any span (ms). */
export interface BucketPromise {
  limit: number;
  interval: number;
  burst: number;
}

/** A stretch of time in which Redis' state may have been lost (a restart's down time, a FLUSHALL's round trip). */
export interface StateLoss {
  from: number;
  to: number;
}

/**
 * Admitted starts against one token bucket's promise, over every window between two admissions of
 * `times` (Redis server time, ms, any order). A window that may span a loss of Redis' state is judged
 * apart, against one more burst per loss: a bucket starts full again after each.
 */
export function bucketFigures(
  admittedAt: readonly number[],
  { limit, interval, burst }: BucketPromise,
  losses: readonly StateLoss[],
): RateFigures {
  const rate = limit / interval;
  const times = [...admittedAt].sort((a, b) => a - b);
  const figures: RateFigures = {
    admitted: times.length,
    worst: undefined,
    worstSpanning: undefined,
    worstExcessAcrossLosses: Number.NEGATIVE_INFINITY,
  };
  for (let i = 0; i < times.length; i++) {
    const from = times[i] as number;
    for (let j = i; j < times.length; j++) {
      const to = times[j] as number;
      const spanned = losses.filter((loss) => loss.from <= to && loss.to >= from).length;
      const window: RateWindow = {
        from,
        to,
        admitted: j - i + 1,
        // One µs more of span: Redis' clock counts whole µs, and an epoch time in ms (~1.8e12) holds a
        // µs only to a quarter of one, so an admission exactly on the bucket's boundary could show as
        // 0.00002 above it.
        promised: burst + rate * (to - from + 0.001),
        losses: spanned,
      };
      const excess = rateExcess(window);
      figures.worstExcessAcrossLosses = Math.max(figures.worstExcessAcrossLosses, excess - spanned * burst);
      if (spanned === 0 && excess > rateExcess(figures.worst)) figures.worst = window;
      if (spanned > 0 && excess > rateExcess(figures.worstSpanning)) figures.worstSpanning = window;
    }
  }
  return figures;
}

/** The stretches of a run in which Redis' state may have been lost: restarts (stop to start) and flushes. */
export function stateLosses(faults: readonly FaultRecord[]): StateLoss[] {
  return faults
    .filter((fault) => fault.kind === "flush" || fault.kind === "restart" || fault.kind === "restart-cut")
    .map((fault) => ({ from: fault.at, to: fault.end }));
}

/**
 * Check 6: admitted starts never exceed a token bucket's promise in any window: at most
 * `burst + limit / interval × span` admissions in a span, over every window between two admissions.
 * A window that may span a loss of Redis' state (from the restart's stop to the server's start; from
 * sending FLUSHALL to its reply) is judged apart, against one more burst per loss.
 */
export function rateFigures(run: FaultRun): RateFigures {
  const times = run.workers.flatMap((worker) =>
    worker.lines.flatMap((line) => (line.event === "rate" ? [line.admittedAt] : [])),
  );
  return bucketFigures(times, run.config.rate, stateLosses(run.faults));
}

export interface Figures {
  grants: number;
  writes: number;
  overlap: OverlapFigures;
  fencing: FencingFigures;
  telling: TellingFigures;
  settled: SettledFigures;
  recoveries: Recovery[];
  fairness: FairnessFigures;
  rate: RateFigures;
}

/** Every figure of a run. */
export function figuresOf(run: FaultRun, bounds: RecoveryBounds): Figures {
  const lives = permitLives(run);
  return {
    grants: lives.length,
    writes: run.writes.length,
    overlap: overlapFigures(run, lives),
    fencing: fencingFigures(run),
    telling: tellingFigures(run, lives),
    settled: settledFigures(run),
    recoveries: recoveries(run, lives, bounds),
    fairness: fairnessFigures(run, lives),
    rate: rateFigures(run),
  };
}

/** One check's verdict, with the figure that decided it and its main number (for medians over runs). */
export interface Verdict {
  check: string;
  pass: boolean;
  value: number;
  figure: string;
}

/** The checks of the issue, each as pass/fail with its figure. */
export function verdicts(run: FaultRun, figures: Figures): Verdict[] {
  const { capacity, acquireTimeout } = run.config;
  const { overlap, fencing, telling, settled, fairness, rate } = figures;
  const over = (window: RateWindow | undefined) =>
    window === undefined
      ? "none"
      : `${window.admitted} in ${Math.round(window.to - window.from)} ms (one bucket promises ${window.promised.toFixed(2)})`;
  return [
    {
      check: "1 believed-valid holders <= capacity",
      pass: overlap.believed <= capacity,
      value: overlap.believed,
      figure: `peak ${overlap.believed} of ${capacity}${
        overlap.believed > capacity
          ? ` first at ${afterFault(run, overlap.believedAt)}; above ${capacity} after ${overlap.byFault
              .filter((window) => window.peak > capacity)
              .map((window) => `${window.fault}: ${window.peak}`)
              .join(", ")}`
          : ""
      } (in the lease after FLUSHALL ${overlap.believedInFlush}; naive [enter, exit] ${overlap.naive})`,
    },
    {
      check: "1b lost leases reported by release/run",
      pass: telling.resolvedAfterLoss === 0,
      value: telling.resolvedAfterLoss,
      figure: `${telling.resolvedAfterLoss} of ${telling.lost} lost permits resolved; ${telling.grantedLost} granted already lost; exits ${JSON.stringify(telling.outcomes)}`,
    },
    {
      check: "2a no stale write accepted",
      pass: fencing.staleAccepted === 0 && fencing.freshRefused === 0,
      value: fencing.staleAccepted + fencing.freshRefused,
      figure: `${fencing.guard}: ${fencing.accepted} accepted, ${fencing.refused} refused, ${fencing.staleAccepted} stale accepted, ${fencing.freshRefused} fresh refused`,
    },
    {
      check: "2b no valid holder refused",
      pass: fencing.validRefused === 0,
      value: fencing.validRefused,
      figure: `${fencing.validRefused} valid refused; ${fencing.untoldRefused} refused from holders not told; ${fencing.unknownRefused} unknown`,
    },
    {
      check: "3 every promise settled",
      pass: settled.outstanding === 0 && settled.silent.length === 0 && settled.longestWaitMs <= acquireTimeout + 1_000,
      value: settled.outstanding + settled.silent.length,
      figure: `${settled.outstanding} outstanding, silent [${settled.silent.join(",")}], longest wait ${Math.round(settled.longestWaitMs)} ms`,
    },
    {
      check: "3b no caller lost (timed out, or left behind)",
      pass: settled.lost.length === 0,
      value: settled.lost.length,
      figure: `${settled.lost.length} lost${settled.lost.map((lost) => `; ${lost.worker} #${lost.call} waited ${Math.round(lost.settled - lost.asked)} ms ${faultDuring(run, lost.asked, lost.settled)}, ${lost.outcome}${lost.token === undefined ? "" : ` (token ${lost.token})`}, passed by ${lost.overtakenBy}${passerFigure(run, lost)}`).join("")}`,
    },
    {
      check: "3c FIFO within each process (not asserted)",
      pass: settled.overtaken === 0,
      value: settled.overtaken,
      figure: `${settled.overtaken} callers passed by a later caller of their own process`,
    },
    ...figures.recoveries.map((recovery) => ({
      check: `4 capacity back after ${recovery.kind}${recovery.target === undefined ? "" : ` (${recovery.target})`}`,
      pass: recovery.ms <= recovery.bound,
      value: Math.round(recovery.ms),
      figure: `${Math.round(recovery.ms)} ms (bound ${Math.round(recovery.bound)} ms)`,
    })),
    {
      check: "5 no process starved (min/max >= 0.8)",
      pass: fairness.ratio >= 0.8,
      value: Number(fairness.ratio.toFixed(2)),
      figure: `${fairness.ratio.toFixed(2)} ${JSON.stringify(fairness.grants)} (whole run ${fairness.rawRatio.toFixed(2)})`,
    },
    {
      check: "6 rate: no window above the promise",
      pass: rateExcess(rate.worst) <= 1e-9,
      value: Number(rateExcess(rate.worst).toFixed(3)),
      figure: `${rate.admitted} admitted; worst window within one Redis lifetime ${over(rate.worst)}`,
    },
    {
      check: "6b rate across restarts/flushes: one burst more each",
      pass: rate.worstExcessAcrossLosses <= 1e-9,
      value: Number(rate.worstExcessAcrossLosses.toFixed(3)),
      figure: `worst spanning ${over(rate.worstSpanning)}; above one more burst per loss: ${rate.worstExcessAcrossLosses.toFixed(2)}`,
    },
  ];
}

/** The first caller that passed a lost one, as a figure: " (first: #23, token 812, asked +40 ms, granted +95 ms)". */
function passerFigure(run: FaultRun, lost: SettledFigures["lost"][number]): string {
  const { passer } = lost;
  if (passer === undefined) return "";
  const after = (at: number) => `${at - lost.asked >= 0 ? "+" : ""}${Math.round(at - lost.asked)} ms`;
  return ` (first: #${passer.call}, token ${passer.token}, asked ${after(passer.asked)}, granted ${after(passer.granted)} = ${afterFault(run, passer.granted)})`;
}
