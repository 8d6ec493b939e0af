/**
 * The `sluice:*` diagnostics channels: what the one admission step and the one permit publish, for every
 * way a request ends, on the fake clock; that the events balance (every start ends once, what is queued
 * and held matches the limiter) over random schedules; and that a subscriber's failure never breaks
 * admission.
 */
import { execFileSync } from "node:child_process";
import dc from "node:diagnostics_channel";
import fc from "fast-check";
import {
  type AcquireEvent,
  AdaptiveLimiter,
  type HoldEvent,
  identityOf,
  Mutex,
  type Permit,
  RateLimiter,
  Semaphore,
} from "sluice";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { afterEach, describe, expect, it } from "vitest";

const PHASES = ["start", "end", "asyncStart", "asyncEnd", "error"] as const;
type Phase = (typeof PHASES)[number];

/** Records every event of `sluice:acquire` and `sluice:hold` until `stop()`. */
function record() {
  const acquire: { phase: Phase; event: AcquireEvent }[] = [];
  const hold: { phase: Phase; event: HoldEvent }[] = [];
  const handlers = (into: { phase: Phase; event: never }[]) =>
    Object.fromEntries(PHASES.map((phase) => [phase, (event: never) => into.push({ phase, event })]));
  const acquireHandlers = handlers(acquire as never);
  const holdHandlers = handlers(hold as never);
  dc.tracingChannel("sluice:acquire").subscribe(acquireHandlers as never);
  dc.tracingChannel("sluice:hold").subscribe(holdHandlers as never);
  const stop = () => {
    dc.tracingChannel("sluice:acquire").unsubscribe(acquireHandlers as never);
    dc.tracingChannel("sluice:hold").unsubscribe(holdHandlers as never);
  };
  stops.push(stop);
  return { acquire, hold, stop };
}
const stops: (() => void)[] = [];
afterEach(() => {
  for (const stop of stops.splice(0)) stop();
});

/** The ended acquires, as `outcome weight@priority start→end queued`. */
function ended(acquire: { phase: Phase; event: AcquireEvent }[]): string[] {
  return acquire
    .filter(({ phase }) => phase === "asyncEnd")
    .map(
      ({ event }) =>
        `${event.outcome} ${event.weight}@${event.priority} ${event.startTime}→${event.endTime}${event.queued ? " queued" : ""}`,
    );
}

