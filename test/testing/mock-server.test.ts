import fc from "fast-check";
import { parseDurationText } from "sluice";
import { formatGoDuration, type MockServer, type MockServerOptions, startMockServer } from "sluice/testing";
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

function chat(server: MockServer, content: string, extra: Record<string, unknown> = {}): Promise<Response> {
  return fetch(`${server.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "mock", messages: [{ role: "user", content }], ...extra }),
  });
}

function messages(server: MockServer, content: string, extra: Record<string, unknown> = {}): Promise<Response> {
  return fetch(`${server.url}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "mock", max_tokens: 8, messages: [{ role: "user", content }], ...extra }),
  });
}

describe("startMockServer: limits enforced like a provider", () => {
  it("admits a full bucket of requests, then answers 429 with OpenAI headers, retry-after and error body", async () => {
    const server = await start({ requestsPerMinute: 5 });
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const response = await chat(server, `request ${i}`);
      statuses.push(response.status);
      if (response.status === 429) {
        expect(response.headers.get("x-ratelimit-limit-requests")).toBe("5");
        expect(response.headers.get("x-ratelimit-remaining-requests")).toBe("0");
        // One request refills in a fifth of a minute: 12 s.
        expect(Number(response.headers.get("retry-after-ms"))).toBeGreaterThan(11_000);
        expect(Number(response.headers.get("retry-after-ms"))).toBeLessThanOrEqual(12_000);
        expect(response.headers.get("retry-after")).toBe("12");
        expect(parseDurationText(response.headers.get("x-ratelimit-reset-requests") ?? "")).toBeGreaterThan(59_000);
        expect(await response.json()).toMatchObject({
          error: { type: "requests", code: "rate_limit_exceeded" },
        });
      } else {
        await response.arrayBuffer();
      }
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
    expect(server.summary()).toMatchObject({ total: 6, status429: 1, outcomes: { ok: 5, "rate-limited": 1 } });
  });

  it("refills continuously: a request refused with retry-after-ms succeeds once that time has passed", async () => {
    const server = await start({ requestsPerMinute: 2, minute: "400ms" });
    await (await chat(server, "a")).arrayBuffer();
    await (await chat(server, "b")).arrayBuffer();
    const refused = await chat(server, "c");
    expect(refused.status).toBe(429);
    const wait = Number(refused.headers.get("retry-after-ms"));
    expect(wait).toBeGreaterThan(0);
    expect(wait).toBeLessThanOrEqual(200);
    await new Promise((resolve) => setTimeout(resolve, wait + 5));
    expect((await chat(server, "c again")).status).toBe(200);
  });

  it("never admits more than its bucket allows in any span, under a flood (burst + rate × span)", async () => {
    const server = await start({ requestsPerMinute: 30, minute: 300 });
    // A flood bounded by count, not by time: on a loaded machine a time-bounded one sent too few to be
    // refused. 180 requests go out as fast as they are answered; unless answering them took over 1.5 s,
    // the bucket (30, plus 30 every 300 ms) must refuse some.
    const started = performance.now();
    await Promise.all(
      Array.from({ length: 6 }, async (_, worker) => {
        for (let i = 0; i < 30; i++) await (await chat(server, `w${worker} r${i}`)).arrayBuffer();
      }),
    );
    const elapsed = performance.now() - started;
    const admitted = server.requests
      .filter((record) => record.outcome === "ok")
      .map((record) => record.startedAt as number)
      .sort((a, b) => a - b);
    if (elapsed < 1500) expect(server.summary().status429).toBeGreaterThan(0);
    expect(admitted.length).toBeGreaterThanOrEqual(30);
    const rate = 30 / 300;
    for (let i = 0; i < admitted.length; i++) {
      for (let j = i; j < admitted.length; j++) {
        expect(j - i + 1).toBeLessThanOrEqual(30 + rate * ((admitted[j] as number) - (admitted[i] as number)) + 1e-9);
      }
    }
  });

  it("charges input (characters / 4) plus max_tokens on arrival and settles to the completion produced", async () => {
    const server = await start({ tokensPerMinute: 10_000, completionTokens: 7 });
    const body = JSON.stringify({
      model: "mock",
      max_tokens: 50,
      messages: [{ role: "user", content: "x".repeat(37) }],
    });
    const response = await fetch(`${server.url}/v1/chat/completions`, { method: "POST", body });
    const json = (await response.json()) as { usage: Record<string, number> };
    const input = Math.ceil(body.length / 4);
    expect(json.usage).toEqual({ prompt_tokens: input, completion_tokens: 7, total_tokens: input + 7 });
    const [record] = server.requests;
    expect(record).toMatchObject({ inputTokens: input, outputTokens: 7, reservedTokens: input + 50, status: 200 });
    // After settling, only what was used is missing from the bucket (plus a hair of refill).
    const remaining = Number(response.headers.get("x-ratelimit-remaining-tokens"));
    expect(remaining).toBeGreaterThanOrEqual(10_000 - input - 7);
    expect(remaining).toBeLessThan(10_000 - input - 7 + 5);
  });

  it("never produces more completion tokens than max_tokens", async () => {
    const server = await start({ completionTokens: { min: 10, max: 100 }, seed: 7 });
    for (const maxTokens of [1, 5, 20]) {
      const json = (await (await chat(server, "hi", { max_tokens: maxTokens })).json()) as {
        usage: { completion_tokens: number };
      };
      expect(json.usage.completion_tokens).toBeLessThanOrEqual(maxTokens);
    }
  });

  it("answers with the reply function's text and counts its tokens, cut to max_tokens", async () => {
    const server = await start({ reply: ({ body }) => `you said ${JSON.stringify(body).length} characters` });
    const full = (await (await chat(server, "hi", { max_tokens: 100 })).json()) as {
      choices: { message: { content: string } }[];
      usage: { completion_tokens: number };
    };
    const text = full.choices[0]?.message.content ?? "";
    expect(text).toMatch(/^you said \d+ characters$/);
    expect(full.usage.completion_tokens).toBe(Math.ceil(text.length / 4));
    const cut = (await (await chat(server, "hi", { max_tokens: 2 })).json()) as {
      choices: { message: { content: string } }[];
      usage: { completion_tokens: number };
    };
    expect(cut.usage.completion_tokens).toBe(2);
    expect(cut.choices[0]?.message.content).toHaveLength(8);
  });

  it("streams a chat completion as server-sent events, with usage last when asked, holding its slot to the end", async () => {
    const server = await start({ concurrency: 1, latency: 80, completionTokens: 12 });
    const plain = (await (await chat(server, "stream me", { max_tokens: 50 })).json()) as {
      choices: { message: { content: string } }[];
    };
    const streamed = await chat(server, "stream me", {
      max_tokens: 50,
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(streamed.headers.get("content-type")).toBe("text/event-stream");
    expect(streamed.headers.get("x-ratelimit-limit-requests")).toBeNull();
    // While the first stream is still sending, the one slot is taken.
    const second = await chat(server, "meanwhile");
    expect(second.status).toBe(429);
    const events = (await streamed.text())
      .split("\n\n")
      .filter((event) => event.startsWith("data: "))
      .map((event) => event.slice(6));
    expect(events.at(-1)).toBe("[DONE]");
    const chunks = events.slice(0, -1).map((event) => JSON.parse(event));
    const text = chunks.map((chunk) => chunk.choices[0]?.delta?.content ?? "").join("");
    expect(text).toBe(plain.choices[0]?.message.content);
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { completion_tokens: 12 } });
    expect(server.requests[1]).toMatchObject({ outcome: "ok", status: 200, outputTokens: 12 });
  });

  it("streams /v1/messages as Anthropic's named events, input in message_start and output in message_delta", async () => {
    const server = await start({ concurrency: 1, latency: 80, completionTokens: 12, tokensPerMinute: 10_000 });
    const plain = (await (await messages(server, "stream me", { max_tokens: 50 })).json()) as {
      content: { text: string }[];
      usage: { input_tokens: number; output_tokens: number };
    };
    const streamed = await messages(server, "stream me", { max_tokens: 50, stream: true });
    expect(streamed.headers.get("content-type")).toBe("text/event-stream");
    expect(streamed.headers.get("anthropic-ratelimit-tokens-limit")).toBe("10000");
    // While the stream is still sending, the one slot is taken.
    expect((await messages(server, "meanwhile")).status).toBe(429);
    const events = (await streamed.text())
      .split("\n\n")
      .filter((event) => event !== "")
      .map((event) => {
        const [name, data] = event.split("\n");
        const parsed = JSON.parse((data ?? "").replace(/^data: /, "")) as Record<string, unknown>;
        // Each event's name is its type, as the SDKs expect.
        expect(name).toBe(`event: ${parsed["type"]}`);
        return parsed as { type: string; delta?: { text?: string }; usage?: object; message?: { usage: object } };
      });
    expect(events.map((event) => event.type)).toEqual([
      "message_start",
      "content_block_start",
      "ping",
      ...events.filter((event) => event.type === "content_block_delta").map(() => "content_block_delta"),
      "content_block_stop",
      "message_delta",
      "message_stop",
    ]);
    const text = events.map((event) => (event.type === "content_block_delta" ? event.delta?.text : "")).join("");
    expect(text).toBe(plain.content[0]?.text);
    expect(events[0]?.message?.usage).toEqual({ input_tokens: server.requests[1]?.inputTokens, output_tokens: 1 });
    expect(events.at(-2)?.usage).toEqual({ output_tokens: 12 });
    expect(server.requests[1]).toMatchObject({ outcome: "ok", status: 200, outputTokens: 12 });
  });

  it("refuses a request larger than the token limit, in a way clients can tell from an ordinary 429", async () => {
    const server = await start({ tokensPerMinute: 100 });
    const openai = await chat(server, "hi", { max_tokens: 500 });
    expect(openai.status).toBe(429);
    expect(openai.headers.get("retry-after")).toBeNull();
    expect(Number(openai.headers.get("x-ratelimit-limit-tokens"))).toBe(100);
    expect(await openai.json()).toMatchObject({ error: { type: "tokens", code: "rate_limit_exceeded" } });
    const anthropic = await messages(server, "hi", { max_tokens: 500 });
    expect(anthropic.status).toBe(413);
    expect(await anthropic.json()).toEqual({
      type: "error",
      error: { type: "request_too_large", message: expect.any(String) },
    });
    expect(server.summary().outcomes).toEqual({ "too-large": 2 });
  });

  it("fails every request with the non-retryable quota error once the quota is spent", async () => {
    const server = await start({ quota: { requests: 2 } });
    expect((await chat(server, "1")).status).toBe(200);
    expect((await chat(server, "2")).status).toBe(200);
    const openai = await chat(server, "3");
    expect(openai.status).toBe(429);
    expect(openai.headers.get("retry-after")).toBeNull();
    expect(await openai.json()).toMatchObject({ error: { type: "insufficient_quota", code: "insufficient_quota" } });
    const anthropic = await messages(server, "4");
    expect(anthropic.status).toBe(402);
    expect(await anthropic.json()).toMatchObject({ type: "error", error: { type: "billing_error" } });
  });

  it("answers /v1/messages with Anthropic headers: RFC 3339 reset instants and retry-after seconds", async () => {
    const server = await start({ requestsPerMinute: 1, tokensPerMinute: 1000 });
    const before = Date.now();
    const ok = await messages(server, "hello");
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({
      type: "message",
      usage: { input_tokens: expect.any(Number), output_tokens: 8 },
    });
    expect(ok.headers.get("anthropic-ratelimit-requests-limit")).toBe("1");
    expect(ok.headers.get("anthropic-ratelimit-requests-remaining")).toBe("0");
    const reset = Date.parse(ok.headers.get("anthropic-ratelimit-requests-reset") ?? "");
    expect(reset).toBeGreaterThan(before + 59_000);
    expect(reset).toBeLessThan(Date.now() + 61_000);
    expect(ok.headers.get("anthropic-ratelimit-tokens-limit")).toBe("1000");
    expect(ok.headers.get("x-ratelimit-limit-requests")).toBeNull();
    const refused = await messages(server, "again");
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(59);
    expect(refused.headers.get("retry-after-ms")).toBeNull();
    expect(await refused.json()).toMatchObject({ type: "error", error: { type: "rate_limit_error" } });
  });

  it("serves at most `concurrency` requests at once and refuses the next with a 429", async () => {
    const server = await start({ concurrency: 3, latency: 150 });
    const responses = await Promise.all(Array.from({ length: 5 }, (_, i) => chat(server, `c${i}`)));
    const statuses = responses.map((response) => response.status).sort();
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
    expect(server.summary().maxInFlight).toBe(3);
    expect(server.summary().outcomes["concurrency-limited"]).toBe(2);
    await Promise.all(responses.map((response) => response.arrayBuffer()));
  });

  it("puts rate-limit headers on successful responses too", async () => {
    const server = await start({ requestsPerMinute: 100, tokensPerMinute: 5000 });
    const response = await chat(server, "hi");
    expect(response.status).toBe(200);
    for (const name of ["limit", "remaining", "reset"]) {
      expect(response.headers.get(`x-ratelimit-${name}-requests`)).not.toBeNull();
      expect(response.headers.get(`x-ratelimit-${name}-tokens`)).not.toBeNull();
    }
  });
});

