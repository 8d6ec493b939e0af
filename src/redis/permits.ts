/**
 * The permits a RedisSemaphore hands out: leased ones, whose lease this process keeps and checks, and the
 * ones the `onUnavailable` fallback grants without Redis. Both stand on the core's one permit.
 */

import { type LeaseLostEvent, type LimiterIdentity, leaseLostChannel } from "../core/diagnostics.js";
import type { LeaseLostError } from "../core/errors.js";
import type { Permit } from "../core/limiter.js";
import { NEVER_ABORTED } from "../core/limiter.js";
import { type LinkedSignal, linkSignals } from "../core/linked-signal.js";
import { type GiveBack, HeldPermit } from "../core/permit.js";

/** A permit of a {@link RedisSemaphore}. */
export interface RedisPermit extends Permit {
  /**
   * Increases with every grant of this semaphore (across processes and restarts of Redis).
   * `undefined` for permits granted by the `onUnavailable` fallback. See {@link RedisPermit.fencingSlots}
   * for how a resource uses it to refuse holders whose lease ended.
   */
  readonly fencingToken: number | undefined;
  /**
   * The fencing slots this grant occupies: `weight` slot numbers, each below the capacity, no slot held by
   * two grants at once. A resource protected by the semaphore keeps the highest token it has accepted per
   * slot and refuses a token lower than that of any of the permit's slots ({@link FencingGuard} does
   * exactly that). It then refuses every holder whose lease ended once its slot was given to another, and
   * never a valid holder, for any capacity: "refuse tokens lower than the highest seen" is right only for a
   * capacity of 1. Empty for fallback permits and for capacities above 1,024.
   */
  readonly fencingSlots: readonly number[];
  /**
   * Whether the lease may have ended before the permit was released: Redis said so, or this process's
   * conservative local deadline has passed. Checked on the monotonic clock when read, so it is true at
   * once after a freeze longer than the lease, before any timer has run; reading it then also aborts
   * {@link Permit.signal}. Check it (or call {@link RedisPermit.throwIfLeaseLost}) right before each write
   * the permit protects.
   */
  readonly leaseLost: boolean;
  /** Milliseconds until the local lease deadline unless renewed; 0 once lost or released. */
  readonly leaseRemaining: number;
  /** Throws the `LeaseLostError` if {@link RedisPermit.leaseLost}; otherwise does nothing. */
  throwIfLeaseLost(): void;
  /**
   * Gives the permit back to Redis. Resolves when it was given back while its lease held; rejects with
   * `LeaseLostError` when the lease was lost first (by Redis' word, by the local deadline, or because
   * Redis no longer held it), since work under it may have overlapped another holder's. Throws
   * ReleasedError synchronously when already released.
   */
  release(): Promise<void>;
}

/** The slots of a grant as Lua wrote them (comma-separated), as numbers. */
export function parseSlots(list: unknown): number[] {
  if (typeof list !== "string" || list === "") return [];
  return list.split(",").map(Number);
}

/** @internal What a leased permit asks of the semaphore that keeps its lease. */
export interface LeaseKeeper {
  /** What the permits' `sluice:hold` and `sluice:lease.lost` events name. */
  readonly identity: LimiterIdentity;
  /** The synchronous lease check: if the local deadline has passed, every permit is lost now. */
  checkLease(): void;
  /** Milliseconds left before the local lease deadline. */
  leaseRemaining(): number;
}

/**
 * A permit Redis granted, under this process's lease.
 *
 * Invariant: `lost` is set at most once (the first reason wins), and from then on the signal is aborted
 * (with that reason, or with the earlier request to stop from `close()`).
 */
