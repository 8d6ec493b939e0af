/**
 * The scheduling core on its own: order, O(1) removal from anywhere, and the exits of a waiter.
 */
import fc from "fast-check";
import { TimeoutError } from "sluice";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it, vi } from "vitest";
import { queueChecks, type Waiter, WaitQueue } from "../../src/core/wait-queue.js";

type Queue = WaitQueue<string, string>;

function makeQueue(clock = new FakeClock()) {
  const cancelled: { request: string; reason: string; wasHead: boolean }[] = [];
  const queue: Queue = new WaitQueue<string, string>(
    clock,
    (waiter, reason, wasHead) => cancelled.push({ request: waiter.request, reason, wasHead }),
    () => "the test queue",
  );
  return { queue, cancelled, clock };
}

/** The requests in queue order, walking from the head. */
function order(queue: Queue): string[] {
  const seen: string[] = [];
  for (let waiter = queue.head; waiter !== undefined; waiter = queue.after(waiter)) seen.push(waiter.request);
  return seen;
}

describe("WaitQueue", () => {
  it("orders by priority, higher first, then by arrival", () => {
    const { queue } = makeQueue();
    const entries: [string, number][] = [
      ["a", 0],
      ["b", 5],
      ["c", -2],
      ["d", 5],
      ["e", 0],
      ["f", 1.5],
      ["g", -2],
    ];
    for (const [request, priority] of entries)
      void queue.enqueue(request, priority, undefined, Number.POSITIVE_INFINITY);
    expect(order(queue)).toEqual(["b", "d", "f", "a", "e", "c", "g"]);
    expect(queue.size).toBe(7);
    expect(queue.newest(5)?.request).toBe("d");
    expect(queue.newest(-2)?.request).toBe("g");
    expect(queue.newest(3)).toBeUndefined();
    expect(queue.isFirstInLine(6)).toBe(true);
    expect(queue.isFirstInLine(5)).toBe(false);
  });

  it("removes any waiter in O(1) and keeps the rest in order, across levels (model-checked)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.record({ kind: fc.constant("add" as const), priority: fc.integer({ min: -2, max: 2 }) }),
            fc.record({ kind: fc.constant("grant-head" as const) }),
            fc.record({ kind: fc.constant("remove" as const), pick: fc.nat() }),
          ),
          { maxLength: 60 },
        ),
        async (operations) => {
          const { queue } = makeQueue();
          // The model: [request, priority] in queue order.
          const model: [string, number][] = [];
          const waiters = new Map<string, Waiter<string, string>>();
          let next = 0;
          for (const operation of operations) {
            if (operation.kind === "add") {
              const request = `w${next++}`;
              void queue
                .enqueue(request, operation.priority, undefined, Number.POSITIVE_INFINITY)
                .catch(() => undefined);
              waiters.set(request, queue.newest(operation.priority) as Waiter<string, string>);
              let index = model.findIndex(([, priority]) => priority < operation.priority);
              if (index === -1) index = model.length;
              model.splice(index, 0, [request, operation.priority]);
            } else if (operation.kind === "grant-head") {
              const head = queue.head;
              expect(head?.request).toBe(model[0]?.[0]);
              if (head !== undefined) {
                queue.grant(head, "granted");
                model.shift();
              }
            } else if (model.length > 0) {
              const [request] = model.splice(operation.pick % model.length, 1)[0] as [string, number];
              queue.reject(waiters.get(request) as Waiter<string, string>, new Error("removed"));
            }
            expect(order(queue)).toEqual(model.map(([request]) => request));
            expect(queue.size).toBe(model.length);
          }
          await flushMicrotasks(2);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("keeps order and settles every promise right through rings, tombstones and compactions (model-checked)", async () => {
    type Operation =
      | { kind: "add"; priority: number; cancellable: boolean }
      | { kind: "grant-head" }
      | { kind: "abort"; pick: number }
      | { kind: "remove"; pick: number }
      | { kind: "newest"; priority: number };
    // Mostly one priority, so rings grow long enough to shift and to fill with tombstones.
    const priority = fc.constantFrom(0, 0, 0, 1, -1);
    const operation: fc.Arbitrary<Operation> = fc.oneof(
      { weight: 5, arbitrary: fc.record({ kind: fc.constant("add" as const), priority, cancellable: fc.boolean() }) },
      { weight: 3, arbitrary: fc.record({ kind: fc.constant("grant-head" as const) }) },
      { weight: 3, arbitrary: fc.record({ kind: fc.constant("abort" as const), pick: fc.nat() }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant("remove" as const), pick: fc.nat() }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant("newest" as const), priority }) },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(operation, { minLength: 50, maxLength: 400 }), async (operations) => {
        const { queue, cancelled } = makeQueue();
        // The model: [request, priority] in queue order; what each promise must settle to.
        const model: [string, number][] = [];
        const controllers = new Map<string, AbortController>();
        const expected = new Map<string, string>();
        const outcomes = new Map<string, Promise<string>>();
        let next = 0;
        const requests = () => {
          const seen: string[] = [];
          queue.forEachRequest((request) => seen.push(request));
          return seen;
        };
        for (const step of operations) {
          if (step.kind === "add") {
            const request = `w${next++}`;
            const controller = step.cancellable ? new AbortController() : undefined;
            if (controller !== undefined) controllers.set(request, controller);
            outcomes.set(
              request,
              queue
                .enqueue(request, step.priority, controller?.signal, Number.POSITIVE_INFINITY)
                .catch((error: Error) => `rejected:${error.message}`),
            );
            let index = model.findIndex(([, priority]) => priority < step.priority);
            if (index === -1) index = model.length;
            model.splice(index, 0, [request, step.priority]);
          } else if (step.kind === "grant-head") {
            const head = queue.head;
            expect(head?.request).toBe(model[0]?.[0]);
            if (head !== undefined) {
              queue.grant(head, `granted:${head.request}`);
              expected.set(head.request, `granted:${head.request}`);
              model.shift();
            }
          } else if (step.kind === "abort") {
            const queued = model.filter(([request]) => controllers.has(request));
            if (queued.length > 0) {
              const [request] = queued[step.pick % queued.length] as [string, number];
              const wasHead = model[0]?.[0] === request;
              model.splice(
                model.findIndex(([r]) => r === request),
                1,
              );
              controllers.get(request)?.abort(new Error(`aborted ${request}`));
              controllers.delete(request);
              expected.set(request, `rejected:aborted ${request}`);
              expect(cancelled.at(-1)).toEqual({ request, reason: "abort", wasHead });
            }
          } else if (step.kind === "remove") {
            if (model.length > 0) {
              // Reached by walking from the head, as an owner would: the walk makes objects of those it passes.
              const position = step.pick % model.length;
              let waiter = queue.head as Waiter<string, string>;
              for (let i = 0; i < position; i++) waiter = queue.after(waiter) as Waiter<string, string>;
              const [request] = model.splice(position, 1)[0] as [string, number];
              expect(waiter.request).toBe(request);
              queue.reject(waiter, new Error(`removed ${request}`));
              controllers.delete(request);
              expected.set(request, `rejected:removed ${request}`);
            }
          } else {
            const last = model.filter(([, priority]) => priority === step.priority).at(-1);
            expect(queue.newest(step.priority)?.request).toBe(last?.[0]);
          }
          expect(requests()).toEqual(model.map(([request]) => request));
          expect(queue.size).toBe(model.length);
        }
        // Drain: everyone left is granted in order.
        for (let head = queue.head; head !== undefined; head = queue.head) {
          expect(head.request).toBe(model.shift()?.[0]);
          queue.grant(head, `granted:${head.request}`);
          expected.set(head.request, `granted:${head.request}`);
        }
        expect(model).toEqual([]);
        for (const [request, outcome] of outcomes) expect(await outcome).toBe(expected.get(request));
      }),
      { numRuns: 150 },
    );
  });

  it("keeps a long-lived ring proportional to its waiters, whatever has passed through it", async () => {
    const { queue } = makeQueue();
    const slots = () => (queue as unknown as { levels: { items: unknown[] }[] }).levels[0]?.items.length ?? 0;
    const controllers: AbortController[] = [];
    for (let i = 0; i < 10; i++) void queue.enqueue(`w${i}`, 0, undefined, Number.POSITIVE_INFINITY);
    let most = 0;
    for (let i = 10; i < 10_000; i++) {
      // One in, one out at the head; every third newcomer is aborted from the middle later.
      const controller = i % 3 === 0 ? new AbortController() : undefined;
      if (controller !== undefined) controllers.push(controller);
      void queue.enqueue(`w${i}`, 0, controller?.signal, Number.POSITIVE_INFINITY).catch(() => undefined);
      if (i % 3 === 1) controllers.shift()?.abort();
      else queue.grant(queue.head as Waiter<string, string>, "granted");
      most = Math.max(most, slots());
    }
    expect(queue.size).toBeLessThan(40);
    expect(most).toBeLessThan(200);
    queue.rejectAll(new Error("done"));
    expect(slots()).toBe(0);
    // Emptied, the level keeps no reference to any waiter, promise or request.
    const kept = (queue as unknown as { defaultLevel: { items: unknown[] } }).defaultLevel.items;
    expect(kept.every((slot) => slot === undefined)).toBe(true);
    // Nor does a small ring that flips between one waiter and none (a channel's hand-off).
    void queue.enqueue("once", 0, undefined, Number.POSITIVE_INFINITY);
    queue.grant(queue.head as Waiter<string, string>, "granted");
    expect(
      (queue as unknown as { defaultLevel: { items: unknown[] } }).defaultLevel.items.every(
        (slot) => slot === undefined,
      ),
    ).toBe(true);
    await flushMicrotasks(2);
  });

  it("settles a waiter once: a late abort or timer after the grant changes nothing", async () => {
    const { queue, cancelled, clock } = makeQueue();
    const controller = new AbortController();
    const promise = queue.enqueue("x", 0, controller.signal, 10);
    queue.grant(queue.head as Waiter<string, string>, "yes");
    controller.abort();
    clock.advance(10);
    expect(await promise).toBe("yes");
    expect(cancelled).toEqual([]);
    expect(clock.pendingTimers).toBe(0);
  });

  it("reports each cancellation with its reason and whether it was the head", async () => {
    const { queue, cancelled, clock } = makeQueue();
    const controller = new AbortController();
    const first = queue.enqueue("first", 0, undefined, 5).catch((error: Error) => error.name);
    const second = queue.enqueue("second", 0, controller.signal, Number.POSITIVE_INFINITY).catch(() => "aborted");
    controller.abort();
    clock.advance(5);
    expect(await Promise.all([first, second])).toEqual(["TimeoutError", "aborted"]);
    expect(cancelled).toEqual([
      { request: "second", reason: "abort", wasHead: false },
      { request: "first", reason: "timeout", wasHead: true },
    ]);
    expect(queue.size).toBe(0);
    expect(queue.head).toBeUndefined();
  });

  it("rejectAll settles every waiter in queue order", async () => {
    const { queue } = makeQueue();
    const settled: string[] = [];
    for (const [request, priority] of [
      ["low", -1],
      ["high", 1],
      ["mid", 0],
    ] as const) {
      void queue.enqueue(request, priority, undefined, Number.POSITIVE_INFINITY).catch(() => settled.push(request));
    }
    queue.rejectAll(new Error("closing"));
    expect(queue.size).toBe(0);
    await flushMicrotasks(2);
    expect(settled).toEqual(["high", "mid", "low"]);
  });

  it("a waiter removed while forEach walks is skipped safely", () => {
    const { queue } = makeQueue();
    for (const request of ["a", "b", "c", "d"])
      void queue.enqueue(request, 0, undefined, Number.POSITIVE_INFINITY).catch(() => undefined);
    const visited: string[] = [];
    queue.forEach((waiter) => {
      visited.push(waiter.request);
      if (waiter.request === "b") queue.reject(waiter, new Error("drop b"));
    });
    expect(visited).toEqual(["a", "b", "c", "d"]);
    expect(order(queue)).toEqual(["a", "c", "d"]);
  });
});

