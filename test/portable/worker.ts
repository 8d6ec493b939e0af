/**
 * The portable suite as a Cloudflare Worker (run by workerd): a request runs it and is answered with the
 * results as JSON. The tests run inside the request, where a Worker may use timers.
 */
import { portableFiles } from "./files.js";
import { runFiles } from "./harness.js";

export default {
  /** `?file=part` runs only the files whose path contains `part` (to look into one failure). */
  async fetch(request: Request): Promise<Response> {
    const only = new URL(request.url).searchParams.get("file");
    const files = Object.fromEntries(
      Object.entries(portableFiles).filter(([file]) => only === null || file.includes(only)),
    );
    const results = await runFiles(files);
    return new Response(JSON.stringify(results), { headers: { "content-type": "application/json" } });
  },
};
