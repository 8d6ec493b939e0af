/**
 * A child process for the learned-limits test, run with tsx: `tsx test/redis/learning-worker.ts '<json>'`.
 * It sends `count` chat completions to the test's mock provider through `limitedFetch` over a
 * RedisRateLimiter told nothing but a concurrency — the limits are learned from the headers, by this
 * process or by the other one — and reports `{done: {statuses, limits}}` on stdout.
 */
import { Redis } from "ioredis";
import { limitedFetch } from "../../src/http/index.js";
import { RedisRateLimiter } from "../../src/redis/index.js";

interface Config {
  port: number;
  name: string;
  url: string;
  count: number;
}

const config = JSON.parse(process.argv[2] as string) as Config;
const redis = new Redis(config.port, "127.0.0.1", { maxRetriesPerRequest: 1 });
redis.on("error", () => undefined);
// No restart guard: the server started moments ago, and the guard would hold the first grants back for a lease.
const limiter = new RedisRateLimiter(redis, { name: config.name, concurrency: 4, guardRestarts: false });
const fetch = limitedFetch(limiter, { retry: { attempts: 20, nonIdempotent: true } });
const body = (i: number) =>
  JSON.stringify({
    model: "mock",
    max_tokens: 10,
    messages: [{ role: "user", content: `Item ${i}: ${"word ".repeat(20)}` }],
  });
const statuses = await Promise.all(
  Array.from({ length: config.count }, async (_, i) => {
    const response = await fetch(config.url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: body(i),
    });
    await response.arrayBuffer();
    return response.status;
  }),
);
process.stdout.write(`${JSON.stringify({ done: { statuses, limits: limiter.limits } })}\n`);
await limiter.close();
redis.disconnect();
