/**
 * Fencing holds for any capacity (DESIGN.md): a resource protected by a semaphore of capacity K that
 * follows the documented rule (the highest token per slot, see FencingGuard) accepts every valid holder
 * and refuses a holder whose lease ended once its slot was given to another. The single "highest token
 * seen" rule refused most valid writes at capacity 3.
 */

import fc from "fast-check";
import { FencingGuard, type RedisPermit, RedisSemaphore } from "sluice/redis";
import { describe, expect, it } from "vitest";
import { useRedisServer } from "../support/use-redis-server.js";
import { Worker } from "./processes.js";

const context = useRedisServer();
let counter = 0;

describe("FencingGuard", () => {
  it("accepts a token at least the highest seen on every slot of the permit, and records it there", () => {
    const guard = new FencingGuard();
    expect(guard.accept({ fencingToken: 10, fencingSlots: [0] })).toBe(true);
    expect(guard.accept({ fencingToken: 11, fencingSlots: [1, 2] })).toBe(true);
    // An older holder of another slot is still valid: capacity 3 has three holders at once.
    expect(guard.accept({ fencingToken: 10, fencingSlots: [0] })).toBe(true);
    // A newer holder took slot 1: the holder it replaced (token 11) is refused from now on.
    expect(guard.accept({ fencingToken: 12, fencingSlots: [1] })).toBe(true);
    expect(guard.accept({ fencingToken: 11, fencingSlots: [1, 2] })).toBe(false);
    // A refused write records nothing: slot 2 still accepts 11.
    expect(guard.accept({ fencingToken: 11, fencingSlots: [2] })).toBe(true);
  });

  it("refuses a permit nothing can vouch for, and a value that is not a permit", () => {
    const guard = new FencingGuard();
    expect(guard.accept({ fencingToken: undefined, fencingSlots: [] })).toBe(false);
    expect(guard.accept({ fencingToken: 5, fencingSlots: [] })).toBe(false);
    expect(() => guard.accept(null as never)).toThrow(TypeError);
    expect(() => guard.accept({ fencingToken: 5 } as never)).toThrow(/fencingSlots/);
  });
});

describe("fencing slots across processes", () => {
  it("held permits occupy weight-many distinct slots below the capacity, and the guard accepts every valid write", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 5 }),
        fc.array(fc.record({ process: fc.nat(2), weight: fc.integer({ min: 1, max: 2 }), release: fc.nat(9) }), {
          minLength: 1,
          maxLength: 25,
        }),
        async (capacity, steps) => {
          const name = `slots-${++counter}`;
          const processes = [0, 1, 2].map(
            () => new RedisSemaphore(context.redis, { name, capacity, leaseTtl: "30s", guardRestarts: false }),
          );
          const guard = new FencingGuard();
          const held: RedisPermit[] = [];
          try {
            for (const step of steps) {
              const weight = Math.min(step.weight, capacity);
              const semaphore = processes[step.process] as RedisSemaphore;
              const permit = await semaphore.tryAcquire(weight);
              if (permit !== undefined) held.push(permit);
              else if (held.length > 0) await (held.splice(step.release % held.length, 1)[0] as RedisPermit).release();
              const slots = held.flatMap((one) => one.fencingSlots);
              expect(new Set(slots).size).toBe(slots.length);
              for (const one of held) expect(one.fencingSlots).toHaveLength(one.weight);
              for (const slot of slots) expect(slot).toBeLessThan(capacity);
              // Every holder writes, in any order: none is refused.
              for (const one of [...held].reverse()) expect(guard.accept(one)).toBe(true);
            }
          } finally {
            for (const permit of held) await permit.release();
            await Promise.all(processes.map((semaphore) => semaphore.close()));
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it("capacity 3, a holder frozen past its lease: its slot goes to another, which writes, and its own write is then refused", async () => {
    const name = `frozen-fence-${++counter}`;
    const leaseTtl = 800;
    const guard = new FencingGuard();
    const worker = new Worker({ mode: "frozen", port: context.server.port, name, capacity: 3, leaseTtl, holdMs: 200 });
    const stale = (await worker.line("held")) as { token: number; slots: number[] };
    expect(guard.accept({ fencingToken: stale.token, fencingSlots: stale.slots })).toBe(true);
    worker.kill("SIGSTOP");
    const others = new RedisSemaphore(context.redis, { name, capacity: 3, leaseTtl, guardRestarts: false });
    // Three holders of capacity 3: the frozen one's slot is among theirs once its lease has ended.
    const permits = await Promise.all([1, 2, 3].map(() => others.acquire({ timeout: 5_000 })));
    for (const permit of permits) expect(guard.accept(permit)).toBe(true);
    expect(permits.flatMap((permit) => permit.fencingSlots).sort()).toEqual([0, 1, 2]);
    worker.kill("SIGCONT");
    expect(await worker.line("checked")).toEqual({ leaseLost: true, aborted: true });
    // Had it written anyway, the resource refuses it.
    expect(guard.accept({ fencingToken: stale.token, fencingSlots: stale.slots })).toBe(false);
    // The valid holders still write.
    for (const permit of permits) expect(guard.accept(permit)).toBe(true);
    for (const permit of permits) await permit.release();
    await others.close();
    expect(await worker.exited).toBe(0);
  });

  it("inspect() shows each holder's slots; capacities above 1,024 hand out no slots", async () => {
    const name = `inspect-slots-${++counter}`;
    const small = new RedisSemaphore(context.redis, { name, capacity: 4, guardRestarts: false });
    const permit = await small.acquire({ weight: 2 });
    expect((await small.inspect()).holders[0]?.fencingSlots).toEqual([...permit.fencingSlots]);
    await permit.release();
    await small.close();
    const large = new RedisSemaphore(context.redis, {
      name: `large-${counter}`,
      capacity: 5_000,
      guardRestarts: false,
    });
    const unfenced = await large.acquire({ weight: 3 });
    expect(unfenced.fencingSlots).toEqual([]);
    expect(typeof unfenced.fencingToken).toBe("number");
    await unfenced.release();
    await large.close();
  });
});
