/**
 * Model-based tests of Semaphore: random command sequences (fast-check's command API) run against the
 * real semaphore on a fake clock and against a small reference model of the decided semantics
 * (DESIGN.md, "Precise semantics"), compared after every command. A command is a batch of synchronous
 * operations, so races inside one tick (abort against release, a timeout against a grant, a shared
 * signal) are exercised; promise callbacks run only between commands.
 */
import fc from "fast-check";
import { type Permit, ReleasedError, Semaphore, TimeoutError } from "sluice";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";
import { assertInvariants, batches } from "../support/model.js";

/** `run-reenter`: a run whose function disposes of another caller's permit, re-entering the semaphore. */
type Kind = "acquire" | "run-throw" | "run-return" | "run-defer" | "run-reenter";
type Status = "waiting" | "held" | "done" | "rejected";
type Outcome = "pending" | "resolved" | "rejected";

interface Entry {
  id: number;
  kind: Kind;
  weight: number;
  priority: number;
  group: number | undefined;
  deadline: number | undefined;
  /** What the model says. */
  status: Status;
  /** Why the model rejected it. */
  why?: "timeout" | "abort" | "range" | "clear" | "thrown";
  /** What the real promise did. */
  outcome: Outcome;
  error?: unknown;
  permit?: Permit;
  finish?: (ok: boolean) => void;
  /** The model: a release of a run is due once promise callbacks run. */
  releaseDue?: boolean;
  /** The model: a queued run's function is due to run once promise callbacks run. */
  callDue?: boolean;
  /** The permit a `run-reenter` disposes of. */
  target?: Entry;
}

class World {
  clock = new FakeClock();
  semaphore: Semaphore;
  controllers = [this.controller(), this.controller(), this.controller()];
  /** Set by an abort op: the caller's own abort listener, registered before any waiter's, releases a permit. */
  releaseOnAbort: Entry | undefined = undefined;
  entries: Entry[] = [];
  idle: { outcome: Outcome; due: boolean }[] = [];
  // The model.
  capacity: number;
  held = 0;
  clearReason = new Error("cleared");
  constructor(capacity: number) {
    this.capacity = capacity;
    this.semaphore = new Semaphore(capacity, { clock: this.clock });
  }
  controller(): AbortController {
    const controller = new AbortController();
    controller.signal.addEventListener("abort", () => {
      const e = this.releaseOnAbort;
      this.releaseOnAbort = undefined;
      e?.permit?.release();
    });
    return controller;
  }
  queue(): Entry[] {
    return this.entries.filter((e) => e.status === "waiting").sort((a, b) => b.priority - a.priority || a.id - b.id);
  }
  firstInLine(priority: number): boolean {
    return this.queue().every((e) => e.priority < priority);
  }
  grant(e: Entry): void {
    e.status = "held";
    this.held += e.weight;
    if (e.kind === "run-throw" || e.kind === "run-return") e.releaseDue = true;
    if (e.kind === "run-reenter") e.callDue = true;
  }
  dispatch(): void {
    for (let head = this.queue()[0]; head !== undefined; head = this.queue()[0]) {
      if (head.weight > this.capacity - this.held) break;
      this.grant(head);
    }
    this.noteIdle();
  }
  giveBack(e: Entry): void {
    e.status = "done";
    this.held -= e.weight;
    this.dispatch();
  }
  /** A `run-reenter`'s function: disposes of its target (a no-op if released already), then returns. */
  call(e: Entry): void {
    e.callDue = false;
    const target = e.target;
    if (target !== undefined && target.status === "held") this.giveBack(target);
    e.releaseDue = true;
  }
  reject(e: Entry, why: Entry["why"]): void {
    e.status = "rejected";
    e.why = why;
  }
  noteIdle(): void {
    if (this.held === 0 && this.queue().length === 0) for (const i of this.idle) i.due = true;
  }
  /** The model's side of the promise callbacks that run between commands. */
  settleDue(): void {
    for (;;) {
      const call = this.entries.find((e) => e.callDue);
      if (call !== undefined) {
        this.call(call);
        continue;
      }
      const due = this.entries.find((e) => e.releaseDue);
      if (due === undefined) return;
      due.releaseDue = false;
      this.giveBack(due);
    }
  }
}

type Op =
  | {
      op: "acquire";
      kind: Kind;
      weight: number;
      priority: number;
      group: number | undefined;
      timeout: number | undefined;
      bare: boolean;
    }
  | { op: "release"; pick: number }
  | { op: "try"; weight: number }
  | { op: "abort"; group: number; release: boolean }
  | { op: "advance"; ms: number }
  | { op: "capacity"; capacity: number }
  | { op: "clear" }
  | { op: "idle" };

