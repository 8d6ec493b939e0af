/**
 * The portable subset of the test suite: the files that run, unchanged, on every runtime sluice supports
 * (Node 20/22/24, Bun, Deno, headless Chromium, workerd), bundled by test/portable/build.mjs. Under vitest
 * on Node they run as part of the ordinary suite, so the subset is the suite, not a copy of it.
 *
 * Every primitive is covered: the Limiter conformance suite (Semaphore, Mutex, RateLimiter), the
 * fast-check models (Semaphore, RateLimiter, Pool, Channel), unit tests of Mutex, Pool and Channel, map /
 * mapStream / mapSettled, TaskGroup, and limitedFetch against a local fetch stub. The suite's other files
 * need Node (worker threads, Redis, the mock server, the CLI, AsyncLocalStorage, node:events).
 */
export const portableFiles: Record<string, () => Promise<unknown>> = {
  "test/core/conformance.test.ts": () => import("../core/conformance.test.js"),
  "test/rate/conformance.test.ts": () => import("../rate/conformance.test.js"),
  "test/core/model.test.ts": () => import("../core/model.test.js"),
  "test/rate/model.test.ts": () => import("../rate/model.test.js"),
  "test/pool/model.test.ts": () => import("../pool/model.test.js"),
  "test/channel/model.test.ts": () => import("../channel/model.test.js"),
  "test/core/mutex.test.ts": () => import("../core/mutex.test.js"),
  "test/pool/pool.test.ts": () => import("../pool/pool.test.js"),
  "test/channel/channel.test.ts": () => import("../channel/channel.test.js"),
  "test/map/map.test.ts": () => import("../map/map.test.js"),
  "test/map/task-group.test.ts": () => import("../map/task-group.test.js"),
  "test/http/backoff.test.ts": () => import("../http/backoff.test.js"),
  "test/http/cost.test.ts": () => import("../http/cost.test.js"),
};
