// For the Redis examples: the Redis to use. REDIS_URL if set; otherwise a private redis-server from
// PATH on a free loopback port, without persistence, stopped when the example ends.
import { spawn } from "node:child_process";
import { createServer, Socket } from "node:net";

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function ping(port) {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(200, () => done(false));
    socket.once("error", () => done(false));
    socket.once("data", (data) => done(data.toString().startsWith("+PONG")));
    socket.connect(port, "127.0.0.1", () => socket.write("PING\r\n"));
  });
}

/**
 * Resolves to `{ url, port, stop() }`: REDIS_URL if set (unless `isolated`), otherwise a private
 * redis-server started here. Rejects, rather than waiting, if redis-server is missing or exits.
 * The benchmarks use it too, with `isolated: true`: they read INFO counters that other clients would skew.
 */
export async function localRedis({ isolated = false } = {}) {
  if (process.env.REDIS_URL && !isolated) {
    return { url: process.env.REDIS_URL, port: Number(new URL(process.env.REDIS_URL).port || 6379), stop: () => {} };
  }
  const port = await freePort();
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    {
      stdio: "ignore",
    },
  );
  let failure;
  child.once("error", (error) => {
    failure = error;
  });
  child.once("exit", (code) => {
    failure ??= new Error(`redis-server exited with code ${code}`);
  });
  for (let attempt = 0; !(await ping(port)); attempt++) {
    if (failure !== undefined) throw failure;
    if (attempt >= 100) {
      child.kill("SIGKILL");
      throw new Error("redis-server did not answer PING within 5 s");
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { url: `redis://127.0.0.1:${port}`, port, stop: () => child.kill("SIGKILL") };
}
