/**
 * What one process keeps once per semaphore, however many keys it uses: its lease (one lease covers
 * every permit and ticket of the process, on every key), the heartbeat that renews it, the check-ins,
 * and the one subscription to its grant notices.
 *
 * A RedisSemaphore is one key; a RedisKeyedSemaphore has a {@link SemaphoreKey} for each key it holds or
 * waits on. The heartbeat is one script over all those keys (in chunks of {@link CHECK_IN_CHUNK}), not one
 * per key, and a notice names the key it is for, so one channel serves them all.
 *
 * The lease is good locally until a conservative deadline on the monotonic clock (see
 * {@link LocalLease}), checked where it matters, synchronously: a permit's `leaseLost`, `signal` and
 * `release()`, and every grant before it is handed over. A process frozen past its lease (a GC pause,
 * a VM stall, SIGSTOP) thus learns it lost its permits at its first look after it thaws, before any
 * timer has had a chance to run.
 */

import type { TimerHandle } from "../core/clock.js";
import { LeaseLostError } from "../core/errors.js";
import { withDeadline } from "./errors.js";
import { LocalLease } from "./lease.js";
import { redisNumber, type SemaphoreContext, type SemaphoreSettings } from "./semaphore-context.js";
import type { SemaphoreKey } from "./semaphore-key.js";
import type { CheckInSnapshot } from "./semaphore-leases.js";
import type { TicketCounts } from "./semaphore-tickets.js";

/** The most keys one check-in script covers; more go in further scripts, one after the other. */
export const CHECK_IN_CHUNK = 256;

/** How a semaphore finds its keys: the ones live in this process, and the one a notice names. */
export interface KeyDirectory {
  /** Every key live in this process. */
  keys(): Iterable<SemaphoreKey>;
  /** The key a notice's label names, if live (see `SemaphoreContext.label`). */
  find(label: string): SemaphoreKey | undefined;
  /** Where a key that is not live lives, to give back a grant made to it. */
  locate(label: string): SemaphoreContext;
}

/** The lease, heartbeat, check-ins and notice subscription of one process on one semaphore. */
export class ProcessLease implements TicketCounts {
  /** What this process knows of its lease. */
  private readonly lease: LocalLease;
  /** Permits held under the lease, on every key. */
  held = 0;
  /** See {@link TicketCounts}. */
  lastId = 0;
  waiting = 0;
  inRedis = 0;
  private heartbeatTimer: TimerHandle | undefined;
  private heartbeating = false;
  /** A check-in was asked for while a heartbeat was in flight: run one more when it ends. */
  private heartbeatAgain = false;
  /** The safety net while requests wait in Redis: a check-in at most `wakeTimeout` (or `checkBy`) away. */
  private checkTimer: TimerHandle | undefined;
  /** Local time by which a waiting process should check in (the earliest other lease end, the restart guard). */
  private checkBy = Number.POSITIVE_INFINITY;
  /** While `close()` waits for holders: called each time `held` drops to 0. */
  private onAllReleased: (() => void) | undefined = undefined;
  /** Settles when the subscription is confirmed; undefined before the first try or after one failed. */
  private subscription: Promise<void> | undefined;
  /** Whether the subscription is confirmed: requests go out at once from then on. */
  private subscribed = false;

  constructor(
    readonly settings: SemaphoreSettings,
    private readonly directory: KeyDirectory,
    /** What errors about the whole semaphore call it. */
    private readonly subject: () => string,
  ) {
    // The watchdog fires at the deadline: the permits are lost if no renewal moved it, and it re-arms.
    this.lease = new LocalLease(settings.leaseMs, settings.clock, () => {
      this.checkLease();
      this.armWatchdog();
    });
  }

  // ---- the local lease ----------------------------------------------------------------------------

  /** Milliseconds left before the local lease deadline. */
  remaining(): number {
    return this.lease.remaining();
  }

  /** Whether a script sent at `sentAt` must (re)write the lease (see {@link LocalLease.mustRegister}). */
  mustRegister(sentAt: number): boolean {
    return this.lease.mustRegister(sentAt);
  }

  /** Whether the lease is good now by the local deadline. */
  current(): boolean {
    return this.lease.current();
  }

  /** A script sent at `sentAt` wrote the lease. */
  written(sentAt: number): void {
    this.lease.written(sentAt);
    this.armWatchdog();
  }

