/**
 * What sluice tells `node:diagnostics_channel` subscribers (OpenTelemetry through `sluice/otel`, Sentry,
 * an APM agent, a test): the same events from every Limiter, published by the one admission step and the
 * one permit, so no primitive or backend publishes on its own.
 *
 * - `sluice:acquire` (a TracingChannel, {@link AcquireEvent}): `start` when a request enters the admission
 *   step, `end` when that step returns (`queued` says whether the caller now waits), then `error` (a
 *   give-up) and `asyncStart` / `asyncEnd` when the wait ends: granted, timed out, aborted or rejected.
 * - `sluice:hold` (a TracingChannel, {@link HoldEvent}): `start` and `end` at the grant, `asyncStart` /
 *   `asyncEnd` at the release. The shape is the one `tracePromise` publishes, so generic subscribers work.
 * - `sluice:rate.pause`, `sluice:http.attempt`, `sluice:http.key.removed`, `sluice:lease.lost`: plain
 *   channels.
 *
 * Cost when nobody listens: one `hasSubscribers` read per acquire and one per permit, and nothing
 * allocated. `node:diagnostics_channel` is reached through `process.getBuiltinModule` (see
 * many-listeners.ts for why not an import); where it is missing (browsers, edge runtimes, Node 20.0 to
 * 20.15) every channel is silent and the limiters work as before.
 */
import type { Clock } from "./clock.js";

/** How a request left the admission step: the `sluice.result` of the metrics. */
export type AcquireOutcome = "acquired" | "timeout" | "aborted" | "rejected";

/** Where a limiter keeps its state: this process, shared memory of worker threads, or Redis. */
export type LimiterBackend = "memory" | "threads" | "redis";

/**
 * The limiter an event is about: one per limiter, made when it is constructed, the same object in every
 * event it publishes (so a subscriber may key a map by it).
 */
export class LimiterIdentity {
  constructor(
    /** The name given at construction, if any. */
    readonly name: string | undefined,
    /** What it is: `"semaphore"`, `"mutex"`, `"rate-limiter"`. */
    public kind: string,
    /** Where its state lives. */
    readonly backend: LimiterBackend,
    /** @internal The limiter's clock: every time in its events is read from it. */
    readonly clock: Clock,
  ) {}
}

/** Each limiter's identity, for what is handed a limiter (`limitedFetch`, `sluice/otel`'s gauges). */
const identities: WeakMap<object, LimiterIdentity> = /* @__PURE__ */ new WeakMap();

/** Makes `owner`'s identity and registers it, so {@link identityOf} finds it. */
export function identify(
  owner: object,
  name: string | undefined,
  kind: string,
  backend: LimiterBackend,
  clock: Clock,
): LimiterIdentity {
  const identity = new LimiterIdentity(name, kind, backend, clock);
  identities.set(owner, identity);
  return identity;
}

/**
 * Registers `owner` (a RedisMutex, a SharedMutex) as the face of the limiter `inner` it stands on, and
 * names the kind after the face: events and metrics then say `mutex`, the object the caller knows.
 */
export function identifyFace(owner: object, inner: object, kind: string): void {
  const identity = identities.get(inner);
  if (identity === undefined) return;
  identity.kind = kind;
  identities.set(owner, identity);
}

/** Registers `owner` as another face of a limiter already identified (a Mutex over its Semaphore). */
export function identifyAs(owner: object, identity: LimiterIdentity): void {
  identities.set(owner, identity);
}

/**
 * The identity of a sluice limiter (Semaphore, Mutex, RateLimiter and their thread and Redis
 * counterparts), or `undefined` for anything else.
 */
export function identityOf(limiter: unknown): LimiterIdentity | undefined {
  return typeof limiter === "object" && limiter !== null ? identities.get(limiter) : undefined;
}

/**
 * One request's way through the admission step, on `sluice:acquire`. Times are the limiter clock's
 * milliseconds (a fake clock in tests gives exact figures).
 */
export class AcquireEvent {
  /** Whether the caller waited in the queue (set before `end` is published). */
  queued = false;
  /** How the request ended; `undefined` until then. */
  outcome: AcquireOutcome | undefined = undefined;
  /** When the request ended (granted or gave up); `NaN` until then. */
  endTime = Number.NaN;
  /** Why it gave up (the TimeoutError, the signal's reason, the refusal); `undefined` when granted. */
  error: unknown = undefined;
  constructor(
    /** The limiter. */
    readonly limiter: LimiterIdentity,
    /** The weight asked for (1 for limiters without weights). */
    readonly weight: number,
    /** The priority asked for. */
    readonly priority: number,
    /** When the request entered the admission step. */
    readonly startTime: number,
  ) {}
}

/** One permit from grant to release, on `sluice:hold`. Times are the limiter clock's milliseconds. */
export class HoldEvent {
  /** When the permit was released; `NaN` until then. */
  endTime = Number.NaN;
  constructor(
    /** The limiter. */
    readonly limiter: LimiterIdentity,
    /** The weight the permit holds. */
    readonly weight: number,
    /** When the permit was granted. */
    readonly startTime: number,
  ) {}
}

/** The part of a diagnostics channel sluice uses. */
interface Publisher {
  readonly hasSubscribers: boolean;
  publish(message: unknown): void;
}
/** The part of a TracingChannel sluice uses. */
interface TracingPublisher {
  readonly hasSubscribers: boolean;
  readonly start: Publisher;
  readonly end: Publisher;
  readonly asyncStart: Publisher;
  readonly asyncEnd: Publisher;
  readonly error: Publisher;
}
interface DiagnosticsChannels {
  channel(name: string): Publisher;
  tracingChannel(name: string): TracingPublisher;
}

