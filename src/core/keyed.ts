/**
 * What every keyed primitive shares: one unkeyed primitive per live key, made on first use and dropped
 * once it is idle, so that memory follows the keys in use, not every key ever seen; the lifetime
 * counters of dropped keys kept; and a sweeper that forgets keys whose idleness comes with time (a rate
 * limit that must refill first) on one timer for all of them.
 */
import type { LimiterCounters, LimiterStatistics } from "./admission.js";
import type { Clock, TimerHandle } from "./clock.js";
import { DeadlineHeap, type HeapEntry } from "./deadline-heap.js";
import { describe } from "./describe.js";

/** The longest key accepted, in UTF-16 code units: a key is an id, not a payload kept per limiter. */
export const MAX_KEY_LENGTH = 1024;

/** Checks a key: a non-empty string of at most {@link MAX_KEY_LENGTH} characters. */
export function checkKey(value: unknown, argument = "key"): string {
  if (typeof value !== "string") throw new TypeError(`${argument} must be a string; got ${describe(value)}`);
  if (value === "") throw new RangeError(`${argument} must not be empty`);
  if (value.length > MAX_KEY_LENGTH) {
    throw new RangeError(
      `${argument} must be at most ${MAX_KEY_LENGTH} characters; got one of ${value.length} starting ${JSON.stringify(value.slice(0, 32))}`,
    );
  }
  return value;
}

/** The statistics of a keyed primitive as a whole: its live keys, and the counters of every key ever. */
export interface KeyedStatistics extends LimiterCounters {
  /** The name given at construction, if any. */
  name: string | undefined;
  /**
   * The capacity of each key (what one key may hold at once); `"auto"` for a keyed rate limiter whose
   * keys adapt their concurrency (`concurrency: "auto"`: each key's current limit is in its own
   * `statistics(key)`).
   */
  capacityPerKey: number | "auto";
  /** Keys alive now: holding, waiting or (a rate limiter) not yet refilled. */
  keys: number;
  /** Weight held now, over every key. */
  inUse: number;
  /** Callers waiting now, over every key. */
  waiting: number;
}

/** What the table needs of the primitive it keeps per key. */
export interface PerKey {
  /** A snapshot of the key's state and lifetime counters. */
  statistics(): LimiterStatistics;
  /** @internal The lifetime counters alone, without the snapshot's garbage (read when a key is dropped). */
  counters?(): LimiterCounters;
}

/** A scheduled check of something that may be forgotten once time has passed. */
export interface Sweepable extends HeapEntry {
  /**
   * Forgets the entry if it may be forgotten at `now` and returns `undefined`; returns the later time to
   * look again; or `undefined` when it is busy again (whoever made it busy schedules it anew when quiet).
   */
  sweep(now: number): number | undefined;
}

/**
 * One timer for every entry that becomes forgettable with time, armed for the earliest, unref'd: a
 * process whose work is done does not stay up to forget its keys.
 */
export class Sweeper {
  private due = new DeadlineHeap<Sweepable>();
  private timer: TimerHandle | undefined = undefined;
  private timerAt = Number.POSITIVE_INFINITY;
  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
    this.run();
  };

  constructor(private readonly clock: Clock) {}

  /** How many entries wait to be looked at. */
  get size(): number {
    return this.due.size;
  }

  /**
   * Looks at `entry` at `at` (clock ms); an entry already scheduled keeps its time and is re-checked then.
   * `now` is the clock's time, when the caller has just read it.
   */
  schedule(entry: Sweepable, at: number, now = this.clock.now()): void {
    if (entry.heapIndex >= 0) return;
    if (at <= now) {
      const later = entry.sweep(now);
      if (later === undefined) return;
      at = later;
    }
    this.due.push(entry, at);
    this.arm(now);
  }

  /** Takes `entry` off the schedule (it became busy, or is forgotten another way). */
  cancel(entry: Sweepable): void {
    if (entry.heapIndex >= 0) this.due.remove(entry);
  }

  private run(): void {
    const now = this.clock.now();
    // Bounded: each entry leaves the heap once per pass; one re-scheduled for later stays beyond `now`.
    for (let entry = this.due.first; entry !== undefined && this.due.earliest <= now; entry = this.due.first) {
      this.due.remove(entry);
      const later = entry.sweep(now);
      if (later !== undefined) this.due.push(entry, Math.max(later, now + 1));
    }
    // Arrays keep their grown capacity when emptied: a million keys gone idle would otherwise leave
    // their slots behind (measured: 3 MB after 100,000 keys, 33 B a key).
    if (this.due.size === 0) this.due = new DeadlineHeap();
    this.arm(now);
  }

  private arm(now: number): void {
    const at = this.due.earliest;
    if (at === this.timerAt) return;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = at;
    if (at === Number.POSITIVE_INFINITY) return;
    this.timer = this.clock.setTimeout(this.onTimer, Math.max(0, at - now));
    this.clock.unref?.(this.timer);
  }
}

