/**
 * The wait queue's invariant checks (see the invariants written next to its state in wait-queue.ts):
 * test code, so they live here rather than in the queue, and no user's bundle carries them.
 * `sluice/testing` installs them when it is imported; {@link WaitQueue.assertInvariants} runs them.
 */
import { isDead, type Level, type QueueState, queueChecks, Waiter } from "./wait-queue.js";

/** Makes {@link WaitQueue.assertInvariants} check the queue (see the module comment). */
export function installWaitQueueChecks(): void {
  queueChecks.check = checkQueue;
}

/** Throws an Error naming the first broken invariant of a wait queue. O(waiters). */
function checkQueue(state: QueueState): void {
  const { inHeap, inFifos } = assertLevels(state.levels, state.defaultLevel, state.size);
  state.heap.assertInvariants((waiter, slot) => {
    if (!waiter.queued) broken("no settled waiter in the deadline heap", `slot ${slot} holds one`);
  });
  if (state.heap.size !== inHeap) {
    broken(
      "the deadline heap holds exactly the queued waiters with a timeout in no deadline FIFO",
      `${state.heap.size} in the heap, ${inHeap} queued`,
    );
  }
  if (state.timedInLevels !== inFifos) {
    broken("timedInLevels counts the waiters in deadline FIFOs", `${state.timedInLevels}, the FIFOs hold ${inFifos}`);
  }
  if (state.expiring) broken("no expiry is under way between calls", "expiring is set");
  const armed = state.armed;
  const timed = inHeap + inFifos;
  if (armed !== timed > 0) {
    broken("the timer is armed exactly while a waiter with a timeout waits", `armed: ${armed}, ${timed} waiting`);
  }
  if (!armed && state.timerAt !== Number.POSITIVE_INFINITY) {
    broken("a timer that is not armed has no time", `timerAt ${state.timerAt}`);
  }
  const earliest = state.earliest();
  if (armed && !(state.timerAt <= earliest)) {
    broken(
      "the timer is armed no later than the earliest deadline",
      `armed for ${state.timerAt}, earliest deadline ${earliest}`,
    );
  }
}

/** Throws the Error that names a broken invariant of the queue (see {@link WaitQueue.assertInvariants}). */
function broken(invariant: string, detail: string): never {
  throw new Error(`WaitQueue invariant broken: ${invariant} (${detail})`);
}

/** What the rings say about the waiters with a timeout: how many are in the heap, how many in FIFOs. */
interface TimedCount {
  inHeap: number;
  inFifos: number;
}

/** Checks the levels and their rings and deadline FIFOs; counts the queued waiters with a timeout. */
function assertLevels(levels: readonly Level[], defaultLevel: Level, size: number): TimedCount {
  let live = 0;
  const timed: TimedCount = { inHeap: 0, inFifos: 0 };
  levels.forEach((level, position) => {
    const previous = levels[position - 1];
    if (previous !== undefined && !(previous.priority > level.priority)) {
      broken("levels are sorted by strictly descending priority", `${previous.priority} before ${level.priority}`);
    }
    if (level.live <= 0) broken("every level in the queue has a queued waiter", `level ${level.priority}`);
    timed.inFifos += assertFifo(level);
    timed.inHeap += assertRing(level);
    live += level.live;
  });
  if (live !== size) broken("size equals the sum of the levels' live counts", `size ${size}, live ${live}`);
  const unused = !levels.includes(defaultLevel);
  const empty =
    defaultLevel.live === 0 && defaultLevel.dead === 0 && defaultLevel.start === 0 && defaultLevel.end === 0;
  if (unused && !(empty && defaultLevel.items.every((slot) => slot === undefined))) {
    broken("the default level holds nothing while nobody waits at priority 0", `live ${defaultLevel.live}`);
  }
  return timed;
}

