/**
 * RedisKeyedRateLimiter: a rate limit per key (per user, per API key) under levels shared by many keys
 * (a tenant's, a global one), across processes, in one script for any key: no object, subscription or
 * connection per key in the client, and the key's state in Redis expires once it has refilled.
 */
import { checkOptionNames, optionNames } from "../core/arguments.js";
import { describe } from "../core/describe.js";
import { type Duration, toMilliseconds } from "../core/duration.js";
import { costAboveLimit, TimeoutError } from "../core/errors.js";
import { checkKey } from "../core/keyed.js";
import { KeyedRateLimiter, type RateLevel } from "../core/keyed-rate-limiter.js";
import { NEVER_ABORTED, type Permit } from "../core/limiter.js";
import { HeldPermit, runHolding } from "../core/permit.js";
import { checkCostUnits, countedUnits, normalizeCost } from "../core/rate-cost.js";
import type { RateAcquireOptions, RateLimit } from "../core/rate-limiter.js";
import { sleep } from "../core/sleep.js";
import { checkAcquireOptions } from "../core/wait-options.js";
import { type RedisClient, type RedisConnection, Script, toConnection } from "./connection.js";
import { withDeadline } from "./errors.js";
import { type Bucket, gcraBucket } from "./rate-limiter.js";
import { KEYED_RATE_ACQUIRE } from "./rate-scripts.js";

const script = /* @__PURE__ */ new Script(KEYED_RATE_ACQUIRE);

/** Options for {@link RedisKeyedRateLimiter}. */
export interface RedisKeyedRateLimiterOptions {
  /** Identifies the limiter in Redis: every process using the same name shares the same budgets. */
  name: string;
  /** Each key's limits (token buckets, GCRA). All processes must agree on them. */
  limits?: readonly RateLimit[];
  /** Levels above the keys, as {@link KeyedRateLimiter}'s: all charged in the same script, or none. */
  levels?: readonly RateLevel[];
  /** Key prefix. Default `"sluice:"`; a key's HASH is `<prefix>{<name>}:key:<key>`. */
  prefix?: string;
  /** Longest wait for one Redis reply. Default `"5s"`. */
  commandTimeout?: Duration;
}

const OPTIONS = optionNames<RedisKeyedRateLimiterOptions>({
  name: true,
  limits: true,
  levels: true,
  prefix: true,
  commandTimeout: true,
});

/** A level, checked, with its buckets. */
interface Level {
  readonly name: string;
  readonly key: ((key: string) => string) | undefined;
  readonly buckets: readonly Bucket[];
}

/** A permit of a {@link RedisKeyedRateLimiter}. */
export interface RedisKeyedRatePermit extends Permit {
  /** When Redis admitted the call, in Redis server time (ms since the epoch, µs precision). */
  readonly admittedAt: number;
}

/** A permit of a {@link RedisKeyedRateLimiter}: nothing to give back (a rate is spent once charged). */
class KeyedRatePermit extends HeldPermit<void> implements RedisKeyedRatePermit {
  constructor(
    signal: AbortSignal,
    readonly admittedAt: number,
  ) {
    super(1, signal, giveNothingBack);
  }
}

function giveNothingBack(): void {}

/** Lifetime counters of a {@link RedisKeyedRateLimiter} in this process. */
export interface RedisKeyedRateLimiterStatistics {
  /** The name shared by every process. */
  name: string;
  /** Calls admitted. */
  granted: number;
  /** Calls ended by their signal. */
  aborted: number;
  /** Calls ended by their timeout, `timeout: 0` refusals included. */
  timedOut: number;
  /** Calls refused: a cost no level could ever pay, a Redis failure. */
  rejected: number;
  /** Calls of this process waiting now. */
  waiting: number;
  /** Scripts run (one per attempt: one when the budget is there, one more per wait). */
  scripts: number;
}

