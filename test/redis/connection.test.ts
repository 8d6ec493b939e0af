/**
 * A command written to a connection that then drops: ioredis sets it aside to resend after a reconnect and
 * fails it only then, so while Redis stays away it waited out sluice's whole commandTimeout (5 s) — in the
 * CLI, a run that lost Redis exited 5.6 s later instead of 0.6 s in about one run in five. The adapter now
 * gives it the rule of a command sent a moment later into ioredis' offline queue. Each test stops a real
 * redis-server in the middle of a script that is still running.
 */
import { Redis, type RedisOptions } from "ioredis";
import { fromIoredis } from "sluice/redis";
import { afterEach, describe, expect, it } from "vitest";
import { dropCommands } from "../../src/redis/connection.js";
import { RedisServer } from "../support/redis-server.js";

/** A script that keeps Redis busy for `ms`, so the test can stop the server while it is in flight. */
const BUSY = `local t = redis.call('TIME'); local start = t[1] * 1000 + t[2] / 1000
while true do
  t = redis.call('TIME')
  if t[1] * 1000 + t[2] / 1000 - start > tonumber(ARGV[1]) then return 'done' end
end`;

const open: { server?: RedisServer; client?: Redis }[] = [];
afterEach(async () => {
  for (const { server, client } of open.splice(0)) {
    client?.disconnect();
    await server?.stop();
  }
});

async function setUp(options: RedisOptions) {
  const server = await RedisServer.start();
  const client = new Redis(server.port, "127.0.0.1", { retryStrategy: () => 100, ...options });
  client.on("error", () => undefined);
  open.push({ server, client });
  await client.ping();
  return { server, client, connection: fromIoredis(client) };
}

/** How the promise settled and when, giving up (as "pending") after `ms`. */
async function settled(promise: Promise<unknown>, ms: number) {
  const started = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    promise.then(
      (value) => ({ state: "resolved", value }),
      (error: unknown) => ({ state: "rejected", error }),
    ),
    new Promise<{ state: "pending" }>((resolve) => {
      timer = setTimeout(() => resolve({ state: "pending" }), ms);
    }),
  ]);
  clearTimeout(timer);
  return { ...outcome, after: performance.now() - started };
}

/** Gives the script time to reach Redis and start. */
const whileRunning = () => new Promise((resolve) => setTimeout(resolve, 100));

describe("a command in flight when the connection drops", () => {
  it("fails after maxRetriesPerRequest reconnect attempts, as a command in the offline queue does", async () => {
    const { server, connection } = await setUp({ maxRetriesPerRequest: 2 });
    const inFlight = connection.eval(BUSY, [], [5_000]);
    await whileRunning();
    await server.stop();
    // Sent a moment after the drop: ioredis' offline queue, flushed after 2 retries.
    const queued = connection.eval("return 1", [], []);
    const [first, second] = await Promise.all([settled(inFlight, 4_000), settled(queued, 4_000)]);
    expect(first.state).toBe("rejected");
    expect(String((first as { error?: unknown }).error)).toMatch(/dropped with the command in flight/);
    expect(second.state).toBe("rejected");
    // Three closes 100 ms apart; without the guard it stays pending for as long as Redis is away.
    expect(first.after).toBeLessThan(2_000);
  });

  it("is resent, and answered, when Redis comes back before the retries run out", async () => {
    const { server, connection } = await setUp({ maxRetriesPerRequest: 20 });
    const inFlight = connection.eval(BUSY, [], [300]);
    await whileRunning();
    await server.restart();
    const outcome = await settled(inFlight, 5_000);
    expect(outcome).toMatchObject({ state: "resolved", value: "done" });
  });

  it("fails at the reconnect when ioredis is told not to resend it (it used to be dropped unanswered)", async () => {
    const { server, connection } = await setUp({ maxRetriesPerRequest: 20, autoResendUnfulfilledCommands: false });
    const inFlight = connection.eval(BUSY, [], [5_000]);
    await whileRunning();
    await server.restart();
    const outcome = await settled(inFlight, 5_000);
    expect(outcome.state).toBe("rejected");
    expect(String((outcome as { error?: unknown }).error)).toMatch(/not resent/);
  });

  it("fails at once when the client is disconnected between reconnect attempts (ioredis fails nothing then)", async () => {
    const { server, client, connection } = await setUp({ maxRetriesPerRequest: 20 });
    await server.stop();
    await new Promise((resolve) => setTimeout(resolve, 150));
    // Between attempts: this one waits in ioredis' offline queue, which disconnect() leaves as it is.
    const queued = connection.eval("return 1", [], []);
    client.disconnect();
    expect((await settled(queued, 300)).state).toBe("pending");
    dropCommands(client, "dropped by the test");
    const outcome = await settled(queued, 300);
    expect(outcome).toMatchObject({ state: "rejected" });
    expect(String((outcome as { error?: unknown }).error)).toMatch(/dropped by the test/);
    // And one sent afterwards (a caller still at work) fails at once too, not into that queue for good.
    const later = await settled(connection.eval("return 1", [], []), 300);
    expect(later).toMatchObject({ state: "rejected" });
    expect(String((later as { error?: unknown }).error)).toMatch(/dropped by the test/);
  });

  it("a connection sluice duplicated fails its pending commands when sluice disconnects it", async () => {
    const { server, connection } = await setUp({ maxRetriesPerRequest: 20 });
    const copy = connection.duplicate();
    await copy.eval("return 1", [], []);
    await server.stop();
    await new Promise((resolve) => setTimeout(resolve, 150));
    const queued = copy.eval("return 1", [], []);
    copy.disconnect();
    const outcome = await settled(queued, 1_000);
    expect(outcome.state).toBe("rejected");
  });
});
