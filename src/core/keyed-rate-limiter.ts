/**
 * KeyedRateLimiter: a rate limiter per key (per user, per API key), under levels shared by many keys (a
 * tenant's limit, a global one), all charged in one step or not at all.
 *
 * Each key is a plain {@link RateLimiter}; each instance of a level (the global one, tenant "acme") is a
 * RateLimiter too, whose limits the keys under it ask and charge together with their own. A key is
 * forgotten once nothing is in flight, nobody waits and its own limits have refilled (a key forgotten
 * earlier would forgive its charges); a level instance once no live key uses it and it has refilled.
 */
import type { LimiterCounters } from "./admission.js";
import { checkClock, checkFunction, checkName, checkOptionNames, optionNames } from "./arguments.js";
import { type Clock, systemClock } from "./clock.js";
import { describe } from "./describe.js";
import type { Duration } from "./duration.js";
import { checkKey, KeyedPrimitive, type KeyedStatistics, keyedKind, type Sweepable, Sweeper } from "./keyed.js";
import { type KeyedLimiter, type KeyStatistics, KeyView } from "./keyed-semaphore.js";
import type { HeaderInput } from "./rate-headers.js";
import {
  RATE_LIMITER_OPTION_FLAGS,
  type RateAcquireOptions,
  type RateLimit,
  RateLimiter,
  type RateLimiterOptions,
  type RateLimiterStatistics,
  type RatePermit,
  type SharedLimit,
} from "./rate-limiter.js";

/**
 * A level above the keys: limits that the keys mapped to one instance of it share. A level without `key`
 * has one instance for every key (a global limit).
 *
 * @example
 * ```ts
 * const levels: RateLevel[] = [
 *   { name: "global", limits: [{ limit: 10_000, interval: "1m" }] },
 *   { name: "tenant", limits: [{ limit: 1_000, interval: "1m" }], key: (user) => tenantOf(user) },
 * ];
 * ```
 */
export interface RateLevel {
  /** Names the level in messages and statistics: `"tenant"`, `"global"`. */
  name: string;
  /** The limits each instance of the level has; all must admit a call, with the key's own. */
  limits: readonly RateLimit[];
  /**
   * The instance of this level a key belongs to (the tenant of a user): a non-empty string, the same
   * every time for the same key. Absent: one instance shared by every key.
   */
  key?: (key: string) => string;
}

const RATE_LEVEL_OPTIONS = /* @__PURE__ */ optionNames<RateLevel>({ name: true, limits: true, key: true });

/** Options for {@link KeyedRateLimiter}: each key's, as a {@link RateLimiter}'s, and the levels above. */
export interface KeyedRateLimiterOptions extends RateLimiterOptions {
  /** Levels above the keys, shared by many keys; a call must pass every one, and is charged in all. */
  levels?: readonly RateLevel[];
}

const KEYED_RATE_LIMITER_OPTIONS = /* @__PURE__ */ optionNames<KeyedRateLimiterOptions>({
  ...RATE_LIMITER_OPTION_FLAGS,
  levels: true,
});

/** A checked level. */
interface Level {
  readonly name: string;
  readonly limits: readonly RateLimit[];
  readonly key: ((key: string) => string) | undefined;
  /** Its live instances, by the instance's key ("" for a level without `key`). */
  readonly instances: Map<string, LevelInstance>;
}

/** One instance of a level (tenant "acme"): a RateLimiter whose limits the keys under it share. */
class LevelInstance implements Sweepable {
  heapIndex = -1;
  /** Live keys that charge it. Invariant: dropped only when 0 and refilled. */
  users = 0;
  constructor(
    readonly level: Level,
    readonly key: string,
    readonly limiter: RateLimiter,
    readonly shared: readonly SharedLimit[],
  ) {}

  sweep(now: number): number | undefined {
    if (this.users !== 0) return undefined;
    const at = this.limiter.idleAt(now);
    if (at > now) return at;
    if (this.level.instances.get(this.key) === this) this.level.instances.delete(this.key);
    return undefined;
  }
}

