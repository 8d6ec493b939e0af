// Worker entry for the thread tests: Node 20 does not apply `--import tsx` hooks to a worker's entry
// module, so the worker registers tsx itself and then loads the TypeScript scenario named in workerData.
import { workerData } from "node:worker_threads";
import { register } from "tsx/esm/api";

register();
await import(workerData.script);
