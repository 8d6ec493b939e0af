/**
 * Streamed responses (server-sent events) through limitedFetch: observed as the caller reads them, never
 * read ahead of the caller nor buffered whole; settled from the usage of their last events when they end;
 * released with the estimate kept when the caller cancels or the stream fails. A scripted fetch drives
 * the stream chunk by chunk; the real OpenAI SDK against the mock checks the same end to end.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import fc from "fast-check";
import OpenAI from "openai";
import { RateLimiter, Semaphore } from "sluice";
import { costFromEventStream, type FetchFunction, limitedFetch } from "sluice/http";
import { FakeClock, flushMicrotasks, type MockServer, startMockServer } from "sluice/testing";
import { afterEach, describe, expect, it } from "vitest";

const encoder = new TextEncoder();

/** OpenAI's shape: content chunks, a finish chunk, the usage chunk (`include_usage`), `[DONE]`. */
const OPENAI_EVENTS = [
  'data: {"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}\n\n',
  'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"the \\"usage\\": {is} here"}}],"usage":null}\n\n',
  'data: {"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}\n\n',
  'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":31,"completion_tokens":9,"total_tokens":40}}\n\n',
  "data: [DONE]\n\n",
];
/** Anthropic's shape: input in message_start, output in message_delta, with \r\n line ends. */
const ANTHROPIC_EVENTS = [
  'event: message_start\r\ndata: {"type":"message_start","message":{"id":"m1","usage":{"input_tokens":25,"output_tokens":1}}}\r\n\r\n',
  'event: content_block_delta\r\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}\r\n\r\n',
  'event: message_delta\r\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":12}}\r\n\r\n',
  'event: message_stop\r\ndata: {"type":"message_stop"}\r\n\r\n',
];

/** OpenAI's Responses API: named events, the usage on the response of the last, `response.completed`. */
const RESPONSES_EVENTS = [
  'event: response.created\ndata: {"type":"response.created","response":{"id":"r1","status":"in_progress","usage":null}}\n\n',
  'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"hi"}\n\n',
  'event: response.completed\ndata: {"type":"response.completed","response":{"id":"r1","usage":{"input_tokens":30,"output_tokens":10,"total_tokens":40}}}\n\n',
];

/**
 * A fetch whose one response is a stream the test feeds: `pulled` counts the chunks the reader asked
 * for, `cancelled` says whether (and why) it was cancelled, `fail(error)` breaks it.
 */
function scriptedStream(chunks: readonly string[]) {
  const state = { pulled: 0, cancelled: undefined as unknown, requests: 0 };
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const fetch: FetchFunction = async () => {
    state.requests++;
    const body = new ReadableStream<Uint8Array>(
      {
        start(c) {
          controller = c;
        },
        pull(c) {
          const chunk = chunks[state.pulled++];
          if (chunk === undefined) c.close();
          else c.enqueue(encoder.encode(chunk));
        },
        cancel(reason) {
          state.cancelled = reason ?? "cancelled";
        },
      },
      { highWaterMark: 0 },
    );
    return new Response(body, { status: 200, headers: { "content-type": "text/event-stream" } });
  };
  return { fetch, state, fail: (error: unknown) => controller.error(error) };
}

