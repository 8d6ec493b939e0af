import fc from "fast-check";
import { costFromEventStream, costFromUsage, estimateLlmCost, promptText, type RequestDescription } from "sluice/http";
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

  it("charges characters / 4 (rounded up) plus the output cap, under each of its names, and each apart", () => {
    for (const field of ["max_tokens", "max_completion_tokens", "max_output_tokens"]) {
      const body = JSON.stringify({ model: "m", [field]: 300, messages: [{ role: "user", content: "hello" }] });
      const input = Math.ceil(body.length / 4);
      expect(estimateLlmCost(describeBody(body))).toEqual({
        requests: 1,
        tokens: input + 300,
        "input-tokens": input,
        "output-tokens": 300,
      });
    }
  });

  it("takes the input from a tokenizer's count when the request carries one", () => {
    const body = JSON.stringify({ model: "m", max_tokens: 50, messages: [{ role: "user", content: "hello" }] });
    expect(estimateLlmCost({ ...describeBody(body), inputTokens: 9 })).toEqual({
      requests: 1,
      tokens: 59,
      "input-tokens": 9,
      "output-tokens": 50,
    });
  });

  it("is never below the input estimate, for any body", () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), fc.option(fc.nat(100_000), { nil: undefined }), (text, maxTokens) => {
        const body = JSON.stringify({
          messages: [{ content: text }],
          ...(maxTokens === undefined ? {} : { max_tokens: maxTokens }),
        });
        const cost = estimateLlmCost(describeBody(body)) as Record<string, number>;
        expect(cost["requests"]).toBe(1);
        expect(cost["tokens"]).toBe(Math.ceil(body.length / 4) + (maxTokens ?? 0));
        expect(cost["input-tokens"]).toBe(Math.ceil(body.length / 4));
        expect(cost["output-tokens"]).toBe(maxTokens || 0);
      }),
    );
  });
});

describe("costFromUsage", () => {
  it("reads OpenAI chat and responses usage", () => {
    const split = (input: number, output: number) => ({ "input-tokens": input, "output-tokens": output });
    expect(costFromUsage({ usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 } })).toEqual({
      requests: 1,
      tokens: 15,
      ...split(10, 5),
    });
    expect(costFromUsage({ usage: { prompt_tokens: 10, completion_tokens: 5 } })).toEqual({
      requests: 1,
      tokens: 15,
      ...split(10, 5),
    });
    expect(costFromUsage({ usage: { input_tokens: 7, output_tokens: 3, total_tokens: 10 } })).toEqual({
      requests: 1,
      tokens: 10,
      ...split(7, 3),
    });
    // Only a total: the input and output estimates are kept (a settle changes only the units it names).
    expect(costFromUsage({ usage: { total_tokens: 12 } })).toEqual({ requests: 1, tokens: 12 });
  });

  it("reads Anthropic usage, counting cache writes as input and leaving cache reads out (ITPM exempts them)", () => {
    expect(costFromUsage({ usage: { input_tokens: 7, output_tokens: 3, cache_creation_input_tokens: 100 } })).toEqual({
      requests: 1,
      tokens: 110,
      "input-tokens": 107,
      "output-tokens": 3,
    });
    expect(
      costFromUsage({
        usage: { input_tokens: 7, output_tokens: 3, cache_creation_input_tokens: 0, cache_read_input_tokens: 900 },
      }),
    ).toEqual({ requests: 1, tokens: 10, "input-tokens": 7, "output-tokens": 3 });
  });

  it("reads Gemini usageMetadata", () => {
    expect(costFromUsage({ usageMetadata: { totalTokenCount: 42 } })).toEqual({ requests: 1, tokens: 42 });
    expect(
      costFromUsage({
        usageMetadata: { promptTokenCount: 30, candidatesTokenCount: 8, thoughtsTokenCount: 4, totalTokenCount: 42 },
      }),
    ).toEqual({ requests: 1, tokens: 42, "input-tokens": 30, "output-tokens": 12 });
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
    expect(costFromEventStream(text)).toEqual({ requests: 1, tokens: 11, "input-tokens": 9, "output-tokens": 2 });
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
    expect(costFromEventStream(text)).toEqual({ requests: 1, tokens: 40, "input-tokens": 25, "output-tokens": 15 });
  });

  it("returns undefined for a stream without usage", () => {
    expect(costFromEventStream(sse({ choices: [{ delta: { content: "Hi" } }] }, "[DONE]"))).toBeUndefined();
    expect(costFromEventStream("")).toBeUndefined();
  });
});

describe("promptText", () => {
  it("is the text of the system prompt and the messages, strings or text blocks, in order", () => {
    expect(
      promptText({
        system: [{ type: "text", text: "Be brief.", cache_control: { type: "ephemeral" } }],
        messages: [
          { role: "user", content: "Hi" },
          { role: "user", content: [{ type: "image" }, { type: "text", text: "What is this?" }] },
        ],
      }),
    ).toBe("Be brief.\nHi\nWhat is this?");
    expect(promptText({ instructions: "Be kind.", input: "Hello" })).toBe("Be kind.\nHello");
    expect(promptText({ prompt: "Once upon" })).toBe("Once upon");
  });

  it("is undefined for a body without prompt fields (the whole body is then counted)", () => {
    for (const body of [undefined, null, "text", [], { model: "m" }]) expect(promptText(body)).toBeUndefined();
  });
});
