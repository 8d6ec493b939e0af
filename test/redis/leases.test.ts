/**
 * A lease is only as good as the holder's knowledge of it (DESIGN.md, "Decided after the first round").
 * A holder frozen past its lease — a long GC pause, a VM stall, here a real SIGSTOP — must learn that it
 * may have lost its permit at its first look after it thaws, before any timer has run; `release()` and
 * `run()` must say so; and a grant read after the lease may have lapsed is never handed over as valid.
 */

import { ClosedError, LeaseLostError } from "sluice";
import { RedisSemaphore, type RedisSemaphoreOptions } from "sluice/redis";
import { describe, expect, it } from "vitest";
import { processClock } from "../../src/threads/process-clock.js";
import { useRedisServer } from "../support/use-redis-server.js";
import { Worker } from "./processes.js";

const context = useRedisServer();
let counter = 0;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
// The system monotonic clock: one scale in this process and in the workers.
const sharedClock = processClock.now;

function uniqueName(label: string): string {
  return `${label}-${++counter}`;
}

function semaphore(name: string, capacity: number, options: Partial<RedisSemaphoreOptions> = {}): RedisSemaphore {
  return context.track(
    new RedisSemaphore(context.redis, { name, capacity, leaseTtl: 600, guardRestarts: false, ...options }),
  );
}

