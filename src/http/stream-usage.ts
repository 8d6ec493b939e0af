/**
 * Settling a streamed response (server-sent events) from its final usage while the caller reads it:
 * the body the caller gets passes every chunk through untouched, and a small reader alongside keeps
 * only the events that report usage — never the whole stream — so a permit is settled and released
 * the moment the stream ends, however long it is and however slowly it is read.
 */
import { type Cost, costFromEventStream } from "./cost.js";

/** An event that reports usage: a `"usage": {...}` (OpenAI, Anthropic) or `"usageMetadata": {...}` (Gemini) object. */
const USAGE_EVENT = /"usage(?:Metadata)?"\s*:\s*\{/;
/** Anthropic's first event, which carries the input tokens (its last `message_delta` has the output). */
const MESSAGE_START = /"type"\s*:\s*"message_start"/;

/**
 * Releases the permit of a stream its caller dropped without reading it to the end or cancelling it:
 * once the body is garbage, nobody will ever read it.
 */
// Cloudflare's workerd has no FinalizationRegistry: there a stream dropped unread keeps its permit (read
// or cancel every stream, as the docs say); everywhere else it comes back once the stream is collected.
const abandoned: FinalizationRegistry<() => void> | undefined =
  typeof FinalizationRegistry === "function"
    ? /* @__PURE__ */ new FinalizationRegistry<() => void>((finish) => finish())
    : undefined;

/**
 * Returns `response` with a body that passes the original's bytes through as the caller reads them,
 * and calls `onEnd` exactly once: with the usage the stream reported (or `undefined` when it reported
 * none) when it ends, with `undefined` when the caller cancels it, it fails (a reset, the caller's
 * abort) or it is dropped unread. Nothing is read ahead of the caller, and nothing is buffered but the
 * usage events. Status, headers and URL are the original's.
 */
export function observeEventStream(response: Response, onEnd: (actual: Cost | undefined) => void): Response {
  const source = response.body;
  if (source === null) {
    onEnd(undefined);
    return response;
  }
  const reader = source.getReader();
  const decoder = new TextDecoder();
  // The unfinished line, and the only two lines a final usage is read from: Anthropic's message_start
  // and the latest other event with a usage object. Lines may be cut across chunks at any byte.
  let partial = "";
  let start: string | undefined;
  let latest: string | undefined;
  const take = (text: string, last?: boolean): void => {
    const lines = (partial + text).split("\n");
    partial = last ? "" : (lines.pop() as string);
    for (const line of lines) {
      if (MESSAGE_START.test(line)) start ??= line;
      else if (USAGE_EVENT.test(line)) latest = line;
    }
  };
  let ended = false;
  const finish = (actual?: Cost): void => {
    if (ended) return;
    ended = true;
    abandoned?.unregister(dropped);
    onEnd(actual);
  };
  const dropped = (): void => {
    finish();
    reader.cancel().catch(() => {});
  };
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        try {
          chunk = await reader.read();
        } catch (error) {
          finish();
          controller.error(error);
          return;
        }
        if (chunk.done) {
          take(decoder.decode(), true);
          finish((start ?? latest) ? costFromEventStream([start, latest].join("\n")) : undefined);
          controller.close();
          return;
        }
        take(decoder.decode(chunk.value, { stream: true }));
        controller.enqueue(chunk.value);
      },
      cancel(reason) {
        finish();
        return reader.cancel(reason);
      },
    },
    // Pulled only when the caller reads: the stream advances at the caller's pace, not ahead of it.
    { highWaterMark: 0 },
  );
  abandoned?.register(body, dropped, dropped);
  const observed = new Response(body, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
  // SDKs name the URL in their errors and logs; a constructed Response would have none.
  Object.defineProperty(observed, "url", { value: response.url });
  return observed;
}
