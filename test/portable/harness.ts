/**
 * The part of vitest's API that the portable test files use (`describe`, `it`, hooks, `expect` and the
 * matchers below), small enough to run in any JavaScript runtime: Bun, Deno, a browser, workerd.
 *
 * The runtime bundles (test/portable/build.mjs) alias `vitest` to this module, so the very files that
 * run under vitest on Node run unchanged everywhere else, and cannot drift from the suite. A file that
 * starts using a matcher this module lacks fails on the other runtimes with "expect(...).toX is not a
 * function": add the matcher here.
 */

type Hook = () => unknown;
type TestFunction = () => unknown;

interface Scope {
  readonly name: string;
  readonly parent: Scope | undefined;
  readonly children: (Scope | TestCase)[];
  readonly beforeAll: Hook[];
  readonly afterAll: Hook[];
  readonly beforeEach: Hook[];
  readonly afterEach: Hook[];
}

interface TestCase {
  readonly name: string;
  readonly run: TestFunction;
}

function newScope(name: string, parent: Scope | undefined): Scope {
  return { name, parent, children: [], beforeAll: [], afterAll: [], beforeEach: [], afterEach: [] };
}

let current: Scope = newScope("", undefined);

export function describe(name: string, body: () => void): void {
  const scope = newScope(name, current);
  current.children.push(scope);
  current = scope;
  try {
    body();
  } finally {
    current = scope.parent as Scope;
  }
}

function register(name: string, run: TestFunction): void {
  current.children.push({ name, run });
}
/** Skips nothing: a test that does not apply is not registered (vitest would report it skipped). */
function registerIf(condition: unknown): (name: string, run: TestFunction) => void {
  return condition ? register : () => undefined;
}
export const it = Object.assign(register, {
  runIf: (condition: unknown) => registerIf(condition),
  skipIf: (condition: unknown) => registerIf(!condition),
});
export const test = it;

export function beforeAll(hook: Hook): void {
  current.beforeAll.push(hook);
}
export function afterAll(hook: Hook): void {
  current.afterAll.push(hook);
}
export function beforeEach(hook: Hook): void {
  current.beforeEach.push(hook);
}
export function afterEach(hook: Hook): void {
  current.afterEach.push(hook);
}

// --- expect ---------------------------------------------------------------------------------------

/** An asymmetric matcher (`expect.any(Error)`, `expect.stringContaining("x")`) inside toEqual/toMatchObject. */
class Asymmetric {
  constructor(
    readonly description: string,
    readonly matches: (value: unknown) => boolean,
  ) {}
}

function show(value: unknown): string {
  if (value instanceof Asymmetric) return value.description;
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "function") return `[function ${value.name}]`;
  if (typeof value === "symbol" || value === undefined || Number.isNaN(value)) return String(value);
  try {
    return JSON.stringify(value, (_key, inner) => (inner === undefined ? "undefined" : inner)) ?? String(value);
  } catch {
    return String(value);
  }
}

/** vitest's toEqual: recursive, ignores properties that are undefined, does not compare classes. */
function equals(actual: unknown, expected: unknown, subset = false): boolean {
  if (expected instanceof Asymmetric) return expected.matches(actual);
  if (Object.is(actual, expected)) return true;
  if (typeof actual !== "object" || typeof expected !== "object" || actual === null || expected === null) {
    return false;
  }
  if (actual instanceof Error && expected instanceof Error) {
    return actual.name === expected.name && actual.message === expected.message;
  }
  if (actual instanceof Set && expected instanceof Set) {
    return actual.size === expected.size && [...expected].every((value) => actual.has(value));
  }
  if (actual instanceof Map && expected instanceof Map) {
    return equals([...actual.entries()], [...expected.entries()], subset);
  }
  if (Array.isArray(actual) !== Array.isArray(expected)) return false;
  if (Array.isArray(actual) && Array.isArray(expected)) {
    if (actual.length !== expected.length) return false;
    for (let index = 0; index < actual.length; index++) {
      if (!equals(actual[index], expected[index], subset)) return false;
    }
    return true;
  }
  const actualRecord = actual as Record<string, unknown>;
  const expectedRecord = expected as Record<string, unknown>;
  const keys = new Set(Object.keys(expectedRecord));
  if (!subset) for (const key of Object.keys(actualRecord)) keys.add(key);
  for (const key of keys) {
    if (!equals(actualRecord[key], expectedRecord[key], subset)) return false;
  }
  return true;
}

