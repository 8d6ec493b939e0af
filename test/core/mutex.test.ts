import { Mutex, ReleasedError, TimeoutError } from "sluice";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";

describe("Mutex", () => {
  it("runExclusive serialises critical sections: no read-modify-write is lost", async () => {
    const mutex = new Mutex();
    let balance = 0;
    const deposit = () =>
      mutex.runExclusive(async () => {
        const read = balance;
        await flushMicrotasks(1);
        balance = read + 10;
      });
    await Promise.all(Array.from({ length: 20 }, deposit));
    expect(balance).toBe(200);
  });

  it("lock / tryLock / isLocked agree", async () => {
    const mutex = new Mutex({ name: "ledger" });
    expect(mutex.isLocked()).toBe(false);
    const lock = await mutex.lock();
    expect(mutex.isLocked()).toBe(true);
    expect(mutex.tryLock()).toBeUndefined();
    lock.release();
    expect(() => lock.release()).toThrow(ReleasedError);
    const again = mutex.tryLock();
    expect(again).toBeDefined();
    again?.release();
    expect(mutex.isLocked()).toBe(false);
  });

  it("a lock waiter times out with a TimeoutError naming the mutex", async () => {
    const clock = new FakeClock();
    const mutex = new Mutex({ name: "ledger", clock });
    const lock = await mutex.lock();
    const waiting = mutex.lock({ timeout: 50 }).catch((error: unknown) => error);
    await clock.advanceAsync(50);
    const error = await waiting;
    expect(error).toBeInstanceOf(TimeoutError);
    expect(String(error)).toMatch(/50 ms .*"ledger"/);
    lock.release();
  });

  it("priorities order the waiters for the lock", async () => {
    const mutex = new Mutex();
    const lock = await mutex.lock();
    const order: string[] = [];
    const waits = [
      mutex.runExclusive(() => order.push("normal")),
      mutex.runExclusive(() => order.push("urgent"), { priority: 10 }),
    ];
    expect(mutex.waiting).toBe(2);
    lock.release();
    await Promise.all(waits);
    expect(order).toEqual(["urgent", "normal"]);
  });

  it("clear rejects waiters but the holder keeps the lock; onIdle follows", async () => {
    const mutex = new Mutex();
    const lock = await mutex.lock();
    const waiting = mutex.lock();
    mutex.clear(new Error("closing"));
    await expect(waiting).rejects.toThrow("closing");
    expect(mutex.isLocked()).toBe(true);
    const idle = mutex.onIdle();
    lock.release();
    await idle;
    expect(mutex.statistics()).toMatchObject({ capacity: 1, inUse: 0, waiting: 0, rejected: 1 });
  });

  it("await using unlocks at the end of the block", async () => {
    const mutex = new Mutex();
    {
      await using _lock = await mutex.lock();
      expect(mutex.isLocked()).toBe(true);
    }
    expect(mutex.isLocked()).toBe(false);
  });
});
