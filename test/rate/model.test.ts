/**
 * Model-based tests of RateLimiter with fast-check's command API on a fake clock: a token bucket on
 * requests and a sliding window on tokens, with concurrency, priorities, costs in several units,
 * settles (extra and refund), pauses, aborts and timeouts, several operations in one tick. After every
 * command: the books (inUse, waiting), one timer while someone waits for time and none otherwise, FIFO
 * within a priority, and each limit's promise counted over the costs as settled.
 */
import fc from "fast-check";
import { RateLimiter, type RatePermit, TimeoutError } from "sluice";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";
import { assertInvariants, batches } from "../support/model.js";

interface Config {
  requests: { limit: number; interval: number; burst: number };
  tokens: { limit: number; interval: number };
  concurrency: number;
  minInterval: number;
}

interface Call {
  id: number;
  priority: number;
  weight: number;
  requests: number;
  tokens: number;
  timeout: number | undefined;
  status: "waiting" | "held" | "released" | "rejected";
  permit?: RatePermit;
  settled: boolean;
  /** Admitted by tryAcquire, recorded at once (an acquire's admission is recorded a tick later). */
  tried?: boolean;
  /** The ledger entry of its start, corrected by a refund. */
  start?: Entry;
}

/** A charge: at `at`, in program order `seq`. */
interface Entry {
  at: number;
  seq: number;
  requests: number;
  tokens: number;
}

class World {
  clock = new FakeClock();
  limiter: RateLimiter;
  calls: Call[] = [];
  controller = new AbortController();
  ledger: Entry[] = [];
  /** Admissions, each checked against the ledger as it was when it happened. */
  admissions: { entry: Entry; id: number }[] = [];
  seq = 0;
  grantOrder: Call[] = [];
  /** Failed expectations inside promise callbacks, rethrown by `check`. */
  errors: unknown[] = [];
  idle: { resolved: boolean }[] = [];
  /** The token bucket's promise holds from its last reconfiguration on (what was spent stays spent). */
  reconfiguredSeq = -1;
  /**
   * Charges the sliding window may have forgotten: when its interval grows, what had left the old
   * window is not counted again (see the report: the log keeps only the old interval's charges). One
   * entry per growth (at or before `at`, made before `seq`); forgetting is for good: a later, longer
   * interval does not bring back what an earlier change dropped.
   */
  tokensForgotten: { at: number; seq: number }[] = [];
  /** A copy: commands change it, and fast-check replays the generated value while shrinking. */
  readonly config: Config;
  constructor(config: Config) {
    this.config = structuredClone(config);
    this.limiter = new RateLimiter({
      limits: [
        { ...config.requests, unit: "requests" },
        { ...config.tokens, unit: "tokens", algorithm: "sliding-window" },
      ],
      concurrency: config.concurrency,
      minInterval: config.minInterval,
      clock: this.clock,
    });
  }
  waitingCalls(): Call[] {
    return this.calls.filter((c) => c.status === "waiting").sort((a, b) => b.priority - a.priority || a.id - b.id);
  }
  admitted(call: Call, permit: RatePermit): void {
    call.status = "held";
    call.permit = permit;
    this.grantOrder.push(call);
    const entry = { at: this.clock.now(), seq: this.seq++, requests: call.requests, tokens: call.tokens };
    // Starts are at least `minInterval` apart.
    const last = this.admissions.at(-1);
    if (last !== undefined) expect(entry.at - last.entry.at).toBeGreaterThanOrEqual(this.config.minInterval - 1e-9);
    this.admissions.push({ entry, id: call.id });
    call.start = entry;
    this.ledger.push(entry);
    this.checkPromise(entry);
  }
  /**
   * Every limit's promise over the spans that end at this admission, for the limits it pays (a limit in
   * debt from a settled extra may exceed its promise, but admits nothing that costs it until it is
   * back within it).
   */
  checkPromise(admission: Entry): void {
    const { requests, tokens } = this.config;
    const before = this.ledger.filter((e) => e.seq <= admission.seq && e.at <= admission.at);
    // Token bucket: over [a, b], at most burst + limit × (b - a) / interval.
    const sinceChange = before.filter((e) => e.seq > this.reconfiguredSeq);
    for (const from of admission.requests > 0 ? sinceChange : []) {
      const spent = sinceChange.filter((e) => e.at >= from.at).reduce((sum, e) => sum + e.requests, 0);
      // Admission times are fractional (a refill time is a quotient): allow for their rounding.
      const promise = requests.burst + (requests.limit * (admission.at - from.at)) / requests.interval + 1e-9;
      expect(spent, `requests admitted in [${from.at}, ${admission.at}]`).toBeLessThanOrEqual(promise);
    }
    // Sliding window: in (b - interval, b], at most limit.
    const inWindow = before
      .filter((e) => this.tokensForgotten.every((forgotten) => e.seq > forgotten.seq || e.at > forgotten.at))
      // The same expression as the window's own expiry, so fractional times round the same way.
      .filter((e) => e.at + tokens.interval > admission.at)
      .reduce((sum, e) => sum + e.tokens, 0);
    if (admission.tokens > 0)
      expect(inWindow, `tokens in the window ending at ${admission.at}`).toBeLessThanOrEqual(tokens.limit);
  }
}

