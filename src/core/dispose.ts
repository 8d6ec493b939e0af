/**
 * `using` and `await using` need `Symbol.dispose` and `Symbol.asyncDispose`, which Node 20.0 to 20.3,
 * Safari and browsers before 2025 lack. A class member keyed by a missing one is named "undefined" (the
 * second overwriting the first), and TypeScript's compiled `using` throws "Symbol.dispose is not
 * defined".
 */

/**
 * Defines the two symbols where the runtime lacks them, as the registered symbols
 * `Symbol.for("Symbol.dispose")` and `Symbol.for("Symbol.asyncDispose")`: the ones code compiled by
 * esbuild, Babel or SWC for such runtimes already looks up, so everybody agrees on them. Where they
 * exist, does nothing.
 *
 * Called at the top of each module that defines a disposable class, before the class. The classes keep
 * `[Symbol.dispose]` as their key rather than an imported constant: bundlers prove a well-known symbol
 * key free of side effects, and so drop a class nobody imports; an imported key kept every permit class
 * in every bundle (`import { Semaphore }` grew from 4.1 to 5.1 KB gzipped).
 */
export function defineDisposeSymbols(): void {
  const symbols = Symbol as { dispose?: symbol; asyncDispose?: symbol };
  symbols.dispose ??= Symbol.for("Symbol.dispose");
  symbols.asyncDispose ??= Symbol.for("Symbol.asyncDispose");
}
