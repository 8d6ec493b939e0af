import { EventEmitter, getEventListeners, once } from "node:events";
import { type Limiter, map, mapStream, Semaphore, TaskGroup } from "sluice";
import { describe, expect, it } from "vitest";
import { expectNoUnhandledRejections } from "../support/no-unhandled-rejections.js";
import { state } from "../support/promise-state.js";

/** Every test in this file also proves that nothing it ran caused an unhandled rejection. */
expectNoUnhandledRejections();

/** A limiter (a user's own wrapper, say) that works until it is closed, then throws synchronously. */
function closableLimiter() {
  const semaphore = new Semaphore(1);
  const control = { closed: false };
  const limiter: Limiter = {
    acquire(options) {
      if (control.closed) throw new Error("limiter closed");
      return semaphore.acquire(options);
    },
    run(fn, options) {
      if (control.closed) throw new Error("limiter closed");
      return semaphore.run(fn, options);
    },
  };
  return { limiter, control };
}

/** An outer signal that counts its abort listeners. */
function countedSignal() {
  const controller = new AbortController();
  const signal = controller.signal;
  let listeners = 0;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = ((...args: Parameters<typeof add>) => {
    listeners++;
    add(...args);
  }) as typeof signal.addEventListener;
  signal.removeEventListener = ((...args: Parameters<typeof remove>) => {
    listeners--;
    remove(...args);
  }) as typeof signal.removeEventListener;
  return { signal, listeners: () => listeners };
}

describe("map: a limiter that throws synchronously", () => {
  it("regression: a throwing acquire after the first item left the map pending forever", async () => {
    const { limiter, control } = closableLimiter();
    const outcome = map(
      [1, 2, 3],
      async (item) => {
        control.closed = true;
        return item;
      },
      { limiter },
    );
    expect(await state(outcome)).toBe("rejected");
    await expect(outcome).rejects.toThrow("limiter closed");
  });

  it("a throwing first acquire rejects the map and leaves no listener on the outer signal", async () => {
    const { limiter, control } = closableLimiter();
    control.closed = true;
    const outer = countedSignal();
    await expect(map([1], async (item) => item, { limiter, signal: outer.signal })).rejects.toThrow("limiter closed");
    expect(outer.listeners()).toBe(0);
  });

  it("mapStream rejects next() with the limiter's error instead of hanging", async () => {
    const { limiter, control } = closableLimiter();
    const stream = mapStream(
      [1, 2, 3],
      async (item) => {
        if (item === 2) control.closed = true;
        return item;
      },
      { limiter },
    );
    const consumed = (async () => {
      for await (const _item of stream) {
        // consume until the error
      }
    })();
    expect(await state(consumed)).toBe("rejected");
    await expect(consumed).rejects.toThrow("limiter closed");
  });
});

describe("map: an input that breaks the iterator protocol", () => {
  it("a sync iterator whose next() returns a non-object rejects with a TypeError instead of hanging", async () => {
    let calls = 0;
    const broken: Iterable<number> = {
      [Symbol.iterator]: () => ({
        next: () => (calls++ === 0 ? { done: false, value: 1 } : (undefined as unknown as IteratorResult<number>)),
      }),
    };
    const outcome = map(broken, async (item) => item, { concurrency: 1 });
    expect(await state(outcome)).toBe("rejected");
    await expect(outcome).rejects.toBeInstanceOf(TypeError);
  });

  it("an async iterator whose next() resolves to a non-object rejects with a TypeError instead of hanging", async () => {
    const broken: AsyncIterable<number> = {
      [Symbol.asyncIterator]: () => ({
        next: async () => null as unknown as IteratorResult<number>,
      }),
    };
    const outcome = map(broken, async (item) => item);
    expect(await state(outcome)).toBe("rejected");
    await expect(outcome).rejects.toBeInstanceOf(TypeError);
  });
});

describe("map: bad options", () => {
  it("options null rejects with a TypeError that names options and the value", async () => {
    await expect(map([1], async (item) => item, null as never)).rejects.toThrow("options must be an object; got null");
  });
});

describe("TaskGroup: a limiter that throws synchronously", () => {
  it("regression: spawn threw, the task stayed counted as running, and wait() never settled", async () => {
    const { limiter, control } = closableLimiter();
    const group = new TaskGroup({ limiter });
    control.closed = true;
    const task = group.spawn(async () => "never runs");
    await expect(task).rejects.toThrow("limiter closed");
    expect(group.running).toBe(0);
    const ended = group.wait();
    expect(await state(ended)).toBe("rejected");
    await expect(ended).rejects.toThrow("limiter closed");
  });
});

describe("TaskGroup: cancellation that comes back wrapped", () => {
  it("regression: cancel() counted as a failure when tasks used Node APIs (AbortError with the reason as cause)", async () => {
    const group = new TaskGroup();
    // events.once, fs, timers/promises... reject with a new AbortError whose `cause` is signal.reason.
    const tasks = [1, 2].map(() => group.spawn((signal) => once(new EventEmitter(), "never", { signal })));
    group.cancel();
    for (const task of tasks) await expect(task).rejects.toMatchObject({ name: "AbortError" });
    await expect(group.wait()).resolves.toBeUndefined();
  });

  it("a real error after cancel() is still a failure", async () => {
    const group = new TaskGroup();
    const failure = new Error("rollback failed");
    group.spawn(async (signal) => {
      await once(new EventEmitter(), "never", { signal }).catch(() => undefined);
      throw failure;
    });
    group.cancel();
    await expect(group.wait()).rejects.toBe(failure);
  });
});

describe("map: the concurrency argument", () => {
  it.each([1.5, 0, -1, Number.NaN])(
    "concurrency %s is a RangeError that states the real bound (>= 1)",
    async (concurrency) => {
      await expect(map([1], async (item) => item, { concurrency })).rejects.toThrow(
        new RegExp(`^concurrency must be an integer >= 1 or Infinity; got ${String(concurrency)}$`),
      );
    },
  );

  it("a concurrency that is not a number is a TypeError", async () => {
    await expect(map([1], async (item) => item, { concurrency: "4" as never })).rejects.toBeInstanceOf(TypeError);
  });
});

describe("TaskGroup and a long-lived outer signal", () => {
  it("a group that is never waited on does not stay attached to the signal once its tasks are done", async () => {
    const outer = new AbortController();
    for (let round = 0; round < 100; round++) {
      const group = new TaskGroup({ signal: outer.signal });
      await group.spawn(async () => round);
    }
    expect(getEventListeners(outer.signal, "abort")).toHaveLength(0);
  });

  it("an outer abort while the group is idle still cancels it: spawn, wait and signal see the reason", async () => {
    const outer = new AbortController();
    const group = new TaskGroup({ signal: outer.signal });
    await group.spawn(async () => 1);
    const reason = new Error("shutting down");
    outer.abort(reason);
    expect(group.signal.aborted).toBe(true);
    await expect(group.spawn(async () => 2)).rejects.toBe(reason);
    await expect(group.wait()).rejects.toBe(reason);
  });

  it("an outer abort while tasks run cancels them at once", async () => {
    const outer = new AbortController();
    const group = new TaskGroup({ signal: outer.signal });
    const seen = group.spawn(
      (signal) => new Promise((resolve) => signal.addEventListener("abort", () => resolve(signal.reason))),
    );
    const reason = new Error("stop");
    outer.abort(reason);
    expect(await seen).toBe(reason);
    await expect(group.wait()).rejects.toBe(reason);
    expect(getEventListeners(outer.signal, "abort")).toHaveLength(0);
  });
});
