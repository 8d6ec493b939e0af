/**
 * From the limit settings (`--concurrency`, `--rate`, `--min-interval`, `--redis`/`--key`) to the
 * limiter that admits each attempt. Every kind of limiter is used through the same `Limiter` interface, so the
 * job loop does not know whether the limits live in this process or in Redis.
 */
import { AdaptiveLimiter } from "../core/adaptive-limit.js";
import { FairLimiter } from "../core/fair-limiter.js";
import { KeyedRateLimiter } from "../core/keyed-rate-limiter.js";
import { KeyedSemaphore } from "../core/keyed-semaphore.js";
import type { Limiter, Permit } from "../core/limiter.js";
import { type RateAcquireOptions, type RateCost, RateLimiter, type RatePermit } from "../core/rate-limiter.js";
import { Semaphore } from "../core/semaphore.js";
import { inspectRedis } from "../redis/inspect.js";
import { RedisRateLimiter } from "../redis/rate-limiter.js";
import { RedisSemaphore } from "../redis/semaphore.js";
import type { Admission } from "./job-runner.js";
import { grantTimeOf } from "./observed-limiter.js";
import type { LimitsDescription } from "./progress.js";
import type { RateSpec } from "./rates.js";
import { formatDuration } from "./rates.js";
import { connectRedis, type RedisConnectionHandle } from "./redis-connection.js";
import type { KeySettings, LimitSettings, RedisSettings } from "./settings.js";

/** A limiter ready for the job loop. */
export interface BuiltLimits {
  /** The limiter itself, for what takes a `Limiter` (the HTTP wrapper). */
  readonly limiter: Limiter<RateAcquireOptions>;
  /** With `-c auto`: this process's adaptive concurrency, under `limiter` (see `admission`). */
  readonly window: AdaptiveLimiter | undefined;
  readonly admission: Admission;
  readonly description: LimitsDescription;
  /** The Redis the limits live in, if they are shared. */
  readonly redisUrl?: string;
  /** With `--key-field`: the field that keys each line, and how far ahead lines are read for turns. */
  readonly keys?: KeySettings;
  /** Releases connections (Redis). */
  close(): Promise<void>;
  /**
   * Why the limits admit nothing right now, if they can tell (a server's pause, a fresh Redis's
   * restart guard), for the progress line; `undefined` when they cannot.
   */
  whyWaiting(): Promise<string | undefined>;
  /**
   * Redis is gone: drops the connection at once, so that whatever still waits on it (a release, the
   * leave of `close`) fails now rather than after its retries. Nothing for limits in this process.
   */
  abandon(): void;
}

/**
 * Builds the limiter for `options`: a `Semaphore` when only concurrency is limited (the cheapest
 * thing that does the job), a `RateLimiter` when rates or spacing are asked for.
 *
 * @throws Error when the options need something this build lacks, or Redis cannot be reached.
 */
export async function buildLimits(options: LimitSettings): Promise<BuiltLimits> {
  const built = await buildFixedLimits(options);
  const adaptive = options.adaptive;
  if (adaptive === undefined) return built;
  // This process's share adapts under the limiter, which stays the ceiling (shared through Redis with
  // --redis): a job waits for the window first, so waiting here never holds a shared permit.
  const window = new AdaptiveLimiter({ min: adaptive.min, max: adaptive.max, name: "sluice (auto)" });
  return {
    ...built,
    window,
    description: {
      ...built.description,
      adaptive: { min: adaptive.min, max: adaptive.max, current: () => window.capacity },
    },
    admission: {
      acquire: async (request) => {
        const slot = await window.acquire({ signal: request.signal });
        try {
          return allOf([slot, await built.admission.acquire(request)]);
        } catch (error) {
          slot.ignore();
          slot.release();
          throw error;
        }
      },
    },
  };
}

/** The limits of `options` without `-c auto`'s window. */
async function buildFixedLimits(options: LimitSettings): Promise<BuiltLimits> {
  const description: LimitsDescription = {
    concurrency: options.concurrency,
    rates: options.rates,
    minInterval: options.minInterval,
    scope:
      options.redis === undefined
        ? "this process"
        : `Redis ${options.redis.url}, key ${JSON.stringify(options.redis.key)}`,
    algorithm: options.algorithm,
  };
  if (options.redis !== undefined) return buildSharedLimits(options, options.redis, description);
  if (options.keys !== undefined) return buildKeyedLimits(options, options.keys, description);
  let limiter: Limiter<RateAcquireOptions>;
  if (options.rates.length === 0 && options.minInterval === undefined) {
    limiter = new Semaphore(options.concurrency, { name: "sluice" });
  } else {
    limiter = new RateLimiter({
      name: "sluice",
      limits: options.rates.map((rate) => ({
        limit: rate.limit,
        interval: rate.interval,
        unit: rate.unit,
        algorithm: options.algorithm,
      })),
      concurrency: options.concurrency,
      ...(options.minInterval === undefined ? {} : { minInterval: options.minInterval }),
    });
  }
  return {
    limiter,
    window: undefined,
    admission: { acquire: ({ cost, signal }) => limiter.acquire({ cost, signal }) },
    description,
    close: () => Promise.resolve(),
    whyWaiting: () => Promise.resolve(pauseLeft(limiter)),
    abandon: () => {},
  };
}

