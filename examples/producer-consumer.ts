// A bounded producer/consumer queue: a fast producer, three slower consumers, a buffer of 5 —
// the producer waits whenever the buffer is full. Run: npm run build && npx tsx examples/producer-consumer.ts
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts.
import { Channel } from "sluice";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const jobs = new Channel<number>(5); // at most 5 jobs buffered

// Consumers: each takes the next job as soon as it is free; the loop ends when the channel is closed
// and empty.
const done: string[] = [];
const consumers = ["a", "b", "c"].map(async (name) => {
  for await (const job of jobs) {
    await sleep(5);
    done.push(`${name}:${job}`);
  }
});

// Producer: `send` waits while 5 jobs are already waiting.
let peakBuffered = 0;
for (let job = 1; job <= 20; job++) {
  await jobs.send(job);
  peakBuffered = Math.max(peakBuffered, jobs.size);
}
jobs.close(); // no more jobs; what is buffered is still delivered
await Promise.all(consumers);
console.log(`${done.length} jobs done, never more than ${peakBuffered} buffered`);
console.log(done.join(" "));

// Non-blocking use, and waiting with a timeout.
const results = new Channel<string | undefined>(1);
console.log(results.trySend(undefined)); // true: taken
console.log(results.trySend("full")); // false: no room
console.log(results.tryReceive()); // { ok: true, value: undefined }
console.log(results.tryReceive()); // { ok: false, closed: false }
try {
  await results.receive({ timeout: 50 });
} catch (error) {
  console.log((error as Error).name); // TimeoutError
}
