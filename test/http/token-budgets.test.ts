/**
 * Input/output token limits, cache reads, daily quotas and the countTokens hook, through limitedFetch
 * against the mock provider over real loopback HTTP: each test checks, from the server's own record,
 * what actually reached the server.
 */
import { RateLimiter } from "sluice";
import { chatTokens, type FetchFunction, limitedFetch, type RequestDescription } from "sluice/http";
import { type MockServer, type MockServerOptions, startMockServer } from "sluice/testing";
import { afterEach, describe, expect, it } from "vitest";

const servers: MockServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function start(options: MockServerOptions = {}): Promise<MockServer> {
  const server = await startMockServer(options);
  servers.push(server);
  return server;
}

/** An Anthropic Messages request whose system prompt (about `systemChars` / 4 tokens) is cached. */
function messagesBody(systemChars: number, question: string, maxTokens = 64): string {
  return JSON.stringify({
    model: "mock",
    max_tokens: maxTokens,
    system: [{ type: "text", text: "s".repeat(systemChars), cache_control: { type: "ephemeral" } }],
    messages: [{ role: "user", content: question }],
  });
}

function post(fetch: FetchFunction, url: string, body: string): Promise<Response> {
  return fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body });
}

function chatBody(content: string, maxTokens = 10): string {
  return JSON.stringify({ model: "mock", max_tokens: maxTokens, messages: [{ role: "user", content }] });
}

/** Settles happen once the clone of the body has been read: give them a turn. */
const settled = () => new Promise((resolve) => setTimeout(resolve, 10));

describe("the mock provider: Anthropic's ITPM and OTPM, cache reads exempt", () => {
  it("reports input and output limits in anthropic-ratelimit-* headers and cache use in usage", async () => {
    const server = await start({ inputTokensPerMinute: 50_000, outputTokensPerMinute: 8_000, completionTokens: 5 });
    const body = messagesBody(4_000, "first");
    const first = await post(fetch, `${server.url}/v1/messages`, body);
    expect(first.status).toBe(200);
    expect(first.headers.get("anthropic-ratelimit-input-tokens-limit")).toBe("50000");
    expect(first.headers.get("anthropic-ratelimit-output-tokens-limit")).toBe("8000");
    const input = Math.ceil(body.length / 4);
    // Charged its input (a cache write counts) and its max_tokens (64), settled to the 5 produced.
    expect(Number(first.headers.get("anthropic-ratelimit-input-tokens-remaining"))).toBe(50_000 - input);
    expect(Number(first.headers.get("anthropic-ratelimit-output-tokens-remaining"))).toBeGreaterThanOrEqual(8_000 - 64);
    const usage1 = ((await first.json()) as { usage: Record<string, number> }).usage;
    expect(usage1["cache_creation_input_tokens"]).toBe(server.requests[0]?.cacheWriteTokens);
    expect(usage1["cache_creation_input_tokens"]).toBeGreaterThan(900);
    expect(usage1["cache_read_input_tokens"]).toBe(0);

    const second = await post(fetch, `${server.url}/v1/messages`, messagesBody(4_000, "again"));
    const usage2 = ((await second.json()) as { usage: Record<string, number> }).usage;
    expect(usage2["cache_read_input_tokens"]).toBe(usage1["cache_creation_input_tokens"]);
    expect(usage2["cache_creation_input_tokens"]).toBe(0);
    expect(server.requests[1]).toMatchObject({
      cacheReadTokens: usage2["cache_read_input_tokens"],
      cacheWriteTokens: 0,
    });
  });

  it("a refused request writes nothing to the prompt cache: its retry writes it", async () => {
    const server = await start({ inject: ({ index }) => (index === 0 ? "rate-limit" : undefined) });
    const body = messagesBody(4_000, "first");
    expect((await post(fetch, `${server.url}/v1/messages`, body)).status).toBe(429);
    const retried = await post(fetch, `${server.url}/v1/messages`, body);
    const usage = ((await retried.json()) as { usage: Record<string, number> }).usage;
    expect(usage["cache_read_input_tokens"]).toBe(0);
    expect(usage["cache_creation_input_tokens"]).toBeGreaterThan(900);
  });

  it("refuses with a 429 over ITPM, and counts no cache read against it", async () => {
    // 2,500 input tokens a minute; each request has ~1,030 input tokens, ~1,000 of them a cached prefix.
    const server = await start({ inputTokensPerMinute: 2_500 });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++)
      statuses.push((await post(fetch, `${server.url}/v1/messages`, messagesBody(4_000, `q${i}`))).status);
    // Without the exemption the third would be refused; with it, only the first pays for the prefix.
    expect(statuses).toEqual([200, 200, 200, 200]);
    const uncached = await post(
      fetch,
      `${server.url}/v1/messages`,
      JSON.stringify({ model: "m", max_tokens: 5, messages: [{ role: "user", content: "x".repeat(8_000) }] }),
    );
    expect(uncached.status).toBe(429);
    expect(JSON.stringify(await uncached.json())).toMatch(/input tokens per minute \(ITPM\)/);
  });

  it("limitedFetch learns ITPM and OTPM from the headers and settles input and output apart", async () => {
    const server = await start({ inputTokensPerMinute: 40_000, outputTokensPerMinute: 8_000, completionTokens: 7 });
    const limiter = new RateLimiter({ concurrency: 4 });
    const fetch = limitedFetch(limiter);
    for (const question of ["one", "two"])
      await (await post(fetch, `${server.url}/v1/messages`, messagesBody(4_000, question))).arrayBuffer();
    await settled();
    expect(limiter.limits).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ unit: "input-tokens", limit: 40_000 }),
        expect.objectContaining({ unit: "output-tokens", limit: 8_000 }),
      ]),
    );
    const [first, second] = server.requests;
    const stats = limiter.statistics().settled;
    // Output: max_tokens reserved, settled to what was produced. Input: the cache read comes back.
    expect(stats.estimated["output-tokens"]).toBe(128);
    expect(stats.actual["output-tokens"]).toBe(14);
    const charged = (record: typeof first) => (record?.inputTokens ?? 0) - (record?.cacheReadTokens ?? 0);
    expect(stats.actual["input-tokens"]).toBe(charged(first) + charged(second));
    expect(second?.cacheReadTokens).toBeGreaterThan(900);
  });

  it("a client with ITPM and OTPM configured sends a burst without a single 429", async () => {
    const server = await start({
      inputTokensPerMinute: 3_000,
      outputTokensPerMinute: 600,
      minute: "2s",
      completionTokens: 20,
    });
    const limiter = new RateLimiter({
      limits: [
        { limit: 3_000, interval: "2s", unit: "input-tokens" },
        { limit: 600, interval: "2s", unit: "output-tokens" },
      ],
    });
    const fetch = limitedFetch(limiter, { learnLimits: false });
    // Output is the binding limit: 100 reserved each, 6 at once; each settles down to 20.
    const responses = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        post(
          fetch,
          `${server.url}/v1/messages`,
          JSON.stringify({ model: "m", max_tokens: 100, messages: [{ role: "user", content: `item ${i}` }] }),
        ),
      ),
    );
    expect(responses.map((response) => response.status)).toEqual(Array(12).fill(200));
    expect(server.summary().status429).toBe(0);
  });
});