/** One live key: its limiter and the level instances it charges. */
class RateKey implements Sweepable {
  heapIndex = -1;
  constructor(
    private readonly owner: KeyedRateLimiter,
    readonly key: string,
    readonly limiter: RateLimiter,
    readonly levels: readonly LevelInstance[],
  ) {}

  statistics(): RateLimiterStatistics {
    return this.limiter.statistics();
  }

  counters(): LimiterCounters {
    return this.limiter.counters();
  }

  sweep(now: number): number | undefined {
    if (this.limiter.inUse !== 0 || this.limiter.waiting !== 0) return undefined;
    const at = this.limiter.idleAt(now);
    if (at > now) return at;
    this.owner.forget(this);
    return undefined;
  }
}

/**
 * A rate limiter per key, optionally under levels shared by many keys, charged all together or not at
 * all: a refusal at any level charges no level.
 *
 * Use it for an API that limits each customer's key (60 requests and 20,000 tokens per minute per user),
 * under a tenant's and a global limit. Each key is a {@link RateLimiter} with the options given (limits,
 * concurrency, minInterval, refund): the same errors and statistics. Keys are made on first use and
 * forgotten once idle and refilled, on one timer for all of them.
 *
 * Order: callers of one key are served as by its RateLimiter (priority, then arrival). Keys under a
 * shared level are not queued together: each key's head starts as soon as every level can pay, so a
 * busy key does not hold back a quiet one's call at its own level — but the shared level is first come,
 * first served. For turns between keys, put a `FairLimiter` in front.
 *
 * @example
 * ```ts
 * import { KeyedRateLimiter } from "sluice";
 * const limiter = new KeyedRateLimiter({
 *   limits: [{ limit: 60, interval: "1m" }, { limit: 20_000, interval: "1m", unit: "tokens" }],
 *   levels: [
 *     { name: "global", limits: [{ limit: 10_000, interval: "1m" }] },
 *     { name: "tenant", limits: [{ limit: 1_000, interval: "1m" }], key: (user) => user.split("/")[0] },
 *   ],
 * });
 * await limiter.run("acme/alice", () => callApi(), { cost: { tokens: 1_200 } });
 * ```
 */
