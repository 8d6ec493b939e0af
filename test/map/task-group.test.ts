import { ClosedError, Semaphore, TaskGroup } from "sluice";
import { flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";
import { expectNoUnhandledRejections } from "../support/no-unhandled-rejections.js";

/** Every test in this file also proves that nothing a TaskGroup does causes an unhandled rejection. */
expectNoUnhandledRejections();

/** A task that runs until its signal aborts, then takes `windDown` rounds of callbacks to stop. */
function untilAborted(log: string[], name: string, windDown = 2) {
  return (signal: AbortSignal) =>
    new Promise<never>((_resolve, reject) => {
      signal.addEventListener("abort", () => {
        log.push(`${name} aborted`);
        flushMicrotasks(windDown).then(() => {
          log.push(`${name} stopped`);
          reject(signal.reason);
        });
      });
    });
}

describe("TaskGroup", () => {
  it("wait() resolves once every task has settled, including tasks spawned meanwhile", async () => {
    const group = new TaskGroup();
    const done: string[] = [];
    group.spawn(async () => {
      await flushMicrotasks(2);
      done.push("a");
      group.spawn(async () => {
        await flushMicrotasks(2);
        done.push("c");
      });
    });
    group.spawn(async () => {
      done.push("b");
    });
    expect(group.running).toBe(2);
    await group.wait();
    expect(done.sort()).toEqual(["a", "b", "c"]);
    expect(group.running).toBe(0);
  });

  it("the first failure aborts the siblings with that error, and wait() rejects with it after they stopped", async () => {
    const log: string[] = [];
    const group = new TaskGroup();
    const failure = new Error("task failed");
    group.spawn(untilAborted(log, "sibling1"));
    group.spawn(untilAborted(log, "sibling2", 5));
    group.spawn(async () => {
      await flushMicrotasks(1);
      throw failure;
    });
    await expect(group.wait()).rejects.toBe(failure);
    expect(group.signal.reason).toBe(failure);
    // Nothing is left running after the group ends.
    expect(log.sort()).toEqual(["sibling1 aborted", "sibling1 stopped", "sibling2 aborted", "sibling2 stopped"]);
    expect(group.running).toBe(0);
  });

  it("await using waits for all tasks at the end of the block and throws the first error", async () => {
    const log: string[] = [];
    const attempt = async () => {
      await using group = new TaskGroup();
      group.spawn(untilAborted(log, "worker"));
      group.spawn(async () => {
        throw new Error("bad input");
      });
    };
    await expect(attempt()).rejects.toThrow("bad input");
    expect(log).toEqual(["worker aborted", "worker stopped"]);
  });

  it("spawn returns the task's own result, and an ignored failing task is no unhandled rejection", async () => {
    const group = new TaskGroup();
    const value = group.spawn(async () => 42);
    expect(await value).toBe(42);
    group.spawn(async () => {
      throw new Error("ignored by the caller, reported by wait()");
    });
    await expect(group.wait()).rejects.toThrow("reported by wait()");
  });

  it("cancel() aborts every task and is not a failure", async () => {
    const log: string[] = [];
    const group = new TaskGroup();
    group.spawn(untilAborted(log, "a"));
    group.spawn(untilAborted(log, "b"));
    group.cancel();
    await expect(group.wait()).resolves.toBeUndefined();
    expect(log).toHaveLength(4);
  });

  it("an outer signal cancels the group and wait() rejects with its reason", async () => {
    const controller = new AbortController();
    const log: string[] = [];
    const group = new TaskGroup({ signal: controller.signal });
    group.spawn(untilAborted(log, "a"));
    const reason = new Error("shutting down");
    controller.abort(reason);
    await expect(group.wait()).rejects.toBe(reason);
    expect(log).toEqual(["a aborted", "a stopped"]);
  });

  it("after a failure new tasks do not start; after the group ended spawn rejects with ClosedError", async () => {
    const group = new TaskGroup();
    const failure = new Error("first");
    group.spawn(async () => {
      throw failure;
    });
    await flushMicrotasks();
    let started = false;
    await expect(
      group.spawn(async () => {
        started = true;
      }),
    ).rejects.toBe(failure);
    expect(started).toBe(false);
    await expect(group.wait()).rejects.toBe(failure);
    await expect(group.spawn(async () => {})).rejects.toBeInstanceOf(ClosedError);
  });

  it("a limiter caps how many tasks run at once; cancelling removes the waiting ones from it", async () => {
    const semaphore = new Semaphore(2);
    const group = new TaskGroup({ limiter: semaphore });
    let running = 0;
    let peak = 0;
    for (let i = 0; i < 6; i++) {
      group.spawn(async () => {
        running++;
        peak = Math.max(peak, running);
        await flushMicrotasks(2);
        running--;
      });
    }
    await group.wait();
    expect(peak).toBe(2);

    const blocked = new TaskGroup({ limiter: semaphore });
    const log: string[] = [];
    blocked.spawn(untilAborted(log, "a"));
    blocked.spawn(untilAborted(log, "b"));
    blocked.spawn(untilAborted(log, "c"));
    await flushMicrotasks();
    expect(semaphore.waiting).toBe(1);
    blocked.cancel();
    await blocked.wait();
    expect(semaphore.waiting).toBe(0);
    expect(semaphore.inUse).toBe(0);
    expect(log.filter((line) => line.endsWith("aborted")).sort()).toEqual(["a aborted", "b aborted"]);
  });

  it("a synchronously throwing task is a failure like any other", async () => {
    const group = new TaskGroup();
    group.spawn(() => {
      throw new Error("sync");
    });
    await expect(group.wait()).rejects.toThrow("sync");
  });

  it("rejects bad input", async () => {
    expect(() => new TaskGroup({ limiter: 3 as never })).toThrow(/limiter/);
    await expect(new TaskGroup().spawn("x" as never)).rejects.toThrow(/fn/);
  });
});