/**
 * A rate limit per key across processes, under levels shared by many keys, charged all or nothing in one
 * script: the same semantics as {@link KeyedRateLimiter}'s limits and levels, for a fleet.
 *
 * Each call runs one script with the HASHes of its key and of its level instances; when the budget is not
 * there, Redis answers with the exact time until it is, and the call waits that long and asks again (no
 * polling loop, no notices: another process may take the budget first, then the call waits again). The
 * client keeps nothing per key, and Redis forgets a key once it has refilled. Only rate limits: no
 * concurrency, spacing, pause or settle (use a `RedisRateLimiter` per key for those). Callers of one key
 * in one process are not queued together: each waits on its own.
 *
 * @example
 * ```ts
 * import { RedisKeyedRateLimiter } from "sluice/redis";
 * const limiter = new RedisKeyedRateLimiter(redis, {
 *   name: "api",
 *   limits: [{ limit: 60, interval: "1m" }],
 *   levels: [{ name: "global", limits: [{ limit: 10_000, interval: "1m" }] }],
 * });
 * await limiter.run(userId, () => callApi());
 * ```
 */
export class RedisKeyedRateLimiter {
  /** The name every process sharing the limits uses. */
  readonly name: string;
  private readonly connection: RedisConnection;
  private readonly prefix: string;
  private readonly own: readonly Bucket[];
  private readonly levels: readonly Level[];
  private readonly counted: ReadonlySet<string>;
  private readonly commandMs: number;
  private readonly counters = { granted: 0, aborted: 0, timedOut: 0, rejected: 0, scripts: 0 };
  private waitingNow = 0;

