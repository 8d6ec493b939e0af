/**
 * The mock provider's shutdown: close() must leave nothing behind that keeps the process alive or the
 * record claiming requests are still being served.
 */
import { type MockServer, startMockServer } from "sluice/testing";
import { describe, expect, it } from "vitest";

function timers(): number {
  return process.getActiveResourcesInfo().filter((kind) => kind === "Timeout").length;
}

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(condition()).toBe(true);
}

function post(server: MockServer, path: string, body: unknown): Promise<string> {
  return fetch(`${server.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  }).then(
    (response) =>
      response.text().then(
        () => "answered",
        () => "dropped",
      ),
    () => "dropped",
  );
}

describe("startMockServer: close()", () => {
  it.each([
    ["a slow answer", "/v1/chat/completions", {}],
    ["a slow stream", "/v1/chat/completions", { stream: true }],
  ])("ends %s at once: no latency timer outlives the server, nothing stays in flight", async (_, path, extra) => {
    const before = timers();
    const server = await startMockServer({ latency: 60_000 });
    const pending = post(server, path, { model: "mock", messages: [{ role: "user", content: "hi" }], ...extra });
    await until(() => server.inFlight === 1);
    await server.close();
    expect(await pending).toBe("dropped");
    await until(() => server.inFlight === 0);
    expect(server.requests[0]).toMatchObject({ outcome: "aborted" });
    expect(server.requests[0]?.endedAt).toBeDefined();
    // The 60-second latency timer would keep a script alive for a minute after close().
    expect(timers()).toBeLessThanOrEqual(before);
  });
});
