/**
 * Permits, leases and task groups stay disposable where the runtime has no `Symbol.dispose` /
 * `Symbol.asyncDispose` (Node 20.0 to 20.3, Safari, browsers before 2025): they are then keyed by
 * `Symbol.for("Symbol.dispose")` / `Symbol.for("Symbol.asyncDispose")`, which code compiled for such
 * runtimes (esbuild, Babel, SWC) looks up at the end of a `using` block.
 */
import { fileURLToPath } from "node:url";
import { buildSync } from "esbuild";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../..", import.meta.url));

/** The core, loaded where `Symbol` has no `dispose` and no `asyncDispose`. */
function coreWithoutDisposeSymbols(): typeof import("sluice") {
  const { outputFiles } = buildSync({
    entryPoints: ["src/index.ts"],
    absWorkingDir: root,
    bundle: true,
    write: false,
    format: "cjs",
    platform: "neutral",
    logLevel: "silent",
  });
  // A stand-in for the global `Symbol` (whose own `dispose` cannot be removed): the same function and
  // well-known symbols, less the two.
  const symbolWithoutDispose = (description?: string) => Symbol(description);
  for (const key of Object.getOwnPropertyNames(Symbol)) {
    if (!["dispose", "asyncDispose", "length", "name", "prototype"].includes(key)) {
      Object.defineProperty(symbolWithoutDispose, key, { value: Reflect.get(Symbol, key) });
    }
  }
  const module = { exports: {} };
  new Function("Symbol", "module", "exports", outputFiles[0]!.text)(symbolWithoutDispose, module, module.exports);
  return module.exports as typeof import("sluice");
}

const dispose = Symbol.for("Symbol.dispose");
const asyncDispose = Symbol.for("Symbol.asyncDispose");

describe("disposal where the runtime lacks Symbol.dispose", () => {
  const core = coreWithoutDisposeSymbols();

  it("a semaphore permit is released through Symbol.for('Symbol.dispose'), and has no 'undefined' member", () => {
    const semaphore = new core.Semaphore(1);
    const permit = semaphore.tryAcquire()! as unknown as Record<PropertyKey, () => unknown>;
    expect("undefined" in permit).toBe(false);
    permit[dispose]!();
    expect(semaphore.inUse).toBe(0);
  });

  it("a semaphore permit is released through Symbol.for('Symbol.asyncDispose')", async () => {
    const semaphore = new core.Semaphore(1);
    const permit = semaphore.tryAcquire()! as unknown as Record<PropertyKey, () => Promise<void>>;
    await permit[asyncDispose]!();
    expect(semaphore.inUse).toBe(0);
  });

  it("a rate limiter's permit too", async () => {
    const limiter = new core.RateLimiter({ concurrency: 1 });
    const permit = (await limiter.acquire()) as unknown as Record<PropertyKey, () => unknown>;
    expect("undefined" in permit).toBe(false);
    permit[dispose]!();
    expect(limiter.inUse).toBe(0);
  });

  it("a pool lease too", async () => {
    const pool = new core.Pool({ create: () => ({}), max: 1 });
    const lease = (await pool.acquire()) as unknown as Record<PropertyKey, () => unknown>;
    expect("undefined" in lease).toBe(false);
    lease[dispose]!();
    expect(pool.inUse).toBe(0);
  });

  it("a task group waits for its tasks through Symbol.for('Symbol.asyncDispose')", async () => {
    const group = new core.TaskGroup() as unknown as InstanceType<typeof core.TaskGroup> &
      Record<PropertyKey, () => Promise<void>>;
    let finished = false;
    group.spawn(async () => {
      await Promise.resolve();
      finished = true;
    });
    await group[asyncDispose]!();
    expect(finished).toBe(true);
  });
});
