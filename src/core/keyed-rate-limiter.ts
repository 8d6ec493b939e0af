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
import { acquireChannel, holdChannel } from "./diagnostics.js";
import type { Duration } from "./duration.js";
import { weightAboveCapacity } from "./errors.js";
import { checkKey, KeyedPrimitive, type KeyedStatistics, keyedKind, type Sweepable, Sweeper } from "./keyed.js";
import { type KeyedLimiter, type KeyStatistics, KeyView } from "./keyed-semaphore.js";
import { NEVER_ABORTED } from "./limiter.js";
import { runHolding } from "./permit.js";
import type { RateBucket } from "./rate-buckets.js";
import { checkCostUnits, countedUnits } from "./rate-cost.js";
import type { HeaderInput } from "./rate-headers.js";
import {
  chargeEach,
  checkTryOptions,
  costImpossible,
  costRecord,
  type Demand,
  limitStatistics,
  newSettledTotals,
  normalizeDemand,
  payableAt,
  RATE_LIMITER_OPTION_FLAGS,
  type RateAcquireOptions,
  type RateLimit,
  RateLimiter,
  type RateLimiterOptions,
  RateLimiterPermit,
  type RateLimiterStatistics,
  type RatePermit,
  type Settle,
  type SettledTotals,
  type SharedLimit,
  settleCharges,
  weightOf,
} from "./rate-limiter.js";
import { checkAcquireOptions } from "./wait-options.js";

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

/**
 * One live key. Light while nobody waits under it: only its limits' buckets and what it holds, the
 * rules (concurrency, spacing, refunds, counted units) read from its keyed limiter, shared by every key.
 * A caller that must wait (or anything the light path does not do: a pause, an aborted signal, a cost
 * no limit could pay, diagnostics listened to) gives it a full {@link RateLimiter}, which takes over its
 * buckets, what it holds and its counters, and serves the key until the key is forgotten.
 */
class RateKey implements Sweepable {
  // Fields are declared, not initialised in the class body: plain stores in the constructor make the
  // cheapest object V8 knows, and a million keys make a million of them.
  declare heapIndex: number;
  declare private readonly owner: KeyedRateLimiter;
  declare readonly key: string;
  /** Its own limits; a full limiter takes them over. */
  declare readonly buckets: RateBucket[];
  /** The limits of its level instances. */
  declare readonly shared: readonly SharedLimit[];
  declare readonly levels: readonly LevelInstance[];
  /** Its full limiter, once one was needed. */
  declare limiter: RateLimiter | undefined;
  /** Light: the weight its permits hold. */
  declare inFlight: number;
  /** Light: grants so far. */
  declare granted: number;
  /** Light: the clock time of the last start, once there was one under `minInterval`. */
  declare lastStartAt: number | undefined;
  /** Light: its settled calls, once one was settled. */
  declare settled: SettledTotals | undefined;
  constructor(
    owner: KeyedRateLimiter,
    key: string,
    buckets: RateBucket[],
    shared: readonly SharedLimit[],
    levels: readonly LevelInstance[],
  ) {
    this.heapIndex = -1;
    this.owner = owner;
    this.key = key;
    this.buckets = buckets;
    this.shared = shared;
    this.levels = levels;
    this.limiter = undefined;
    this.inFlight = 0;
    this.granted = 0;
    this.lastStartAt = undefined;
    this.settled = undefined;
  }

  get quiet(): boolean {
    const limiter = this.limiter;
    return limiter === undefined ? this.inFlight === 0 : limiter.inUse === 0 && limiter.waiting === 0;
  }

  statistics(): RateLimiterStatistics {
    return this.limiter?.statistics() ?? this.owner.lightStatistics(this);
  }

  counters(): LimiterCounters {
    return this.limiter?.counters() ?? { granted: this.granted, aborted: 0, timedOut: 0, rejected: 0 };
  }

  /** When it remembers nothing a fresh key would not (see {@link RateLimiter.idleAt}). */
  idleAt(now: number): number {
    if (this.limiter !== undefined) return this.limiter.idleAt(now);
    let at = this.lastStartAt === undefined ? now : this.lastStartAt + this.owner.spacing;
    for (const bucket of this.buckets) at = Math.max(at, bucket.idleAt(now));
    return at;
  }