describe("the mock provider: OpenAI's daily quotas (RPD, TPD)", () => {
  it("refuses the request over RPD with a 429 naming it, and sends no headers for it", async () => {
    const server = await start({ requestsPerMinute: 100, requestsPerDay: 3 });
    const statuses: number[] = [];
    let last = new Response();
    for (let i = 0; i < 4; i++) {
      last = await post(fetch, `${server.url}/v1/chat/completions`, chatBody(`q${i}`));
      statuses.push(last.status);
    }
    expect(statuses).toEqual([200, 200, 200, 429]);
    const error = ((await last.json()) as { error: { message: string; type: string; code: string } }).error;
    expect(error).toMatchObject({ type: "requests", code: "rate_limit_exceeded" });
    expect(error.message).toMatch(/requests per day \(RPD\): Limit 3/);
    // A day's refill of one request: 8 hours, as retry-after says.
    expect(Number(last.headers.get("retry-after"))).toBeGreaterThan(7 * 3600);
    expect(last.headers.get("x-ratelimit-limit-requests")).toBe("100");
  });

  it("refuses the request over TPD, and a shorter `day` refills it sooner", async () => {
    const server = await start({ tokensPerDay: 100, day: "200ms", completionTokens: 5 });
    const body = chatBody("x".repeat(200), 10);
    expect((await post(fetch, `${server.url}/v1/chat/completions`, body)).status).toBe(200);
    const refused = await post(fetch, `${server.url}/v1/chat/completions`, body);
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toMatch(/tokens per day \(TPD\)/);
  });

  it("limitedFetch with a daily quota configured learns the per-minute limit beside it and stops at the quota", async () => {
    const server = await start({ requestsPerMinute: 100, requestsPerDay: 3 });
    const limiter = new RateLimiter({ limits: [{ limit: 3, interval: "1d" }] });
    const fetch = limitedFetch(limiter, { retry: { totalTime: "100ms" } });
    for (let i = 0; i < 3; i++)
      expect((await post(fetch, `${server.url}/v1/chat/completions`, chatBody(`q${i}`))).status).toBe(200);
    expect(limiter.limits).toEqual([
      expect.objectContaining({ limit: 3, interval: "1d" }),
      expect.objectContaining({ unit: "requests", limit: 100 }),
    ]);
    // The day is spent: the fourth waits in the limiter (and times out) instead of earning a 429.
    await expect(post(fetch, `${server.url}/v1/chat/completions`, chatBody("q3"))).rejects.toThrow(
      /timed out|TimeoutError|within/i,
    );
    expect(server.requests).toHaveLength(3);
    expect(server.summary().status429).toBe(0);
  });
});