const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant("acquire" as const),
      kind: fc.constantFrom<Kind>("acquire", "acquire", "run-throw", "run-return", "run-defer", "run-reenter"),
      weight: fc.integer({ min: 1, max: 4 }),
      priority: fc.integer({ min: -1, max: 1 }),
      group: fc.option(fc.integer({ min: 0, max: 2 }), { nil: undefined }),
      timeout: fc.option(fc.integer({ min: 0, max: 30 }), { nil: undefined }),
      bare: fc.boolean(),
    }),
  },
  { weight: 4, arbitrary: fc.record({ op: fc.constant("release" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("try" as const), weight: fc.integer({ min: 1, max: 4 }) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("abort" as const),
      group: fc.integer({ min: 0, max: 2 }),
      release: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 20 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("capacity" as const),
      capacity: fc.oneof(fc.integer({ min: 0, max: 6 }), fc.constant(Number.POSITIVE_INFINITY)),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ op: "clear" as const }) },
  { weight: 1, arbitrary: fc.constant({ op: "idle" as const }) },
);

function applyOp(w: World, o: Op): void {
  const s = w.semaphore;
  switch (o.op) {
    case "acquire": {
      // A bare call passes no options at all (the fast paths): weight 1, priority 0, nothing else.
      const weight = o.bare ? 1 : o.weight;
      const priority = o.bare ? 0 : o.priority;
      const group = o.bare ? undefined : o.group;
      const timeout = o.bare ? undefined : o.timeout;
      const e: Entry = {
        id: w.entries.length,
        kind: o.kind,
        weight,
        priority,
        group,
        deadline: undefined,
        status: "waiting",
        outcome: "pending",
      };
      // Decided before the entry joins the model's queue.
      const first = w.firstInLine(priority);
      w.entries.push(e);
      const options = o.bare
        ? undefined
        : { weight, priority, timeout, signal: group === undefined ? undefined : w.controllers[group]?.signal };
      let promise: Promise<unknown>;
      if (o.kind === "acquire") {
        promise = s.acquire(options).then((permit) => {
          e.permit = permit;
        });
      } else if (o.kind === "run-throw") {
        promise = s.run(() => {
          throw new Error("thrown");
        }, options);
      } else if (o.kind === "run-return") {
        promise = s.run(() => "value", options);
      } else if (o.kind === "run-reenter") {
        e.target = w.entries.find((t) => t.kind === "acquire" && t.status === "held" && t.permit !== undefined);
        promise = s.run(() => {
          e.target?.permit?.[Symbol.dispose]();
          return "value";
        }, options);
      } else {
        let finish: (ok: boolean) => void = () => {};
        const result = new Promise<string>((resolve, reject) => {
          finish = (ok) => (ok ? resolve("value") : reject(new Error("rejected")));
        });
        e.finish = finish;
        promise = s.run(() => result, options);
      }
      promise.then(
        () => {
          expect(e.outcome).toBe("pending");
          e.outcome = "resolved";
        },
        (error: unknown) => {
          expect(e.outcome).toBe("pending");
          e.outcome = "rejected";
          e.error = error;
        },
      );
      // The model.
      if (weight > w.capacity) {
        w.reject(e, "range");
        return;
      }
      if (group !== undefined && w.controllers[group]?.signal.aborted) {
        w.reject(e, "abort");
        return;
      }
      if (first && weight <= w.capacity - w.held) {
        w.grant(e);
        // A run admitted at once calls its function in this step: a synchronous throw gives back at once.
        if (o.kind === "run-reenter") w.call(e);
        if (o.kind === "run-throw") {
          e.releaseDue = false;
          e.status = "done";
          w.held -= weight;
          w.dispatch();
        }
        return;
      }
      if (timeout === 0) {
        w.reject(e, "timeout");
        return;
      }
      if (timeout !== undefined) e.deadline = w.clock.now() + timeout;
      return;
    }
    case "release": {
      const held = w.entries.filter((e) => e.kind === "acquire" && e.status === "held" && e.permit !== undefined);
      const e = held[o.pick % Math.max(1, held.length)];
      if (e === undefined) return;
      e.permit?.release();
      expect(() => e.permit?.release()).toThrow(ReleasedError);
      w.giveBack(e);
      return;
    }
    case "try": {
      if (o.weight > w.capacity) {
        expect(() => s.tryAcquire(o.weight)).toThrow(RangeError);
        return;
      }
      const permit = s.tryAcquire(o.weight);
      const fits = w.firstInLine(0) && o.weight <= w.capacity - w.held;
      expect(permit !== undefined).toBe(fits);
      if (permit === undefined) return;
      const e: Entry = {
        id: w.entries.length,
        kind: "acquire",
        weight: o.weight,
        priority: 0,
        group: undefined,
        deadline: undefined,
        status: "held",
        outcome: "resolved",
        permit,
      };
      w.entries.push(e);
      w.held += o.weight;
      return;
    }
    case "abort": {
      const controller = w.controllers[o.group] as AbortController;
      if (controller.signal.aborted) {
        w.controllers[o.group] = w.controller();
        return;
      }
      const release = o.release
        ? w.entries.find((e) => e.kind === "acquire" && e.status === "held" && e.permit !== undefined)
        : undefined;
      w.releaseOnAbort = release;
      controller.abort();
      // The abort came first, so no waiter on this signal is granted, also not by the listener's release.
      for (const e of w.queue()) if (e.group === o.group) w.reject(e, "abort");
      if (release !== undefined) w.giveBack(release);
      w.dispatch();
      return;
    }
    case "advance": {
      const target = w.clock.now() + o.ms;
      w.clock.advance(o.ms);
      // Timers fire in deadline order, ties in creation (arrival) order.
      const due = w
        .queue()
        .filter((e) => e.deadline !== undefined && e.deadline <= target)
        .sort((a, b) => (a.deadline as number) - (b.deadline as number) || a.id - b.id);
      for (const e of due) {
        if (e.status !== "waiting") continue;
        w.reject(e, "timeout");
        w.dispatch();
      }
      return;
    }
    case "capacity": {
      s.capacity = o.capacity;
      const shrinking = o.capacity < w.capacity;
      w.capacity = o.capacity;
      if (shrinking) for (const e of w.queue()) if (e.weight > o.capacity) w.reject(e, "range");
      w.dispatch();
      return;
    }
    case "clear": {
      s.clear(w.clearReason);
      for (const e of w.queue()) w.reject(e, "clear");
      w.noteIdle();
      return;
    }
    case "idle": {
      const idle = { outcome: "pending" as Outcome, due: false };
      w.idle.push(idle);
      s.onIdle().then(() => {
        idle.outcome = "resolved";
      });
      w.noteIdle();
      return;
    }
  }
}

