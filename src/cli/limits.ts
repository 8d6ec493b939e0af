/**
 * From limit options (`--concurrency`, `--rate`, `--min-interval`, `--redis`/`--key`) to the limiter
 * that admits each attempt. Every kind of limiter is used through the same `Limiter` interface, so the
 * job loop does not know whether the limits live in this process or in Redis.
 */
import type { Limiter, Permit } from "../core/limiter.js";
import { type RateAcquireOptions, RateLimiter } from "../core/rate-limiter.js";
import { Semaphore } from "../core/semaphore.js";
import { RedisRateLimiter } from "../redis/rate-limiter.js";
import { RedisSemaphore } from "../redis/semaphore.js";
import type { OptionSpec, ParsedCommandLine } from "./command-line.js";
import { durationOption, integerOption, listOption, stringOption, UsageError } from "./command-line.js";
import type { Admission } from "./job-runner.js";
import type { LimitsDescription } from "./progress.js";
import { parseRate, type RateSpec, REQUESTS } from "./rates.js";
import { connectRedis } from "./redis-connection.js";

/** The limits a command line asked for. */
export interface LimitOptions {
  /** Jobs at once: shared through Redis when given explicitly with `--redis`, else this process's cap. */
  readonly concurrency: number;
  /** Whether `--concurrency` was given (with `--redis`, only then is concurrency shared). */
  readonly concurrencyGiven: boolean;
  readonly rates: readonly RateSpec[];
  readonly minInterval: number | undefined;
  /**
   * How `--rate` counts. `sliding-window` (the default here): at most LIMIT in any window of INTERVAL,
   * literally what `10/s` says, and always accepted by a provider's token bucket of the same size.
   * `token-bucket`: continuous refill, which lets a full bucket's burst through at the start.
   */
  readonly algorithm: "sliding-window" | "token-bucket";
  readonly redis: { readonly url: string; readonly key: string; readonly lease: number } | undefined;
}

export const LIMIT_OPTION_SPECS: readonly OptionSpec[] = [
  {
    name: "concurrency",
    short: "c",
    type: "string",
    value: "N",
    description: "jobs running at once; `unlimited` for no cap",
  },
  {
    name: "rate",
    short: "r",
    type: "string",
    multiple: true,
    value: "RATE",
    description:
      "at most LIMIT starts per INTERVAL, e.g. 10/s, 600/min, 100/5s; with :UNIT (40000/min:tokens) it counts that unit of each job's cost (see --cost-field); all rates hold together",
  },
  {
    name: "min-interval",
    type: "string",
    value: "DURATION",
    description: "at least this long between two starts, e.g. 100ms",
  },
  {
    name: "redis",
    type: "string",
    value: "URL",
    description:
      "share the limits through Redis with every process using the same --key (redis://host:port); needs the ioredis package",
  },
  { name: "key", type: "string", value: "NAME", description: "the name of the shared limits in Redis (with --redis)" },
  {
    name: "lease",
    type: "string",
    value: "DURATION",
    description:
      "with --redis: how long the permits of a process that died stay taken (renewed every third of it while alive); a freshly started Redis also grants nothing for one lease",
    default: "10s",
  },
  {
    name: "algorithm",
    type: "string",
    value: "NAME",
    description:
      "how --rate counts: sliding-window (at most LIMIT in any INTERVAL, exactly) or token-bucket (continuous refill; a full bucket may burst: at most LIMIT more in any INTERVAL)",
    default: "sliding-window; token-bucket with --redis",
  },
];

/** The option specs with one option's default (as help shows it) set, for commands whose defaults differ. */
export function withDefault(specs: readonly OptionSpec[], name: string, value: string): OptionSpec[] {
  return specs.map((spec) => (spec.name === name ? { ...spec, default: value } : spec));
}

