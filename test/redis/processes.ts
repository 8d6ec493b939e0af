/**
 * Starts worker processes (test/redis/worker.ts, or another script, under tsx) and collects their JSON
 * lines.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { peak, peakWeight } from "./fault-checks.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
const defaultScript = fileURLToPath(new URL("./worker.ts", import.meta.url));

export interface WorkerOptions {
  /** The script to run (default test/redis/worker.ts); it gets the config as its one argument. */
  script?: string;
  /** Called with each line as it arrives (lines are also kept in `lines`). */
  onLine?: (line: Record<string, unknown>) => void;
  /** Opens an IPC channel (`process.send` in the child) and receives its messages. */
  onMessage?: (message: unknown) => void;
}

export interface Grant {
  token: number;
  /** The fencing slots of the grant (loop mode). */
  slots?: number[];
  start: number;
  end: number;
  lostAt?: number;
  /** Whether `permit.leaseLost` read true at `end` (loop mode). */
  lostByEnd?: boolean;
}

export class Worker {
  readonly lines: Record<string, unknown>[] = [];
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;
  private readonly listeners: (() => void)[] = [];
  stderr = "";

  constructor(config: Record<string, unknown>, options: WorkerOptions = {}) {
    const { script = defaultScript, onLine, onMessage } = options;
    // node --import tsx, not the tsx CLI: the CLI runs node as a grandchild that a SIGKILL would not reach.
    this.child = spawn(process.execPath, ["--import", "tsx", script, JSON.stringify(config)], {
      cwd: root,
      stdio: onMessage === undefined ? ["ignore", "pipe", "pipe"] : ["ignore", "pipe", "pipe", "ipc"],
    });
    if (onMessage !== undefined) this.child.on("message", onMessage);
    // A message sent to a child that was just killed fails with EPIPE; the child's end is seen through `exited`.
    this.child.on("error", () => undefined);
    let buffer = "";
    this.child.stdout?.on("data", (chunk: Buffer) => {
      buffer += chunk.toString();
      let newline = buffer.indexOf("\n");
      while (newline >= 0) {
        const line = JSON.parse(buffer.slice(0, newline)) as Record<string, unknown>;
        this.lines.push(line);
        onLine?.(line);
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
    const found = await this.next((line) => key in line, ms, 0);
    return found[key];
  }

  /**
   * Resolves with the first line matching `match` among those printed from `from` on (by default, from
   * now on), failing after `ms`.
   */
  async next(
    match: (line: Record<string, unknown>) => boolean,
    ms = 10_000,
    from = this.lines.length,
  ): Promise<Record<string, unknown>> {
    const deadline = Date.now() + ms;
    let index = from;
    for (;;) {
      for (; index < this.lines.length; index++) {
        const line = this.lines[index] as Record<string, unknown>;
        if (match(line)) return line;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`worker printed no matching line within ${ms} ms; stderr: ${this.stderr}`);
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

  /** Sends a message over the IPC channel (see `onMessage`); false if the child is gone. */
  send(message: unknown): boolean {
    if (!this.child.connected) return false;
    return this.child.send(message as Parameters<ChildProcess["send"]>[0]);
  }

  /** Whether the process has exited. */
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }
}

/** What a `keyed` worker printed it was admitted: each call's key and Redis time of admission (ms). */
export function admittedBy(worker: Worker): { key: string; at: number }[] {
  return worker.lines.flatMap((line) => ("admission" in line ? [line.admission as { key: string; at: number }] : []));
}

/**
 * The most grants whose [start, end) intervals overlap at any instant. A grant whose lease was lost
 * counts until the moment its holder learned it (the work stops there); one whose holder found
 * `leaseLost` at the end of its work (after a stall past the lease) not at all: it learned before the
 * write it would have made, and the lease ended at an instant its log does not show.
 */
export function maxOverlap(grants: Grant[]): number {
  return peakWeight(grants.map(counted));
}

/** The stretch of a grant that counts as held (see {@link maxOverlap}). */
function counted(grant: Grant): { start: number; end: number; weight: number } {
  if (grant.lostByEnd === true) return { start: grant.start, end: grant.start, weight: 1 };
  return {
    start: grant.start,
    end: grant.lostAt === undefined ? grant.end : Math.min(grant.end, grant.lostAt),
    weight: 1,
  };
}

/**
 * What a failed overlap check needs to be understood: the grants held at the peak instant (process,
 * token, slots, times relative to the earliest start there, whether the lease was lost) and each
 * process's longest event-loop stall as its `done` line reported it.
 */
export function overlapFigure(workers: readonly Worker[]): string {
  const all = workers.flatMap((worker, index) => worker.grants.map((grant) => ({ ...grant, process: index })));
  const { at } = peak(all.map(counted));
  const held = all.filter((grant) => grant.start <= at && at < grant.end);
  const origin = Math.min(...held.map((grant) => grant.start));
  const rows = held.map(
    (grant) =>
      `p${grant.process} #${grant.token} slots ${grant.slots?.join(",")} [${(grant.start - origin).toFixed(2)}, ${(grant.end - origin).toFixed(2)}] ms${grant.lostByEnd ? " lost by end" : ""}${grant.lostAt === undefined ? "" : ` lostAt ${(grant.lostAt - origin).toFixed(2)}`}`,
  );
  const stalls = workers.map((worker, index) => {
    const done = worker.lines.find((line) => "done" in line)?.done as { longestStallMs?: number } | undefined;
    return `p${index} longest stall ${done?.longestStallMs ?? "?"} ms`;
  });
  return `held at the peak:\n${rows.join("\n")}\n${stalls.join("; ")}`;
}
