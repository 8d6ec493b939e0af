/**
 * The keys that make permits, leases and groups disposable (`using`, `await using`).
 *
 * `Symbol.dispose` and `Symbol.asyncDispose` are missing in Node 20.0 to 20.3, Safari and browsers
 * before 2025. A class member keyed by a missing one would be named "undefined" (the second overwriting
 * the first), so where they are missing the keys are `Symbol.for("Symbol.dispose")` and
 * `Symbol.for("Symbol.asyncDispose")`: what code compiled by esbuild, Babel or SWC for such runtimes
 * looks up at the end of a `using` block.
 */

/** `Symbol.dispose` where the runtime has it, otherwise its registered stand-in. */
export const disposeSymbol: typeof Symbol.dispose = Symbol.dispose ?? Symbol.for("Symbol.dispose");

/** `Symbol.asyncDispose` where the runtime has it, otherwise its registered stand-in. */
export const asyncDisposeSymbol: typeof Symbol.asyncDispose = Symbol.asyncDispose ?? Symbol.for("Symbol.asyncDispose");