describe("sluice:acquire and sluice:hold", () => {
  it("publish each way a request ends, with the limiter clock's times, the weight and the priority", async () => {
    const clock = new FakeClock(1_000);
    const semaphore = new Semaphore(3, { name: "db", clock });
    const { acquire, hold } = record();
    const first = await semaphore.acquire({ weight: 2 }); // acquired at once, through the admission step
    const second = await semaphore.acquire(); // acquired at once, through the fast path
    const waiting = semaphore.acquire({ weight: 2, priority: 1 });
    const timingOut = semaphore.acquire({ timeout: 50 });
    const controller = new AbortController();
    const aborted = semaphore.acquire({ signal: controller.signal });
    const cleared = semaphore.acquire({ priority: -1 });
    const tooHeavy = semaphore.acquire({ weight: 4 });
    clock.advance(50);
    controller.abort(new Error("stop"));
    clock.advance(25);
    first.release();
    const granted = await waiting;
    semaphore.clear(new Error("closing"));
    for (const refused of [timingOut, aborted, cleared, tooHeavy]) await refused.catch(() => undefined);
    await flushMicrotasks();
    expect(ended(acquire).sort()).toEqual(
      [
        "acquired 2@0 1000→1000",
        "acquired 1@0 1000→1000",
        "rejected 4@0 1000→1000",
        "timeout 1@0 1000→1050 queued",
        "aborted 1@0 1000→1050 queued",
        "acquired 2@1 1000→1075 queued",
        "rejected 1@-1 1000→1075 queued",
      ].sort(),
    );
    // Every start is followed by one end, and a give-up publishes `error` with its reason.
    expect(acquire.filter(({ phase }) => phase === "start")).toHaveLength(7);
    expect(acquire.filter(({ phase }) => phase === "end")).toHaveLength(7);
    const errors = acquire.filter(({ phase }) => phase === "error").map(({ event }) => event.error);
    expect(errors.map((error) => (error as Error).name).sort()).toEqual(
      ["Error", "Error", "RangeError", "TimeoutError"].sort(),
    );
    for (const { event } of acquire) {
      expect(event.limiter).toBe(identityOf(semaphore));
      expect(event.limiter).toMatchObject({ name: "db", kind: "semaphore", backend: "memory" });
    }
    second.release();
    clock.advance(5);
    granted.release();
    const holds = hold
      .filter(({ phase }) => phase === "asyncEnd")
      .map(({ event }) => `${event.weight} ${event.startTime}→${event.endTime}`);
    expect(holds).toEqual(["2 1000→1075", "1 1000→1075", "2 1075→1080"]);
  });

  it("name a Mutex as a mutex and a RateLimiter as a rate limiter, with its weight", async () => {
    const clock = new FakeClock();
    const mutex = new Mutex({ name: "m", clock });
    const limiter = new RateLimiter({ name: "api", concurrency: 4, clock, limits: [{ limit: 1, interval: 100 }] });
    const { acquire, hold } = record();
    await mutex.runExclusive(() => undefined);
    const first = await limiter.acquire({ weight: 2 });
    const second = limiter.acquire();
    clock.advance(100);
    (await second).release();
    first.release();
    expect(acquire.filter(({ phase }) => phase === "asyncEnd").map(({ event }) => event.limiter.kind)).toEqual([
      "mutex",
      "rate-limiter",
      "rate-limiter",
    ]);
    expect(ended(acquire).slice(1)).toEqual(["acquired 2@0 0→0", "acquired 1@0 0→100 queued"]);
    expect(hold.filter(({ phase }) => phase === "asyncEnd").map(({ event }) => event.weight)).toEqual([1, 1, 2]);
  });

  it("name an AdaptiveLimiter as adaptive: its waits and holds are published like every Limiter's", async () => {
    const clock = new FakeClock();
    const limiter = new AdaptiveLimiter({ name: "svc", min: 1, max: 1, initial: 1, clock });
    const { acquire, hold } = record();
    const first = await limiter.acquire();
    const second = limiter.acquire();
    clock.advance(20);
    first.release();
    (await second).release();
    expect(identityOf(limiter)).toMatchObject({ name: "svc", kind: "adaptive", backend: "memory" });
    expect(ended(acquire)).toEqual(["acquired 1@0 0→0", "acquired 1@0 0→20 queued"]);
    expect(hold.filter(({ phase }) => phase === "asyncEnd").map(({ event }) => event.limiter.kind)).toEqual([
      "adaptive",
      "adaptive",
    ]);
  });

  it("publish nothing for what is not a Limiter, and nothing once unsubscribed", async () => {
    const semaphore = new Semaphore(1);
    const { acquire, hold, stop } = record();
    stop();
    await semaphore.run(() => undefined);
    expect(acquire).toEqual([]);
    expect(hold).toEqual([]);
    expect(identityOf({ acquire() {} })).toBeUndefined();
  });

  it("balance over random schedules: every start ends once, queued and held match waiting and inUse", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.record({
              kind: fc.constant("acquire" as const),
              weight: fc.integer({ min: 1, max: 3 }),
              timeout: fc.option(fc.integer({ min: 0, max: 20 }), { nil: undefined }),
              signal: fc.boolean(),
            }),
            fc.record({ kind: fc.constant("release" as const), pick: fc.nat() }),
            fc.record({ kind: fc.constant("abort" as const), pick: fc.nat() }),
            fc.record({ kind: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 15 }) }),
            fc.record({ kind: fc.constant("resize" as const), capacity: fc.integer({ min: 0, max: 4 }) }),
          ),
          { maxLength: 40 },
        ),
        async (steps) => {
          const clock = new FakeClock();
          const semaphore = new Semaphore(2, { clock });
          const { acquire, hold, stop } = record();
          const held: Permit[] = [];
          const controllers: AbortController[] = [];
          try {
            for (const step of steps) {
              if (step.kind === "acquire") {
                const controller = new AbortController();
                controllers.push(controller);
                semaphore
                  .acquire({
                    weight: step.weight,
                    timeout: step.timeout,
                    signal: step.signal ? controller.signal : undefined,
                  })
                  .then((permit) => held.push(permit))
                  .catch(() => undefined);
              } else if (step.kind === "release" && held.length > 0) {
                held.splice(step.pick % held.length, 1)[0]?.release();
              } else if (step.kind === "abort" && controllers.length > 0) {
                controllers[step.pick % controllers.length]?.abort();
              } else if (step.kind === "advance") {
                clock.advance(step.ms);
              } else if (step.kind === "resize") {
                semaphore.capacity = step.capacity;
              }
              await flushMicrotasks();
              const count = (phase: Phase, queued?: boolean) =>
                acquire.filter(
                  (entry) => entry.phase === phase && (queued === undefined || entry.event.queued === queued),
                ).length;
              expect(count("end", true) - count("asyncEnd", true)).toBe(semaphore.waiting);
              expect(count("start") - count("asyncEnd")).toBe(semaphore.waiting);
              const weight = (phase: Phase) =>
                hold.filter((entry) => entry.phase === phase).reduce((sum, entry) => sum + entry.event.weight, 0);
              expect(weight("start") - weight("asyncEnd")).toBe(semaphore.inUse);
              const statistics = semaphore.statistics();
              const outcomes = (outcome: string) =>
                acquire.filter((entry) => entry.phase === "asyncEnd" && entry.event.outcome === outcome).length;
              expect(outcomes("acquired")).toBe(statistics.granted);
              expect(outcomes("timeout")).toBe(statistics.timedOut);
              expect(outcomes("aborted")).toBe(statistics.aborted);
              expect(outcomes("rejected")).toBe(statistics.rejected);
            }
          } finally {
            stop();
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe("a subscriber that throws", () => {
  it("never breaks admission: the limiter grants, counts and releases as without it", () => {
    // In a child process: Node reports a subscriber's error as an uncaught exception (on the next tick),
    // which the program may handle; admission itself must go on untouched.
    const script = `
      import dc from "node:diagnostics_channel";
      import { Semaphore } from ${JSON.stringify(new URL("../../dist/index.js", import.meta.url).href)};
      let reported = 0;
      process.on("uncaughtException", () => { reported++; });
      const fail = () => { throw new Error("subscriber failed"); };
      dc.tracingChannel("sluice:acquire").subscribe({ start: fail, end: fail, asyncStart: fail, asyncEnd: fail, error: fail });
      dc.tracingChannel("sluice:hold").subscribe({ start: fail, end: fail, asyncStart: fail, asyncEnd: fail, error: fail });
      const semaphore = new Semaphore(1);
      const results = [];
      results.push(await semaphore.run(() => "ran"));
      const permit = await semaphore.acquire();
      const waiting = semaphore.acquire({ timeout: 10 });
      await waiting.then(() => results.push("granted?"), (error) => results.push(error.name));
      permit.release();
      await new Promise((resolve) => setImmediate(resolve));
      const { granted, timedOut, inUse, waiting: queued } = semaphore.statistics();
      console.log(JSON.stringify({ results, granted, timedOut, inUse, queued, reported: reported > 0 }));
    `;
    const output = execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    expect(JSON.parse(output)).toEqual({
      results: ["ran", "TimeoutError"],
      granted: 2,
      timedOut: 1,
      inUse: 0,
      queued: 0,
      reported: true,
    });
  });
});
