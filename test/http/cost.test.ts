import fc from "fast-check";
import { costFromEventStream, costFromUsage, estimateLlmCost, type RequestDescription } from "sluice/http";
import { describe, expect, it } from "vitest";

function describeBody(body: string | undefined): RequestDescription {
  let json: unknown;
  try {
    json = body === undefined ? undefined : JSON.parse(body);
  } catch {
    json = undefined;
  }
  return { url: "http://localhost/", method: body === undefined ? "GET" : "POST", headers: new Headers(), body, json };
}

describe("estimateLlmCost", () => {
  it("costs one request and nothing else without a body", () => {
    expect(estimateLlmCost(describeBody(undefined))).toBe(1);
    expect(estimateLlmCost(describeBody(""))).toBe(1);
  });

  it("charges characters / 4 (rounded up) plus the output cap, under each of its names", () => {
    for (const field of ["max_tokens", "max_completion_tokens", "max_output_tokens"]) {
      const body = JSON.stringify({ model: "m", [field]: 300, messages: [{ role: "user", content: "hello" }] });
      expect(estimateLlmCost(describeBody(body))).toEqual({ requests: 1, tokens: Math.ceil(body.length / 4) + 300 });
    }
  });

  it("is never below the input estimate, for any body", () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), fc.option(fc.nat(100_000), { nil: undefined }), (text, maxTokens) => {
        const body = JSON.stringify({
          messages: [{ content: text }],
          ...(maxTokens === undefined ? {} : { max_tokens: maxTokens }),
        });
        const cost = estimateLlmCost(describeBody(body)) as { requests: number; tokens: number };
        expect(cost.requests).toBe(1);
        expect(cost.tokens).toBe(Math.ceil(body.length / 4) + (maxTokens ?? 0));
      }),
    );
  });
});

describe("costFromUsage", () => {
  it("reads OpenAI chat and responses usage", () => {
    expect(costFromUsage({ usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 } })).toEqual({
      requests: 1,
      tokens: 15,
    });
    expect(costFromUsage({ usage: { prompt_tokens: 10, completion_tokens: 5 } })).toEqual({ requests: 1, tokens: 15 });
    expect(costFromUsage({ usage: { input_tokens: 7, output_tokens: 3, total_tokens: 10 } })).toEqual({
      requests: 1,
      tokens: 10,
    });
  });

  it("reads Anthropic usage, counting cache writes as input", () => {
    expect(costFromUsage({ usage: { input_tokens: 7, output_tokens: 3, cache_creation_input_tokens: 100 } })).toEqual({
      requests: 1,
      tokens: 110,
    });
  });

  it("reads Gemini usageMetadata", () => {
    expect(costFromUsage({ usageMetadata: { totalTokenCount: 42 } })).toEqual({ requests: 1, tokens: 42 });
  });

  it("returns undefined when the body reports no usage", () => {
    for (const body of [undefined, null, "text", {}, { usage: null }, { usage: { foo: 1 } }]) {
      expect(costFromUsage(body)).toBeUndefined();
    }
  });
});

describe("costFromEventStream", () => {
  const sse = (...events: unknown[]) =>
    events.map((event) => `data: ${typeof event === "string" ? event : JSON.stringify(event)}\n\n`).join("");

  it("reads the usage of OpenAI's last chunk (stream_options.include_usage)", () => {
    const text = sse(
      { choices: [{ delta: { content: "Hi" } }] },
      { choices: [], usage: { prompt_tokens: 9, completion_tokens: 2, total_tokens: 11 } },
      "[DONE]",
    );
    expect(costFromEventStream(text)).toEqual({ requests: 1, tokens: 11 });
  });

  it("adds Anthropic's input tokens from message_start to the output tokens of the last message_delta", () => {
    const text = [
      "event: message_start",
      `data: ${JSON.stringify({ type: "message_start", message: { usage: { input_tokens: 25, output_tokens: 1 } } })}`,
      "",
      "event: message_delta",
      `data: ${JSON.stringify({ type: "message_delta", usage: { output_tokens: 15 } })}`,
      "",
    ].join("\n");
    expect(costFromEventStream(text)).toEqual({ requests: 1, tokens: 40 });
  });

  it("returns undefined for a stream without usage", () => {
    expect(costFromEventStream(sse({ choices: [{ delta: { content: "Hi" } }] }, "[DONE]"))).toBeUndefined();
    expect(costFromEventStream("")).toBeUndefined();
  });
});