/** What `toThrow(expected)` accepts: nothing, a message part, a pattern, an error class or an error. */
function thrownMatches(error: unknown, expected: unknown): boolean {
  const message = error instanceof Error ? error.message : String(error);
  if (expected === undefined) return true;
  if (typeof expected === "string") return message.includes(expected);
  if (expected instanceof RegExp) return expected.test(message);
  if (typeof expected === "function") return error instanceof expected;
  if (expected instanceof Error) return message === expected.message;
  if (expected instanceof Asymmetric) return expected.matches(error);
  return equals(error, expected, true);
}

class AssertionError extends Error {
  override readonly name = "AssertionError";
}

type Matcher = (actual: unknown, ...expected: never[]) => [pass: boolean, message: string];

const MATCHERS: Record<string, Matcher> = {
  toBe: (actual, expected: unknown) => [Object.is(actual, expected), `${show(actual)} to be ${show(expected)}`],
  toEqual: (actual, expected: unknown) => [equals(actual, expected), `${show(actual)} to equal ${show(expected)}`],
  toStrictEqual: (actual, expected: unknown) => [
    equals(actual, expected),
    `${show(actual)} to equal ${show(expected)}`,
  ],
  toMatchObject: (actual, expected: unknown) => [
    equals(actual, expected, true),
    `${show(actual)} to match ${show(expected)}`,
  ],
  toBeInstanceOf: (actual, expected: new (...args: never[]) => unknown) => [
    actual instanceof expected,
    `${show(actual)} to be an instance of ${expected.name}`,
  ],
  toBeDefined: (actual) => [actual !== undefined, `${show(actual)} to be defined`],
  toBeUndefined: (actual) => [actual === undefined, `${show(actual)} to be undefined`],
  toBeNull: (actual) => [actual === null, `${show(actual)} to be null`],
  toBeTruthy: (actual) => [Boolean(actual), `${show(actual)} to be truthy`],
  toBeFalsy: (actual) => [!actual, `${show(actual)} to be falsy`],
  toBeGreaterThan: (actual, expected: number) => [(actual as number) > expected, `${show(actual)} > ${expected}`],
  toBeGreaterThanOrEqual: (actual, expected: number) => [
    (actual as number) >= expected,
    `${show(actual)} >= ${expected}`,
  ],
  toBeLessThan: (actual, expected: number) => [(actual as number) < expected, `${show(actual)} < ${expected}`],
  toBeLessThanOrEqual: (actual, expected: number) => [(actual as number) <= expected, `${show(actual)} <= ${expected}`],
  toHaveLength: (actual, expected: number) => [
    (actual as { length?: unknown } | null)?.length === expected,
    `${show(actual)} to have length ${expected}`,
  ],
  toContain: (actual, expected: unknown) => [
    (actual as { includes?: (value: unknown) => boolean } | null)?.includes?.(expected) === true,
    `${show(actual)} to contain ${show(expected)}`,
  ],
  toMatch: (actual, expected: string | RegExp) => [
    typeof actual === "string" && (typeof expected === "string" ? actual.includes(expected) : expected.test(actual)),
    `${show(actual)} to match ${String(expected)}`,
  ],
};

/** How an assertion gets its value: as given, by calling it (toThrow), or by awaiting it (resolves/rejects). */
type Mode = "value" | "resolves" | "rejects";

