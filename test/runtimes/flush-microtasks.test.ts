/**
 * `flushMicrotasks` (sluice/testing) works where there is no `setImmediate` (browsers, workerd), so the
 * fake-clock tests run there too (see test/portable).
 */
import { flushMicrotasks } from "sluice/testing";
import { afterEach, describe, expect, it } from "vitest";

const setImmediate = globalThis.setImmediate;
const MessageChannel = globalThis.MessageChannel;
afterEach(() => {
  globalThis.setImmediate = setImmediate;
  globalThis.MessageChannel = MessageChannel;
});

/** A chain of `depth` promise callbacks; says how far it got. */
function chain(depth: number): () => number {
  let reached = 0;
  let promise = Promise.resolve();
  for (let step = 0; step < depth; step++) promise = promise.then(() => void reached++);
  return () => reached;
}

describe("flushMicrotasks without setImmediate", () => {
  it("runs the queued promise callbacks, through a MessageChannel (browsers)", async () => {
    (globalThis as { setImmediate?: unknown }).setImmediate = undefined;
    const reached = chain(50);
    await flushMicrotasks();
    expect(reached()).toBe(50);
  });

  it("and through a timer where there is no MessageChannel either (workerd)", async () => {
    (globalThis as { setImmediate?: unknown }).setImmediate = undefined;
    (globalThis as { MessageChannel?: unknown }).MessageChannel = undefined;
    const reached = chain(50);
    await flushMicrotasks();
    expect(reached()).toBe(50);
  });
});
