/**
 * A clock that moves only when told to, for exact tests of anything time-based in sluice.
 */
import type { Clock, TimerHandle } from "../core/clock.js";

class FakeTimer {
  cancelled = false;
  constructor(
    readonly at: number,
    readonly order: number,
    readonly callback: () => void,
  ) {}
}

/**
 * A manual {@link Clock}: `now()` stands still until {@link FakeClock.advance} moves it, and timers fire
 * in time order (ties in creation order) as time passes them.
 *
 * @example
 * ```ts
 * import { Semaphore, TimeoutError } from "sluice";
 * import { FakeClock } from "sluice/testing";
 * const clock = new FakeClock();
 * const semaphore = new Semaphore(1, { clock });
 * const held = semaphore.tryAcquire();
 * const waiting = semaphore.acquire({ timeout: 100 });
 * await clock.advanceAsync(100); // the waiter times out, exactly at 100 ms
 * await waiting.catch((error) => error instanceof TimeoutError); // true
 * ```
 */
export class FakeClock implements Clock {
  private time: number;
  private sequence = 0;
  /** Pending timers, sorted by (at, order). */
  private timers: FakeTimer[] = [];

  constructor(start = 0) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  setTimeout(callback: () => void, ms: number): TimerHandle {
    // Like Node's timers, a NaN or negative delay means "as soon as possible". A NaN `at` would sort
    // nowhere and, at the front, keep every later timer from firing.
    // biome-ignore lint/complexity/useMathMinMax: Math.max(0, NaN) is NaN, the very value to avoid.
    const delay = ms > 0 ? ms : 0;
    const timer = new FakeTimer(this.time + delay, this.sequence++, callback);
    const timers = this.timers;
    let low = 0;
    let high = timers.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      const other = timers[middle] as FakeTimer;
      if (other.at < timer.at || (other.at === timer.at && other.order < timer.order)) low = middle + 1;
      else high = middle;
    }
    timers.splice(low, 0, timer);
    return timer;
  }

  clearTimeout(handle: TimerHandle): void {
    // Like Node's, it ignores what is not one of its timers (a handle from another clock, a number).
    if (!(handle instanceof FakeTimer) || handle.cancelled) return;
    const index = this.timers.indexOf(handle);
    // Fired already, or another clock's: nothing to do here.
    if (index === -1) return;
    handle.cancelled = true;
    this.timers.splice(index, 1);
  }

  /** Timers scheduled and not yet fired or cancelled. */
  get pendingTimers(): number {
    return this.timers.length;
  }

  /** When the next timer fires, or `undefined` if none is pending. */
  get nextTimerAt(): number | undefined {
    return this.timers[0]?.at;
  }

  /**
   * Moves time forward by `ms`, firing due timers synchronously in order. Promise callbacks queued
   * by those timers run only after this returns; use {@link FakeClock.advanceAsync} to let them run
   * between timers.
   */
  advance(ms: number): void {
    const target = this.time + checkAdvance(ms);
    for (let timer = this.timers[0]; timer !== undefined && timer.at <= target; timer = this.timers[0]) {
      this.timers.shift();
      this.time = timer.at;
      timer.callback();
    }
    this.time = target;
  }

  /**
   * Moves time forward by `ms`, firing due timers in order and letting pending promise callbacks run
   * after each one (and before the first), so async code reacts to each timer as it would in real time.
   */
  async advanceAsync(ms: number): Promise<void> {
    const target = this.time + checkAdvance(ms);
    await flushMicrotasks();
    for (let timer = this.timers[0]; timer !== undefined && timer.at <= target; timer = this.timers[0]) {
      this.timers.shift();
      this.time = timer.at;
      timer.callback();
      await flushMicrotasks();
    }
    this.time = target;
    await flushMicrotasks();
  }

  /** Advances to the next pending timer and fires it (and any due at the same instant). */
  async next(): Promise<void> {
    const at = this.nextTimerAt;
    if (at !== undefined) await this.advanceAsync(at - this.time);
  }

  /** Fires timers until none is pending, at most `limit` of them (a guard against timers that re-arm forever). */
  async runAll(limit = 100_000): Promise<void> {
    for (let fired = 0; this.timers.length > 0; fired++) {
      if (fired >= limit) throw new Error(`FakeClock.runAll: still ${this.timers.length} timers after firing ${limit}`);
      await this.next();
    }
  }
}

/** Time only moves forward: a negative step would rewind `now()`, and NaN would stop the clock for good. */
function checkAdvance(ms: number): number {
  if (typeof ms !== "number" || !(ms >= 0)) {
    throw new RangeError(`ms must be a number of milliseconds >= 0; got ${String(ms)}`);
  }
  return ms;
}

/** Lets every promise callback that is already queued (and those they queue) run. */
export async function flushMicrotasks(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
  await new Promise<void>(nextMacrotask);
}

/**
 * Calls `callback` after the tasks already queued: `setImmediate` where there is one (Node, Bun, Deno).
 * Browsers and workers have none: there a message to a fresh MessageChannel (where there is one) comes
 * first, since browsers
 * clamp a zero-delay timer to 4 ms once nested (the portable model tests flush thousands of times: 108 s
 * against 4 s in Chromium), and the timer, cancelled if the message wins, stays as the way out where a
 * message does not count as pending work (workerd ends a request that waits only for one, as hung).
 */
function nextMacrotask(callback: () => void): void {
  const setImmediate = (globalThis as { setImmediate?: (callback: () => void) => unknown }).setImmediate;
  if (setImmediate !== undefined) {
    setImmediate(callback);
    return;
  }
  if (typeof MessageChannel !== "function") {
    setTimeout(callback, 0);
    return;
  }
  const channel = new MessageChannel();
  // The web's MessagePort, which Node's types do not describe.
  const receiver = channel.port1 as unknown as { onmessage: (() => void) | null; close(): void };
  const timer = setTimeout(() => {
    receiver.close();
    callback();
  }, 0);
  receiver.onmessage = () => {
    clearTimeout(timer);
    receiver.close();
    callback();
  };
  channel.port2.postMessage(undefined);
}
