/**
 * A worker process of the fault suite (test/redis/faults.test.ts), run under tsx by `Worker` with an
 * IPC channel: `fault-worker.ts '<json config>'`.
 *
 * Callers loop on one RedisSemaphore (acquire or run, weight 1 or more) and a RedisRateLimiter. Each
 * permit's work is a few steps: a timer (setTimeout, so a freeze makes it fire overdue after SIGCONT,
 * as in the issue), then a synchronous check of `permit.leaseLost`, then a write to the fenced
 * resource in the parent (over IPC, answered before the next step). The worker writes whatever the
 * check said — the check is logged and the resource must refuse a stale write on its own — so both
 * halves of the promise are measured: holders told in time, and fencing that holds when they are not.
 *
 * Every event is one JSON line on stdout (see `WorkerEvent`); on Linux a write to a pipe is synchronous,
 * so a line printed right before a self-inflicted SIGKILL or SIGSTOP reaches the parent.
 *
 * The parent's commands (IPC), each acted on at the exact moment it names, by the worker itself:
 * `freeze-holding` (SIGSTOP right after a grant, with the work's timer pending; the parent sends SIGCONT),
 * `die-holding` (SIGKILL right after a grant), `die-queued` (SIGKILL while holding nothing and with two
 * callers queued in Redis), `hold-long` (the next permit is worked on for `ms`), `finish`.
 *
 * Written against the API after issue 14's fixes, with fallbacks so the same worker measures the code
 * before them: without `permit.fencingSlots` the write carries no slots (the resource then applies the
 * old one-global-slot rule); until a permit shows the new API, `run` callers use acquire and release,
 * since the old `run` hands its function no permit (and so no fencing token).
 */
import { Redis } from "ioredis";
import { RedisKeyedSemaphore, type RedisPermit, RedisRateLimiter, RedisSemaphore } from "../../src/redis/index.js";
import type { WorkerEvent } from "./fault-checks.js";

export interface FaultWorkerConfig {
  label: string;
  /** The port of Redis, or of the TCP proxy in front of it. */
  port: number;
  name: string;
  capacity: number;
  leaseTtl: number;
  commandTimeout: number;
  rate: { name: string; limit: number; interval: number; burst: number };
  /** One semaphore caller each. */
  callers: { kind: "acquire" | "run"; weight: number }[];
  rateCallers: number;
  /** Steps of work under each permit, each `stepMs` long and ending with a check and a write. */
  steps: number;
  stepMs: number;
  acquireTimeout: number;
  /**
   * Set for the keyed run (test/redis/keyed-semaphore-faults.test.ts): the callers above use `key` of a
   * RedisKeyedSemaphore named `name` (capacity per key `capacity`), which every check is about, while
   * `otherCallers` more callers keep `otherKeys` other keys of it busy (not logged), so the key under
   * test shares its process's lease, notices and heartbeats with many keys in use.
   */
  keyed?: { key: string; otherKeys: number; otherCallers: number };
}

/** What the parent sends. */
export type WorkerCommand =
  | { command: "freeze-holding" | "die-holding" | "die-queued" | "finish" }
  | { command: "hold-long"; ms: number }
  | { ack: number; accepted: boolean };

/** What the worker sends over IPC: a write for the fenced resource, answered by an `ack`. */
export interface WriteMessage {
  write: { id: number; call: number; token: number; slots?: number[]; believedValid: boolean };
}

type PermitWithSlots = RedisPermit & { readonly fencingSlots?: readonly number[] };

const config = JSON.parse(process.argv[2] as string) as FaultWorkerConfig;
// Reconnect every 50 ms rather than ioredis' growing back-off, so recovery times measure the library.
const redis = new Redis(config.port, "127.0.0.1", { maxRetriesPerRequest: 1, retryStrategy: () => 50 });
redis.on("error", () => undefined);
/** What the callers use: a RedisSemaphore, or one key of a RedisKeyedSemaphore. */
interface SemaphoreUnderTest {
  readonly client: string | undefined;
  acquire: RedisSemaphore["acquire"];
  run: RedisSemaphore["run"];
  close(): Promise<void>;
}
const keyed =
  config.keyed === undefined
    ? undefined
    : new RedisKeyedSemaphore(redis, {
        name: config.name,
        capacityPerKey: config.capacity,
        leaseTtl: config.leaseTtl,
        commandTimeout: config.commandTimeout,
      });
