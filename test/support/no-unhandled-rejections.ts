/**
 * Makes a test file also prove that nothing it ran caused an unhandled rejection: call
 * `expectNoUnhandledRejections()` at the top level of the file.
 */
import { flushMicrotasks } from "sluice/testing";
import { afterAll, beforeAll, expect } from "vitest";

export function expectNoUnhandledRejections(): void {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  beforeAll(() => {
    process.on("unhandledRejection", onUnhandled);
  });
  afterAll(async () => {
    await flushMicrotasks();
    process.off("unhandledRejection", onUnhandled);
    expect(unhandled).toEqual([]);
  });
}
