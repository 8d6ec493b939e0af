import fc from "fast-check";
import { map, mapSettled, mapStream, RateLimiter, Semaphore } from "sluice";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";
import { expectNoUnhandledRejections } from "../support/no-unhandled-rejections.js";

/** Every test in this file also proves that nothing map does causes an unhandled rejection. */
expectNoUnhandledRejections();

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
}
function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((yes, no) => {
    resolve = yes;
    reject = no;
  });
  return { promise, resolve, reject };
}

/** A generator that counts how many items were pulled from it and whether it was closed. */
function counted<T>(items: Iterable<T>) {
  const stats = { pulled: 0, closed: false };
  function* generate() {
    try {
      for (const item of items) {
        stats.pulled++;
        yield item;
      }
    } finally {
      stats.closed = true;
    }
  }
  return { stats, input: generate() };
}

function* naturals() {
  for (let i = 0; ; i++) yield i;
}

describe("map: order", () => {
  it("input order also through a limiter and in mapSettled, when the last item finishes first", async () => {
    // Item i finishes after (n - i) ms: completion order is the reverse of input order.
    const clock = new FakeClock();
    const n = 6;
    const work = (item: number) =>
      new Promise<number>((resolve) => clock.setTimeout(() => resolve(item), (n - item) * 10));
    const viaLimiter = map([...Array(n).keys()], work, { limiter: new Semaphore(n) });
    const settled = mapSettled([...Array(n).keys()], work, { concurrency: n });
    await clock.advanceAsync(n * 10);
    expect(await viaLimiter).toEqual([0, 1, 2, 3, 4, 5]);
    expect((await settled).map((outcome) => (outcome.status === "fulfilled" ? outcome.value : undefined))).toEqual([
      0, 1, 2, 3, 4, 5,
    ]);
  });

  it("returns results in input order whatever the completion order; ordered: false returns completion order", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc
          .integer({ min: 1, max: 12 })
          .chain((n) =>
            fc.tuple(fc.constant(n), fc.shuffledSubarray([...Array(n).keys()], { minLength: n, maxLength: n })),
          ),
        fc.integer({ min: 1, max: 5 }),
        fc.boolean(),
        async ([n, completion], concurrency, ordered) => {
          const gates = Array.from({ length: n }, () => deferred<void>());
          const finished: number[] = [];
          const result = map(
            [...Array(n).keys()],
            async (item) => {
              await gates[item]?.promise;
              finished.push(item);
              return item * 10;
            },
            { concurrency, ordered },
          );
          // Open the gates in the chosen order, letting whatever has started run.
          for (const item of completion) {
            gates[item]?.resolve();
            await flushMicrotasks(3);
          }
          const results = await result;
          if (ordered) expect(results).toEqual([...Array(n).keys()].map((i) => i * 10));
          else expect(results).toEqual(finished.map((i) => i * 10));
        },
      ),
      { numRuns: 100 },
    );
  });

  it("never runs more than concurrency at once, and pulls an item only when it can start", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 6 }),
        fc.array(fc.nat({ max: 3 }), { maxLength: 30 }),
        async (concurrency, delays) => {
          const { stats, input } = counted(delays);
          let running = 0;
          let peak = 0;
          let done = 0;
          await map(
            input,
            async (delay) => {
              running++;
              peak = Math.max(peak, running);
              // Pulled ahead of completions: only the ones running.
              expect(stats.pulled - done).toBeLessThanOrEqual(concurrency);
              await flushMicrotasks(delay);
              running--;
              done++;
            },
            { concurrency },
          );
          expect(peak).toBeLessThanOrEqual(concurrency);
          expect(stats.pulled).toBe(delays.length);
        },
      ),
      { numRuns: 100 },
    );
  });

  it("accepts async iterables", async () => {
    async function* letters() {
      yield "a";
      yield "b";
      yield "c";
    }
    expect(await map(letters(), async (letter, index) => `${index}${letter}`, { concurrency: 2 })).toEqual([
      "0a",
      "1b",
      "2c",
    ]);
  });

  it("default concurrency is unlimited", async () => {
    let running = 0;
    let peak = 0;
    await map(Array.from({ length: 50 }), async () => {
      running++;
      peak = Math.max(peak, running);
      await flushMicrotasks(1);
      running--;
    });
    expect(peak).toBe(50);
  });
});

