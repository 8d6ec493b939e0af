import { Redis } from "ioredis";
import { RedisMutex, RedisSemaphore } from "sluice/redis";
import { afterAll, beforeAll } from "vitest";
import { describeLimiterConformance } from "../conformance/limiter.js";
import { RedisServer } from "../support/redis-server.js";

let server: RedisServer;
let redis: Redis;
let counter = 0;

beforeAll(async () => {
  server = await RedisServer.start();
  redis = new Redis(server.port, "127.0.0.1", { lazyConnect: false });
});

afterAll(async () => {
  redis?.disconnect();
  await server?.stop();
});

const options = { leaseTtl: "2s", guardRestarts: false } as const;

describeLimiterConformance("RedisSemaphore", (capacity) => {
  const semaphore = new RedisSemaphore(redis, { name: `conformance-${++counter}`, capacity, ...options });
  return { limiter: semaphore, close: () => semaphore.close() };
});

describeLimiterConformance(
  "RedisMutex",
  () => {
    const mutex = new RedisMutex(redis, { name: `conformance-mutex-${++counter}`, ...options });
    return { limiter: mutex, close: () => mutex.close() };
  },
  { maxCapacity: 1, weighted: false },
);