type Op =
  | {
      op: "acquire";
      priority: number;
      weight: number;
      requests: number;
      tokens: number;
      timeout: number | undefined;
      signal: boolean;
    }
  | { op: "release"; pick: number }
  | { op: "abort" }
  | { op: "pause"; ms: number }
  | { op: "concurrency"; value: number }
  | { op: "idle" }
  | { op: "limits"; requests: Config["requests"]; tokens: Config["tokens"] }
  | { op: "try"; weight: number; requests: number; tokens: number };

const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant("acquire" as const),
      priority: fc.integer({ min: 0, max: 1 }),
      weight: fc.integer({ min: 1, max: 2 }),
      requests: fc.integer({ min: 0, max: 2 }),
      tokens: fc.integer({ min: 0, max: 6 }),
      timeout: fc.option(fc.integer({ min: 0, max: 60 }), { nil: undefined }),
      signal: fc.boolean(),
    }),
  },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("release" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ op: "abort" as const }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("pause" as const), ms: fc.integer({ min: 0, max: 40 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant("concurrency" as const), value: fc.integer({ min: 2, max: 4 }) }),
  },
  { weight: 1, arbitrary: fc.constant({ op: "idle" as const }) },

  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("try" as const),
      weight: fc.integer({ min: 1, max: 2 }),
      requests: fc.integer({ min: 0, max: 2 }),
      tokens: fc.integer({ min: 0, max: 6 }),
    }),
  },
);

function applyOp(w: World, o: Op): void {
  switch (o.op) {
    case "acquire": {
      const call: Call = {
        id: w.calls.length,
        priority: o.priority,
        weight: o.weight,
        requests: o.requests,
        tokens: o.tokens,
        timeout: o.timeout,
        status: "waiting",
        settled: false,
      };
      w.calls.push(call);
      w.limiter
        .acquire({
          cost: { requests: o.requests, tokens: o.tokens },
          weight: o.weight,
          priority: o.priority,
          timeout: o.timeout,
          signal: o.signal ? w.controller.signal : undefined,
        })
        .then(
          (permit) => {
            try {
              w.admitted(call, permit);
            } catch (error) {
              w.errors.push(error);
            }
          },
          (error: unknown) => {
            call.status = "rejected";
            // A RangeError when new limits make the cost impossible.
            expect(
              error instanceof TimeoutError || error instanceof RangeError || (error as Error).name === "AbortError",
            ).toBe(true);
          },
        );
      return;
    }
    case "release": {
      const held = w.calls.filter((c) => c.status === "held");
      const call = held[o.pick % Math.max(1, held.length)];
      if (call === undefined) return;
      call.status = "released";
      call.permit?.release();
      return;
    }
    case "abort":
      w.controller.abort();
      w.controller = new AbortController();
      return;
    case "pause":
      w.limiter.pause(o.ms);
      return;
    case "concurrency":
      w.limiter.concurrency = o.value;
      w.config.concurrency = o.value;
      return;
    case "try": {
      const permit = w.limiter.tryAcquire({ cost: { requests: o.requests, tokens: o.tokens }, weight: o.weight });
      if (permit === undefined) return;
      const call: Call = {
        id: w.calls.length,
        priority: 0,
        weight: o.weight,
        requests: o.requests,
        tokens: o.tokens,
        timeout: undefined,
        status: "waiting",
        settled: false,
        tried: true,
      };
      w.calls.push(call);
      w.admitted(call, permit);
      return;
    }
    case "limits": {
      w.limiter.limits = [
        { ...o.requests, unit: "requests" },
        { ...o.tokens, unit: "tokens", algorithm: "sliding-window" },
      ];
      if (o.tokens.interval > w.config.tokens.interval) {
        w.tokensForgotten.push({ at: w.clock.now() - w.config.tokens.interval, seq: w.seq });
      }
      w.config.requests = o.requests;
      w.config.tokens = o.tokens;
      w.reconfiguredSeq = w.seq++;
      return;
    }
    case "idle": {
      const idle = { resolved: false };
      w.idle.push(idle);
      w.limiter.onIdle().then(() => {
        idle.resolved = true;
      });
      return;
    }
  }
}

