/**
 * The shared-memory half of SharedSemaphore: the layout of its SharedArrayBuffer and the protocol every
 * thread follows on it. The thread-local half (the callers' promises, abort and timeout handling) is the
 * ordinary `WaitQueue` in `shared-semaphore.ts`; this file never sees a promise.
 *
 * ## The picture
 *
 * Every thread that uses the semaphore owns one *record*: a small ring of *entries*, each entry one of
 * its waiting callers (weight, ticket, priority), published in that thread's local queue order. A caller
 * takes a global *ticket* (one `Atomics.add`) when it arrives; tickets order callers across threads.
 *
 * One thread at a time is the *dispatcher* (whoever wins a compare-exchange on the dispatcher word). It
 * looks at the first waiting entry of every record, picks the best (highest priority, then lowest
 * ticket), and grants it if it fits, by flipping that entry from WAITING to GRANTED with a
 * compare-exchange. A thread that finds the dispatcher busy does not wait: it bumps the `pending` counter
 * and leaves, and the dispatcher runs another pass before it lets go (see `requestDispatch`). Nobody ever
 * blocks or spins: the only waiting is `Atomics.waitAsync` on a record's doorbell, by its owner.
 *
 * ## Who writes what (the rule that makes crash recovery exact)
 *
 * - A record's owner thread writes its entries' contents, `published`, `collected`, `held`, `overflow`
 *   and the key of its first unpublished waiter, `waiting` — nobody else does while the record is alive.
 * - An entry's state word is the one place two threads race: the dispatcher moves WAITING -> GRANTED,
 *   the owner moves WAITING -> CANCELLED (abort, timeout, reordering). Both are compare-exchanges, so
 *   exactly one wins: a cancel racing a grant can neither lose nor duplicate a permit. An owner whose
 *   cancel lost finds the entry GRANTED and gives the weight straight back.
 * - Weight in use is not a counter anyone maintains; it is *derived*: the sum over live records of
 *   `held` plus the weight of their GRANTED entries not yet collected. So a grant is one atomic step
 *   (the entry flip), a release is one atomic step (`held -= weight` by the owner), and a dead thread's
 *   permits disappear from the sum the moment its record stops being alive. There is no second counter
 *   that a thread could die between updating.
 */

/** Identifies a sluice SharedSemaphore buffer ("Slc1"), so a wrong buffer fails loudly. */
const MAGIC = 0x536c6331;

// Header words.
const H_MAGIC = 0;
/** The capacity; `Infinity` is stored as INFINITE_CAPACITY. Fixed at creation. */
const H_CAPACITY = 1;
/** How many records the buffer has (the most threads that can use the semaphore at once). */
const H_RECORDS = 2;
/** The next ticket. Wraps around after 2^32 arrivals; tickets are compared by signed difference. */
const H_TICKET = 3;
/** 0 when nobody dispatches, else the dispatching record's index + 1 (so a dead dispatcher is known). */
const H_DISPATCHER = 4;
/** Requests for a dispatch pass since the dispatcher last looked (see `requestDispatch`). */
const H_PENDING = 5;
/** Records ever registered: passes scan records below it. Only grows. */
const H_HIGH_WATER = 6;
/** Grants since creation (statistics). */
const H_GRANTED = 7;
/** Two random words naming this semaphore, so each thread keeps one instance per semaphore. */
const H_ID = 8;
const HEADER_WORDS = 10;

/** Entries per record: how many of one thread's waiters other threads can see at once. A power of 2. */
export const WINDOW = 32;
const WINDOW_MASK = WINDOW - 1;
/** Priority slots per record: one per entry, plus the hidden head's. */
const PRIORITY_SLOTS = WINDOW + 1;

// Record words (offsets from the record's base).
/**
 * FREE, DEAD, or — while the record is alive — its thread's id + 1. Owner and liveness in one word, so
 * claiming a record and reclaiming it are single compare-exchanges: a thread terminated at any
 * instruction leaves a record either free or clearly its own.
 */
