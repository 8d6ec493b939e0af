// Weighted permits and priorities: a job that needs 3 GPU slots is not starved by a stream of 1-slot
// jobs, and an urgent request goes to the front of the line.
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts.
import { Semaphore } from "sluice";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const gpu = new Semaphore(4, { name: "gpu" });
const log: string[] = [];

async function job(name: string, weight: number, priority = 0) {
  await gpu.run(
    async () => {
      log.push(name);
      await sleep(20);
    },
    { weight, priority },
  );
}

const jobs = [job("small-1", 1), job("small-2", 1), job("large", 3), job("small-3", 1), job("small-4", 1)];
await sleep(1);
jobs.push(job("urgent", 1, 10));
await Promise.all(jobs);
console.log(`start order: ${log.join(" → ")}`);
console.log(gpu.statistics());
