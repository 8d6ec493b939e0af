/**
 * RedisKeyedSemaphore under the faults of test/redis/faults.test.ts: the same scenario (a holder frozen
 * past its lease, processes killed holding and queued, a process cut off from Redis, Redis restarted
 * empty, paused and flushed), with every process's callers on one key of a RedisKeyedSemaphore while 4
 * more callers per process keep 200 other keys of it busy. Each promise is checked for the key under
 * test from the logs, by the same checks (test/redis/fault-checks.ts): the other keys' load must not
 * let its lease, its notices or its recovery slip. No rate limiter in this run.
 *
 * One run, about 50 s of a 2-core machine; the figures are printed whether the checks pass or not.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { keyedRun } from "./fault-scenario.js";
import { INJECTED_FAULTS, type JudgedRun, judgedFaultRun, SEMAPHORE_PROMISES } from "./fault-suite.js";

let judged: JudgedRun;

beforeAll(async () => {
  judged = await judgedFaultRun({ keyed: keyedRun });
}, 150_000);

describe("RedisKeyedSemaphore under faults, one key among 200 busy ones", () => {
  it("the run injected every fault and its workers were served", () => {
    expect(judged.run.faults.map((fault) => fault.kind)).toEqual(INJECTED_FAULTS);
    expect(judged.figures.grants).toBeGreaterThan(500);
  });

  // Per key: the capacity is the key's.
  it.each(SEMAPHORE_PROMISES)("%s", (_promise, prefixes) => {
    for (const prefix of prefixes) judged.expectPassed(prefix);
  });
});
