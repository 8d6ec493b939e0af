/**
 * The one permit and the one `run`: every Limiter's permits share the held flag, the release-twice
 * error and disposal; every Limiter's `run` calls its function the same way and releases the same way.
 */
import { endHold, type HoldEvent, holdChannel, type LimiterIdentity, startHold } from "./diagnostics.js";
import { defineDisposeSymbols } from "./dispose.js";
import { ReleasedError } from "./errors.js";
import type { Permit } from "./limiter.js";

defineDisposeSymbols();

/**
 * Gives a permit's weight back to its owner: one function per owner (made once, in its constructor),
 * not a closure per permit. Called exactly once per permit.
 */
export type GiveBack<P, Released extends void | Promise<void>> = (permit: P) => Released;

/**
 * A permit as every Limiter hands it out. `Released` is what `release()` returns: nothing for an
 * in-process permit, a promise for a distributed one (its release is a round trip, and may report a
 * lost lease).
 *
 * Invariant: `giveBack` is called exactly once, by the first `release()` or disposal; `isHeld` is true
 * until then.
 */
export class HeldPermit<Released extends void | Promise<void> = void> implements Permit {
  // Fields are declared, not initialised in the class body: plain stores in the constructor make the
  // cheapest object V8 knows, and an uncontended `run` makes one per call.
  /** How many permits this grant holds. */
  declare readonly weight: number;
  declare private held: boolean;
  declare private readonly workSignal: AbortSignal;
  declare private readonly giveBack: GiveBack<never, Released>;
  /** Its `sluice:hold` event, when someone listened at the grant. */
  declare private hold: HoldEvent | undefined;
  /**
   * @param limiter - what its `sluice:hold` events name; without it (a Pool's lease) it publishes none.
   */
  constructor(weight: number, signal: AbortSignal, giveBack: GiveBack<never, Released>, limiter?: LimiterIdentity) {
    this.weight = weight;
    this.held = true;
    this.workSignal = signal;
    this.giveBack = giveBack;
    this.hold = limiter !== undefined && holdChannel.hasSubscribers ? startHold(limiter, weight) : undefined;
  }

  /** Whether `release()` returns a promise to wait for (a distributed permit). */
  get releasesAsync(): boolean {
    return false;
  }

  /** Fires when the work this permit admits should stop (see {@link Permit.signal}). */
  get signal(): AbortSignal {
    return this.workSignal;
  }

  /** Whether the permit is still held (not released, not disposed). */
  get isHeld(): boolean {
    return this.held;
  }

  /** Gives the permit back. Throws `ReleasedError` if it was already released. */
  release(): Released {
    if (!this.held) throw new ReleasedError(`this permit (weight ${this.weight}) was already released`);
    this.held = false;
    if (this.hold !== undefined) endHold(this.hold);
    return (this.giveBack as GiveBack<this, Released>)(this);
  }

  /** @internal Releases if still held: what `run` does once the work settled. */
  releaseIfHeld(): void {
    if (!this.held) return;
    this.held = false;
    if (this.hold !== undefined) endHold(this.hold);
    (this.giveBack as GiveBack<this, Released>)(this);
  }

  /** @internal Releases if still held, then returns `value`: `run`'s reaction to the work's result. */
  releaseWith<T>(value: T): T {
    this.releaseIfHeld();
    return value;
  }

  /** @internal Releases if still held, then throws `error`: `run`'s reaction to the work's failure. */
  releaseRethrowing(error: unknown): never {
    this.releaseIfHeld();
    throw error;
  }

  /** Releases if still held; a no-op otherwise. A release that fails asynchronously is not reported. */
  [Symbol.dispose](): void {
    if (!this.held) return;
    const released = this.release();
    if (released !== undefined) (released as Promise<void>).catch(() => undefined);
  }

  /** Releases if still held, and waits for it (a distributed release may reject: a lost lease). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.held ? Promise.resolve(this.release()) : Promise.resolve();
  }
}

/**
 * Runs `fn(permit.signal, permit)` on a granted permit and releases the permit when the result settles
 * — returned, thrown (also synchronously) or rejected — before the caller sees the result. `fn` is
 * called in this same step, so it runs in the caller's async context (AsyncLocalStorage). A release
 * that rejects (a distributed permit whose lease was lost) rejects the run, even if `fn` succeeded;
 * a permit `fn` released itself is not released again.
 */
export function runHolding<T, P extends Permit>(
  fn: (signal: AbortSignal, permit: P) => T | PromiseLike<T>,
  permit: P,
): Promise<T> {
  if ((permit as { releasesAsync?: boolean }).releasesAsync === false) {
    return runHeld(
      fn as unknown as (signal: AbortSignal, permit: HeldPermit) => T | PromiseLike<T>,
      permit as unknown as HeldPermit,
    );
  }
  let result: T | PromiseLike<T>;
  try {
    result = fn(permit.signal, permit);
  } catch (error) {
    return releaseAfter(permit, error);
  }
  return result instanceof Promise
    ? result.then(
        (value: T) => releaseThen(permit, value),
        (error: unknown) => releaseAfter(permit, error),
      )
    : releaseThen(permit, result as T);
}

/**
 * {@link runHolding} for an in-process permit (a {@link HeldPermit} whose release returns nothing): what
 * a Semaphore's uncontended `run` calls directly, without the checks that tell the kinds of permit apart.
 */
export function runHeld<T>(
  fn: (signal: AbortSignal, permit: HeldPermit) => T | PromiseLike<T>,
  permit: HeldPermit,
): Promise<T> {
  let result: T | PromiseLike<T>;
  try {
    result = fn(permit.signal, permit);
  } catch (error) {
    return releaseAfter(permit, error);
  }
  return releaseOnSettle(result, permit);
}

/**
 * An in-process permit's release is synchronous: it is the reaction that turns the work's result into
 * the caller's, so it happens before the caller sees the result. The caller gets a promise of its own,
 * not the work's: a failure nobody handles is then reported as an unhandled rejection, as a queued
 * `run`'s is (the work's own promise has this reaction, which would silence it).
 *
 * The reactions are the permit's methods bound to it rather than arrow functions: a bound function is
 * one object of 48 bytes where a closure is two (the function and its context), and an uncontended
 * `run` makes them per call (bench/RESULTS.md, "Uncontended run(noop)").
 */
function releaseOnSettle<T>(result: T | PromiseLike<T>, permit: HeldPermit): Promise<T> {
  const settled = result instanceof Promise ? (result as Promise<T>) : Promise.resolve(result);
  return settled.then(permit.releaseWith.bind(permit) as (value: T) => T, permit.releaseRethrowing.bind(permit));
}

/** Releases (waiting for a distributed release, which may reject), then returns `value`. */
async function releaseThen<T>(permit: Permit, value: T): Promise<T> {
  if (isHeld(permit)) await permit.release();
  return value;
}

/** Releases after `fn` failed, then rethrows its error (a failed release is not allowed to hide it). */
async function releaseAfter(permit: Permit, error: unknown): Promise<never> {
  if (isHeld(permit)) {
    try {
      await permit.release();
    } catch {
      // fn's error is what the caller needs; a distributed permit reports a lost lease through its signal.
    }
  }
  throw error;
}

function isHeld(permit: Permit): boolean {
  return (permit as unknown as { isHeld?: boolean }).isHeld !== false;
}
