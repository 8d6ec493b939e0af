/**
 * Model-based tests of Channel with fast-check's command API on a fake clock: sends and receives with
 * priorities, timeouts and (shared) signals, trySend/tryReceive, close, several in one tick, compared
 * after every command with a reference model: a buffer and two queues ordered by priority, then arrival.
 * Every value sent is distinct, so a value lost, duplicated or reordered shows.
 */
import fc from "fast-check";
import { Channel, ClosedError, TimeoutError } from "sluice";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";
import { assertInvariants, batches } from "../support/model.js";

/** What an iterator's `next()` gives at the end of the channel. */
const END = -1;

type Why = "closed" | "timeout" | "abort";
type Outcome = { state: "pending" } | { state: "resolved"; value?: number } | { state: "rejected"; why: Why };

interface Party {
  id: number;
  side: "send" | "receive";
  /** A receive made by an iterator's `next()`: the channel's end is `done`, not a ClosedError. */
  iterator: boolean;
  value: number;
  priority: number;
  group: number | undefined;
  deadline: number | undefined;
  /** What the model says. */
  expected: Outcome;
  /** What the channel did. */
  actual: Outcome;
}

class World {
  clock = new FakeClock();
  channel: Channel<number>;
  controllers = [new AbortController(), new AbortController()];
  parties: Party[] = [];
  nextValue = 0;
  // The model.
  buffer: number[] = [];
  closed = false;
  /** Counted outside the parties: trySend, tryReceive and the wind-down's loop. */
  counted = { send: counters(), receive: counters() };
  constructor(readonly capacity: number) {
    this.channel = new Channel<number>(capacity, { clock: this.clock });
  }
  waiting(side: "send" | "receive"): Party[] {
    return this.parties
      .filter((p) => p.side === side && p.expected.state === "pending")
      .sort((a, b) => b.priority - a.priority || a.id - b.id);
  }
  /** Model of the channel's offer: to the first receiver, else into the buffer if there is room. */
  offer(value: number): boolean {
    const receiver = this.waiting("receive")[0];
    if (receiver !== undefined) {
      receiver.expected = { state: "resolved", value };
      return true;
    }
    if (this.buffer.length < this.capacity) {
      this.buffer.push(value);
      return true;
    }
    return false;
  }
  /** Model of the channel's take: the oldest value; a waiting sender's value refills the buffer. */
  take(): number | undefined {
    const sender = this.waiting("send")[0];
    if (this.buffer.length > 0) {
      const value = this.buffer.shift() as number;
      if (sender !== undefined) {
        this.buffer.push(sender.value);
        sender.expected = { state: "resolved" };
      }
      return value;
    }
    if (sender !== undefined) {
      sender.expected = { state: "resolved" };
      return sender.value;
    }
    return undefined;
  }
}

type Counters = { granted: number; aborted: number; timedOut: number; rejected: number };

function counters(): Counters {
  return { granted: 0, aborted: 0, timedOut: 0, rejected: 0 };
}

/** What the admission steps of `side` counted for the parties, as the model settled them. */
function expectedCounters(w: World, side: "send" | "receive"): Counters {
  const result = { ...w.counted[side] };
  for (const p of w.parties) {
    if (p.side !== side) continue;
    const outcome = p.expected;
    // An iterator's end is a receive refused by a closed, empty channel.
    if (outcome.state === "resolved") {
      if (p.iterator && outcome.value === END) result.rejected++;
      else result.granted++;
    } else if (outcome.state === "rejected") {
      if (outcome.why === "closed") result.rejected++;
      else if (outcome.why === "abort") result.aborted++;
      else result.timedOut++;
    }
  }
  return result;
}

type Op =
  | { op: "send" | "receive"; priority: number; group: number | undefined; timeout: number | undefined; bare: boolean }
  | { op: "next"; group: number | undefined }
  | { op: "trySend" }
  | { op: "tryReceive" }
  | { op: "abort"; group: number }
  | { op: "advance"; ms: number }
  | { op: "close" };

const waitOp = (op: "send" | "receive") =>
  fc.record({
    op: fc.constant(op),
    priority: fc.integer({ min: 0, max: 1 }),
    group: fc.option(fc.integer({ min: 0, max: 1 }), { nil: undefined }),
    timeout: fc.option(fc.integer({ min: 0, max: 20 }), { nil: undefined }),
    bare: fc.boolean(),
  });