const R_STATE = 0;
/** Weight the owner collected and has not released yet. Owner-written. */
const R_HELD = 1;
/** Sequence number of the oldest entry not yet collected by the owner. Owner-written. */
const R_COLLECTED = 2;
/** Sequence number of the next entry to publish. Owner-written. Entries live in [collected, published). */
const R_PUBLISHED = 3;
/** 1 while the owner has waiters it could not publish (the ring is full). Owner-written. */
const R_OVERFLOW = 4;
/** Bumped (and notified) by the dispatcher after granting one of this record's entries. */
const R_DOORBELL = 5;
/** The owner's local queue length, for `waiting` statistics. Owner-written. */
const R_WAITING = 6;
/**
 * The first waiter the owner could not publish (while `overflow` is set): its ticket here, its priority
 * in the record's extra priority slot, guarded by a version that is odd while the owner rewrites them
 * (a seqlock: the dispatcher never waits, it treats a torn read as "unknown" and grants nothing).
 */
const R_HIDDEN_VERSION = 7;
const R_HIDDEN_TICKET = 8;
const R_ENTRIES = 9;
// Entry words: the state word is `(sequence << 2) | status`, so a stale entry never matches a live one.
const E_STATE = 0;
const E_WEIGHT = 1;
const E_TICKET = 2;
const ENTRY_WORDS = 3;
const RECORD_WORDS = R_ENTRIES + WINDOW * ENTRY_WORDS;

// Record states (besides `threadId + 1`, which means alive).
const FREE = 0;
/** Its thread exited: it holds nothing and waits for nothing; the next dispatch pass frees it. */
const DEAD = -1;

// Entry statuses (low two bits of the state word).
const WAITING = 1;
const GRANTED = 2;
const CANCELLED = 3;

/** How `Infinity` is stored: larger than any weight can add up to in an Int32 word. */
const INFINITE_CAPACITY = 0x7fffffff;

/** `Atomics.waitAsync` (Node >= 16) is not in the ES2022 lib this package compiles against. */
type WaitAsync = (
  array: Int32Array,
  index: number,
  value: number,
) => { async: false; value: "not-equal" | "timed-out" } | { async: true; value: Promise<"ok" | "timed-out"> };
export const waitAsync: WaitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

/** A snapshot of the shared state, summed over the live records. */
export interface SharedQueueSnapshot {
  inUse: number;
  waiting: number;
  threads: number;
  granted: number;
}

/** The shared half of one SharedSemaphore; one instance per thread per buffer. */
export class SharedQueue {
  readonly words: Int32Array;
  /**
   * Entry priorities (any number, so not Int32): record r, sequence s at `r * PRIORITY_SLOTS + (s & mask)`;
   * the hidden head's at `r * PRIORITY_SLOTS + WINDOW`.
   */
  readonly priorities: Float64Array;
  readonly records: number;
  readonly capacity: number;
  /** Names the semaphore across threads (the buffer object differs in each thread). */
  readonly id: string;

  /** Lays out a fresh buffer. */
  static allocate(capacity: number, maxThreads: number): SharedArrayBuffer {
    const priorityOffset = align8((HEADER_WORDS + maxThreads * RECORD_WORDS) * 4);
    const buffer = new SharedArrayBuffer(priorityOffset + maxThreads * PRIORITY_SLOTS * 8);
    const words = new Int32Array(buffer);
    words[H_CAPACITY] = capacity === Number.POSITIVE_INFINITY ? INFINITE_CAPACITY : capacity;
    words[H_RECORDS] = maxThreads;
    words[H_ID] = (Math.random() * 0x100000000) | 0;
    words[H_ID + 1] = (Math.random() * 0x100000000) | 0;
    Atomics.store(words, H_MAGIC, MAGIC);
    return buffer;
  }

  /** @throws TypeError if `buffer` is not a buffer made by {@link SharedQueue.allocate}. */
  constructor(readonly buffer: SharedArrayBuffer) {
    if (!(buffer instanceof SharedArrayBuffer) || buffer.byteLength < HEADER_WORDS * 4) {
      throw new TypeError("handle.buffer must be the SharedArrayBuffer of a sluice SharedSemaphore");
    }
    this.words = new Int32Array(buffer);
    const records = this.words[H_RECORDS] as number;
    const priorityOffset = align8((HEADER_WORDS + records * RECORD_WORDS) * 4);
    if (
      Atomics.load(this.words, H_MAGIC) !== MAGIC ||
      buffer.byteLength !== priorityOffset + records * PRIORITY_SLOTS * 8
    ) {
      throw new TypeError("handle.buffer must be the SharedArrayBuffer of a sluice SharedSemaphore");
    }
    this.records = records;
    this.priorities = new Float64Array(buffer, priorityOffset, records * PRIORITY_SLOTS);
    const stored = this.words[H_CAPACITY] as number;
    this.capacity = stored === INFINITE_CAPACITY ? Number.POSITIVE_INFINITY : stored;
    this.id = `${this.words[H_ID]}:${this.words[H_ID + 1]}`;
  }

