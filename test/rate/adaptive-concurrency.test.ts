/**
 * RateLimiter with `concurrency: "auto"`: the concurrency adapts under the rate limits, from each call's
 * latency (grant to release), and each `pause()` (a 429 with Retry-After) counts as a drop. Fake clock.
 */
import { RateLimiter, type RatePermit } from "sluice";
import { FakeClock } from "sluice/testing";
import { describe, expect, it } from "vitest";

describe('RateLimiter concurrency: "auto"', () => {
  it("starts at 10, grows while latency holds at full use, and says so in statistics", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ concurrency: "auto", clock, limits: [{ limit: 10_000, interval: 1000 }] });
    expect(limiter.concurrency).toBe(10);
    for (let round = 0; round < 3; round++) {
      const permits: RatePermit[] = [];
      for (let i = 0; i < limiter.concurrency; i++) permits.push(await limiter.acquire());
      await clock.advanceAsync(20);
      for (const permit of permits) permit.release();
    }
    expect(limiter.concurrency).toBeGreaterThan(10);
    const statistics = limiter.statistics();
    expect(statistics.capacity).toBe(limiter.concurrency);
    expect(statistics.adaptiveConcurrency).toMatchObject({ min: 1, max: 1000, algorithm: "vegas" });
    expect(statistics.adaptiveConcurrency?.samples).toBeGreaterThan(0);
  });

  it("each pause (a 429 with Retry-After) is a drop: the concurrency shrinks", () => {
    const limiter = new RateLimiter({ concurrency: "auto", clock: new FakeClock() });
    limiter.pause(1000, "HTTP 429");
    limiter.pause(500, "HTTP 429"); // covered by the first pause, still a 429
    expect(limiter.concurrency).toBe(8);
    expect(limiter.statistics().adaptiveConcurrency?.drops).toBe(2);
  });

  it("never admits more than the current limit, and a call heavier than it goes alone", async () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ concurrency: "auto", clock });
    for (let i = 0; i < 25; i++) limiter.pause(1, "429"); // each x 0.9: 10 -> 1
    expect(limiter.concurrency).toBe(1);
    await clock.advanceAsync(1);
    const first = await limiter.acquire();
    const second = limiter.acquire();
    const heavy = limiter.acquire({ weight: 5 });
    expect(limiter.inUse).toBe(1);
    first.release();
    (await second).release();
    const permit = await heavy;
    expect(limiter.inUse).toBe(5);
    permit.release();
    await expect(limiter.acquire({ weight: 1001 })).rejects.toThrow(RangeError);
  });

  it("setting a number ends auto; a string other than auto is refused, naming it", () => {
    const limiter = new RateLimiter({ concurrency: "auto" });
    limiter.concurrency = 4;
    expect(limiter.statistics()).toMatchObject({ capacity: 4, adaptiveConcurrency: undefined });
    expect(() => new RateLimiter({ concurrency: "automatic" as never })).toThrow(
      /concurrency must be a number or "auto"; got "automatic"/,
    );
  });
});
