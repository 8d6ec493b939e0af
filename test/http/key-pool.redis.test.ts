/**
 * A key pool whose keys' limits live in Redis: two pools (two processes' worth) over the same three keys,
 * each key a RedisRateLimiter of the same name in both, against the mock provider with limits per key.
 * The keys' limits hold across both pools, and both pools use every key.
 */
import { keyPoolFetch } from "sluice/http";
import { RedisRateLimiter } from "sluice/redis";
import { type MockServer, startMockServer } from "sluice/testing";
import { afterEach, describe, expect, it } from "vitest";
import { useRedisServer } from "../support/use-redis-server.js";

const redis = useRedisServer();
const servers: MockServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

const MINUTE = 2000;
const KEYS = ["sk-shared-key-0001", "sk-shared-key-0002", "sk-shared-key-0003"];

describe("keyPoolFetch with RedisRateLimiter keys", () => {
  it("shares each key's limits between two pools: every key used by both, no 429", async () => {
    const server = await startMockServer({
      keys: Object.fromEntries(KEYS.map((key) => [key, { requestsPerMinute: 40 }])),
      minute: MINUTE,
      latency: { min: 2, max: 8 },
    });
    servers.push(server);
    // A little under the server's 40 per "minute": the server's bucket sees arrivals, not admissions.
    const pool = () =>
      keyPoolFetch(
        KEYS.map((apiKey, index) => ({
          apiKey,
          limiter: redis.track(
            new RedisRateLimiter(redis.redis, {
              name: `key-pool-${index}`,
              limits: [{ limit: 36, interval: MINUTE }],
              guardRestarts: false,
            }),
          ),
        })),
        { retry: { attempts: 6, baseDelay: 20, maxDelay: 200, nonIdempotent: true } },
      );
    const pools = [pool(), pool()];
    const calls = Array.from({ length: 160 }, (_, i) =>
      (pools[i % 2] as (typeof pools)[number])(`${server.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "mock", max_tokens: 5, messages: [{ role: "user", content: `item ${i}` }] }),
      }).then(async (response) => {
        await response.arrayBuffer();
        return response.status;
      }),
    );
    const statuses = await Promise.all(calls);
    expect(statuses.every((status) => status === 200)).toBe(true);
    expect(server.summary().status429).toBe(0);
    for (const fetchPooled of pools) {
      for (const key of fetchPooled.statistics().keys) expect(key.routed, key.name).toBeGreaterThan(10);
    }
    const served = server.requests.filter((record) => record.outcome === "ok");
    for (const key of KEYS) expect(served.filter((record) => record.apiKey === key).length).toBeGreaterThan(30);
  }, 30_000);
});
