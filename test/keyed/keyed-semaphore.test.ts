import { KeyedMutex, KeyedSemaphore, TimeoutError } from "sluice";
import { FakeClock } from "sluice/testing";
import { describe, expect, it } from "vitest";

describe("KeyedSemaphore", () => {
  it("keys are independent: one key full does not hold back another", async () => {
    const semaphore = new KeyedSemaphore(1);
    const alice = await semaphore.acquire("alice");
    expect(semaphore.isLocked("alice")).toBe(true);
    expect(semaphore.isLocked("bob")).toBe(false);
    const bob = semaphore.tryAcquire("bob");
    expect(bob).toBeDefined();
    expect(semaphore.tryAcquire("alice")).toBeUndefined();
    alice.release();
    bob?.release();
  });

  it("a key is dropped as soon as nothing is held and nobody waits, on every path", async () => {
    const clock = new FakeClock();
    const semaphore = new KeyedSemaphore(1, { clock });
    const held = await semaphore.acquire("a");
    const waiting = semaphore.acquire("a", { timeout: 10 });
    const controller = new AbortController();
    const aborted = semaphore.acquire("a", { signal: controller.signal });
    const other = await semaphore.acquire("b");
    expect(semaphore.keys()).toEqual(["a", "b"]);
    other.release(); // released: dropped
    expect(semaphore.keys()).toEqual(["a"]);
    controller.abort(new Error("gone"));
    await expect(aborted).rejects.toThrow("gone");
    clock.advance(10);
    await expect(waiting).rejects.toBeInstanceOf(TimeoutError);
    expect(semaphore.keys()).toEqual(["a"]); // still held
    held.release();
    expect(semaphore.size).toBe(0);
    // Refused at once (timeout 0 on a busy key, a weight above the capacity): nothing left behind.
    await expect(semaphore.acquire("c", { weight: 2 })).rejects.toThrow(
      /weight 2 is above the capacity 1 of semaphore key "c"/,
    );
    expect(semaphore.size).toBe(0);
    await semaphore.run("d", () => undefined);
    expect(semaphore.size).toBe(0);
  });

  it("statistics: per key as a Semaphore's, and totals that keep the counters of dropped keys", async () => {
    const semaphore = new KeyedSemaphore(2, { name: "uploads" });
    for (let i = 0; i < 5; i++) await semaphore.run(`user-${i}`, () => undefined);
    const held = await semaphore.acquire("user-0", { weight: 2 });
    expect(semaphore.statistics("user-0")).toMatchObject({
      key: "user-0",
      name: "uploads",
      inUse: 2,
      capacity: 2,
      available: 0,
    });
    expect(semaphore.statistics("nobody")).toMatchObject({ key: "nobody", inUse: 0, waiting: 0, granted: 0 });
    expect(semaphore.statistics()).toMatchObject({ name: "uploads", keys: 1, capacityPerKey: 2, inUse: 2, granted: 6 });
    held.release();
    expect(semaphore.statistics()).toMatchObject({ keys: 0, inUse: 0, granted: 6 });
  });

  it("bad keys are refused naming the key: not a string, empty, huge", async () => {
    const semaphore = new KeyedSemaphore(1);
    await expect(semaphore.acquire(42 as unknown as string)).rejects.toThrow(TypeError);
    await expect(semaphore.acquire("")).rejects.toThrow(/key must not be empty/);
    await expect(semaphore.run("x".repeat(2000), () => 1)).rejects.toThrow(/at most 1024 characters; got one of 2000/);
    expect(() => semaphore.tryAcquire(undefined as unknown as string)).toThrow(/key must be a string; got undefined/);
    expect(() => new KeyedSemaphore(1, { nmae: "x" } as never)).toThrow(/did you mean "name"/);
    expect(semaphore.size).toBe(0);
  });

  it("memory follows the live keys: 10,000 keys used then idle leave none behind", async () => {
    const semaphore = new KeyedSemaphore(1);
    const permits = [];
    for (let i = 0; i < 10_000; i++) permits.push(await semaphore.acquire(`k${i}`));
    expect(semaphore.size).toBe(10_000);
    for (const permit of permits) permit.release();
    expect(semaphore.size).toBe(0);
  });

  it("a view of a key does not keep the key alive", async () => {
    const semaphore = new KeyedSemaphore(1);
    const view = semaphore.for("alice");
    await view.run(() => undefined);
    expect(semaphore.size).toBe(0);
    // A dropped key reads as fresh, but a view keeps the counters of the key's earlier lives.
    expect(view.statistics()).toMatchObject({ key: "alice", inUse: 0, granted: 1 });
    expect(semaphore.statistics("bob")).toMatchObject({ key: "bob", granted: 0 });
  });
});

describe("KeyedMutex", () => {
  it("one holder per key; messages speak of the mutex and the key", async () => {
    const mutex = new KeyedMutex({ name: "accounts" });
    const order: string[] = [];
    const first = mutex.runExclusive("a", async () => {
      order.push("a1");
      await Promise.resolve();
      order.push("a1 done");
    });
    const second = mutex.runExclusive("a", () => order.push("a2"));
    const other = mutex.runExclusive("b", () => order.push("b"));
    await Promise.all([first, second, other]);
    expect(order.indexOf("a2")).toBeGreaterThan(order.indexOf("a1 done"));
    expect(order.indexOf("b")).toBeLessThan(order.indexOf("a1 done"));
    const lock = mutex.tryLock("a");
    await expect(mutex.lock("a", { timeout: 0 })).rejects.toThrow(/mutex "accounts" key "a"/);
    lock?.release();
    expect(mutex.size).toBe(0);
  });
});