  /**
   * The synchronous check behind a permit's `leaseLost` and `signal`: if the local deadline has passed
   * (the process was frozen, or Redis could not be reached in time), the lease may have lapsed, so
   * every permit held on every key is lost now, before any timer has run, and the tickets queue again.
   */
  checkLease(): void {
    if ((this.held === 0 && this.inRedis === 0) || this.lease.current() || this.settings.gone) return;
    const late = Math.round(this.lease.age());
    this.lapse(
      new LeaseLostError(
        `the lease on ${this.subject()} may have lapsed: it was last renewed ${late} ms ago, and the lease is ${this.lease.ms} ms (the process was frozen, or Redis could not be reached in time)`,
      ),
    );
    // Renew at once: callers still waiting here need a lease again.
    this.checkInSoon();
  }

  /**
   * Our lease ended or may have: on every key, permits are lost and tickets queue again (those on the
   * keys in `evicted` were evicted by Redis already; the others are taken out of its queues).
   */
  private lapse(error: LeaseLostError, evicted?: ReadonlySet<SemaphoreKey>): void {
    for (const key of [...this.directory.keys()]) key.leases.lapse(error, evicted?.has(key) ?? false);
  }

  /** A permit was granted (`+1`) or left the lease (`-1`). */
  holding(change: 1 | -1): void {
    this.held += change;
    if (change === 1) {
      this.scheduleHeartbeat();
      this.armWatchdog();
    } else if (this.held === 0) {
      this.onAllReleased?.();
    }
  }

  /** The lease's watchdog runs while permits are held (see {@link LocalLease.watch}). */
  private armWatchdog(): void {
    this.lease.watch(this.held > 0 && !this.settings.gone);
  }

  /** The restart guard held a request back: check in once a lease has passed. */
  guardHolds(): void {
    this.checkBy = Math.min(this.checkBy, this.settings.clock.now() + this.lease.ms);
  }

  // ---- notices ------------------------------------------------------------------------------------

  /** Whether the subscription to grant notices is confirmed. */
  get listening(): boolean {
    return this.subscribed;
  }

  /**
   * Subscribes to this process's grant notices, once (again after a failed try); resolves when Redis
   * has confirmed it. After a reconnect (ioredis subscribes again by itself) the process checks in at
   * once: notices published while the connection was down are lost, the grants they told of are not.
   */
  subscribe(): Promise<void> {
    if (this.subscription !== undefined) return this.subscription;
    const { settings } = this;
    const subscribing = settings.notices.listen(
      settings.wakeKey,
      (notice) => this.onNotice(notice),
      () => this.checkInSoon(),
      settings.sharded,
    );
    this.subscription = withDeadline(
      subscribing,
      settings.commandMs,
      `subscribing to grant notices of ${this.subject()}`,
    ).then(
      () => {
        if (settings.closed) settings.notices.leave(settings.wakeKey);
        else this.subscribed = true;
      },
      (error: unknown) => {
        // The next request tries again.
        this.subscription = undefined;
        settings.notices.leave(settings.wakeKey);
        throw error;
      },
    );
    return this.subscription;
  }

  /** `close()`: no more notices. */
  stopListening(): void {
    this.settings.notices.leave(this.settings.wakeKey);
  }

  /** A grant notice: `<ticket>:<token>:<slots>:<label>` (the label names the key; older scripts omit it). */
  private onNotice(notice: string): void {
    const first = notice.indexOf(":");
    const second = notice.indexOf(":", first + 1);
    const third = notice.indexOf(":", second + 1);
    const label = third < 0 ? "" : notice.slice(third + 1);
    const slots = notice.slice(second + 1, third < 0 ? undefined : third);
    this.deliver(label, Number(notice.slice(0, first)), Number(notice.slice(first + 1, second)), slots);
  }

  /**
   * A grant of ticket `id` on the key `label` names: to its key if live here, otherwise given back (its
   * caller left and the key went idle), with whatever that release grants to this process in turn.
   */
  deliver(label: string, id: number, token: number, slots: unknown): void {
    const key = this.directory.find(label);
    if (key !== undefined) {
      key.grants.onGrant(id, token, slots);
      return;
    }
    if (token === 0 || this.settings.gone) return;
    const context = this.directory.locate(label);
    context.call(context.scripts.release, [redisNumber(token)], "release").then(
      (reply) => {
        const grants = reply as unknown[];
        for (let index = 1; index + 2 < grants.length; index += 3) {
          this.deliver(label, grants[index] as number, grants[index + 1] as number, grants[index + 2]);
        }
      },
      // If Redis is unreachable, the lease returns it later.
      () => undefined,
    );
  }

