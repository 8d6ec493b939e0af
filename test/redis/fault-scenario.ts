/**
 * The fault suite's run: five worker processes (test/redis/fault-worker.ts) share one RedisSemaphore
 * (capacity 3, lease 1 s) and one RedisRateLimiter on a private redis-server, w3 through a TCP proxy of
 * its own, w0, w4 and the replacements through the "fleet" proxy, w1 and w2 (killed early on) directly,
 * while the parent injects real faults one after another:
 *
 *  1. `freeze`: w0 stopped (SIGSTOP) right after a grant, for 2.5 leases, then SIGCONT;
 *  2. `kill-holding`: w1 SIGKILLed right after a grant (a replacement, w1b, is started);
 *  3. `kill-queued`: w2 SIGKILLed while it holds nothing and has callers queued (replaced by w2b);
 *  4. `cut-keep`: w3 cut off by the proxy (sockets kept) right after a grant, 1.5 leases;
 *  5. `cut-drop`: the same with its connections dropped;
 *  6. `restart-cut`: w3 cut off holding a long permit, and Redis restarted empty at once, late in a
 *     wall-clock second; the others reconnect just after the second turned, where `uptime_in_seconds`
 *     already reads 1 (as after any reconnect back-off of ~100 ms); w3 is restored 1.5 leases later;
 *  7. `restart`: Redis restarted empty, at once;
 *  8. `redis-pause`: Redis stopped (SIGSTOP) for 1.5 leases;
 *  9. `flush`: FLUSHALL.
 *
 * The parent is also the fenced resource: every write of a worker comes over IPC, is judged by the
 * fencing rule (sluice's `FencingGuard` when the library has it; otherwise the rule documented before
 * it, "refuse tokens lower than the highest seen", one global slot) and is logged with its arrival time.
 * The run returns the logs; test/redis/fault-checks.ts computes the checks from them.
 */
import { Redis } from "ioredis";
import * as sluiceRedis from "../../src/redis/index.js";
import { RedisKeyedSemaphore, RedisSemaphore, type RedisSemaphoreSnapshot } from "../../src/redis/index.js";
import { RedisServer } from "../support/redis-server.js";
import { TcpProxy } from "../support/tcp-proxy.js";
import type {
  FaultRecord,
  FaultRun,
  FaultRunConfig,
  RecoveryBounds,
  ResourceWrite,
  WorkerEvent,
  WorkerRecord,
} from "./fault-checks.js";
import type { FaultWorkerConfig, WorkerCommand, WriteMessage } from "./fault-worker.js";
import { Worker } from "./processes.js";

const script = new URL("./fault-worker.ts", import.meta.url).pathname;

const leaseTtl = 1_000;

export const faultRunConfig: FaultRunConfig = {
  capacity: 3,
  leaseTtl,
  rate: { limit: 30, interval: 1_000, burst: 10 },
  // Longer than any wait the faults cause (a restart guard is up to 3 s), so a timeout means a lost caller.
  acquireTimeout: 8_000,
};

/**
 * The bounds of check 4. Slack of 500 ms on top of each promise: five Node processes and Redis share
 * two cores, and a heartbeat may be a scheduling delay late.
 */
export const recoveryBounds: RecoveryBounds = {
  lease: leaseTtl + 500,
  deadWaiter: 500,
  restart: leaseTtl + 2_000 + 500,
  flush: leaseTtl / 3 + 500,
};

const workerConfig = (label: string, port: number, keyed: ScenarioOptions["keyed"]): FaultWorkerConfig => ({
  label,
  port,
  name: "faults",
  capacity: faultRunConfig.capacity,
  leaseTtl,
  commandTimeout: 500,
  rate: { name: "faults-rate", ...faultRunConfig.rate },
  callers: [
    { kind: "acquire", weight: 1 },
    { kind: "acquire", weight: 1 },
    { kind: "run", weight: 1 },
    { kind: "acquire", weight: 2 },
  ],
  rateCallers: keyed === undefined ? 2 : 0,
  steps: 2,
  stepMs: 20,
  acquireTimeout: faultRunConfig.acquireTimeout,
  ...(keyed === undefined ? {} : { keyed }),
});

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What a fenced resource needs of a permit. */
interface Fenced {
  fencingToken: number;
  fencingSlots?: readonly number[];
}

