/**
 * RedisKeyedRateLimiter under faults (issue 19): three processes share one keyed limiter — 8 keys under
 * 2 tenants and a global level — on a private redis-server while the parent kills one with SIGKILL
 * mid-run, freezes another (SIGSTOP) past the waits its callers were sleeping, restarts Redis empty, and
 * sends FLUSHALL. Checked from the logs only (each admission's key and Redis TIME, printed as it
 * happened): no key's, tenant's or the global bucket admitted more than its promise in any window,
 * beyond one more burst per bucket for each restart or flush the window spans (the documented cost of
 * losing Redis' state: the buckets start full again); and every caller recovered — the survivors are
 * admitted again soon after each fault, and every call of theirs settled by the run's deadline.
 *
 * About 12 s: the workers' start under tsx, then a 7.5 s run.
 */
import { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { RedisServer } from "../support/redis-server.js";
import { type BucketPromise, bucketFigures, rateExcess, type StateLoss } from "./fault-checks.js";
import { admittedBy, Worker } from "./processes.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** The wall clock's scale, as Redis TIME (what `admittedAt` is in). */
const now = () => performance.timeOrigin + performance.now();

const own: BucketPromise = { limit: 4, interval: 1_000, burst: 2 };
const tenantLimit: BucketPromise = { limit: 8, interval: 1_000, burst: 3 };
const globalLimit: BucketPromise = { limit: 12, interval: 1_000, burst: 4 };
const tenants = ["acme", "globex"];
const keys = tenants.flatMap((tenant) => Array.from({ length: 4 }, (_, user) => `${tenant}/u${user}`));
/** How soon after a fault the processes left are admitted again: a reconnect, a wait, a hair of load. */
const recoveryMs = 1_500;

type Admissions = { key: string; at: number }[];

interface Fault {
  kind: "kill" | "freeze" | "restart" | "flush";
  at: number;
  end: number;
}

describe("RedisKeyedRateLimiter under faults", () => {
  it("every key's, tenant's and the global limit hold across kill -9, a frozen process, a restart and a FLUSHALL; callers recover", async () => {
    const server = await RedisServer.start();
    const redis = new Redis(server.port, "127.0.0.1", { maxRetriesPerRequest: 1 });
    redis.on("error", () => undefined);
    const config = {
      mode: "keyed",
      port: server.port,
      name: "keyed-faults",
      capacity: 1,
      leaseTtl: 1_000,
      callers: 4,
      durationMs: 9_000,
      commandTimeout: 500,
      keys,
      limits: [own],
      levels: [
        { name: "global", limits: [globalLimit] },
        { name: "tenant", limits: [tenantLimit], byTenant: true },
      ],
    };
    const [killed, frozen, steady] = [new Worker(config), new Worker(config), new Worker(config)] as const;
    const workers = [killed, frozen, steady];
    const faults: Fault[] = [];
    try {
      await Promise.all(workers.map((worker) => worker.line("ready", 15_000)));
      await sleep(1_000);

      // SIGKILL between two of its admissions, callers waiting in it.
      await killed.next((line) => "admission" in line, 2_000);
      killed.kill("SIGKILL");
      await killed.exited;
      faults.push({ kind: "kill", at: now(), end: now() });
      await sleep(1_000);

      // Frozen past every wait its callers sleep (at most a key's refill, 500 ms): they wake overdue.
      const freezing = now();
      frozen.kill("SIGSTOP");
      await sleep(1_200);
      frozen.kill("SIGCONT");
      faults.push({ kind: "freeze", at: freezing, end: now() });
      await sleep(1_000);

      const stopping = now();
      await server.restart();
      faults.push({ kind: "restart", at: stopping, end: now() });
      await sleep(1_500);

      const flushing = now();
      await redis.flushall();
      faults.push({ kind: "flush", at: flushing, end: now() });

      const reports = (await Promise.all([frozen, steady].map((worker) => worker.line("keyed", 10_000)))) as {
        admitted: number;
        errors: Record<string, number>;
        slowestCallMs: number;
        lateMs: number;
      }[];
      const [ofKilled, ofFrozen, ofSteady] = workers.map(admittedBy) as [Admissions, Admissions, Admissions];
      const all = [...ofKilled, ...ofFrozen, ...ofSteady];
      const losses: StateLoss[] = faults
        .filter((fault) => fault.kind === "restart" || fault.kind === "flush")
        .map((fault) => ({ from: fault.at, to: fault.end }));
      const timesOf = (match: (key: string) => boolean) => all.filter(({ key }) => match(key)).map(({ at }) => at);
      const buckets: [string, number[], BucketPromise][] = [
        ["global", timesOf(() => true), globalLimit],
        ...tenants.map((tenant): [string, number[], BucketPromise] => [
          `tenant ${tenant}`,
          timesOf((key) => key.startsWith(`${tenant}/`)),
          tenantLimit,
        ]),
        ...keys.map((key): [string, number[], BucketPromise] => [`key ${key}`, timesOf((other) => other === key), own]),
      ];
      const excess = buckets.map(([bucket, times, promise]) => {
        const figures = bucketFigures(times, promise, losses);
        return {
          bucket,
          within: rateExcess(figures.worst),
          across: figures.worstExcessAcrossLosses,
          worst: figures.worst,
          worstSpanning: figures.worstSpanning,
        };
      });
      const figure = JSON.stringify({ faults, excess: excess.slice(0, 3), reports });
      for (const { within, across } of excess) {
        expect(within, figure).toBeLessThanOrEqual(0);
        expect(across, figure).toBeLessThanOrEqual(0);
      }
      // The limits were the bottleneck, not the faults: the global bucket was kept busy.
      const span = (Math.max(...timesOf(() => true)) - Math.min(...timesOf(() => true))) / 1_000;
      expect(all.length, figure).toBeGreaterThan(0.6 * globalLimit.limit * span);

      // Recovery: after each fault the survivors are admitted again within the bound; the frozen one too.
      const survivors = [...ofFrozen, ...ofSteady].map(({ at }) => at);
      for (const fault of faults) {
        expect(
          survivors.some((at) => at > fault.end && at <= fault.end + recoveryMs),
          `${fault.kind}: ${figure}`,
        ).toBe(true);
      }
      const thawed = (faults.find((fault) => fault.kind === "freeze") as Fault).end;
      expect(
        ofFrozen.some(({ at }) => at > thawed && at <= thawed + recoveryMs),
        figure,
      ).toBe(true);
      // No hang: every call settled by its timeout (the deadline), the restart's errors asked again.
      for (const report of reports) {
        expect(report.lateMs, figure).toBeLessThan(1_000);
        expect(report.admitted, figure).toBeGreaterThan(10);
      }
    } finally {
      for (const worker of workers) {
        worker.kill("SIGCONT");
        worker.kill("SIGKILL");
      }
      await Promise.all(workers.map((worker) => worker.exited));
      redis.disconnect();
      await server.stop();
    }
  }, 30_000);
});