describe("limitedFetch: the countTokens hook", () => {
  it("estimates the input with chatTokens' count of the prompt (sync or async) plus the chat overhead", async () => {
    for (const tokenize of [(text: string) => text.length, async (text: string) => text.length]) {
      const server = await start({ completionTokens: 3 });
      const limiter = new RateLimiter({ limits: [{ limit: 10_000, interval: "1m", unit: "input-tokens" }] });
      const seen: string[] = [];
      const fetch = limitedFetch(limiter, {
        countTokens: chatTokens((text) => {
          seen.push(text);
          return tokenize(text);
        }),
      });
      await (await post(fetch, `${server.url}/v1/chat/completions`, chatBody("hello there", 50))).arrayBuffer();
      await settled();
      expect(seen).toEqual(["hello there"]);
      const stats = limiter.statistics().settled;
      // 11 characters counted, 1 message (4) and the reply's priming (3).
      expect(stats.estimated["input-tokens"]).toBe(11 + 4 + 3);
      expect(stats.estimated["output-tokens"]).toBe(50);
      expect(stats.estimated["tokens"]).toBe(18 + 50);
      expect(stats.actual["input-tokens"]).toBe(server.requests[0]?.inputTokens);
      expect(stats.actual["output-tokens"]).toBe(3);
    }
  });

  it("takes any hook of the request: its count is the input estimate as it is", async () => {
    const server = await start({ completionTokens: 3 });
    const limiter = new RateLimiter({ limits: [{ limit: 10_000, interval: "1m", unit: "input-tokens" }] });
    const fetch = limitedFetch(limiter, { countTokens: (request) => (request.body?.length ?? 0) + 1 });
    const body = chatBody("hello there", 50);
    await (await post(fetch, `${server.url}/v1/chat/completions`, body)).arrayBuffer();
    await settled();
    expect(limiter.statistics().settled.estimated["input-tokens"]).toBe(body.length + 1);
  });

  it("a hook that throws or returns anything but a count rejects that call: nothing sent, nothing charged", async () => {
    const server = await start();
    const url = `${server.url}/v1/chat/completions`;
    const cases: [(request: RequestDescription) => unknown, string, ErrorConstructor][] = [
      [
        () => {
          throw new Error("tokenizer not loaded");
        },
        `countTokens(POST ${url}) threw: tokenizer not loaded`,
        TypeError,
      ],
      [() => Promise.reject(new Error("async failure")), `countTokens(POST ${url}) threw: async failure`, TypeError],
      [() => "12", `countTokens(POST ${url}) must be a number; got "12"`, TypeError],
      [() => undefined, `countTokens(POST ${url}) must be a number; got undefined`, TypeError],
      [() => Number.NaN, `countTokens(POST ${url}) must be a finite number >= 0; got NaN`, RangeError],
      [() => -1, `countTokens(POST ${url}) must be a finite number >= 0; got -1`, RangeError],
      [
        () => Number.POSITIVE_INFINITY,
        `countTokens(POST ${url}) must be a finite number >= 0; got Infinity`,
        RangeError,
      ],
      // Through chatTokens, the tokenizer's own bad answer is named the same way.
      [chatTokens(() => Number.NaN), `countTokens(POST ${url}) must be a finite number >= 0; got NaN`, RangeError],
      [chatTokens(() => "7" as never), `countTokens(POST ${url}) must be a number; got "7"`, TypeError],
    ];
    for (const [hook, message, type] of cases) {
      const limiter = new RateLimiter({ limits: [{ limit: 100, interval: "1m" }], concurrency: 1 });
      const fetch = limitedFetch(limiter, { countTokens: hook as () => number });
      const error = await post(fetch, `${server.url}/v1/chat/completions`, chatBody("hi")).then(
        () => undefined,
        (reason: unknown) => reason,
      );
      expect(error).toBeInstanceOf(type);
      expect((error as Error).message).toBe(message);
      expect(limiter.statistics()).toMatchObject({ inUse: 0, waiting: 0, remaining: { requests: 100 } });
    }
    expect(server.requests).toHaveLength(0);
  });

  it("is refused at once when it is not a function, and so is chatTokens' tokenizer", () => {
    expect(() => limitedFetch(new RateLimiter({}), { countTokens: 42 as never })).toThrow(
      /options.countTokens must be a function; got 42/,
    );
    expect(() => chatTokens("o200k_base" as never)).toThrow(
      new TypeError("chatTokens needs a function from text to its number of tokens; got string"),
    );
  });
});