/**
 * The live keys of a keyed primitive and the counters of those dropped.
 *
 * Invariant: a key is in `live` exactly while its primitive is not idle (holding, waiting, or not yet
 * forgettable), give or take the moment between a call and the check that follows it.
 */
export class KeyTable<L extends PerKey> {
  readonly live = new Map<string, L>();
  /** The lifetime counters of keys already dropped, so that totals never go down. */
  private readonly retired: LimiterCounters = newCounters();
  /**
   * The counters of dropped keys that someone watches (a view of the key): held strongly by the watchers,
   * weakly here, so a key's counters survive its drops while a view of it exists, and no longer.
   */
  private watched: Map<string, { deref(): LimiterCounters | undefined }> | undefined = undefined;
  private forgetWatched: FinalizationRegistry<string> | undefined = undefined;

  constructor(private readonly create: (key: string) => L) {}

  /** The primitive of `key`, made now if the key is not live. */
  get(key: string): L {
    let limiter = this.live.get(key);
    if (limiter === undefined) {
      limiter = this.create(key);
      this.live.set(key, limiter);
    }
    return limiter;
  }

  /** Drops `key` if `limiter` is still its primitive, keeping its counters. */
  drop(key: string, limiter: L): void {
    if (this.live.get(key) !== limiter) return;
    this.live.delete(key);
    const counters = limiter.counters?.() ?? limiter.statistics();
    addCounters(this.retired, counters);
    const watched = this.watched?.get(key)?.deref();
    if (watched !== undefined) addCounters(watched, counters);
  }

  /**
   * The counters `key` had in its earlier lives (before drops), kept from now on while the caller holds
   * the returned object (a view of the key does).
   */
  watch(key: string): LimiterCounters {
    this.watched ??= new Map();
    const known = this.watched.get(key)?.deref();
    if (known !== undefined) return known;
    const counters = newCounters();
    // Where the runtime has no WeakRef or FinalizationRegistry (Cloudflare's workerd), a watched key's
    // counters are kept for good: a few numbers per key ever watched, rather than a crash.
    this.watched.set(key, typeof WeakRef === "function" ? new WeakRef(counters) : { deref: () => counters });
    if (typeof FinalizationRegistry !== "function") return counters;
    this.forgetWatched ??= new FinalizationRegistry((gone) => {
      if (this.watched?.get(gone)?.deref() === undefined) this.watched?.delete(gone);
    });
    this.forgetWatched.register(counters, key);
    return counters;
  }

  /** `statistics` of `key`'s limiter, with the counters of its earlier lives if someone watches them. */
  statisticsOf<S extends LimiterStatistics>(key: string, statistics: S): S {
    const earlier = this.watched?.get(key)?.deref();
    if (earlier === undefined) return statistics;
    return {
      ...statistics,
      granted: statistics.granted + earlier.granted,
      aborted: statistics.aborted + earlier.aborted,
      timedOut: statistics.timedOut + earlier.timedOut,
      rejected: statistics.rejected + earlier.rejected,
    };
  }

  /** Totals over every key, live and dropped. O(live keys). */
  statistics(name: string | undefined, capacityPerKey: number | "auto"): KeyedStatistics {
    const totals: KeyedStatistics = {
      name,
      capacityPerKey,
      keys: this.live.size,
      inUse: 0,
      waiting: 0,
      ...this.retired,
    };
    for (const limiter of this.live.values()) {
      const statistics = limiter.statistics();
      totals.inUse += statistics.inUse;
      totals.waiting += statistics.waiting;
      totals.granted += statistics.granted;
      totals.aborted += statistics.aborted;
      totals.timedOut += statistics.timedOut;
      totals.rejected += statistics.rejected;
    }
    return totals;
  }
}

/** What every keyed primitive has: its live keys, and the history of a watched key. */
export abstract class KeyedPrimitive<L extends PerKey> {
  /** @internal The live keys. */
  protected readonly table: KeyTable<L> = new KeyTable((key) => this.create(key));

  /** How many keys are live: holding, waiting or (a rate limiter) not yet refilled. */
  get size(): number {
    return this.table.live.size;
  }

  /** The live keys, in the order they became live. */
  keys(): string[] {
    return [...this.table.live.keys()];
  }

  /** @internal Keeps the counters of `key`'s earlier lives while the returned object is held. */
  watch(key: string): object {
    return this.table.watch(key);
  }

  /** Makes the primitive of a key that is not live. */
  protected abstract create(key: string): L;
}

function addCounters(to: LimiterCounters, from: LimiterCounters): void {
  to.granted += from.granted;
  to.aborted += from.aborted;
  to.timedOut += from.timedOut;
  to.rejected += from.rejected;
}

function newCounters(): LimiterCounters {
  return { granted: 0, aborted: 0, timedOut: 0, rejected: 0 };
}

/**
 * What a keyed primitive calls one of its keys in messages, without the key: `semaphore "db" key`, to
 * which the key is appended (`semaphore "db" key "alice"`).
 */
export function keyedKind(kind: string, name: string | undefined): string {
  return `${name === undefined ? kind : `${kind} ${JSON.stringify(name)}`} key`;
}