  // ---- heartbeats and check-ins -------------------------------------------------------------------

  /** Whether anything is held or waited for, on any key. */
  private active(): boolean {
    if (this.settings.gone) return false;
    if (this.held > 0 || this.waiting > 0) return true;
    for (const key of this.directory.keys()) if (key.leases.active()) return true;
    return false;
  }

  /** Keeps one heartbeat timer, a third of the lease away, while anything is held or waited for. */
  scheduleHeartbeat(): void {
    if (this.heartbeatTimer !== undefined || !this.active()) return;
    const clock = this.settings.clock;
    this.heartbeatTimer = clock.setTimeout(() => {
      this.heartbeatTimer = undefined;
      void this.heartbeat().finally(() => this.scheduleHeartbeat());
    }, this.lease.ms / 3);
    // Housekeeping: it stops on its own once nothing is held or waited for, but only when it next
    // fires; until then it must not keep a process alive that has finished (and disconnected its client).
    clock.unref?.(this.heartbeatTimer);
  }

  /** Keeps one check-in timer while requests wait in Redis: the safety net for a notice that was lost. */
  armCheck(): void {
    const { settings } = this;
    if (this.checkTimer !== undefined || this.inRedis === 0 || settings.closed) return;
    const delay = Math.max(10, Math.min(settings.wakeMs, this.checkBy - settings.clock.now()));
    this.checkTimer = settings.clock.setTimeout(() => {
      this.checkTimer = undefined;
      if (this.inRedis === 0 || settings.closed) return;
      void this.heartbeat().then((error) => {
        // Callers waiting on a Redis that cannot be reached learn it now, as onUnavailable says.
        if (error !== undefined && this.inRedis > 0) {
          for (const key of [...this.directory.keys()]) key.requests.failWaiters(error);
        }
        this.armCheck();
      });
    }, delay);
  }

  /** A heartbeat now, or right after the one in flight (which may have read Redis too early). */
  checkInSoon(): void {
    if (this.settings.gone || (this.waiting === 0 && this.held === 0)) return;
    if (this.heartbeating) this.heartbeatAgain = true;
    else void this.heartbeat();
  }

  /**
   * Renews this process's lease, evicts dead processes, dispatches, on every key held or waited on here;
   * learns whether our lease was lost, and squares what Redis holds for us with what we believe (see
   * `Leases.checkedIn`). Resolves with the failure, if any.
   */
  private async heartbeat(): Promise<unknown> {
    const { settings } = this;
    if (this.heartbeating || settings.gone) return undefined;
    this.heartbeating = true;
    const sentAt = settings.clock.now();
    let failure: unknown;
    try {
      const all = [...this.directory.keys()];
      const keys = all.filter((key) => key.leases.active());
      // A heartbeat due when nothing is held any more still renews (and refreshes the keys' expiry).
      if (keys.length === 0 && all[0] !== undefined) keys.push(all[0]);
      let lost = false;
      let checkIn = Number.POSITIVE_INFINITY;
      for (let from = 0; from < keys.length; from += CHECK_IN_CHUNK) {
        const chunk = keys.slice(from, from + CHECK_IN_CHUNK);
        const { names, snapshots, list } = this.checkingIn(chunk);
        // Awaited here, not in a helper: replies are read in the order Redis ran the scripts only when
        // every caller is the same number of steps from the reply (an acquire's grant that Redis made
        // after this check-in must not be read before the check-in's "lost").
        const reply = (await settings.call(
          settings.scripts.heartbeat,
          names,
          ["renew", list],
          "heartbeat",
          this.subject,
        )) as unknown[];
        const [lostNow, now, earliestOther] = reply as number[];
        if (lostNow === 1 && !lost) {
          // Everything of ours, on every key, is queued again. Redis evicted it on this chunk's keys; on
          // others (keys of later chunks, or not held then), the tokens and tickets go back one by one.
          lost = true;
          this.lease.written(sentAt);
          const evicted = new Set(chunk);
          this.lapse(new LeaseLostError(`the lease on ${this.subject()} ended before it was renewed`), evicted);
        }
        this.written(sentAt);
        if ((earliestOther as number) > 0) {
          checkIn = Math.min(checkIn, ((earliestOther as number) - (now as number)) / 1000 + 1);
        }
        let at = 4;
        for (const [index, key] of chunk.entries()) {
          const guardUntil = reply[at] as number;
          if (guardUntil > 0) checkIn = Math.min(checkIn, (guardUntil - (now as number)) / 1000 + 1);
          at = key.leases.checkedIn(reply, at, snapshots[index] as CheckInSnapshot, lostNow === 1, now as number);
        }
      }
      this.checkBy = settings.clock.now() + Math.max(0, checkIn);
    } catch (error) {
      // Unreachable: the watchdog ends the leases when the deadline passes; waiters hear of it from
      // the check-in that called (see armCheck).
      failure = error;
    } finally {
      this.heartbeating = false;
    }
    // `checkBy` may have moved closer: the check-in timer follows it.
    if (this.checkTimer !== undefined) {
      settings.clock.clearTimeout(this.checkTimer);
      this.checkTimer = undefined;
    }
    this.armCheck();
    if (this.heartbeatAgain) {
      this.heartbeatAgain = false;
      if (failure === undefined) return this.heartbeat();
    }
    return failure;
  }