function post(fetch: FetchFunction, body: object = { model: "m", max_tokens: 100, stream: true }) {
  return fetch("https://api.example/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

function tokenLimiter() {
  return new RateLimiter({ limits: [{ limit: 100_000, interval: "1m", unit: "tokens" }], clock: new FakeClock() });
}

/** A stream through limitedFetch with its first chunk read: the limiter, the script and the caller's reader. */
async function readingFirstChunk(events: readonly string[]) {
  const limiter = tokenLimiter();
  const script = scriptedStream(events);
  const response = await post(limitedFetch(limiter, { fetch: script.fetch }));
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  await reader.read();
  return { limiter, script, reader };
}

describe("limitedFetch: a streamed response is settled as its caller reads it", () => {
  it("holds the permit while the caller reads, settles from the final usage at the end, and reads nothing ahead", async () => {
    const limiter = tokenLimiter();
    const script = scriptedStream(OPENAI_EVENTS);
    const fetch = limitedFetch(limiter, { fetch: script.fetch });
    const response = await post(fetch);
    await flushMicrotasks();
    // Nothing is read before the caller reads: the stream advances at the caller's pace.
    expect(script.state.pulled).toBe(0);
    expect(limiter.inUse).toBe(1);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = "";
    for (let i = 0; i < OPENAI_EVENTS.length; i++) {
      const { value } = await reader.read();
      text += decoder.decode(value, { stream: true });
      expect(script.state.pulled).toBe(i + 1);
      expect(limiter.inUse).toBe(1);
      expect(limiter.statistics().settled.calls).toBe(0);
    }
    expect((await reader.read()).done).toBe(true);
    // The caller got every byte, untouched.
    expect(text).toBe(OPENAI_EVENTS.join(""));
    expect(limiter.inUse).toBe(0);
    expect(limiter.statistics().settled).toMatchObject({ calls: 1, actual: { requests: 1, tokens: 40 } });
  });

  it("reads the usage of any cut of the stream into pieces, at any byte, as costFromEventStream reads it whole", async () => {
    const bytesOf = (events: string[]) => encoder.encode(events.join(""));
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(OPENAI_EVENTS, ANTHROPIC_EVENTS, RESPONSES_EVENTS),
        fc.array(fc.nat(), { maxLength: 12 }),
        async (events, cuts) => {
          const bytes = bytesOf(events);
          const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
          const edges = [0, ...points, bytes.length];
          const pieces = edges.slice(1).map((end, i) => bytes.subarray(edges[i], end));
          const limiter = tokenLimiter();
          const fetch = limitedFetch(limiter, {
            fetch: async () =>
              new Response(
                new ReadableStream<Uint8Array>({
                  start(controller) {
                    for (const piece of pieces) controller.enqueue(piece);
                    controller.close();
                  },
                }),
                { headers: { "content-type": "text/event-stream; charset=utf-8" } },
              ),
          });
          await (await post(fetch)).arrayBuffer();
          const expected = costFromEventStream(events.join(""));
          expect(expected).toBeDefined();
          expect(limiter.statistics().settled.actual).toEqual(expected);
        },
      ),
      { numRuns: 60 },
    );
  });

  it("reads each API's final usage: chat's usage chunk, Anthropic's start and delta, the Responses API's last event", () => {
    const cost = (input: number, output: number) => ({
      requests: 1,
      tokens: input + output,
      "input-tokens": input,
      "output-tokens": output,
    });
    expect(costFromEventStream(OPENAI_EVENTS.join(""))).toEqual(cost(31, 9));
    expect(costFromEventStream(ANTHROPIC_EVENTS.join(""))).toEqual(cost(25, 12));
    expect(costFromEventStream(RESPONSES_EVENTS.join(""))).toEqual(cost(30, 10));
  });

  it("keeps the estimate and releases at once when the caller cancels, cancelling the source", async () => {
    const { limiter, script, reader } = await readingFirstChunk(OPENAI_EVENTS);
    expect(limiter.inUse).toBe(1);
    await reader.cancel("enough");
    expect(script.state.cancelled).toBe("enough");
    expect(limiter.inUse).toBe(0);
    const statistics = limiter.statistics();
    expect(statistics.settled.calls).toBe(0);
    // The estimate (body / 4 + max_tokens) stays charged: the server may have produced the whole answer.
    expect(statistics.limits[0]?.remaining).toBeLessThan(100_000 - 100);
  });

  it("keeps the estimate and releases when the stream fails mid-way; the caller sees the error", async () => {
    const { limiter, script, reader } = await readingFirstChunk(OPENAI_EVENTS);
    const reset = new TypeError("terminated");
    script.fail(reset);
    await expect(reader.read()).rejects.toBe(reset);
    expect(limiter.inUse).toBe(0);
    expect(limiter.statistics().settled.calls).toBe(0);
    // Not retried: the response was already the caller's.
    expect(script.state.requests).toBe(1);
  });

  it("holds a Semaphore's slot until the stream's last event, and keeps the response's status, headers and URL", async () => {
    const semaphore = new Semaphore(1);
    const script = scriptedStream(ANTHROPIC_EVENTS);
    const fetch = limitedFetch(semaphore, {
      fetch: async (input, init) => {
        const response = await script.fetch(input, init);
        Object.defineProperty(response, "url", { value: "https://api.example/v1/messages" });
        return response;
      },
    });
    const response = await post(fetch);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/event-stream");
    expect(response.url).toBe("https://api.example/v1/messages");
    expect(semaphore.inUse).toBe(1);
    const text = await response.text();
    expect(text).toBe(ANTHROPIC_EVENTS.join(""));
    expect(semaphore.inUse).toBe(0);
  });

  it("settles a stream without usage by keeping the estimate, at its end", async () => {
    const limiter = tokenLimiter();
    const script = scriptedStream(['data: {"choices":[{"delta":{"content":"x"}}]}\n\n', "data: [DONE]\n\n"]);
    const fetch = limitedFetch(limiter, { fetch: script.fetch });
    const response = await post(fetch);
    expect(limiter.inUse).toBe(1);
    await response.text();
    expect(limiter.inUse).toBe(0);
    expect(limiter.statistics().settled.calls).toBe(0);
  });
});