interface Fence {
  accept(permit: Fenced): boolean;
}

/** The fencing rule documented before issue 14: refuse tokens lower than the highest seen (one slot). */
class HighestTokenFence implements Fence {
  private highest = Number.NEGATIVE_INFINITY;
  accept({ fencingToken }: Fenced): boolean {
    if (fencingToken < this.highest) return false;
    this.highest = fencingToken;
    return true;
  }
}

/** sluice's FencingGuard when the library exports one (after issue 14), else the rule documented before. */
function makeFence(): { fence: Fence; guard: FaultRun["guard"] } {
  const FencingGuard = (sluiceRedis as Record<string, unknown>).FencingGuard as (new () => Fence) | undefined;
  if (FencingGuard === undefined) return { fence: new HighestTokenFence(), guard: "global" };
  return { fence: new FencingGuard(), guard: "per-slot" };
}

/**
 * The resource the workers write to. A refused write is answered only after Redis was asked whether it
 * still held the writer's lease, so the writer cannot release in between and the answer is about the
 * moment of the write.
 */
class FencedResource {
  readonly writes: ResourceWrite[] = [];
  constructor(
    private readonly fence: Fence,
    private readonly inspector: Inspector,
  ) {}

  async write(worker: string, { call, token, slots, believedValid }: WriteMessage["write"]): Promise<boolean> {
    const at = now();
    const permit: Fenced = { fencingToken: token };
    if (slots !== undefined) permit.fencingSlots = slots;
    const accepted = this.fence.accept(permit);
    const record: ResourceWrite = { at, worker, call, token, believedValid, accepted };
    if (slots !== undefined) record.slots = slots;
    this.writes.push(record);
    if (!accepted) {
      const held = await this.heldByRedis(token);
      if (held !== undefined) record.heldByRedis = held;
    }
    return accepted;
  }

  private async heldByRedis(token: number): Promise<boolean | undefined> {
    try {
      const snapshot = await this.inspector.inspect();
      return snapshot.holders.some((holder) => holder.fencingToken === token && holder.leaseRemaining > 0);
    } catch {
      return undefined;
    }
  }
}

/** A worker of the run: its process and what the run keeps of it. */
interface Running {
  process: Worker;
  record: WorkerRecord;
}

/** Milliseconds until the wall clock next shows `ms` within a second. */
function delayToMillisecond(ms: number): number {
  return (ms - (Date.now() % 1000) + 1000) % 1000;
}

/** Records the parent's event-loop stalls over 100 ms, by a 10 ms tick that comes late. */
function watchStalls(): { found: FaultRun["stalls"]; stop(): void } {
  const found: FaultRun["stalls"] = [];
  let last = now();
  const tick = setInterval(() => {
    const at = now();
    if (at - last > 110) found.push({ at: last, ms: at - last - 10 });
    last = at;
  }, 10);
  return { found, stop: () => clearInterval(tick) };
}

export interface ScenarioOptions {
  /** Progress, one line per step. */
  log?: (text: string) => void;
  /**
   * Runs the scenario on one key (`key`) of a RedisKeyedSemaphore instead of a RedisSemaphore, with
   * `otherCallers` callers per process keeping `otherKeys` other keys busy, and no rate limiter.
   */
  keyed?: { key: string; otherKeys: number; otherCallers: number };
}

/** The keyed run: one key under test, and 4 callers per process on 200 other keys of the same semaphore. */
export const keyedRun = { key: "tenant-under-test", otherKeys: 200, otherCallers: 4 };

/** What the run reads the semaphore's state in Redis through. */
interface Inspector {
  inspect(): Promise<RedisSemaphoreSnapshot>;
}

