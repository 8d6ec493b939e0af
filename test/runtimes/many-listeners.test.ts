/**
 * Signals sluice shares between many calls get one listener per call by design (`fetch` adds one per
 * request); Node must not call that a leak. The warning is lifted without importing `node:events`
 * (see src/core/many-listeners.ts), and these tests keep it lifted.
 */
import { AdaptiveLimiter, map, NEVER_ABORTED, Semaphore, TaskGroup } from "sluice";
import { limitedFetch } from "sluice/http";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

const NODE_MAJOR = Number(process.versions.node.split(".")[0]);

/** More than Node's default of 10 listeners per EventTarget. */
const MANY = 25;

let warnings: string[] = [];
const record = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);

beforeEach(() => {
  warnings = [];
  process.on("warning", record);
});
afterEach(() => {
  process.off("warning", record);
});

/** Node emits the warning on a later tick. */
async function warningsPrinted(): Promise<string[]> {
  await new Promise((resolve) => setTimeout(resolve, 10));
  return warnings.filter((warning) => warning.startsWith("MaxListenersExceededWarning"));
}

function listenMany(signal: AbortSignal): void {
  for (let count = 0; count < MANY; count++) signal.addEventListener("abort", () => {});
}

describe("no MaxListenersExceededWarning on the signals sluice shares", () => {
  // Node 22 and later no longer warn for an AbortSignal (they still do for other EventTargets), so there
  // the tests below hold whatever sluice does; Node 20, where they matter, is the machine's Node.
  it.runIf(NODE_MAJOR <= 20)("detects the warning on an ordinary signal (the check itself works)", async () => {
    listenMany(new AbortController().signal);
    expect(await warningsPrinted()).toHaveLength(1);
  });

  it("NEVER_ABORTED, handed to every call admitted without a signal", async () => {
    const semaphore = new Semaphore(MANY);
    await Promise.all(Array.from({ length: MANY }, () => semaphore.run((signal) => listenMany(signal))));
    listenMany(NEVER_ABORTED);
    expect(await warningsPrinted()).toEqual([]);
  });

  it("the signal map gives every mapper", async () => {
    await map(Array.from({ length: MANY }), async (_item, _index, signal) => {
      signal.addEventListener("abort", () => {});
    });
    expect(await warningsPrinted()).toEqual([]);
  });

  it("a TaskGroup's signal", async () => {
    const group = new TaskGroup();
    for (let count = 0; count < MANY; count++) {
      group.spawn(async (signal) => signal.addEventListener("abort", () => {}));
    }
    await group.wait();
    expect(await warningsPrinted()).toEqual([]);
  });

  it("limitedFetch's stop switch, which every call waiting for the limiter listens to", async () => {
    const semaphore = new Semaphore(1);
    const held = semaphore.tryAcquire()!;
    const fetch = limitedFetch(semaphore, { fetch: async () => new Response("ok"), concurrency: false });
    const calls = Array.from({ length: MANY }, () => fetch("http://api.test/"));
    // The calls reach the limiter a few microtasks after they are made.
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(semaphore.waiting).toBe(MANY);
    held.release();
    await Promise.all(calls);
    expect(await warningsPrinted()).toEqual([]);
  });

  it("limitedFetch's stop switch, listened to by every call waiting in its concurrency window", async () => {
    const window = new AdaptiveLimiter({ max: 1, initial: 1 });
    const held = await window.acquire();
    const fetch = limitedFetch(new Semaphore(1), { fetch: async () => new Response("ok"), concurrency: window });
    const calls = Array.from({ length: MANY }, () => fetch("http://api.test/"));
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(window.waiting).toBe(MANY);
    held.release();
    await Promise.all(calls);
    expect(await warningsPrinted()).toEqual([]);
  });
});
