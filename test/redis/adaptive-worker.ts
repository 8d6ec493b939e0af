/**
 * A child process for the adaptive-under-a-shared-cap test, run with tsx:
 * `tsx test/redis/adaptive-worker.ts '<json>'`. It fetches `count` URLs from the test's overloaded mock
 * server through `limitedFetch(RedisSemaphore, { concurrency: "auto" })` — this process's share adapts
 * under the fleet's shared cap — and reports `{done: {ok, statuses, attempts, window}}` on stdout.
 */
import { Redis } from "ioredis";
import { map } from "../../src/core/map.js";
import { limitedFetch } from "../../src/http/index.js";
import { RedisSemaphore } from "../../src/redis/index.js";

interface Config {
  port: number;
  name: string;
  capacity: number;
  url: string;
  count: number;
}

const config = JSON.parse(process.argv[2] as string) as Config;
const redis = new Redis(config.port, "127.0.0.1", { maxRetriesPerRequest: 1 });
redis.on("error", () => undefined);
const shared = new RedisSemaphore(redis, { name: config.name, capacity: config.capacity, leaseTtl: 5_000 });
const fetch = limitedFetch(shared, { concurrency: "auto", retry: { attempts: 20, baseDelay: 20, maxDelay: 500 } });
let ok = 0;
await map(
  Array.from({ length: config.count }, (_, i) => `${config.url}/item/${i}`),
  async (url) => {
    const response = await fetch(url);
    await response.arrayBuffer();
    if (response.status === 200) ok++;
  },
  { concurrency: 64 },
);
const statistics = fetch.statistics();
process.stdout.write(
  `${JSON.stringify({ done: { ok, statuses: statistics.statuses, attempts: statistics.attempts, window: statistics.concurrency } })}\n`,
);
await shared.close();
redis.disconnect();
