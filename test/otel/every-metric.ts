/**
 * A job on the fake clock that makes every sluice metric appear but `sluice.lease.lost` (which needs
 * Redis): a limitedFetch call, a wait that queued, a pause, on a RateLimiter to list for the gauges.
 */
import { RateLimiter } from "sluice";
import { limitedFetch } from "sluice/http";
import { FakeClock } from "sluice/testing";

/** The limiter the job runs on: list it in `instrumentSluice({ limiters })` before calling `run`. */
export function everyMetricJob(): { limiter: RateLimiter; run(): Promise<void> } {
  const clock = new FakeClock();
  const limiter = new RateLimiter({ name: "api", clock, concurrency: 1, limits: [{ limit: 5, interval: 1_000 }] });
  const run = async () => {
    const fetch = limitedFetch(limiter, { clock, retry: false, fetch: async () => new Response("{}") });
    await fetch("http://127.0.0.1/");
    const held = await limiter.acquire();
    const queued = limiter.acquire();
    held.release();
    (await queued).release();
    limiter.pause(10);
  };
  return { limiter, run };
}
