/**
 * The portable harness must fail where vitest fails: a harness that passed everything would turn every
 * runtime's row of docs/runtimes.md green for nothing.
 */
import { describe, it, expect as vitestExpect } from "vitest";
import * as harness from "./harness.js";

const { expect } = harness;

function fails(assertion: () => unknown): void {
  vitestExpect(assertion).toThrow();
}

describe("the portable harness's expect", () => {
  it("passes and fails like vitest's for the matchers the portable files use", () => {
    expect(1).toBe(1);
    fails(() => expect(1).toBe(2));
    expect({ a: [1, { b: 2 }], c: undefined }).toEqual({ a: [1, { b: 2 }] });
    fails(() => expect({ a: [1, { b: 2 }] }).toEqual({ a: [1, { b: 3 }] }));
    fails(() => expect([1, 2]).toEqual([1, 2, 3]));
    expect(new Set(["x"])).toEqual(new Set(["x"]));
    fails(() => expect(new Set(["x"])).toEqual(new Set(["y"])));
    expect({ message: "createTimeout (20 ms) passed", code: 1 }).toMatchObject({
      message: expect.stringContaining("createTimeout (20 ms)"),
    });
    fails(() => expect({ a: 1 }).toMatchObject({ a: 2 }));
    expect(new RangeError("x")).toBeInstanceOf(RangeError);
    fails(() => expect(new Error("x")).toBeInstanceOf(RangeError));
    expect(2).toBeLessThanOrEqual(2);
    fails(() => expect(3).toBeLessThanOrEqual(2));
    expect(3).toBeGreaterThan(2);
    fails(() => expect(2).toBeGreaterThanOrEqual(3));
    expect([1, 2]).toHaveLength(2);
    expect("weight 3 above 2").toMatch(/3.*2/);
    fails(() => expect("weight").toMatch(/capacity/));
    expect(undefined).toBeUndefined();
    fails(() => expect(0).toBeUndefined());
    expect(1).not.toBe(2);
    fails(() => expect(1).not.toBe(1));
  });

  it("toThrow checks the error's class, message or pattern", () => {
    const thrower = () => {
      throw new RangeError("capacity must be an integer");
    };
    expect(thrower).toThrow(RangeError);
    expect(thrower).toThrow("must be an integer");
    expect(thrower).toThrow(/capacity/);
    fails(() => expect(thrower).toThrow(TypeError));
    fails(() => expect(() => {}).toThrow());
    expect(() => {}).not.toThrow();
  });

  it("rejects and resolves wait for the promise", async () => {
    await expect(Promise.reject(new TypeError("bad"))).rejects.toThrow(TypeError);
    await expect(Promise.resolve(5)).resolves.toBe(5);
    await vitestExpect(expect(Promise.resolve(5)).rejects.toThrow()).rejects.toThrow("expected a rejection");
    await vitestExpect(expect(Promise.reject(new Error("x"))).rejects.toThrow(TypeError)).rejects.toThrow();
  });

  it("an unknown matcher fails loudly, naming the harness", () => {
    vitestExpect(() => expect(1).toSatisfyEverything()).toThrow("test/portable/harness.ts");
  });
});

describe("the portable harness's runner", () => {
  it("reports failures and hook order, with a file's top-level hooks scoped to that file", async () => {
    const order: string[] = [];
    const results = await harness.runFiles({
      "first.ts": async () => {
        harness.beforeAll(() => order.push("first beforeAll"));
        harness.afterAll(() => order.push("first afterAll"));
        harness.describe("group", () => {
          harness.beforeEach(() => order.push("beforeEach"));
          harness.it("passes", () => order.push("passes"));
          harness.it("fails", () => {
            throw new Error("boom");
          });
        });
      },
      "second.ts": async () => {
        harness.it("runs after the first file's afterAll", () => order.push("second"));
      },
    });
    vitestExpect(results.map(({ name, passed, error }) => ({ name, passed, error }))).toEqual([
      { name: "first.ts > group > passes", passed: true, error: undefined },
      { name: "first.ts > group > fails", passed: false, error: "Error: boom" },
      { name: "second.ts > runs after the first file's afterAll", passed: true, error: undefined },
    ]);
    vitestExpect(order).toEqual(["first beforeAll", "beforeEach", "passes", "beforeEach", "first afterAll", "second"]);
  });

  it("runs a test under it.runIf(true) and it.skipIf(false), and leaves out the others, as vitest skips them", async () => {
    const ran: string[] = [];
    const results = await harness.runFiles({
      "conditional.ts": async () => {
        harness.it.runIf(true)("runIf true", () => ran.push("runIf true"));
        harness.it.runIf(false)("runIf false", () => ran.push("runIf false"));
        harness.it.skipIf(false)("skipIf false", () => ran.push("skipIf false"));
        harness.it.skipIf(true)("skipIf true", () => ran.push("skipIf true"));
      },
    });
    vitestExpect(results.map(({ name }) => name)).toEqual([
      "conditional.ts > runIf true",
      "conditional.ts > skipIf false",
    ]);
    vitestExpect(ran).toEqual(["runIf true", "skipIf false"]);
  });
});
