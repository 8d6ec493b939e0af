/**
 * A misspelt option name is refused, never ignored: every public constructor and every options bag of
 * every subpath names the unknown option and suggests the nearest known one (issue 15: a
 * `new RateLimiter({ concurency: 5 })` limited nothing, without a word, in plain JavaScript).
 */
import { Channel, Mutex, map, mapSettled, mapStream, Pool, RateLimiter, Semaphore, TaskGroup } from "sluice";
import { limitedFetch } from "sluice/http";
import { asRedisConnection, inspectRedis, RedisMutex, RedisRateLimiter, RedisSemaphore } from "sluice/redis";
import { startMockServer } from "sluice/testing";
import { SharedMutex, SharedRateLimiter, SharedSemaphore } from "sluice/threads";
import { describe, expect, it } from "vitest";
import { checkOptionNames, editDistance, nearestName, optionNames } from "../../src/core/arguments.js";

/** A Redis connection that must never be used: option checks come before any command. */
function unusedRedis() {
  const refuse = () => {
    throw new Error("no Redis command may run before the options are checked");
  };
  return asRedisConnection({
    evalsha: refuse,
    eval: refuse,
    subscribe: refuse,
    unsubscribe: refuse,
    scan: refuse,
    duplicate: refuse,
    disconnect: () => undefined,
  } as unknown as Parameters<typeof asRedisConnection>[0]);
}

/** What a call that must refuse an option did: its synchronous throw or its promise's rejection. */
async function failureOf(call: () => unknown): Promise<unknown> {
  try {
    const result = call();
    if (result instanceof Promise) await result;
    else if (result !== null && typeof result === "object" && Symbol.asyncIterator in result) {
      await (result as AsyncIterable<unknown>)[Symbol.asyncIterator]().next();
    }
  } catch (error) {
    return error;
  }
  return undefined;
}

const noop = async () => {};
const limiter = () => new Semaphore(1);

/** [what, the call with one misspelt option, the name typed, the name meant]. */
const CASES: [string, () => unknown, string, string][] = [
  ["new Semaphore()", () => new Semaphore(1, { nmae: "x" } as object), "nmae", "name"],
  ["Semaphore acquire()", () => limiter().acquire({ wieght: 1 } as object), "wieght", "weight"],
  ["Semaphore run()", () => limiter().run(noop, { timout: 1 } as object), "timout", "timeout"],
  ["Semaphore wrap()", () => limiter().wrap(noop, { priorty: 1 } as object), "priorty", "priority"],
  ["new Mutex()", () => new Mutex({ clok: undefined } as object), "clok", "clock"],
  ["Mutex lock()", () => new Mutex().lock({ signl: undefined } as object), "signl", "signal"],
  ["new RateLimiter()", () => new RateLimiter({ concurency: 5 } as object), "concurency", "concurrency"],
  [
    "a RateLimiter limit",
    () => new RateLimiter({ limits: [{ limit: 1, interval: "1s", unti: "tokens" } as never] }),
    "unti",
    "unit",
  ],
  ["RateLimiter acquire()", () => new RateLimiter().acquire({ cots: 1 } as object), "cots", "cost"],
  ["RateLimiter tryAcquire()", () => new RateLimiter().tryAcquire({ wieght: 1 } as object), "wieght", "weight"],
  ["new Channel()", () => new Channel(1, { nam: "x" } as object), "nam", "name"],
  ["Channel send()", () => new Channel(1).send(1, { timeot: 1 } as object), "timeot", "timeout"],
  ["Channel receive()", () => new Channel(1).receive({ priorit: 1 } as object), "priorit", "priority"],
  ["Channel values()", () => new Channel(1).values({ signa: undefined } as object), "signa", "signal"],
  [
    "new Pool()",
    () => new Pool({ create: () => 1, max: 1, idleTimout: 5 } as object as never),
    "idleTimout",
    "idleTimeout",
  ],
  [
    "Pool createRetry",
    () => new Pool({ create: () => 1, max: 1, createRetry: { atempts: 2 } as object }),
    "atempts",
    "attempts",
  ],
  ["Pool acquire()", () => new Pool({ create: () => 1, max: 1 }).acquire({ timout: 1 } as object), "timout", "timeout"],
  ["map()", () => map([1], noop, { concurreny: 1 } as object), "concurreny", "concurrency"],
  ["mapSettled()", () => mapSettled([1], noop, { limitr: limiter() } as object), "limitr", "limiter"],
  ["mapStream()", () => mapStream([1], noop, { bufer: 1 } as object), "bufer", "buffer"],
  ["new TaskGroup()", () => new TaskGroup({ limiterr: limiter() } as object), "limiterr", "limiter"],
  ["new SharedSemaphore()", () => new SharedSemaphore(1, { maxThread: 2 } as object), "maxThread", "maxThreads"],
  [
    "SharedSemaphore.from()",
    () => SharedSemaphore.from(new SharedSemaphore(1).handle, { clcok: undefined } as object),
    "clcok",
    "clock",
  ],
  ["SharedSemaphore acquire()", () => new SharedSemaphore(1).acquire({ wight: 1 } as object), "wight", "weight"],
  ["new SharedMutex()", () => new SharedMutex({ nane: "x" } as object), "nane", "name"],
  [
    "new SharedRateLimiter()",
    () => new SharedRateLimiter({ limits: [{ limit: 1, interval: 1 }], nme: "x" } as object as never),
    "nme",
    "name",
  ],
  [
    "a SharedRateLimiter limit",
    () => new SharedRateLimiter({ limits: [{ limit: 1, interval: 1, brust: 1 } as never] }),
    "brust",
    "burst",
  ],
  [
    "SharedRateLimiter.from()",
    () =>
      SharedRateLimiter.from(new SharedRateLimiter({ limits: [{ limit: 1, interval: 1 }] }).handle, {
        clok: undefined,
      } as object),
    "clok",
    "clock",
  ],
  [
    "SharedRateLimiter acquire()",
    () => new SharedRateLimiter({ limits: [{ limit: 1, interval: 1 }] }).acquire({ cst: 1 } as object),
    "cst",
    "cost",
  ],
  [
    "new RedisSemaphore()",
    () => new RedisSemaphore(unusedRedis(), { name: "x", capacity: 1, leasTtl: "1s" } as object as never),
    "leasTtl",
    "leaseTtl",
  ],
  [
    "new RedisMutex()",
    () => new RedisMutex(unusedRedis(), { name: "x", keyTTL: "1m" } as object as never),
    "keyTTL",
    "keyTtl",
  ],
  [
    "new RedisRateLimiter()",
    () => new RedisRateLimiter(unusedRedis(), { name: "x", minIntreval: 1 } as object as never),
    "minIntreval",
    "minInterval",
  ],
  [
    "RedisSemaphore acquire()",
    () => new RedisSemaphore(unusedRedis(), { name: "x", capacity: 1 }).acquire({ weigth: 1 } as object),
    "weigth",
    "weight",
  ],
  [
    "RedisRateLimiter acquire()",
    () =>
      new RedisRateLimiter(unusedRedis(), { name: "x", limits: [{ limit: 1, interval: 1000 }] }).acquire({
        costs: 1,
      } as object),
    "costs",
    "cost",
  ],
  [
    "RedisSemaphore close()",
    () => new RedisSemaphore(unusedRedis(), { name: "x", capacity: 1 }).close({ timout: "1s" } as object),
    "timout",
    "timeout",
  ],
  [
    "RedisRateLimiter close()",
    () =>
      new RedisRateLimiter(unusedRedis(), { name: "x", limits: [{ limit: 1, interval: 1000 }] }).close({
        timeuot: "1s",
      } as object),
    "timeuot",
    "timeout",
  ],
  ["inspectRedis()", () => inspectRedis(unusedRedis(), { prefx: "x:" } as object), "prefx", "prefix"],
  ["limitedFetch()", () => limitedFetch(limiter(), { atemptTimeout: 1 } as object), "atemptTimeout", "attemptTimeout"],
  ["limitedFetch retry", () => limitedFetch(limiter(), { retry: { attemps: 2 } as object }), "attemps", "attempts"],
  [
    "limitedFetch learnLimits",
    () => limitedFetch(limiter(), { learnLimits: { intreval: "1m" } as object }),
    "intreval",
    "interval",
  ],
  [
    "startMockServer()",
    () => startMockServer({ requestPerMinute: 5 } as object),
    "requestPerMinute",
    "requestsPerMinute",
  ],
  ["startMockServer quota", () => startMockServer({ quota: { token: 5 } as object }), "token", "tokens"],
  ["startMockServer failures", () => startMockServer({ failures: { hnag: 0.1 } as object }), "hnag", "hang"],
  ["startMockServer latency", () => startMockServer({ latency: { min: 1, mx: 2 } as never }), "mx", "max"],
];

