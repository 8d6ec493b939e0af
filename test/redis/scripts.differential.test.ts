/**
 * The semaphore scripts' short paths (an uncontended acquire, a release with nobody waiting) must do
 * exactly what the general path does. Two copies of the same state in one Redis, the same random
 * sequence of script calls against each — one copy with the scripts as shipped, the other with the short
 * paths cut off — and after every call the replies and the whole state must be identical.
 */
import fc from "fast-check";
import { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  ACQUIRE,
  ACQUIRE_WITHOUT_SHORT_PATH,
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

type Call =
  | {
      kind: "acquire";
      client: number;
      capacity: number;
      mode: "try" | "wait";
      register: boolean;
      requests: { weight: number; priority: number }[];
    }
  | { kind: "release"; client: number; capacity: number; pick: number; bogus: boolean };

const capacity = fc.constantFrom(4, 4, 4, 3, 5);
const call: fc.Arbitrary<Call> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("acquire" as const),
      client: fc.integer({ min: 0, max: 1 }),
      capacity,
      mode: fc.constantFrom("try" as const, "wait" as const),
      register: fc.constantFrom(false, false, true),
      requests: fc.array(fc.record({ weight: fc.integer({ min: 1, max: 3 }), priority: fc.constantFrom(0, 0, 1) }), {
        minLength: 1,
        maxLength: 2,
      }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("release" as const),
      client: fc.integer({ min: 0, max: 1 }),
      capacity,
      pick: fc.nat(),
      bogus: fc.constantFrom(false, false, true),
    }),
  },
);

/** One copy of a semaphore's state: its keys and the scripts it runs. */
interface Copy {
  keys: string[];
  prefix: string;
  acquire: string;
  release: string;
}

async function state(copy: Copy) {
  const [meta, queue, clients] = copy.keys as [string, string, string];
  return {
    meta: await redis.hgetall(meta),
    queue: await redis.zrangebyscore(queue, "-inf", "+inf", "WITHSCORES"),
    // Lease expiries come from the server clock, which moved between the two calls: members only.
    clients: await redis.zrangebyscore(clients, "-inf", "+inf"),
  };
}

it("the short paths leave the same replies and the same state as the general path", async () => {
  let shortTaken = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(call, { minLength: 1, maxLength: 30 }), async (calls) => {
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
        await redis.hset(meta, { used: 0, fence: 1000, seq: 1000, waiting: 0, ready: 0, capacity: 4 });
        await redis.zadd(clients, 9e15, "c0", 9e15, "c1");
      }
      let ticket = 0;
      for (const step of calls) {
        const before = await state(copies[0] as Copy);
        const args = (copy: Copy): (string | number)[] => {
          const common = [copy.prefix, `c${step.client}`, step.capacity, 10_000, 60_000, "0"];
          if (step.kind === "acquire") {
            const triples = step.requests.flatMap((request) => [request.weight, -request.priority, ++ticket]);
            ticket -= step.requests.length;
            return [...common, step.mode, step.register ? "1" : "0", ...triples];
          }
          const holders = Object.keys(before.meta).filter((field) => field.startsWith("h:"));
          const token =
            step.bogus || holders.length === 0 ? "999999" : (holders[step.pick % holders.length] as string).slice(2);
          return [...common, token];
        };
        const replies = [];
        for (const copy of copies) {
          const script = step.kind === "acquire" ? copy.acquire : copy.release;
          replies.push(await redis.eval(script, 3, ...copy.keys, ...args(copy)));
        }
        if (step.kind === "acquire") ticket += step.requests.length;
        expect(replies[0]).toEqual(replies[1]);
        const [short, general] = [await state(copies[0] as Copy), await state(copies[1] as Copy)];
        expect(short).toEqual(general);
        // Count the calls that were the short path's case, so the test knows it exercised it.
        const quiet = before.meta.waiting === "0" && Number(before.meta.capacity) === step.capacity;
        if (quiet && step.kind === "release") shortTaken++;
        if (quiet && step.kind === "acquire" && !step.register && step.requests.length === 1) shortTaken++;
      }
    }),
    { numRuns: 200 },
  );
  expect(shortTaken).toBeGreaterThan(100);
});