/** Reads and checks the limit options. */
export function readLimitOptions(
  parsed: ParsedCommandLine,
  command: string,
  defaults: { concurrency: number },
): LimitOptions {
  const concurrency =
    integerOption(parsed, "concurrency", command, { min: 1, max: Number.POSITIVE_INFINITY }) ?? defaults.concurrency;
  const rates = listOption(parsed, "rate").map((text) => {
    try {
      return parseRate(text);
    } catch (error) {
      throw new UsageError(`--rate: ${(error as Error).message}`, command);
    }
  });
  const minInterval = durationOption(parsed, "min-interval", command);
  const url = stringOption(parsed, "redis");
  const key = stringOption(parsed, "key");
  if (url !== undefined && key === undefined) {
    throw new UsageError("--redis needs --key NAME: the name under which the limits are shared", command);
  }
  if (key !== undefined && url === undefined) {
    throw new UsageError("--key names limits shared through Redis; give --redis URL too", command);
  }
  if (url !== undefined && !/^rediss?:\/\//.test(url)) {
    throw new UsageError(`--redis must be a redis:// or rediss:// URL; got ${JSON.stringify(url)}`, command);
  }
  const algorithmGiven = stringOption(parsed, "algorithm");
  if (algorithmGiven !== undefined && algorithmGiven !== "sliding-window" && algorithmGiven !== "token-bucket") {
    throw new UsageError(
      `--algorithm must be sliding-window or token-bucket; got ${JSON.stringify(algorithmGiven)}`,
      command,
    );
  }
  if (url !== undefined && algorithmGiven === "sliding-window") {
    throw new UsageError(
      "--redis shares rates as token buckets (GCRA); --algorithm sliding-window works in one process only",
      command,
    );
  }
  const algorithm = algorithmGiven ?? (url === undefined ? "sliding-window" : "token-bucket");
  const concurrencyGiven = stringOption(parsed, "concurrency") !== undefined;
  if (url !== undefined && !concurrencyGiven && rates.length === 0 && minInterval === undefined) {
    throw new UsageError(
      "--redis shares limits, but none is given: add --concurrency N, --rate or --min-interval",
      command,
    );
  }
  return {
    concurrency,
    concurrencyGiven,
    rates,
    minInterval,
    algorithm,
    redis:
      url === undefined
        ? undefined
        : { url, key: key as string, lease: durationOption(parsed, "lease", command) ?? 10_000 },
  };
}

/** The units the rates count besides `requests`: what `--cost-field` may name. */
export function costUnits(options: LimitOptions): string[] {
  return [...new Set(options.rates.map((rate) => rate.unit).filter((unit) => unit !== REQUESTS))];
}

/** A limiter ready for the job loop. */
export interface BuiltLimits {
  /** The limiter itself, for what takes a `Limiter` (the HTTP wrapper). */
  readonly limiter: Limiter<RateAcquireOptions>;
  readonly admission: Admission;
  readonly description: LimitsDescription;
  /** Releases connections (Redis). */
  close(): Promise<void>;
}

/**
 * Builds the limiter for `options`: a `Semaphore` when only concurrency is limited (the cheapest
 * thing that does the job), a `RateLimiter` when rates or spacing are asked for.
 *
 * @throws Error when the options need something this build lacks, or Redis cannot be reached.
 */
export async function buildLimits(options: LimitOptions): Promise<BuiltLimits> {
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
    admission: { acquire: ({ cost, signal }) => limiter.acquire({ cost, signal }) },
    description,
    close: () => Promise.resolve(),
  };
}

/**
 * Limits shared through Redis under `--key`: a `RedisRateLimiter` for rates and spacing (with the
 * concurrency inside it when `--concurrency` was given), or a `RedisSemaphore` for concurrency alone.
 * Without `--concurrency`, the default cap stays local to this process, in front of the shared limits,
 * so one machine never runs more jobs than it has CPUs for.
 */
async function buildSharedLimits(
  options: LimitOptions,
  redis: { url: string; key: string; lease: number },
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
  const local = options.concurrencyGiven ? undefined : new Semaphore(options.concurrency, { name: "sluice (local)" });
  return {
    limiter: shared,
    admission: {
      acquire: async ({ cost, signal }) => {
        if (local === undefined) return shared.acquire({ cost, signal });
        const slot = await local.acquire({ signal });
        try {
          const permit = await shared.acquire({ cost, signal });
          return both(permit, slot);
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
    close: async () => {
      await shared.close().catch(() => undefined);
      await connection.close();
    },
  };
}

/** A permit that holds a shared permit and a local slot, and gives both back. */
function both(shared: Permit, local: Permit): Permit {
  const release = async () => {
    local.release();
    await shared.release();
  };
  return {
    weight: shared.weight,
    signal: shared.signal,
    release,
    [Symbol.dispose]: () => void release().catch(() => undefined),
    [Symbol.asyncDispose]: release,
  };
}
