/**
 * sluice/redis on a real Redis Cluster (three masters on loopback, started by the test): every key of a
 * semaphore or rate limiter carries the same hash tag, so each one's scripts run on one node, while
 * different names spread over the nodes. The client is ioredis' `Cluster`.
 */

import { Cluster, type ClusterOptions } from "ioredis";
import { RedisKeyedRateLimiter, RedisMutex, RedisRateLimiter, RedisSemaphore } from "sluice/redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisClusterServers } from "../support/redis-server.js";

let servers: RedisClusterServers;
const clients: Cluster[] = [];
let counter = 0;

/** A new cluster client: each stands for one process. */
function connect(options: ClusterOptions = {}): Cluster {
  const client = new Cluster(
    servers.ports.map((port) => ({ host: "127.0.0.1", port })),
    { redisOptions: { maxRetriesPerRequest: 2 }, ...options },
  );
  client.on("error", () => undefined);
  clients.push(client);
  return client;
}

/** The node (client port) that serves `key`'s slot. */
async function nodeOf(client: Cluster, key: string): Promise<number> {
  const slot = (await client.cluster("KEYSLOT", key)) as number;
  const ranges = await client.cluster("SLOTS");
  const range = ranges.find(([first, last]) => slot >= first && slot <= last);
  const master = range?.[2];
  if (master === undefined) throw new Error(`no node serves slot ${slot}`);
  return master[1];
}

/** Keys under `pattern` on each master, by client port. */
async function keysByNode(client: Cluster, pattern: string): Promise<Map<number, string[]>> {
  const found = new Map<number, string[]>();
  for (const node of client.nodes("master")) {
    const keys = await node.keys(pattern);
    if (keys.length > 0) found.set(node.options.port as number, keys.sort());
  }
  return found;
}

const options = { leaseTtl: "3s", guardRestarts: false } as const;

beforeAll(async () => {
  servers = await RedisClusterServers.start(3);
}, 30_000);

afterAll(async () => {
  for (const client of clients) client.disconnect();
  await servers?.stop();
});

