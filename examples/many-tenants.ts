// Many tenants: a limit per user, per tenant and for everyone, charged all or nothing; one capacity
// shared fairly between tenants; a lock per account; many readers or one writer.
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts.
import { FairLimiter, KeyedMutex, KeyedRateLimiter, KeyedSemaphore, ReadWriteLock } from "sluice";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const callApi = async () => sleep(1);

// A rate limit per user, under one per tenant and a global one: a call passes all three or none.
const limiter = new KeyedRateLimiter({
  limits: [
    { limit: 60, interval: "1m" },
    { limit: 20_000, interval: "1m", unit: "tokens" },
  ],
  levels: [
    { name: "global", limits: [{ limit: 10_000, interval: "1m" }] },
    { name: "tenant", limits: [{ limit: 1_000, interval: "1m" }], key: (user) => user.split("/")[0] as string },
  ],
});
await limiter.run("acme/alice", () => callApi(), { cost: { tokens: 1_200 } });
const left = Math.floor(limiter.statistics("acme/alice").remaining.requests ?? 0);
console.log(`acme/alice has ${left} of 60 requests left this minute`);

// At most 2 uploads per user at once; a user's semaphore is dropped as soon as it is idle.
const uploads = new KeyedSemaphore(2, { name: "uploads" });
await Promise.all(["alice", "alice", "alice", "bob"].map((user) => uploads.run(user, () => sleep(5))));
console.log(`uploads: ${uploads.statistics().granted} done, ${uploads.size} users still live`);

// One capacity shared between tenants in turns: acme's 1,000 queued jobs do not hold back globex's one.
const workers = new FairLimiter(4, { shares: { acme: 1, globex: 1 } });
const started: string[] = [];
const jobs = [
  ...Array.from({ length: 1_000 }, () =>
    workers.run("acme", async () => {
      started.push("acme");
      await sleep(1);
    }),
  ),
  workers.run("globex", async () => {
    started.push("globex");
  }),
];
await Promise.all(jobs);
console.log(`globex's one job started after ${started.indexOf("globex")} of acme's 1,000`);

// One rate shared between tenants in turns: 100 calls a second, premium taking 3 for each 1 of free's.
const api = new FairLimiter(Infinity, { rate: { limit: 100, interval: "1s", burst: 4 }, shares: { premium: 3 } });
const served: string[] = [];
const calls = [...Array<string>(20).fill("free"), ...Array<string>(20).fill("premium")];
await Promise.all(calls.map((tenant) => api.run(tenant, () => served.push(tenant))));
const premium = served.slice(0, 20).filter((tenant) => tenant === "premium").length;
console.log(`of the first 20 calls, premium made ${premium}, though it queued after free's 20`);

// A lock per account: deposits to one account take turns, other accounts go on.
const accounts = new KeyedMutex();
const balances = new Map<string, number>();
async function deposit(account: string, amount: number) {
  await accounts.runExclusive(account, async () => {
    const read = balances.get(account) ?? 0;
    await sleep(1);
    balances.set(account, read + amount);
  });
}
await Promise.all([deposit("a", 10), deposit("a", 10), deposit("b", 5)]);
console.log(`balances: a ${balances.get("a")} (expected 20), b ${balances.get("b")}`);

// Many readers, or one writer; a waiting writer holds back the readers that come after it.
const config = new ReadWriteLock({ name: "config" });
let settings = { mode: "old" };
const reads = [config.runRead(() => settings.mode), config.runRead(() => settings.mode)];
const write = config.runWrite(() => {
  settings = { mode: "new" };
});
const lateRead = config.runRead(() => settings.mode);
console.log(
  `reads: ${await Promise.all(reads)}, then the write, then a late read: ${(await Promise.all([write, lateRead]))[1]}`,
);
