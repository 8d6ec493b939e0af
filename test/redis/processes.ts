/**
 * Starts worker processes (test/redis/worker.ts under tsx) and collects their JSON lines.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../", import.meta.url));
const script = fileURLToPath(new URL("./worker.ts", import.meta.url));

export interface Grant {
  token: number;
  start: number;
  end: number;
  lostAt?: number;
}

export class Worker {
  readonly lines: Record<string, unknown>[] = [];
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;
  private readonly listeners: (() => void)[] = [];
  stderr = "";

  constructor(config: Record<string, unknown>) {
    // node --import tsx, not the tsx CLI: the CLI runs node as a grandchild that a SIGKILL would not reach.
    this.child = spawn(process.execPath, ["--import", "tsx", script, JSON.stringify(config)], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let buffer = "";
    this.child.stdout?.on("data", (chunk: Buffer) => {
      buffer += chunk.toString();
      let newline = buffer.indexOf("\n");
      while (newline >= 0) {
        this.lines.push(JSON.parse(buffer.slice(0, newline)) as Record<string, unknown>);
        buffer = buffer.slice(newline + 1);
        newline = buffer.indexOf("\n");
        for (const listener of this.listeners.splice(0)) listener();
      }
    });
    this.child.stderr?.on("data", (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
    this.exited = new Promise((resolve) => this.child.once("exit", (code) => resolve(code)));
  }

  /** Resolves with the first line that has `key`, failing after `ms`. */
  async line(key: string, ms = 10_000): Promise<unknown> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.lines.find((line) => key in line);
      if (found !== undefined) return found[key];
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`worker printed no "${key}" within ${ms} ms; stderr: ${this.stderr}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.listeners.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  get grants(): Grant[] {
    return this.lines.filter((line) => "grant" in line).map((line) => line.grant as Grant);
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    this.child.kill(signal);
  }
}

/**
 * The most grants whose [start, end) intervals overlap at any instant. A grant whose lease was lost
 * counts until the moment its holder learned it (the work stops there).
 */
export function maxOverlap(grants: Grant[]): number {
  const events: [number, number][] = [];
  for (const grant of grants) {
    const end = grant.lostAt === undefined ? grant.end : Math.min(grant.end, grant.lostAt);
    events.push([grant.start, 1], [end, -1]);
  }
  // At equal times, ends before starts: [start, end) intervals that touch do not overlap.
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let inside = 0;
  let most = 0;
  for (const [, delta] of events) {
    inside += delta;
    most = Math.max(most, inside);
  }
  return most;
}