  /**
   * @throws TypeError/RangeError naming the option and the value, as `new KeyedRateLimiter()` does, and
   *   for a sliding window (Redis keeps token buckets) or an interval above 366 days.
   */
  constructor(redis: RedisClient, options: RedisKeyedRateLimiterOptions) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`options must be an object with a name and limits; got ${describe(options)}`);
    }
    checkOptionNames(options, OPTIONS, "the new RedisKeyedRateLimiter() options");
    if (typeof options.name !== "string" || options.name === "") {
      throw new TypeError(`name must be a non-empty string; got ${describe(options.name)}`);
    }
    this.name = options.name;
    // The in-process limiter checks limits and levels with the words users learn there.
    new KeyedRateLimiter({ name: options.name, limits: options.limits ?? [], levels: options.levels ?? [] });
    this.connection = toConnection(redis);
    this.prefix = options.prefix ?? "sluice:";
    if (typeof this.prefix !== "string") throw new TypeError(`prefix must be a string; got ${describe(this.prefix)}`);
    this.commandMs = toMilliseconds(options.commandTimeout ?? "5s", "commandTimeout");
    this.own = (options.limits ?? []).map((limit, index) =>
      gcraBucket(limit, `limits[${index}]`, "RedisKeyedRateLimiter"),
    );
    this.levels = (options.levels ?? []).map((level, index) => ({
      name: level.name,
      key: level.key,
      buckets: level.limits.map((limit, at) =>
        gcraBucket(limit, `levels[${index}].limits[${at}]`, "RedisKeyedRateLimiter"),
      ),
    }));
    this.counted = countedUnits([...this.own, ...this.levels.flatMap((level) => level.buckets)]);
  }

  /**
   * Waits until a call under `key` may start: its own limits and every level's can pay its cost, all
   * charged in one script. Rejects (never throws) for a bad key or options, a cost above a limit's burst
   * (naming the level), with `signal.reason`, a `TimeoutError`, or a Redis failure.
   */
  async acquire(key: string, options?: Omit<RateAcquireOptions, "weight" | "priority">): Promise<RedisKeyedRatePermit> {
    const { keys, args, signal, deadline } = this.request(key, options);
    this.waitingNow++;
    try {
      for (;;) {
        if (signal?.aborted) {
          this.counters.aborted++;
          throw signal.reason;
        }
        const { wait, admittedAt } = await this.ask(keys, args);
        if (admittedAt !== undefined) {
          this.counters.granted++;
          return new KeyedRatePermit(signal ?? NEVER_ABORTED, admittedAt);
        }
        const now = performance.now();
        if (now + wait > deadline) {
          this.counters.timedOut++;
          const timeout = options?.timeout as number;
          throw new TimeoutError(
            timeout,
            `timed out after ${timeout} ms waiting for key ${JSON.stringify(key)} of ${this.subject()}`,
          );
        }
        // Woken at the moment Redis said the budget is there (a hair later: its clock is not ours).
        await sleep(wait + 1, signal);
      }
    } finally {
      this.waitingNow--;
    }
  }

  /** Runs `fn` once a call under `key` may start (see {@link RedisKeyedRateLimiter.acquire}). */
  async run<T>(
    key: string,
    fn: (signal: AbortSignal, permit: RedisKeyedRatePermit) => T | PromiseLike<T>,
    options?: Omit<RateAcquireOptions, "weight" | "priority">,
  ): Promise<T> {
    if (typeof fn !== "function") throw new TypeError(`fn must be a function; got ${describe(fn)}`);
    return runHolding(fn, await this.acquire(key, options));
  }

  /** Lifetime counters of this process. */
  statistics(): RedisKeyedRateLimiterStatistics {
    return { name: this.name, ...this.counters, waiting: this.waitingNow };
  }

  /** The HASHes and arguments of one call; throws (into `acquire`'s rejection) for bad input. */
  private request(
    key: string,
    options: Omit<RateAcquireOptions, "weight" | "priority"> | undefined,
  ): { keys: string[]; args: (string | number)[]; signal: AbortSignal | undefined; deadline: number } {
    checkKey(key);
    const checked = checkAcquireOptions(options as RateAcquireOptions | undefined);
    if (checked.weight !== 1 || checked.priority !== 0) {
      throw new RangeError(
        `${this.subject()} takes neither weight nor priority; got weight ${checked.weight}, priority ${checked.priority}`,
      );
    }
    const cost = normalizeCost(options?.cost);
    checkCostUnits(cost, this.counted, "cost");
    const tag = `${this.prefix}{${this.name}}`;
    const keys = [`${tag}:key:${key}`];
    const args: (string | number)[] = [0];
    const push = (buckets: readonly Bucket[], index: number, subject: string) => {
      for (const bucket of buckets) {
        const amount = cost[bucket.unit] ?? 0;
        // A cost no bucket could ever hold would wait forever: refused now, as in process.
        if (amount > bucket.burst)
          throw costAboveLimit(
            amount,
            bucket.unit,
            { what: "burst", bound: bucket.burst, limit: bucket.limit, intervalMs: bucket.intervalMs },
            subject,
          );
        if (amount > 0) args.push(index, bucket.field, bucket.emission, bucket.tolerance, amount);
      }
    };
    push(this.own, 1, `${this.subject()} key ${JSON.stringify(key)}`);
    this.levels.forEach((level, index) => {
      const instance =
        level.key === undefined ? "" : checkKey(level.key(key), `levels[${index}].key(${JSON.stringify(key)})`);
      keys.push(`${tag}:level:${level.name}:${instance}`);
      const subject = `level ${JSON.stringify(level.name)}${level.key === undefined ? "" : ` key ${JSON.stringify(instance)}`} of ${this.subject()}`;
      push(level.buckets, keys.length, subject);
    });
    args[0] = (args.length - 1) / 5;
    const timeout = checked.timeout;
    return { keys, args, signal: checked.signal, deadline: performance.now() + timeout };
  }

  /** One script: when admitted (and charged), Redis' time of it; else the ms until every limit can pay. */
  private async ask(keys: string[], args: (string | number)[]): Promise<{ wait: number; admittedAt?: number }> {
    this.counters.scripts++;
    try {
      const reply = (await withDeadline(
        script.run(this.connection, keys, args),
        this.commandMs,
        () => `acquire on ${this.subject()}`,
      )) as [number, number];
      return reply[0] === 1 ? { wait: 0, admittedAt: reply[1] / 1000 } : { wait: reply[1] / 1000 };
    } catch (error) {
      this.counters.rejected++;
      throw error;
    }
  }

  private subject(): string {
    return `Redis keyed rate limiter ${JSON.stringify(this.name)}`;
  }
}