describe("a misspelt option is refused with the nearest known name, everywhere", () => {
  it.each(CASES)("%s", async (_, call, typed, meant) => {
    const error = await failureOf(call);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toContain(`unknown option "${typed}"`);
    expect((error as Error).message).toContain(`did you mean "${meant}"?`);
  });

  it("promise-returning methods reject rather than throw for an unknown option", () => {
    const calls = [
      () => limiter().acquire({ wieght: 1 } as object),
      () => new RateLimiter().acquire({ cots: 1 } as object),
      () => new Channel(1).receive({ priorit: 1 } as object),
      () => startMockServer({ requestPerMinute: 5 } as object),
    ];
    for (const call of calls) {
      let promise: Promise<unknown> | undefined;
      expect(() => {
        promise = call();
      }).not.toThrow();
      promise?.catch(() => undefined);
    }
  });

  it("the known options still work, and a far-off name gets no suggestion but the list", () => {
    expect(() => new Semaphore(1, { name: "ok", clock: undefined })).not.toThrow();
    expect(
      () => new RateLimiter({ concurrency: 2, limits: [{ limit: 1, interval: "1s", unit: "tokens" }] }),
    ).not.toThrow();
    const error = (() => {
      try {
        new RateLimiter({ xyzzy: 1 } as object);
      } catch (caught) {
        return caught as Error;
      }
      return undefined;
    })();
    expect(error?.message).not.toContain("did you mean");
    expect(error?.message).toContain("known: clock, concurrency, limits, minInterval, name, refund");
  });
});

describe("checkOptionNames and nearestName", () => {
  const known = optionNames<{ concurrency?: number; limits?: unknown; timeout?: number }>({
    concurrency: true,
    limits: true,
    timeout: true,
  });

  it("accepts the known names and an empty bag", () => {
    expect(() => checkOptionNames({}, known, "x")).not.toThrow();
    expect(() => checkOptionNames({ concurrency: 1, timeout: undefined }, known, "x")).not.toThrow();
  });

  it("counts a swap of neighbours, a missing, an extra and a changed letter as one edit each; ignores case", () => {
    expect(editDistance("tokesn", "tokens")).toBe(1);
    expect(editDistance("concurency", "concurrency")).toBe(1);
    expect(editDistance("limitss", "limits")).toBe(1);
    expect(editDistance("timeuot", "timeout")).toBe(1);
    expect(nearestName("TimeOut", known)).toBe("timeout");
    expect(nearestName("limts", known)).toBe("limits");
    expect(nearestName("interval", known)).toBeUndefined();
  });
});
