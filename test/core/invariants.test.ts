/**
 * The primitives' own invariants, and their admissions' counters, are checked by the model tests after
 * every operation (test/support/model.ts). Each check must fail when its invariant is broken on purpose,
 * or it protects nothing.
 */
import { RateLimiter, Semaphore } from "sluice";
import { FakeClock } from "sluice/testing";
import { describe, expect, it } from "vitest";
import { assertInvariants } from "../support/model.js";

/** A private field, for breaking an invariant on purpose. */
function poke(target: object, field: string, value: unknown): void {
  (target as Record<string, unknown>)[field] = value;
}

describe("invariants broken on purpose are caught", () => {
  it("a semaphore that holds a negative weight", () => {
    const semaphore = new Semaphore(2);
    assertInvariants(semaphore);
    poke(semaphore, "held", -1);
    expect(() => assertInvariants(semaphore)).toThrow(/semaphore invariant broken: held/);
  });

  it("a semaphore whose head waits though it fits (a lost wake-up)", () => {
    const semaphore = new Semaphore(1);
    void semaphore.acquire();
    void semaphore.acquire().catch(() => undefined);
    assertInvariants(semaphore);
    // Room appears without a dispatch: the waiter should have been served.
    poke(semaphore, "held", 0);
    expect(() => assertInvariants(semaphore)).toThrow(/head waits though it fits/);
  });

  it("a request counted twice, or not at all", () => {
    const semaphore = new Semaphore(1);
    const permit = semaphore.tryAcquire();
    assertInvariants(semaphore);
    semaphore.statistics(); // a snapshot, not the counters themselves
    const admission = (semaphore as unknown as { admission: { counters: { granted: number } } }).admission;
    admission.counters.granted++;
    expect(() => assertInvariants(semaphore)).toThrow(/every request counted once/);
    permit?.release();
  });

  it("a rate limiter whose head waits for time with no timer armed", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 1, interval: 1_000 }], clock });
    await limiter.acquire();
    const waiting = limiter.acquire().catch(() => undefined);
    assertInvariants(limiter);
    const timer = (limiter as unknown as { timer: unknown }).timer;
    clock.clearTimeout(timer);
    poke(limiter, "timer", undefined);
    expect(() => assertInvariants(limiter)).toThrow(/timer is not armed while the head waits for time/);
    limiter.clear();
    await waiting;
  });
});
