/**
 * The distributed case of adaptive concurrency (issue 18): two real processes, each with
 * `limitedFetch(RedisSemaphore, { concurrency: "auto" })`, against one overloaded service. Each adapts
 * its own share under the shared cap, so the fleet never has more requests at the service than the cap,
 * however many processes it has.
 */
import { fileURLToPath } from "node:url";
import { type MockServer, startMockServer } from "sluice/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { useRedisServer } from "../support/use-redis-server.js";
import { maxOverlap, Worker } from "./processes.js";

const redis = useRedisServer();
const script = fileURLToPath(new URL("./adaptive-worker.ts", import.meta.url));
let service: MockServer;

beforeAll(async () => {
  service = await startMockServer({ latency: 10, overload: { capacity: 4, queue: 4 } });
  // The restart guard holds grants back during the first lease after a server starts; start past it.
  await new Promise((resolve) => setTimeout(resolve, 1_100));
});

afterAll(async () => {
  await service?.close();
});

describe("adaptive concurrency per process under a shared RedisSemaphore cap", () => {
  it("two processes: everything served, never more than the shared cap at the service at once", async () => {
    const CAP = 12;
    const config = { port: redis.server.port, name: "adaptive-fleet", capacity: CAP, url: service.url, count: 300 };
    const workers = [new Worker(config, { script }), new Worker(config, { script })];
    const done = (await Promise.all(workers.map((worker) => worker.line("done", 60_000)))) as {
      ok: number;
      attempts: number;
      window: number;
    }[];
    for (const result of done) expect(result.ok).toBe(300);
    // The service's own records: each request from arrival to answer, refused ones included.
    const spans = service.requests.map((record) => ({
      token: record.index,
      start: record.arrivedAt,
      end: record.endedAt ?? Number.POSITIVE_INFINITY,
    }));
    expect(maxOverlap(spans)).toBeLessThanOrEqual(CAP);
    // Each process's window stays within the shared cap: adaptive per process, the cap for the fleet.
    for (const result of done) expect(result.window).toBeLessThanOrEqual(CAP);
    expect(service.summary().outcomes.ok).toBe(600);
  }, 90_000);
});