describe("Redis Cluster", () => {
  it("keeps every key of one semaphore on one node, and tells the waiting process by push", async () => {
    const name = `cluster-keys-${++counter}`;
    const a = new RedisSemaphore(connect(), { name, capacity: 1, ...options });
    const b = new RedisSemaphore(connect(), { name, capacity: 1, ...options });
    const held = await a.acquire();
    // b waits in the Redis queue, so its wake list and queue exist too once a releases.
    const waiting = b.acquire({ timeout: 5_000 });
    await expect.poll(async () => (await a.inspect()).waiters.length, { timeout: 2_000 }).toBe(1);
    const byNode = await keysByNode(clients[0] as Cluster, `sluice:{${name}}:*`);
    expect(byNode.size).toBe(1);
    const [[port, keys]] = [...byNode] as [[number, string[]]];
    expect(keys).toEqual([`sluice:{${name}}:clients`, `sluice:{${name}}:meta`, `sluice:{${name}}:queue`]);
    expect(port).toBe(await nodeOf(clients[0] as Cluster, `sluice:{${name}}:meta`));
    await held.release();
    const next = await waiting;
    expect(next.fencingToken).toBe((held.fencingToken as number) + 1);
    await next.release();
    await Promise.all([a.close(), b.close()]);
  });

  it('notices: "sharded" keeps grant notices on the node that holds the keys, and still wakes by push', async () => {
    const name = `cluster-sharded-${++counter}`;
    // Heartbeats and check-ins far away: within the test, only the notice can deliver the grant.
    const shardedOptions = { ...options, leaseTtl: "30s", wakeTimeout: "60s", notices: "sharded" } as const;
    // ioredis routes SSUBSCRIBE to the node of the channel's slot only with shardedSubscribers.
    const a = new RedisSemaphore(connect({ shardedSubscribers: true }), { name, capacity: 1, ...shardedOptions });
    const b = new RedisSemaphore(connect({ shardedSubscribers: true }), { name, capacity: 1, ...shardedOptions });
    const held = await a.acquire();
    const waiting = b.acquire({ timeout: 5_000 });
    await expect.poll(async () => (await a.inspect()).waiters.length, { timeout: 2_000 }).toBe(1);
    const owner = await nodeOf(clients[0] as Cluster, `sluice:{${name}}:meta`);
    const channelsByNode = new Map<number, string[]>();
    for (const node of (clients[0] as Cluster).nodes("master")) {
      const channels = (await node.call("PUBSUB", "SHARDCHANNELS", `*{${name}}*`)) as string[];
      if (channels.length > 0) channelsByNode.set(node.options.port as number, channels);
    }
    // Both processes' channels, on the owner only.
    expect([...channelsByNode.keys()]).toEqual([owner]);
    expect(channelsByNode.get(owner)).toHaveLength(2);
    const releasedAt = performance.now();
    await held.release();
    const next = await waiting;
    expect(performance.now() - releasedAt).toBeLessThan(2_000);
    expect(next.fencingToken).toBe((held.fencingToken as number) + 1);
    await next.release();
    await Promise.all([a.close(), b.close()]);
  });

  it("never admits more than the capacity across three clients, and serves every caller", async () => {
    const name = `cluster-capacity-${++counter}`;
    const semaphores = [0, 1, 2].map(() => new RedisSemaphore(connect(), { name, capacity: 2, ...options }));
    let inside = 0;
    let most = 0;
    const tokens: number[] = [];
    await Promise.all(
      semaphores.flatMap((semaphore) =>
        Array.from({ length: 8 }, () =>
          semaphore.run(async () => {
            inside++;
            most = Math.max(most, inside);
            await new Promise((resolve) => setTimeout(resolve, 3));
            inside--;
          }),
        ),
      ),
    );
    for (const semaphore of semaphores) {
      const permit = await semaphore.acquire();
      tokens.push(permit.fencingToken as number);
      await permit.release();
    }
    expect(most).toBe(2);
    expect(new Set(tokens).size).toBe(3);
    const snapshot = await semaphores[0]?.inspect();
    expect(snapshot).toMatchObject({ used: 0, holders: [], waiters: [] });
    await Promise.all(semaphores.map((semaphore) => semaphore.close()));
  });

  it("spreads different names over the nodes, each working on its own", async () => {
    const client = connect();
    const names = new Map<number, string>();
    for (let attempt = 0; names.size < 3 && attempt < 200; attempt++) {
      const name = `cluster-spread-${++counter}`;
      const port = await nodeOf(client, `sluice:{${name}}:meta`);
      if (!names.has(port)) names.set(port, name);
    }
    expect(names.size).toBe(3);
    for (const [port, name] of names) {
      const mutex = new RedisMutex(client, { name, ...options });
      await mutex.runExclusive(async () => {
        expect((await mutex.tryLock()) === undefined).toBe(true);
      });
      const byNode = await keysByNode(client, `sluice:{${name}}:*`);
      expect([...byNode.keys()]).toEqual([port]);
      await mutex.close();
    }
  });

  it("shares a rate limit between two clients, all-or-nothing", async () => {
    const name = `cluster-rate-${++counter}`;
    const limits = [
      { limit: 5, interval: "1m", burst: 5 },
      { limit: 100, interval: "1m", unit: "tokens" },
    ];
    const first = new RedisRateLimiter(connect(), { name, limits });
    const second = new RedisRateLimiter(connect(), { name, limits });
    const outcomes = await Promise.allSettled(
      Array.from({ length: 8 }, (_, index) =>
        (index % 2 === 0 ? first : second).acquire({ cost: { tokens: 10 }, timeout: 0 }),
      ),
    );
    expect(outcomes.filter((outcome) => outcome.status === "fulfilled")).toHaveLength(5);
    for (const outcome of outcomes) {
      if (outcome.status === "rejected") expect(outcome.reason).toMatchObject({ name: "TimeoutError" });
    }
    // The three refused calls charged nothing: 50 tokens of 100 spent, not 80.
    const snapshot = await second.inspect();
    expect(snapshot.limits.find((limit) => limit.unit === "tokens")?.remaining).toBeCloseTo(50, 0);
    const byNode = await keysByNode(clients[0] as Cluster, `sluice:{${name}}:*`);
    expect(byNode.size).toBe(1);
    await Promise.all([first.close(), second.close()]);
  });

  it("decides a keyed rate limiter's calls of one tick in one script on one node, keys and levels", async () => {
    const name = `cluster-keyed-${++counter}`;
    const client = connect();
    const limiter = new RedisKeyedRateLimiter(client, {
      name,
      limits: [{ limit: 2, interval: "1m" }],
      levels: [{ name: "global", limits: [{ limit: 5, interval: "1m" }] }],
    });
    const outcomes = await Promise.allSettled(
      ["a", "a", "a", "b", "b", "c", "c", "d"].map((key) => limiter.acquire(key, { timeout: 0 })),
    );
    // a 2, b 2, then the global 5 is spent at c's first.
    expect(outcomes.map((outcome) => outcome.status === "fulfilled")).toEqual([
      true,
      true,
      false,
      true,
      true,
      true,
      false,
      false,
    ]);
    expect(limiter.statistics().scripts).toBe(1);
    const nodes = await keysByNode(client, `sluice:{${name}}:*`);
    expect([...nodes.values()].flat()).toHaveLength(4); // a, b and c charged, and the global bucket: one node
    expect(nodes.size).toBe(1);
  });

  it("holds a rate limiter's concurrency across clients (its semaphore has a slot of its own)", async () => {
    const name = `cluster-rate-concurrency-${++counter}`;
    const limits = [{ limit: 1_000, interval: "1m" }];
    const first = new RedisRateLimiter(connect(), { name, limits, concurrency: 1, leaseTtl: "3s" });
    const second = new RedisRateLimiter(connect(), { name, limits, concurrency: 1, leaseTtl: "3s" });
    const held = await first.acquire();
    await expect(second.acquire({ timeout: 0 })).rejects.toMatchObject({ name: "TimeoutError" });
    const waiting = second.acquire({ timeout: 5_000 });
    await held.release();
    await (await waiting).release();
    await Promise.all([first.close(), second.close()]);
  });
});