describe("WaitQueue timeouts: one timer per queue", () => {
  it("waiters with a timeout share one timer, armed for the earliest deadline", async () => {
    const { queue, clock } = makeQueue();
    const timeouts = [50, 30, 70, 30, 40];
    for (let i = 0; i < 1_000; i++) {
      void queue.enqueue(`w${i}`, i % 3, undefined, timeouts[i % timeouts.length] as number).catch(() => undefined);
      expect(clock.pendingTimers).toBe(1);
    }
    expect(clock.nextTimerAt).toBe(30);
    // A newcomer due before the armed timer moves it.
    void queue.enqueue("soon", 0, undefined, 5).catch(() => undefined);
    expect(clock.pendingTimers).toBe(1);
    expect(clock.nextTimerAt).toBe(5);
    queue.rejectAll(new Error("done"));
    expect(clock.pendingTimers).toBe(0);
    await flushMicrotasks(2);
  });

  it("times waiters out exactly at their deadlines, in deadline order, equal deadlines in arrival order", async () => {
    const { queue, cancelled, clock } = makeQueue();
    const times = new Map<string, number>();
    const errors = new Map<string, Error>();
    const enqueue = (request: string, priority: number, timeout: number) => {
      void queue.enqueue(request, priority, undefined, timeout).catch((error: Error) => {
        errors.set(request, error);
      });
    };
    // Arrival order a..f; deadlines a 30, b 10, c 20, d 10, then at 5: e 10, f 30.
    enqueue("a", 0, 30);
    enqueue("b", 1, 10);
    enqueue("c", -1, 20);
    enqueue("d", 0, 10);
    clock.advance(5);
    enqueue("e", 2, 5);
    enqueue("f", 0, 25);
    const original = queue.cancel.bind(queue);
    queue.cancel = (waiter, reason, error) => {
      times.set(waiter.request, clock.now());
      original(waiter, reason, error);
    };
    for (const [to, due] of [
      [9.75, []],
      [10, ["b", "d", "e"]],
      [19.75, []],
      [20, ["c"]],
      [29.75, []],
      [30, ["a", "f"]],
    ] as const) {
      const before = cancelled.length;
      clock.advance(to - clock.now());
      expect(cancelled.slice(before).map((entry) => entry.request)).toEqual(due);
      for (const request of due) expect(times.get(request)).toBe(to);
    }
    expect(cancelled.every((entry) => entry.reason === "timeout")).toBe(true);
    expect(clock.pendingTimers).toBe(0);
    await flushMicrotasks(2);
    // The same TimeoutError a waiter's own timer gave: its own timeout, in the queue's words.
    expect(errors.get("f")).toBeInstanceOf(TimeoutError);
    expect(errors.get("f")?.message).toBe("timed out after 25 ms waiting for the test queue");
    expect((errors.get("f") as TimeoutError).timeout).toBe(25);
    expect(errors.get("c")?.message).toBe("timed out after 20 ms waiting for the test queue");
  });

  it("leaves the timer alone when the earliest waiter is granted, and re-arms when it fires early", () => {
    const { queue, cancelled, clock } = makeQueue();
    const setTimeout = vi.spyOn(clock, "setTimeout");
    const clearTimeout = vi.spyOn(clock, "clearTimeout");
    // A saturated limiter: waiters with one timeout, each granted after a while, newcomers behind them.
    for (let i = 0; i < 100; i++) {
      void queue.enqueue(`w${i}`, 0, undefined, 1_000).catch(() => undefined);
      clock.advance(5);
    }
    for (let i = 100; i < 300; i++) {
      queue.grant(queue.head as Waiter<string, string>, "granted");
      void queue.enqueue(`w${i}`, 0, undefined, 1_000).catch(() => undefined);
      clock.advance(5);
    }
    // 300 waiters, 3 timers: armed for the first waiter; at 1000 and 1500 it fired early (the waiters
    // it was armed for were long granted) and re-armed for the earliest then waiting, due at 1500 and
    // at 2000.
    expect(setTimeout).toHaveBeenCalledTimes(3);
    expect(clearTimeout).not.toHaveBeenCalled();
    expect(cancelled).toEqual([]);
    expect(clock.nextTimerAt).toBe(2_000);
    queue.assertInvariants();
    queue.rejectAll(new Error("done"));
    expect(clearTimeout).toHaveBeenCalledTimes(1);
    expect(clock.pendingTimers).toBe(0);
  });

  it("leaves no timer behind once the last waiter with a timeout leaves, whichever way it leaves", async () => {
    const exits: ((queue: Queue, clock: FakeClock, controller: AbortController) => void)[] = [
      (queue) => queue.grant(queue.head as Waiter<string, string>, "granted"),
      (queue) => queue.rejectAll(new Error("cleared")),
      (_queue, _clock, controller) => controller.abort(),
      (_queue, clock) => clock.advance(10),
    ];
    for (const exit of exits) {
      const { queue, clock } = makeQueue();
      const controller = new AbortController();
      void queue.enqueue("plain", 0, undefined, Number.POSITIVE_INFINITY).catch(() => undefined);
      void queue.enqueue("timed", 0, controller.signal, 10).catch(() => undefined);
      queue.reject(queue.head as Waiter<string, string>, new Error("the plain one goes first"));
      expect(clock.pendingTimers).toBe(1);
      exit(queue, clock, controller);
      expect(queue.size).toBe(0);
      expect(clock.pendingTimers).toBe(0);
      queue.assertInvariants();
      await flushMicrotasks(2);
    }
  });

  it("a waiter granted by the dispatch an expiry in the same instant set off is granted, not timed out", async () => {
    const clock = new FakeClock();
    const outcomes: string[] = [];
    // The owner re-dispatches when the head leaves, as a semaphore does: "light" fits, "heavy" does not.
    const queue: Queue = new WaitQueue<string, string>(
      clock,
      (_waiter, _reason, wasHead) => {
        const head = queue.head;
        if (wasHead && head?.request === "light") queue.grant(head, "granted");
      },
      () => "the test queue",
    );
    const track = (request: string, promise: Promise<string>) =>
      promise.then(
        (value) => outcomes.push(`${request} ${value}`),
        (error: Error) => outcomes.push(`${request} ${error.name}`),
      );
    track("heavy", queue.enqueue("heavy", 0, undefined, 10));
    track("light", queue.enqueue("light", 0, undefined, 10));
    clock.advance(10);
    queue.assertInvariants();
    await flushMicrotasks(2);
    expect(outcomes.sort()).toEqual(["heavy TimeoutError", "light granted"]);
    expect(clock.pendingTimers).toBe(0);
  });

  it("an owner's listener that throws does not strand the waiters due after it", async () => {
    const clock = new FakeClock();
    let throws = true;
    const queue: Queue = new WaitQueue<string, string>(
      clock,
      () => {
        if (throws) {
          throws = false;
          throw new Error("the owner's listener failed");
        }
      },
      () => "the test queue",
    );
    const first = queue.enqueue("first", 0, undefined, 10).catch((error: Error) => error.name);
    const second = queue.enqueue("second", 0, undefined, 10).catch((error: Error) => error.name);
    expect(() => clock.advance(10)).toThrow("the owner's listener failed");
    queue.assertInvariants();
    // The one still due got the timer back, due at once.
    expect(clock.nextTimerAt).toBe(10);
    clock.advance(0);
    expect(await Promise.all([first, second])).toEqual(["TimeoutError", "TimeoutError"]);
    expect(clock.pendingTimers).toBe(0);
  });

  it("keeps waiters with one timeout in their ring's deadline FIFO, with no object or heap slot each", () => {
    const { queue, cancelled, clock } = makeQueue();
    const heap = (queue as unknown as { deadlines: { size: number } }).deadlines;
    for (let i = 0; i < 40; i++) {
      void queue.enqueue(`w${i}`, 0, i % 2 === 0 ? undefined : new AbortController().signal, 50).catch(() => undefined);
      clock.advance(1);
    }
    expect(heap.size).toBe(0);
    // A shorter timeout behind them would put the FIFO out of deadline order: it goes to the heap.
    void queue.enqueue("short", 0, undefined, 10).catch(() => undefined);
    expect(heap.size).toBe(1);
    queue.assertInvariants();
    // Due at 50 both, the first waiter and the short one: in arrival order, across FIFO and heap.
    clock.advance(10);
    expect(cancelled.map((entry) => entry.request)).toEqual(["w0", "short"]);
    expect(heap.size).toBe(0);
    queue.rejectAll(new Error("done"));
    expect(clock.pendingTimers).toBe(0);
  });

  it("a clock that goes back does not put a deadline FIFO out of order: the earlier deadline goes to the heap", () => {
    const { queue, cancelled, clock } = makeQueue();
    clock.advance(100);
    void queue.enqueue("late", 0, undefined, 10).catch(() => undefined);
    // A custom clock may step back (a wall clock set back): the same timeout then gives an earlier deadline.
    const now = vi.spyOn(clock, "now").mockReturnValue(50);
    void queue.enqueue("early", 0, undefined, 10).catch(() => undefined);
    now.mockRestore();
    queue.assertInvariants();
    clock.advance(10);
    expect(cancelled.map((entry) => entry.request)).toEqual(["early", "late"]);
    expect(clock.pendingTimers).toBe(0);
  });

  it("re-arms for a deadline that `now + (deadline - now)` would round past, so it fires at the deadline", () => {
    // 0.3 + (0.9 - 0.3) is 0.9000000000000001: re-armed at 0.3 by that sum, the timer due at 0.9 would
    // miss an advance to 0.9, which the waiter's own timer (0 + 0.9) used to reach.
    expect(0.3 + (0.9 - 0.3)).toBeGreaterThan(0.9);
    const { queue, cancelled, clock } = makeQueue();
    void queue.enqueue("early", 0, undefined, 0.3).catch(() => undefined);
    void queue.enqueue("late", 0, undefined, 0.9).catch(() => undefined);
    clock.advance(0.9);
    expect(cancelled.map((entry) => entry.request)).toEqual(["early", "late"]);
    expect(clock.pendingTimers).toBe(0);
  });

  it("settles every waiter once, at its deadline unless granted, aborted or removed first, with one timer per queue (model-checked)", async () => {
    type Operation =
      | { kind: "add"; priority: number; timeout: number | undefined; cancellable: boolean; fits: boolean }
      | { kind: "grant-head" }
      | { kind: "abort"; pick: number }
      | { kind: "remove"; pick: number }
      | { kind: "advance"; ms: number }
      | { kind: "clear" };
    // Quarter milliseconds: fractional times whose sums are exact, so "at its deadline" means equal.
    const quarters = (max: number) => fc.integer({ min: 0, max }).map((n) => n / 4);
    const operation: fc.Arbitrary<Operation> = fc.oneof(
      {
        weight: 5,
        arbitrary: fc.record({
          kind: fc.constant("add" as const),
          priority: fc.constantFrom(0, 0, 1, -1),
          // Often one of two timeouts, so that deadline FIFOs fill and empty, and sometimes any.
          timeout: fc.option(
            fc.oneof(
              fc.constantFrom(10, 10, 17.5),
              quarters(40).filter((ms) => ms > 0),
            ),
            { nil: undefined, freq: 3 },
          ),
          cancellable: fc.boolean(),
          fits: fc.boolean(),
        }),
      },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant("grant-head" as const) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant("abort" as const), pick: fc.nat() }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant("remove" as const), pick: fc.nat() }) },
      { weight: 3, arbitrary: fc.record({ kind: fc.constant("advance" as const), ms: quarters(24) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant("clear" as const) }) },
    );
    interface Entry {
      request: string;
      priority: number;
      arrival: number;
      deadline: number | undefined;
      timeout: number | undefined;
      fits: boolean;
      controller: AbortController | undefined;
    }
    await fc.assert(
      fc.asyncProperty(fc.array(operation, { minLength: 1, maxLength: 120 }), async (operations) => {
        const clock = new FakeClock();
        const left: { request: string; reason: string; at: number }[] = [];
        // An owner that re-dispatches when the head leaves: grants from the head while the head fits.
        const queue: Queue = new WaitQueue<string, string>(
          clock,
          (waiter, reason, wasHead) => {
            left.push({ request: waiter.request, reason, at: clock.now() });
            if (wasHead) dispatch();
          },
          () => "the test queue",
        );
        const fits = new Set<string>();
        const dispatch = () => {
          for (let head = queue.head; head !== undefined && fits.has(head.request); head = queue.head) {
            queue.grant(head, `granted:${head.request}`);
          }
        };
        // The model: waiting entries in queue order, what each promise must settle to, who left when.
        let model: Entry[] = [];
        const expected = new Map<string, string>();
        const expectedLeft: { request: string; reason: string; at: number }[] = [];
        const outcomes = new Map<string, Promise<string>>();
        const modelDispatch = () => {
          for (let head = model[0]; head?.fits; head = model[0]) {
            model.shift();
            expected.set(head.request, `granted:${head.request}`);
          }
        };
        const modelLeave = (entry: Entry, reason: string, outcome: string) => {
          const wasHead = model[0] === entry;
          model = model.filter((other) => other !== entry);
          expected.set(entry.request, outcome);
          expectedLeft.push({ request: entry.request, reason, at: clock.now() });
          if (wasHead) modelDispatch();
        };
        let arrivals = 0;
        for (const step of operations) {
          if (step.kind === "add") {
            const request = `w${arrivals}`;
            const controller = step.cancellable ? new AbortController() : undefined;
            if (step.fits) fits.add(request);
            outcomes.set(
              request,
              queue
                .enqueue(request, step.priority, controller?.signal, step.timeout ?? Number.POSITIVE_INFINITY)
                .catch((error: Error) => `rejected:${error.message}`),
            );
            const entry: Entry = {
              request,
              priority: step.priority,
              arrival: arrivals++,
              deadline: step.timeout === undefined ? undefined : clock.now() + step.timeout,
              timeout: step.timeout,
              fits: step.fits,
              controller,
            };
            let index = model.findIndex((other) => other.priority < step.priority);
            if (index === -1) index = model.length;
            model.splice(index, 0, entry);
          } else if (step.kind === "grant-head") {
            const head = queue.head;
            expect(head?.request).toBe(model[0]?.request);
            if (head !== undefined) {
              queue.grant(head, `granted:${head.request}`);
              expected.set(head.request, `granted:${head.request}`);
              model.shift();
            }
          } else if (step.kind === "abort") {
            const abortable = model.filter((entry) => entry.controller !== undefined);
            const entry = abortable[step.pick % Math.max(1, abortable.length)];
            if (entry !== undefined) {
              entry.controller?.abort(new Error(`aborted ${entry.request}`));
              modelLeave(entry, "abort", `rejected:aborted ${entry.request}`);
            }
          } else if (step.kind === "remove") {
            const entry = model[step.pick % Math.max(1, model.length)];
            if (entry !== undefined) {
              let waiter = queue.head as Waiter<string, string>;
              while (waiter.request !== entry.request) waiter = queue.after(waiter) as Waiter<string, string>;
              queue.reject(waiter, new Error(`removed ${entry.request}`));
              model = model.filter((other) => other !== entry);
              expected.set(entry.request, `rejected:removed ${entry.request}`);
            }
          } else if (step.kind === "clear") {
            queue.rejectAll(new Error("cleared"));
            for (const entry of model) expected.set(entry.request, "rejected:cleared");
            model = [];
          } else {
            const target = clock.now() + step.ms;
            // Due waiters leave one by one, earliest deadline first, equal deadlines in arrival order;
            // a head's departure lets the owner grant those behind it that fit, before their turn.
            for (;;) {
              const due = model
                .filter((entry) => entry.deadline !== undefined && entry.deadline <= target)
                .sort((a, b) => (a.deadline as number) - (b.deadline as number) || a.arrival - b.arrival)[0];
              if (due === undefined) break;
              clock.advance((due.deadline as number) - clock.now());
              modelLeave(due, "timeout", `rejected:timed out after ${due.timeout} ms waiting for the test queue`);
            }
            clock.advance(target - clock.now());
          }
          queue.assertInvariants();
          expect(left).toEqual(expectedLeft);
          expect(queue.size).toBe(model.length);
          expect(clock.pendingTimers).toBe(model.some((entry) => entry.deadline !== undefined) ? 1 : 0);
        }
        queue.rejectAll(new Error("cleared"));
        for (const entry of model) expected.set(entry.request, "rejected:cleared");
        expect(clock.pendingTimers).toBe(0);
        for (const [request, outcome] of outcomes) expect(await outcome).toBe(expected.get(request));
      }),
      { numRuns: 300 },
    );
  });
});

