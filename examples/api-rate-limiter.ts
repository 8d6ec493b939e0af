/**
 * The seeds' ApiRateLimiter (max_concurrent=5, min_interval_ms=100) in sluice: one RateLimiter, 20 calls,
 * each result with its request id and how long the call took.
 *
 * Run: npm run build && npx tsx examples/api-rate-limiter.ts
 */
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts.
import { RateLimiter } from "sluice";

const limiter = new RateLimiter({ concurrency: 5, minInterval: 100 });

interface ApiResponse<T> {
  data: T;
  requestId: string;
  durationMs: number;
}

/** Calls `fn` when the limiter admits it, and reports how long the call itself took. */
function call<T>(fn: (signal: AbortSignal) => Promise<T>, requestId: string = crypto.randomUUID()) {
  return limiter.run(async (signal): Promise<ApiResponse<T>> => {
    const start = performance.now();
    const data = await fn(signal);
    return { data, requestId, durationMs: performance.now() - start };
  });
}

// --- a stand-in for the real API: 50-250 ms per call, and it tells us when each call arrived ---
const began = performance.now();
const arrivals: number[] = [];
async function fetchUser(id: string): Promise<{ id: string; name: string }> {
  arrivals.push(performance.now() - began);
  await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 200));
  return { id, name: `User ${id}` };
}

const userIds = Array.from({ length: 20 }, (_, index) => String(index + 1));
const responses = await Promise.all(userIds.map((id) => call(() => fetchUser(id), `req-${id}`)));

for (const response of responses) {
  console.log(`${response.requestId.padEnd(7)} ${response.data.name.padEnd(8)} ${response.durationMs.toFixed(0)} ms`);
}
const gaps = arrivals.slice(1).map((at, index) => at - (arrivals[index] as number));
console.log(`Fetched ${responses.length} users in ${(performance.now() - began).toFixed(0)} ms`);
console.log(`smallest gap between starts: ${Math.min(...gaps).toFixed(1)} ms (minInterval 100 ms)`);
// The limiter spaces its grants by minInterval on its clock; a call sees its grant a little later when the
// event loop is busy (a few ms on a loaded machine), so the gaps seen here may fall short by that much.
if (Math.min(...gaps) < 90) throw new Error("starts closer than minInterval");
