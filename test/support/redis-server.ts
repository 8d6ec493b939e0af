/**
 * A private `redis-server` for tests: started from PATH on a free loopback port (never the machine's
 * shared 6379), without persistence, and stopped afterwards. Chaos tests use `restart()` (a restart
 * loses every key, as a crash of an unpersisted Redis does), `pause()` / `resume()` (SIGSTOP /
 * SIGCONT: the server stops answering but keeps its connections and data).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

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
  /** The cluster bus port, for a node of a {@link RedisClusterServers}. */
  busPort = 0;
  private constructor(
    readonly port: number,
    private readonly extra: readonly string[],
  ) {}

  /**
   * Starts a server on a free port and resolves once it answers PING. `extra` arguments go to
   * redis-server after the defaults; a `--port` among them picks the port.
   */
  static async start(extra: readonly string[] = []): Promise<RedisServer> {
    const portAt = extra.indexOf("--port");
    const port = portAt === -1 ? await freePort() : Number(extra[portAt + 1]);
    const server = new RedisServer(
      port,
      portAt === -1 ? extra : extra.filter((_, i) => i !== portAt && i !== portAt + 1),
    );
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
      [
        "--port",
        String(this.port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--loglevel",
        "warning",
        ...this.extra,
      ],
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

/**
 * A private Redis Cluster for tests: `nodes` masters (no replicas) on free loopback ports, each with its
 * own cluster bus port, the 16384 slots split evenly between them. Started without redis-cli (slots
 * assigned with CLUSTER ADDSLOTSRANGE, nodes introduced with CLUSTER MEET), stopped with `stop()`.
 */
export class RedisClusterServers {
  private constructor(
    readonly nodes: RedisServer[],
    private readonly directory: string,
  ) {}

  /** The client ports, for `new Cluster(ports.map((port) => ({ host: "127.0.0.1", port })))`. */
  get ports(): number[] {
    return this.nodes.map((node) => node.port);
  }

  static async start(count = 3): Promise<RedisClusterServers> {
    const directory = await mkdtemp(join(tmpdir(), "sluice-cluster-"));
    const nodes: RedisServer[] = [];
    const cluster = new RedisClusterServers(nodes, directory);
    try {
      for (let index = 0; index < count; index++) {
        const port = await freePort();
        const bus = await freePort();
        nodes.push(
          await RedisServer.start([
            "--port",
            String(port),
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            String(bus),
            "--cluster-config-file",
            join(directory, `nodes-${port}.conf`),
            "--cluster-node-timeout",
            "2000",
            "--dir",
            directory,
          ]),
        );
        (nodes[index] as RedisServer).busPort = bus;
      }
      const per = Math.ceil(16384 / count);
      for (const [index, node] of nodes.entries()) {
        const first = index * per;
        const last = Math.min(16383, first + per - 1);
        await command(node.port, ["CLUSTER", "ADDSLOTSRANGE", String(first), String(last)]);
      }
      const [introducer, ...others] = nodes as [RedisServer, ...RedisServer[]];
      for (const node of others) {
        await command(introducer.port, ["CLUSTER", "MEET", "127.0.0.1", String(node.port), String(node.busPort)]);
      }
      // Bounded: 200 tries of 50 ms for every node to see every slot served.
      for (let attempt = 0; ; attempt++) {
        const states = await Promise.all(nodes.map((node) => command(node.port, ["CLUSTER", "INFO"])));
        if (states.every((state) => state.includes("cluster_state:ok"))) break;
        if (attempt === 200) throw new Error(`the test cluster did not reach cluster_state:ok in 10 s:\n${states[0]}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return cluster;
    } catch (error) {
      await cluster.stop();
      throw error;
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop()));
    await rm(this.directory, { recursive: true, force: true });
  }
}

/** Sends one command over a raw socket (RESP) and resolves its reply as text. Bounded by 2 s. */
function command(port: number, parts: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    let reply = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no reply from 127.0.0.1:${port} to ${parts.join(" ")} within 2 s`));
    }, 2_000);
    const finish = (error?: Error) => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else if (reply.startsWith("-")) reject(new Error(`${parts.join(" ")} on port ${port}: ${reply.trim()}`));
      else resolve(reply);
    };
    socket.once("error", finish);
    socket.on("data", (data) => {
      reply += data.toString();
      // A simple or error reply ends at its first CRLF; a bulk reply ($n) once all n bytes are in.
      const bulk = /^\$(\d+)\r\n/.exec(reply);
      if (bulk !== null ? reply.length >= bulk[0].length + Number(bulk[1]) + 2 : reply.includes("\r\n")) finish();
    });
    socket.connect(port, "127.0.0.1", () => {
      socket.write(`*${parts.length}\r\n${parts.map((part) => `$${Buffer.byteLength(part)}\r\n${part}\r\n`).join("")}`);
    });
  });
}
