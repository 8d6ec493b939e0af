/**
 * The semaphore scripts' short paths (an uncontended acquire, a release with nobody waiting) must do
 * exactly what the general path does. Two copies of the same state in one Redis, the same random
 * sequence of script calls against each — one copy with the scripts as shipped, the other with the short
 * paths cut off — and after every call the replies, the whole state and the keys' expiries must be
 * identical. Once over everyday calls, once over the edges: Infinity capacity (stored as
 * 9007199254740991) with huge weights, capacity 0, weights above the capacity, an expired restart guard,
 * a state without `capacity` (written by older scripts), cancels and heartbeats in between.
 */
import fc from "fast-check";
import { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  ACQUIRE,
  ACQUIRE_WITHOUT_SHORT_PATH,
  CANCEL,
  HEARTBEAT,
  RELEASE,
  RELEASE_WITHOUT_SHORT_PATH,
} from "../../src/redis/semaphore-scripts.js";
import { RedisServer } from "../support/redis-server.js";

let server: RedisServer;
let redis: Redis;
let run = 0;

beforeAll(async () => {
  server = await RedisServer.start();
  redis = new Redis(server.port, "127.0.0.1");
});

afterAll(async () => {
  redis?.disconnect();
  await server?.stop();
});

const MAX = Number.MAX_SAFE_INTEGER;

type Call =
  | {
      kind: "acquire";
      client: number;
      capacity: number;
      mode: "try" | "wait";
      register: boolean;
      requests: { weight: number; priority: number }[];
    }
  | { kind: "release"; client: number; capacity: number; pick: number; bogus: boolean }
  | { kind: "cancel"; client: number; capacity: number; pick: number }
  | { kind: "heartbeat"; client: number; capacity: number; mode: "renew" | "leave" };

/** Calls over the given capacities, weights and priorities; cancels and heartbeats only when asked. */
function calls(options: {
  capacity: fc.Arbitrary<number>;
  weight: fc.Arbitrary<number>;
  priority: fc.Arbitrary<number>;
  housekeeping: boolean;
}): fc.Arbitrary<Call[]> {
  const client = fc.integer({ min: 0, max: 1 });
  const { capacity } = options;
  const kinds: fc.WeightedArbitrary<Call>[] = [
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constant("acquire" as const),
        client,
        capacity,
        mode: fc.constantFrom("try" as const, "wait" as const),
        register: fc.constantFrom(false, false, true),
        requests: fc.array(fc.record({ weight: options.weight, priority: options.priority }), {
          minLength: 1,
          maxLength: 2,
        }),
      }),
    },
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constant("release" as const),
        client,
        capacity,
        pick: fc.nat(),
        bogus: fc.constantFrom(false, false, true),
      }),
    },
  ];
  if (options.housekeeping) {
    kinds.push(
      { weight: 1, arbitrary: fc.record({ kind: fc.constant("cancel" as const), client, capacity, pick: fc.nat() }) },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant("heartbeat" as const),
          client,
          capacity,
          mode: fc.constantFrom("renew" as const, "renew" as const, "leave" as const),
        }),
      },
    );
  }
  return fc.array(fc.oneof(...kinds), { minLength: 1, maxLength: 30 });
}

/** One copy of a semaphore's state: its keys and the scripts it runs. */
interface Copy {
  keys: string[];
  prefix: string;
  acquire: string;
  release: string;
}

async function state(copy: Copy) {
  const [meta, queue, clients] = copy.keys as [string, string, string];
  const ttl = async (key: string) => {
    const ms = await redis.pttl(key);
    return ms < 0 ? ms : "set";
  };
  return {
    meta: await redis.hgetall(meta),
    queue: await redis.zrangebyscore(queue, "-inf", "+inf", "WITHSCORES"),
    // Lease expiries come from the server clock, which moved between the two calls: members only.
    clients: await redis.zrangebyscore(clients, "-inf", "+inf"),
    ttl: [await ttl(meta), await ttl(queue), await ttl(clients)],
  };
}

/**
 * Runs every sequence against both copies, starting from `start`, and checks they agree after every call.
 * Returns how many calls were the short paths' case, so the caller knows they were exercised.
 */
