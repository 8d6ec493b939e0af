/**
 * limitedFetch's own concurrency window under the limiter (the `concurrency` option), on a fake clock
 * with a fetch that answers like a service of hidden capacity: a static limit set too high backs off on
 * overload answers instead of pausing every caller (issue 18's collapse), and `false` turns that off.
 */
import { AdaptiveLimiter, Semaphore } from "sluice";
import { type FetchFunction, limitedFetch } from "sluice/http";
import { FakeClock, flushMicrotasks } from "sluice/testing";
import { describe, expect, it } from "vitest";

/**
 * A service on the fake clock: `capacity` served at once in `serviceMs`, `queue` more waiting, and a 503
 * without Retry-After beyond that.
 */
function overloadedService(clock: FakeClock, capacity: number, queue: number, serviceMs: number) {
  let inside = 0;
  const counts = { ok: 0, refused: 0, maxInside: 0 };
  const fetch: FetchFunction = async () => {
    if (inside >= capacity + queue) {
      counts.refused++;
      return new Response("{}", { status: 503, headers: { "content-type": "application/json" } });
    }
    inside++;
    counts.maxInside = Math.max(counts.maxInside, inside);
    // Served in turn: a request behind the first `capacity` waits for the ones ahead of it.
    const wait = serviceMs * Math.ceil(inside / capacity);
    await new Promise<void>((resolve) => clock.setTimeout(resolve, wait));
    inside--;
    counts.ok++;
    return new Response("{}", { status: 200, headers: { "content-type": "application/json" } });
  };
  return { fetch, counts };
}

/** Runs the fake clock until every call settled, or `limit` steps passed. */
async function runAll(clock: FakeClock, calls: Promise<Response>[], limit = 200_000): Promise<Response[]> {
  let pending = calls.length;
  for (const call of calls) call.finally(() => pending--).catch(() => undefined);
  for (let step = 0; step < limit && pending > 0; step++) {
    await flushMicrotasks();
    if (pending > 0 && clock.pendingTimers > 0) await clock.next();
  }
  return Promise.all(calls);
}

async function bulk(concurrency: "backoff" | "auto" | false, count: number) {
  const clock = new FakeClock();
  const service = overloadedService(clock, 16, 16, 20);
  const limited = limitedFetch(new Semaphore(64), { fetch: service.fetch, clock, concurrency, random: () => 0.5 });
  const responses = await runAll(
    clock,
    Array.from({ length: count }, (_, i) => limited(`http://api.test/${i}`)),
  );
  return { clock, service, responses, statistics: limited.statistics() };
}

describe("limitedFetch: a static limit above the service's capacity", () => {
  it("backs off under the ceiling: no pause, at most 5% refused, everything served", async () => {
    const { responses, service, statistics } = await bulk("backoff", 1_000);
    expect(responses.every((response) => response.status === 200)).toBe(true);
    expect(statistics.pauses).toBe(0);
    expect(service.counts.refused / statistics.attempts).toBeLessThanOrEqual(0.05);
    expect(statistics.concurrency).toBeLessThanOrEqual(32);
  });

  it("with concurrency: false, each 503 pauses everyone (the behaviour the window replaces)", async () => {
    const { statistics } = await bulk(false, 200);
    expect(statistics.pauses).toBeGreaterThan(0);
    expect(statistics.concurrency).toBeUndefined();
  });

  it("the window finishes the same work in far less (fake) time than pausing everyone", async () => {
    const windowed = await bulk("backoff", 300);
    const paused = await bulk(false, 300);
    expect(windowed.clock.now()).toBeLessThan(paused.clock.now() / 4);
  });

  it("auto: an AdaptiveLimiter under the ceiling serves everything", async () => {
    const { responses, statistics } = await bulk("auto", 500);
    expect(responses.every((response) => response.status === 200)).toBe(true);
    expect(statistics.concurrency).toBeLessThanOrEqual(64);
  });

  it("a 429 with Retry-After pauses as before and also counts as a drop", async () => {
    const clock = new FakeClock();
    const window = new AdaptiveLimiter({ algorithm: "aimd", initial: 8, max: 8 });
    let calls = 0;
    const fetch: FetchFunction = async () =>
      ++calls === 1
        ? new Response("{}", { status: 429, headers: { "retry-after-ms": "1000" } })
        : new Response("{}", { status: 200 });
    const limited = limitedFetch(new Semaphore(8), { fetch, clock, concurrency: window, random: () => 0 });
    const response = await runAll(clock, [limited("http://api.test/a")]);
    expect(response[0]?.status).toBe(200);
    expect(limited.statistics().pauses).toBe(1);
    expect(window.statistics()).toMatchObject({ drops: 1 });
  });

  it("refuses a concurrency option it does not know, naming it", () => {
    expect(() => limitedFetch(new Semaphore(1), { concurrency: "adaptive" as never })).toThrow(
      /concurrency must be "backoff", "auto", an AdaptiveLimiter or false; got "adaptive"/,
    );
  });
});
