/**
 * keyPoolFetch: one fetch over several keys, each with its own limiter. The routing tests use a fetch
 * that answers at once (no server, no clock); the removal tests run against the mock provider with
 * per-key limits, whose own record says which key each request carried.
 */
import diagnostics from "node:diagnostics_channel";
import fc from "fast-check";
import { identityOf, RateLimiter } from "sluice";
import {
  type FetchFunction,
  KeyRejectedError,
  type KeyRemovedDiagnosticsEvent,
  type KeyRemovedEvent,
  keyPoolFetch,
  NoKeysLeftError,
  QuotaExhaustedError,
} from "sluice/http";
import { type MockServer, type MockServerOptions, startMockServer } from "sluice/testing";
import { afterEach, describe, expect, it } from "vitest";

const servers: MockServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function start(options: MockServerOptions): Promise<MockServer> {
  const server = await startMockServer(options);
  servers.push(server);
  return server;
}

const FAST = { retry: { attempts: 4, baseDelay: 5, maxDelay: 20, nonIdempotent: true } } as const;

function chat(fetch: FetchFunction, url: string, i: number): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "mock", max_tokens: 10, messages: [{ role: "user", content: `item ${i}` }] }),
  });
}

/** A fetch that answers 200 at once and notes the credential of every request it sent. */
function answering() {
  const sent: string[] = [];
  const fetch: FetchFunction = async (_input, init) => {
    const headers = new Headers(init?.headers);
    sent.push(headers.get("authorization") ?? headers.get("x-api-key") ?? "none");
    return new Response(JSON.stringify({ ok: true }), { headers: { "content-type": "application/json" } });
  };
  return { sent, fetch };
}

function countBy(values: readonly (string | undefined)[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const value of values) counts[String(value)] = (counts[String(value)] ?? 0) + 1;
  return counts;
}

describe("keyPoolFetch: bad input names the thing", () => {
  it("refuses no keys, a key without a credential, duplicate keys, a shared limiter, unknown options", () => {
    expect(() => keyPoolFetch([])).toThrow(RangeError);
    expect(() => keyPoolFetch([])).toThrow(/keys must name at least one key/);
    expect(() => keyPoolFetch("sk-a" as never)).toThrow(TypeError);
    expect(() => keyPoolFetch([{ apiKey: "sk-a" }, { name: "b" }])).toThrow(/keys\[1\] has no credential/);
    expect(() => keyPoolFetch([{ apiKey: "sk-a" }, { apiKey: "" }])).toThrow(/keys\[1\]\.apiKey must be a non-empty/);
    expect(() => keyPoolFetch([{ apiKey: "sk-aaaaaaaaaaaa1234" }, { apiKey: "sk-aaaaaaaaaaaa1234" }])).toThrow(
      /keys\[1\] repeats keys\[0\] \(sk-\.\.\.1234\)/,
    );
    // The same key at two endpoints is two keys.
    expect(() =>
      keyPoolFetch([
        { apiKey: "sk-a", baseURL: "https://east.example.com" },
        { apiKey: "sk-a", baseURL: "https://west.example.com" },
      ]),
    ).not.toThrow();
    const limiter = new RateLimiter();
    expect(() =>
      keyPoolFetch([
        { apiKey: "sk-a", limiter },
        { apiKey: "sk-b", limiter },
      ]),
    ).toThrow(/keys\[1\]\.limiter is keys\[0\]\.limiter/);
    expect(() =>
      keyPoolFetch([
        { apiKey: "sk-a", name: "x" },
        { apiKey: "sk-b", name: "x" },
      ]),
    ).toThrow(/keys\[1\] has the name of keys\[0\]/);
    expect(() => keyPoolFetch([{ apikey: "sk-a" } as never])).toThrow(
      /unknown option "apikey" in keys\[0\]; did you mean "apiKey"/,
    );
    expect(() => keyPoolFetch([{ apiKey: "sk-a", baseURL: "east" }])).toThrow(
      /keys\[0\]\.baseURL must be an absolute URL/,
    );
    expect(() => keyPoolFetch([{ apiKey: "sk-a", limiter: {} as never }])).toThrow(
      /keys\[0\]\.limiter must be a Limiter/,
    );
    expect(() => keyPoolFetch([{ apiKey: "sk-a" }], { removeOn: "401" as never })).toThrow(/options\.removeOn/);
  });

  it("never shows a whole API key in an error", () => {
    const secret = "sk-proj-0123456789abcdefSECRET";
    let message = "";
    try {
      keyPoolFetch([{ apiKey: secret }, { apiKey: secret }]);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/repeats/);
    expect(message).not.toContain(secret);
  });
});