export class KeyedRateLimiter
  extends KeyedPrimitive<RateKey>
  implements KeyedLimiter<RateAcquireOptions, RatePermit, RateLimiterStatistics>
{
  /** Optional name, used in error messages and statistics. */
  readonly name: string | undefined;
  private readonly perKey: RateLimiterOptions;
  private readonly clock: Clock;
  private readonly levels: readonly Level[];
  private readonly sweeper: Sweeper;

  /**
   * @throws TypeError/RangeError naming the option and the value, as `new RateLimiter()` does; for a
   *   level, naming the level (`levels[1].limits[0].limit`, a duplicate level name, a `key` that is not a
   *   function).
   */
  constructor(options: KeyedRateLimiterOptions = {}) {
    super();
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`options must be an object; got ${describe(options)}`);
    }
    checkOptionNames(options, KEYED_RATE_LIMITER_OPTIONS, "the new KeyedRateLimiter() options");
    const { levels = [], name, clock, ...perKey } = options;
    this.name = checkName(name);
    this.clock = checkClock(clock) ?? systemClock;
    this.perKey = { ...perKey, clock: this.clock };
    // Made once here, so a bad option fails now rather than at the first call.
    new RateLimiter(this.perKey);
    this.levels = checkLevels(levels, this.clock);
    this.sweeper = new Sweeper(this.clock);
  }

  /**
   * Waits until a call under `key` may start (see {@link RateLimiter.acquire}): its own limits and every
   * level's can pay its cost, all charged in the same step. Rejects (never throws) for a bad key, a
   * level `key` function that throws or returns no valid key, and as `RateLimiter.acquire` does — a cost
   * above a level's burst names the level and its key.
   */
  acquire(key: string, options?: RateAcquireOptions): Promise<RatePermit> {
    return this.call(key, (limiter) => limiter.acquire(options));
  }

  /**
   * Starts a call under `key` now if every level lets it start now; otherwise `undefined`.
   * @throws TypeError/RangeError for a bad key or options, as `RateLimiter.tryAcquire` does.
   */
  tryAcquire(key: string, options?: Pick<RateAcquireOptions, "cost" | "weight">): RatePermit | undefined {
    const entry = this.table.get(checkKey(key));
    try {
      return entry.limiter.tryAcquire(options);
    } finally {
      this.sweepIfQuiet(entry);
    }
  }

  /** Runs `fn` once a call under `key` may start, as {@link RateLimiter.run}. */
  run<T>(
    key: string,
    fn: (signal: AbortSignal, permit: RatePermit) => T | PromiseLike<T>,
    options?: RateAcquireOptions,
  ): Promise<T> {
    return this.call(key, (limiter) => limiter.run(fn, options));
  }

  /**
   * Pauses `key` alone (see {@link RateLimiter.pause}): after a 429 for one user's API key, that user
   * waits and the others go on. The key stays live until the pause is over and its limits refilled.
   * @throws TypeError/RangeError for a bad key or duration.
   */
  pause(key: string, forOrUntil: Duration | Date, reason?: unknown): void {
    const entry = this.table.get(checkKey(key));
    try {
      entry.limiter.pause(forOrUntil, reason);
    } finally {
      this.sweepIfQuiet(entry);
    }
  }

  /**
   * Tightens `key`'s own limits from a response's rate-limit headers (see {@link RateLimiter.observe}),
   * and pauses it for `Retry-After`. The levels are not touched: the headers speak of one key.
   * @throws TypeError for a bad key or headers.
   */
  observe(key: string, headers: HeaderInput): void {
    const entry = this.table.get(checkKey(key));
    try {
      entry.limiter.observe(headers);
    } finally {
      this.sweepIfQuiet(entry);
    }
  }

  /** `key` as a plain {@link Limiter}. */
  for(key: string): KeyView<RateAcquireOptions, RatePermit, RateLimiterStatistics> {
    return new KeyView(this, checkKey(key));
  }

  /** A snapshot of every key together: live keys, and lifetime counters of all keys ever. */
  statistics(): KeyedStatistics;
  /** A snapshot of `key`, as {@link RateLimiter.statistics} (its own limits); a key not live reads as fresh. */
  statistics(key: string): KeyStatistics<RateLimiterStatistics>;
  statistics(key?: string): KeyedStatistics | KeyStatistics<RateLimiterStatistics> {
    if (key === undefined) return this.table.statistics(this.name, this.perKey.concurrency ?? Number.POSITIVE_INFINITY);
    checkKey(key);
    const live = this.table.live.get(key);
    const statistics = live === undefined ? new RateLimiter(this.perKey).statistics() : live.statistics();
    return { ...this.table.statisticsOf(key, statistics), name: this.name, key };
  }

  /** Rejects every waiter of every key with `reason` (default: an `AbortError`). */
  clear(reason?: unknown): void {
    for (const entry of [...this.table.live.values()]) entry.limiter.clear(reason);
  }

  /** @internal How many level instances are live, per level name (tests and benchmarks). */
  levelInstances(): Record<string, number> {
    return Object.fromEntries(this.levels.map((level) => [level.name, level.instances.size]));
  }

  /** @internal Drops a key found idle and refilled; its level instances lose a user. */
  forget(entry: RateKey): void {
    this.table.drop(entry.key, entry);
    const now = this.clock.now();
    for (const instance of entry.levels) {
      instance.users--;
      if (instance.users === 0) this.sweeper.schedule(instance, instance.limiter.idleAt(now));
    }
  }

  private call<T>(key: string, body: (limiter: RateLimiter) => Promise<T>): Promise<T> {
    let entry: RateKey;
    try {
      entry = this.table.get(checkKey(key));
    } catch (error) {
      return Promise.reject(error);
    }
    const outcome = body(entry.limiter);
    this.sweepIfQuiet(entry);
    return outcome;
  }

  private sweepIfQuiet(entry: RateKey): void {
    if (entry.limiter.inUse === 0 && entry.limiter.waiting === 0) {
      this.sweeper.schedule(entry, entry.limiter.idleAt(this.clock.now()));
    }
  }

  /** Makes the limiter of `key` and joins it to its level instances. Throws for a bad level key. */
  protected create(key: string): RateKey {
    // Every level key first: one that throws must leave no instance behind.
    const instanceKeys = this.levels.map((level, index) =>
      level.key === undefined ? "" : levelKey(level, index, key),
    );
    const instances = this.levels.map((level, index) => {
      const instanceKey = instanceKeys[index] as string;
      let instance = level.instances.get(instanceKey);
      if (instance === undefined) {
        const limiter = new RateLimiter({ limits: level.limits, clock: this.clock });
        const subject = `level ${JSON.stringify(level.name)}${level.key === undefined ? "" : ` key ${JSON.stringify(instanceKey)}`} of ${this.subject()}`;
        instance = new LevelInstance(level, instanceKey, limiter, limiter.sharedLimits(subject));
        level.instances.set(instanceKey, instance);
      }
      return instance;
    });
    for (const instance of instances) {
      instance.users++;
      this.sweeper.cancel(instance);
    }
    const limiter = new RateLimiter(this.perKey);
    limiter.joinLevels(
      instances.flatMap((instance) => instance.shared),
      `${keyedKind("rate limiter", this.name)} ${JSON.stringify(key)}`,
    );
    const entry = new RateKey(this, key, limiter, instances);
    limiter.onQuiet = () => this.sweeper.schedule(entry, limiter.idleAt(this.clock.now()));
    return entry;
  }

  private subject(): string {
    return this.name === undefined ? "the keyed rate limiter" : `keyed rate limiter ${JSON.stringify(this.name)}`;
  }
}