describe("map: failure", () => {
  it("the first failure aborts the siblings' signals with that error and rejects with it once they settle", async () => {
    const { stats, input } = counted(naturals());
    const siblingsSaw: unknown[] = [];
    let settledSiblings = 0;
    const failure = new Error("item 2 failed");
    const outcome = map(
      input,
      (item, _index, signal) =>
        new Promise<number>((_resolve, reject) => {
          if (item === 2) {
            flushMicrotasks(1).then(() => reject(failure));
            return;
          }
          signal.addEventListener("abort", () => {
            siblingsSaw.push(signal.reason);
            // A sibling that takes a moment to wind down: map must wait for it.
            flushMicrotasks(5).then(() => {
              settledSiblings++;
              reject(signal.reason);
            });
          });
        }),
      { concurrency: 4 },
    );
    await expect(outcome).rejects.toBe(failure);
    expect(siblingsSaw).toEqual([failure, failure, failure]);
    expect(settledSiblings).toBe(3);
    expect(stats.pulled).toBe(4);
    expect(stats.closed).toBe(true);
  });

  it("a mapper that throws synchronously rejects the map", async () => {
    await expect(
      map([1, 2, 3], (item) => {
        if (item === 2) throw new Error("sync");
        return item;
      }),
    ).rejects.toThrow("sync");
  });

  it("an input that throws rejects the map after the running items settle", async () => {
    function* broken() {
      yield 1;
      throw new Error("disk read failed");
    }
    let finished = 0;
    await expect(
      map(
        broken(),
        async () => {
          await flushMicrotasks(2);
          finished++;
        },
        { concurrency: 2 },
      ),
    ).rejects.toThrow("disk read failed");
    expect(finished).toBe(1);
  });

  it("stopOnError: false runs everything and rejects with an AggregateError in input order", async () => {
    const error = await map(
      [0, 1, 2, 3, 4],
      async (item) => {
        await flushMicrotasks(5 - item);
        if (item % 2 === 1) throw new Error(`odd ${item}`);
        return item;
      },
      { stopOnError: false },
    ).catch((reason: unknown) => reason);
    expect(error).toBeInstanceOf(AggregateError);
    expect((error as AggregateError).errors.map((e: Error) => e.message)).toEqual(["odd 1", "odd 3"]);
  });

  it("mapSettled returns every outcome in input order and never aborts siblings", async () => {
    const aborted: boolean[] = [];
    const outcomes = await mapSettled(
      [1, 2, 3],
      async (item, _index, signal) => {
        await flushMicrotasks(4 - item);
        aborted.push(signal.aborted);
        if (item === 2) throw new Error("two");
        return item;
      },
      { concurrency: 3 },
    );
    expect(outcomes).toEqual([
      { status: "fulfilled", value: 1 },
      { status: "rejected", reason: new Error("two") },
      { status: "fulfilled", value: 3 },
    ]);
    expect(aborted).toEqual([false, false, false]);
  });
});

