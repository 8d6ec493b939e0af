// Seed use case 3: process many files in parallel, but at most 5 at a time, so memory stays bounded.
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Semaphore } from "sluice";

const directory = await mkdtemp(join(tmpdir(), "sluice-files-"));
const files: string[] = [];
for (let i = 0; i < 20; i++) {
  const file = join(directory, `record-${i}.json`);
  await writeFile(file, JSON.stringify({ id: i, values: Array.from({ length: 100 }, (_, j) => i * j) }));
  files.push(file);
}

const semaphore = new Semaphore(5); // process up to 5 files concurrently
let open = 0;
let mostOpen = 0;

async function processFile(file: string): Promise<number> {
  return semaphore.run(async () => {
    open++;
    mostOpen = Math.max(mostOpen, open);
    try {
      const content = JSON.parse(await readFile(file, "utf8")) as { values: number[] };
      return content.values.reduce((sum, value) => sum + value, 0);
    } finally {
      open--;
    }
  });
}

const sums = await Promise.all(files.map(processFile));
console.log(`processed ${sums.length} files, total ${sums.reduce((a, b) => a + b, 0)}`);
console.log(`most files open at once: ${mostOpen} (limit 5)`);
await rm(directory, { recursive: true });
