/**
 * A private `redis-server` for tests: started from PATH on a free loopback port (never the machine's
 * shared 6379), without persistence, and stopped afterwards. Chaos tests use `restart()` (a restart
 * loses every key, as a crash of an unpersisted Redis does), `pause()` / `resume()` (SIGSTOP /
 * SIGCONT: the server stops answering but keeps its connections and data).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createServer, Socket } from "node:net";

/** A free TCP port on 127.0.0.1, chosen by the kernel. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === "object") resolve(address.port);
        else reject(new Error("no port"));
      });
    });
  });
}

/** Sends PING over a raw socket; resolves true on +PONG within `ms`. */
function ping(port: number, ms = 200): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(ms, () => done(false));
    socket.once("error", () => done(false));
    socket.once("data", (data) => done(data.toString().startsWith("+PONG")));
    socket.connect(port, "127.0.0.1", () => socket.write("PING\r\n"));
  });
}

export class RedisServer {
  private process: ChildProcess | undefined;
  private constructor(readonly port: number) {}

  /** Starts a server on a free port and resolves once it answers PING. */
  static async start(): Promise<RedisServer> {
    const server = new RedisServer(await freePort());
    await server.launch();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** The server process id (for SIGSTOP/SIGCONT from outside). */
  get pid(): number | undefined {
    return this.process?.pid;
  }

  private async launch(): Promise<void> {
    const child = spawn(
      "redis-server",
      ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning"],
      { stdio: "ignore" },
    );
    this.process = child;
    const exited = new Promise<never>((_, reject) =>
      child.once("exit", (code) => reject(new Error(`redis-server exited early with code ${code}`))),
    );
    exited.catch(() => undefined);
    // Bounded: 100 tries of 50 ms.
    for (let attempt = 0; attempt < 100; attempt++) {
      if (child.exitCode !== null) await exited;
      if (await ping(this.port)) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    child.kill("SIGKILL");
    throw new Error(`redis-server on port ${this.port} did not answer PING within 5 s`);
  }

  /** Kills the server (SIGKILL, like a crash) and waits for it to exit. */
  async stop(): Promise<void> {
    const child = this.process;
    this.process = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGCONT");
    child.kill("SIGKILL");
    await exited;
  }

  /** Crashes the server and starts a fresh one on the same port: every key is gone. */
  async restart(downMs = 0): Promise<void> {
    await this.stop();
    if (downMs > 0) await new Promise((resolve) => setTimeout(resolve, downMs));
    await this.launch();
  }

  /** Freezes the server (SIGSTOP): connections stay open, nothing is answered. */
  pause(): void {
    this.process?.kill("SIGSTOP");
  }

  /** Thaws a paused server (SIGCONT). */
  resume(): void {
    this.process?.kill("SIGCONT");
  }
}