/** Checks one level's ring (see Level); returns how many of its waiters are in the deadline heap. */
function assertRing(level: Level): number {
  const { items, start, end } = level;
  const name = `level ${level.priority}`;
  if (start % 2 !== 0 || end % 2 !== 0 || start < 0 || start > end || end > items.length) {
    broken("entries lie between start and end, both even", `${name}: ${start}..${end} of ${items.length}`);
  }
  for (let slot = 0; slot < items.length; slot++) {
    if ((slot < start || slot >= end) && items[slot] !== undefined) {
      broken("every slot outside the entries is undefined", `${name}: slot ${slot}`);
    }
  }
  let live = 0;
  let dead = 0;
  let timed = 0;
  for (let index = start; index < end; index += 2) {
    const slot = items[index];
    if (isDead(slot)) {
      dead++;
      if (items[index + 1] !== undefined) broken("a tombstone keeps nothing", `${name}: slot ${index + 1}`);
    } else {
      live++;
      if (slot instanceof Waiter) timed += assertWaiter(slot, level, index);
      else if (typeof slot !== "function") broken("an entry starts with a waiter or its resolving function", name);
    }
  }
  if (live !== level.live || dead !== level.dead) {
    broken(
      "live and dead count the ring's entries and tombstones",
      `${name}: live ${level.live}, dead ${level.dead}; the ring has ${live} and ${dead}`,
    );
  }
  if (live > 0 && isDead(items[start])) broken("no tombstone at the front of a ring", name);
  return timed;
}

/** Checks a waiter object found at `index` of `level`'s ring; returns 1 if it is in the deadline heap. */
function assertWaiter(waiter: Waiter<unknown, unknown>, level: Level, index: number): number {
  const name = `level ${level.priority}, slot ${index}`;
  if (waiter.index !== index) broken("a waiter object knows its index", `${name}: it says ${waiter.index}`);
  if (waiter.priority !== level.priority) broken("a waiter has its level's priority", `${name}: ${waiter.priority}`);
  if (typeof level.items[index + 1] !== "function") broken("a waiter object's resolving function follows it", name);
  const inFifo = inDeadlineFifo(level, index);
  if (inFifo && waiter.timeout !== level.timeout) {
    broken("a waiter in a deadline FIFO waits with its timeout", `${name}: ${waiter.timeout}, not ${level.timeout}`);
  }
  const inHeap = waiter.timeout !== Number.POSITIVE_INFINITY && !inFifo;
  if (inHeap !== waiter.heapIndex >= 0) {
    broken(
      "a waiter is in the deadline heap exactly when it has a timeout and is in no deadline FIFO",
      `${name}: heapIndex ${waiter.heapIndex}`,
    );
  }
  return inHeap ? 1 : 0;
}

/** Whether the entry at ring index `index` of `level` is in its deadline FIFO. */
function inDeadlineFifo(level: Level, index: number): boolean {
  return level.deadlines !== undefined && level.deadlines[index >> 1] !== Number.POSITIVE_INFINITY;
}

/** Checks `level`'s deadline FIFO (see Level); returns how many waiters are in it. */
function assertFifo(level: Level): number {
  const { deadlines, arrivals, items, start, end } = level;
  const name = `level ${level.priority}`;
  if (deadlines === undefined || arrivals === undefined) {
    if (deadlines !== arrivals || level.timed !== 0) broken("a level without a deadline FIFO has none in it", name);
    return 0;
  }
  if (deadlines.length < end >> 1 || arrivals.length < end >> 1) {
    broken(
      "a deadline FIFO has a slot for every entry",
      `${name}: ${deadlines.length}, ${arrivals.length} of ${end >> 1}`,
    );
  }
  let count = 0;
  let previous = -1;
  for (let slot = 0; slot < deadlines.length; slot++) {
    const deadline = deadlines[slot] as number;
    if (deadline === Number.POSITIVE_INFINITY) continue;
    const index = slot * 2;
    if (index < start || index >= end || isDead(items[index])) {
      broken("a finite deadline marks a queued entry", `${name}: slot ${index}`);
    }
    if (index < level.due) broken("no entry of a deadline FIFO lies before its search start", `${name}: slot ${index}`);
    if (!(deadline <= level.latest)) broken("no deadline in a FIFO is after its latest", `${name}: slot ${index}`);
    if (
      previous >= 0 &&
      !(deadline >= (deadlines[previous] as number) && (arrivals[slot] as number) > (arrivals[previous] as number))
    ) {
      broken("a deadline FIFO is in deadline and arrival order", `${name}: slot ${index} after slot ${previous * 2}`);
    }
    previous = slot;
    count++;
  }
  if (count !== level.timed) broken("timed counts a level's deadline FIFO", `${name}: ${level.timed}, holds ${count}`);
  return count;
}
