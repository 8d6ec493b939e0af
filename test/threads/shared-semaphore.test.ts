/**
 * The cross-thread protocol of SharedSemaphore, exercised deterministically in one thread: several
 * instances built on one buffer each take their own thread slot, exactly as workers do, so races that
 * are a matter of luck between real threads (a cancel landing between another thread's grant and the
 * owner's wake-up) can be staged step by step here.
 */
import { threadId } from "node:worker_threads";
import fc from "fast-check";
import { type Permit, Semaphore } from "sluice";
import { SharedMutex, SharedSemaphore, type SharedSemaphoreHandle } from "sluice/threads";
import { describe, expect, it } from "vitest";

/** Another "thread" on the same semaphore: a separate instance with its own slot in the buffer. */
function peer(handle: SharedSemaphoreHandle): SharedSemaphore {
  return new SharedSemaphore(handle);
}

/** Lets doorbell wake-ups (Atomics.waitAsync) and promise callbacks run. */
async function settle(rounds = 3): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

function pending(promise: Promise<unknown>): () => boolean {
  let settled = false;
  promise.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  return () => !settled;
}

describe("SharedSemaphore protocol (several slots in one thread)", () => {
  it("serves waiters of different slots in ticket order, also beyond the 32 entries a slot publishes", async () => {
    const a = new SharedSemaphore(1);
    const b = peer(a.handle);
    const c = peer(a.handle);
    const held = await a.acquire();
    const order: number[] = [];
    const all: Promise<void>[] = [];
    for (let index = 0; index < 100; index++) {
      const side = index % 5 === 0 ? c : b;
      all.push(
        side.acquire().then((permit) => {
          order.push(index);
          permit.release();
        }),
      );
    }
    expect(a.waiting).toBe(100);
    held.release();
    await Promise.all(all);
    expect(order).toEqual(Array.from({ length: 100 }, (_, index) => index));
    expect(a.statistics()).toMatchObject({ inUse: 0, waiting: 0 });
  });

  it("a thread that has not collected its grants yet holds back only the waiters that came after it", async () => {
    const a = new SharedSemaphore(40);
    const b = peer(a.handle);
    const c = peer(a.handle);
    const all = await a.acquire({ weight: 40 });
    const early = Array.from({ length: 32 }, () => b.acquire()); // fills b's published window
    const fromC = c.acquire(); // arrives before b's next ones
    const late = Array.from({ length: 7 }, () => b.acquire()); // b cannot publish these yet
    all.release();
    // Synchronously, before b wakes up to collect: its 32 grants and c's are made; b's hidden head is
    // next in line and is not granted until b publishes it, but it did not hold back c, who came first.
    expect(a.inUse).toBe(33);
    const permits = await Promise.all([...early, fromC, ...late]);
    expect(a.inUse).toBe(40);
    for (const permit of permits) permit.release();
    expect(a.statistics()).toMatchObject({ inUse: 0, waiting: 0 });
  });

  it("a cancel landing between another slot's grant and the owner's wake-up gives the permit back", async () => {
    const a = new SharedSemaphore(1);
    const b = peer(a.handle);
    const held = await a.acquire();
    const controller = new AbortController();
    const raced = b.acquire({ signal: controller.signal });
    const behind = b.acquire();
    // The release grants b's entry in shared memory; b only learns of it on its next wake-up...
    held.release();
    // ... and before that, its caller gives up. One compare-exchange decides: the grant already won it,
    // so b hands the weight straight on to the next in line.
    controller.abort(new Error("gave up"));
    await expect(raced).rejects.toThrow("gave up");
    const next = await behind;
    expect(a.inUse).toBe(1);
    expect(a.tryAcquire()).toBeUndefined();
    next.release();
    expect(a.inUse).toBe(0);
    const again = a.tryAcquire();
    expect(again).toBeDefined();
    again?.release();
  });

  it("a cancel that wins the race leaves the entry ungranted and the permit with the releaser's successor", async () => {
    const a = new SharedSemaphore(1);
    const b = peer(a.handle);
    const c = peer(a.handle);
    const held = await a.acquire();
    const controller = new AbortController();
    const cancelled = b.acquire({ signal: controller.signal });
    const behind = c.acquire();
    controller.abort(new Error("first"));
    held.release();
    await expect(cancelled).rejects.toThrow("first");
    (await behind).release();
    expect(a.statistics()).toMatchObject({ inUse: 0, waiting: 0 });
  });

  it("a heavy waiter at the head of another slot holds back lighter ones behind it (head-of-line)", async () => {
    const a = new SharedSemaphore(3);
    const b = peer(a.handle);
    const first = await a.acquire({ weight: 2 });
    const heavy = b.acquire({ weight: 3 });
    const light = a.acquire({ weight: 1 });
    await settle();
    const heavyWaits = pending(heavy);
    const lightWaits = pending(light);
    await settle();
    expect(heavyWaits()).toBe(true);
    expect(lightWaits()).toBe(true);
    first.release();
    const heavyPermit = await heavy;
    await settle();
    expect(lightWaits()).toBe(true);
    heavyPermit.release();
    (await light).release();
  });

  it("a thread that dies in the middle of dispatching is recovered: its permits and the dispatch step come back", async () => {
    const a = new SharedSemaphore(1);
    const b = peer(a.handle);
    await b.acquire(); // b takes slot 0 and the only permit, and never releases it
    const waiting = a.acquire();
    // Stage b's thread dying while it held the dispatcher word (index 4 of the buffer: slot 0 + 1).
    // From now on nobody else may dispatch; a release would only leave a note for the dead dispatcher.
    const words = new Int32Array(a.handle.buffer);
    Atomics.store(words, 4, 1);
    await settle();
    expect(pending(waiting)()).toBe(true);
    // All peers here share this thread's id, so reclaiming it stands for "b's thread exited".
    expect(a.reclaim(threadId)).toBe(true);
    const permit = await Promise.race([
      waiting,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("the waiter was never granted")), 5_000)),
    ]);
    expect(Atomics.load(words, 4)).toBe(0);
    expect(a.statistics()).toMatchObject({ inUse: 1, waiting: 0 });
    permit.release();
    expect(a.inUse).toBe(0);
  });

  it("timeout 0 and tryAcquire never pass a waiter in another slot", async () => {
    const a = new SharedSemaphore(2);
    const b = peer(a.handle);
    const first = await a.acquire();
    const queued = b.acquire({ weight: 2 });
    expect(a.tryAcquire()).toBeUndefined();
    await expect(a.acquire({ timeout: 0 })).rejects.toMatchObject({ name: "TimeoutError" });
    expect(a.isLocked()).toBe(true);
    first.release();
    (await queued).release();
    expect(a.isLocked()).toBe(false);
    expect(a.statistics()).toMatchObject({ inUse: 0, waiting: 0 });
  });

  it("grants exactly what the in-process Semaphore grants, for random weights, priorities and slots", async () => {
    type Step = { kind: "acquire"; slot: number; weight: number; priority: number } | { kind: "release"; pick: number };
    const step: fc.Arbitrary<Step> = fc.oneof(
      {
        weight: 3,
        arbitrary: fc.record({
          kind: fc.constant("acquire" as const),
          slot: fc.integer({ min: 0, max: 2 }),
          weight: fc.integer({ min: 1, max: 3 }),
          priority: fc.integer({ min: 0, max: 2 }),
        }),
      },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant("release" as const), pick: fc.nat() }) },
    );
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 3, max: 4 }), fc.array(step, { maxLength: 30 }), async (capacity, steps) => {
        // The in-process Semaphore is the specification: same requests, same order, same grants.
        const oracle = new Semaphore(capacity);
        const shared = new SharedSemaphore(capacity);
        const slots = [shared, peer(shared.handle), peer(shared.handle)];
        const oracleHeld = new Map<number, Permit>();
        const sharedHeld = new Map<number, Permit>();
        let next = 0;
        for (const s of steps) {
          if (s.kind === "acquire") {
            const id = next++;
            const options = { weight: s.weight, priority: s.priority };
            oracle.acquire(options).then(
              (permit) => oracleHeld.set(id, permit),
              () => undefined,
            );
            (slots[s.slot] as SharedSemaphore).acquire(options).then((permit) => sharedHeld.set(id, permit));
          } else {
            const ids = [...oracleHeld.keys()].sort((x, y) => x - y);
            if (ids.length === 0) continue;
            const id = ids[s.pick % ids.length] as number;
            (oracleHeld.get(id) as Permit).release();
            oracleHeld.delete(id);
            (sharedHeld.get(id) as Permit).release();
            sharedHeld.delete(id);
          }
          await settle(2);
          expect([...sharedHeld.keys()].sort((x, y) => x - y)).toEqual([...oracleHeld.keys()].sort((x, y) => x - y));
        }
        oracle.clear();
        for (const permit of oracleHeld.values()) permit.release();
        // Let every shared waiter through, so no test leaves callers (and their keep-alive) behind.
        for (let round = 0; round < 100 && (sharedHeld.size > 0 || shared.waiting > 0); round++) {
          for (const permit of sharedHeld.values()) permit.release();
          sharedHeld.clear();
          await settle(1);
        }
        expect(shared.statistics()).toMatchObject({ inUse: 0, waiting: 0 });
      }),
      { numRuns: 60 },
    );
  });

  it("random schedules over three slots never exceed the capacity and lose no permit", async () => {
    type Step =
      | { kind: "acquire"; slot: number; weight: number; abortable: boolean }
      | { kind: "release"; pick: number }
      | { kind: "abort"; pick: number }
      | { kind: "settle" };
    const step: fc.Arbitrary<Step> = fc.oneof(
      fc.record({
        kind: fc.constant("acquire" as const),
        slot: fc.integer({ min: 0, max: 2 }),
        weight: fc.integer({ min: 1, max: 3 }),
        abortable: fc.boolean(),
      }),
      fc.record({ kind: fc.constant("release" as const), pick: fc.nat() }),
      fc.record({ kind: fc.constant("abort" as const), pick: fc.nat() }),
      fc.constant({ kind: "settle" as const }),
    );
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 3, max: 4 }), fc.array(step, { maxLength: 40 }), async (capacity, steps) => {
        const main = new SharedSemaphore(capacity);
        const slots = [main, peer(main.handle), peer(main.handle)];
        const held: Permit[] = [];
        let heldWeight = 0;
        let most = 0;
        const controllers: AbortController[] = [];
        const outcomes: Promise<unknown>[] = [];
        const take = (permit: Permit) => {
          held.push(permit);
          heldWeight += permit.weight;
          most = Math.max(most, heldWeight);
        };
        for (const s of steps) {
          if (s.kind === "acquire") {
            const controller = new AbortController();
            if (s.abortable) controllers.push(controller);
            const slot = slots[s.slot] as SharedSemaphore;
            outcomes.push(slot.acquire({ weight: s.weight, signal: controller.signal }).then(take, () => undefined));
          } else if (s.kind === "release" && held.length > 0) {
            const [permit] = held.splice(s.pick % held.length, 1) as [Permit];
            heldWeight -= permit.weight;
            permit.release();
          } else if (s.kind === "abort" && controllers.length > 0) {
            const [controller] = controllers.splice(s.pick % controllers.length, 1) as [AbortController];
            controller.abort(new Error("aborted"));
          } else if (s.kind === "settle") {
            await settle(1);
          }
        }
        // Release everything, repeatedly, until every caller has been served or has given up.
        let open = outcomes.length;
        for (const outcome of outcomes) outcome.then(() => open--);
        for (let round = 0; round < 200 && (held.length > 0 || open > 0); round++) {
          while (held.length > 0) {
            const permit = held.pop() as Permit;
            heldWeight -= permit.weight;
            permit.release();
          }
          await settle(1);
        }
        expect(open).toBe(0);
        expect(most).toBeLessThanOrEqual(capacity);
        expect(main.statistics()).toMatchObject({ inUse: 0, waiting: 0 });
        // Nothing was lost: the whole capacity can be taken again, in one go.
        const all = main.tryAcquire(capacity);
        expect(all).toBeDefined();
        all?.release();
      }),
      { numRuns: 60 },
    );
  });
});

