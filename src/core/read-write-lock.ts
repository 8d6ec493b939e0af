/**
 * ReadWriteLock: many readers or one writer, on the one admission step and wait queue. Readers and
 * writers wait in one queue, served in order (by priority, then arrival) with the head blocking those
 * behind it, so a waiting writer holds back the readers that come after it, as Go's `sync.RWMutex`
 * does: a stream of readers cannot starve a writer.
 */
import { Admission, type LimiterStatistics } from "./admission.js";
import { checkClock, checkFunction, checkName, checkOptionNames } from "./arguments.js";
import { systemClock } from "./clock.js";
import { describe } from "./describe.js";
import { defaultAbortReason } from "./errors.js";
import { type Limiter, NEVER_ABORTED, type Permit } from "./limiter.js";
import type { LockOptions } from "./mutex.js";
import { HeldPermit, runHolding } from "./permit.js";
import { SEMAPHORE_OPTIONS, type SemaphoreOptions } from "./semaphore.js";
import { checkAcquireOptions } from "./wait-options.js";

/** What a waiter asks for: to read, or to write. */
type Access = 0 | 1;
const READ: Access = 0;
const WRITE: Access = 1;

/**
 * A snapshot of a {@link ReadWriteLock}. The core fields speak of the lock as a whole, as a lock's do:
 * `capacity` 1, `inUse` 1 while readers or a writer hold it; `readers` and `writing` say which.
 */
export interface ReadWriteLockStatistics extends LimiterStatistics {
  /** Readers holding the lock now. */
  readers: number;
  /** Whether a writer holds the lock now. */
  writing: boolean;
  /** Writers among the waiting callers. */
  waitingWriters: number;
}

/**
 * Many readers at once, or one writer alone.
 *
 * Use it for state that many may read at once but only one may change, with no reader during the
 * change: a cache refreshed in place, a config reloaded, a file rewritten. A writer waiting holds back the
 * readers that arrive after it (writer preference, as Go's `sync.RWMutex`), so writers are not starved;
 * readers that arrived before it still go first. Abort, timeout and priority as on every Limiter.
 *
 * @example
 * ```ts
 * import { ReadWriteLock } from "sluice";
 * const lock = new ReadWriteLock();
 * const value = await lock.runRead(() => cache.get(key));
 * await lock.runWrite(async () => cache.replace(await load()));
 * ```
 */
export class ReadWriteLock {
  /** Optional name, used in error messages and statistics. */
  readonly name: string | undefined;
  /** The lock's read side as a plain {@link Limiter}: `acquire` and `run` take it for reading. */
  readonly reader: Limiter<LockOptions>;
  /** The lock's write side as a plain {@link Limiter}: `acquire` and `run` take it for writing. */
  readonly writer: Limiter<LockOptions>;
  /** Readers holding the lock. Invariant: `readingNow > 0` implies `!writingNow`. */
  private readingNow = 0;
  private writingNow = false;
  private readonly admission: Admission<Access, Permit>;
  private readonly giveBackRead = (): void => {
    this.readingNow--;
    if (this.readingNow === 0) this.admission.dispatch();
  };
  private readonly giveBackWrite = (): void => {
    this.writingNow = false;
    this.admission.dispatch();
  };

