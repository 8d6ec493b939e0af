/**
 * A child process for the multi-process tests, run with tsx: `tsx test/redis/worker.ts '<json>'`.
 * It talks to the test's redis-server through sluice/redis (from source) and reports on stdout, one
 * JSON object per line, so the parent can check the invariants across processes.
 *
 * Modes:
 * - `loop`: `callers` callers acquire, hold `holdMs`, release, until `durationMs` passed; each grant is
 *   reported as `{grant: {token, start, end, lostAt?}}` with times on the system's
 *   monotonic clock (processClock: comparable between processes on one machine, never stepped). Errors are counted by name and the caller
 *   retries after a short pause, so a Redis restart shows up as errors, never as a hang.
 * - `keyed`: callers take from a RedisKeyedRateLimiter under random `keys`; prints every admission's key
 *   and Redis time as it happens, then the scripts it ran and its errors by name.
 * - `hold`: takes `weight` permits, prints `{held: token}` and waits to be killed.
 * - `frozen`: takes a permit (`run: true`: inside `run()`), prints `{held}`, and `holdMs` later — an
 *   overdue timer once the parent thaws a SIGSTOP — prints what it then knows of its lease
 *   (`{checked: {leaseLost, aborted}}`), then how `release()` (or `run()`) ended: `{released}`.
 * - `queue`: `callers` callers acquire with no timeout; prints `{queued}` once they are in Redis' queue,
 *   and each grant as `{granted: {token, at, leaseLost, aborted}}` the moment it arrives, holding it
 *   `holdMs`.
 */
import { Redis } from "ioredis";
import { RedisKeyedRateLimiter, type RedisPermit, RedisRateLimiter, RedisSemaphore } from "../../src/redis/index.js";
import { processClock } from "../../src/threads/process-clock.js";

interface Config {
  mode: "loop" | "hold" | "rate" | "keyed" | "frozen" | "queue";
  run?: boolean;
  limits?: { limit: number; interval: number; burst?: number }[];
  /** `keyed`: the levels above the keys (a level with `byTenant` is keyed by the part before "/"). */
  levels?: { name: string; limits: { limit: number; interval: number; burst?: number }[]; byTenant?: boolean }[];
  /** `keyed`: the keys callers pick from at random. */
  keys?: string[];
  port: number;
  name: string;
  capacity: number;
  leaseTtl: number;
  callers?: number;
  holdMs?: number;
  durationMs?: number;
  weight?: number;
  commandTimeout?: number;
}

