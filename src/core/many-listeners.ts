/**
 * Signals that sluice shares between many calls (the never-aborting signal, a map's or a task group's
 * signal, `limitedFetch`'s stop switch) collect one listener per call in flight by design: `fetch` adds
 * one per request. Node 20 prints a `MaxListenersExceededWarning` for an AbortSignal past 10 listeners,
 * as if that were a leak (Node 22 and later no longer do for signals); other runtimes have no such
 * warning, and no such limit to lift.
 */

/** The part of `node:events` used here. */
interface NodeEvents {
  setMaxListeners(count: number, ...targets: EventTarget[]): void;
}

interface NodeProcess {
  getBuiltinModule?(id: string): unknown;
}

/** `node:events` once looked up; `null` where there is none. */
let nodeEvents: NodeEvents | null | undefined;

/**
 * Lifts Node's listener warning for `signal` (`events.setMaxListeners(0, signal)`); elsewhere does
 * nothing.
 *
 * `node:events` is reached through `process.getBuiltinModule` (Node 20.16+, 22.3+) rather than
 * imported: an import would make the core unloadable in browsers and edge runtimes, where bundlers turn
 * `node:events` into the npm `events` polyfill, which has no `setMaxListeners`, or refuse it. Node
 * 20.0 to 20.15 lack `getBuiltinModule`: there the warning may be printed once per shared signal, and
 * nothing else changes.
 */
export function allowManyListeners(signal: AbortSignal): void {
  if (nodeEvents === undefined) {
    const process = (globalThis as { process?: NodeProcess }).process;
    nodeEvents = (process?.getBuiltinModule?.("node:events") as NodeEvents | undefined) ?? null;
  }
  try {
    nodeEvents?.setMaxListeners(0, signal);
  } catch {
    // A runtime that imitates `node:events` (Bun, Deno) may not accept a web AbortSignal here. Lifting a
    // warning is not worth failing the limiter over.
  }
}
