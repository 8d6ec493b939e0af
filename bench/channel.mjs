// Channel send/receive throughput against the floor: the simplest array-backed async queue that can
// do the same job (unbounded, no close, no cancellation, no priorities). Target: within 2x of it.
// Run: npm run build && node --expose-gc bench/channel.mjs
import { Channel } from "../dist/index.js";
import { machine, median, requireGc, table, time } from "./harness.mjs";

const MESSAGES = 1_000_000;
const RUNS = 5;

/** The floor: an array with a read index, and one parked receiver at most. */
class ArrayQueue {
  items = [];
  head = 0;
  receiver = undefined;
  send(value) {
    const receiver = this.receiver;
    if (receiver !== undefined) {
      this.receiver = undefined;
      receiver(value);
    } else {
      this.items.push(value);
    }
    return Promise.resolve();
  }
  receive() {
    if (this.head < this.items.length) {
      const value = this.items[this.head];
      this.items[this.head++] = undefined;
      if (this.head === this.items.length) {
        this.items = [];
        this.head = 0;
      }
      return Promise.resolve(value);
    }
    return new Promise((resolve) => {
      this.receiver = resolve;
    });
  }
}

/** One producer awaiting every send, one consumer awaiting every receive, MESSAGES values. */
async function pingPong(queue) {
  let sum = 0;
  const consumer = (async () => {
    for (let i = 0; i < MESSAGES; i++) sum += await queue.receive();
  })();
  for (let i = 0; i < MESSAGES; i++) await queue.send(i);
  await consumer;
  if (sum !== (MESSAGES * (MESSAGES - 1)) / 2) throw new Error("lost messages");
}

/** Four producers and four consumers on one channel, consumers iterating with for await. */
async function fanInFanOut(channel) {
  const perProducer = MESSAGES / 4;
  let received = 0;
  const consumers = Array.from({ length: 4 }, async () => {
    for await (const _ of channel) received++;
  });
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let i = 0; i < perProducer; i++) await channel.send(i);
    }),
  );
  channel.close();
  await Promise.all(consumers);
  if (received !== MESSAGES) throw new Error("lost messages");
}

const scenarios = [
  ["1 producer / 1 consumer", "array queue (floor)", () => pingPong(new ArrayQueue())],
  ["1 producer / 1 consumer", "sluice Channel(Infinity)", () => pingPong(new Channel(Infinity))],
  ["1 producer / 1 consumer", "sluice Channel(1024)", () => pingPong(new Channel(1024))],
  ["1 producer / 1 consumer", "sluice Channel(0)", () => pingPong(new Channel(0))],
  ["4 producers / 4 consumers, for await", "sluice Channel(256)", () => fanInFanOut(new Channel(256))],
];

requireGc();
// Runs are interleaved (one of each scenario per round) so a noisy machine disturbs all of them alike.
const samples = scenarios.map(() => []);
for (const [, , run] of scenarios) await run(); // warm-up
for (let round = 0; round < RUNS; round++) {
  for (const [i, [, , run]] of scenarios.entries()) samples[i].push(await time(run));
}
const rows = scenarios.map(([scenario, name], i) => {
  const ms = median(samples[i]);
  return { scenario, queue: name, "ms (median)": ms, "messages/s": (MESSAGES / ms) * 1000 };
});
const floor = rows[0]["ms (median)"];
for (const row of rows) row["× floor"] = row["ms (median)"] / floor;
console.log(`## Channel: ${MESSAGES.toLocaleString("en-US")} messages\n\n${machine()}; median of ${RUNS}\n`);
console.log(table(rows));
