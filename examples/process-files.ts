// Processing files five at a time: results in input order, memory bounded for any number of files,
// and the first failure stops the rest. Run: npm run build && npx tsx examples/process-files.ts
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { map, mapSettled, mapStream, TaskGroup } from "sluice";

const directory = await mkdtemp(join(tmpdir(), "sluice-files-"));
const files: string[] = [];
for (let i = 0; i < 20; i++) {
  const file = join(directory, `data-${i}.json`);
  await writeFile(file, JSON.stringify({ id: i, values: Array.from({ length: i + 1 }, (_, k) => k) }));
  files.push(file);
}

// At most 5 files open at once; results come back in the order of `files`.
let open = 0;
let peakOpen = 0;
const totals = await map(
  files,
  async (file, _index, signal) => {
    open++;
    peakOpen = Math.max(peakOpen, open);
    try {
      const data = JSON.parse(await readFile(file, { encoding: "utf8", signal }));
      return data.values.reduce((sum: number, value: number) => sum + value, 0);
    } finally {
      open--;
    }
  },
  { concurrency: 5 },
);
console.log(`totals: ${totals.join(", ")} (at most ${peakOpen} files open)`);

// An endless or huge input: mapStream pulls a file name only when there is room, and yields results
// as they are consumed, so memory stays flat.
function* fileNames() {
  for (let i = 0; ; i++) yield join(directory, `data-${i % 20}.json`);
}
let processed = 0;
for await (const size of mapStream(fileNames(), async (file) => (await readFile(file)).length, { concurrency: 5 })) {
  processed += size > 0 ? 1 : 0;
  if (processed === 100) break; // leaving the loop stops the work and closes the generator
}
console.log(`streamed ${processed} files`);

// Collect every outcome instead of stopping at the first failure.
const outcomes = await mapSettled(
  [...files.slice(0, 3), join(directory, "missing.json")],
  (file) => readFile(file, "utf8"),
  {
    concurrency: 5,
  },
);
console.log(outcomes.map((outcome) => outcome.status).join(", "));

// Different tasks that belong together: the first failure aborts the others, and the block waits for all.
try {
  await using group = new TaskGroup();
  group.spawn((signal) => readFile(files[0] as string, { encoding: "utf8", signal }));
  group.spawn((signal) => readFile(join(directory, "missing.json"), { encoding: "utf8", signal }));
} catch (error) {
  console.log(`group failed: ${(error as NodeJS.ErrnoException).code}`);
}

await rm(directory, { recursive: true });
