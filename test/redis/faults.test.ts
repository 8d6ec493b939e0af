/**
 * Issue 14, "Distributed limits that keep their promise under faults": real processes sharing one
 * RedisSemaphore and one RedisRateLimiter while a holder is frozen (SIGSTOP past its lease), processes
 * are killed (holding, and with callers queued), one process is cut off from Redis by a TCP proxy,
 * Redis is restarted empty (once while that process is cut off), frozen, and flushed. The scenario is
 * test/redis/fault-scenario.ts; every check is computed from the logs by test/redis/fault-checks.ts
 * (tested on its own in fault-checks.test.ts). `node --import tsx test/redis/faults-report.ts` prints
 * the same figures without asserting.
 *
 * One run, about 50 s of a 2-core machine; the figures are printed whether the checks pass or not.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { INJECTED_FAULTS, type JudgedRun, judgedFaultRun, SEMAPHORE_PROMISES } from "./fault-suite.js";

let judged: JudgedRun;

beforeAll(async () => {
  judged = await judgedFaultRun();
}, 150_000);

const expectPassed = (prefix: string) => judged.expectPassed(prefix);

describe("RedisSemaphore and RedisRateLimiter under faults (issue 14)", () => {
  it("the run injected every fault and its workers were served", () => {
    expect(judged.run.faults.map((fault) => fault.kind)).toEqual(INJECTED_FAULTS);
    expect(judged.figures.grants).toBeGreaterThan(500);
    expect(judged.figures.rate.admitted).toBeGreaterThan(500);
  });

  // Each promise of the issue, and the checks of fault-checks.ts that hold the run to it.
  it.each([
    ...SEMAPHORE_PROMISES,
    ["the rate limiter keeps its promise in every window, one burst more per restart or flush", ["6 ", "6b "]],
  ])("%s", (_promise, prefixes) => {
    for (const prefix of prefixes) expectPassed(prefix);
  });
});
