/**
 * A discrete-event simulation of issue 18's benchmark, on simulated time: a client with unbounded demand
 * whose concurrency is an adaptive limit, against an overloaded service (C served at once in a service
 * time, a bounded queue behind them, a refusal beyond it, C changing mid-run), with a network delay and
 * the client's own event-loop delay (random, seeded) between them. It drives the same `LimitEstimator`
 * (and so the same algorithm code) an `AdaptiveLimiter` does, one sample per finished attempt, and
 * measures what bench/adaptive.mjs measures: throughput per 500 ms, refusals, the service's p99 latency,
 * the limit over time. Deterministic and fast (20 simulated seconds in a few ms), so the algorithms'
 * behaviour can be tested, and their causes seen, apart from a noisy machine's timing.
 */
import { type LimitAlgorithm, type LimitAlgorithmName, limitAlgorithm } from "../../src/core/limit-algorithms.js";
import { LimitEstimator } from "../../src/core/limit-estimator.js";
import { seededRandom } from "../../src/testing/mock-server.js";

export interface SimulationOptions {
  algorithm: LimitAlgorithmName | (() => LimitAlgorithm);
  /** [from ms, C]: the service's capacity over time. Default [[0, 16]]. */
  capacities?: [number, number][];
  /** The service's queue bound. Default: the first C. */
  queue?: number;
  serviceMs?: number;
  /**
   * How late the service's timer fires, on top of `serviceMs`: the mean of an exponential, ms (a Node
   * server's `setTimeout` fires 0.1-2 ms late). Default 0. p99 figures are relative to the unloaded
   * latency, `serviceMs` plus the median of this.
   */
  serviceJitterMs?: number;
  runMs?: number;
  /** One-way network delay, ms. Default 0.25. */
  networkMs?: number;
  /** The client's delay handling each response (its event loop): mean of an exponential, ms. Default 1. */
  clientDelayMs?: number;
  /** Chance that a response waits a long stall (GC, another process on the core) instead. Default 0.002. */
  stallChance?: number;
  stallMs?: number;
  /**
   * The client's whole event loop stalling (a busy, shared machine): a stall starts on average every
   * `every` ms and lasts up to `longest` ms; no response is handled during it. Default: none.
   */
  loopStalls?: { every: number; longest: number };
  /**
   * The client's event-loop turn, ms: responses are handled at the end of the turn they arrive in, all
   * together, so the calls sent after them leave as one burst (as a Node client's do). Default 0 (none).
   */
  turnMs?: number;
  min?: number;
  max?: number;
  initial?: number;
  seed?: number;
}

export interface SimulationResult {
  /** Served per 500 ms bin, by when the client got the answer. */
  bins: number[];
  binMs: number;
  attempts: number;
  refused: number;
  /** The service's latency (arrival to answer) of each served request, with when it arrived. */
  served: { at: number; latency: number }[];
  /** [time, limit] every 100 ms. */
  limits: [number, number][];
  /** [time, limit, estimates] at each change of the rounded limit. */
  trace: [number, number, Record<string, number>][];
  estimator: LimitEstimator;
}

type Event = { at: number; seq: number; run: () => void };