  /**
   * @param options - `name` (in error messages and statistics) and `clock` (time source for timeouts).
   * @throws TypeError for options that are not an object, an unknown option, a bad name or clock.
   */
  constructor(options: SemaphoreOptions = {}) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`options must be an object; got ${describe(options)}`);
    }
    checkOptionNames(options, SEMAPHORE_OPTIONS, "the new ReadWriteLock() options");
    this.name = checkName(options.name);
    this.admission = new Admission<Access, Permit>(
      {
        impossible: () => undefined,
        fits: (access) => this.fits(access),
        take: (access, signal) => {
          if (access === READ) {
            this.readingNow++;
            return new HeldPermit(1, signal, this.giveBackRead);
          }
          this.writingNow = true;
          return new HeldPermit(1, signal, this.giveBackWrite);
        },
      },
      checkClock(options.clock) ?? systemClock,
      () => this.subject(),
    );
    this.reader = { acquire: (o) => this.read(o), run: (fn, o) => this.runRead(fn, o) };
    this.writer = { acquire: (o) => this.write(o), run: (fn, o) => this.runWrite(fn, o) };
  }

  /** Readers holding the lock now. */
  get readers(): number {
    return this.readingNow;
  }

  /** Callers waiting, readers and writers. */
  get waiting(): number {
    return this.admission.queue.size;
  }

  /** Whether a writer holds the lock. */
  isWriteLocked(): boolean {
    return this.writingNow;
  }

  /**
   * Waits to read: at once if no writer holds the lock and nobody waits ahead (a waiting writer is
   * ahead). Rejects (never throws) for bad options, with `signal.reason` or a `TimeoutError`.
   */
  read(options?: LockOptions): Promise<Permit> {
    return this.admit(READ, options);
  }

  /** Waits to write: once no reader or writer holds the lock and those ahead were served. */
  write(options?: LockOptions): Promise<Permit> {
    return this.admit(WRITE, options);
  }

  /** Reads if that is possible now without passing anyone waiting; otherwise `undefined`. */
  tryRead(): Permit | undefined {
    return this.tryNow(READ);
  }

  /** Writes if the lock is free and nobody waits; otherwise `undefined`. */
  tryWrite(): Permit | undefined {
    return this.tryNow(WRITE);
  }

  /** Runs `fn` holding the lock for reading, and releases when it settles. */
  runRead<T>(fn: (signal: AbortSignal, permit: Permit) => T | PromiseLike<T>, options?: LockOptions): Promise<T> {
    return this.runAs(READ, fn, options);
  }

  /** Runs `fn` holding the lock for writing, and releases when it settles. */
  runWrite<T>(fn: (signal: AbortSignal, permit: Permit) => T | PromiseLike<T>, options?: LockOptions): Promise<T> {
    return this.runAs(WRITE, fn, options);
  }

  /** A snapshot of the state and lifetime counters. */
  statistics(): ReadWriteLockStatistics {
    let waitingWriters = 0;
    this.admission.queue.forEachRequest((access) => {
      if (access === WRITE) waitingWriters++;
    });
    const inUse = this.writingNow || this.readingNow > 0 ? 1 : 0;
    return {
      name: this.name,
      capacity: 1,
      available: 1 - inUse,
      inUse,
      waiting: this.admission.queue.size,
      ...this.admission.counters,
      readers: this.readingNow,
      writing: this.writingNow,
      waitingWriters,
    };
  }

  /** Rejects every waiter with `reason` (default: an `AbortError`); holders keep the lock. */
  clear(reason: unknown = defaultAbortReason()): void {
    this.admission.rejectAll(reason);
  }

  /** @internal Throws an Error naming the first broken invariant (model tests). */
  assertInvariants(): void {
    this.admission.assertInvariants();
    if (this.readingNow < 0 || (this.readingNow > 0 && this.writingNow)) {
      throw new Error(`read-write lock invariant broken: ${this.readingNow} readers with a writer ${this.writingNow}`);
    }
    const head = this.admission.queue.head;
    if (head !== undefined && this.fits(head.request)) {
      throw new Error("read-write lock invariant broken: the head waits though it could enter");
    }
  }

  private subject(): string {
    return this.name === undefined ? "the read-write lock" : `read-write lock ${JSON.stringify(this.name)}`;
  }

  /** Whether `access` may enter now, as far as the holders go: a reader unless a writer holds it; a writer alone. */
  private fits(access: Access): boolean {
    return !this.writingNow && (access === READ || this.readingNow === 0);
  }

  private admit(access: Access, options: LockOptions | undefined): Promise<Permit> {
    try {
      // The acquire options, so that code written for any Limiter (a cost, a weight of 1) passes.
      const checked = checkAcquireOptions(options);
      if (checked.weight !== 1) {
        throw new RangeError(
          `weight must be 1 on ${this.subject()}: it has readers and a writer, not permits; got ${checked.weight}`,
        );
      }
      const outcome = this.admission.admit(access, checked);
      return outcome instanceof Promise ? outcome : Promise.resolve(outcome);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private runAs<T>(
    access: Access,
    fn: (signal: AbortSignal, permit: Permit) => T | PromiseLike<T>,
    options: LockOptions | undefined,
  ): Promise<T> {
    try {
      checkFunction(fn, "fn");
    } catch (error) {
      return Promise.reject(error);
    }
    return this.admit(access, options).then((permit) => runHolding(fn, permit));
  }

  private tryNow(access: Access): Permit | undefined {
    if (!this.admission.queue.isFirstInLine(0) || !this.fits(access)) return undefined;
    this.admission.grantedNow();
    if (access === READ) this.readingNow++;
    else this.writingNow = true;
    return new HeldPermit(1, NEVER_ABORTED, access === READ ? this.giveBackRead : this.giveBackWrite);
  }
}
