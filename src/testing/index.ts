/**
 * `sluice/testing`: tools for testing code that uses sluice.
 *
 * @packageDocumentation
 * @module sluice/testing
 */
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
