import fc from "fast-check";
// Installs the wait queue's invariant checks, which users' bundles do not carry.
import "sluice/testing";
import { selfChecks, type WithSelfChecks } from "../../src/core/wait-queue.js";

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
  for (const part of list.call(owner)) part.assertInvariants();
}

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