export function simulate(options: SimulationOptions): SimulationResult {
  const capacities = options.capacities ?? [[0, 16]];
  const serviceMs = options.serviceMs ?? 20;
  const serviceJitterMs = options.serviceJitterMs ?? 0;
  const runMs = options.runMs ?? 20_000;
  const networkMs = options.networkMs ?? 0.25;
  const clientDelayMs = options.clientDelayMs ?? 1;
  const stallChance = options.stallChance ?? 0.002;
  const stallMs = options.stallMs ?? 15;
  const rand = seededRandom(options.seed ?? 1);
  const algorithm = typeof options.algorithm === "function" ? options.algorithm() : limitAlgorithm(options.algorithm);
  const estimator = new LimitEstimator(options.min ?? 1, options.max ?? 1000, options.initial ?? 10, algorithm);
  const binMs = 500;
  const bins = new Array<number>(Math.ceil(runMs / binMs)).fill(0);
  const served: { at: number; latency: number }[] = [];
  const limits: [number, number][] = [];
  const trace: [number, number, Record<string, number>][] = [];
  estimator.onChange(({ limit }) => trace.push([now, limit, estimator.statistics().estimates]));

  // A binary heap of events by time, then by insertion.
  const heap: Event[] = [];
  let seq = 0;
  let now = 0;
  const less = (a: Event, b: Event) => a.at < b.at || (a.at === b.at && a.seq < b.seq);
  const schedule = (at: number, run: () => void) => {
    heap.push({ at, seq: seq++, run });
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!less(heap[i] as Event, heap[parent] as Event)) break;
      [heap[i], heap[parent]] = [heap[parent] as Event, heap[i] as Event];
      i = parent;
    }
  };
  const pop = (): Event => {
    const top = heap[0] as Event;
    const last = heap.pop() as Event;
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        if (left < heap.length && less(heap[left] as Event, heap[smallest] as Event)) smallest = left;
        if (right < heap.length && less(heap[right] as Event, heap[smallest] as Event)) smallest = right;
        if (smallest === i) break;
        [heap[i], heap[smallest]] = [heap[smallest] as Event, heap[i] as Event];
        i = smallest;
      }
    }
    return top;
  };

  // The service.
  let capacity = (capacities[0] as [number, number])[1];
  const queueBound = options.queue ?? capacity;
  let serving = 0;
  const waiting: (() => void)[] = [];
  const startWaiters = () => {
    while (serving < capacity && waiting.length > 0) {
      serving++;
      (waiting.shift() as () => void)();
    }
  };
  for (const [at, value] of capacities.slice(1)) {
    schedule(at, () => {
      capacity = value;
      startWaiters();
    });
  }
  // The client's event-loop stalls, drawn ahead: [start, end] intervals.
  const loopStalls: [number, number][] = [];
  if (options.loopStalls !== undefined) {
    for (let at = 0; at < runMs + 1_000; ) {
      at += -options.loopStalls.every * Math.log(1 - rand());
      const end = at + options.loopStalls.longest * rand();
      loopStalls.push([at, end]);
      at = end;
    }
  }
  let stallIndex = 0;
  /** When a response that reached the client at `at` is handled: after any stall it fell into. */
  const handledAt = (at: number) => {
    while (stallIndex < loopStalls.length && (loopStalls[stallIndex] as [number, number])[1] < now) stallIndex++;
    for (let i = stallIndex; i < loopStalls.length; i++) {
      const [start, end] = loopStalls[i] as [number, number];
      if (start > at) break;
      if (at <= end) return end;
    }
    return at;
  };
  const turnMs = options.turnMs ?? 0;
  /** The end of the event-loop turn a response that reached the client at `at` falls in. */
  const turnEnd = (at: number) => (turnMs > 0 ? Math.ceil(at / turnMs) * turnMs : at);
  const clientDelay = () => (rand() < stallChance ? stallMs * rand() : -clientDelayMs * Math.log(1 - rand()));

  // The client: unbounded demand, so a free place under the limit is filled at once.
  let inFlight = 0;
  let attempts = 0;
  let refused = 0;
  const answer = (sentAt: number, inFlightAtGrant: number, dropped: boolean) => {
    inFlight--;
    const bin = Math.floor(now / binMs);
    if (!dropped && now < runMs) bins[bin] = (bins[bin] ?? 0) + 1;
    estimator.sample({ latency: now - sentAt, inFlight: inFlightAtGrant, dropped, pending: inFlight });
    fill();
  };
  const send = () => {
    inFlight++;
    attempts++;
    const sentAt = now;
    const atGrant = inFlight;
    schedule(now + networkMs, () => {
      const arrivedAt = now;
      const reply = (dropped: boolean) =>
        schedule(handledAt(turnEnd(now + networkMs) + clientDelay()), () => answer(sentAt, atGrant, dropped));
      const serve = () =>
        schedule(now + serviceMs - serviceJitterMs * Math.log(1 - rand()), () => {
          serving--;
          served.push({ at: arrivedAt, latency: now - arrivedAt });
          startWaiters();
          reply(false);
        });
      if (serving < capacity && waiting.length === 0) {
        serving++;
        serve();
      } else if (waiting.length < queueBound) {
        waiting.push(serve);
      } else {
        refused++;
        reply(true);
      }
    });
  };
  const fill = () => {
    if (now >= runMs) return;
    while (inFlight < estimator.limit) send();
  };
  const sampleLimit = () => {
    limits.push([now, estimator.limit]);
    if (now + 100 < runMs) schedule(now + 100, sampleLimit);
  };
  schedule(0, sampleLimit);
  fill();
  while (heap.length > 0) {
    const event = pop();
    now = event.at;
    event.run();
  }
  return { bins, binMs, attempts, refused, served, limits, trace, estimator };
}