const semaphore: SemaphoreUnderTest =
  keyed === undefined
    ? new RedisSemaphore(redis, {
        name: config.name,
        capacity: config.capacity,
        leaseTtl: config.leaseTtl,
        commandTimeout: config.commandTimeout,
      })
    : {
        client: keyed.client,
        acquire: (options) => keyed.acquire(config.keyed?.key as string, options),
        run: (fn, options) => keyed.run(config.keyed?.key as string, fn, options),
        close: () => keyed.close(),
      };
const limiter = new RedisRateLimiter(redis, {
  name: config.rate.name,
  limits: [{ limit: config.rate.limit, interval: config.rate.interval, burst: config.rate.burst }],
  commandTimeout: config.commandTimeout,
});

const now = () => performance.timeOrigin + performance.now();
const print = (line: WorkerEvent) => process.stdout.write(`${JSON.stringify(line)}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const nameOf = (error: unknown) => (error instanceof Error ? error.name : String(error));

const finishing = new AbortController();
let armed: "freeze-holding" | "die-holding" | "die-queued" | undefined;
let longHoldMs: number | undefined;
/** Whether permits carry the API after the fixes (`fencingSlots`): `run` hands its function the permit. */
let newApi = false;
let lastCall = 0;
/** Promises started and not settled: acquires, releases, runs, rate acquires. */
let pending = 0;
let timeouts = 0;
/** Weight granted and not yet given back (release settled). */
let holding = 0;
/** Semaphore callers waiting, by call, with the time they asked. */
const queued = new Map<number, number>();

let lastWrite = 0;
const acks = new Map<number, (accepted: boolean) => void>();

/** A write to the fenced resource in the parent; resolves when it answered. */
function write(call: number, permit: PermitWithSlots, believedValid: boolean): Promise<boolean> {
  const id = ++lastWrite;
  const message: WriteMessage = {
    write: { id, call, token: permit.fencingToken as number, believedValid },
  };
  if (permit.fencingSlots !== undefined) message.write.slots = [...permit.fencingSlots];
  return new Promise((resolve) => {
    acks.set(id, resolve);
    process.send?.(message);
  });
}

process.on("message", (message: WorkerCommand) => {
  if ("ack" in message) {
    acks.get(message.ack)?.(message.accepted);
    acks.delete(message.ack);
  } else if (message.command === "hold-long") longHoldMs = message.ms;
  else if (message.command === "finish") void finish();
  else armed = message.command;
});

/** The work under a permit: `steps` times a timer, a check, a write. */
async function work(call: number, permit: PermitWithSlots, steps: number): Promise<void> {
  for (let step = 0; step < steps; step++) {
    await sleep(config.stepMs);
    const valid = !permit.leaseLost;
    print({ event: "check", at: now(), call, valid });
    await write(call, permit, valid);
  }
  print({ event: "release", at: now(), call });
}

/** Reports a grant and starts its work; resolves when the work is done. */
function enter(call: number, permit: PermitWithSlots, weight: number): Promise<void> {
  queued.delete(call);
  holding += weight;
  newApi ||= permit.fencingSlots !== undefined;
  const steps = longHoldMs === undefined ? config.steps : Math.ceil(longHoldMs / config.stepMs);
  const line: WorkerEvent = {
    event: "enter",
    at: now(),
    call,
    token: permit.fencingToken as number,
    weight,
    lost: permit.leaseLost,
  };
  if (permit.fencingSlots !== undefined) line.slots = [...permit.fencingSlots];
  if (longHoldMs !== undefined) line.long = true;
  longHoldMs = undefined;
  print(line);
  if (armed === "die-holding") die();
  const working = work(call, permit, steps);
  // The work's first timer is pending now: a freeze here makes it fire overdue after SIGCONT.
  if (armed === "freeze-holding") freeze();
  return working;
}

function freeze(): void {
  armed = undefined;
  print({ event: "freezing", at: now() });
  process.kill(process.pid, "SIGSTOP");
}

function die(): never {
  print({ event: "dying", at: now(), holding, queued: queued.size });
  process.kill(process.pid, "SIGKILL");
  throw new Error("unreachable: SIGKILL");
}

/** `die-queued`: dies once it holds nothing and two callers have been queued long enough to be in Redis. */
setInterval(() => {
  if (armed !== "die-queued" || holding > 0) return;
  const since = now() - 20;
  let inRedis = 0;
  for (const asked of queued.values()) if (asked < since) inRedis++;
  if (inRedis >= 2) die();
}, 5).unref();

function refused(call: number, error: unknown): Promise<unknown> | undefined {
  queued.delete(call);
  const name = nameOf(error);
  if (name === "TimeoutError") timeouts++;
  print({ event: "refused", at: now(), call, error: name });
  // Redis unreachable or the like: pause before asking again rather than spinning.
  return name === "TimeoutError" || finishing.signal.aborted ? undefined : sleep(50);
}

async function acquireOnce(call: number, weight: number): Promise<void> {
  let permit: PermitWithSlots;
  pending++;
  try {
    permit = await semaphore.acquire({ weight, timeout: config.acquireTimeout, signal: finishing.signal });
    pending--;
  } catch (error) {
    pending--;
    await refused(call, error);
    return;
  }
  await enter(call, permit, weight);
  pending++;
  const outcome = await permit.release().then(() => "resolved", nameOf);
  pending--;
  holding -= weight;
  print({ event: "exit", at: now(), call, outcome });
}

async function runOnce(call: number, weight: number): Promise<void> {
  let admitted = false;
  pending++;
  const outcome = await semaphore
    .run(
      (_signal: AbortSignal, permit?: PermitWithSlots) => {
        admitted = true;
        return enter(call, permit as PermitWithSlots, weight);
      },
      { weight, timeout: config.acquireTimeout, signal: finishing.signal },
    )
    .then(
      () => "resolved",
      (error: unknown) => (admitted ? nameOf(error) : error),
    );
  pending--;
  if (typeof outcome !== "string") {
    await refused(call, outcome);
    return;
  }
  holding -= weight;
  print({ event: "exit", at: now(), call, outcome });
}

async function caller(kind: "acquire" | "run", weight: number): Promise<void> {
  while (!finishing.signal.aborted) {
    const call = ++lastCall;
    print({ event: "acquire", at: now(), call, weight, kind: kind === "run" && newApi ? "run" : "acquire" });
    queued.set(call, now());
    if (kind === "run" && newApi) await runOnce(call, weight);
    else await acquireOnce(call, weight);
  }
}

async function rateCaller(): Promise<void> {
  while (!finishing.signal.aborted) {
    pending++;
    try {
      const permit = await limiter.acquire({ timeout: config.acquireTimeout, signal: finishing.signal });
      print({ event: "rate", at: now(), admittedAt: permit.admittedAt as number });
      await permit.release();
    } catch (error) {
      // A RedisUnavailableError here may be followed by a late admission that the limiter refunds.
      if (nameOf(error) !== "TimeoutError" && !finishing.signal.aborted) {
        print({ event: "rate-refused", at: now(), error: nameOf(error) });
        await sleep(50);
      }
    } finally {
      pending--;
    }
  }
}

/** The keyed run's load on other keys: acquire a random one, hold it a step, release; nothing logged. */
async function otherKeysCaller(keys: number): Promise<void> {
  while (!finishing.signal.aborted) {
    const key = `other-${Math.floor(Math.random() * keys)}`;
    try {
      const permit = await (keyed as RedisKeyedSemaphore).acquire(key, {
        timeout: config.acquireTimeout,
        signal: finishing.signal,
      });
      await sleep(config.stepMs);
      await permit.release().catch(() => undefined);
    } catch {
      if (!finishing.signal.aborted) await sleep(50);
    }
  }
}

const callers = [
  ...config.callers.map(({ kind, weight }) => caller(kind, weight)),
  ...Array.from({ length: config.rateCallers }, rateCaller),
  ...Array.from({ length: config.keyed?.otherCallers ?? 0 }, () => otherKeysCaller(config.keyed?.otherKeys as number)),
];
print({ event: "ready", at: now(), client: semaphore.client });

/** Stops the callers (waits still pending end with an AbortError), reports what never settled, leaves. */
async function finish(): Promise<void> {
  finishing.abort();
  const bound = config.steps * config.stepMs + 2 * config.commandTimeout + 2_000;
  await Promise.race([Promise.all(callers), sleep(bound)]);
  print({ event: "done", at: now(), outstanding: pending, timeouts });
  await Promise.all([semaphore.close(), limiter.close()]).catch(() => undefined);
  redis.disconnect();
  process.disconnect?.();
}
