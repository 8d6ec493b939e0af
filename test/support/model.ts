import fc from "fast-check";
import { selfChecks, type WithSelfChecks } from "../../src/core/wait-queue.js";
import { installWaitQueueChecks } from "../../src/core/wait-queue-checks.js";

// The wait queue's invariant checks, which users' bundles do not carry (sluice/testing installs them too).
installWaitQueueChecks();

/**
 * Checks every invariant `owner` lists under its self checks: each wait queue's (the rings, the deadline
 * heap and the timer), each admission's counters (every request counted once), and the primitive's own,
 * as they must be whenever a public call has returned.
 *
 * `owner` is typed loosely: the tests import the primitives by the package's name, whose types come
 * from the build, which declares a symbol type of its own; at run time both are the source's symbol.
 */
export function assertInvariants(owner: object): void {
  const list = (owner as Partial<WithSelfChecks>)[selfChecks];
  if (typeof list !== "function") throw new TypeError(`${owner.constructor.name} lists no self checks`);
  for (const part of list.call(owner)) {
    try {
      part.assertInvariants();
    } catch (error) {
      // The portable suite (test/portable) runs against the built package, whose wait queue's checks only
      // the Node entry of sluice/testing can install: there the queue's own structure goes unchecked (each
      // part checks the queue last), everything else is checked. Under vitest they are installed (above).
      if (!(PORTABLE && error instanceof Error && /WaitQueue checks are not installed/.test(error.message)))
        throw error;
    }
  }
}

/** Whether this is the portable suite's bundle (test/portable/build.mjs defines it). */
const PORTABLE = process.env.SLUICE_PORTABLE === "1";

/**
 * Several operations applied in one synchronous step (one tick), then `settle` lets the world react and
 * checks it. The owner's invariants are checked after each operation and after `settle`.
 */
class Batch<World, Op> implements fc.AsyncCommand<object, World> {
  constructor(
    readonly ops: readonly Op[],
    private readonly apply: (world: World, op: Op) => void,
    private readonly settle: (world: World) => Promise<void>,
    private readonly owner: (world: World) => object,
  ) {}
  check(): boolean {
    return true;
  }
  async run(_model: object, world: World): Promise<void> {
    for (const op of this.ops) {
      this.apply(world, op);
      assertInvariants(this.owner(world));
    }
    await this.settle(world);
    assertInvariants(this.owner(world));
  }
  toString(): string {
    return `batch(${JSON.stringify(this.ops)})`;
  }
}

/**
 * The model tests' one command: one to four operations drawn from `op`, applied in the same tick, then
 * checked against the model by `settle`; `owner` is the primitive under test, whose wait queues must
 * keep their invariants after every operation.
 */
export function batches<World, Op>(
  op: fc.Arbitrary<Op>,
  apply: (world: World, op: Op) => void,
  settle: (world: World) => Promise<void>,
  owner: (world: World) => object,
): fc.Arbitrary<fc.AsyncCommand<object, World>> {
  return fc.array(op, { minLength: 1, maxLength: 4 }).map((ops) => new Batch(ops, apply, settle, owner));
}