describe("startMockServer: failure injection", () => {
  it("is reproducible: the same seed gives the same failures in the same places", async () => {
    const failures = { "server-error": 0.2, overloaded: 0.2 } as const;
    const runs: string[][] = [];
    for (let run = 0; run < 2; run++) {
      const server = await start({ failures, seed: 42 });
      for (let i = 0; i < 30; i++) await (await chat(server, `r${i}`)).arrayBuffer();
      runs.push(server.requests.map((record) => String(record.outcome)));
    }
    expect(runs[0]).toEqual(runs[1]);
    expect(runs[0]).toContain("server-error");
    expect(runs[0]).toContain("overloaded");
    expect(runs[0]).toContain("ok");
  });

  it("sends 500, 503 with retry-after, and 529 for Anthropic's overloaded error", async () => {
    const server = await start({
      inject: ({ index }) => (index === 0 ? "server-error" : index === 1 || index === 2 ? "overloaded" : undefined),
    });
    expect((await chat(server, "a")).status).toBe(500);
    const overloaded = await chat(server, "b");
    expect(overloaded.status).toBe(503);
    expect(overloaded.headers.get("retry-after")).toBe("1");
    const anthropic = await messages(server, "c");
    expect(anthropic.status).toBe(529);
    expect(await anthropic.json()).toMatchObject({ error: { type: "overloaded_error" } });
    expect((await chat(server, "d")).status).toBe(200);
  });

  it("resets connections (the client sees a network error) and hangs until close()", async () => {
    const server = await start({ inject: ({ index }) => (index === 0 ? "reset" : index === 1 ? "hang" : undefined) });
    await expect(chat(server, "reset me")).rejects.toThrow(TypeError);
    const hanging = chat(server, "hang").then(
      () => "answered",
      () => "dropped",
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(server.requests[1]).toMatchObject({ outcome: "hang", status: undefined });
    await server.close();
    expect(await hanging).toBe("dropped");
    expect(server.requests[0]).toMatchObject({ outcome: "reset", status: undefined });
  });
});

describe("startMockServer: the record", () => {
  it("records every request in arrival order with its times, tokens, status and body", async () => {
    const server = await start({ requestsPerMinute: 2, latency: 20 });
    for (let i = 0; i < 3; i++) await (await chat(server, `item ${i}`, { max_tokens: 4 })).arrayBuffer();
    expect(server.requests.map((record) => [record.index, record.status, record.outcome])).toEqual([
      [0, 200, "ok"],
      [1, 200, "ok"],
      [2, 429, "rate-limited"],
    ]);
    for (const record of server.requests) {
      expect(record.method).toBe("POST");
      expect(record.path).toBe("/v1/chat/completions");
      expect(record.startedAt).toBeGreaterThanOrEqual(record.arrivedAt);
      expect(record.endedAt).toBeGreaterThanOrEqual(record.startedAt ?? Number.NaN);
      expect(record.inputTokens).toBeGreaterThan(0);
    }
    expect((server.requests[0]?.endedAt ?? 0) - (server.requests[0]?.startedAt ?? 0)).toBeGreaterThanOrEqual(19);
    expect(
      server.requests.map((record) => (record.body as { messages: { content: string }[] }).messages[0]?.content),
    ).toEqual(["item 0", "item 1", "item 2"]);
    expect(server.requests[2]?.outputTokens).toBe(0);
    expect(server.requests[2]?.reservedTokens).toBe(0);
  });

  it("closes with await using", async () => {
    let url = "";
    {
      await using server = await startMockServer({});
      url = server.url;
      expect((await fetch(`${url}/anything`)).status).toBe(200);
    }
    await expect(fetch(`${url}/anything`)).rejects.toThrow(TypeError);
  });
});

describe("startMockServer: bad options", () => {
  it.each([
    [{ requestsPerMinute: 0 }, /requestsPerMinute.*0/],
    [{ tokensPerMinute: -5 }, /tokensPerMinute.*-5/],
    [{ minute: "5 parsecs" }, /minute.*5 parsecs/],
    [{ concurrency: 0 }, /concurrency.*0/],
    [{ failures: { reset: 2 } }, /failures\["reset"\].*2/],
    [{ style: "gemini" as never }, /style.*gemini/],
  ])("rejects %o with an error naming the option and the value", async (options, message) => {
    await expect(startMockServer(options as MockServerOptions)).rejects.toThrow(message);
  });
});

describe("formatGoDuration", () => {
  it("writes durations the way Go (and OpenAI's reset headers) do", () => {
    expect(formatGoDuration(360_000)).toBe("6m0s");
    expect(formatGoDuration(17_491)).toBe("17.491s");
    expect(formatGoDuration(20)).toBe("20ms");
    expect(formatGoDuration(1_500)).toBe("1.5s");
    expect(formatGoDuration(3_723_000)).toBe("1h2m3s");
    expect(formatGoDuration(0)).toBe("0s");
    expect(formatGoDuration(0.5)).toBe("500µs");
  });

  it("round-trips through sluice's duration parser to within a millisecond", () => {
    fc.assert(
      fc.property(fc.double({ min: 0.001, max: 1e8, noNaN: true }), (ms) => {
        const parsed = parseDurationText(formatGoDuration(ms));
        expect(parsed).toBeDefined();
        expect(Math.abs((parsed as number) - ms)).toBeLessThanOrEqual(0.5 + 1e-9);
      }),
    );
  });
});

describe("startMockServer: the overloaded mode (hidden capacity, bounded queue, refusal beyond it)", () => {
  it("serves C at once, queues up to the bound, refuses the rest with 503 and no Retry-After", async () => {
    const server = await start({ latency: 40, overload: { capacity: 2, queue: 2 } });
    const overload = server.overload;
    if (overload === undefined) throw new Error("overload mode is off");
    const responses = Array.from({ length: 6 }, () => fetch(`${server.url}/work`));
    const statuses = (await Promise.all(responses)).map((response) => response.status);
    expect(statuses.filter((status) => status === 200)).toHaveLength(4);
    const refused = statuses.filter((status) => status === 503);
    expect(refused).toHaveLength(2);
    const response = await Promise.all(Array.from({ length: 5 }, () => fetch(`${server.url}/work`)));
    const refusal = response.find((each) => each.status === 503);
    expect(refusal?.headers.get("retry-after")).toBeNull();
    // The queued ones waited behind the first C: their latency grows with the queue.
    const served = server.requests.filter((record) => record.outcome === "ok").slice(0, 4);
    const slowest = Math.max(...served.map((record) => (record.endedAt ?? 0) - record.arrivedAt));
    expect(slowest).toBeGreaterThanOrEqual(75);
    expect(server.summary().maxInFlight).toBe(2);
  });

  it("C can change while it runs: growing starts the waiters at once; 429 instead of 503 when asked", async () => {
    const server = await start({ latency: 1_000, overload: { capacity: 1, queue: 4, status: 429 } });
    const overload = server.overload;
    if (overload === undefined) throw new Error("overload mode is off");
    const pending = Array.from({ length: 3 }, () => fetch(`${server.url}/work`));
    for (let i = 0; i < 200 && overload.serving + overload.waiting < 3; i++) await new Promise((r) => setTimeout(r, 5));
    expect([overload.serving, overload.waiting]).toEqual([1, 2]);
    overload.capacity = 3;
    expect([overload.serving, overload.waiting]).toEqual([3, 0]);
    await server.close();
    await Promise.allSettled(pending);
    expect(() => {
      overload.capacity = 0;
    }).toThrow(/overload.capacity must be an integer >= 1; got 0/);
    const refusing = await start({ latency: 200, overload: { capacity: 1, queue: 0, status: 429 } });
    const [first, second] = await Promise.all([fetch(`${refusing.url}/a`), fetch(`${refusing.url}/b`)]);
    expect([first?.status, second?.status].sort()).toEqual([200, 429]);
  });

  it("refuses bad overload options, naming them", async () => {
    await expect(startMockServer({ overload: { capacity: 0 } })).rejects.toThrow(/overload.capacity/);
    await expect(startMockServer({ overload: { capacity: 4, status: 500 as never } })).rejects.toThrow(
      /overload.status/,
    );
    await expect(startMockServer({ overload: { capacity: 4, qeue: 2 } as never })).rejects.toThrow(
      /did you mean "queue"/,
    );
  });
});

describe("startMockServer: limits per API key", () => {
  const send = (server: MockServer, headers: Record<string, string>) =>
    fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ model: "mock", max_tokens: 5, messages: [{ role: "user", content: "hi" }] }),
    });

  it("gives each key its own buckets and quota, reads Bearer and x-api-key, and refuses unknown keys with 401", async () => {
    const server = await start({
      keys: { "sk-a": { requestsPerMinute: 2 }, "sk-b": { requestsPerMinute: 3, quota: { requests: 3 } } },
      minute: "1h",
    });
    const a = [];
    for (let i = 0; i < 3; i++) a.push((await send(server, { authorization: "Bearer sk-a" })).status);
    expect(a).toEqual([200, 200, 429]);
    const first = await send(server, { "x-api-key": "sk-b" });
    expect(first.status).toBe(200);
    // The key's own bucket in the headers: 3 per minute, 2 left.
    expect(first.headers.get("x-ratelimit-limit-requests")).toBe("3");
    expect(first.headers.get("x-ratelimit-remaining-requests")).toBe("2");
    await send(server, { "x-api-key": "sk-b" });
    await send(server, { "x-api-key": "sk-b" });
    const spent = await send(server, { "x-api-key": "sk-b" });
    expect(spent.status).toBe(429);
    expect(await spent.json()).toMatchObject({ error: { code: "insufficient_quota" } });
    const unknown = await send(server, { authorization: "Bearer sk-zzzzzzzzzzzzzzzz" });
    expect(unknown.status).toBe(401);
    expect(await unknown.json()).toMatchObject({ error: { code: "invalid_api_key" } });
    expect((await send(server, {})).status).toBe(401);
    expect(server.requests.map((record) => record.apiKey)).toEqual([
      "sk-a",
      "sk-a",
      "sk-a",
      "sk-b",
      "sk-b",
      "sk-b",
      "sk-b",
      "sk-zzzzzzzzzzzzzzzz",
      undefined,
    ]);
    expect(server.summary().outcomes).toMatchObject({ ok: 5, "rate-limited": 1, quota: 1, unauthorized: 2 });
  });

  it("keeps the server-wide limits on top of the keys' own", async () => {
    const server = await start({ requestsPerMinute: 2, keys: { "sk-a": {}, "sk-b": {} }, minute: "1h" });
    const statuses = [];
    for (const key of ["sk-a", "sk-b", "sk-a"])
      statuses.push((await send(server, { authorization: `Bearer ${key}` })).status);
    expect(statuses).toEqual([200, 200, 429]);
  });

  it("refuses bad key options, naming them", async () => {
    await expect(startMockServer({ keys: [] as never })).rejects.toThrow(/keys must be an object/);
    await expect(startMockServer({ keys: { "": {} } })).rejects.toThrow(/empty API key/);
    await expect(startMockServer({ keys: { "sk-a": { requestPerMinute: 5 } as never } })).rejects.toThrow(
      /unknown option "requestPerMinute" in keys\["sk-a"\]/,
    );
    await expect(startMockServer({ keys: { "sk-a": { tokensPerMinute: -1 } } })).rejects.toThrow(
      /keys\["sk-a"\]\.tokensPerMinute/,
    );
  });
});