async function check(w: World): Promise<void> {
  await flushMicrotasks();
  assertInvariants(w.semaphore);
  w.settleDue();
  const s = w.semaphore;
  const queue = w.queue();
  expect(s.inUse).toBe(w.held);
  expect(s.available).toBe(w.capacity - w.held);
  expect(s.waiting).toBe(queue.length);
  expect(s.statistics().waitingWeight).toBe(queue.reduce((sum, e) => sum + e.weight, 0));
  expect(s.isLocked()).toBe(!(w.firstInLine(0) && 1 <= w.capacity - w.held));
  // No timer per waiter: the waiters with a timeout share the queue's one timer, gone once none waits.
  expect(w.clock.pendingTimers).toBe(queue.some((e) => e.deadline !== undefined) ? 1 : 0);
  for (const e of w.entries) {
    const expected: Outcome =
      e.status === "waiting"
        ? "pending"
        : e.status === "rejected"
          ? "rejected"
          : e.kind === "acquire"
            ? "resolved"
            : e.status === "held"
              ? "pending"
              : e.kind === "run-throw" || e.why === "thrown"
                ? "rejected"
                : "resolved";
    expect({ id: e.id, outcome: e.outcome }).toEqual({ id: e.id, outcome: expected });
    if (e.status === "rejected") {
      if (e.why === "timeout") expect(e.error).toBeInstanceOf(TimeoutError);
      if (e.why === "range") expect(e.error).toBeInstanceOf(RangeError);
      if (e.why === "clear") expect(e.error).toBe(w.clearReason);
      if (e.why === "abort") expect((e.error as Error).name).toBe("AbortError");
    }
  }
  for (const i of w.idle) expect(i.outcome).toBe(i.due ? "resolved" : "pending");
}

class SettleRunCommand implements fc.AsyncCommand<object, World> {
  constructor(
    readonly pick: number,
    readonly ok: boolean,
  ) {}
  check(): boolean {
    return true;
  }
  async run(_m: object, w: World): Promise<void> {
    const running = w.entries.filter((e) => e.kind === "run-defer" && e.status === "held");
    const e = running[this.pick % Math.max(1, running.length)];
    if (e !== undefined) {
      e.finish?.(this.ok);
      if (!this.ok) e.why = "thrown";
      e.releaseDue = true;
    }
    await check(w);
  }
  toString(): string {
    return `settleRun(${this.pick}, ${this.ok})`;
  }
}

const commands = fc.commands(
  [
    batches(opArbitrary, applyOp, check, (w) => w.semaphore),
    fc.tuple(fc.nat(), fc.boolean()).map(([pick, ok]) => new SettleRunCommand(pick, ok)),
  ],
  { maxCommands: 40 },
);

describe("Semaphore against a reference model", () => {
  it("matches the model after every batch: books, order, settlement, timers, onIdle", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 5 }), commands, async (capacity, cmds) => {
        const world = new World(capacity);
        await fc.asyncModelRun(() => ({ model: {}, real: world }), cmds);
        // Wind down: clear, finish every run, release every permit; everything ends idle.
        world.semaphore.clear();
        for (const e of world.entries) e.finish?.(true);
        await flushMicrotasks();
        for (const e of world.entries)
          if (e.kind === "acquire" && e.outcome === "resolved") e.permit?.[Symbol.dispose]();
        await flushMicrotasks();
        expect(world.semaphore.inUse).toBe(0);
        expect(world.semaphore.waiting).toBe(0);
        expect(world.clock.pendingTimers).toBe(0);
        expect(world.entries.every((e) => e.outcome !== "pending")).toBe(true);
      }),
      { numRuns: Number(process.env.MODEL_RUNS ?? 1000) },
    );
  });
});
