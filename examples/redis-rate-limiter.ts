// An LLM API's limits shared by a fleet: requests per minute AND tokens per minute in Redis, the
// estimate settled with the real usage, and a 429 seen by one process pausing all of them.
// Run: npm run build && npx tsx examples/redis-rate-limiter.ts   (uses REDIS_URL, or starts a redis-server)
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts,
// with redis-server.mjs beside it.
import { Redis } from "ioredis";
import { RedisRateLimiter } from "sluice/redis";
import { localRedis } from "./redis-server.mjs";

const server = await localRedis();
const redis = new Redis(server.url);

// The same name and limits in every process that calls the API with this key.
const llm = new RedisRateLimiter(redis, {
  name: "openai-gpt",
  limits: [
    { limit: 600, interval: "1m", burst: 10 }, // requests per minute
    { limit: 40_000, interval: "1m", unit: "tokens" }, // tokens per minute
  ],
});

// Stands in for the model call; returns the real usage.
async function complete(prompt: string, signal: AbortSignal): Promise<{ text: string; tokens: number }> {
  if (signal.aborted) throw signal.reason;
  return { text: prompt.toUpperCase(), tokens: 120 + prompt.length };
}

const started = performance.now();
const answers = await Promise.all(
  ["first", "second", "third"].map((prompt) =>
    llm.run(
      async (signal, permit) => {
        const answer = await complete(prompt, signal);
        permit.settle({ tokens: answer.tokens }); // refund the unused part of the estimate
        return answer.text;
      },
      { cost: { tokens: 1_000 } }, // the estimate, charged up front
    ),
  ),
);
console.log(`${answers.join(", ")} in ${Math.round(performance.now() - started)} ms`);

// A 429 from the API, seen by one process: every process sharing "openai-gpt" waits it out.
await llm.observe({ "retry-after": "0.5", "x-ratelimit-remaining-tokens": "30000" });
const waitStarted = performance.now();
await llm.run(() => complete("after the pause", AbortSignal.timeout(1_000)));
console.log(`the next call waited ${Math.round(performance.now() - waitStarted)} ms for the shared pause`);

// Right after a pause every bucket is empty and refills at the steady rate (no burst that would trip
// the server again).
const state = await llm.inspect();
for (const limit of state.limits) console.log(`${limit.unit}: ${Math.floor(limit.remaining)} of ${limit.burst} left`);

// Limits set at run time are every process's (what limitedFetch does when it learns them from headers):
// a process still holding others is answered with these at its next acquire.
const here = new RedisRateLimiter(redis, { name: "claude", limits: [{ limit: 100, interval: "1m" }] });
const there = new RedisRateLimiter(redis, { name: "claude", limits: [{ limit: 100, interval: "1m" }] }); // another process
here.limits = [
  { limit: 50, interval: "1m" },
  { limit: 8_000, interval: "1m", unit: "output-tokens" },
];
await here.run(() => complete("set here", AbortSignal.timeout(1_000)));
await there.run(() => complete("admitted there", AbortSignal.timeout(1_000)));
console.log(
  `the other process admits with ${there.limits.map((limit) => `${limit.limit} ${limit.unit}`).join(" and ")}`,
);

await Promise.all([llm.close(), here.close(), there.close()]);
redis.disconnect();
server.stop();