const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: waitOp("send") },
  { weight: 5, arbitrary: waitOp("receive") },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("next" as const),
      group: fc.option(fc.integer({ min: 0, max: 1 }), { nil: undefined }),
    }),
  },
  { weight: 2, arbitrary: fc.constant({ op: "trySend" as const }) },
  { weight: 2, arbitrary: fc.constant({ op: "tryReceive" as const }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("abort" as const), group: fc.integer({ min: 0, max: 1 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 15 }) }) },
  { weight: 1, arbitrary: fc.constant({ op: "close" as const }) },
);

function whyOf(error: unknown): Why {
  if (error instanceof ClosedError) return "closed";
  if (error instanceof TimeoutError) return "timeout";
  if ((error as Error).name === "AbortError") return "abort";
  throw error;
}

function applyOp(w: World, o: Op): void {
  const channel = w.channel;
  switch (o.op) {
    case "send":
    case "receive": {
      const bare = o.bare;
      const party: Party = {
        id: w.parties.length,
        side: o.op,
        iterator: false,
        value: w.nextValue++,
        priority: bare ? 0 : o.priority,
        group: bare ? undefined : o.group,
        deadline: undefined,
        expected: { state: "pending" },
        actual: { state: "pending" },
      };
      const timeout = bare ? undefined : o.timeout;
      const signal = party.group === undefined ? undefined : w.controllers[party.group]?.signal;
      const options = bare ? undefined : { priority: party.priority, timeout, signal };
      const promise: Promise<number | undefined> =
        o.op === "send" ? channel.send(party.value, options).then(() => undefined) : channel.receive(options);
      promise.then(
        (value) => {
          party.actual = value === undefined ? { state: "resolved" } : { state: "resolved", value };
        },
        (error: unknown) => {
          party.actual = { state: "rejected", why: whyOf(error) };
        },
      );
      // The model, before the party joins it. One order of checks for both sides, the admission
      // step's: closed (for a receive: closed with nothing left), already aborted, now, timeout 0.
      const aborted = signal?.aborted === true;
      let done: Outcome | undefined;
      if (o.op === "send" ? w.closed : w.closed && w.buffer.length === 0) done = { state: "rejected", why: "closed" };
      else if (aborted) done = { state: "rejected", why: "abort" };
      else if (o.op === "send") {
        if (w.offer(party.value)) done = { state: "resolved" };
      } else {
        const value = w.take();
        if (value !== undefined) done = { state: "resolved", value };
      }
      if (done === undefined && timeout === 0) done = { state: "rejected", why: "timeout" };
      if (done === undefined && timeout !== undefined) party.deadline = w.clock.now() + timeout;
      if (done !== undefined) party.expected = done;
      w.parties.push(party);
      return;
    }
    case "next": {
      const party: Party = {
        id: w.parties.length,
        side: "receive",
        iterator: true,
        value: -1,
        priority: 0,
        group: o.group,
        deadline: undefined,
        expected: { state: "pending" },
        actual: { state: "pending" },
      };
      const signal = o.group === undefined ? undefined : w.controllers[o.group]?.signal;
      channel
        .values({ signal })
        .next()
        .then(
          (result) => {
            party.actual = { state: "resolved", value: result.done ? END : result.value };
          },
          (error: unknown) => {
            party.actual = { state: "rejected", why: whyOf(error) };
          },
        );
      // The same order as a receive: the end of a closed, empty channel comes before an aborted signal.
      if (w.closed && w.buffer.length === 0) party.expected = { state: "resolved", value: END };
      else if (signal?.aborted) party.expected = { state: "rejected", why: "abort" };
      else {
        const value = w.take();
        if (value !== undefined) party.expected = { state: "resolved", value };
      }
      w.parties.push(party);
      return;
    }
    case "trySend": {
      const value = w.nextValue++;
      if (w.closed) {
        expect(() => channel.trySend(value)).toThrow(ClosedError);
        return;
      }
      const taken = w.offer(value);
      expect(channel.trySend(value)).toBe(taken);
      if (taken) w.counted.send.granted++;
      return;
    }
    case "tryReceive": {
      const value = w.take();
      const received = channel.tryReceive();
      if (value === undefined) expect(received).toEqual({ ok: false, closed: w.closed });
      else {
        expect(received).toEqual({ ok: true, value });
        w.counted.receive.granted++;
      }
      return;
    }
    case "abort": {
      const controller = w.controllers[o.group] as AbortController;
      if (controller.signal.aborted) {
        w.controllers[o.group] = new AbortController();
        return;
      }
      controller.abort();
      for (const p of w.parties) {
        if (p.group === o.group && p.expected.state === "pending") p.expected = { state: "rejected", why: "abort" };
      }
      return;
    }
    case "advance": {
      w.clock.advance(o.ms);
      for (const p of w.parties) {
        if (p.expected.state === "pending" && p.deadline !== undefined && p.deadline <= w.clock.now()) {
          p.expected = { state: "rejected", why: "timeout" };
        }
      }
      return;
    }
    case "close": {
      channel.close();
      w.closed = true;
      for (const p of w.parties) {
        if (p.expected.state !== "pending") continue;
        p.expected = p.iterator ? { state: "resolved", value: END } : { state: "rejected", why: "closed" };
      }
      return;
    }
  }
}