export class LeasedPermit extends HeldPermit<Promise<void>> implements RedisPermit {
  private lost: LeaseLostError | undefined = undefined;
  /** Created on first use of `signal`: most permits are released without anyone asking for it. */
  private lease: AbortController | undefined = undefined;
  private combined: AbortSignal | undefined = undefined;
  /** The caller's signal linked with the lease's, until the permit is released. */
  private linked: LinkedSignal | undefined = undefined;
  /** Why the work was asked to stop without the lease being lost (close()), if it was. */
  private stopped: unknown = undefined;
  constructor(
    weight: number,
    readonly fencingToken: number,
    readonly fencingSlots: readonly number[],
    private readonly callerSignal: AbortSignal | undefined,
    /** @internal The epoch of the state it was granted in, as far as this process knew then. */
    readonly epoch: number,
    private readonly keeper: LeaseKeeper,
    giveBack: GiveBack<LeasedPermit, Promise<void>>,
  ) {
    super(weight, callerSignal ?? NEVER_ABORTED, giveBack, keeper.identity);
  }

  override get releasesAsync(): boolean {
    return true;
  }

  override get signal(): AbortSignal {
    // A frozen process learns here, on its first look, that the lease may have lapsed.
    if (this.isHeld && this.lost === undefined) this.keeper.checkLease();
    if (this.combined !== undefined) return this.combined;
    this.lease = new AbortController();
    const reason = this.lost ?? this.stopped;
    if (reason !== undefined) this.lease.abort(reason);
    this.linked = linkSignals(this.callerSignal, this.lease.signal);
    this.combined = this.linked.signal as AbortSignal;
    return this.combined;
  }

  get leaseLost(): boolean {
    if (this.isHeld && this.lost === undefined) this.keeper.checkLease();
    return this.lost !== undefined;
  }

  get leaseRemaining(): number {
    if (!this.isHeld || this.leaseLost) return 0;
    return this.keeper.leaseRemaining();
  }

  /** @internal Why the lease was lost, if it was (as last checked). */
  get lossReason(): LeaseLostError | undefined {
    return this.lost;
  }

  throwIfLeaseLost(): void {
    if (this.leaseLost) throw this.lost;
  }

  /** @internal The lease ended: the work must stop. Idempotent; the first reason wins. */
  loseLease(reason: LeaseLostError): void {
    if (this.lost !== undefined) return;
    this.lost = reason;
    if (leaseLostChannel.hasSubscribers) {
      leaseLostChannel.publish({ limiter: this.keeper.identity, weight: this.weight } satisfies LeaseLostEvent);
    }
    if (this.stopped === undefined) this.lease?.abort(reason);
  }

  /** @internal Released: stop following the caller's signal (a long-lived one would keep this alive). */
  unlink(): void {
    this.linked?.dispose();
  }

  /** @internal Asks the work to stop (close()) while the lease still holds. */
  askToStop(reason: unknown): void {
    if (this.stopped !== undefined || this.lost !== undefined) return;
    this.stopped = reason;
    this.lease?.abort(reason);
  }
}

/**
 * A permit granted without Redis (`onUnavailable: "allow"`, or by the `onUnavailable` Limiter): no token,
 * no slots, no lease to lose. Its release gives back the fallback's permit, if any; a Limiter's permit may
 * release synchronously, while callers of a RedisPermit chain on `release()` (as `run` does).
 */
export class FallbackPermit extends HeldPermit<Promise<void>> implements RedisPermit {
  readonly fencingToken = undefined;
  readonly fencingSlots: readonly number[] = [];
  readonly leaseLost = false;
  readonly leaseRemaining = Number.POSITIVE_INFINITY;
  constructor(
    weight: number,
    /** @internal The fallback Limiter's permit, if one admitted the call. */
    readonly inner: Permit | undefined,
    callerSignal: AbortSignal | undefined,
  ) {
    super(weight, inner?.signal ?? callerSignal ?? NEVER_ABORTED, releaseFallback);
  }

  override get releasesAsync(): boolean {
    return true;
  }

  throwIfLeaseLost(): void {}
}

/** Gives a fallback permit back: to the fallback Limiter, if one admitted it. */
function releaseFallback(permit: FallbackPermit): Promise<void> {
  try {
    return Promise.resolve(permit.inner?.release());
  } catch (error) {
    return Promise.reject(error);
  }
}