describe("map: outer signal", () => {
  it("aborting stops pulling, aborts the running mappers, rejects with the reason, and removes its listener", async () => {
    const controller = new AbortController();
    const { stats, input } = counted(naturals());
    const reasons: unknown[] = [];
    const outcome = map(
      input,
      (_item, _index, signal) =>
        new Promise((_resolve, reject) => {
          signal.addEventListener("abort", () => {
            reasons.push(signal.reason);
            reject(signal.reason);
          });
        }),
      { concurrency: 3, signal: controller.signal },
    );
    await flushMicrotasks();
    const reason = new Error("user cancelled");
    controller.abort(reason);
    await expect(outcome).rejects.toBe(reason);
    expect(reasons).toEqual([reason, reason, reason]);
    expect(stats.pulled).toBe(3);
    expect(stats.closed).toBe(true);
  });

  it("an already-aborted signal rejects without pulling anything", async () => {
    const { stats, input } = counted([1, 2, 3]);
    const reason = new Error("too late");
    await expect(map(input, (x) => x, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(stats.pulled).toBe(0);
  });
});

describe("map: limiter", () => {
  it("runs no more than the semaphore admits, and leaves no waiter in it after a failure", async () => {
    const semaphore = new Semaphore(2);
    let running = 0;
    let peak = 0;
    await map(
      Array.from({ length: 20 }, (_, i) => i),
      async () => {
        running++;
        peak = Math.max(peak, running);
        expect(semaphore.inUse).toBeLessThanOrEqual(2);
        await flushMicrotasks(2);
        running--;
      },
      { limiter: semaphore },
    );
    expect(peak).toBe(2);
    expect(semaphore.inUse).toBe(0);

    const failing = map(
      naturals(),
      async (item) => {
        await flushMicrotasks(2);
        if (item === 3) throw new Error("boom");
      },
      { limiter: semaphore },
    );
    await expect(failing).rejects.toThrow("boom");
    expect(semaphore.inUse).toBe(0);
    expect(semaphore.waiting).toBe(0);
  });

  it("a RateLimiter paces the starts, and an item is pulled only once admitted", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 5, interval: 1000 }], clock });
    const { stats, input } = counted([...Array(12).keys()]);
    const startedAt: number[] = [];
    const outcome = map(
      input,
      async (item) => {
        startedAt.push(clock.now());
        return item;
      },
      { limiter },
    );
    await flushMicrotasks();
    // The bucket starts full: 5 at once; nothing more is pulled while the limiter says wait.
    expect(startedAt).toHaveLength(5);
    expect(stats.pulled).toBe(5);
    await clock.runAll();
    expect(await outcome).toEqual([...Array(12).keys()]);
    // Never more than 5 starts in any 1000 ms window (plus the refill a token bucket allows).
    for (const start of startedAt) {
      const inWindow = startedAt.filter((other) => other >= start && other < start + 1000).length;
      expect(inWindow).toBeLessThanOrEqual(5 + 5);
    }
    expect(startedAt.at(-1)).toBeGreaterThanOrEqual(1000);
  });

  it("combines with concurrency: both must admit", async () => {
    const semaphore = new Semaphore(5);
    let running = 0;
    let peak = 0;
    await map(
      Array.from({ length: 20 }),
      async () => {
        running++;
        peak = Math.max(peak, running);
        await flushMicrotasks(2);
        running--;
      },
      { limiter: semaphore, concurrency: 3 },
    );
    expect(peak).toBe(3);
  });

  it("pulls only when the limiter admits, so an endless input is fine", async () => {
    const semaphore = new Semaphore(3);
    const { stats, input } = counted(naturals());
    const seen: number[] = [];
    for await (const value of mapStream(input, async (item) => item, { limiter: semaphore, buffer: 2 })) {
      seen.push(value);
      if (seen.length === 10) break;
    }
    expect(seen).toEqual([...Array(10).keys()]);
    expect(stats.pulled).toBeLessThanOrEqual(10 + 3 + 2);
    expect(stats.closed).toBe(true);
    expect(semaphore.inUse).toBe(0);
  });
});

