// A database connection pool: created lazily, reused, validated on borrow, evicted when idle, capped
// at 3 — with 10 queries arriving at once. Run: npm run build && npx tsx examples/connection-pool.ts
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts.
import { Pool } from "sluice";

/** A stand-in for a database driver: connecting takes 20 ms, a query 10 ms. */
class Connection {
  static opened = 0;
  readonly id = ++Connection.opened;
  alive = true;
  async query(sql: string): Promise<string> {
    await new Promise((resolve) => setTimeout(resolve, 10));
    return `connection ${this.id} ran ${sql}`;
  }
  async close(): Promise<void> {
    this.alive = false;
  }
}
async function connect(): Promise<Connection> {
  await new Promise((resolve) => setTimeout(resolve, 20));
  return new Connection();
}

const pool = new Pool({
  create: () => connect(),
  destroy: (connection) => connection.close(),
  validate: (connection) => connection.alive, // checked when an idle connection is borrowed
  max: 3, // never more than 3 connections
  min: 1, // one is opened at start and kept
  idleTimeout: "30s", // idle connections beyond min are closed after 30 s
  onError: (error, event) => console.error(`pool ${event.phase} failed:`, error),
});

// Ten queries at once: three run, the others wait for a connection to come back.
const rows = await Promise.all(
  Array.from({ length: 10 }, (_, i) => pool.use((connection) => connection.query(`select ${i}`))),
);
console.log(rows.join("\n"));
console.log(`connections opened for 10 queries: ${Connection.opened}`);

// A lease can be held across several statements, and destroyed if the connection broke.
{
  await using lease = await pool.acquire({ timeout: 1_000 });
  await lease.value.query("begin");
  await lease.value.query("commit");
} // released here

const lease = await pool.acquire();
lease.value.alive = false; // the server dropped it
lease.destroy(); // do not return a broken connection to the pool

const { size, idle, inUse, waiting, pendingCreates } = pool.statistics();
console.log({ size, idle, inUse, waiting, pendingCreates });

await pool.drain(); // waits for leases to come back, then closes every connection
console.log(`after drain: ${pool.size} connections`);
