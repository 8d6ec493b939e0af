/**
 * The little sluice needs from a Redis client, behind one interface so that ioredis, node-redis or
 * iovalkey can sit under the same primitives. Only ioredis has an adapter today ({@link fromIoredis});
 * anything that implements {@link RedisConnection} works.
 */
import { createHash } from "node:crypto";

/** The Redis operations sluice uses. Every method returns a promise and never throws synchronously. */
export interface RedisConnection {
  /** `EVALSHA sha numkeys keys... args...`. Must reject with an error whose message starts with `NOSCRIPT` when the script is not loaded. */
  evalsha(sha: string, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown>;
  /** `EVAL script numkeys keys... args...` (which also caches the script for later `EVALSHA`s). */
  eval(script: string, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown>;
  /**
   * `SUBSCRIBE channel` on this connection, resolving once Redis has confirmed it; from then on every
   * message published on `channel` goes to `onMessage`, until {@link RedisConnection.unsubscribe}. Called
   * on a connection made by {@link RedisConnection.duplicate}, once per channel; one connection may carry
   * several channels (one per semaphore of the process), each with its own `onMessage`. If the
   * connection drops and comes back subscribed again, `onResubscribed` (when given) is called: messages
   * published meanwhile were lost.
   */
  subscribe(channel: string, onMessage: (message: string) => void, onResubscribed?: () => void): Promise<void>;
  /** `UNSUBSCRIBE channel`: `onMessage` of that channel is not called any more. */
  unsubscribe(channel: string): Promise<void>;
  /**
   * Optional: `SSUBSCRIBE channel` (sharded pub/sub, Redis 7.0+), otherwise as
   * {@link RedisConnection.subscribe}. Needed only for `notices: "sharded"`.
   */
  ssubscribe?(channel: string, onMessage: (message: string) => void, onResubscribed?: () => void): Promise<void>;
  /** Optional: `SUNSUBSCRIBE channel`, the counterpart of {@link RedisConnection.ssubscribe}. */
  sunsubscribe?(channel: string): Promise<void>;
  /** `SCAN cursor MATCH pattern COUNT count`: `[nextCursor, keys]`. */
  scan(cursor: string, pattern: string, count: number): Promise<[string, string[]]>;
  /**
   * A new connection to the same server with the same options. sluice takes one per client passed to
   * its constructors, shared by all their semaphores, to receive grant notices, because a subscribed
   * connection cannot carry other commands.
   */
  duplicate(): RedisConnection;
  /** Closes a connection made by {@link RedisConnection.duplicate}. */
  disconnect(): void;
  /**
   * Optional: `false` when the connection goes to one server (or a primary with replicas), `true` for a
   * Redis Cluster. On one server, `PUBLISH` counts every listener, so a grant to a process that can no
   * longer hear it (killed) is passed on at once; on a Cluster it counts only one node's, and such a grant
   * waits for the process's lease to end. Left out, sluice assumes it may be a Cluster.
   */
  readonly cluster?: boolean;
}

/** The subset of an ioredis client (`Redis` from "ioredis", v5 or later) that the adapter calls. */
export interface IoredisLike {
  /** ioredis' `evalsha(sha, numkeys, ...keys, ...args)`. */
  evalsha(sha: string, numkeys: number, ...keysAndArgs: (string | number)[]): Promise<unknown>;
  /** ioredis' `eval(script, numkeys, ...keys, ...args)`. */
  eval(script: string, numkeys: number, ...keysAndArgs: (string | number)[]): Promise<unknown>;
  /** ioredis' `subscribe(channel)`; messages arrive as `"message"` events. */
  subscribe(channel: string): Promise<unknown>;
  /** ioredis' `unsubscribe(channel)`. */
  unsubscribe(channel: string): Promise<unknown>;
  /** ioredis' `ssubscribe(channel)` (sharded pub/sub); messages arrive as `"smessage"` events. */
  ssubscribe?(channel: string): Promise<unknown>;
  /** ioredis' `sunsubscribe(channel)`. */
  sunsubscribe?(channel: string): Promise<unknown>;
  /** ioredis' `scan(cursor, "MATCH", pattern, "COUNT", n)`. */
  scan(cursor: string, match: "MATCH", pattern: string, count: "COUNT", n: number): Promise<[string, string[]]>;
  /** ioredis' `duplicate()`: a new client with the same options. */
  duplicate(): IoredisLike;
  /** ioredis' `disconnect()`. */
  disconnect(): void;
  /** ioredis sets it: `true` on a `Cluster`. */
  readonly isCluster?: boolean;
  /** Errors of a connection the adapter duplicated, which it listens to so that none is printed as unhandled. */
  on?(event: "error", listener: (error: Error) => void): unknown;
  /** Messages on subscribed channels (`"smessage"` for sharded ones). */
  on?(event: "message" | "smessage", listener: (channel: string, message: string) => void): unknown;
  /** The client (re)connected; ioredis has subscribed its channels again by then. */
  on?(event: "ready", listener: () => void): unknown;
  /** The connection closed (each failed reconnect attempt closes again), or the client gave up (`"end"`). */
  on?(event: "close" | "end", listener: () => void): unknown;
  /** ioredis' options: the adapter follows its reconnect rules for commands caught by a dropped connection. */
  readonly options?: object;
}

/**
 * Commands that were written to a connection that then dropped. ioredis keeps them aside to resend after a
 * reconnect, and fails them only then (or silently drops them, with `autoResendUnfulfilledCommands:
 * false`): while Redis stays away they would wait out sluice's whole `commandTimeout`, whereas a command
 * sent a millisecond later, held in ioredis' offline queue, fails after `maxRetriesPerRequest` reconnect
 * attempts. This gives the first the same rule as the second: each pending command is failed once the
 * client has closed `maxRetriesPerRequest + 1` times since it was caught (the instant ioredis flushes its
 * offline queue), when a reconnect will not resend it, or when the client gives up. A command failed so
 * may still have run in Redis, exactly as one that timed out; sluice's leases are made for that.
 */
function inFlightGuard(client: IoredisLike): Guard {
  let guard = guards.get(client);
  if (guard === undefined) {
    guard = watch(client);
    // One per client, however many primitives share it: the listeners are not added again each time.
    guards.set(client, guard);
  }
  return guard;
}

interface Guard {
  /** Sends a command through `send`, tracked until it settles. */
  run<T>(send: () => Promise<T>): Promise<T>;
  /** Fails every command still pending with `error`. */
  drop(error: Error): void;
}

const guards = new WeakMap<IoredisLike, Guard>();

/**
 * Fails, with `reason`, every command sluice sent through `client` that is still pending. For a caller that
 * calls ioredis' `disconnect()` while the client is reconnecting: ioredis then neither reconnects nor fails
 * the commands waiting in its offline queue, which would wait out sluice's `commandTimeout` (seen in the
 * CLI: a run that lost Redis exited 5.6 s later instead of 0.6 s in about one run in four). A command sent
 * through it afterwards fails at once with the same reason, until the client is ready again. @internal
 */
export function dropCommands(client: IoredisLike, reason: string): void {
  guards.get(client)?.drop(new Error(reason));
}

function watch(client: IoredisLike): Guard {
  interface Pending {
    reject: (error: Error) => void;
    /** Closes counted when the connection it was sent on dropped; undefined while that one is up. */
    caughtAt: number | undefined;
  }
  const pending = new Set<Pending>();
  let closes = 0;
  const options = () =>
    (client.options ?? {}) as { maxRetriesPerRequest?: number | null; autoResendUnfulfilledCommands?: boolean };
  const fail = (item: Pending, error: Error) => {
    pending.delete(item);
    item.reject(error);
  };
  /**
   * Set by {@link dropCommands} (a client disconnected between reconnect attempts, which ioredis leaves
   * "reconnecting" for good): a command sent after it would wait in the offline queue for ever, so it
   * fails at once, until the client is ready again.
   */
  let dropped: Error | undefined;
  const drop = (error: Error) => {
    for (const item of pending) fail(item, error);
  };
  client.on?.("close", () => {
    closes += 1;
    const retries = options().maxRetriesPerRequest;
    for (const item of pending) {
      item.caughtAt ??= closes - 1;
      if (typeof retries === "number" && retries >= 0 && closes - item.caughtAt >= retries + 1) {
        fail(
          item,
          new Error(
            `the connection to Redis dropped with the command in flight, and ${retries + 1} reconnect attempts failed`,
          ),
        );
      }
    }
  });
  client.on?.("ready", () => {
    closes = 0;
    dropped = undefined;
    const resent = options().autoResendUnfulfilledCommands !== false;
    for (const item of pending) {
      if (item.caughtAt === undefined) continue;
      if (resent) item.caughtAt = undefined;
      else fail(item, new Error("the connection to Redis dropped with the command in flight, which is not resent"));
    }
  });
  client.on?.("end", () => drop(new Error("the connection to Redis was closed with the command in flight")));
  return {
    drop: (error) => {
      dropped = error;
      drop(error);
    },
    run: <T>(send: () => Promise<T>) =>
      new Promise<T>((resolve, reject) => {
        if (dropped !== undefined) {
          reject(dropped);
          return;
        }
        const item: Pending = { reject, caughtAt: undefined };
        pending.add(item);
        const settle = () => pending.delete(item);
        let sent: Promise<T>;
        try {
          sent = send();
        } catch (error) {
          sent = Promise.reject(error);
        }
        sent.then(
          (value) => {
            settle();
            resolve(value);
          },
          (error: unknown) => {
            settle();
            reject(error);
          },
        );
      }),
  };
}

/**
 * Adapts an ioredis client.
 *
 * @example
 * ```ts
 * import Redis from "ioredis";
 * import { fromIoredis } from "sluice/redis";
 * const connection = fromIoredis(new Redis(6380));
 * ```
 */
export function fromIoredis(client: IoredisLike): RedisConnection {
  // Every command goes through the guard: a subscribe waiting in a duplicate's offline queue when sluice
  // disconnects it would otherwise hold whoever awaits the subscription for its whole timeout.
  const guard = inFlightGuard(client);
  /**
   * The subscribed channels' listeners, from the first `subscribe` or `ssubscribe` on (only a duplicate
   * gets one). Plain and sharded channels share it: a semaphore's channel is one or the other.
   */
  let channels:
    | Map<string, { onMessage: (message: string) => void; onResubscribed?: () => void; subscribed: boolean }>
    | undefined;
  const listen = async (
    channel: string,
    onMessage: (message: string) => void,
    onResubscribed: (() => void) | undefined,
    subscribe: (channel: string) => Promise<unknown>,
  ): Promise<void> => {
    if (channels === undefined) {
      channels = new Map();
      const listeners = channels;
      const deliver = (from: string, message: string) => listeners.get(from)?.onMessage(message);
      client.on?.("message", deliver);
      client.on?.("smessage", deliver);
      // ioredis resubscribes by itself after a reconnect, then says "ready".
      client.on?.("ready", () => {
        for (const listener of listeners.values()) if (listener.subscribed) listener.onResubscribed?.();
      });
    }
    const listener = { onMessage, onResubscribed, subscribed: false };
    channels.set(channel, listener);
    await subscribe(channel);
    listener.subscribed = true;
  };
  return asRedisConnection({
    evalsha: (sha, keys, args) => guard.run(() => client.evalsha(sha, keys.length, ...keys, ...args)),
    eval: (script, keys, args) => guard.run(() => client.eval(script, keys.length, ...keys, ...args)),
    subscribe: (channel, onMessage, onResubscribed) =>
      listen(channel, onMessage, onResubscribed, (name) => guard.run(() => client.subscribe(name))),
    unsubscribe: async (channel) => {
      channels?.delete(channel);
      await guard.run(() => client.unsubscribe(channel));
    },
    ssubscribe: (channel, onMessage, onResubscribed) =>
      listen(channel, onMessage, onResubscribed, async (name) => {
        if (typeof client.ssubscribe !== "function") {
          throw new TypeError(
            'this ioredis client has no ssubscribe (sharded pub/sub): update ioredis, or use notices: "publish"',
          );
        }
        const ssubscribe = client.ssubscribe.bind(client);
        await guard.run(() => ssubscribe(name));
      }),
    sunsubscribe: async (channel) => {
      channels?.delete(channel);
      const sunsubscribe = client.sunsubscribe?.bind(client);
      if (sunsubscribe !== undefined) await guard.run(() => sunsubscribe(channel));
    },
    scan: (cursor, pattern, count) => guard.run(() => client.scan(cursor, "MATCH", pattern, "COUNT", count)),
    duplicate: () => {
      const copy = client.duplicate();
      // Our own connection: its failures reach us through the commands; without a listener ioredis
      // would also print every reconnect attempt as an unhandled error event.
      copy.on?.("error", () => undefined);
      return fromIoredis(copy);
    },
    disconnect: () => {
      client.disconnect();
      dropCommands(client, "the connection to Redis was closed with the command in flight");
    },
    cluster: client.isCluster === true,
  });
}

/** What the constructors accept: an ioredis client or any {@link RedisConnection}. */
export type RedisClient = RedisConnection | IoredisLike;

/** Marks objects that already speak {@link RedisConnection} (both interfaces have `evalsha`). */
const CONNECTION = Symbol.for("sluice.redis.connection");

function isConnection(client: RedisClient): client is RedisConnection {
  return (client as { [CONNECTION]?: true })[CONNECTION] === true;
}

/** Turns whatever the user passed into a {@link RedisConnection}. */
export function toConnection(client: RedisClient): RedisConnection {
  if (client === null || typeof client !== "object") {
    throw new TypeError(`redis must be an ioredis client or a RedisConnection; got ${String(client)}`);
  }
  if (isConnection(client)) return client;
  const candidate = client as Partial<IoredisLike>;
  if (typeof candidate.evalsha !== "function" || typeof candidate.duplicate !== "function") {
    throw new TypeError("redis must be an ioredis client or a RedisConnection (it has no evalsha/duplicate)");
  }
  return fromIoredis(client as IoredisLike);
}

/**
 * Marks a hand-written {@link RedisConnection} so the constructors use it as is.
 *
 * @example
 * ```ts
 * const connection = asRedisConnection({ evalsha, eval, subscribe, unsubscribe, scan, duplicate, disconnect });
 * ```
 */
export function asRedisConnection(connection: RedisConnection): RedisConnection {
  (connection as { [CONNECTION]?: true })[CONNECTION] = true;
  return connection;
}

/** A Lua script run by SHA, loaded on demand: one round trip per call once Redis knows it. */
export class Script {
  readonly sha: string;
  constructor(readonly source: string) {
    this.sha = createHash("sha1").update(source).digest("hex");
  }

  async run(
    connection: RedisConnection,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<unknown> {
    try {
      return await connection.evalsha(this.sha, keys, args);
    } catch (error) {
      // After a restart or SCRIPT FLUSH the cache is empty: EVAL sends the body once and caches it.
      if (error instanceof Error && error.message.startsWith("NOSCRIPT")) {
        return connection.eval(this.source, keys, args);
      }
      throw error;
    }
  }
}

/**
 * The one subscribed connection through which a process hears grant notices, shared by every semaphore
 * made from the same client (see {@link sharedNotices}): a process with fifty semaphores holds one extra
 * connection, not fifty. It is opened by the first channel and closed with the last, so a process whose
 * semaphores are all closed keeps no connection (and no event-loop handle) of ours.
 */
export class NoticeConnection {
  private subscriber: RedisConnection | undefined = undefined;
  /** Channel -> whether it is a sharded one (SSUBSCRIBE). */
  private readonly channels = new Map<string, boolean>();

  constructor(private readonly connection: RedisConnection) {}

  /**
   * Subscribes `channel` (see {@link RedisConnection.subscribe}, or {@link RedisConnection.ssubscribe}
   * when `sharded`); settles when Redis confirmed it.
   */
  listen(
    channel: string,
    onMessage: (message: string) => void,
    onResubscribed?: () => void,
    sharded = false,
  ): Promise<void> {
    try {
      this.subscriber ??= this.connection.duplicate();
      this.channels.set(channel, sharded);
      if (!sharded) return this.subscriber.subscribe(channel, onMessage, onResubscribed);
      if (this.subscriber.ssubscribe === undefined) {
        throw new TypeError('notices: "sharded" needs a connection with ssubscribe (Redis 7.0+ sharded pub/sub)');
      }
      return this.subscriber.ssubscribe(channel, onMessage, onResubscribed);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Stops listening on `channel`; the last channel to go closes the connection. Idempotent. */
  leave(channel: string): void {
    const sharded = this.channels.get(channel);
    if (sharded === undefined) return;
    this.channels.delete(channel);
    const subscriber = this.subscriber;
    if (subscriber === undefined) return;
    if (this.channels.size === 0) {
      this.subscriber = undefined;
      subscriber.disconnect();
    } else {
      // If the connection is down, its resubscription will not include the channel either.
      const leaving = sharded ? subscriber.sunsubscribe?.(channel) : subscriber.unsubscribe(channel);
      leaving?.catch(() => undefined);
    }
  }

  /** Channels listened on now (for tests and diagnostics). */
  get size(): number {
    return this.channels.size;
  }
}

const noticeConnections = new WeakMap<object, NoticeConnection>();

/**
 * The {@link NoticeConnection} of the client `key` (what the user passed to a constructor), made on first
 * use from `connection`.
 */
export function sharedNotices(key: object, connection: RedisConnection): NoticeConnection {
  let notices = noticeConnections.get(key);
  if (notices === undefined) {
    notices = new NoticeConnection(connection);
    noticeConnections.set(key, notices);
  }
  return notices;
}