  /** The word index where record `record` starts. */
  base(record: number): number {
    return HEADER_WORDS + record * RECORD_WORDS;
  }

  /**
   * Claims a free record for the calling thread.
   * @throws RangeError when every record is in use (more threads than `maxThreads`).
   */
  register(threadId: number): number {
    const words = this.words;
    for (let record = 0; record < this.records; record++) {
      const base = this.base(record);
      if (Atomics.compareExchange(words, base + R_STATE, FREE, threadId + 1) !== FREE) continue;
      for (;;) {
        const highWater = Atomics.load(words, H_HIGH_WATER);
        if (highWater > record) break;
        if (Atomics.compareExchange(words, H_HIGH_WATER, highWater, record + 1) === highWater) break;
      }
      return record;
    }
    throw new RangeError(
      `all ${this.records} thread slots of this SharedSemaphore are in use; create it with a larger maxThreads, ` +
        "and track() workers so that the slots of exited ones are freed",
    );
  }

  /**
   * Gives back record `record` of the calling thread `threadId` when its SharedSemaphore instance has
   * been garbage-collected, so that the thread's next instance (`from` builds a new one once the old is
   * gone) finds a slot instead of taking another for good. Only a record that holds nothing is freed:
   * weight of a permit that was never released stays counted, as it would with the instance alive.
   * Nothing changes for a dispatch pass (no weight, no waiter), so none needs to run.
   */
  retire(record: number, threadId: number): void {
    const words = this.words;
    const base = this.base(record);
    if (Atomics.load(words, base + R_STATE) !== threadId + 1) return;
    // An instance with callers waiting is kept reachable (its keep-alive timer holds it), so an
    // unreachable one has no waiter and no grant left to collect; checked anyway, because freeing a
    // record with either would lose them.
    const settled = Atomics.load(words, base + R_COLLECTED) === Atomics.load(words, base + R_PUBLISHED);
    if (!settled || Atomics.load(words, base + R_HELD) !== 0) return;
    Atomics.store(words, base + R_OVERFLOW, 0);
    Atomics.store(words, base + R_WAITING, 0);
    Atomics.compareExchange(words, base + R_STATE, threadId + 1, FREE);
  }

  /** Takes a ticket: the caller's place in the cross-thread arrival order. */
  ticket(): number {
    return Atomics.add(this.words, H_TICKET, 1);
  }

  /**
   * Makes sure a dispatch pass runs after everything this thread did so far, without ever waiting: if
   * another thread is dispatching, it leaves a note in `pending` and returns, and that dispatcher runs
   * one more pass before it lets go.
   *
   * Why no wake-up is lost: a note added before the dispatcher reads `pending` is seen by that pass; one
   * added after makes the dispatcher's compare-exchange on `pending` fail, so it passes again; one added
   * after that compare-exchange succeeded comes before this thread's failed attempt on the dispatcher
   * word, hence before the dispatcher let go, and the dispatcher re-reads `pending` after letting go.
   */
  requestDispatch(self: number): void {
    const words = this.words;
    Atomics.add(words, H_PENDING, 1);
    // A thread without a slot (one that only reclaims) marks the word with a value no slot has.
    const mark = self < 0 ? this.records + 1 : self + 1;
    let granted: number[] | undefined;
    while (Atomics.compareExchange(words, H_DISPATCHER, 0, mark) === 0) {
      let pending: number;
      do {
        pending = Atomics.load(words, H_PENDING);
        granted = this.pass(granted);
      } while (Atomics.compareExchange(words, H_PENDING, pending, 0) !== pending);
      Atomics.store(words, H_DISPATCHER, 0);
      if (Atomics.load(words, H_PENDING) === 0) break;
    }
    if (granted !== undefined) {
      for (const record of granted) if (record !== self) this.ring(record);
    }
  }

  /** Marks "this record changed" for a running dispatcher, without dispatching (see `collect`). */
  nudge(): void {
    Atomics.add(this.words, H_PENDING, 1);
  }

