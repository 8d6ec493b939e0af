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
  /**
   * Key prefix. Default `"sluice:"`; a key's bucket for a limit is the Redis key
   * `<prefix>{<name>}:key:<key>|tat:<unit>:<limit>/<interval ms>:<burst>`, a level instance's
   * `<prefix>{<name>}:level:<level>:<instance>|tat:...`.
   */
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

/** One bucket a call pays into: its Redis key, T (µs per unit), tau (burst × T, µs), the cost. */
type Charge = readonly [key: string, emission: number, tolerance: number, cost: number];

/** A call's attempt waiting for the script of its batch. */
interface Attempt {
  readonly charges: readonly Charge[];
  resolve(answer: { wait: number; admittedAt?: number }): void;
  reject(error: unknown): void;
}

/**
 * The most calls in one script: their buckets go to one MGET (a Lua `unpack` holds some thousands of
 * values), and a batch this large already makes the script's fixed cost (EVALSHA, TIME, MGET) a few
 * hundredths of a command per call.
 */
const MOST_PER_SCRIPT = 256;

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
  /**
   * Scripts run. Each attempt (one when the budget is there, one more per wait) is decided by a script;
   * the attempts of this process asked in the same tick share one.
   */
  scripts: number;
}

/**
 * A rate limit per key across processes, under levels shared by many keys, charged all or nothing in one
 * script: the same semantics as {@link KeyedRateLimiter}'s limits and levels, for a fleet.
 *
 * Each call is decided by one script over the buckets of its key and of its level instances (one Redis
 * key each); when the budget is not there, Redis answers with the exact time until it is, and the call
 * waits that long and asks again (no polling loop, no notices: another process may take the budget
 * first, then the call waits again). Calls of one process asked in the same tick share one script, still
 * decided one after the other, each all or nothing. The client keeps nothing per key, and Redis forgets
 * a bucket once it has refilled. Only rate limits: no
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
  /** Attempts asked in this tick, sent together as one script at its end. */
  private batch: Attempt[] = [];

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
    const { charges, signal, deadline } = this.request(key, options);
    this.waitingNow++;
    try {
      for (;;) {
        if (signal?.aborted) {
          this.counters.aborted++;
          throw signal.reason;
        }
        const { wait, admittedAt } = await this.ask(charges);
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

  /** The buckets one call pays into; throws (into `acquire`'s rejection) for bad input. */
  private request(
    key: string,
    options: Omit<RateAcquireOptions, "weight" | "priority"> | undefined,
  ): { charges: Charge[]; signal: AbortSignal | undefined; deadline: number } {
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
    const charges: Charge[] = [];
    const push = (buckets: readonly Bucket[], instance: string, subject: string) => {
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
        // The field names the limit's configuration, so processes configured differently never read
        // each other's state as their own.
        if (amount > 0) charges.push([`${instance}|${bucket.field}`, bucket.emission, bucket.tolerance, amount]);
      }
    };
    push(this.own, `${tag}:key:${key}`, `${this.subject()} key ${JSON.stringify(key)}`);
    this.levels.forEach((level, index) => {
      const instance =
        level.key === undefined ? "" : checkKey(level.key(key), `levels[${index}].key(${JSON.stringify(key)})`);
      const subject = `level ${JSON.stringify(level.name)}${level.key === undefined ? "" : ` key ${JSON.stringify(instance)}`} of ${this.subject()}`;
      push(level.buckets, `${tag}:level:${level.name}:${instance}`, subject);
    });
    const timeout = checked.timeout;
    return { charges, signal: checked.signal, deadline: performance.now() + timeout };
  }

  /**
   * One attempt: when admitted (and charged), Redis' time of it; else the ms until every limit can pay.
   * Attempts asked in the same tick go to Redis as one script at the end of it (a microtask later), up
   * to {@link MOST_PER_SCRIPT} each: one round trip and one TIME and MGET for all of them.
   */
  private ask(charges: readonly Charge[]): Promise<{ wait: number; admittedAt?: number }> {
    return new Promise((resolve, reject) => {
      if (this.batch.length === 0) queueMicrotask(() => this.send());
      this.batch.push({ charges, resolve, reject });
      if (this.batch.length === MOST_PER_SCRIPT) this.send();
    });
  }

  /** Sends the attempts asked so far as one script, and answers each from its reply. */
  private send(): void {
    const attempts = this.batch;
    if (attempts.length === 0) return;
    this.batch = [];
    const keys: string[] = [];
    const indexOf = new Map<string, number>();
    // Per key its T and tau, once; then the calls, each a count and (key index, cost) per bucket.
    const perKey: (string | number)[] = [attempts.length];
    const calls: (string | number)[] = [];
    for (const { charges } of attempts) {
      calls.push(charges.length);
      for (const [key, emission, tolerance, cost] of charges) {
        let index = indexOf.get(key);
        if (index === undefined) {
          index = keys.push(key);
          indexOf.set(key, index);
          perKey.push(emission, tolerance);
        }
        calls.push(index, cost);
      }
    }
    const args = perKey.concat(calls);
    this.counters.scripts++;
    withDeadline(script.run(this.connection, keys, args), this.commandMs, () => `acquire on ${this.subject()}`).then(
      (reply) => {
        const [now, ...waits] = reply as number[];
        attempts.forEach((attempt, at) => {
          const wait = waits[at] as number;
          attempt.resolve(wait === 0 ? { wait: 0, admittedAt: (now as number) / 1000 } : { wait: wait / 1000 });
        });
      },
      (error: unknown) => {
        this.counters.rejected += attempts.length;
        for (const attempt of attempts) attempt.reject(error);
      },
    );
  }

  private subject(): string {
    return `Redis keyed rate limiter ${JSON.stringify(this.name)}`;
  }
}