const config = JSON.parse(process.argv[2] as string) as Config;
const redis = new Redis(config.port, "127.0.0.1", { maxRetriesPerRequest: 1 });
redis.on("error", () => undefined);
const semaphore = new RedisSemaphore(redis, {
  name: config.name,
  capacity: config.capacity,
  leaseTtl: config.leaseTtl,
  commandTimeout: config.commandTimeout ?? 1_000,
});
const clock = processClock.now;
const report = (line: unknown) => process.stdout.write(`${JSON.stringify(line)}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function loop(): Promise<void> {
  const deadline = clock() + (config.durationMs ?? 1_000);
  const errors: Record<string, number> = {};
  let grants = 0;
  const caller = async () => {
    while (clock() < deadline) {
      try {
        const permit = await semaphore.acquire({ timeout: Math.max(1, deadline - clock()) });
        const start = clock();
        let lostAt: number | undefined;
        permit.signal.addEventListener("abort", () => (lostAt = clock()), { once: true });
        await sleep(config.holdMs ?? 1);
        const end = clock();
        // Read at the end of the work, as a careful holder would before its write: true after a stall past the lease.
        const lostByEnd = permit.leaseLost;
        grants++;
        report({ grant: { token: permit.fencingToken, slots: permit.fencingSlots, start, end, lostAt, lostByEnd } });
        await permit.release();
      } catch (error) {
        const name = (error as Error).name ?? "Error";
        errors[name] = (errors[name] ?? 0) + 1;
        if (name !== "TimeoutError") await sleep(50);
      }
    }
  };
  // The longest event-loop stall in the run, by a 10 ms tick that comes late: a lease lost without a fault
  // injected needs one at least as long as the lease.
  let longestStallMs = 0;
  let tick = performance.now();
  const stalls = setInterval(() => {
    const now = performance.now();
    longestStallMs = Math.max(longestStallMs, Math.round(now - tick - 10));
    tick = now;
  }, 10);
  await Promise.all(Array.from({ length: config.callers ?? 1 }, caller));
  clearInterval(stalls);
  report({ done: { grants, errors, longestStallMs } });
}

/** `rate`: callers take from a shared RedisRateLimiter until the deadline; reports Redis admission times. */
async function rate(): Promise<void> {
  const limiter = new RedisRateLimiter(redis, { name: config.name, limits: config.limits ?? [] });
  const deadline = clock() + (config.durationMs ?? 1_000);
  const admitted: number[] = [];
  const caller = async () => {
    while (clock() < deadline) {
      const permit = await limiter.acquire({ timeout: Math.max(1, deadline - clock()) }).catch(() => undefined);
      if (permit === undefined) continue;
      admitted.push(permit.admittedAt as number);
      permit.release();
    }
  };
  await Promise.all(Array.from({ length: config.callers ?? 1 }, caller));
  report({ admitted });
}

/**
 * `keyed`: callers take from a shared RedisKeyedRateLimiter under random keys until the deadline. Each
 * admission is printed as it happens (`{admission: {key, at}}`, `at` in Redis time), so a process killed
 * mid-run leaves what it was admitted; a failed call (Redis restarting) is counted by name and asked
 * again after 50 ms. The last line, `{keyed: {...}}`, says how long the slowest call took (ms, the
 * process's own clock) and how late after the deadline the last caller finished.
 */
async function keyed(): Promise<void> {
  const limiter = new RedisKeyedRateLimiter(redis, {
    name: config.name,
    limits: config.limits ?? [],
    levels: (config.levels ?? []).map(({ name, limits, byTenant }) => ({
      name,
      limits,
      key: byTenant ? (key: string) => key.split("/")[0] as string : undefined,
    })),
    commandTimeout: config.commandTimeout ?? 1_000,
  });
  const keys = config.keys ?? ["only"];
  const deadline = clock() + (config.durationMs ?? 1_000);
  const errors: Record<string, number> = {};
  let admitted = 0;
  let slowestCallMs = 0;
  const caller = async () => {
    while (clock() < deadline) {
      const key = keys[Math.floor(Math.random() * keys.length)] as string;
      const asked = clock();
      try {
        const permit = await limiter.acquire(key, { timeout: Math.max(1, deadline - clock()) });
        admitted++;
        report({ admission: { key, at: permit.admittedAt } });
        permit.release();
      } catch (error) {
        const name = (error as Error).name ?? "Error";
        errors[name] = (errors[name] ?? 0) + 1;
        if (name !== "TimeoutError") await sleep(50);
      }
      slowestCallMs = Math.max(slowestCallMs, clock() - asked);
    }
  };
  report({ ready: true });
  await Promise.all(Array.from({ length: config.callers ?? 1 }, caller));
  const lateMs = clock() - deadline;
  report({ keyed: { admitted, scripts: limiter.statistics().scripts, errors, slowestCallMs, lateMs } });
}

async function hold(): Promise<void> {
  const permit = await semaphore.acquire({ weight: config.weight ?? 1 });
  report({ held: permit.fencingToken });
  await new Promise(() => undefined);
}

/** How a release or a run ended: "resolved", or the error's name. */
function outcome(settling: Promise<unknown>): Promise<string> {
  return settling.then(
    () => "resolved",
    (error: unknown) => (error as Error).name ?? "Error",
  );
}

async function frozen(): Promise<void> {
  const work = async (permit: RedisPermit) => {
    report({ held: { token: permit.fencingToken, slots: permit.fencingSlots } });
    await sleep(config.holdMs ?? 300);
    // The first look after the thaw: the timer above is overdue, and may fire before any of sluice's.
    report({ checked: { leaseLost: permit.leaseLost, aborted: permit.signal.aborted } });
  };
  if (config.run) {
    report({ released: await outcome(semaphore.run((_signal, permit) => work(permit))) });
    return;
  }
  const permit = await semaphore.acquire({ weight: config.weight ?? 1 });
  await work(permit);
  report({ released: await outcome(permit.release()) });
}

async function queue(): Promise<void> {
  const caller = async () => {
    const permit = await semaphore.acquire();
    report({
      granted: { token: permit.fencingToken, at: clock(), leaseLost: permit.leaseLost, aborted: permit.signal.aborted },
    });
    await sleep(config.holdMs ?? 1);
    await permit.release().catch(() => undefined);
  };
  const callers = Array.from({ length: config.callers ?? 1 }, caller);
  await sleep(200);
  report({ queued: config.callers ?? 1 });
  await Promise.all(callers);
}

try {
  if (config.mode === "loop") await loop();
  else if (config.mode === "rate") await rate();
  else if (config.mode === "keyed") await keyed();
  else if (config.mode === "frozen") await frozen();
  else if (config.mode === "queue") await queue();
  else await hold();
  await semaphore.close();
  redis.disconnect();
} catch (error) {
  report({ fatal: String(error) });
  process.exitCode = 1;
  redis.disconnect();
}
