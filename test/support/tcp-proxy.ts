/**
 * A TCP proxy on loopback for fault tests: put it between one client and a server (the client connects
 * to `proxy.port`), then cut that client off and restore it while every other client goes on.
 *
 * Two ways to cut, as networks fail:
 * - `"keep"`: a partition. Nothing is forwarded either way, but the sockets stay open; what was sent
 *   meanwhile waits in the kernel's buffers (both sides are paused, so TCP flow control holds it) and is
 *   delivered on `restore()`, as TCP retransmission delivers it when a partition heals. The client
 *   learns nothing until its own deadlines pass.
 * - `"drop"`: a reset. Every connection is closed at once and new ones are closed as soon as they are
 *   accepted, until `restore()`.
 */
import { connect, createServer, type Server, type Socket } from "node:net";

/** One client connection and its own connection to the server. */
interface Pair {
  client: Socket;
  upstream: Socket;
}

export type CutMode = "keep" | "drop";

export class TcpProxy {
  private readonly pairs = new Set<Pair>();
  private cutMode: CutMode | undefined = undefined;

  private constructor(
    private readonly listener: Server,
    readonly port: number,
    readonly targetPort: number,
  ) {}

  /** Listens on a free 127.0.0.1 port and forwards each connection to 127.0.0.1:`targetPort`. */
  static start(targetPort: number): Promise<TcpProxy> {
    return new Promise((resolve, reject) => {
      const listener = createServer();
      listener.once("error", reject);
      listener.listen(0, "127.0.0.1", () => {
        const address = listener.address();
        if (address === null || typeof address !== "object") {
          reject(new Error("the proxy got no port"));
          return;
        }
        const proxy = new TcpProxy(listener, address.port, targetPort);
        listener.on("connection", (client) => proxy.accept(client));
        resolve(proxy);
      });
    });
  }

  /** Whether clients are cut off, and how. */
  get cut(): CutMode | undefined {
    return this.cutMode;
  }

  /** Client connections open through the proxy. */
  get connections(): number {
    return this.pairs.size;
  }

  /** Stops forwarding both ways: `"keep"` holds the sockets open and paused, `"drop"` closes them. */
  cutOff(mode: CutMode = "keep"): void {
    this.cutMode = mode;
    for (const pair of this.pairs) {
      if (mode === "drop") this.close(pair);
      else this.pause(pair);
    }
  }

  /** Forwards again: held data flows on, and new connections are served. */
  restore(): void {
    this.cutMode = undefined;
    for (const pair of this.pairs) {
      pair.client.resume();
      pair.upstream.resume();
    }
  }

  /** Closes every connection and the listener. */
  stop(): Promise<void> {
    for (const pair of this.pairs) this.close(pair);
    return new Promise((resolve) => this.listener.close(() => resolve()));
  }

  private accept(client: Socket): void {
    if (this.cutMode === "drop") {
      client.destroy();
      return;
    }
    const pair: Pair = { client, upstream: connect(this.targetPort, "127.0.0.1") };
    this.pairs.add(pair);
    // No backpressure handling: test traffic is small, and `pause` must be the only thing that stops a side.
    client.on("data", (data) => pair.upstream.write(data));
    pair.upstream.on("data", (data) => client.write(data));
    // Either side ending ends the pair, as a proxy that held no state of its own would.
    for (const socket of [client, pair.upstream]) {
      socket.on("error", () => this.close(pair));
      socket.on("close", () => this.close(pair));
      socket.on("end", () => this.close(pair));
    }
    if (this.cutMode === "keep") this.pause(pair);
  }

  private pause(pair: Pair): void {
    pair.client.pause();
    pair.upstream.pause();
  }

  private close(pair: Pair): void {
    if (!this.pairs.delete(pair)) return;
    pair.client.destroy();
    pair.upstream.destroy();
  }
}
