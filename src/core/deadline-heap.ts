/**
 * The deadlines of a wait queue's waiters that have a timeout: a binary min-heap, earliest deadline
 * first and equal deadlines in arrival order, so the queue needs one timer (for the earliest) instead
 * of one per waiter.
 *
 * Costs: a push is O(log n), and O(1) when deadlines arrive in non-decreasing order (one timeout for
 * every waiter, the common case: the newcomer sorts below its parent and stays where it lands); removal
 * of any entry (grant, abort, timeout, clear) is O(log n). Memory: three array slots per entry (the
 * entry, its deadline and its arrival, numbers held unboxed), nothing else; an entry knows its own slot.
 */

/** What the heap holds: anything that can remember where in the heap it is. */
export interface HeapEntry {
  /** The entry's slot in the heap while it is in it; -1 otherwise. Kept true by every move. */
  heapIndex: number;
}

export class DeadlineHeap<Entry extends HeapEntry> {
  /**
   * Three parallel arrays rather than an object per slot: the entry, its deadline and its arrival
   * number. The numbers sit unboxed in their arrays (a double in an object field would be a separate
   * 16-byte heap number), and a removed slot is popped, so the heap never holds an entry that left it.
   *
   * Invariant (heap order): for every slot `i > 0`, the parent `(i - 1) >> 1` does not come after `i`
   * (see `before`); `entries[i].heapIndex === i`.
   */
  private readonly entries: Entry[] = [];
  private readonly deadlines: number[] = [];
  /**
   * Arrival numbers break ties between equal deadlines, so waiters that expire at the same moment
   * expire in the order they came, as their own timers used to fire. A fake clock makes ties common:
   * its time stands still while a test queues several waiters with one timeout.
   */
  private readonly arrivals: number[] = [];
  private arrived = 0;

  /** How many entries it holds. */
  get size(): number {
    return this.entries.length;
  }

  /** The entry with the earliest deadline, or `undefined` when empty. */
  get first(): Entry | undefined {
    return this.entries[0];
  }

  /** The earliest deadline, or `Infinity` when empty. */
  get earliest(): number {
    return this.entries.length === 0 ? Number.POSITIVE_INFINITY : (this.deadlines[0] as number);
  }

  /** Adds `entry`, due at `deadline`. */
  push(entry: Entry, deadline: number): void {
    const slot = this.entries.length;
    this.entries.push(entry);
    this.deadlines.push(deadline);
    this.arrivals.push(this.arrived++);
    entry.heapIndex = slot;
    this.siftUp(slot);
  }

  /** Removes `entry`, which must be in the heap. */
  remove(entry: Entry): void {
    const slot = entry.heapIndex;
    entry.heapIndex = -1;
    const last = this.entries.length - 1;
    const moved = this.entries.pop() as Entry;
    const deadline = this.deadlines.pop() as number;
    const arrival = this.arrivals.pop() as number;
    if (slot === last) return;
    // The last entry fills the hole, then moves up or down to where it belongs (only one of the two
    // finds anything to do).
    this.place(slot, moved, deadline, arrival);
    this.siftUp(slot);
    this.siftDown(moved.heapIndex);
  }

  /**
   * @internal Checks the heap order and every entry's `heapIndex`, calls `check` on each entry (the
   * queue checks that it is still waiting), and throws an Error naming what is broken.
   */
  assertInvariants(check: (entry: Entry, slot: number) => void): void {
    const { entries, deadlines, arrivals } = this;
    if (deadlines.length !== entries.length || arrivals.length !== entries.length) {
      broken(
        "entries, deadlines and arrivals are parallel",
        `${entries.length}, ${deadlines.length} and ${arrivals.length}`,
      );
    }
    for (let slot = 0; slot < entries.length; slot++) {
      const entry = entries[slot] as Entry;
      if (entry.heapIndex !== slot) broken("an entry knows its slot", `slot ${slot} says ${entry.heapIndex}`);
      const parent = (slot - 1) >> 1;
      if (slot > 0 && this.before(slot, parent)) {
        broken(
          "no entry is due before its parent",
          `slot ${slot} (deadline ${deadlines[slot]}, arrival ${arrivals[slot]}), parent ${parent} (deadline ${deadlines[parent]}, arrival ${arrivals[parent]})`,
        );
      }
      check(entry, slot);
    }
  }

  /** Whether slot `a` is due before slot `b`: an earlier deadline, or the same one and an earlier arrival. */
  private before(a: number, b: number): boolean {
    const deadlineA = this.deadlines[a] as number;
    const deadlineB = this.deadlines[b] as number;
    return (
      deadlineA < deadlineB || (deadlineA === deadlineB && (this.arrivals[a] as number) < (this.arrivals[b] as number))
    );
  }

  private siftUp(start: number): void {
    let slot = start;
    while (slot > 0) {
      const parent = (slot - 1) >> 1;
      if (!this.before(slot, parent)) return;
      this.swap(slot, parent);
      slot = parent;
    }
  }

  private siftDown(start: number): void {
    const size = this.entries.length;
    let slot = start;
    for (;;) {
      const left = 2 * slot + 1;
      if (left >= size) return;
      const right = left + 1;
      const child = right < size && this.before(right, left) ? right : left;
      if (!this.before(child, slot)) return;
      this.swap(slot, child);
      slot = child;
    }
  }

  private swap(a: number, b: number): void {
    const entry = this.entries[a] as Entry;
    const deadline = this.deadlines[a] as number;
    const arrival = this.arrivals[a] as number;
    this.place(a, this.entries[b] as Entry, this.deadlines[b] as number, this.arrivals[b] as number);
    this.place(b, entry, deadline, arrival);
  }

  private place(slot: number, entry: Entry, deadline: number, arrival: number): void {
    this.entries[slot] = entry;
    this.deadlines[slot] = deadline;
    this.arrivals[slot] = arrival;
    entry.heapIndex = slot;
  }
}

function broken(invariant: string, detail: string): never {
  throw new Error(`DeadlineHeap invariant broken: ${invariant} (${detail})`);
}
