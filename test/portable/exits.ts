/**
 * A program that leaves a pool with an idle resource, whose eviction timer is armed for an hour, and
 * ends: the timer must not keep the process alive (Node's and Bun's `unref()`, `Deno.unrefTimer`), as
 * bottleneck's timers kept Deno processes alive (octokit.js #2079). test/portable/run.mjs gives it a
 * few seconds to end by itself.
 */
import { Pool } from "sluice";

const pool = new Pool({ create: () => ({ connection: true }), max: 2, idleTimeout: "1h" });
await pool.use(async () => {});
if (pool.statistics().idle !== 1) throw new Error("expected one idle resource, with its eviction timer armed");
console.log("a pool with an idle resource and an hour-long eviction timer; the program ends now");
