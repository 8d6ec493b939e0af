// A page that calls a rate-limited API: every fetch waits its turn (at most 3 in flight, at most 20 a
// second), and a 429 from the server pauses every call sharing the limiter, then they resume.
import { RateLimiter } from "sluice";
import { limitedFetch } from "sluice/http";

const limiter = new RateLimiter({ concurrency: 3, limits: [{ limit: 20, interval: "1s" }] });
const fetchItem = limitedFetch(limiter);

const status = document.querySelector("#status");
const list = document.querySelector("#items");
let loaded = 0;

async function load(id) {
  const response = await fetchItem(`/api/items/${id}`);
  const item = await response.json();
  const entry = document.createElement("li");
  entry.textContent = `item ${item.id}: ${item.name}`;
  list.append(entry);
  status.textContent = `${++loaded} of 12 loaded`;
}

await Promise.all(Array.from({ length: 12 }, (_, index) => load(index + 1)));
const { retries, rateLimited } = fetchItem.statistics();
status.textContent = `12 of 12 loaded (${rateLimited} rate-limited, ${retries} retried)`;
document.body.dataset.done = "true";
