/**
 * The scripts' short paths against the general path (as in scripts.differential.test.ts), on the edges:
 * Infinity capacity (stored as 9007199254740991) with huge weights, capacity 0, weights above the
 * capacity, an expired restart guard, a state without `capacity` (written by older scripts), heartbeats
 * (renew/leave) and cancels in between, and the keys' expiries compared too.
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
const capacity = fc.constantFrom(MAX, MAX, 4, 3, 0);
const weight = fc.constantFrom(1, 2, 5, 2 ** 52, MAX - 1, MAX);

type Call =
  | { kind: "acquire"; client: number; capacity: number; mode: "try" | "wait"; register: boolean; requests: number[] }
  | { kind: "release"; client: number; capacity: number; pick: number; bogus: boolean }
  | { kind: "cancel"; client: number; capacity: number; pick: number }
  | { kind: "heartbeat"; client: number; capacity: number; mode: "renew" | "leave" };

const call: fc.Arbitrary<Call> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("acquire" as const),
      client: fc.integer({ min: 0, max: 1 }),
      capacity,
      mode: fc.constantFrom("try" as const, "wait" as const),
      register: fc.constantFrom(false, false, true),
      requests: fc.array(weight, { minLength: 1, maxLength: 2 }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("release" as const),
      client: fc.integer({ min: 0, max: 1 }),
      capacity,
      pick: fc.nat(),
      bogus: fc.constantFrom(false, false, true),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("cancel" as const),
      client: fc.integer({ min: 0, max: 1 }),
      capacity,
      pick: fc.nat(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("heartbeat" as const),
      client: fc.integer({ min: 0, max: 1 }),
      capacity,
      mode: fc.constantFrom("renew" as const, "renew" as const, "leave" as const),
    }),
  },
);

/** Starting states: the hand-written one, an expired guard, no `capacity` field, Infinity stored. */
const start = fc.constantFrom<Record<string, string | number>>(
  { used: 0, fence: 1000, seq: 1000, waiting: 0, ready: 0, capacity: 4 },
  { used: 0, fence: 1000, seq: 1000, waiting: 0, ready: 1, capacity: 4 },
  { used: 0, fence: 1000, seq: 1000, waiting: 0, ready: 0 },
  { used: 0, fence: 1000, seq: 1000, waiting: 0, ready: 0, capacity: MAX },
);

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
    clients: await redis.zrangebyscore(clients, "-inf", "+inf"),
    ttl: [await ttl(meta), await ttl(queue), await ttl(clients)],
  };
}

it("short and general paths agree on Infinity capacity, heavy weights, guards, cancels and heartbeats", async () => {
  let shortTaken = 0;
  await fc.assert(
    fc.asyncProperty(start, fc.array(call, { minLength: 1, maxLength: 30 }), async (initial, calls) => {
      run++;
      const copies: Copy[] = ["short", "general"].map((which) => ({
        keys: [`r:{${which}-${run}}:meta`, `r:{${which}-${run}}:queue`, `r:{${which}-${run}}:clients`],
        prefix: `r:{${which}-${run}}:`,
        acquire: which === "short" ? ACQUIRE : ACQUIRE_WITHOUT_SHORT_PATH,
        release: which === "short" ? RELEASE : RELEASE_WITHOUT_SHORT_PATH,
      }));
      for (const copy of copies) {
        const [meta, , clients] = copy.keys as [string, string, string];
        await redis.hset(meta, initial);
        await redis.zadd(clients, 9e15, "c0", 9e15, "c1");
      }
      let ticket = 0;
      for (const step of calls) {
        const before = await state(copies[0] as Copy);
        const args = (copy: Copy): (string | number)[] => {
          const common = [copy.prefix, `c${step.client}`, step.capacity, 10_000, 60_000, "0"];
          switch (step.kind) {
            case "acquire": {
              const triples = step.requests.flatMap((w, i) => [w, 0, ticket + i + 1]);
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
              return [...common, step.mode];
          }
        };
        const replies: unknown[] = [];
        for (const copy of copies) {
          const script =
            step.kind === "acquire"
              ? copy.acquire
              : step.kind === "release"
                ? copy.release
                : step.kind === "cancel"
                  ? CANCEL
                  : HEARTBEAT;
          replies.push(await redis.eval(script, 3, ...copy.keys, ...args(copy)));
        }
        if (step.kind === "acquire") ticket += step.requests.length;
        if (step.kind === "heartbeat") {
          // now and the earliest other lease end come from the server clock.
          for (const reply of replies as number[][]) {
            reply[1] = 0;
            reply[2] = 0;
          }
        }
        expect(replies[0]).toEqual(replies[1]);
        const [short, general] = [await state(copies[0] as Copy), await state(copies[1] as Copy)];
        expect(short).toEqual(general);
        const quiet =
          before.meta.waiting === "0" && before.meta.ready === "0" && Number(before.meta.capacity) === step.capacity;
        if (quiet && step.kind === "release") shortTaken++;
        if (quiet && step.kind === "acquire" && !step.register && step.requests.length === 1) shortTaken++;
      }
    }),
    { numRuns: 150 },
  );
  expect(shortTaken).toBeGreaterThan(40);
});
