/**
 * `sluice/testing`: tools for testing code that uses sluice.
 *
 * @packageDocumentation
 * @module sluice/testing
 */
import { installWaitQueueChecks } from "../core/wait-queue-checks.js";

export { FakeClock, flushMicrotasks } from "./fake-clock.js";

export type {
  MockFailure,
  MockKeyOptions,
  MockLatency,
  MockOutcome,
  MockOverload,
  MockOverloadOptions,
  MockProviderStyle,
  MockRequestInfo,
  MockRequestRecord,
  MockServer,
  MockServerOptions,
  MockServerSummary,
} from "./mock-server.js";
export { formatGoDuration, startMockServer } from "./mock-server.js";

// The wait queue's invariant checks are test code, kept out of the core's bundles: the model tests (and
// anyone checking sluice's invariants) get them with the testing tools.
installWaitQueueChecks();