  sweep(now: number): number | undefined {
    if (!this.quiet) return undefined;
    const at = this.idleAt(now);
    if (at > now) return at;
    this.owner.forget(this);
    return undefined;
  }
}

/** A permit of a light key: its release and settlement go to the key (or the limiter that took it over). */
class KeyPermit extends RateLimiterPermit {
  declare entry: RateKey;
}

const NO_LEVELS: readonly LevelInstance[] = [];
const NO_SHARED: readonly SharedLimit[] = [];

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
   * The per-key options made into a limiter once, checked: what a light key's rules are read from, and
   * what a key not live reads as.
   */
  private readonly template: RateLimiter;
  /** Each key's concurrency; a light key never has `"auto"` (such keys are full from the start). */
  private readonly concurrency: number;
  private readonly auto: boolean;
  /** @internal Each key's `minInterval`, in ms. */
  readonly spacing: number;
  /** The units the key's own limits and its levels' count: a cost unit one typo away from these is refused. */
  private readonly counted: ReadonlySet<string>;
  /** Whether every limit, the key's and its levels', can pay one request: then the commonest call needs no check. */
  private readonly onePossible: boolean;
  private readonly giveBackLight = (permit: KeyPermit): void => {
    const entry = permit.entry;
    if (entry.limiter !== undefined) {
      entry.limiter.releaseAdopted(permit.weight);
      return;
    }
    entry.inFlight -= permit.weight;
    // Already scheduled: the sweep looks again then (the common case, a key used again and again).
    if (entry.inFlight === 0 && entry.heapIndex < 0) {
      const now = this.clock.now();
      this.sweeper.schedule(entry, entry.idleAt(now), now);
    }
  };
  private readonly settleLight: Settle = {
    check: (target) => checkCostUnits(target, this.counted, "actual"),
    apply: (permit, target, first) => {
      const entry = (permit as KeyPermit).entry;
      if (entry.limiter !== undefined) {
        entry.limiter.settleAdopted(permit, target, first);
        return;
      }
      entry.settled ??= newSettledTotals();
      settleCharges(permit, target, first, entry.buckets, this.template.refundOption, entry.settled, this.clock.now());
    },
  };

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
    this.template = new RateLimiter(this.perKey);
    this.auto = perKey.concurrency === "auto";
    this.concurrency = this.template.concurrency;
    this.spacing = this.template.minInterval;
    this.levels = checkLevels(levels, this.clock);
    const limits = [...this.template.limits, ...this.levels.flatMap((level) => level.limits)];
    this.counted = countedUnits(limits);
    this.onePossible = limits.every((limit) => (limit.burst ?? limit.limit) >= 1);
    this.sweeper = new Sweeper(this.clock);
  }

  /**
   * Waits until a call under `key` may start (see {@link RateLimiter.acquire}): its own limits and every
   * level's can pay its cost, all charged in the same step. Rejects (never throws) for a bad key, a
   * level `key` function that throws or returns no valid key, and as `RateLimiter.acquire` does — a cost
   * above a level's burst names the level and its key.
   */
  acquire(key: string, options?: RateAcquireOptions): Promise<RatePermit> {
    return this.call(
      key,
      options,
      (permit) => Promise.resolve(permit),
      (limiter) => limiter.acquire(options),
    );
  }

  /**
   * Starts a call under `key` now if every level lets it start now; otherwise `undefined`.
   * @throws TypeError/RangeError for a bad key or options, as `RateLimiter.tryAcquire` does.
   */
  tryAcquire(key: string, options?: Pick<RateAcquireOptions, "cost" | "weight">): RatePermit | undefined {
    const entry = this.table.get(checkKey(key));
    try {
      if (entry.limiter !== undefined || listened()) return this.full(entry).tryAcquire(options);
      const demand = checkTryOptions(options, this.counted);
      const impossible = demand === 1 && this.onePossible ? undefined : this.whyImpossible(entry, demand);
      if (impossible !== undefined) throw impossible;
      return this.startLight(entry, demand, NEVER_ABORTED);
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
    return this.call(
      key,
      typeof fn === "function" ? options : NOT_LIGHT,
      (permit) => runHolding(fn, permit),
      (limiter) => limiter.run(fn, options),
    );
  }

  /**
   * Pauses `key` alone (see {@link RateLimiter.pause}): after a 429 for one user's API key, that user
   * waits and the others go on. The key stays live until the pause is over and its limits refilled.
   * @throws TypeError/RangeError for a bad key or duration.
   */
  pause(key: string, forOrUntil: Duration | Date, reason?: unknown): void {
    const entry = this.table.get(checkKey(key));
    try {
      this.full(entry).pause(forOrUntil, reason);
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
      this.full(entry).observe(headers);
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
    if (key === undefined) return this.table.statistics(this.name, this.auto ? "auto" : this.concurrency);
    checkKey(key);
    const live = this.table.live.get(key);
    const statistics = live === undefined ? this.template.statistics() : live.statistics();
    return { ...this.table.statisticsOf(key, statistics), name: this.name, key };
  }

  /** Rejects every waiter of every key with `reason` (default: an `AbortError`). */
  clear(reason?: unknown): void {
    for (const entry of [...this.table.live.values()]) entry.limiter?.clear(reason);
  }

  /** @internal How many level instances are live, per level name (tests and benchmarks). */
  levelInstances(): Record<string, number> {
    return Object.fromEntries(this.levels.map((level) => [level.name, level.instances.size]));
  }

  /** @internal How many live keys have a full limiter (tests and benchmarks). */
  fullKeys(): number {
    let full = 0;
    for (const entry of this.table.live.values()) if (entry.limiter !== undefined) full++;
    return full;
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

  /** @internal A light key's statistics, as its full limiter would report them. */
  lightStatistics(entry: RateKey): RateLimiterStatistics {
    const fresh = this.template.statistics();
    const { limits, remaining } = limitStatistics(entry.buckets, this.clock.now());
    const settled = entry.settled;
    return {
      ...fresh,
      available: fresh.capacity - entry.inFlight,
      inUse: entry.inFlight,
      granted: entry.granted,
      limits,
      remaining,
      settled:
        settled === undefined
          ? fresh.settled
          : { calls: settled.calls, estimated: { ...settled.estimated }, actual: { ...settled.actual } },
    };
  }

  /**
   * `acquire` and `run`: granted on the light path when the key is light and the call can start now
   * (`light`); otherwise through the key's full limiter (`full`), which also refuses and counts what the
   * light path does not grant. Never throws.
   */
  private call<T>(
    key: string,
    options: RateAcquireOptions | undefined,
    light: (permit: RatePermit) => Promise<T>,
    full: (limiter: RateLimiter) => Promise<T>,
  ): Promise<T> {
    let entry: RateKey;
    try {
      entry = this.table.get(checkKey(key));
    } catch (error) {
      return Promise.reject(error);
    }
    let permit: RatePermit | undefined;
    if (entry.limiter === undefined && options !== NOT_LIGHT && !listened()) {
      try {
        permit = this.grantLight(entry, options);
      } catch (error) {
        // Bad options: refused before admission, counted nowhere (as RateLimiter.acquire does).
        this.sweepIfQuiet(entry);
        return Promise.reject(error);
      }
    }
    const outcome = permit === undefined ? full(this.full(entry)) : light(permit);
    this.sweepIfQuiet(entry);
    return outcome;
  }

  /**
   * The light path of `acquire`: the permit if the call may start now, `undefined` if it must wait, or
   * is refused (an aborted signal, a cost no limit could pay), which the full limiter then does.
   * @throws TypeError/RangeError for bad options.
   */
  private grantLight(entry: RateKey, options: RateAcquireOptions | undefined): RatePermit | undefined {
    // A cost no limit could pay is refused by the full limiter (an empty sliding window would admit it).
    if (options === undefined) return this.onePossible ? this.startLight(entry, 1, NEVER_ABORTED) : undefined;
    const checked = checkAcquireOptions(options);
    const demand = normalizeDemand(options.cost, checked.weight, this.counted);
    if (checked.signal?.aborted || this.whyImpossible(entry, demand) !== undefined) return undefined;
    return this.startLight(entry, demand, checked.signal ?? NEVER_ABORTED);
  }

  /** A RangeError if `demand` could never be admitted under a light key, as its full limiter would say. */
  private whyImpossible(entry: RateKey, demand: Demand): RangeError | undefined {
    const weight = weightOf(demand);
    const subject = () => this.subjectOf(entry.key);
    if (weight > this.concurrency)
      return weightAboveCapacity(weight, this.concurrency, `${subject()} (its concurrency)`);
    return costImpossible(demand, entry.buckets, entry.shared, subject);
  }

  /**
   * Starts `demand` under a light key if it may start now — room for its weight, the spacing passed,
   * every limit able to pay — charging every limit in the same step; otherwise `undefined`.
   */
  private startLight(entry: RateKey, demand: Demand, signal: AbortSignal): RatePermit | undefined {
    const weight = weightOf(demand);
    if (entry.inFlight + weight > this.concurrency) return undefined;
    const now = this.clock.now();
    const spacing = this.spacing;
    const ready =
      spacing > 0 && entry.lastStartAt !== undefined ? entry.lastStartAt + spacing : Number.NEGATIVE_INFINITY;
    if (payableAt(demand, entry.buckets, entry.shared, ready, now) > now) return undefined;
    const charges = chargeEach(demand, entry.buckets, entry.shared, now);
    entry.inFlight += weight;
    entry.granted++;
    if (spacing > 0) entry.lastStartAt = now;
    const permit = new KeyPermit(
      weight,
      signal,
      this.giveBackLight,
      this.settleLight,
      costRecord(demand),
      charges,
      undefined,
      now,
      entry.inFlight,
    );
    permit.entry = entry;
    return permit;
  }

  /** The full limiter of `key`, made now (taking over its light state) if it has none. */
  private full(entry: RateKey): RateLimiter {
    if (entry.limiter !== undefined) return entry.limiter;
    const limiter = new RateLimiter(this.perKey);
    limiter.adopt(
      entry.buckets,
      entry.inFlight,
      entry.lastStartAt ?? Number.NEGATIVE_INFINITY,
      entry.granted,
      entry.settled ?? newSettledTotals(),
    );
    limiter.joinLevels(entry.shared, this.subjectOf(entry.key));
    limiter.onQuiet = () => this.sweeper.schedule(entry, limiter.idleAt(this.clock.now()));
    entry.limiter = limiter;
    return limiter;
  }

  private sweepIfQuiet(entry: RateKey): void {
    if (entry.heapIndex < 0 && entry.quiet) {
      const now = this.clock.now();
      this.sweeper.schedule(entry, entry.idleAt(now), now);
    }
  }

  /** Makes the light state of `key` and joins it to its level instances. Throws for a bad level key. */
  protected create(key: string): RateKey {
    if (this.levels.length === 0)
      return this.made(new RateKey(this, key, this.template.freshBuckets(), NO_SHARED, NO_LEVELS));
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
    const shared = instances.flatMap((instance) => instance.shared);
    return this.made(new RateKey(this, key, this.template.freshBuckets(), shared, instances));
  }

  /** A new key: full from the start when its concurrency adapts (the light path has no estimator). */
  private made(entry: RateKey): RateKey {
    if (this.auto) this.full(entry);
    return entry;
  }

  /** What messages call `key`'s limiter. */
  private subjectOf(key: string): string {
    return `${keyedKind("rate limiter", this.name)} ${JSON.stringify(key)}`;
  }

  private subject(): string {
    return this.name === undefined ? "the keyed rate limiter" : `keyed rate limiter ${JSON.stringify(this.name)}`;
  }
}

/** Options that keep `acquire`/`run` off the light path (a `run` whose `fn` is not a function). */
const NOT_LIGHT: RateAcquireOptions = {};

/** Whether someone listens to the acquire or hold diagnostics: then every key has its full limiter, which reports them. */
function listened(): boolean {
  return acquireChannel.hasSubscribers || holdChannel.hasSubscribers;
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