/** The figures bench/adaptive.mjs reports, and the targets, from a simulation. */
export function figures(result: SimulationResult, options: SimulationOptions) {
  const capacities = options.capacities ?? [[0, 16]];
  const serviceMs = options.serviceMs ?? 20;
  const runMs = options.runMs ?? 20_000;
  const capacityAt = (at: number) => {
    let value = (capacities[0] as [number, number])[1];
    for (const [from, c] of capacities) if (at >= from) value = c;
    return value;
  };
  const optimumOfBin = (i: number) => (capacityAt(i * result.binMs) / serviceMs) * result.binMs;
  const optimum = result.bins.reduce((sum, _, i) => sum + optimumOfBin(i), 0);
  const throughput = result.bins.reduce((sum, n) => sum + n, 0) / optimum;
  const last = capacities.at(-1) as [number, number];
  // Steady state: from 2 s after the last change (or the start), to the end.
  const steadyFrom = last[0] + 2_000;
  const latencies = result.served
    .filter(({ at }) => at >= steadyFrom)
    .map(({ latency }) => latency)
    .sort((a, b) => a - b);
  // Relative to the unloaded latency: the service time and the median of the timer's lateness.
  const unloaded = serviceMs + (options.serviceJitterMs ?? 0) * Math.LN2;
  const p99 = (latencies[Math.floor(0.99 * (latencies.length - 1))] ?? 0) / unloaded;
  const steadyLimits = result.limits.filter(([at]) => at >= steadyFrom).map(([, limit]) => limit);
  const within = steadyLimits.filter((limit) => Math.abs(limit - last[1]) <= 0.2 * last[1]).length;
  let recovery = Number.NaN;
  if (capacities.length > 1) {
    const from = Math.ceil(last[0] / result.binMs);
    for (let i = from; i + 1 < result.bins.length; i++) {
      const bin = result.bins[i] as number;
      const next = result.bins[i + 1] as number;
      if (bin >= 0.9 * optimumOfBin(i) && next >= 0.9 * optimumOfBin(i + 1)) {
        recovery = ((i - from) * result.binMs) / 1000;
        break;
      }
    }
  }
  let convergence = Number.NaN;
  if (capacities.length > 1) {
    const after = result.limits.filter(([at]) => at >= last[0]);
    const near = ([, limit]: [number, number]) => Math.abs(limit - last[1]) <= 0.2 * last[1];
    for (let i = 0; i + 10 < after.length; i++) {
      if (after.slice(i, i + 10).every(near)) {
        convergence = ((after[i] as [number, number])[0] - last[0]) / 1000;
        break;
      }
    }
  }
  const steadyBins = result.bins.slice(Math.ceil(steadyFrom / result.binMs), Math.floor(runMs / result.binMs));
  const steadyThroughput =
    steadyBins.reduce((sum, n) => sum + n, 0) / (steadyBins.length * (last[1] / serviceMs) * result.binMs);
  return {
    throughput,
    steadyThroughput,
    refused: result.refused / result.attempts,
    p99,
    limitMean: steadyLimits.reduce((sum, n) => sum + n, 0) / steadyLimits.length,
    limitMin: Math.min(...steadyLimits),
    limitMax: Math.max(...steadyLimits),
    limitWithin: within / steadyLimits.length,
    recovery,
    convergence,
  };
}