/** Runs the scenario (about 50 s) and returns its logs. Every process it started is gone when it settles. */
export async function runFaultScenario(options: ScenarioOptions = {}): Promise<FaultRun> {
  const log = options.log ?? (() => undefined);
  const server = await RedisServer.start();
  const proxy = await TcpProxy.start(server.port);
  const fleet = await TcpProxy.start(server.port);
  const redis = new Redis(server.port, "127.0.0.1", { maxRetriesPerRequest: 1, retryStrategy: () => 50 });
  redis.on("error", () => undefined);
  const keyed = options.keyed;
  let inspector: Inspector;
  if (keyed === undefined) {
    inspector = new RedisSemaphore(redis, { name: "faults", capacity: faultRunConfig.capacity, leaseTtl });
  } else {
    const semaphore = new RedisKeyedSemaphore(redis, {
      name: "faults",
      capacityPerKey: faultRunConfig.capacity,
      leaseTtl,
    });
    inspector = { inspect: () => semaphore.inspect(keyed.key) };
  }
  const { fence, guard } = makeFence();
  const resource = new FencedResource(fence, inspector);
  const workers = new Map<string, Running>();
  const faults: FaultRecord[] = [];
  const stalls = watchStalls();

  const spawn = (label: string, port: number, wholeRun: boolean): Running => {
    const record: WorkerRecord = { label, lines: [], wholeRun, frozen: [] };
    const child: Worker = new Worker(workerConfig(label, port, keyed) as unknown as Record<string, unknown>, {
      script,
      onMessage: (message) => {
        const { write } = message as WriteMessage;
        void resource.write(label, write).then((accepted) => {
          const ack: WorkerCommand = { ack: write.id, accepted };
          child.send(ack);
        });
      },
    });
    const running = { process: child, record };
    workers.set(label, running);
    return running;
  };
  const command = (label: string, message: WorkerCommand) => workers.get(label)?.process.send(message);
  /** The next line of `label` with this event (or the first since `from`). */
  const nextLine = (label: string, event: WorkerEvent["event"], ms = 10_000, from?: number) =>
    (
      (workers.get(label) as Running).process.next((line) => line.event === event, ms, from) as Promise<WorkerEvent>
    ).catch((error: Error) => {
      // Which worker, what it was waiting for, and the last of what it said.
      const lines = (workers.get(label) as Running).process.lines;
      const last = lines.slice(-5).map((line) => JSON.stringify(line));
      throw new Error(`${label} (waiting for "${event}"): ${error.message}; its last lines: ${last.join(" ")}`);
    });

  /** Kills `label` at the moment its own command says, and starts `replacement` in its place. */
  const kill = async (label: string, how: "die-holding" | "die-queued", replacement: string) => {
    const victim = workers.get(label) as Running;
    command(label, { command: how });
    const dying = await nextLine(label, "dying");
    await victim.process.exited;
    victim.record.killedAt = dying.at;
    const fault: FaultRecord = {
      kind: how === "die-holding" ? "kill-holding" : "kill-queued",
      at: dying.at,
      end: dying.at,
      target: label,
    };
    if (how === "die-queued") {
      // It held nothing when it died: a holder of its own in Redis now is a grant that raced its death.
      const ready = (victim.process.lines as unknown as WorkerEvent[]).find((line) => line.event === "ready");
      const client = ready?.event === "ready" ? ready.client : undefined;
      const holders = (await inspector.inspect()).holders;
      if (client !== undefined && holders.some((holder) => holder.client === client)) fault.raced = true;
    }
    faults.push(fault);
    log(`${label} killed (${how}); ${replacement} started`);
    spawn(replacement, fleet.port, false);
  };

  /** Cuts w3 off right after one of its grants, for `ms`. */
  const cut = async (mode: "keep" | "drop", ms: number) => {
    await nextLine("w3", "enter");
    const at = now();
    proxy.cutOff(mode);
    await sleep(ms);
    proxy.restore();
    faults.push({ kind: mode === "keep" ? "cut-keep" : "cut-drop", at, end: now(), target: "w3" });
    log(`w3 cut off (${mode}) for ${ms} ms`);
  };

  const restart = async (downMs: number) => {
    const at = now();
    await server.restart(downMs);
    return { at, end: now() };
  };

  try {
    // w1 and w2 are killed before the restart-cut: straight to Redis, so that when they die Redis sees
    // their connections close as a real death shows it, with no proxy in between.
    for (const label of ["w1", "w2"]) spawn(label, server.port, true);
    for (const label of ["w0", "w4"]) spawn(label, fleet.port, true);
    spawn("w3", proxy.port, true);
    // A fresh server: the restart guard holds grants back for about a lease; the run starts once
    // every worker has been served.
    await Promise.all([...workers.keys()].map((label) => nextLine(label, "enter", 20_000, 0)));
    const startedAt = now();
    log("all workers served");
    await sleep(2_000);

    command("w0", { command: "freeze-holding" });
    const freezing = await nextLine("w0", "freezing");
    await sleep(2.5 * leaseTtl);
    workers.get("w0")?.process.kill("SIGCONT");
    const thawed = now();
    workers.get("w0")?.record.frozen.push({ from: freezing.at, to: thawed });
    faults.push({ kind: "freeze", at: freezing.at, end: thawed, target: "w0" });
    log("w0 frozen and thawed");
    await sleep(2_000);

    await kill("w1", "die-holding", "w1b");
    await sleep(2_500);
    await kill("w2", "die-queued", "w2b");
    await sleep(2_500);

    await cut("keep", 1.5 * leaseTtl);
    await sleep(2_000);
    await cut("drop", 1.5 * leaseTtl);
    await sleep(2_000);

    // w3 holds a permit for 3 leases and believes it valid until its own deadline, cut off from Redis
    // while Redis restarts: the restart guard must outlast that deadline, also when the state is
    // created in the second after the one the server started in.
    command("w3", { command: "hold-long", ms: 3 * leaseTtl });
    await (workers.get("w3") as Running).process.next((line) => line.event === "enter" && line.long === true, 10_000);
    await sleep(delayToMillisecond(850));
    proxy.cutOff("keep");
    fleet.cutOff("drop");
    const restartedWhileCut = await restart(0);
    await sleep(delayToMillisecond(150));
    fleet.restore();
    await sleep(restartedWhileCut.end + 1.5 * leaseTtl - now());
    proxy.restore();
    faults.push({ kind: "restart-cut", ...restartedWhileCut, target: "w3", targetEnd: now() });
    log("Redis restarted while w3 was cut off");
    await sleep(leaseTtl + 2_500);

    // Back at once, as under a supervisor: callers queued before it have no time to fail and ask again.
    faults.push({ kind: "restart", ...(await restart(0)) });
    log("Redis restarted");
    await sleep(leaseTtl + 3_000);

    const pausedAt = now();
    server.pause();
    await sleep(1.5 * leaseTtl);
    server.resume();
    faults.push({ kind: "redis-pause", at: pausedAt, end: now() });
    log("Redis paused and resumed");
    await sleep(2_500);

    const flushedAt = now();
    await redis.flushall();
    // Until its reply, FLUSHALL may or may not have run: the rate check treats that span as the loss.
    faults.push({ kind: "flush", at: flushedAt, end: now() });
    log("FLUSHALL");
    await sleep(3_000);

    const endedAt = now();
    const alive = [...workers.values()].filter((worker) => worker.record.killedAt === undefined);
    for (const worker of alive) worker.process.send({ command: "finish" } satisfies WorkerCommand);
    await Promise.all(alive.map((worker) => nextLine(worker.record.label, "done", 10_000, 0).catch(() => undefined)));
    // They leave by themselves (close, disconnect); whatever is still running after this is killed below.
    await Promise.race([Promise.all(alive.map((worker) => worker.process.exited)), sleep(3_000)]);
    log("finished");
    return {
      config: faultRunConfig,
      startedAt,
      endedAt,
      guard,
      workers: [...workers.values()].map(({ process, record }) => ({
        ...record,
        lines: process.lines as unknown as WorkerEvent[],
      })),
      writes: resource.writes,
      faults,
      stalls: stalls.found,
    };
  } finally {
    stalls.stop();
    for (const { process } of workers.values()) {
      if (!process.running) continue;
      process.kill("SIGCONT");
      process.kill("SIGKILL");
    }
    await Promise.all([...workers.values()].map(({ process }) => process.exited));
    await Promise.all([proxy.stop(), fleet.stop()]);
    redis.disconnect();
    await server.stop();
  }
}
