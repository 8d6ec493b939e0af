/**
 * Fencing for any capacity: the rule a resource protected by a RedisSemaphore follows to refuse holders
 * whose lease ended (see `semaphore-scripts.ts`, "fencing slots").
 */
import { describe } from "../core/describe.js";

/**
 * The resource side of fencing: a resource protected by a {@link RedisSemaphore} of any capacity keeps
 * the highest fencing token accepted per slot, and accepts a write only when its token is at least that
 * of every slot the permit occupies (then records it there). Every holder whose lease ended is refused
 * once another grant has written through one of its slots; a valid holder is never refused.
 *
 * In a database, the same rule is one conditional update per slot in the write's transaction:
 * `UPDATE fence SET token = $token WHERE slot = ANY($slots) AND token <= $token` must touch every slot.
 *
 * @example
 * ```ts
 * const guard = new FencingGuard();
 * await semaphore.run(async (signal, permit) => {
 *   if (!guard.accept(permit)) throw new Error("stale holder");
 *   await write(permit.fencingToken);
 * });
 * ```
 */
export class FencingGuard {
  /** Slot -> highest token accepted. */
  private readonly highest = new Map<number, number>();

  /**
   * Whether a write under `permit` may go ahead; records its token when it may. A permit without a
   * token or without slots (a fallback permit, a capacity above 1,024) is refused: nothing can vouch for it.
   *
   * @throws TypeError when `permit` has no numeric `fencingToken` and array `fencingSlots`.
   */
  accept(permit: { readonly fencingToken: number | undefined; readonly fencingSlots: readonly number[] }): boolean {
    if (permit === null || typeof permit !== "object" || !Array.isArray(permit.fencingSlots)) {
      throw new TypeError(`permit must have fencingToken and fencingSlots; got ${describe(permit)}`);
    }
    const { fencingToken: token, fencingSlots: slots } = permit;
    if (token === undefined || slots.length === 0) return false;
    for (const slot of slots) if ((this.highest.get(slot) ?? Number.NEGATIVE_INFINITY) > token) return false;
    for (const slot of slots) this.highest.set(slot, token);
    return true;
  }
}
