/**
 * The scheduling core on its own: order, O(1) removal from anywhere, and the exits of a waiter.
 */
import fc from "fast-check";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";
import { type Waiter, WaitQueue } from "../../src/core/wait-queue.js";

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