/**
 * `--key-field`: each job waits, in this order, for
 * 1. its key's own concurrency (`--concurrency-per-key`, a `KeyedSemaphore`): waiting there holds
 *    nothing another key needs, so a busy key queues behind itself only;
 * 2. its key's turn at the shared concurrency (`--concurrency`, a `FairLimiter`): the keys that wait
 *    take turns (deficit round robin), so one key's 10,000 lines do not starve another's one;
 * 3. the rates, its key's own (`--rate-per-key`) and the shared ones (`--rate`, a level of the
 *    `KeyedRateLimiter` above every key), charged together in one step at the start: a rate is charged
 *    when the job starts, never earlier, so each holds at the start times as it does without keys.
 * A job holds every permit until it ends, and gives back what it took if a later step refuses it.
 * Waiting in step 3 holds a shared slot (a key that exhausted its own rate keeps the slots its jobs took
 * meanwhile), but the next slot freed goes to the next key in turn.
 */
function buildKeyedLimits(options: LimitSettings, keys: KeySettings, description: LimitsDescription): BuiltLimits {
  const perKey = keys.concurrency === undefined ? undefined : new KeyedSemaphore(keys.concurrency, { name: "sluice" });
  const turns = new FairLimiter(options.concurrency, { name: "sluice" });
  const asLimits = (rates: readonly RateSpec[]) =>
    rates.map((rate) => ({
      limit: rate.limit,
      interval: rate.interval,
      unit: rate.unit,
      algorithm: options.algorithm,
    }));
  const rates =
    keys.rates.length === 0 && options.rates.length === 0
      ? undefined
      : new KeyedRateLimiter({
          name: "sluice",
          limits: asLimits(keys.rates),
          levels: options.rates.length === 0 ? [] : [{ name: "all keys", limits: asLimits(options.rates) }],
        });
  const acquire: BuiltLimits["admission"]["acquire"] = async ({ cost, signal, key }) => {
    if (key === undefined) throw new TypeError("with --key-field, every job has a key");
    const held: Permit[] = [];
    try {
      if (perKey !== undefined) held.push(await perKey.acquire(key, { signal }));
      held.push(await turns.acquire(key, { signal }));
      if (rates !== undefined) held.push(await rates.acquire(key, { cost, signal }));
    } catch (error) {
      for (const permit of held.reverse()) permit.release();
      throw error;
    }
    // The key goes with the permit, for the statistics' check of each key's rates.
    return Object.assign(allOf(held), { key });
  };
  const perKeyText = [
    ...keys.rates.map((rate) => rate.text),
    ...(keys.concurrency === undefined ? [] : [`${keys.concurrency} at once`]),
  ];
  return {
    keys,
    limiter: keyedOnly(),
    window: undefined,
    admission: { acquire },
    description: {
      ...description,
      ratesPerKey: keys.rates,
      scope: `${description.scope}; per key of field ${JSON.stringify(keys.field)}${perKeyText.length === 0 ? "" : `: ${perKeyText.join(", ")}`}; fair turns between keys`,
    },
    close: () => Promise.resolve(),
    whyWaiting: () => Promise.resolve(undefined),
    abandon: () => {},
  };
}

/** The `limiter` of keyed limits, which admit a job only with its key: through `admission` alone. */
function keyedOnly(): Limiter<RateAcquireOptions> {
  const refuse = () => Promise.reject(new TypeError("limits per key (--key-field) are acquired with a key"));
  return { acquire: refuse, run: refuse };
}

/**
 * Limits shared through Redis under `--key`: a `RedisRateLimiter` for rates and spacing (with the
 * concurrency inside it when `--concurrency` was given), or a `RedisSemaphore` for concurrency alone.
 * Without `--concurrency`, the default cap stays local to this process, in front of the shared limits,
 * so one machine never runs more jobs than it has CPUs for.
 */
