/**
 * map keeps the caller's AsyncLocalStorage context (Node, Bun and Deno have it; map.test.ts, which
 * also runs in browsers and workerd, does not import node:async_hooks).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { map, Semaphore } from "sluice";
import { describe, expect, it } from "vitest";

describe("map", () => {
  it("runs every mapper in the caller's AsyncLocalStorage context, also with async input and a limiter", async () => {
    const storage = new AsyncLocalStorage<string>();
    async function* items() {
      for (let i = 0; i < 20; i++) yield i;
    }
    const seen = await storage.run("request-42", () =>
      map(items(), async () => storage.getStore(), { concurrency: 3, limiter: new Semaphore(2) }),
    );
    expect(new Set(seen)).toEqual(new Set(["request-42"]));
  });
});
