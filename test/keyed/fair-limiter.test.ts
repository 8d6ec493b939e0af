import fc from "fast-check";
import { FairLimiter, type Permit } from "sluice";
import { flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";

/** Queues `count` jobs of `key`; each records its key when granted and keeps its permit. */
function queue(limiter: FairLimiter, key: string, count: number, granted: string[], held: Permit[]): void {
  for (let i = 0; i < count; i++) {
    limiter.acquire(key).then(
      (permit) => {
        granted.push(key);
        held.push(permit);
      },
      () => undefined, // cleared at the end of the test
    );
  }
}

/** Releases the oldest held permit, `times` times, letting the grants it makes land each time. */
async function serve(held: Permit[], times: number): Promise<void> {
  await flushMicrotasks(2);
  for (let i = 0; i < times && held.length > 0; i++) {
    (held.shift() as Permit).release();
    await flushMicrotasks(2);
  }
}

describe("FairLimiter", () => {
  it("tenant A queues 100,000 jobs, then tenant B one: B starts within one service slot", async () => {
    for (const capacity of [1, 4]) {
      const limiter = new FairLimiter(capacity);
      const granted: string[] = [];
      const held: Permit[] = [];
      queue(limiter, "A", 100_000, granted, held);
      queue(limiter, "B", 1, granted, held);
      await flushMicrotasks(2);
      expect(granted).toEqual(Array(capacity).fill("A"));
      await serve(held, 2);
      // One of A's jobs ends: A's turn (share 1) may take it; the next slot is B's.
      expect(granted.indexOf("B")).toBeGreaterThan(0);
      expect(granted.indexOf("B")).toBeLessThanOrEqual(capacity + 1);
      limiter.clear();
    }
  });

  it("shares 3:1 split the throughput 3:1 (within 5%) while both wait", async () => {
    const limiter = new FairLimiter(2, { shares: { a: 3, b: 1 } });
    const granted: string[] = [];
    const held: Permit[] = [];
    queue(limiter, "a", 5_000, granted, held);
    queue(limiter, "b", 5_000, granted, held);
    await serve(held, 4_000);
    const a = granted.filter((key) => key === "a").length;
    const b = granted.filter((key) => key === "b").length;
    expect(a / b).toBeGreaterThan(3 * 0.95);
    expect(a / b).toBeLessThan(3 * 1.05);
    limiter.clear();
  });

  it("a key's waiters are FIFO; nobody starves; invariants hold after every step (model)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.record({
              kind: fc.constant("acquire" as const),
              key: fc.constantFrom("a", "b", "c", "d"),
              weight: fc.integer({ min: 1, max: 3 }),
              abort: fc.boolean(),
            }),
            fc.record({ kind: fc.constant("release" as const), index: fc.nat() }),
            fc.record({ kind: fc.constant("abort" as const), index: fc.nat() }),
          ),
          { maxLength: 60 },
        ),
        fc.integer({ min: 1, max: 4 }),
        async (steps, capacity) => {
          const limiter = new FairLimiter(capacity, { shares: (key) => (key === "a" ? 2 : 1) });
          const held: Permit[] = [];
          const arrivals = new Map<string, number[]>();
          const grants = new Map<string, number[]>();
          const controllers: AbortController[] = [];
          let next = 0;
          let waiting = 0;
          for (const step of steps) {
            if (step.kind === "acquire") {
              if (step.weight > capacity) continue;
              const id = next++;
              const controller = new AbortController();
              if (step.abort) controllers.push(controller);
              arrivals.set(step.key, [...(arrivals.get(step.key) ?? []), id]);
              waiting++;
              limiter.acquire(step.key, { weight: step.weight, signal: controller.signal }).then(
                (permit) => {
                  waiting--;
                  grants.set(step.key, [...(grants.get(step.key) ?? []), id]);
                  held.push(permit);
                },
                () => {
                  waiting--;
                  arrivals.set(
                    step.key,
                    (arrivals.get(step.key) ?? []).filter((other) => other !== id),
                  );
                },
              );
            } else if (step.kind === "release" && held.length > 0) {
              held.splice(step.index % held.length, 1)[0]?.release();
            } else if (step.kind === "abort" && controllers.length > 0) {
              controllers.splice(step.index % controllers.length, 1)[0]?.abort();
            }
            await flushMicrotasks(2);
            limiter.assertInvariants();
            expect(limiter.inUse).toBeLessThanOrEqual(capacity);
          }
          // Drain: releasing everything serves everyone left (nobody starved, nothing lost).
          for (let round = 0; round < 1_000 && (held.length > 0 || waiting > 0); round++) {
            held.shift()?.release();
            await flushMicrotasks(2);
            limiter.assertInvariants();
          }
          expect(waiting).toBe(0);
          for (const [key, ids] of grants) expect(ids).toEqual(arrivals.get(key)?.filter((id) => ids.includes(id)));
          for (const [key, ids] of arrivals) expect(grants.get(key) ?? []).toEqual(ids);
          expect(limiter.size).toBe(0);
          expect(limiter.inUse).toBe(0);
        },
      ),
      { numRuns: 100 },
    );
  });

  it("bad input names the key: a share of 0, a weight above the capacity, a key that is no string", async () => {
    expect(() => new FairLimiter(2, { shares: { acme: 0 } })).toThrow(
      'shares["acme"] must be a finite number > 0; got 0',
    );
    const limiter = new FairLimiter(2, { name: "gpu", shares: (key) => (key === "free" ? 0 : 1) });
    await expect(limiter.acquire("free")).rejects.toThrow('the share of key "free" must be a finite number > 0; got 0');
    await expect(limiter.acquire("acme", { weight: 3 })).rejects.toThrow(
      'weight 3 is above the capacity 2 of fair limiter "gpu" key "acme"; it could never be granted',
    );
    expect(() => limiter.tryAcquire("acme", 3)).toThrow(/above the capacity 2/);
    await expect(limiter.run(7 as unknown as string, () => 1)).rejects.toThrow("key must be a string; got 7");
    expect(() => new FairLimiter(2, { share: {} } as never)).toThrow(/did you mean "shares"/);
    expect(limiter.size).toBe(0);
  });

  it("statistics: the shared capacity, and per key", async () => {
    const limiter = new FairLimiter(2, { shares: { a: 3 } });
    const a = await limiter.acquire("a", { weight: 2 });
    const waiting = limiter.acquire("b");
    expect(limiter.statistics()).toMatchObject({
      capacity: 2,
      available: 0,
      inUse: 2,
      waiting: 1,
      keys: 2,
      granted: 1,
    });
    expect(limiter.statistics("a")).toMatchObject({ key: "a", share: 3, inUse: 2, waiting: 0 });
    expect(limiter.tryAcquire("c")).toBeUndefined();
    a.release();
    (await waiting).release();
    expect(limiter.statistics()).toMatchObject({ inUse: 0, waiting: 0, keys: 0, granted: 2 });
  });
});
