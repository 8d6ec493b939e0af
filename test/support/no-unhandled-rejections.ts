/**
 * Makes a test file also prove that nothing it ran caused an unhandled rejection: call
 * `expectNoUnhandledRejections()` at the top level of the file.
 *
 * Portable (the file runs in browsers and workerd too, see test/portable): Node and Bun report an
 * unhandled rejection on `process`; browsers, Deno and workerd as an `unhandledrejection` event.
 */
import { flushMicrotasks } from "sluice/testing";
import { afterAll, beforeAll, expect } from "vitest";

interface NodeProcess {
  on(event: "unhandledRejection", listener: (reason: unknown) => void): void;
  off(event: "unhandledRejection", listener: (reason: unknown) => void): void;
}

/** The global scope of a browser, Deno or workerd, where unhandled rejections are events. */
interface EventScope {
  addEventListener?(type: "unhandledrejection", listener: (event: Event & { reason: unknown }) => void): void;
  removeEventListener?(type: "unhandledrejection", listener: (event: Event & { reason: unknown }) => void): void;
}

export function expectNoUnhandledRejections(): void {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  const onEvent = (event: Event & { reason: unknown }) => {
    event.preventDefault();
    onUnhandled(event.reason);
  };
  const process = (globalThis as { process?: NodeProcess }).process;
  const scope = globalThis as EventScope;
  beforeAll(() => {
    if (typeof process?.on === "function") process.on("unhandledRejection", onUnhandled);
    else scope.addEventListener?.("unhandledrejection", onEvent);
  });
  afterAll(async () => {
    await flushMicrotasks();
    if (typeof process?.on === "function") process.off("unhandledRejection", onUnhandled);
    else scope.removeEventListener?.("unhandledrejection", onEvent);
    expect(unhandled).toEqual([]);
  });
}
