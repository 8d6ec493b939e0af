/**
 * `sluice/testing`: tools for testing code that uses sluice.
 *
 * @packageDocumentation
 */
export { FakeClock, flushMicrotasks } from "./fake-clock.js";