describe("limitedFetch: a streamed response dropped unread", () => {
  it("gives its permit back once it is garbage-collected, cancelling its source", () => {
    const root = join(import.meta.dirname, "..", "..");
    const output = execFileSync(
      process.execPath,
      ["--expose-gc", "--import", "tsx", join(root, "test", "support", "dropped-stream.mjs"), root],
      { cwd: root, encoding: "utf8", timeout: 30_000 },
    );
    expect(JSON.parse(output)).toEqual({ held: 1, released: true, cancelled: true });
  });
});

describe("limitedFetch: streams through the openai SDK against the mock provider", () => {
  const servers: MockServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });

  it("the caller's abort reaches a stream already answering, with attemptTimeout set too", async () => {
    const server = await startMockServer({ latency: 1000, completionTokens: 40 });
    servers.push(server);
    const limiter = new RateLimiter({ concurrency: 1 });
    const fetch = limitedFetch(limiter, { attemptTimeout: 10_000 });
    const caller = new AbortController();
    const response = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      signal: caller.signal,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "m", max_tokens: 40, stream: true, messages: [{ role: "user", content: "x" }] }),
    });
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    caller.abort();
    // Not read to its end (half a second more): the abort ends it, and its slot is free at once.
    await expect(reader.read()).rejects.toMatchObject({ name: "AbortError" });
    expect(limiter.inUse).toBe(0);
  });

  it("an SDK stream left early (break) gives its slot back with the estimate kept; the next call goes through", async () => {
    const server = await startMockServer({ latency: 200, completionTokens: 40 });
    servers.push(server);
    const limiter = new RateLimiter({ limits: [{ limit: 100_000, interval: "1m", unit: "tokens" }], concurrency: 1 });
    const client = new OpenAI({
      apiKey: "sk-test",
      baseURL: `${server.url}/v1`,
      maxRetries: 0,
      fetch: limitedFetch(limiter, { retry: { nonIdempotent: true } }),
    });
    const stream = await client.chat.completions.create({
      model: "mock",
      max_tokens: 50,
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: "a long story" }],
    });
    for await (const _ of stream) break;
    await limiter.onIdle();
    expect(limiter.statistics().settled.calls).toBe(0);
    // The one slot is free again: a second call is admitted and served.
    const answer = await client.chat.completions.create({
      model: "mock",
      max_tokens: 5,
      messages: [{ role: "user", content: "short" }],
    });
    expect(answer.usage?.completion_tokens).toBe(5);
    await limiter.onIdle();
    expect(limiter.statistics().settled.calls).toBe(1);
  });
});
