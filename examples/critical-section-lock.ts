// A lock around a critical section: concurrent read-modify-write of shared state without lost
// updates (the seeds' asyncio.Lock example).
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts.
import { Mutex } from "sluice";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
let balance = 0;

async function unsafeDeposit(amount: number) {
  const read = balance;
  await sleep(1); // an await between read and write: another deposit interleaves here
  balance = read + amount;
}

await Promise.all(Array.from({ length: 10 }, () => unsafeDeposit(10)));
console.log(`without a lock: balance ${balance} (expected 100)`);

balance = 0;
const mutex = new Mutex({ name: "balance" });

async function deposit(amount: number) {
  await using _lock = await mutex.lock();
  const read = balance;
  await sleep(1);
  balance = read + amount;
}

await Promise.all(Array.from({ length: 10 }, () => deposit(10)));
console.log(`with a lock: balance ${balance} (expected 100)`);

// runExclusive is the same without the block: the lock is released however the function ends.
const total = await mutex.runExclusive(async () => balance * 2);
console.log(`read under the lock: ${total / 2}`);