  /**
   * One dispatch pass: grants from the best waiter on while the best fits. Only the thread holding the
   * dispatcher word calls it. Returns the records it granted to (so their owners can be woken).
   */
  private pass(granted: number[] | undefined): number[] | undefined {
    const words = this.words;
    const capacity = this.capacity;
    for (;;) {
      let inUse = 0;
      let bestRecord = -1;
      let bestEntry = 0;
      let bestState = 0;
      let bestWeight = 0;
      let bestTicket = 0;
      let bestPriority = 0;
      /** The best is a waiter its owner could not publish yet: grant nothing until it is published. */
      let bestHidden = false;
      // Set when a record could not be read consistently (its owner was rewriting it): its head might
      // be the true head, so granting anyone else could break the order. The owner asks for another
      // pass when it is done.
      let hiddenHead = false;
      const highWater = Atomics.load(words, H_HIGH_WATER);
      for (let record = 0; record < highWater; record++) {
        const base = this.base(record);
        const state = Atomics.load(words, base + R_STATE);
        if (state === DEAD) {
          this.free(base);
          continue;
        }
        if (state === FREE) continue;
        // Read `overflow` before `published`: the owner stores them in the other order, so seeing the
        // new `overflow` (0) guarantees seeing the entries published before it.
        const overflow = Atomics.load(words, base + R_OVERFLOW);
        // Read `collected` and the entries before `held`: the owner adds to `held` before it advances
        // `collected`, so a collection racing this pass is counted twice (harmless, and the owner's
        // `nudge` makes the dispatcher pass again) but never missed.
        let sequence = Atomics.load(words, base + R_COLLECTED);
        const published = Atomics.load(words, base + R_PUBLISHED);
        let waitingEntry = -1;
        let waitingState = 0;
        for (; sequence !== published; sequence = (sequence + 1) | 0) {
          const entry = base + R_ENTRIES + (sequence & WINDOW_MASK) * ENTRY_WORDS;
          const entryState = Atomics.load(words, entry + E_STATE);
          if ((entryState & ~3) !== sequence << 2) {
            // The owner collected and reused this entry after we read `collected`: our view of the record
            // is stale. Grant nothing this pass; the owner's publish asks for another one.
            hiddenHead = true;
            break;
          }
          const status = entryState & 3;
          if (status === GRANTED) inUse += words[entry + E_WEIGHT] as number;
          else if (status === WAITING) {
            waitingEntry = entry;
            waitingState = entryState;
            break;
          }
        }
        inUse += Atomics.load(words, base + R_HELD);
        let priority: number;
        let ticket: number;
        if (waitingEntry >= 0) {
          priority = this.priorities[record * PRIORITY_SLOTS + (sequence & WINDOW_MASK)] as number;
          ticket = words[waitingEntry + E_TICKET] as number;
        } else if (overflow !== 0) {
          // Every published entry is settled but the owner has more waiters (its ring is full of grants
          // it has not collected yet — it may be busy computing). Rank its first hidden waiter by the key
          // it left, so that it holds back only the waiters that come after it.
          const version = Atomics.load(words, base + R_HIDDEN_VERSION);
          ticket = Atomics.load(words, base + R_HIDDEN_TICKET);
          priority = this.priorities[record * PRIORITY_SLOTS + WINDOW] as number;
          if ((version & 1) !== 0 || Atomics.load(words, base + R_HIDDEN_VERSION) !== version) {
            hiddenHead = true;
            continue;
          }
        } else continue;
        if (
          bestRecord < 0 ||
          priority > bestPriority ||
          (priority === bestPriority && ((ticket - bestTicket) | 0) < 0)
        ) {
          bestRecord = record;
          bestHidden = waitingEntry < 0;
          bestEntry = waitingEntry;
          bestState = waitingState;
          bestWeight = bestHidden ? 0 : (words[waitingEntry + E_WEIGHT] as number);
          bestTicket = ticket;
          bestPriority = priority;
        }
      }
      // Strict head-of-line: if the best waiter does not fit, nobody behind it is served, so a heavy
      // request is never starved by light ones (Go's x/sync/semaphore rule).
      if (bestRecord < 0 || bestHidden || hiddenHead || bestWeight > capacity - inUse) return granted;
      // The commit point. It fails only if the owner cancelled the entry meanwhile; then look again.
      if (Atomics.compareExchange(words, bestEntry + E_STATE, bestState, (bestState & ~3) | GRANTED) === bestState) {
        Atomics.add(words, H_GRANTED, 1);
        if (granted === undefined) granted = [bestRecord];
        else if (!granted.includes(bestRecord)) granted.push(bestRecord);
      }
    }
  }