async function checkAgreement(
  start: fc.Arbitrary<Record<string, string | number>>,
  sequences: fc.Arbitrary<Call[]>,
  numRuns: number,
): Promise<number> {
  let shortTaken = 0;
  await fc.assert(
    fc.asyncProperty(start, sequences, async (initial, steps) => {
      run++;
      const copies: Copy[] = ["short", "general"].map((which) => ({
        keys: [`t:{${which}-${run}}:meta`, `t:{${which}-${run}}:queue`, `t:{${which}-${run}}:clients`],
        prefix: `t:{${which}-${run}}:`,
        acquire: which === "short" ? ACQUIRE : ACQUIRE_WITHOUT_SHORT_PATH,
        release: which === "short" ? RELEASE : RELEASE_WITHOUT_SHORT_PATH,
      }));
      // The same starting state in both: counters at 1000 (not the server clock), two live clients.
      for (const copy of copies) {
        const [meta, , clients] = copy.keys as [string, string, string];
        await redis.hset(meta, initial);
        await redis.zadd(clients, 9e15, "c0", 9e15, "c1");
      }
      let ticket = 0;
      for (const step of steps) {
        const before = await state(copies[0] as Copy);
        const args = (copy: Copy): (string | number)[] => {
          const common = [copy.prefix, `c${step.client}`, step.capacity, 10_000, 60_000, "01"];
          switch (step.kind) {
            case "acquire": {
              const triples = step.requests.flatMap((request, i) => [
                request.weight,
                -request.priority,
                ticket + i + 1,
              ]);
              return [...common, step.mode, step.register ? "1" : "0", ...triples];
            }
            case "release": {
              const holders = Object.keys(before.meta).filter((field) => field.startsWith("h:"));
              const token =
                step.bogus || holders.length === 0
                  ? "999999"
                  : (holders[step.pick % holders.length] as string).slice(2);
              return [...common, token];
            }
            case "cancel": {
              const members = before.queue.filter((_, i) => i % 2 === 0);
              return [
                ...common,
                members.length === 0 ? "0000000000000001:1:1:c0" : (members[step.pick % members.length] as string),
              ];
            }
            case "heartbeat":
              return [...common, step.mode, "0"];
          }
        };
        const script = (copy: Copy) =>
          step.kind === "acquire"
            ? copy.acquire
            : step.kind === "release"
              ? copy.release
              : step.kind === "cancel"
                ? CANCEL
                : HEARTBEAT;
        const replies: unknown[] = [];
        for (const copy of copies) replies.push(await redis.eval(script(copy), 3, ...copy.keys, ...args(copy)));
        if (step.kind === "acquire") ticket += step.requests.length;
        if (step.kind === "heartbeat") {
          // `now` and the earliest other lease end come from the server clock.
          for (const reply of replies as number[][]) {
            reply[1] = 0;
            reply[2] = 0;
          }
        }
        expect(replies[0]).toEqual(replies[1]);
        expect(await state(copies[0] as Copy)).toEqual(await state(copies[1] as Copy));
        const quiet =
          before.meta.waiting === "0" && before.meta.ready === "0" && Number(before.meta.capacity) === step.capacity;
        if (quiet && step.kind === "release") shortTaken++;
        if (quiet && step.kind === "acquire" && !step.register && step.requests.length === 1) shortTaken++;
      }
    }),
    { numRuns },
  );
  return shortTaken;
}

const usual = { used: 0, fence: 1000, seq: 1000, waiting: 0, ready: 0, capacity: 4 };

it("the short paths leave the same replies and the same state as the general path", async () => {
  const sequences = calls({
    capacity: fc.constantFrom(4, 4, 4, 3, 5),
    weight: fc.integer({ min: 1, max: 3 }),
    priority: fc.constantFrom(0, 0, 1),
    housekeeping: false,
  });
  expect(await checkAgreement(fc.constant(usual), sequences, 200)).toBeGreaterThan(100);
});

it("and on the edges: Infinity capacity, heavy weights, guards, older states, cancels and heartbeats", async () => {
  const start = fc.constantFrom<Record<string, string | number>>(
    usual,
    { ...usual, ready: 1 },
    { used: 0, fence: 1000, seq: 1000, waiting: 0, ready: 0 },
    { ...usual, capacity: MAX },
  );
  const sequences = calls({
    capacity: fc.constantFrom(MAX, MAX, 4, 3, 0),
    weight: fc.constantFrom(1, 2, 5, 2 ** 52, MAX - 1, MAX),
    priority: fc.constant(0),
    housekeeping: true,
  });
  expect(await checkAgreement(start, sequences, 150)).toBeGreaterThan(40);
});
