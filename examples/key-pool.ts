/**
 * One fetch over three API keys, each with limits of its own: every request goes to the key that can
 * start it soonest, and a key whose quota runs out leaves the rotation while the other two carry on.
 *
 * The provider is sluice's mock server, which checks the key of every request (`Authorization: Bearer`)
 * and gives each key 600 requests per minute; one key's quota is only 40 requests. Time is compressed
 * (one "minute" lasts 3 s), so 600 calls take a couple of seconds.
 *
 * Run: npm run build && npx tsx examples/key-pool.ts
 */
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts.
import { RateLimiter } from "sluice";
import { keyPoolFetch } from "sluice/http";
import { startMockServer } from "sluice/testing";

const MINUTE = 3_000; // one "minute" of the provider's limits, compressed

await using server = await startMockServer({
  keys: {
    "sk-team-a-0001": { requestsPerMinute: 600 },
    "sk-team-b-0002": { requestsPerMinute: 600 },
    "sk-team-c-0003": { requestsPerMinute: 600, quota: { requests: 40 } },
  },
  minute: MINUTE,
  latency: { min: 5, max: 20 },
});

const fetchPooled = keyPoolFetch(
  [
    { name: "team-a", apiKey: "sk-team-a-0001", limiter: new RateLimiter({ concurrency: 8 }) },
    { name: "team-b", apiKey: "sk-team-b-0002", limiter: new RateLimiter({ concurrency: 8 }) },
    { name: "team-c", apiKey: "sk-team-c-0003", limiter: new RateLimiter({ concurrency: 8 }) },
  ],
  {
    retry: { attempts: 6, nonIdempotent: true },
    onKeyRemoved: ({ key, reason, keysLeft }) => console.log(`${key} out: ${reason.name}; ${keysLeft} keys left`),
  },
);

const statuses = await Promise.all(
  Array.from({ length: 600 }, async (_, i) => {
    const response = await fetchPooled(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "mock", max_tokens: 10, messages: [{ role: "user", content: `item ${i}` }] }),
    });
    await response.arrayBuffer();
    return response.status;
  }),
);

for (const key of fetchPooled.statistics().keys) {
  console.log(`${key.name}: ${key.routed} calls routed, ${key.statuses[200] ?? 0} served`);
}
const { outcomes } = server.summary();
console.log(
  `${statuses.filter((status) => status === 200).length} of 600 served; ` +
    `${outcomes["rate-limited"] ?? 0} rate-limited, ${outcomes.quota ?? 0} quota answers (team-c's calls in flight)`,
);
if (statuses.some((status) => status !== 200)) process.exit(1);
