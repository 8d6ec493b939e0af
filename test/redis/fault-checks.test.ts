/**
 * The fault suite's checker on small hand-made logs: each check passes a log that keeps the promise and
 * fails one that breaks it, so a green fault run means the promise held, not that the checker is blind.
 */
import { describe, expect, it } from "vitest";
import {
  afterFault,
  type FaultRecord,
  type FaultRun,
  fairnessFigures,
  fencingFigures,
  overlapFigures,
  peakWeight,
  permitLives,
  type ResourceWrite,
  rateFigures,
  recoveries,
  settledFigures,
  tellingFigures,
  type WorkerEvent,
  type WorkerRecord,
} from "./fault-checks.js";

const bounds = { lease: 1_500, deadWaiter: 500, restart: 3_500, flush: 800 };

function worker(label: string, lines: WorkerEvent[], extra: Partial<WorkerRecord> = {}): WorkerRecord {
  return { label, lines, wholeRun: true, frozen: [], ...extra };
}

function run(parts: { workers?: WorkerRecord[]; writes?: ResourceWrite[]; faults?: FaultRecord[] }): FaultRun {
  return {
    config: { capacity: 1, leaseTtl: 1_000, rate: { limit: 10, interval: 1_000, burst: 2 }, acquireTimeout: 8_000 },
    startedAt: 0,
    endedAt: 10_000,
    stalls: [],
    guard: "per-slot",
    workers: parts.workers ?? [],
    writes: parts.writes ?? [],
    faults: parts.faults ?? [],
  };
}

/** A permit's life as a worker logs it: acquire, enter, one check and write per `checks` entry, release, exit. */
function hold(
  call: number,
  token: number,
  times: { asked?: number; enter: number; checks: [number, boolean][]; release: number; exit?: number },
  outcome = "resolved",
): WorkerEvent[] {
  return [
    { event: "acquire", at: times.asked ?? times.enter, call, weight: 1, kind: "acquire" },
    { event: "enter", at: times.enter, call, token, slots: [0], weight: 1, lost: false },
    ...times.checks.map(([at, valid]): WorkerEvent => ({ event: "check", at, call, valid })),
    { event: "release", at: times.release, call },
    { event: "exit", at: times.exit ?? times.release + 1, call, outcome },
  ];
}

function write(at: number, token: number, accepted: boolean, more: Partial<ResourceWrite> = {}): ResourceWrite {
  return { at, worker: "a", call: 1, token, slots: [0], believedValid: true, accepted, ...more };
}

describe("peakWeight", () => {
  it("adds the weights of intervals that overlap; intervals that only touch do not overlap", () => {
    expect(
      peakWeight([
        { start: 0, end: 10, weight: 1 },
        { start: 10, end: 20, weight: 2 },
      ]),
    ).toBe(2);
    expect(
      peakWeight([
        { start: 0, end: 10, weight: 1 },
        { start: 5, end: 20, weight: 2 },
      ]),
    ).toBe(3);
  });
});

describe("check 1: holders who believe their lease valid", () => {
  // A holder frozen from 110 to 2,000; the next holder enters at 1,100, once the lease ran out in Redis.
  const next = worker("b", hold(1, 20, { enter: 1_100, checks: [[1_120, true]], release: 1_140 }));

  it("passes when the thawed holder's first check says lost", () => {
    const frozen = worker("a", hold(1, 10, { enter: 100, checks: [[2_000, false]], release: 2_001 }), {
      frozen: [{ from: 110, to: 2_000 }],
    });
    const figures = overlapFigures(run({ workers: [frozen, next] }), permitLives(run({ workers: [frozen, next] })));
    expect(figures.believed).toBe(1);
    // [enter, exit] overlaps all the same: the reference figure the issue started from.
    expect(figures.naive).toBe(2);
  });

  it("fails when the thawed holder's check still says valid (the issue's frozen holder)", () => {
    const frozen = worker("a", hold(1, 10, { enter: 100, checks: [[2_000, true]], release: 2_001 }), {
      frozen: [{ from: 110, to: 2_000 }],
    });
    const logs = run({ workers: [frozen, next], faults: [{ kind: "freeze", at: 110, end: 2_000, target: "a" }] });
    const figures = overlapFigures(logs, permitLives(logs));
    expect(figures.believed).toBe(2);
    // Reported with the fault it followed, to find it in the logs.
    expect(afterFault(logs, figures.believedAt)).toBe("freeze (a) +990 ms");
    expect(figures.byFault).toEqual([
      { fault: "none", peak: 1 },
      { fault: "freeze (a)", peak: 2 },
    ]);
  });

  it("reports overlap in the lease after a FLUSHALL apart", () => {
    const old = worker("a", hold(1, 10, { enter: 100, checks: [[400, true]], release: 401 }));
    const fresh = worker("b", hold(1, 20, { enter: 300, checks: [[320, true]], release: 321 }));
    const logs = run({ workers: [old, fresh], faults: [{ kind: "flush", at: 250, end: 250 }] });
    const figures = overlapFigures(logs, permitLives(logs));
    expect(figures.believed).toBe(1);
    expect(figures.believedInFlush).toBe(2);
  });
});

