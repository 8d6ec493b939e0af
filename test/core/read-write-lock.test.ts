import fc from "fast-check";
import { type Permit, ReadWriteLock, TimeoutError } from "sluice";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";
import { describeLimiterConformance } from "../conformance/limiter.js";

describe("ReadWriteLock", () => {
  it("many readers at once; a writer alone", async () => {
    const lock = new ReadWriteLock();
    const a = await lock.read();
    const b = await lock.read();
    expect(lock.readers).toBe(2);
    expect(lock.tryWrite()).toBeUndefined();
    const writer = lock.write();
    a.release();
    expect(await Promise.race([writer.then(() => "in"), flushMicrotasks(2).then(() => "waits")])).toBe("waits");
    b.release();
    const held = await writer;
    expect(lock.isWriteLocked()).toBe(true);
    expect(lock.tryRead()).toBeUndefined();
    held.release();
    expect(lock.tryRead()).toBeDefined();
  });

  it("a waiting writer blocks new readers (writers are not starved by a stream of readers)", async () => {
    const lock = new ReadWriteLock();
    const first = await lock.read();
    const order: string[] = [];
    const writer = lock.write().then((permit) => {
      order.push("writer");
      return permit;
    });
    const lateReader = lock.read().then((permit) => {
      order.push("late reader");
      return permit;
    });
    expect(lock.tryRead()).toBeUndefined();
    first.release();
    (await writer).release();
    (await lateReader).release();
    expect(order).toEqual(["writer", "late reader"]);
  });

  it("abort, timeout and priority as everywhere", async () => {
    const clock = new FakeClock();
    const lock = new ReadWriteLock({ clock, name: "config" });
    const held = await lock.write();
    const timedOut = lock.read({ timeout: 10 });
    const controller = new AbortController();
    const aborted = lock.write({ signal: controller.signal });
    const low = lock.read();
    const high = lock.write({ priority: 1 });
    clock.advance(10);
    await expect(timedOut).rejects.toThrow(TimeoutError);
    controller.abort(new Error("gone"));
    await expect(aborted).rejects.toThrow("gone");
    held.release();
    const highPermit = await high;
    expect(lock.readers).toBe(0);
    highPermit.release();
    (await low).release();
    await expect(lock.read({ weight: 2 } as never)).rejects.toThrow(/weight must be 1 on read-write lock "config"/);
    expect(lock.statistics()).toMatchObject({ granted: 3, timedOut: 1, aborted: 1, readers: 0, writing: false });
  });

  it("model: never a writer with anyone else; invariants after every step", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(fc.constant("read" as const), fc.constant("write" as const), fc.nat()), { maxLength: 50 }),
        async (steps) => {
          const lock = new ReadWriteLock();
          const held: { permit: Permit; write: boolean }[] = [];
          let writers = 0;
          let readers = 0;
          for (const step of steps) {
            if (step === "read" || step === "write") {
              const write = step === "write";
              (write ? lock.write() : lock.read()).then((permit) => {
                if (write) writers++;
                else readers++;
                expect(writers === 0 || (writers === 1 && readers === 0)).toBe(true);
                held.push({ permit, write });
              });
            } else if (held.length > 0) {
              const [gone] = held.splice(step % held.length, 1);
              if (gone?.write) writers--;
              else readers--;
              gone?.permit.release();
            }
            await flushMicrotasks(1);
            lock.assertInvariants();
          }
        },
      ),
      { numRuns: 100 },
    );
  });
});

// Its write side is a lock like any other; its read side, with a writer around, likewise keeps order.
describeLimiterConformance(
  "ReadWriteLock (writer)",
  () => {
    const lock = new ReadWriteLock();
    return { limiter: Object.assign(lock.writer, { statistics: () => lock.statistics() }) };
  },
  { weighted: false, maxCapacity: 1 },
);
