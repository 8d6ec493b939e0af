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