  /** Returns a dead thread's record to the pool. Only the dispatcher calls it. */
  private free(base: number): void {
    const words = this.words;
    // An empty window: the next owner continues the sequence numbers, so nothing stale can match.
    Atomics.store(words, base + R_COLLECTED, Atomics.load(words, base + R_PUBLISHED));
    Atomics.store(words, base + R_HELD, 0);
    Atomics.store(words, base + R_OVERFLOW, 0);
    Atomics.store(words, base + R_WAITING, 0);
    // A thread terminated half-way through `setOverflow` left the version odd; its next owner bumps it
    // by two, so it would stay odd and every pass would read the hidden key as torn (granting nothing).
    const version = Atomics.load(words, base + R_HIDDEN_VERSION);
    if ((version & 1) !== 0) Atomics.store(words, base + R_HIDDEN_VERSION, (version + 1) | 0);
    Atomics.store(words, base + R_STATE, FREE);
  }

  /** Wakes the owner of `record` (its `Atomics.waitAsync` on the doorbell resolves). */
  ring(record: number): void {
    const doorbell = this.base(record) + R_DOORBELL;
    Atomics.add(this.words, doorbell, 1);
    Atomics.notify(this.words, doorbell);
  }

  /**
   * Takes back everything the records of thread `threadId` hold or wait for: marks them DEAD, which
   * removes their held permits and their waiters from every later pass at once, and takes over the
   * dispatcher word if that thread died holding it. Call it only after the thread has exited, then run
   * a dispatch pass and {@link SharedQueue.ringAll}. Returns how many records were reclaimed.
   */
  reclaim(threadId: number, self: number): number {
    const words = this.words;
    const highWater = Atomics.load(words, H_HIGH_WATER);
    let reclaimed = 0;
    for (let record = 0; record < highWater; record++) {
      const base = this.base(record);
      if (record === self) continue;
      if (Atomics.compareExchange(words, base + R_STATE, threadId + 1, DEAD) !== threadId + 1) continue;
      reclaimed++;
      // A thread terminated in the middle of a pass: whatever it granted is committed in the entries,
      // so the pass can simply be run again by someone else.
      Atomics.compareExchange(words, H_DISPATCHER, record + 1, 0);
    }
    return reclaimed;
  }

  /** Rings every live record but `self`: after a reclaim, a dead dispatcher may have granted silently. */
  ringAll(self: number): void {
    const highWater = Atomics.load(this.words, H_HIGH_WATER);
    for (let record = 0; record < highWater; record++) {
      if (record !== self && Atomics.load(this.words, this.base(record) + R_STATE) > FREE) this.ring(record);
    }
  }

  /** Sums the live records. A snapshot: other threads may change it the next instant. */
  snapshot(): SharedQueueSnapshot {
    const words = this.words;
    let inUse = 0;
    let waiting = 0;
    let threads = 0;
    const highWater = Atomics.load(words, H_HIGH_WATER);
    for (let record = 0; record < highWater; record++) {
      const base = this.base(record);
      if (Atomics.load(words, base + R_STATE) <= FREE) continue;
      threads++;
      let sequence = Atomics.load(words, base + R_COLLECTED);
      const published = Atomics.load(words, base + R_PUBLISHED);
      for (; sequence !== published; sequence = (sequence + 1) | 0) {
        const entry = base + R_ENTRIES + (sequence & WINDOW_MASK) * ENTRY_WORDS;
        const entryState = Atomics.load(words, entry + E_STATE);
        if ((entryState & ~3) === sequence << 2 && (entryState & 3) === GRANTED)
          inUse += words[entry + E_WEIGHT] as number;
      }
      inUse += Atomics.load(words, base + R_HELD);
      waiting += Atomics.load(words, base + R_WAITING);
    }
    return { inUse, waiting, threads, granted: Atomics.load(words, H_GRANTED) };
  }
}

/**
 * The owner's view of its own record: publish, withdraw, collect. Only the owning thread uses it.
 */
export class OwnRecord {
  readonly base: number;
  private readonly words: Int32Array;
  private readonly priorities: Float64Array;
  private readonly priorityBase: number;

  constructor(
    readonly queue: SharedQueue,
    readonly index: number,
  ) {
    this.base = queue.base(index);
    this.words = queue.words;
    this.priorities = queue.priorities;
    this.priorityBase = index * PRIORITY_SLOTS;
  }

  /** The doorbell's value; read it before looking at the entries, then wait on it (futex pattern). */
  doorbell(): number {
    return Atomics.load(this.words, this.base + R_DOORBELL);
  }

