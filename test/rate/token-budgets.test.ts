/**
 * Input and output tokens apart (Anthropic's ITPM/OTPM) and daily quotas beside per-minute limits
 * (OpenAI's RPD/TPD), in the RateLimiter, on the fake clock: every time in here is exact.
 */
import { RateLimiter } from "sluice";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";

/** The remaining budget of each limit, in the limiter's order, as `unit/interval` keys. */
function remainingOf(limiter: RateLimiter): Record<string, number> {
  const left: Record<string, number> = {};
  for (const limit of limiter.statistics().limits) left[`${limit.unit}/${limit.interval}`] = limit.remaining;
  return left;
}

const MINUTE = 60_000;
const DAY = 86_400_000;

describe("RateLimiter: input and output tokens as separate units", () => {
  it("admits a call only when both its input and its output fit, and charges each its own amount", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({
      limits: [
        { limit: 1_000, interval: "1m", unit: "input-tokens" },
        { limit: 200, interval: "1m", unit: "output-tokens" },
      ],
      clock,
    });
    const first = await limiter.acquire({ cost: { "input-tokens": 100, "output-tokens": 200 } });
    expect(remainingOf(limiter)).toEqual({ [`input-tokens/${MINUTE}`]: 900, [`output-tokens/${MINUTE}`]: 0 });
    // Plenty of input left, but the output is spent: the next call waits for the output to refill.
    let started = false;
    const second = limiter.acquire({ cost: { "input-tokens": 100, "output-tokens": 100 } }).then((permit) => {
      started = true;
      return permit;
    });
    await flushMicrotasks();
    expect(started).toBe(false);
    // The first call produced 20 of its 200 reserved output tokens: 180 come back, and the second starts.
    first.settle({ "input-tokens": 100, "output-tokens": 20 });
    await flushMicrotasks();
    expect(started).toBe(true);
    const permit = await second;
    expect(clock.now()).toBe(0);
    expect(remainingOf(limiter)).toEqual({ [`input-tokens/${MINUTE}`]: 800, [`output-tokens/${MINUTE}`]: 80 });
    expect(limiter.statistics().settled).toEqual({
      calls: 1,
      estimated: { requests: 1, "input-tokens": 100, "output-tokens": 200 },
      actual: { requests: 1, "input-tokens": 100, "output-tokens": 20 },
    });
    first.release();
    permit.release();
  });

  it("refuses at once an output reservation larger than the output limit, naming both numbers", async () => {
    const limiter = new RateLimiter({ limits: [{ limit: 200, interval: "1m", unit: "output-tokens" }] });
    await expect(limiter.acquire({ cost: { "output-tokens": 4_096 } })).rejects.toThrow(/4096.*200|200.*4096/);
  });
});

describe("RateLimiter: a daily quota beside a per-minute limit of the same unit", () => {
  it("charges both; the day's quota stops calls the minute's limit would admit", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({
      limits: [
        { limit: 3, interval: "1m" },
        { limit: 4, interval: "1d" },
      ],
      clock,
    });
    for (let i = 0; i < 3; i++) (await limiter.acquire()).release();
    await clock.advanceAsync(MINUTE);
    (await limiter.acquire()).release();
    // A minute later the minute's bucket is full again, but the day's 4 are spent.
    await clock.advanceAsync(MINUTE);
    let started = false;
    const next = limiter.acquire().then((permit) => {
      started = true;
      return permit;
    });
    await clock.advanceAsync(MINUTE);
    expect(started).toBe(false);
    // One request's worth of the day refills after a quarter of a day.
    await clock.advanceAsync(DAY / 4 - 3 * MINUTE);
    expect(started).toBe(true);
    (await next).release();
  });

  it("observe() tightens only the limit whose size the server reports, never the day's from a minute's remaining", () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({
      limits: [
        { limit: 500, interval: "1m" },
        { limit: 10_000, interval: "1d" },
        { limit: 200_000, interval: "1m", unit: "tokens" },
        { limit: 2_000_000, interval: "1d", unit: "tokens" },
      ],
      clock,
    });
    limiter.observe({
      "x-ratelimit-limit-requests": "500",
      "x-ratelimit-remaining-requests": "0",
      "x-ratelimit-reset-requests": "120ms",
      "x-ratelimit-limit-tokens": "200000",
      "x-ratelimit-remaining-tokens": "1000",
      "x-ratelimit-reset-tokens": "59s",
    });
    expect(remainingOf(limiter)).toEqual({
      [`requests/${MINUTE}`]: 0,
      [`requests/${DAY}`]: 10_000,
      [`tokens/${MINUTE}`]: 1_000,
      [`tokens/${DAY}`]: 2_000_000,
    });
  });

  it("observe() without a reported limit tightens the limit with the shortest interval", () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({
      limits: [
        { limit: 10_000, interval: "1d" },
        { limit: 500, interval: "1m" },
      ],
      clock,
    });
    limiter.observe({ "ratelimit-remaining": "7", "ratelimit-reset": "30" });
    expect(remainingOf(limiter)).toEqual({ [`requests/${DAY}`]: 10_000, [`requests/${MINUTE}`]: 7 });
  });

  it("with a single limit of the unit, observe() tightens it as before", () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ limits: [{ limit: 100, interval: "1m" }], clock });
    limiter.observe({ "x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "4" });
    expect(remainingOf(limiter)).toEqual({ [`requests/${MINUTE}`]: 4 });
  });
});