const SILENT: Publisher = { hasSubscribers: false, publish: () => undefined };
const SILENT_TRACING: TracingPublisher = {
  hasSubscribers: false,
  start: SILENT,
  end: SILENT,
  asyncStart: SILENT,
  asyncEnd: SILENT,
  error: SILENT,
};

function diagnosticsChannels(): DiagnosticsChannels | undefined {
  const process = (globalThis as { process?: { getBuiltinModule?(id: string): unknown } }).process;
  try {
    const found = process?.getBuiltinModule?.("node:diagnostics_channel") as DiagnosticsChannels | undefined;
    // TracingChannel.hasSubscribers arrived in Node 20.13 / 22.0; a runtime without it stays silent.
    return found !== undefined && "hasSubscribers" in found.tracingChannel("sluice:acquire") ? found : undefined;
  } catch {
    return undefined;
  }
}

function tracing(name: string): TracingPublisher {
  return diagnosticsChannels()?.tracingChannel(name) ?? SILENT_TRACING;
}

function plain(name: string): Publisher {
  return diagnosticsChannels()?.channel(name) ?? SILENT;
}

/** `sluice:acquire`: see the module comment. */
export const acquireChannel: TracingPublisher = /* @__PURE__ */ tracing("sluice:acquire");
/** `sluice:hold`: see the module comment. */
export const holdChannel: TracingPublisher = /* @__PURE__ */ tracing("sluice:hold");
/** `sluice:rate.pause`: a {@link RatePauseEvent} whenever a rate limiter is paused. */
export const ratePauseChannel: Publisher = /* @__PURE__ */ plain("sluice:rate.pause");
/** `sluice:http.attempt`: an {@link HttpAttemptEvent} for every request `limitedFetch` sends. */
export const httpAttemptChannel: Publisher = /* @__PURE__ */ plain("sluice:http.attempt");
/** `sluice:http.key.removed`: a `KeyRemovedDiagnosticsEvent` (sluice/http) when a key pool takes a key out. */
export const keyRemovedChannel: Publisher = /* @__PURE__ */ plain("sluice:http.key.removed");
/** `sluice:lease.lost`: a {@link LeaseLostEvent} whenever a distributed permit learns its lease is lost. */
export const leaseLostChannel: Publisher = /* @__PURE__ */ plain("sluice:lease.lost");

/** A pause of a rate limiter (`pause()`, or `observe()` of a `Retry-After`), on `sluice:rate.pause`. */
export interface RatePauseEvent {
  /** The limiter. */
  readonly limiter: LimiterIdentity;
  /** How long the pause asked for, in ms. */
  readonly duration: number;
  /** The reason given to `pause()`. */
  readonly reason: unknown;
}

/** One request `limitedFetch` sent, once it answered or failed, on `sluice:http.attempt`. */
export interface HttpAttemptEvent {
  /** The limiter it waited for; `undefined` for a Limiter that is not sluice's own. */
  readonly limiter: LimiterIdentity | undefined;
  /** The request's method. */
  readonly method: string;
  /** The request's URL. */
  readonly url: string;
  /** Which attempt of the call it was: 1 for the first, 2 for the first retry. */
  readonly attempt: number;
  /** Whether it re-sent a request that had failed (`attempt > 1`). */
  readonly retry: boolean;
  /** The response's status, or `undefined` when no response came (a network error, an attempt timeout). */
  readonly status: number | undefined;
}

/** A permit whose lease was lost, on `sluice:lease.lost`. */
export interface LeaseLostEvent {
  /** The limiter. */
  readonly limiter: LimiterIdentity;
  /** The weight the lost permit held. */
  readonly weight: number;
}

/** Publishes `start` for a new request and returns its event. Call only when someone subscribes. */
export function startAcquire(limiter: LimiterIdentity, weight: number, priority: number): AcquireEvent {
  const event = new AcquireEvent(limiter, weight, priority, limiter.clock.now());
  acquireChannel.start.publish(event);
  return event;
}

/** Publishes `end`: the admission step returned, and the caller waits (`queued`) or not. */
export function admitted(event: AcquireEvent, queued: boolean): void {
  event.queued = queued;
  acquireChannel.end.publish(event);
}

/** Publishes the end of the wait: `error` for a give-up, then `asyncStart` and `asyncEnd`. */
export function endAcquire(event: AcquireEvent, outcome: AcquireOutcome, error?: unknown): void {
  event.outcome = outcome;
  event.endTime = event.limiter.clock.now();
  if (outcome !== "acquired") {
    event.error = error;
    acquireChannel.error.publish(event);
  }
  acquireChannel.asyncStart.publish(event);
  acquireChannel.asyncEnd.publish(event);
}

/** A grant made at once, outside the admission step (a fast path, `tryAcquire`). */
export function acquiredNow(limiter: LimiterIdentity, weight: number): void {
  const event = startAcquire(limiter, weight, 0);
  admitted(event, false);
  endAcquire(event, "acquired");
}

/** Publishes the grant of a permit and returns its event. Call only when someone subscribes. */
export function startHold(limiter: LimiterIdentity, weight: number): HoldEvent {
  const event = new HoldEvent(limiter, weight, limiter.clock.now());
  holdChannel.start.publish(event);
  holdChannel.end.publish(event);
  return event;
}

/** Publishes the release of a permit. */
export function endHold(event: HoldEvent): void {
  event.endTime = event.limiter.clock.now();
  holdChannel.asyncStart.publish(event);
  holdChannel.asyncEnd.publish(event);
}