async function buildSharedLimits(
  options: LimitSettings,
  redis: RedisSettings,
  description: LimitsDescription,
): Promise<BuiltLimits> {
  const connection = await connectRedis(redis.url);
  let shared: Limiter<RateAcquireOptions> & { close(): Promise<void> };
  try {
    if (options.rates.length === 0 && options.minInterval === undefined) {
      shared = new RedisSemaphore(connection.client, {
        name: redis.key,
        capacity: options.concurrency,
        leaseTtl: redis.lease,
      });
    } else {
      shared = new RedisRateLimiter(connection.client, {
        name: redis.key,
        limits: options.rates.map((rate) => ({ limit: rate.limit, interval: rate.interval, unit: rate.unit })),
        ...(options.minInterval === undefined ? {} : { minInterval: options.minInterval }),
        ...(options.concurrencyGiven ? { concurrency: options.concurrency, leaseTtl: redis.lease } : {}),
      });
    }
  } catch (error) {
    await connection.close();
    throw error;
  }
  let abandoned: Promise<void> | undefined;
  const local = options.concurrencyGiven ? undefined : new Semaphore(options.concurrency, { name: "sluice (local)" });
  return {
    limiter: shared,
    window: undefined,
    admission: {
      acquire: async ({ cost, signal }) => {
        if (local === undefined) return shared.acquire({ cost, signal });
        const slot = await local.acquire({ signal });
        try {
          const permit = await shared.acquire({ cost, signal });
          return allOf([slot, permit]);
        } catch (error) {
          slot.release();
          throw error;
        }
      },
    },
    description: {
      ...description,
      scope: `${description.scope}${local === undefined ? "" : ` (and at most ${options.concurrency} at once in this process)`}`,
    },
    redisUrl: redis.url,
    close: async () => {
      if (abandoned === undefined) await shared.close().catch(() => undefined);
      await connection.close();
    },
    whyWaiting: () => restartGuardLeft(connection, redis),
    abandon: () => {
      if (abandoned !== undefined) return;
      connection.abandon();
      // Closing rejects the callers still waiting, also those whose request to Redis is in flight and
      // would otherwise wait out its timeout. Its goodbye to Redis cannot be heard, and is not awaited:
      // our leases end on their own.
      abandoned = shared.close().catch(() => undefined);
    },
  };
}

/** How long a server's pause (429, Retry-After) still holds every start, as the progress line says it. */
function pauseLeft(limiter: Limiter<RateAcquireOptions>): string | undefined {
  const until = limiter instanceof RateLimiter ? limiter.pausedUntil : undefined;
  if (until === undefined) return undefined;
  return `the server asked for a pause (Retry-After): ${formatDuration(until - performance.now())} left`;
}

/**
 * How long the restart guard of a Redis that started less than one lease ago still grants nothing: no
 * permit is handed out while a holder from before a restart may still believe it holds one. Without
 * this, a fresh Redis stalls the run for a lease with no word said.
 */
async function restartGuardLeft(connection: RedisConnectionHandle, redis: RedisSettings): Promise<string | undefined> {
  const snapshots = await inspectRedis(connection.client, { key: redis.key, timeout: 1000 }).catch(() => []);
  const guard = Math.max(
    0,
    ...snapshots.map((snapshot) => (snapshot.kind === "semaphore" ? snapshot.guardRemaining : 0)),
  );
  if (guard <= 0) return undefined;
  return `Redis started less than a --lease (${formatDuration(redis.lease)}) ago; its restart guard grants nothing for ${formatDuration(guard)} more`;
}

/**
 * A permit that holds every permit of `permits` (a local slot, then what was acquired holding it) and
 * gives them all back in the order they were taken — each, even if one before it fails to — and says what
 * the last one says: when it was granted (the rates, which charge at the grant) and how to settle a cost.
 */
function allOf(permits: readonly Permit[]): Permit {
  const last = permits[permits.length - 1] as Permit;
  const release = async () => {
    let failure: { error: unknown } | undefined;
    for (const permit of permits) {
      try {
        await permit.release();
      } catch (error) {
        failure ??= { error };
      }
    }
    if (failure !== undefined) throw failure.error;
  };
  const grantedAt = grantTimeOf(last);
  return {
    weight: last.weight,
    signal: last.signal,
    release,
    [Symbol.dispose]: () => void release().catch(() => undefined),
    [Symbol.asyncDispose]: release,
    ...(grantedAt === undefined ? {} : { grantedAt }),
    // The rates' permit settles an estimated cost (sluice fetch: tokens, from the response's usage).
    ...(typeof (last as Partial<RatePermit>).settle === "function"
      ? { settle: (actual: RateCost) => (last as RatePermit).settle(actual) }
      : {}),
  } as Permit;
}
