/**
 * The fault suite's TCP proxy (test/support/tcp-proxy.ts) on real loopback sockets: it forwards both
 * ways, a "keep" cut holds data in both directions on open sockets until restored, a "drop" cut closes
 * them and turns new connections away until restored.
 */
import { once } from "node:events";
import { createServer, type Server, Socket } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TcpProxy } from "./tcp-proxy.js";

let server: Server;
/** The server's side of each accepted connection, in order. */
let accepted: Socket[];
let proxy: TcpProxy;
const clients: Socket[] = [];

beforeEach(async () => {
  accepted = [];
  server = createServer((socket) => {
    socket.on("error", () => undefined);
    accepted.push(socket);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  proxy = await TcpProxy.start((server.address() as { port: number }).port);
});

afterEach(async () => {
  for (const client of clients.splice(0)) client.destroy();
  await proxy.stop();
  for (const socket of accepted) socket.destroy();
  await new Promise((resolve) => server.close(resolve));
});

async function connectThroughProxy(): Promise<Socket> {
  const client = new Socket();
  client.on("error", () => undefined);
  clients.push(client);
  client.connect(proxy.port, "127.0.0.1");
  await once(client, "connect");
  return client;
}

/** Resolves with the first data on `socket`, or undefined if none comes within `ms` (bounded). */
function firstData(socket: Socket, ms: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      socket.off("data", onData);
      resolve(undefined);
    }, ms);
    const onData = (data: Buffer) => {
      clearTimeout(timer);
      resolve(data.toString());
    };
    socket.once("data", onData);
  });
}

/** The server's side of the latest connection, once the proxy has made it. */
async function serverSide(): Promise<Socket> {
  for (let attempt = 0; attempt < 100 && accepted.length === 0; attempt++) await new Promise((r) => setTimeout(r, 10));
  return accepted[accepted.length - 1] as Socket;
}

describe("TcpProxy", () => {
  it("forwards both ways", async () => {
    const client = await connectThroughProxy();
    const upstream = await serverSide();
    client.write("ping");
    expect(await firstData(upstream, 2_000)).toBe("ping");
    upstream.write("pong");
    expect(await firstData(client, 2_000)).toBe("pong");
  });

  it('"keep" holds data both ways on open sockets; restore delivers it on the same connection', async () => {
    const client = await connectThroughProxy();
    const upstream = await serverSide();
    let closed = false;
    client.on("close", () => (closed = true));
    proxy.cutOff("keep");
    const toServer = firstData(upstream, 3_000);
    const toClient = firstData(client, 3_000);
    client.write("held request");
    upstream.write("held reply");
    // Nothing crosses while cut (a bounded wait: the proxy forwards within a millisecond when it does).
    expect(await firstData(upstream, 200)).toBeUndefined();
    proxy.restore();
    expect(await toServer).toBe("held request");
    expect(await toClient).toBe("held reply");
    expect(closed).toBe(false);
    expect(accepted).toHaveLength(1);
  });

  it('"drop" closes the connections and turns new ones away until restored', async () => {
    const client = await connectThroughProxy();
    await serverSide();
    const closed = once(client, "close");
    proxy.cutOff("drop");
    await closed;
    expect(proxy.connections).toBe(0);

    const refused = await connectThroughProxy();
    await once(refused, "close");
    expect(accepted).toHaveLength(1);

    proxy.restore();
    const again = await connectThroughProxy();
    for (let attempt = 0; attempt < 100 && accepted.length < 2; attempt++) await new Promise((r) => setTimeout(r, 10));
    const upstream = accepted[1] as Socket;
    again.write("back");
    expect(await firstData(upstream, 2_000)).toBe("back");
  });
});