describe("SharedSemaphore handles and input", () => {
  it("from() gives one instance per semaphore per thread", () => {
    const semaphore = new SharedSemaphore(2, { name: "db" });
    expect(SharedSemaphore.from(semaphore.handle)).toBe(semaphore);
    const copy = structuredClone(semaphore.handle);
    expect(SharedSemaphore.from(copy)).toBe(semaphore);
    expect(semaphore.handle.name).toBe("db");
  });

  it("a handle that is not a SharedSemaphore's is a TypeError naming it", () => {
    expect(() => SharedSemaphore.from({} as SharedSemaphoreHandle)).toThrow(TypeError);
    const forged = { kind: "sluice:SharedSemaphore", buffer: new SharedArrayBuffer(64), name: undefined } as const;
    expect(() => SharedSemaphore.from(forged)).toThrow(/SharedArrayBuffer of a sluice SharedSemaphore/);
    expect(() => SharedMutex.from(new SharedSemaphore(2).handle)).toThrow(/capacity 2/);
  });

  it("bad capacity and maxThreads throw at construction, naming the value", () => {
    expect(() => new SharedSemaphore(-1)).toThrow(/capacity.*-1/);
    expect(() => new SharedSemaphore(1.5)).toThrow(RangeError);
    expect(() => new SharedSemaphore(Number.NaN)).toThrow(RangeError);
    expect(() => new SharedSemaphore(2 ** 31)).toThrow(RangeError);
    expect(() => new SharedSemaphore(1, { maxThreads: 0 })).toThrow(/maxThreads.*0/);
  });

  it("more threads than maxThreads reject with a RangeError instead of waiting", async () => {
    const semaphore = new SharedSemaphore(1, { maxThreads: 2 });
    (await semaphore.acquire()).release();
    (await peer(semaphore.handle).acquire()).release();
    await expect(peer(semaphore.handle).acquire()).rejects.toThrow(/all 2 thread slots/);
  });

  it("an infinite capacity admits any weight", async () => {
    const semaphore = new SharedSemaphore(Number.POSITIVE_INFINITY);
    const permit = await semaphore.acquire({ weight: 1_000_000 });
    expect(semaphore.capacity).toBe(Number.POSITIVE_INFINITY);
    expect(semaphore.inUse).toBe(1_000_000);
    permit.release();
  });
});