/** The instance key of `level` for `key`, checked: a level key function is user code. */
function levelKey(level: Level, index: number, key: string): string {
  const instanceKey = (level.key as (key: string) => string)(key);
  return checkKey(instanceKey, `levels[${index}].key(${JSON.stringify(key)}) (level ${JSON.stringify(level.name)})`);
}

function checkLevels(value: unknown, clock: Clock): Level[] {
  if (!Array.isArray(value)) throw new TypeError(`levels must be an array; got ${describe(value)}`);
  const names = new Set<string>();
  return value.map((level: unknown, index): Level => {
    const where = `levels[${index}]`;
    if (typeof level !== "object" || level === null) {
      throw new TypeError(
        `${where} must be an object such as { name: "tenant", limits: [...] }; got ${describe(level)}`,
      );
    }
    checkOptionNames(level, RATE_LEVEL_OPTIONS, where);
    const { name, limits, key } = level as RateLevel;
    if (typeof name !== "string" || name === "") {
      throw new TypeError(`${where}.name must be a non-empty string; got ${describe(name)}`);
    }
    if (names.has(name)) throw new RangeError(`${where}.name ${JSON.stringify(name)} names another level too`);
    names.add(name);
    if (key !== undefined) checkFunction(key, `${where}.key`);
    if (!Array.isArray(limits) || limits.length === 0) {
      throw new TypeError(`${where}.limits must be a non-empty array of limits; got ${describe(limits)}`);
    }
    try {
      new RateLimiter({ limits, clock });
    } catch (error) {
      // RateLimiter names `limits[0].limit`; the caller wrote `levels[1].limits[0].limit`.
      if (error instanceof Error) error.message = `${where}.${error.message}`;
      throw error;
    }
    return { name, limits, key, instances: new Map() };
  });
}
