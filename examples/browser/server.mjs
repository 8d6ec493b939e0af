/**
 * Serves the browser example on 127.0.0.1 with a small rate-limited API: `node examples/browser/server.mjs`
 * (after `npm run build`), then open the address it prints. Each item takes 50 ms; item 5 is answered
 * once with a 429 and `retry-after-ms: 200`, as a provider at its limit would.
 */
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".map": "application/json" };

/** Starts the server on a free port; `url` is the page, `stats` what the API saw. */
export async function startExampleServer() {
  const stats = { requests: 0, inFlight: 0, mostInFlight: 0, rateLimited: 0 };
  let refusedOnce = false;
  const server = createServer(async (request, response) => {
    const path = new URL(request.url ?? "/", "http://localhost").pathname;
    const item = /^\/api\/items\/(\d+)$/.exec(path);
    if (item !== null) {
      stats.requests++;
      if (item[1] === "5" && !refusedOnce) {
        refusedOnce = true;
        stats.rateLimited++;
        response.writeHead(429, { "retry-after-ms": "200" }).end();
        return;
      }
      stats.inFlight++;
      stats.mostInFlight = Math.max(stats.mostInFlight, stats.inFlight);
      await new Promise((resolve) => setTimeout(resolve, 50));
      stats.inFlight--;
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify({ id: Number(item[1]), name: `thing number ${item[1]}` }));
      return;
    }
    const file = normalize(path.slice(1));
    if (!(file.startsWith("examples/browser/") || file.startsWith("dist/")) || file.includes("..")) {
      response.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(join(root, file));
      response.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" }).end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${server.address().port}`;
  const url = `${origin}/examples/browser/index.html`;
  return { url, origin, stats, close: () => new Promise((resolve) => server.close(resolve)) };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { url } = await startExampleServer();
  console.log(`the browser example: ${url} (Ctrl-C to stop)`);
}