function assertion(actual: unknown, label: string | undefined, negated: boolean, mode: Mode): object {
  const check = (pass: boolean, message: string) => {
    if (pass === negated) {
      const prefix = label === undefined ? "" : `${label}: `;
      throw new AssertionError(`${prefix}expected ${negated ? "not " : ""}${message}`);
    }
  };
  const apply = (name: string, args: unknown[], value: unknown, settled: "value" | "thrown") => {
    if (name === "toThrow") {
      if (settled === "thrown") return check(thrownMatches(value, args[0]), `to throw ${show(args[0])}`);
      let thrown: { error: unknown } | undefined;
      try {
        (value as () => unknown)();
      } catch (error) {
        thrown = { error };
      }
      const pass = thrown !== undefined && thrownMatches(thrown.error, args[0]);
      const got = thrown === undefined ? "nothing was thrown" : `got ${show(thrown.error)}`;
      return check(pass, `the function to throw ${show(args[0])} (${got})`);
    }
    const matcher = MATCHERS[name];
    if (matcher === undefined) throw new TypeError(`expect(...).${name} is not a function in test/portable/harness.ts`);
    const [pass, message] = (matcher as (actual: unknown, ...expected: unknown[]) => [boolean, string])(value, ...args);
    check(pass, message);
  };
  return new Proxy(
    {},
    {
      get(_target, name: string) {
        if (name === "not") return assertion(actual, label, !negated, mode);
        if (name === "resolves" || name === "rejects") return assertion(actual, label, negated, name);
        if (name === "then") return undefined;
        return (...args: unknown[]) => {
          if (mode === "value") return apply(name, args, actual, "value");
          return Promise.resolve(actual).then(
            (value) => {
              if (mode === "rejects") throw new AssertionError(`expected a rejection, got ${show(value)}`);
              apply(name, args, value, "value");
            },
            (error: unknown) => {
              if (mode === "resolves") throw new AssertionError(`expected a value, got a rejection: ${show(error)}`);
              apply(name, args, error, name === "toThrow" ? "thrown" : "value");
            },
          );
        };
      },
    },
  );
}

export const expect = Object.assign(
  // biome-ignore lint/suspicious/noExplicitAny: the matchers' argument types are vitest's to state.
  (actual: unknown, label?: string): any => assertion(actual, label, false, "value"),
  {
    any: (type: new (...args: never[]) => unknown) =>
      new Asymmetric(`any(${type.name})`, (value) => {
        if (type === (Number as unknown)) return typeof value === "number";
        if (type === (String as unknown)) return typeof value === "string";
        return value instanceof type;
      }),
    stringContaining: (part: string) =>
      new Asymmetric(`stringContaining(${show(part)})`, (value) => typeof value === "string" && value.includes(part)),
    stringMatching: (pattern: RegExp) =>
      new Asymmetric(`stringMatching(${pattern})`, (value) => typeof value === "string" && pattern.test(value)),
  },
);

// --- running --------------------------------------------------------------------------------------

/** The outcome of one test, as the runtime runners report it. */
export interface TestResult {
  name: string;
  passed: boolean;
  error?: string;
  milliseconds: number;
}

function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return show(error);
}

function hooksFromRoot(scope: Scope | undefined, pick: (scope: Scope) => Hook[]): Hook[] {
  const chain: Scope[] = [];
  for (let at = scope; at !== undefined; at = at.parent) chain.unshift(at);
  return chain.flatMap(pick);
}

async function runScope(scope: Scope, path: string[], results: TestResult[], onResult: (r: TestResult) => void) {
  for (const hook of scope.beforeAll) await hook();
  for (const child of scope.children) {
    if ("children" in child) {
      await runScope(child, [...path, child.name], results, onResult);
      continue;
    }
    const started = Date.now();
    const result: TestResult = { name: [...path, child.name].join(" > "), passed: true, milliseconds: 0 };
    try {
      for (const hook of hooksFromRoot(scope, (at) => at.beforeEach)) await hook();
      try {
        await child.run();
      } finally {
        for (const hook of hooksFromRoot(scope, (at) => at.afterEach).reverse()) await hook();
      }
    } catch (error) {
      result.passed = false;
      result.error = describeError(error);
    }
    result.milliseconds = Date.now() - started;
    results.push(result);
    onResult(result);
  }
  try {
    for (const hook of scope.afterAll) await hook();
  } catch (error) {
    const result = {
      name: [...path, "(afterAll)"].join(" > "),
      passed: false,
      error: describeError(error),
      milliseconds: 0,
    };
    results.push(result);
    onResult(result);
  }
}

/**
 * Loads each file (its tests register as it is evaluated) and runs its tests in order, a file's
 * top-level hooks scoped to that file as in vitest.
 */
export async function runFiles(
  files: Record<string, () => Promise<unknown>>,
  onResult: (result: TestResult) => void = () => {},
): Promise<TestResult[]> {
  const results: TestResult[] = [];
  for (const [file, load] of Object.entries(files)) {
    const root = newScope(file, undefined);
    current = root;
    try {
      await load();
    } catch (error) {
      const result = { name: `${file} (loading)`, passed: false, error: describeError(error), milliseconds: 0 };
      results.push(result);
      onResult(result);
      continue;
    }
    await runScope(root, [file], results, onResult);
  }
  return results;
}
