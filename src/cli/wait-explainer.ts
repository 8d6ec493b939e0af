/**
 * Why nothing starts although jobs are waiting, for the progress line: a run that stalls without a
 * word (a fresh Redis's restart guard, a long `--min-interval`, a server's pause) looks like a hang.
 */
import type { BuiltLimits } from "./limits.js";
import { formatDuration } from "./rates.js";
import type { RunStatistics } from "./statistics.js";

/** How long nothing must have started before the progress line says why. */
const QUIET_BEFORE_EXPLAINING = 1000;

/**
 * Every `every` ms, while nothing runs, jobs wait, and nothing has started for a second, sets
 * `statistics.waitingFor` to the reason the limits give (asked once at a time: asking Redis is a
 * round trip), and clears it once something runs.
 *
 * @param pending - how many jobs are waiting or running (the job runner's count).
 */
export function explainWaits(options: {
  readonly statistics: RunStatistics;
  readonly limits: BuiltLimits;
  readonly pending: () => number;
  readonly every?: number;
}): { stop(): void } {
  const { statistics, limits } = options;
  let asking = false;
  const tick = () => {
    const now = statistics.elapsed();
    const idle = now - (statistics.lastStartAt ?? 0);
    if (statistics.inFlight > 0 || options.pending() === 0 || idle < QUIET_BEFORE_EXPLAINING) {
      statistics.waitingFor = undefined;
      return;
    }
    const spacing = limits.description.minInterval;
    const nextStart =
      statistics.lastStartAt === undefined || spacing === undefined ? 0 : statistics.lastStartAt + spacing;
    if (nextStart > now) {
      statistics.waitingFor = `next start in ${formatDuration(nextStart - now)} (--min-interval ${formatDuration(spacing ?? 0)})`;
      return;
    }
    if (asking) return;
    asking = true;
    limits.whyWaiting().then(
      (reason) => {
        asking = false;
        statistics.waitingFor = reason;
      },
      () => {
        asking = false;
      },
    );
  };
  const timer = setInterval(tick, options.every ?? 500);
  // Explaining must never be what keeps the process alive.
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
