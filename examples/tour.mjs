// `npm run tour`: a short guided tour that runs each example and says what it shows.
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const stops = [
  ["semaphore-basics.ts", "Semaphore basics: N at a time, locked(), over-release refused, resizable capacity"],
  ["limit-concurrent-api-calls.ts", "Use case: at most 5 API calls in flight"],
  ["bounded-file-processing.ts", "Use case: process files 5 at a time"],
  ["acquire-with-timeout.ts", "Use case: acquire with a timeout or an AbortSignal; nothing leaks"],
  ["critical-section-lock.ts", "Use case: a lock around a critical section"],
  ["weighted-priority.ts", "Weights and priorities: heavy jobs are not starved, urgent ones go first"],
  ["api-rate-limiter.ts", "RateLimiter: 5 concurrent calls, 100 ms apart (the seeds' ApiRateLimiter)"],
  ["llm-judge-rate-limits.ts", "RateLimiter: requests/min, tokens/min and concurrency at once, settled from usage"],
  ["connection-pool.ts", "Pool: connections created lazily, validated, reused, capped"],
  ["producer-consumer.ts", "Channel: a bounded producer/consumer queue with backpressure and close"],
  ["process-files.ts", "map: process files five at a time, results in order"],
  ["llm-judge.ts", "sluice/http: LLM-as-judge through the openai SDK against the mock provider"],
  ["worker-threads.ts", "sluice/threads: one limit shared by worker threads"],
  ["redis-semaphore.ts", "sluice/redis: one semaphore shared by processes"],
  ["redis-rate-limiter.ts", "sluice/redis: one rate limit shared by processes"],
];

let failed = 0;
for (const [file, title] of stops) {
  console.log(`\n── ${title}\n   (examples/${file})\n`);
  const result = spawnSync(process.execPath, ["--import", "tsx", join(here, file)], { stdio: "inherit" });
  if (result.status !== 0) failed++;
}
console.log(failed === 0 ? "\nAll examples ran." : `\n${failed} example(s) failed.`);
process.exit(failed === 0 ? 0 : 1);
