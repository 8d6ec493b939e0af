/**
 * One signal that follows several, for work that must stop when any of them aborts (a map's signal or a
 * distributed permit's lease; a pool's drain or a create's timeout; a caller's signal or limitedFetch's
 * stop switch).
 */

/** A signal that aborts when any of its sources does, and a way to stop following them. */
export interface LinkedSignal {
  /** `undefined` when no source was given; the source itself when only one was. */
  readonly signal: AbortSignal | undefined;
  /** Removes the listeners it added to its sources. Idempotent. */
  dispose(): void;
}

const NOTHING_TO_DISPOSE = (): void => {};

/**
 * A signal that aborts when any of `signals` aborts, with that one's reason (at once, with the first
 * aborted one's reason, if one already has).
 *
 * Not `AbortSignal.any`: Node 20.0 to 20.2 and browsers before 2024 lack it, and it cannot be disposed,
 * so a long-lived source (a pool's drain switch, a job-wide signal) would keep one dependent per call
 * until the garbage collector ran. Callers dispose as soon as the work the signal guarded is over.
 */
export function linkSignals(...signals: (AbortSignal | undefined)[]): LinkedSignal {
  const present = signals.filter((signal): signal is AbortSignal => signal !== undefined);
  if (present.length <= 1) return { signal: present[0], dispose: NOTHING_TO_DISPOSE };
  const controller = new AbortController();
  const aborted = present.find((signal) => signal.aborted);
  if (aborted !== undefined) {
    controller.abort(aborted.reason);
    return { signal: controller.signal, dispose: NOTHING_TO_DISPOSE };
  }
  const listeners = present.map((signal) => {
    const listener = () => controller.abort(signal.reason);
    signal.addEventListener("abort", listener, { once: true });
    return [signal, listener] as const;
  });
  return {
    signal: controller.signal,
    dispose: () => {
      for (const [signal, listener] of listeners) signal.removeEventListener("abort", listener);
    },
  };
}
