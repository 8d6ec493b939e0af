/**
 * `useRedisServer()`: a RedisServer and a client for the tests of one vitest file. Kept apart from
 * redis-server.ts, which scripts run outside vitest (test/redis/faults-report.ts) import too: importing
 * vitest there fails ("Vitest failed to access its internal state").
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll } from "vitest";
import { RedisServer } from "./redis-server.js";

/**
 * A private server for the tests of one file: started before them, stopped after them, with one ioredis
 * client on it (`maxRetriesPerRequest: 1`, errors silenced, so a test that stops the server fails fast
 * instead of retrying). Whatever a test passes to `track` is closed before the server stops.
 */
export function useRedisServer(): {
  readonly server: RedisServer;
  readonly redis: Redis;
  track<T extends { close(options?: { timeout?: number }): Promise<void> }>(closable: T): T;
} {
  let server: RedisServer | undefined;
  let redis: Redis | undefined;
  const open: { close(options?: { timeout?: number }): Promise<void> }[] = [];
  beforeAll(async () => {
    server = await RedisServer.start();
    redis = new Redis(server.port, "127.0.0.1", { maxRetriesPerRequest: 1 });
    redis.on("error", () => undefined);
  });
  afterAll(async () => {
    await Promise.all(open.map((closable) => closable.close({ timeout: 0 }).catch(() => undefined)));
    redis?.disconnect();
    await server?.stop();
  });
  return {
    get server() {
      if (server === undefined) throw new Error("useRedisServer: the server starts in beforeAll");
      return server;
    },
    get redis() {
      if (redis === undefined) throw new Error("useRedisServer: the client connects in beforeAll");
      return redis;
    },
    track(closable) {
      open.push(closable);
      return closable;
    },
  };
}