  doorbellIndex(): number {
    return this.base + R_DOORBELL;
  }

  /** Free entries in the ring. */
  room(): number {
    const words = this.words;
    return WINDOW - ((words[this.base + R_PUBLISHED]! - words[this.base + R_COLLECTED]!) | 0);
  }

  /** Publishes one waiter; returns its sequence number. The caller checked `room() > 0`. */
  publish(weight: number, ticket: number, priority: number): number {
    const words = this.words;
    const sequence = words[this.base + R_PUBLISHED] as number;
    const entry = this.entry(sequence);
    words[entry + E_WEIGHT] = weight;
    words[entry + E_TICKET] = ticket;
    this.priorities[this.priorityBase + (sequence & WINDOW_MASK)] = priority;
    // The state store publishes the plain writes above to whoever reads it with Atomics.load.
    Atomics.store(words, entry + E_STATE, (sequence << 2) | WAITING);
    Atomics.store(words, this.base + R_PUBLISHED, (sequence + 1) | 0);
    return sequence;
  }

  /**
   * Says whether waiters are left unpublished, and which comes first (its ticket and priority). Stored
   * after `published` (the dispatcher reads them in the other order). Returns whether anything changed:
   * then a dispatch pass must follow, because a pass that read the key while it was being rewritten
   * granted nothing and counts on that.
   */
  setOverflow(overflow: boolean, ticket = 0, priority = 0): boolean {
    const words = this.words;
    const unchanged = overflow
      ? words[this.base + R_OVERFLOW] === 1 &&
        words[this.base + R_HIDDEN_TICKET] === ticket &&
        Object.is(this.priorities[this.priorityBase + WINDOW], priority)
      : words[this.base + R_OVERFLOW] === 0;
    if (unchanged) return false;
    if (overflow) {
      const version = words[this.base + R_HIDDEN_VERSION] as number;
      Atomics.store(words, this.base + R_HIDDEN_VERSION, (version + 1) | 0);
      Atomics.store(words, this.base + R_HIDDEN_TICKET, ticket);
      this.priorities[this.priorityBase + WINDOW] = priority;
      Atomics.store(words, this.base + R_HIDDEN_VERSION, (version + 2) | 0);
    }
    Atomics.store(words, this.base + R_OVERFLOW, overflow ? 1 : 0);
    return true;
  }

  /**
   * Tries to take a published entry back. True: it is withdrawn and will never be granted. False: the
   * dispatcher granted it first, and `collect` will hand the weight over.
   */
  withdraw(sequence: number): boolean {
    const expected = (sequence << 2) | WAITING;
    const entry = this.entry(sequence) + E_STATE;
    return Atomics.compareExchange(this.words, entry, expected, (sequence << 2) | CANCELLED) === expected;
  }

  /** Sequence range [collected, published) as a pair, for `collect`. */
  collected(): number {
    return this.words[this.base + R_COLLECTED] as number;
  }
  published(): number {
    return this.words[this.base + R_PUBLISHED] as number;
  }

  /** Status of the entry at `sequence`: WAITING (1), GRANTED (2) or CANCELLED (3). */
  status(sequence: number): number {
    return Atomics.load(this.words, this.entry(sequence) + E_STATE) & 3;
  }

  weight(sequence: number): number {
    return this.words[this.entry(sequence) + E_WEIGHT] as number;
  }

  /**
   * Moves the settled entry at `sequence` out of the ring, adding `weight` to `held` first when the
   * owner keeps it (order matters: see the note in `pass`).
   */
  advance(sequence: number, keep: number): void {
    if (keep !== 0) Atomics.add(this.words, this.base + R_HELD, keep);
    Atomics.store(this.words, this.base + R_COLLECTED, (sequence + 1) | 0);
  }

  /** Gives `weight` back: one atomic step, so a thread can never die half-way through a release. */
  release(weight: number): void {
    Atomics.sub(this.words, this.base + R_HELD, weight);
  }

  setWaiting(count: number): void {
    Atomics.store(this.words, this.base + R_WAITING, count);
  }

  private entry(sequence: number): number {
    return this.base + R_ENTRIES + (sequence & WINDOW_MASK) * ENTRY_WORDS;
  }
}

export const ENTRY_STATUS = { WAITING, GRANTED, CANCELLED } as const;
export const WINDOW_SIZE_MASK = WINDOW_MASK;

function align8(bytes: number): number {
  return (bytes + 7) & ~7;
}