describe("WaitQueue.assertInvariants", () => {
  /** The queue's private state, as a test reaches it to break it on purpose. */
  interface Ring {
    priority: number;
    items: unknown[];
    start: number;
    end: number;
    live: number;
    dead: number;
    deadlines: number[] | undefined;
    arrivals: number[] | undefined;
    timed: number;
    latest: number;
    due: number;
  }
  interface Internals {
    levels: Ring[];
    defaultLevel: Ring;
    count: number;
    deadlines: { push(entry: Waiter<string, string>, deadline: number): void; deadlines: number[] };
    timer: unknown;
    timerAt: number;
    expiring: boolean;
    timedInLevels: number;
  }

  /**
   * A queue with three levels, bare waiters, waiters with a timeout in deadline FIFOs (b, b2 and low)
   * and in the heap (d, with a signal too, and e: other timeouts than the FIFO's).
   */
  function fixture() {
    const { queue } = makeQueue();
    const add = (request: string, priority: number, timeout = Number.POSITIVE_INFINITY, signal?: AbortSignal) =>
      void queue.enqueue(request, priority, signal, timeout).catch(() => undefined);
    add("high", 1);
    add("a", 0);
    add("b", 0, 10);
    add("c", 0);
    add("d", 0, 20, new AbortController().signal);
    add("b2", 0, 10);
    add("e", 0, 5);
    add("low", -1, 30);
    const waiter = (request: string) => {
      let found = queue.head as Waiter<string, string>;
      while (found.request !== request) found = queue.after(found) as Waiter<string, string>;
      return found;
    };
    const internals = queue as unknown as Internals;
    return { queue, internals, waiter, zero: internals.levels[1] as Ring };
  }

  type Fixture = ReturnType<typeof fixture>;
  const cases: [invariant: string, breakIt: (fixture: Fixture) => void][] = [
    ["levels are sorted by strictly descending priority", ({ internals }) => internals.levels.reverse()],
    [
      "every level in the queue has a queued waiter",
      ({ internals, zero }) => {
        const Level = zero.constructor as new (priority: number) => Ring;
        internals.levels.push(new Level(-5));
      },
    ],
    [
      "size equals the sum of the levels' live counts",
      ({ internals }) => {
        internals.count++;
      },
    ],
    [
      "live and dead count the ring's entries and tombstones",
      ({ zero }) => {
        zero.dead++;
      },
    ],
    [
      "entries lie between start and end, both even",
      ({ zero }) => {
        zero.end++;
      },
    ],
    [
      "every slot outside the entries is undefined",
      ({ zero }) => {
        zero.items[zero.end + 1] = "left behind";
      },
    ],
    [
      "a tombstone keeps nothing",
      ({ queue, waiter, zero }) => {
        const c = waiter("c");
        const index = c.index;
        queue.reject(c, new Error("leaves a tombstone"));
        zero.items[index + 1] = "the request it kept";
      },
    ],
    [
      "no tombstone at the front of a ring",
      ({ queue, waiter, zero }) => {
        const a = waiter("a");
        const c = waiter("c");
        const index = c.index;
        queue.reject(c, new Error("leaves a tombstone"));
        // The tombstone and the front entry change places; everything else stays true.
        [zero.items[0], zero.items[1], zero.items[index], zero.items[index + 1]] = [
          zero.items[index],
          zero.items[index + 1],
          zero.items[0],
          zero.items[1],
        ];
        a.index = index;
      },
    ],
    [
      "an entry starts with a waiter or its resolving function",
      ({ zero }) => {
        zero.items[zero.start] = 42;
      },
    ],
    [
      "a waiter object knows its index",
      ({ waiter }) => {
        waiter("b").index += 2;
      },
    ],
    [
      "a waiter has its level's priority",
      ({ waiter }) => {
        (waiter("b") as { priority: number }).priority = 7;
      },
    ],
    [
      "a waiter object's resolving function follows it",
      ({ waiter, zero }) => {
        zero.items[waiter("b").index + 1] = undefined;
      },
    ],
    [
      "a waiter is in the deadline heap exactly when it has a timeout and is in no deadline FIFO",
      ({ waiter }) => {
        waiter("d").heapIndex = -1;
      },
    ],
    [
      "a waiter in a deadline FIFO waits with its timeout",
      ({ waiter }) => {
        (waiter("b") as { timeout: number }).timeout = 7;
      },
    ],
    [
      "a level without a deadline FIFO has none in it",
      ({ internals }) => {
        (internals.levels[0] as Ring).timed = 1;
      },
    ],
    [
      "a deadline FIFO has a slot for every entry",
      ({ zero }) => {
        (zero.deadlines as number[]).length = 1;
      },
    ],
    [
      "a finite deadline marks a queued entry",
      ({ zero }) => {
        (zero.deadlines as number[]).push(3);
      },
    ],
    [
      "no entry of a deadline FIFO lies before its search start",
      ({ zero }) => {
        zero.due = zero.end;
      },
    ],
    [
      "no deadline in a FIFO is after its latest",
      ({ zero }) => {
        zero.latest = 0;
      },
    ],
    [
      "a deadline FIFO is in deadline and arrival order",
      ({ waiter, zero }) => {
        const arrivals = zero.arrivals as number[];
        arrivals[waiter("b2").index >> 1] = arrivals[waiter("b").index >> 1] as number;
      },
    ],
    [
      "timed counts a level's deadline FIFO",
      ({ zero }) => {
        zero.timed++;
      },
    ],
    [
      "timedInLevels counts the waiters in deadline FIFOs",
      ({ internals }) => {
        internals.timedInLevels++;
      },
    ],
    [
      "the default level holds nothing while nobody waits at priority 0",
      ({ queue, internals }) => {
        for (const request of ["a", "b", "c", "d", "b2", "e"]) {
          let found = queue.head as Waiter<string, string>;
          while (found.request !== request) found = queue.after(found) as Waiter<string, string>;
          queue.reject(found, new Error("gone"));
        }
        internals.defaultLevel.items[0] = "stale";
      },
    ],
    [
      "no settled waiter in the deadline heap",
      ({ queue, internals, waiter }) => {
        const b = waiter("b");
        queue.grant(b, "granted");
        internals.deadlines.push(b, 5);
      },
    ],
    [
      "the deadline heap holds exactly the queued waiters with a timeout in no deadline FIFO",
      ({ internals }) => {
        // A waiter of another queue, waiting there, slipped into this queue's heap.
        const other = makeQueue().queue;
        void other.enqueue("stranger", 0, undefined, 5).catch(() => undefined);
        internals.deadlines.push(other.head as Waiter<string, string>, 5);
      },
    ],
    [
      "DeadlineHeap invariant broken: no entry is due before its parent",
      ({ internals }) => {
        internals.deadlines.deadlines[0] = 1_000;
      },
    ],
    [
      "the timer is armed exactly while a waiter with a timeout waits",
      ({ internals }) => {
        internals.timer = undefined;
        internals.timerAt = Number.POSITIVE_INFINITY;
      },
    ],
    [
      "the timer is armed no later than the earliest deadline",
      ({ internals }) => {
        internals.timerAt = 15;
      },
    ],
    [
      "a timer that is not armed has no time",
      ({ queue, internals }) => {
        queue.rejectAll(new Error("gone"));
        internals.timerAt = 15;
      },
    ],
    [
      "no expiry is under way between calls",
      ({ internals }) => {
        internals.expiring = true;
      },
    ],
  ];

  it("says so instead of passing when the checks (test code, installed by sluice/testing) are missing", () => {
    const { queue } = fixture();
    const installed = queueChecks.check;
    queueChecks.check = undefined;
    try {
      expect(() => queue.assertInvariants()).toThrow("the WaitQueue checks are not installed");
    } finally {
      queueChecks.check = installed;
    }
    queue.assertInvariants();
  });

  it.each(cases)("throws an Error naming it when broken: %s", (invariant, breakIt) => {
    const broken = fixture();
    broken.queue.assertInvariants();
    breakIt(broken);
    expect(() => broken.queue.assertInvariants()).toThrow(invariant);
  });
});
