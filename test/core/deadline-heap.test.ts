/**
 * The deadline heap on its own: earliest deadline first, equal deadlines in arrival order, removal of
 * any entry, and nothing kept of an entry that left.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DeadlineHeap } from "../../src/core/deadline-heap.js";

class Entry {
  heapIndex = -1;
  constructor(
    readonly name: number,
    readonly deadline: number,
  ) {}
}

/** The entries a heap holds, as its own check sees them. */
function held(heap: DeadlineHeap<Entry>): Entry[] {
  const seen: Entry[] = [];
  heap.assertInvariants((entry) => seen.push(entry));
  return seen;
}

describe("DeadlineHeap", () => {
  it("gives out entries earliest deadline first, equal deadlines in arrival order, whatever is removed meanwhile (model-checked)", () => {
    type Operation = { kind: "push"; deadline: number } | { kind: "remove"; pick: number } | { kind: "take" };
    // Few distinct deadlines, so ties are the rule rather than the exception.
    const operation: fc.Arbitrary<Operation> = fc.oneof(
      {
        weight: 4,
        arbitrary: fc.record({ kind: fc.constant("push" as const), deadline: fc.integer({ min: 0, max: 6 }) }),
      },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant("remove" as const), pick: fc.nat() }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant("take" as const) }) },
    );
    fc.assert(
      fc.property(fc.array(operation, { maxLength: 200 }), (operations) => {
        const heap = new DeadlineHeap<Entry>();
        // The model: the entries in the heap, in the order they arrived.
        const model: Entry[] = [];
        const due = () => [...model].sort((a, b) => a.deadline - b.deadline || a.name - b.name);
        let next = 0;
        for (const step of operations) {
          if (step.kind === "push") {
            const entry = new Entry(next++, step.deadline);
            heap.push(entry, entry.deadline);
            model.push(entry);
          } else if (step.kind === "remove" && model.length > 0) {
            const [entry] = model.splice(step.pick % model.length, 1) as [Entry];
            heap.remove(entry);
            expect(entry.heapIndex).toBe(-1);
          } else if (step.kind === "take" && model.length > 0) {
            const first = heap.first as Entry;
            expect(first).toBe(due()[0]);
            expect(heap.earliest).toBe(first.deadline);
            heap.remove(first);
            model.splice(model.indexOf(first), 1);
          }
          expect(heap.size).toBe(model.length);
          expect(heap.earliest).toBe(model.length === 0 ? Number.POSITIVE_INFINITY : due()[0]?.deadline);
          // No entry that left is still held, so the heap keeps none of them alive.
          expect(new Set(held(heap))).toEqual(new Set(model));
        }
      }),
      { numRuns: 300 },
    );
  });

  it("pushes deadlines that arrive in order without moving anything (one timeout for every waiter)", () => {
    const heap = new DeadlineHeap<Entry>();
    const entries = Array.from({ length: 1_000 }, (_, i) => new Entry(i, Math.floor(i / 10)));
    for (const entry of entries) heap.push(entry, entry.deadline);
    // Each stayed in the slot it was pushed to: the sift-up stopped at once.
    expect(entries.every((entry, i) => entry.heapIndex === i)).toBe(true);
  });

  it("names each broken invariant", () => {
    const heap = new DeadlineHeap<Entry>();
    const early = new Entry(0, 1);
    const late = new Entry(1, 2);
    heap.push(early, 1);
    heap.push(late, 2);
    late.heapIndex = 0;
    expect(() => heap.assertInvariants(() => {})).toThrow(/DeadlineHeap invariant broken: an entry knows its slot/);
    late.heapIndex = 1;
    const internals = heap as unknown as { deadlines: number[] };
    internals.deadlines[1] = 0;
    expect(() => heap.assertInvariants(() => {})).toThrow(/no entry is due before its parent/);
    internals.deadlines.pop();
    expect(() => heap.assertInvariants(() => {})).toThrow(/entries, deadlines and arrivals are parallel/);
  });
});