  /** The keys (see HEARTBEAT) and what each of `keys` believes as a check-in over them is sent. */
  private checkingIn(keys: readonly SemaphoreKey[]): {
    names: string[];
    snapshots: CheckInSnapshot[];
    list: string;
  } {
    const names: string[] = [];
    let list = "";
    const snapshots = keys.map((key, index) => {
      const [meta, queue, clients] = key.context.keys;
      if (index === 0) names.push(meta, queue, clients);
      else names.push(meta, queue);
      const snapshot = key.leases.checkingIn();
      list += snapshot.listQueued ? "1" : "0";
      return snapshot;
    });
    return { names, snapshots, list };
  }

  // ---- closing ------------------------------------------------------------------------------------

  /**
   * Leaves, on every key: stops admitting at once (waiters reject with ClosedError), asks the holders
   * to stop, waits up to `timeout` ms for them to release, then gives back the permits still held (they
   * are lost), removes this process's entries from Redis and stops listening.
   */
  async close(timeout: number): Promise<void> {
    const { settings } = this;
    settings.closed = true;
    const keys = [...this.directory.keys()];
    // The keys where Redis may have entries of ours: those held or waited on (or else the first key,
    // so that a RedisSemaphore always leaves; a keyed one then only marks its lease ended).
    const touched = keys.filter((key) => key.leases.active()).map((key) => key.context);
    for (const key of keys) key.shut();
    if (this.held > 0) await this.drain(keys, timeout);
    settings.gone = true;
    for (const key of keys) key.abandon(timeout);
    this.stopTimers();
    if (touched.length === 0) touched.push(this.directory.locate(""));
    try {
      for (let from = 0; from < touched.length; from += CHECK_IN_CHUNK) {
        const names = touched.slice(from, from + CHECK_IN_CHUNK).flatMap((context, index) => {
          const [meta, queue, clients] = context.keys;
          return index === 0 ? [meta, queue, clients] : [meta, queue];
        });
        await settings.call(settings.scripts.heartbeat, names, ["leave", "0"], "close", this.subject);
      }
    } catch {
      // Our lease runs out on its own.
    }
    this.stopListening();
  }

  /** Asks the holders on `keys` to stop and resolves when none is held here any more, or after `timeout` ms. */
  private drain(keys: readonly SemaphoreKey[], timeout: number): Promise<void> {
    for (const key of keys) key.leases.askToStop(key.stopping());
    return new Promise<void>((resolve) => {
      const timer = this.settings.clock.setTimeout(done, timeout);
      const self = this;
      function done(): void {
        self.settings.clock.clearTimeout(timer);
        self.onAllReleased = undefined;
        resolve();
      }
      this.onAllReleased = done;
    });
  }

  /** Stops every timer of the lease (`close()`; tests, to play a process that crashed). */
  stopTimers(): void {
    const clock = this.settings.clock;
    if (this.heartbeatTimer !== undefined) clock.clearTimeout(this.heartbeatTimer);
    this.lease.stop();
    if (this.checkTimer !== undefined) clock.clearTimeout(this.checkTimer);
    this.checkTimer = undefined;
    this.heartbeatTimer = undefined;
  }
}
