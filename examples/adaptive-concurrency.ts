// Adaptive concurrency (issue 18): a service whose capacity nobody told the client. sluice's mock server
// in its overloaded mode serves 8 requests at once in 20 ms each, queues 8 more, and answers 503 without
// Retry-After beyond that. The client finds the limit itself; then a static limit set far too high is
// shown to back off under its ceiling instead of collapsing.
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts.
import { AdaptiveLimiter, map, Semaphore } from "sluice";
import { limitedFetch } from "sluice/http";
import { startMockServer } from "sluice/testing";

await using server = await startMockServer({ latency: 20, overload: { capacity: 8, queue: 8 } });
const urls = Array.from({ length: 400 }, (_, i) => `${server.url}/items/${i}`);

// 1. Nobody knows the limit: let limitedFetch find it, under a ceiling of 64.
const fetchAuto = limitedFetch(new Semaphore(64), { concurrency: "auto" });
await map(urls, async (url) => (await fetchAuto(url)).text(), { concurrency: 64 });
const auto = fetchAuto.statistics();
console.log(`auto: ${auto.attempts} attempts for ${urls.length} requests, limit now ${auto.concurrency}`);

// 2. A static limit far above the capacity: the window under it backs off on each 503 (the default).
const fetchStatic = limitedFetch(new Semaphore(64));
await map(urls, async (url) => (await fetchStatic(url)).text(), { concurrency: 64 });
const fixed = fetchStatic.statistics();
console.log(`static 64: ${fixed.attempts} attempts, ${fixed.pauses} pauses, window ${fixed.concurrency}`);

// 3. The limiter on its own, around any call: latency is measured from grant to settle; a call marked
//    as dropped (or an error `isDrop` calls overload, with `run`) shrinks the limit.
const limiter = new AdaptiveLimiter({ min: 2, max: 64 });
const statuses = await map(
  urls,
  (url) =>
    limiter.run(async (_signal, permit) => {
      const response = await fetch(url);
      if (response.status === 503) permit.dropped();
      await response.text();
      return response.status;
    }),
  { concurrency: 64 },
);
const { samples, drops, capacity, estimates } = limiter.statistics();
console.log(
  `${samples} samples, ${drops} drops (${statuses.filter((s) => s === 503).length} refused), limit ${capacity}`,
);
console.log(`unloaded latency seen: ${estimates.noLoadLatency?.toFixed(1)} ms`);
