// RedisSemaphore's own cost per acquire + release, without Redis: the client-side JavaScript only.
//
//   npm run build && node bench/redis-client.mjs [--rounds 30] [--cycles 20000] [--against DIR]
//
// The semaphore talks to a connection that answers at once with the replies of the scripts' short paths
// (granted at once; released), so what is measured is what a change to src/redis can make slower, free
// of the Redis round trip and its noise (bench/redis.mjs measures that). With --against DIR (a checkout
// whose dist/ holds another build, say the commit before a change), both builds run in one process,
// taking turns round by round, and the ratio of their medians is printed: on a busy machine, turns in
// one process compare far better than two runs one after the other.
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const argument = (name, fallback) => {
  const index = process.argv.indexOf(`--${name}`);
  return index === -1 ? fallback : process.argv[index + 1];
};
const rounds = Number(argument("rounds", 30));
const cycles = Number(argument("cycles", 20_000));
const against = argument("against", undefined);

const builds = { this: await import("../dist/redis.js") };
if (against !== undefined) builds.against = await import(pathToFileURL(resolve(against, "dist/redis.js")).href);

/** A connection that answers every script at once, as its short path would. */
function instantRedis(module) {
  let fence = 1_000_000;
  const connection = {
    cluster: false,
    // ARGV 7 is the script's mode (acquire: "wait" or "try"; heartbeat: "renew" or "leave"); a release
    // has no mode, only its token.
    async evalsha(_sha, _keys, args) {
      if (args[6] === "wait" || args[6] === "try") return [1, 7, 1, ++fence, 0, ""];
      if (args.length === 7) return [1];
      return [0, 0, 0, 0, 7, 0, 0];
    },
    async eval() {
      throw new Error("not used: every evalsha answers");
    },
    async subscribe() {},
    async unsubscribe() {},
    async scan() {
      return ["0", []];
    },
    duplicate: () => connection,
    disconnect() {},
  };
  return module.asRedisConnection(connection);
}

const semaphores = Object.fromEntries(
  Object.entries(builds).map(([label, module]) => [
    label,
    new module.RedisSemaphore(instantRedis(module), { name: `client-${label}`, capacity: 4, guardRestarts: false }),
  ]),
);

/** µs per acquire + release, over `cycles` in a row. */
async function measure(semaphore) {
  const started = performance.now();
  for (let cycle = 0; cycle < cycles; cycle++) await (await semaphore.acquire()).release();
  return ((performance.now() - started) / cycles) * 1000;
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};

const labels = Object.keys(semaphores);
for (const label of labels) await measure(semaphores[label]); // warm-up: V8 compiles both before timing
const samples = Object.fromEntries(labels.map((label) => [label, []]));
for (let round = 0; round < rounds; round++) {
  // Each build goes first in every other round, so neither always runs on a cooler (or hotter) machine.
  for (const label of round % 2 === 0 ? labels : [...labels].reverse()) {
    samples[label].push(await measure(semaphores[label]));
  }
}
const figures = labels.map((label) => `${label} ${median(samples[label]).toFixed(2)} µs`);
let line = `acquire + release on an instant connection, median of ${rounds} rounds of ${cycles}: ${figures.join(", ")}`;
if (against !== undefined) line += `; this ÷ against = ${(median(samples.this) / median(samples.against)).toFixed(3)}`;
console.log(line);
for (const semaphore of Object.values(semaphores)) await semaphore.close();