describe("keyPoolFetch: routing", () => {
  it("spreads a burst over every key in turn when none can tell a wait", async () => {
    const { sent, fetch } = answering();
    const pooled = keyPoolFetch([{ apiKey: "sk-a" }, { apiKey: "sk-b" }, { apiKey: "sk-c" }], { fetch });
    await Promise.all(Array.from({ length: 90 }, (_, i) => chat(pooled, "http://api.test", i)));
    expect(countBy(sent)).toEqual({ "Bearer sk-a": 30, "Bearer sk-b": 30, "Bearer sk-c": 30 });
    expect(pooled.statistics().keys.map((key) => key.routed)).toEqual([30, 30, 30]);
  });

  it("sends each request to the key that can start it soonest, behind what it already queued there", async () => {
    const { sent, fetch } = answering();
    // Three keys with different request rates; a burst beyond all three buckets. A key's share of the
    // backlog follows its rate: soonest-start routing is "join the queue that empties first".
    const limiters = [10, 20, 30].map((limit) => new RateLimiter({ limits: [{ limit, interval: "1h" }] }));
    const pooled = keyPoolFetch(
      limiters.map((limiter, i) => ({ apiKey: `sk-${"abc"[i]}`, limiter })),
      { fetch, learnLimits: false },
    );
    const calls = Array.from({ length: 120 }, (_, i) => chat(pooled, "http://api.test", i));
    await new Promise((resolve) => setTimeout(resolve, 50));
    // The buckets' worth went out at once; the rest wait for an hour's refill, spread by rate.
    expect(countBy(sent)).toEqual({ "Bearer sk-a": 10, "Bearer sk-b": 20, "Bearer sk-c": 30 });
    expect(limiters.map((limiter) => limiter.waiting)).toEqual([10, 20, 30]);
    pooled.stop(new Error("done"));
    await Promise.allSettled(calls);
  });

  it("property: each call went to a key no later than any other could start it (greedy soonest-start)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 1, max: 160 }),
        async (limits, calls) => {
          const { sent, fetch } = answering();
          const pooled = keyPoolFetch(
            limits.map((limit, i) => ({
              apiKey: `sk-${i}`,
              limiter: new RateLimiter({ limits: [{ limit, interval: "1h" }] }),
            })),
            { fetch, learnLimits: false },
          );
          const pending = Array.from({ length: calls }, (_, i) => chat(pooled, "http://api.test", i));
          await new Promise((resolve) => setTimeout(resolve, 0));
          const routed = pooled.statistics().keys.map((key) => key.routed);
          // Every call was routed once; no key started more than its bucket holds.
          expect(routed.reduce((sum, count) => sum + count, 0)).toBe(calls);
          for (const [i, limit] of limits.entries()) {
            expect(sent.filter((key) => key === `Bearer sk-${i}`).length).toBeLessThanOrEqual(limit);
          }
          // In units of the hour: the wait key i's last call had, against the wait one more call would have
          // at key j now. A key given a call past its bucket was the soonest then, so no other key beats it.
          const waitOfLast = (i: number) =>
            Math.max(0, ((routed[i] as number) - (limits[i] as number)) / (limits[i] as number));
          const waitOfNext = (j: number) =>
            Math.max(0, ((routed[j] as number) + 1 - (limits[j] as number)) / (limits[j] as number));
          for (const i of limits.keys()) {
            if ((routed[i] as number) <= (limits[i] as number)) continue;
            for (const j of limits.keys()) expect(waitOfLast(i)).toBeLessThanOrEqual(waitOfNext(j) + 1e-9);
          }
          pooled.stop(new Error("done"));
          await Promise.allSettled(pending);
        },
      ),
      { numRuns: 40 },
    );
  });

  it("avoids a paused key while another can start at once", async () => {
    const { sent, fetch } = answering();
    const paused = new RateLimiter();
    paused.pause("1h");
    const pooled = keyPoolFetch(
      [
        { apiKey: "sk-a", limiter: paused },
        { apiKey: "sk-b", limiter: new RateLimiter() },
      ],
      { fetch },
    );
    await Promise.all(Array.from({ length: 10 }, (_, i) => chat(pooled, "http://api.test", i)));
    expect(countBy(sent)).toEqual({ "Bearer sk-b": 10 });
  });

  it("sends the credential in apiKeyHeader and the key's headers, and rebases the URL on baseURL", async () => {
    const seen: { url: string; headers: Headers }[] = [];
    const fetch: FetchFunction = async (input, init) => {
      seen.push({ url: String(input), headers: new Headers(init?.headers) });
      return new Response("{}");
    };
    const pooled = keyPoolFetch(
      [
        {
          apiKey: "sk-ant-1",
          baseURL: "https://eu.example.com/proxy/",
          headers: { "anthropic-version": "2023-06-01" },
        },
      ],
      { fetch, apiKeyHeader: "x-api-key" },
    );
    await pooled("https://api.example.com/v1/messages?beta=1", {
      method: "POST",
      body: "{}",
      headers: { "x-trace": "1" },
    });
    expect(seen[0]?.url).toBe("https://eu.example.com/proxy/v1/messages?beta=1");
    expect(seen[0]?.headers.get("x-api-key")).toBe("sk-ant-1");
    expect(seen[0]?.headers.get("anthropic-version")).toBe("2023-06-01");
    expect(seen[0]?.headers.get("x-trace")).toBe("1");
    expect(seen[0]?.headers.has("authorization")).toBe(false);
  });
});

