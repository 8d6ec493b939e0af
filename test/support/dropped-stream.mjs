// Run by test/http/streaming.test.ts as `node --expose-gc --import tsx dropped-stream.mjs <repository>`:
// a streamed response its caller drops without reading or cancelling gives its permit back once it is
// garbage-collected, and its source is cancelled. Prints one JSON line: { held, released, cancelled }.
const root = process.argv[2];
const { RateLimiter } = await import(`${root}/src/index.ts`);
const { limitedFetch } = await import(`${root}/src/http/index.ts`);

const limiter = new RateLimiter({ concurrency: 1 });
let cancelled = false;
const endless = () =>
  new ReadableStream(
    {
      pull(controller) {
        controller.enqueue(new TextEncoder().encode('data: {"choices":[]}\n\n'));
      },
      cancel() {
        cancelled = true;
      },
    },
    { highWaterMark: 0 },
  );
const fetch = limitedFetch(limiter, {
  fetch: async () => new Response(endless(), { headers: { "content-type": "text/event-stream" } }),
});
// The response is dropped as soon as this function returns.
await (async () => {
  await fetch("https://api.example/v1/chat/completions", { method: "POST", body: "{}" });
})();
const held = limiter.inUse;
for (let i = 0; i < 50 && limiter.inUse > 0; i++) {
  globalThis.gc();
  await new Promise((resolve) => setTimeout(resolve, 10));
}
console.log(JSON.stringify({ held, released: limiter.inUse === 0, cancelled }));