/** The limiter's books and its one timer, after promise callbacks ran. */
function check(w: World): void {
  assertInvariants(w.limiter);
  if (w.errors.length > 0) throw w.errors[0];
  const limiter = w.limiter;
  const held = w.calls.filter((c) => c.status === "held");
  expect(limiter.inUse).toBe(held.reduce((sum, c) => sum + c.weight, 0));
  const waiting = w.waitingCalls();
  expect(limiter.waiting).toBe(waiting.length);
  const timeouts = waiting.filter((c) => c.timeout !== undefined).length;
  const head = waiting[0];
  // One timer while the head waits for time; none while it waits for a release, or nobody waits.
  const waitsForTime = head !== undefined && limiter.inUse + head.weight <= w.config.concurrency;
  // Plus the queue's one timer while any waiter has a timeout (no timer per waiter).
  expect(w.clock.pendingTimers).toBe((timeouts > 0 ? 1 : 0) + (waitsForTime ? 1 : 0));
  // Idle now: every onIdle() has resolved.
  if (limiter.inUse === 0 && waiting.length === 0) expect(w.idle.every((i) => i.resolved)).toBe(true);
  // FIFO within a priority.
  for (const priority of [0, 1]) {
    const ids = w.grantOrder.filter((c) => c.priority === priority && c.tried !== true).map((c) => c.id);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
  }
}

/** A batch's end: promise callbacks run, then the books are checked. */
async function settleAndCheck(w: World): Promise<void> {
  await flushMicrotasks();
  check(w);
}

class AdvanceCommand implements fc.AsyncCommand<object, World> {
  constructor(readonly ms: number) {}
  check(): boolean {
    return true;
  }
  async run(_m: object, w: World): Promise<void> {
    // Promise callbacks run after each timer, so each admission is recorded at its own time.
    await w.clock.advanceAsync(this.ms);
    check(w);
  }
  toString(): string {
    return `advance(${this.ms})`;
  }
}

/**
 * New limits, as a command of its own: admissions made earlier in a batch are recorded a tick later,
 * and the ledger must see them before the change.
 */
class LimitsCommand implements fc.AsyncCommand<object, World> {
  constructor(readonly op: Extract<Op, { op: "limits" }>) {}
  check(): boolean {
    return true;
  }
  async run(_m: object, w: World): Promise<void> {
    applyOp(w, this.op);
    await flushMicrotasks();
    check(w);
  }
  toString(): string {
    return `limits(${JSON.stringify(this.op)})`;
  }
}

class SettleCommand implements fc.AsyncCommand<object, World> {
  constructor(
    readonly pick: number,
    readonly requests: number,
    readonly tokens: number,
  ) {}
  check(): boolean {
    return true;
  }
  async run(_m: object, w: World): Promise<void> {
    const open = w.calls.filter((c) => c.permit !== undefined && !c.settled);
    const call = open[this.pick % Math.max(1, open.length)];
    if (call !== undefined) {
      call.settled = true;
      const start = call.start as Entry;
      // A refund at most undoes part of the start's charge; an extra is a charge of its own, now.
      const extra = {
        at: w.clock.now(),
        seq: w.seq++,
        requests: Math.max(0, this.requests - start.requests),
        tokens: Math.max(0, this.tokens - start.tokens),
      };
      start.requests = Math.min(start.requests, this.requests);
      start.tokens = Math.min(start.tokens, this.tokens);
      w.ledger.push(extra);
      call.permit?.settle({ requests: this.requests, tokens: this.tokens });
    }
    await flushMicrotasks();
    check(w);
  }
  toString(): string {
    return `settle(${this.pick}, ${this.requests}, ${this.tokens})`;
  }
}

