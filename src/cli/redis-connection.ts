/**
 * The Redis connection behind `--redis URL`: ioredis (the optional peer dependency), loaded only when
 * asked for, so the command works without it for everything else.
 */
import { dropCommands, type IoredisLike } from "../redis/connection.js";

/** An open connection and how to close it. */
export interface RedisConnectionHandle {
  readonly client: IoredisLike;
  close(): Promise<void>;
  /** Drops the connection now: commands waiting for it fail at once, none is retried. */
  abandon(): void;
}

/** How long a goodbye (QUIT) may take before the connection is simply dropped, in ms. */
const QUIT_DEADLINE = 1000;

/**
 * Connects to `url`, failing within `timeout` ms with a message that says what to check.
 *
 * @throws Error when ioredis is not installed or the server cannot be reached.
 */
export async function connectRedis(url: string, timeout = 5000): Promise<RedisConnectionHandle> {
  let Redis: new (
    url: string,
    options: Record<string, unknown>,
  ) => IoredisLike & {
    connect(): Promise<void>;
    quit(): Promise<unknown>;
    readonly status: string;
  };
  try {
    const module = (await import("ioredis")) as unknown as { default?: unknown; Redis?: unknown };
    Redis = (module.Redis ?? module.default) as typeof Redis;
  } catch {
    throw new Error("--redis needs the ioredis package next to sluice: npm install ioredis");
  }
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeout,
    // A command waits for a reconnect a little, then fails: the primitives turn that into their
    // RedisUnavailableError instead of hanging.
    maxRetriesPerRequest: 2,
    retryStrategy: (times: number) => Math.min(times * 200, 2000),
  });
  // Failures reach us through the commands; without a listener ioredis also prints each one.
  client.on?.("error", () => undefined);
  try {
    // `connectTimeout` covers the TCP connection only: a server that accepts it but never answers (a
    // frozen or overloaded Redis) would keep the ready check, and so this await, waiting for ever.
    await withDeadline(client.connect(), timeout, `no answer within ${timeout} ms`);
  } catch (error) {
    client.disconnect();
    throw new Error(`cannot reach Redis at ${url}: ${error instanceof Error ? error.message : String(error)}`);
  }
  return {
    client,
    close: async () => {
      // QUIT is sent only on a working connection: on one that is reconnecting it would wait out the
      // retries (seconds after Redis went away) for a goodbye nobody hears.
      if (client.status !== "ready") {
        client.disconnect();
        dropCommands(client, "the connection to Redis was closed");
        return;
      }
      try {
        // QUIT waits for the server's answer, which a server that stopped answering never sends. It is a
        // goodbye only (our leases end on their own), so it gets a second at most, not the connect
        // timeout: a Redis that died an instant before, with the status still "ready", held the exit of
        // a run that had lost Redis for 5 s (seen once in CI; it is 0.6 s otherwise).
        await withDeadline(client.quit(), Math.min(timeout, QUIT_DEADLINE), "QUIT not answered");
      } catch {
        client.disconnect();
      }
    },
    abandon: () => {
      client.disconnect();
      // ioredis' disconnect() while it is between reconnect attempts fails nothing it holds: the commands
      // in its offline queue would each wait out their 5 s timeout (the run's exit came 5.6 s after Redis
      // went, not 0.6 s, in about one run in four).
      dropCommands(client, "the connection to Redis was dropped: Redis is unavailable");
    },
  };
}

/** Settles as `promise` does, or rejects with `message` after `ms` (the timer never outlives it). */
function withDeadline<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
