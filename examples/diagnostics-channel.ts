/**
 * sluice's `node:diagnostics_channel` events without OpenTelemetry: a few lines that report every wait
 * longer than 50 ms, with the limiter, the outcome and the weight — the hook an APM agent, Sentry or a
 * home-grown logger would use.
 *
 * Run: npm run build && npx tsx examples/diagnostics-channel.ts
 */
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts.
import diagnostics from "node:diagnostics_channel";
import { type AcquireEvent, Semaphore } from "sluice";

// asyncEnd: the wait is over (granted, timed out, aborted or rejected); times are the limiter's clock, in ms.
diagnostics.tracingChannel("sluice:acquire").subscribe({
  asyncEnd(message) {
    const event = message as AcquireEvent;
    const waited = event.endTime - event.startTime;
    if (waited > 50) {
      console.log(
        `slow wait: ${event.limiter.kind} "${event.limiter.name}" ${event.outcome} after ${Math.round(waited / 10) * 10} ms (weight ${event.weight})`,
      );
    }
  },
  start() {},
  end() {},
  asyncStart() {},
  error() {},
});

const database = new Semaphore(1, { name: "database" });
const query = () => database.run(() => new Promise((resolve) => setTimeout(resolve, 100)));
await Promise.all([query(), query(), database.acquire({ timeout: 60 }).catch(() => undefined)]);