describe("check 2: the fenced resource", () => {
  it("counts a write below the highest token accepted on its slot as stale, per slot", () => {
    const figures = fencingFigures(
      run({
        writes: [
          write(1, 10, true),
          write(2, 11, true, { slots: [1] }),
          // Slot 0 has seen 10 only: 10 again is fine.
          write(3, 10, true),
          write(4, 12, true),
          // Stale on slot 0, and the resource accepted it: the failure the check exists for.
          write(5, 11, true),
          write(6, 9, false, { believedValid: false, heldByRedis: false }),
        ],
      }),
    );
    expect(figures).toMatchObject({ accepted: 5, refused: 1, staleAccepted: 1, freshRefused: 0, validRefused: 0 });
  });

  it("counts a refused write of a holder Redis still held as a valid holder refused", () => {
    // The global fallback at capacity 2: holder 10 writes after holder 11, both valid.
    const writes = [
      write(1, 11, true, { slots: undefined }),
      write(2, 10, false, { slots: undefined, heldByRedis: true }),
      write(3, 9, false, { slots: undefined, heldByRedis: false }),
      write(4, 8, false, { slots: undefined }),
    ];
    expect(fencingFigures(run({ writes }))).toMatchObject({
      refused: 3,
      validRefused: 1,
      untoldRefused: 1,
      unknownRefused: 1,
      freshRefused: 0,
    });
  });

  it("counts a refused write that no higher token explains as the guard's own mistake", () => {
    expect(fencingFigures(run({ writes: [write(1, 10, false, { heldByRedis: true })] })).freshRefused).toBe(1);
  });
});

describe("check 1b: release and run report a lost lease", () => {
  it("counts permits whose release resolved after a check said lost, or after Redis dropped them", () => {
    const logs = run({
      workers: [
        worker("a", [
          ...hold(1, 10, { enter: 0, checks: [[10, false]], release: 11 }, "resolved"),
          ...hold(2, 11, { enter: 20, checks: [[30, false]], release: 31 }, "LeaseLostError"),
          ...hold(3, 12, { enter: 40, checks: [[50, true]], release: 51 }, "resolved"),
          ...hold(4, 13, { enter: 60, checks: [[70, true]], release: 71 }, "resolved"),
        ]),
      ],
      writes: [write(70, 13, false, { call: 4, heldByRedis: false })],
    });
    expect(tellingFigures(logs, permitLives(logs))).toMatchObject({ lost: 3, resolvedAfterLoss: 2 });
  });
});

describe("check 3: every promise settled", () => {
  it("fails on promises outstanding at the end or a worker that never reported its end", () => {
    const logs = run({
      workers: [
        worker("a", [{ event: "done", at: 9_000, outstanding: 1, timeouts: 0 }]),
        worker("b", []),
        worker("c", [], { killedAt: 5_000 }),
      ],
    });
    expect(settledFigures(logs)).toMatchObject({ outstanding: 1, silent: ["b"] });
  });

  it("measures the longest wait of an acquire and counts a timeout as a lost caller", () => {
    const logs = run({
      workers: [
        worker("a", [
          { event: "acquire", at: 100, call: 1, weight: 1, kind: "acquire" },
          { event: "refused", at: 8_100, call: 1, error: "TimeoutError" },
          { event: "done", at: 9_000, outstanding: 0, timeouts: 1 },
        ]),
      ],
    });
    expect(settledFigures(logs)).toMatchObject({
      outstanding: 0,
      silent: [],
      longestWaitMs: 8_000,
      lost: [{ worker: "a", call: 1, asked: 100, settled: 8_100, outcome: "TimeoutError", overtakenBy: 0 }],
    });
  });

  it("counts callers passed by later callers of their own process; still waiting a lease later, one is lost", () => {
    // Call 1 asks first and is still waiting at the end, while calls 2 to 9 are served.
    const lines: WorkerEvent[] = [{ event: "acquire", at: 0, call: 1, weight: 1, kind: "acquire" }];
    for (let call = 2; call <= 9; call++)
      lines.push(...hold(call, call, { enter: call * 100, checks: [], release: call * 100 + 50 }));
    const logs = run({ workers: [worker("a", [...lines, { event: "done", at: 9_000, outstanding: 0, timeouts: 0 }])] });
    expect(settledFigures(logs)).toMatchObject({
      overtaken: 1,
      lost: [{ worker: "a", call: 1, asked: 0, settled: 10_000, outcome: "pending", overtakenBy: 8 }],
    });

    // Served in the order asked: nobody passed.
    const inOrder = run({ workers: [worker("a", lines.slice(1))] });
    expect(settledFigures(inOrder)).toMatchObject({ overtaken: 0, lost: [] });
  });
});