describe("mapStream", () => {
  it("yields in input order, or in completion order with ordered: false", async () => {
    const delays = [5, 1, 3, 0, 2];
    const ordered: number[] = [];
    for await (const value of mapStream(delays, async (delay, index) => {
      await flushMicrotasks(delay);
      return index;
    })) {
      ordered.push(value);
    }
    expect(ordered).toEqual([0, 1, 2, 3, 4]);
    const unordered: number[] = [];
    for await (const value of mapStream(
      delays,
      async (delay, index) => {
        await flushMicrotasks(delay * 3);
        return index;
      },
      { ordered: false },
    )) {
      unordered.push(value);
    }
    expect(unordered).toEqual([3, 1, 4, 2, 0]);
  });

  it("pulls no more than concurrency + buffer items ahead of the consumer (backpressure)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 4 }),
        fc.boolean(),
        fc.array(fc.nat({ max: 3 }), { minLength: 1, maxLength: 12 }),
        async (concurrency, buffer, ordered, pauses) => {
          const { stats, input } = counted(naturals());
          let consumed = 0;
          for await (const _ of mapStream(
            input,
            async (item) => {
              await flushMicrotasks(item % 3);
              return item;
            },
            { concurrency, buffer, ordered },
          )) {
            consumed++;
            // The consumer is slow: give the engine time to run ahead as far as it is allowed to.
            await flushMicrotasks(pauses[consumed % pauses.length]);
            expect(stats.pulled - consumed).toBeLessThanOrEqual(concurrency + buffer);
            if (consumed === 15) break;
          }
          expect(stats.closed).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  it("ends after the last result when the input is longer than the window", async () => {
    const seen: number[] = [];
    for await (const value of mapStream(counted([...Array(100).keys()]).input, async (x) => x, { concurrency: 4 })) {
      seen.push(value);
    }
    expect(seen).toEqual([...Array(100).keys()]);
  });

  it("does not start before the first next(), and return() before that closes the input", async () => {
    const { stats, input } = counted([1, 2, 3]);
    const stream = mapStream(input, async (x) => x);
    await flushMicrotasks();
    expect(stats.pulled).toBe(0);
    expect(await stream.return?.()).toEqual({ done: true, value: undefined });
    expect(stats.pulled).toBe(0);
  });

  it("leaving the loop early aborts the running mappers and waits for them", async () => {
    let aborted = 0;
    let settled = 0;
    for await (const value of mapStream(
      naturals(),
      (item, _index, signal) =>
        item === 0
          ? Promise.resolve(item)
          : new Promise<number>((_resolve, reject) => {
              signal.addEventListener("abort", () => {
                aborted++;
                flushMicrotasks(2).then(() => {
                  settled++;
                  reject(signal.reason);
                });
              });
            }),
      { concurrency: 3 },
    )) {
      expect(value).toBe(0);
      break;
    }
    expect(aborted).toBeGreaterThan(0);
    expect(settled).toBe(aborted);
  });

  it("the first failure rejects the next next() once the siblings settled, then the stream ends", async () => {
    const stream = mapStream(
      [0, 1, 2],
      async (item) => {
        await flushMicrotasks(item);
        if (item === 1) throw new Error("one");
        return item;
      },
      { concurrency: 3 },
    );
    const first = await stream.next();
    expect(first).toEqual({ done: false, value: 0 });
    await expect(stream.next()).rejects.toThrow("one");
    expect(await stream.next()).toEqual({ done: true, value: undefined });
  });

  it("throws synchronously for bad arguments (it is a synchronous function)", () => {
    expect(() => mapStream(42 as unknown as number[], (x) => x)).toThrow(/input.*iterable/);
    expect(() => mapStream([1], (x) => x, { buffer: -1 })).toThrow(/buffer.*-1/);
  });
});

describe("map: bad input", () => {
  it("rejects (never throws) naming the argument and the value", async () => {
    await expect(map([1], (x) => x, { concurrency: 0 })).rejects.toThrow(/concurrency.*0/);
    await expect(map([1], (x) => x, { concurrency: 1.5 })).rejects.toThrow(RangeError);
    await expect(map([1], "nope" as unknown as (x: number) => number)).rejects.toThrow(/fn/);
    await expect(map(null as unknown as number[], (x) => x)).rejects.toThrow(TypeError);
    await expect(map([1], (x) => x, { limiter: {} as never })).rejects.toThrow(/limiter/);
    await expect(mapSettled([1], (x) => x, { signal: "x" as never })).rejects.toThrow(/signal/);
  });
});
