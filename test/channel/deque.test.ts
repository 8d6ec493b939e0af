/** The ring buffer under Channel, Pool and mapStream behaves like an array used from both ends. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Deque } from "../../src/core/deque.js";

describe("Deque", () => {
  it("matches an array model under any mix of push, shift and pop, across growth", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 8 }),
        fc.array(fc.oneof(fc.integer(), fc.constant("shift" as const), fc.constant("pop" as const)), {
          maxLength: 300,
        }),
        (initialCapacity, operations) => {
          const deque = new Deque<number>(initialCapacity);
          const model: number[] = [];
          for (const operation of operations) {
            if (operation === "shift") expect(deque.shift()).toBe(model.shift());
            else if (operation === "pop") expect(deque.pop()).toBe(model.pop());
            else {
              deque.push(operation);
              model.push(operation);
            }
            expect(deque.length).toBe(model.length);
            expect(deque.peekFirst()).toBe(model[0]);
          }
          expect(deque.drain()).toEqual(model);
          expect(deque.length).toBe(0);
        },
      ),
      { numRuns: 300 },
    );
  });
});
