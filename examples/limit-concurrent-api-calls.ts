// Seed use case 1: rate-limit API requests by capping how many are in flight (the seeds'
// RateLimitedClient with asyncio.Semaphore(5)). The API here is simulated so the example runs offline.
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts.
import { Semaphore } from "sluice";

let inFlight = 0;
let mostInFlight = 0;

/** A stand-in for an HTTP API that gets slower, or refuses, when hammered. */
async function callApi(id: number): Promise<{ id: number; status: number }> {
  inFlight++;
  mostInFlight = Math.max(mostInFlight, inFlight);
  await new Promise((resolve) => setTimeout(resolve, 20 + (id % 5) * 5));
  inFlight--;
  return { id, status: 200 };
}

class RateLimitedClient {
  private readonly semaphore = new Semaphore(5, { name: "api" });

  request(id: number) {
    return this.semaphore.run(() => callApi(id));
  }
}

const client = new RateLimitedClient();
const responses = await Promise.all(Array.from({ length: 50 }, (_, id) => client.request(id)));
console.log(
  `${responses.length} responses, all ${new Set(responses.map((r) => r.status)).size === 1 ? "200" : "mixed"}`,
);
console.log(`most requests in flight at once: ${mostInFlight} (limit 5)`);