/** Blocks this whole process for `ms`, as a long GC pause does: no timer, no I/O runs meanwhile. */
function freezeFor(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

describe("a holder frozen past its lease learns it synchronously", () => {
  it("leaseLost is true at the first look after the freeze, before any timer ran; the signal then aborts", async () => {
    const limited = semaphore(uniqueName("sync"), 1, { leaseTtl: 300 });
    const permit = await limited.acquire();
    expect(permit.leaseLost).toBe(false);
    expect(permit.leaseRemaining).toBeGreaterThan(200);
    let timersRan = false;
    setTimeout(() => {
      timersRan = true;
    }, 0);
    freezeFor(400);
    // Still in the same synchronous step: no timer (the watchdog included) has had a chance to run.
    expect(timersRan).toBe(false);
    expect(permit.leaseLost).toBe(true);
    expect(permit.signal.aborted).toBe(true);
    expect(permit.signal.reason).toBeInstanceOf(LeaseLostError);
    expect(permit.leaseRemaining).toBe(0);
    expect(() => permit.throwIfLeaseLost()).toThrow(LeaseLostError);
    await expect(permit.release()).rejects.toBeInstanceOf(LeaseLostError);
    // The weight is not counted twice: the semaphore is whole again.
    const again = await limited.acquire({ timeout: 2_000 });
    await again.release();
  });

  it("a signal taken before the freeze aborts at the first look at the permit after it", async () => {
    const limited = semaphore(uniqueName("signal-first"), 1, { leaseTtl: 300 });
    const permit = await limited.acquire();
    const signal = permit.signal;
    freezeFor(400);
    expect(permit.leaseLost).toBe(true);
    expect(signal.aborted).toBe(true);
    await permit.release().catch(() => undefined);
  });

  it("run() rejects with LeaseLostError when the lease lapsed while fn ran, whatever fn returned", async () => {
    const limited = semaphore(uniqueName("run"), 1, { leaseTtl: 300 });
    const outcome = limited.run((_signal, permit) => {
      freezeFor(400);
      expect(permit.leaseLost).toBe(true);
      return "written anyway";
    });
    await expect(outcome).rejects.toBeInstanceOf(LeaseLostError);
  });

  it("release() rejects with LeaseLostError when Redis no longer held the permit, and leaseLost turns true", async () => {
    const name = uniqueName("evicted");
    const limited = semaphore(name, 1, { leaseTtl: 30_000 });
    const permit = await limited.acquire();
    // Gone behind its back, as after an eviction no timer of the holder has caught yet.
    await context.redis.hdel(`sluice:{${name}}:meta`, `h:${permit.fencingToken}`);
    const released = await permit.release().catch((error: unknown) => error);
    expect(released).toBeInstanceOf(LeaseLostError);
    expect(permit.leaseLost).toBe(true);
  });
});

describe("a grant read after the lease may have lapsed is never handed over as valid", () => {
  it("a grant that reached this process while it was frozen past its lease is given back, and the caller is served anew", async () => {
    const name = uniqueName("late-grant");
    const leaseTtl = 400;
    // Another process holds, and releases 100 ms in: Redis then grants our queued caller at once.
    const other = new Worker({ mode: "frozen", port: context.server.port, name, capacity: 1, leaseTtl, holdMs: 100 });
    await other.line("held");
    const limited = semaphore(name, 1, { leaseTtl });
    const waiting = limited.acquire({ timeout: 5_000 });
    await sleep(50);
    // Frozen: the grant's notice waits unread while our lease runs out.
    freezeFor(leaseTtl + 300);
    const permit = await waiting;
    // Handed over with a lease that holds: not lost when handed over, nor a moment later, when a watchdog
    // armed for a deadline already past would have fired.
    expect(permit.leaseLost).toBe(false);
    await sleep(50);
    expect(permit.leaseLost).toBe(false);
    expect(permit.signal.aborted).toBe(false);
    await permit.release();
    expect(await other.exited).toBe(0);
  });
});

describe("frozen processes (SIGSTOP) past their lease", () => {
  const leaseTtl = 1_000;

  it("a frozen holder's overdue timer finds leaseLost and an aborted signal; release() rejects; another process held meanwhile", async () => {
    const name = uniqueName("stopped");
    const worker = new Worker({ mode: "frozen", port: context.server.port, name, capacity: 1, leaseTtl, holdMs: 200 });
    await worker.line("held");
    worker.kill("SIGSTOP");
    const stoppedAt = sharedClock();
    const other = semaphore(name, 1, { leaseTtl });
    const permit = await other.acquire({ timeout: 5_000 });
    const grantedAt = sharedClock();
    expect(grantedAt - stoppedAt).toBeGreaterThan(leaseTtl * 0.9);
    worker.kill("SIGCONT");
    expect(await worker.line("checked")).toEqual({ leaseLost: true, aborted: true });
    expect(await worker.line("released")).toBe("LeaseLostError");
    await permit.release();
    expect(await worker.exited).toBe(0);
  });

  it("run() in a frozen holder rejects with LeaseLostError", async () => {
    const name = uniqueName("stopped-run");
    const worker = new Worker({
      mode: "frozen",
      run: true,
      port: context.server.port,
      name,
      capacity: 1,
      leaseTtl,
      holdMs: 200,
    });
    await worker.line("held");
    worker.kill("SIGSTOP");
    const other = semaphore(name, 1, { leaseTtl });
    const permit = await other.acquire({ timeout: 5_000 });
    worker.kill("SIGCONT");
    expect(await worker.line("checked")).toEqual({ leaseLost: true, aborted: true });
    expect(await worker.line("released")).toBe("LeaseLostError");
    await permit.release();
  });

  it("a grant Redis made to a frozen process's waiter and evicted meanwhile is not handed over after the thaw", async () => {
    const name = uniqueName("stopped-waiter");
    const holder = semaphore(name, 1, { leaseTtl });
    const first = await holder.acquire();
    const worker = new Worker({
      mode: "queue",
      port: context.server.port,
      name,
      capacity: 1,
      leaseTtl,
      callers: 1,
      holdMs: 10,
    });
    await worker.line("queued");
    worker.kill("SIGSTOP");
    // Redis grants the frozen process's ticket; its notice waits unread in the frozen socket.
    await first.release();
    // Its lease ends; this process's next acquire (and check-ins) evict it and take the permit.
    const second = await holder.acquire({ timeout: 5_000 });
    worker.kill("SIGCONT");
    await sleep(300);
    const releasedAt = sharedClock();
    await second.release();
    const grant = (await worker.line("granted")) as { at: number; leaseLost: boolean; aborted: boolean };
    expect(grant.at).toBeGreaterThan(releasedAt);
    expect(grant.leaseLost).toBe(false);
    expect(grant.aborted).toBe(false);
    expect(await worker.exited).toBe(0);
  });
});

describe("close()", () => {
  it("stops admitting, asks holders to stop, waits for them, then leaves", async () => {
    const name = uniqueName("close");
    const limited = semaphore(name, 2);
    const observer = semaphore(name, 2);
    const permit = await limited.acquire();
    const waiter = limited.acquire({ weight: 2 }).catch((error: unknown) => error);
    const closing = limited.close({ timeout: 5_000 });
    expect(await waiter).toBeInstanceOf(ClosedError);
    await expect(limited.acquire()).rejects.toBeInstanceOf(ClosedError);
    expect(permit.signal.aborted).toBe(true);
    expect(permit.signal.reason).toBeInstanceOf(ClosedError);
    expect(permit.leaseLost).toBe(false);
    // Still held in Redis while the work winds down.
    expect((await observer.inspect()).holders).toHaveLength(1);
    let closed = false;
    void closing.then(() => {
      closed = true;
    });
    await sleep(50);
    expect(closed).toBe(false);
    await permit.release();
    await closing;
    const snapshot = await observer.inspect();
    expect(snapshot.holders).toEqual([]);
    expect(snapshot.clients.map((client) => client.client)).not.toContain(limited.client);
  });

  it("after its timeout, gives back the leases still held: those permits are lost and release() says so", async () => {
    const name = uniqueName("close-timeout");
    const limited = semaphore(name, 1);
    const observer = semaphore(name, 1);
    const permit = await limited.acquire();
    const started = performance.now();
    await limited.close({ timeout: 100 });
    expect(performance.now() - started).toBeGreaterThanOrEqual(95);
    expect(permit.leaseLost).toBe(true);
    await expect(permit.release()).rejects.toBeInstanceOf(LeaseLostError);
    const next = await observer.acquire({ timeout: 1_000 });
    await next.release();
  });

  it("a bad timeout is refused, naming the value", async () => {
    const limited = semaphore(uniqueName("close-bad"), 1);
    await expect(limited.close({ timeout: -1 })).rejects.toThrow(/timeout must be .*-1/);
    await expect(limited.close({ timeout: "soon" })).rejects.toThrow(/soon/);
  });
});

describe("options that make no sense are refused at construction", () => {
  it("leaseTtl too long, wakeTimeout too short, keyTtl too long", () => {
    const make = (options: Partial<RedisSemaphoreOptions>) => () =>
      new RedisSemaphore(context.redis, { name: "x", capacity: 1, ...options });
    expect(make({ leaseTtl: 1e300 })).toThrow(/leaseTtl must be from 30 ms to 2147483647 ms .*got 1e\+300/);
    expect(make({ leaseTtl: 10 })).toThrow(RangeError);
    expect(make({ wakeTimeout: 0 })).toThrow(/wakeTimeout must be from 50 ms .*got 0/);
    expect(make({ keyTtl: 1e300 })).toThrow(/keyTtl must be at most/);
  });
});