describe("check 4: capacity back after a fault", () => {
  /** A holder killed at 100 while another caller waits from 60 until its grant at `grantedAt`. */
  function killedHolder(grantedAt: number): FaultRun {
    return run({
      workers: [
        worker("a", hold(1, 10, { enter: 50, checks: [], release: 5_000 }).slice(0, 2), { killedAt: 100 }),
        worker("b", hold(1, 11, { asked: 60, enter: grantedAt, checks: [], release: grantedAt + 20 })),
      ],
      faults: [{ kind: "kill-holding", at: 100, end: 100, target: "a" }],
    });
  }

  it("measures the time the capacity stayed short while a caller waited", () => {
    const logs = killedHolder(1_100);
    expect(recoveries(logs, permitLives(logs), bounds)).toEqual([
      { kind: "kill-holding", target: "a", ms: 1_000, bound: 1_500 },
    ]);
  });

  it("fails when the capacity comes back after the bound", () => {
    const logs = killedHolder(2_000);
    const [recovery] = recoveries(logs, permitLives(logs), bounds);
    expect(recovery?.ms).toBe(1_900);
    expect(recovery && recovery.ms > recovery.bound).toBe(true);
  });

  it("counts a restart from the server's start", () => {
    const logs = run({
      workers: [worker("b", hold(1, 11, { asked: 0, enter: 2_500, checks: [], release: 2_520 }))],
      faults: [{ kind: "restart", at: 500, end: 1_000 }],
    });
    expect(recoveries(logs, permitLives(logs), bounds)[0]?.ms).toBe(1_500);
  });
});

describe("check 5: no process starved", () => {
  it("compares grants of the processes that lived through the run, outside one's own outage", () => {
    const grants = (label: string, count: number, from = 0) =>
      worker(
        label,
        Array.from({ length: count }, (_, index) =>
          hold(index + 1, index, { enter: from + index * 100, checks: [], release: from + index * 100 + 50 }),
        ).flat(),
      );
    const logs = run({
      workers: [grants("a", 10), grants("b", 7), grants("c", 1, 0), { ...grants("d", 1), wholeRun: false }],
      faults: [],
    });
    logs.workers[2] = { ...(logs.workers[2] as WorkerRecord), killedAt: 500 };
    const figures = fairnessFigures(logs, permitLives(logs));
    expect(figures.grants).toEqual({ a: 10, b: 7 });
    expect(figures.ratio).toBeCloseTo(0.7);

    const cutOff = run({
      workers: [grants("a", 10), grants("b", 6)],
      faults: [{ kind: "cut-keep", at: 600, end: 800, target: "b" }],
    });
    // Grants from 600 to 1,800 (the cut plus a lease) are left out for everyone: a has 6, b has 6.
    expect(fairnessFigures(cutOff, permitLives(cutOff))).toMatchObject({ grants: { a: 6, b: 6 }, ratio: 1 });
  });
});

describe("check 6: rate windows", () => {
  const admitted = (...times: number[]) =>
    worker(
      "a",
      times.map((admittedAt): WorkerEvent => ({ event: "rate", at: admittedAt, admittedAt })),
    );

  it("passes admissions within burst + rate × span and reports the tightest window", () => {
    // Burst 2, 10 per second: 2 at once, then one every 100 ms.
    const { worst } = rateFigures(run({ workers: [admitted(0, 0, 100, 200, 300)] }));
    // Every window from the first admission is exactly at the promise.
    expect((worst?.admitted ?? 0) - (worst?.promised ?? 0)).toBeCloseTo(0);
  });

  it("fails a window with one admission too many", () => {
    const figures = rateFigures(run({ workers: [admitted(0, 0, 50, 200, 300)] }));
    expect(figures.worst).toMatchObject({ from: 0, to: 50, admitted: 3 });
    expect(figures.worst && figures.worst.admitted > figures.worst.promised).toBe(true);
  });

  it("reports windows that span a flush apart: the bucket starts full again there", () => {
    const figures = rateFigures(
      run({
        workers: [admitted(0, 0, 1, 2)],
        faults: [{ kind: "flush", at: 0.5, end: 0.6 }],
      }),
    );
    expect(figures.worst).toMatchObject({ admitted: 2 });
    expect(figures.worstSpanning).toMatchObject({ from: 0, to: 2, admitted: 4, losses: 1 });
    // Two bursts of 2 around one loss: what the docs allow (the bucket starts full again), no more.
    expect(figures.worstExcessAcrossLosses).toBeCloseTo(0);
    const oneMore = rateFigures(
      run({ workers: [admitted(0, 0, 1, 2, 3)], faults: [{ kind: "restart", at: 0.5, end: 0.6 }] }),
    );
    expect(oneMore.worstExcessAcrossLosses).toBeGreaterThan(0.9);
  });
});