describe("keyPoolFetch: keys out of rotation", () => {
  it("takes a key whose quota runs out out of rotation; the others serve every call", async () => {
    const server = await start({
      keys: { "sk-a": { quota: { requests: 5 } }, "sk-b": {}, "sk-c": {} },
      latency: 2,
    });
    const removed: KeyRemovedEvent[] = [];
    const pooled = keyPoolFetch(
      ["sk-a", "sk-b", "sk-c"].map((apiKey) => ({
        apiKey,
        name: apiKey,
        limiter: new RateLimiter({ concurrency: 2 }),
      })),
      { ...FAST, onKeyRemoved: (event) => removed.push(event) },
    );
    const statuses = await Promise.all(
      Array.from({ length: 60 }, (_, i) => chat(pooled, server.url, i).then((response) => response.status)),
    );
    expect(statuses.every((status) => status === 200)).toBe(true);
    expect(removed).toHaveLength(1);
    expect(removed[0]?.key).toBe("sk-a");
    expect(removed[0]?.keysLeft).toBe(2);
    expect(removed[0]?.reason).toBeInstanceOf(QuotaExhaustedError);
    const served = server.requests.filter((record) => record.outcome === "ok");
    expect(served).toHaveLength(60);
    expect(countBy(served.map((record) => record.apiKey))["sk-a"]).toBe(5);
    // Once out, the key is not used again: its calls in flight when the quota answered were all it sent.
    expect(
      server.requests.filter((record) => record.apiKey === "sk-a" && record.outcome === "quota").length,
    ).toBeLessThanOrEqual(2);
    const keys = pooled.statistics().keys;
    expect(keys[0]?.removedBecause).toBe(removed[0]?.reason);
    expect(keys[1]?.removedBecause).toBeUndefined();
  });

  it("takes a key the server refuses (401) out of rotation and sends its calls with the others", async () => {
    const server = await start({ keys: { "sk-b": {}, "sk-c": {} } });
    const removed: KeyRemovedEvent[] = [];
    const published: KeyRemovedDiagnosticsEvent[] = [];
    const subscriber = (message: unknown) => published.push(message as KeyRemovedDiagnosticsEvent);
    diagnostics.subscribe("sluice:http.key.removed", subscriber);
    const limiters = ["sk-revoked", "sk-b", "sk-c"].map((apiKey) => new RateLimiter({ name: apiKey, concurrency: 4 }));
    const pooled = keyPoolFetch(
      ["sk-revoked", "sk-b", "sk-c"].map((apiKey, index) => ({ apiKey, limiter: limiters[index] as RateLimiter })),
      {
        ...FAST,
        onKeyRemoved: (event) => removed.push(event),
      },
    );
    try {
      const statuses = await Promise.all(
        Array.from({ length: 30 }, (_, i) => chat(pooled, server.url, i).then((response) => response.status)),
      );
      expect(statuses.every((status) => status === 200)).toBe(true);
    } finally {
      diagnostics.unsubscribe("sluice:http.key.removed", subscriber);
    }
    expect(removed.map((event) => event.key)).toEqual(["key 1 (sk-...)"]);
    expect(removed[0]?.reason).toBeInstanceOf(KeyRejectedError);
    expect(removed[0]?.reason.response?.status).toBe(401);
    expect(server.requests.filter((record) => record.outcome === "unauthorized").length).toBeGreaterThanOrEqual(1);
    // The same removal on the diagnostics channel, once, with the key's limiter.
    expect(published).toEqual([{ ...removed[0], limiter: identityOf(limiters[0]) }]);
    expect(published[0]?.limiter?.name).toBe("sk-revoked");
  });

  it("rejects with NoKeysLeftError naming why each key left once every key is out", async () => {
    const server = await start({ keys: { "sk-spent": { quota: { requests: 1 } } } });
    const pooled = keyPoolFetch(
      [
        { apiKey: "sk-unknown", name: "unknown" },
        { apiKey: "sk-spent", name: "spent" },
      ],
      FAST,
    );
    const outcomes = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => chat(pooled, server.url, i)));
    const failures = outcomes.filter((outcome) => outcome.status === "rejected").map((outcome) => outcome.reason);
    expect(outcomes.filter((outcome) => outcome.status === "fulfilled")).toHaveLength(1);
    expect(failures).toHaveLength(5);
    for (const error of failures) {
      expect(error).toBeInstanceOf(NoKeysLeftError);
      expect(error.message).toMatch(/^no key left in the pool: unknown: HTTP 401.*; spent: quota exhausted/);
      expect((error as NoKeysLeftError).reasons.map((entry) => entry.key)).toEqual(["unknown", "spent"]);
    }
    await expect(chat(pooled, server.url, 7)).rejects.toBeInstanceOf(NoKeysLeftError);
  });

  it("moves a call refused with 401 to another key, but returns the 401 of a stream body it cannot send twice", async () => {
    const fetch: FetchFunction = async (_input, init) => {
      if (init?.body instanceof ReadableStream) await new Response(init.body).text();
      const refused = new Headers(init?.headers).get("authorization") === "Bearer sk-revoked";
      return new Response(refused ? '{"error":{"code":"invalid_api_key"}}' : "ok", { status: refused ? 401 : 200 });
    };
    const moved = keyPoolFetch([{ apiKey: "sk-revoked" }, { apiKey: "sk-good" }], { fetch });
    const response = await moved("http://api.test/v1/x", { method: "POST", body: "{}" });
    expect(response.status).toBe(200);
    const once = keyPoolFetch([{ apiKey: "sk-revoked" }, { apiKey: "sk-good" }], { fetch });
    const stream = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode("{}"));
        controller.close();
      },
    });
    const refused = await once("http://api.test/v1/x", { method: "POST", body: stream, duplex: "half" } as RequestInit);
    expect(refused.status).toBe(401);
    expect(await refused.text()).toContain("invalid_api_key");
    expect(once.statistics().keys[0]?.removedBecause).toBeInstanceOf(KeyRejectedError);
  });

  it("learns each key's own limits from its own responses", async () => {
    const server = await start({ keys: { "sk-a": { requestsPerMinute: 60 }, "sk-b": { requestsPerMinute: 120 } } });
    const limiters = [new RateLimiter(), new RateLimiter()];
    const pooled = keyPoolFetch(
      [
        { apiKey: "sk-a", limiter: limiters[0] },
        { apiKey: "sk-b", limiter: limiters[1] },
      ],
      FAST,
    );
    await Promise.all([0, 1, 2, 3].map((i) => chat(pooled, server.url, i)));
    expect(
      limiters.map((limiter) => limiter.limits.find((limit) => (limit.unit ?? "requests") === "requests")?.limit),
    ).toEqual([60, 120]);
  });
});
