import fc from "fast-check";
import { Channel, ClosedError, TimeoutError } from "sluice";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";
import { state } from "../support/promise-state.js";

describe("Channel: FIFO", () => {
  it("delivers values in the order they were sent, across a full buffer and waiting senders", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 4 }),
        fc.array(fc.constantFrom("send", "receive"), { maxLength: 60 }),
        async (capacity, script) => {
          const channel = new Channel<number>(capacity);
          let next = 0;
          const received: number[] = [];
          const pending: Promise<unknown>[] = [];
          for (const step of script) {
            if (step === "send") pending.push(channel.send(next++));
            else pending.push(channel.receive().then((value) => received.push(value)));
            // The invariants written next to the channel's state.
            expect(channel.size).toBeLessThanOrEqual(capacity);
            expect(channel.waitingSenders > 0 && channel.waitingReceivers > 0).toBe(false);
            if (channel.waitingReceivers > 0) expect(channel.size).toBe(0);
            if (channel.waitingSenders > 0) expect(channel.size).toBe(capacity);
          }
          // Drain whatever is left so every promise settles.
          const leftover = channel.waitingSenders + channel.size;
          for (let i = 0; i < leftover; i++) pending.push(channel.receive().then((value) => received.push(value)));
          channel.close();
          await Promise.allSettled(pending);
          // Everything sent was received, each once, in the order sent: a value lost or left behind
          // (the last ones included) shows, as a prefix would not.
          expect(received).toEqual(Array.from({ length: next }, (_, i) => i));
          expect(channel.size).toBe(0);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("never loses or duplicates a value when sends and receives are aborted and the channel closes", async () => {
    type Action =
      | { kind: "send" | "receive"; abortable: boolean }
      | { kind: "abort"; pick: number }
      | { kind: "close" };
    const action: fc.Arbitrary<Action> = fc.oneof(
      fc.record({ kind: fc.constantFrom("send" as const, "receive" as const), abortable: fc.boolean() }),
      fc.record({ kind: fc.constant("abort" as const), pick: fc.nat() }),
      fc.constant({ kind: "close" as const }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 3 }),
        fc.array(action, { maxLength: 50 }),
        async (capacity, script) => {
          const channel = new Channel<number>(capacity);
          const controllers: AbortController[] = [];
          const accepted = new Set<number>();
          const received: number[] = [];
          const pending: Promise<unknown>[] = [];
          let next = 0;
          for (const step of script) {
            if (step.kind === "close") channel.close();
            else if (step.kind === "abort") controllers[step.pick % Math.max(1, controllers.length)]?.abort();
            else {
              const controller = step.abortable ? new AbortController() : undefined;
              if (controller !== undefined) controllers.push(controller);
              const signal = controller?.signal;
              if (step.kind === "send") {
                const value = next++;
                pending.push(
                  channel.send(value, { signal }).then(
                    () => accepted.add(value),
                    () => {},
                  ),
                );
              } else {
                pending.push(
                  channel.receive({ signal }).then(
                    (value) => received.push(value),
                    () => {},
                  ),
                );
              }
            }
            if (step.kind !== "close") await flushMicrotasks(1);
          }
          channel.close();
          for (let result = channel.tryReceive(); result.ok; result = channel.tryReceive()) received.push(result.value);
          await Promise.all(pending);
          // Exactly the accepted values came out, each once, in the order they were sent.
          expect(received).toEqual([...accepted].sort((a, b) => a - b));
          expect(channel.waitingSenders + channel.waitingReceivers).toBe(0);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("serves many waiting receivers in arrival order", async () => {
    const channel = new Channel<string>(0);
    const order: string[] = [];
    const receivers = ["a", "b", "c"].map((name) => channel.receive().then((value) => order.push(`${name}:${value}`)));
    expect(channel.waitingReceivers).toBe(3);
    for (const value of ["1", "2", "3"]) expect(channel.trySend(value)).toBe(true);
    await Promise.all(receivers);
    expect(order).toEqual(["a:1", "b:2", "c:3"]);
  });

  it("keeps the buffer within capacity and releases a waiting sender when room appears", async () => {
    const channel = new Channel<number>(2);
    await channel.send(1);
    await channel.send(2);
    const third = channel.send(3);
    expect(await state(third)).toBe("pending");
    expect(channel.size).toBe(2);
    expect(await channel.receive()).toBe(1);
    // The waiting sender's value entered the buffer in the same step, behind 2.
    expect(channel.size).toBe(2);
    expect(await state(third)).toBe("resolved");
    expect(channel.trySend(4)).toBe(false);
    expect([await channel.receive(), await channel.receive()]).toEqual([2, 3]);
  });
});

describe("Channel: capacity 0 hands over only to a waiting receiver", () => {
  it("trySend fails without a receiver and succeeds with one", async () => {
    const channel = new Channel<number>(0);
    expect(channel.trySend(1)).toBe(false);
    expect(channel.size).toBe(0);
    const receiving = channel.receive();
    expect(channel.trySend(2)).toBe(true);
    expect(await receiving).toBe(2);
  });

  it("send waits until a receiver takes the value", async () => {
    const channel = new Channel<number>(0);
    const sending = channel.send(7);
    expect(await state(sending)).toBe("pending");
    expect(channel.tryReceive()).toEqual({ ok: true, value: 7 });
    expect(await state(sending)).toBe("resolved");
  });
});

describe("Channel: tryReceive distinguishes empty from an undefined value", () => {
  it("reports empty, then an undefined value, then closed", () => {
    const channel = new Channel<undefined | number>(3);
    expect(channel.tryReceive()).toEqual({ ok: false, closed: false });
    channel.trySend(undefined);
    expect(channel.tryReceive()).toEqual({ ok: true, value: undefined });
    channel.close();
    expect(channel.tryReceive()).toEqual({ ok: false, closed: true });
  });
});

describe("Channel: close", () => {
  it("keeps buffered values receivable, then receive rejects with ClosedError", async () => {
    const channel = new Channel<number>(3);
    await channel.send(1);
    await channel.send(2);
    channel.close();
    expect(channel.closed).toBe(true);
    expect(await channel.receive()).toBe(1);
    expect(await channel.receive()).toBe(2);
    await expect(channel.receive()).rejects.toBeInstanceOf(ClosedError);
  });

  it("rejects send after close with ClosedError, and trySend throws it", async () => {
    const channel = new Channel<number>(3);
    channel.close();
    await expect(channel.send(1)).rejects.toBeInstanceOf(ClosedError);
    await expect(channel.send(1, { timeout: 10 })).rejects.toBeInstanceOf(ClosedError);
    expect(() => channel.trySend(1)).toThrow(ClosedError);
  });

  it("rejects waiting receivers and waiting senders with ClosedError", async () => {
    const empty = new Channel<number>(1);
    const receiver = empty.receive();
    empty.close();
    await expect(receiver).rejects.toBeInstanceOf(ClosedError);

    const full = new Channel<number>(1);
    await full.send(1);
    const sender = full.send(2);
    full.close();
    await expect(sender).rejects.toBeInstanceOf(ClosedError);
    // The value that was accepted before close is still delivered; the rejected one is not.
    expect(await full.receive()).toBe(1);
    expect(full.tryReceive()).toEqual({ ok: false, closed: true });
  });

  it("ends for-await loops after the buffered values", async () => {
    const channel = new Channel<number>(10);
    for (const value of [1, 2, 3]) await channel.send(value);
    channel.close();
    const seen: number[] = [];
    for await (const value of channel) seen.push(value);
    expect(seen).toEqual([1, 2, 3]);
  });

  it("ends a loop that is waiting when the channel closes", async () => {
    const channel = new Channel<number>(0);
    const seen: number[] = [];
    const consumer = (async () => {
      for await (const value of channel) seen.push(value);
    })();
    await channel.send(1);
    channel.close();
    await consumer;
    expect(seen).toEqual([1]);
  });
});

describe("Channel: iteration", () => {
  it("leaving a for-await loop early does not close the channel", async () => {
    const channel = new Channel<number>(5);
    for (const value of [1, 2, 3]) await channel.send(value);
    for await (const value of channel) {
      expect(value).toBe(1);
      break;
    }
    expect(channel.closed).toBe(false);
    expect(await channel.receive()).toBe(2);
    await channel.send(4);
    expect(channel.size).toBe(2);
  });

  it("shares values between several consumers, each value once", async () => {
    const channel = new Channel<number>(2);
    const consumed: number[][] = [[], [], []];
    const consumers = consumed.map(async (into) => {
      for await (const value of channel) {
        into.push(value);
        await flushMicrotasks(1);
      }
    });
    for (let i = 0; i < 30; i++) await channel.send(i);
    channel.close();
    await Promise.all(consumers);
    expect(consumed.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i));
    for (const values of consumed) expect(values).toEqual([...values].sort((a, b) => a - b));
  });

  it("values({ signal }) rejects the pending next() on abort and leaves no receiver behind", async () => {
    const channel = new Channel<number>(1);
    const controller = new AbortController();
    const iterator = channel.values({ signal: controller.signal });
    const next = iterator.next();
    expect(channel.waitingReceivers).toBe(1);
    controller.abort(new Error("stop"));
    await expect(next).rejects.toThrow("stop");
    expect(channel.waitingReceivers).toBe(0);
  });
});

describe("Channel: cancellation", () => {
  it("a receive that times out leaves the queue and never swallows a later value", async () => {
    const clock = new FakeClock();
    const channel = new Channel<number>(0, { clock });
    const late = channel.receive({ timeout: 100 }).catch((error: unknown) => error);
    const patient = channel.receive();
    await clock.advanceAsync(100);
    expect(await late).toBeInstanceOf(TimeoutError);
    expect(channel.waitingReceivers).toBe(1);
    expect(channel.trySend(5)).toBe(true);
    expect(await patient).toBe(5);
    expect(clock.pendingTimers).toBe(0);
  });

  it("an aborted send leaves the queue and its value is never delivered", async () => {
    const channel = new Channel<string>(0);
    const controller = new AbortController();
    const sending = channel.send("never", { signal: controller.signal });
    const other = channel.send("kept");
    controller.abort();
    await expect(sending).rejects.toMatchObject({ name: "AbortError" });
    expect(await channel.receive()).toBe("kept");
    await other;
    expect(channel.tryReceive()).toEqual({ ok: false, closed: false });
  });

  it("timeout 0 means only if possible now", async () => {
    const channel = new Channel<number>(1);
    await expect(channel.receive({ timeout: 0 })).rejects.toBeInstanceOf(TimeoutError);
    await channel.send(1, { timeout: 0 });
    await expect(channel.send(2, { timeout: 0 })).rejects.toBeInstanceOf(TimeoutError);
    expect(await channel.receive({ timeout: 0 })).toBe(1);
  });

  it("an already-aborted signal rejects without taking or giving a value", async () => {
    const channel = new Channel<number>(1);
    await channel.send(1);
    const signal = AbortSignal.abort(new Error("gone"));
    await expect(channel.receive({ signal })).rejects.toThrow("gone");
    expect(channel.size).toBe(1);
  });
});

describe("Channel: statistics", () => {
  it("reports buffered values, waiting senders and receivers, and deliveries", async () => {
    const channel = new Channel<number>(1, { name: "jobs" });
    await channel.send(1);
    const waitingSender = channel.send(2);
    const none = { granted: 0, aborted: 0, timedOut: 0, rejected: 0 };
    expect(channel.statistics()).toEqual({
      name: "jobs",
      capacity: 1,
      available: 0,
      inUse: 1,
      waiting: 1,
      ...none,
      granted: 1,
      waitingSenders: 1,
      waitingReceivers: 0,
      closed: false,
      delivered: 0,
      sends: { ...none, granted: 1 },
      receives: none,
    });
    await channel.receive();
    await waitingSender;
    await channel.receive();
    const waitingReceiver = channel.receive().catch((error: unknown) => error);
    expect(channel.statistics()).toMatchObject({
      inUse: 0,
      available: 1,
      waiting: 1,
      waitingSenders: 0,
      waitingReceivers: 1,
      delivered: 2,
    });
    channel.close();
    expect(await waitingReceiver).toBeInstanceOf(ClosedError);
    expect(String(((await waitingReceiver) as Error).message)).toContain('channel "jobs"');
  });
});

describe("Channel: send and receive check in one order, the admission step's", () => {
  it("closed (for a receive: closed with nothing left) comes before an already-aborted signal", async () => {
    const channel = new Channel<number>(1);
    await channel.send(1);
    channel.close();
    const reason = new Error("gone");
    const aborted = AbortSignal.abort(reason);
    await expect(channel.send(2, { signal: aborted })).rejects.toBeInstanceOf(ClosedError);
    // A value is still there to receive, so the receive is possible: the abort, which came first, wins.
    await expect(channel.receive({ signal: aborted })).rejects.toBe(reason);
    expect(channel.size).toBe(1);
    expect(await channel.receive()).toBe(1);
    // Now nothing is left: a receive could never be served, whatever its signal says.
    await expect(channel.receive({ signal: aborted })).rejects.toBeInstanceOf(ClosedError);
    // And an iterator at the end ends, rather than reporting the abort.
    expect(await channel.values({ signal: aborted }).next()).toEqual({ done: true, value: undefined });
  });

  it("an already-aborted signal comes before a value ready or room free, on both sides", async () => {
    const channel = new Channel<number>(1);
    const reason = new Error("gone");
    await expect(channel.send(1, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(channel.size).toBe(0);
    await channel.send(2);
    await expect(channel.receive({ signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(channel.size).toBe(1);
  });
});

describe("Channel: counters", () => {
  it("count sends and receives apart, and sum them in the core fields", async () => {
    const channel = new Channel<number>(1);
    await expect(channel.receive({ signal: AbortSignal.abort() })).rejects.toMatchObject({ name: "AbortError" });
    await expect(channel.receive({ timeout: 0 })).rejects.toBeInstanceOf(TimeoutError);
    await channel.send(1);
    await expect(channel.send(2, { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: "AbortError" });
    await expect(channel.send(2, { timeout: 0 })).rejects.toBeInstanceOf(TimeoutError);
    expect(channel.trySend(3)).toBe(false);
    expect(channel.tryReceive()).toEqual({ ok: true, value: 1 });
    expect(channel.trySend(4)).toBe(true);
    expect(await channel.receive({ timeout: 10 })).toBe(4);
    const one = { granted: 0, aborted: 1, timedOut: 1, rejected: 0 };
    expect(channel.statistics()).toMatchObject({
      sends: { ...one, granted: 2 },
      receives: { ...one, granted: 2 },
      granted: 4,
      aborted: 2,
      timedOut: 2,
      rejected: 0,
    });
  });

  it("rejected counts sends to a closed channel, receives at its end and the waiters close() drops", async () => {
    const full = new Channel<number>(0);
    const sender = full.send(1);
    full.close();
    await expect(sender).rejects.toBeInstanceOf(ClosedError);
    await expect(full.send(2)).rejects.toBeInstanceOf(ClosedError);
    const empty = new Channel<number>(0);
    const receiver = empty.receive();
    const iterating = empty[Symbol.asyncIterator]().next();
    empty.close();
    await expect(receiver).rejects.toBeInstanceOf(ClosedError);
    expect(await iterating).toEqual({ done: true, value: undefined });
    await expect(empty.receive()).rejects.toBeInstanceOf(ClosedError);
    expect(full.statistics()).toMatchObject({ sends: { rejected: 2 }, receives: { rejected: 0 }, rejected: 2 });
    expect(empty.statistics()).toMatchObject({ sends: { rejected: 0 }, receives: { rejected: 3 }, rejected: 3 });
  });
});

describe("Channel: bad input", () => {
  it("rejects a bad capacity with the argument and value named", () => {
    expect(() => new Channel(-1)).toThrow(/capacity.*-1/);
    expect(() => new Channel(1.5)).toThrow(RangeError);
    expect(() => new Channel("3" as unknown as number)).toThrow(TypeError);
  });

  it("rejects bad options instead of throwing", async () => {
    const channel = new Channel<number>(1);
    await expect(channel.send(1, { timeout: -1 })).rejects.toThrow(/timeout.*-1/);
    await expect(channel.receive({ priority: Number.NaN })).rejects.toBeInstanceOf(RangeError);
  });
});