const configArbitrary: fc.Arbitrary<Config> = fc.record({
  requests: fc.record({
    limit: fc.integer({ min: 1, max: 4 }),
    interval: fc.integer({ min: 5, max: 40 }),
    burst: fc.integer({ min: 2, max: 4 }),
  }),
  tokens: fc.record({ limit: fc.integer({ min: 6, max: 12 }), interval: fc.integer({ min: 5, max: 40 }) }),
  concurrency: fc.integer({ min: 2, max: 4 }),
  minInterval: fc.constantFrom(0, 0, 3),
});

describe("RateLimiter against a model of its promises", () => {
  it("keeps every limit's promise over settled costs, FIFO, its books and exactly one timer while waiting for time", async () => {
    await fc.assert(
      fc.asyncProperty(
        configArbitrary,
        fc.commands(
          [
            batches(opArbitrary, applyOp, settleAndCheck, (w) => w.limiter),
            fc.integer({ min: 0, max: 30 }).map((ms) => new AdvanceCommand(ms)),
            fc
              .record({
                op: fc.constant("limits" as const),
                requests: fc.record({
                  limit: fc.integer({ min: 1, max: 4 }),
                  interval: fc.integer({ min: 5, max: 40 }),
                  burst: fc.integer({ min: 2, max: 4 }),
                }),
                tokens: fc.record({
                  limit: fc.integer({ min: 6, max: 12 }),
                  interval: fc.integer({ min: 5, max: 40 }),
                }),
              })
              .map((op) => new LimitsCommand(op)),
            fc
              .tuple(fc.nat(), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 9 }))
              .map(([pick, requests, tokens]) => new SettleCommand(pick, requests, tokens)),
          ],
          { maxCommands: 40 },
        ),
        async (config, cmds) => {
          const world = new World(config);
          await fc.asyncModelRun(() => ({ model: {}, real: world }), cmds);
          // Wind down: release everything as it is admitted; every waiter is admitted in the end.
          for (let round = 0; round < 50 && world.calls.some((c) => c.status === "waiting"); round++) {
            for (const call of world.calls) if (call.status === "held") applyOp(world, { op: "release", pick: 0 });
            await world.clock.advanceAsync(50);
            check(world);
          }
          for (const call of world.calls) if (call.status === "held") applyOp(world, { op: "release", pick: 0 });
          await flushMicrotasks();
          expect(world.calls.filter((c) => c.status === "waiting")).toEqual([]);
          expect(world.limiter.inUse).toBe(0);
          expect(world.clock.pendingTimers).toBe(0);
        },
      ),
      { numRuns: Number(process.env.MODEL_RUNS ?? 300) },
    );
  });
});

describe("RateLimiter: the one timer follows the head (examples shrunk from the model)", () => {
  it("a call that passes a head waiting for time, and leaves it waiting for a release, disarms the head's timer", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 1, interval: 5, burst: 2 }], concurrency: 3, clock });
    const first = await limiter.acquire({ cost: 1 });
    // Needs 2 requests, 1 is left: waits for time, with the timer armed for the refill.
    const head = limiter.acquire({ cost: 2, weight: 2 });
    expect(clock.pendingTimers).toBe(1);
    // A higher priority that costs no requests starts at once; now the head also waits for a release.
    const passer = await limiter.acquire({ cost: 0, priority: 1 });
    expect(limiter.inUse + 2).toBeGreaterThan(limiter.concurrency);
    expect(clock.pendingTimers).toBe(0);
    first.release();
    expect(clock.pendingTimers).toBe(1);
    await clock.advanceAsync(5);
    (await head).release();
    passer.release();
    expect(clock.pendingTimers).toBe(0);
  });

  it("tryAcquire that passes a head waiting for time re-arms the timer the same way", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 1, interval: 5, burst: 2 }], concurrency: 3, clock });
    const first = await limiter.acquire({ cost: 1 });
    const head = limiter.acquire({ cost: 2, weight: 2, priority: -1 });
    expect(clock.pendingTimers).toBe(1);
    const passer = limiter.tryAcquire({ cost: 0 });
    expect(passer).toBeDefined();
    expect(clock.pendingTimers).toBe(0);
    first.release();
    passer?.release();
    await clock.advanceAsync(5);
    (await head).release();
    expect(clock.pendingTimers).toBe(0);
  });
});