async function check(w: World): Promise<void> {
  await flushMicrotasks();
  assertInvariants(w.channel);
  const channel = w.channel;
  for (const p of w.parties) expect({ id: p.id, ...p.actual }).toEqual({ id: p.id, ...p.expected });
  expect(channel.size).toBe(w.buffer.length);
  expect(channel.closed).toBe(w.closed);
  const senders = w.waiting("send");
  const receivers = w.waiting("receive");
  expect(channel.waitingSenders).toBe(senders.length);
  expect(channel.waitingReceivers).toBe(receivers.length);
  // At most one side waits, and receivers only on an empty buffer.
  expect(senders.length === 0 || receivers.length === 0).toBe(true);
  if (receivers.length > 0) expect(w.buffer.length).toBe(0);
  // No timer per waiter: each side's queue has one timer while any of its waiters has a timeout.
  const timers = (parties: Party[]) => (parties.some((p) => p.deadline !== undefined) ? 1 : 0);
  expect(w.clock.pendingTimers).toBe(timers(senders) + timers(receivers));
  // Every grant, abort, timeout and refusal is counted by the admission step of its side.
  const { sends, receives, granted, aborted, timedOut, rejected, inUse, waiting } = channel.statistics();
  const expectedSends = expectedCounters(w, "send");
  const expectedReceives = expectedCounters(w, "receive");
  expect({ sends, receives }).toEqual({ sends: expectedSends, receives: expectedReceives });
  expect({ granted, aborted, timedOut, rejected }).toEqual({
    granted: expectedSends.granted + expectedReceives.granted,
    aborted: expectedSends.aborted + expectedReceives.aborted,
    timedOut: expectedSends.timedOut + expectedReceives.timedOut,
    rejected: expectedSends.rejected + expectedReceives.rejected,
  });
  expect({ inUse, waiting }).toEqual({ inUse: w.buffer.length, waiting: senders.length + receivers.length });
}

describe("Channel against a reference model", () => {
  it("values come out in order, none lost or duplicated; waiters settle as the model says; closed semantics hold", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constant(Number.POSITIVE_INFINITY)),
        fc.commands([batches(opArbitrary, applyOp, check, (w) => w.channel)], {
          maxCommands: 40,
        }),
        async (capacity, cmds) => {
          const world = new World(capacity);
          await fc.asyncModelRun(() => ({ model: {}, real: world }), cmds);
          // Wind down: close, then everything buffered is still received, in order, then the end.
          applyOp(world, { op: "close" });
          const rest: number[] = [];
          for await (const value of world.channel) rest.push(value);
          expect(rest).toEqual(world.buffer);
          world.buffer = [];
          // The loop received the rest, then met the end.
          world.counted.receive.granted += rest.length;
          world.counted.receive.rejected++;
          await check(world);
          expect(world.clock.pendingTimers).toBe(0);
        },
      ),
      { numRuns: Number(process.env.MODEL_RUNS ?? 300) },
    );
  });
});
