import fc from "fast-check";

/** Several operations applied in one synchronous step (one tick), then `settle` lets the world react and checks it. */
class Batch<World, Op> implements fc.AsyncCommand<object, World> {
  constructor(
    readonly ops: readonly Op[],
    private readonly apply: (world: World, op: Op) => void,
    private readonly settle: (world: World) => Promise<void>,
  ) {}
  check(): boolean {
    return true;
  }
  async run(_model: object, world: World): Promise<void> {
    for (const op of this.ops) this.apply(world, op);
    await this.settle(world);
  }
  toString(): string {
    return `batch(${JSON.stringify(this.ops)})`;
  }
}

/**
 * The model tests' one command: one to four operations drawn from `op`, applied in the same tick, then
 * checked against the model by `settle`.
 */
export function batches<World, Op>(
  op: fc.Arbitrary<Op>,
  apply: (world: World, op: Op) => void,
  settle: (world: World) => Promise<void>,
): fc.Arbitrary<fc.AsyncCommand<object, World>> {
  return fc.array(op, { minLength: 1, maxLength: 4 }).map((ops) => new Batch(ops, apply, settle));
}
