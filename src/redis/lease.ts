/**
 * What one process knows of its lease in Redis: a conservative local deadline on the monotonic clock,
 * and the watchdog that acts on it.
 *
 * One lease per process (per semaphore) covers all its permits and tickets. Redis counts it from when the
 * request that wrote it *arrived*; this process counts from when that request was *sent*, minus a margin
 * for clocks that run at different rates, so it always gives up first. The deadline is checked where it
 * matters, synchronously (see `Leases.checkLease`); the watchdog is for work that only listens to
 * its signal.
 */
import type { Clock, TimerHandle } from "../core/clock.js";

export class LocalLease {
  /** Local time the last lease write was *sent*; the lease is good until this + ms - margin. */
  private sentAt = Number.NEGATIVE_INFINITY;
  private watchdog: TimerHandle | undefined = undefined;

  constructor(
    /** The lease, in ms (`leaseTtl`). */
    readonly ms: number,
    private readonly clock: Clock,
    /** Called when the watchdog finds the deadline passed. */
    private readonly onDeadline: () => void,
  ) {}

  /** Whether the next script must (re)write the lease: a third of it has passed since the last write. */
  mustRegister(now: number): boolean {
    return now - this.sentAt > this.ms / 3;
  }

  /** A request sent at `sentAt` wrote the lease (it was answered, or a grant proves it ran). */
  written(sentAt: number): void {
    if (sentAt > this.sentAt) this.sentAt = sentAt;
  }

  /** The local time after which this process must assume Redis gave its permits away. */
  deadline(): number {
    return this.sentAt + this.ms - (this.ms / 50 + 5);
  }

  /** Whether the lease is good now by the local deadline. */
  current(): boolean {
    return this.clock.now() < this.deadline();
  }

  /** Milliseconds left before the local deadline (0 once it has passed). */
  remaining(): number {
    return Math.max(0, this.deadline() - this.clock.now());
  }

  /** Milliseconds since the last write was sent. */
  age(): number {
    return this.clock.now() - this.sentAt;
  }

  /**
   * Keeps one watchdog timer at the deadline while `needed` (permits are held): if no renewal moved the
   * deadline by the time it fires, `onDeadline` runs; either way it re-arms through the next `watch`.
   * Arming it once rather than on every grant and renewal keeps timers off the hot path.
   */
  watch(needed: boolean): void {
    if (!needed) {
      this.stop();
      return;
    }
    if (this.watchdog !== undefined) return;
    this.watchdog = this.clock.setTimeout(() => {
      this.watchdog = undefined;
      this.onDeadline();
    }, this.remaining());
    // It outlives the last release by up to a lease; it must not keep a finished process alive.
    this.clock.unref?.(this.watchdog);
  }

  stop(): void {
    if (this.watchdog !== undefined) this.clock.clearTimeout(this.watchdog);
    this.watchdog = undefined;
  }
}
