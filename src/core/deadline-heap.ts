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

  /** The arrival number of the entry with the earliest deadline, or `Infinity` when empty. */
  get firstArrival(): number {
    return this.entries.length === 0 ? Number.POSITIVE_INFINITY : (this.arrivals[0] as number);
  }

  /**
   * Adds `entry`, due at `deadline`. `arrival` orders it among equal deadlines; an owner that orders
   * entries kept elsewhere too (a wait queue's deadline FIFOs) numbers them all from one count.
   */
  push(entry: Entry, deadline: number, arrival = this.arrived++): void {
    this.entries.push(entry);
    this.deadlines.push(deadline);
    this.arrivals.push(arrival);
    this.moveUp(this.entries.length - 1, entry, deadline, arrival);
  }

  /** Removes `entry`, which must be in the heap. */
  remove(entry: Entry): void {
    const slot = entry.heapIndex;
    entry.heapIndex = -1;
    const last = this.entries.pop() as Entry;
    const deadline = this.deadlines.pop() as number;
    const arrival = this.arrivals.pop() as number;
    if (last === entry) return;
    // The last entry fills the hole, moving up or down to where it belongs.
    const parent = (slot - 1) >> 1;
    if (slot > 0 && precedes(deadline, arrival, this.deadlines[parent] as number, this.arrivals[parent] as number)) {
      this.moveUp(slot, last, deadline, arrival);
    } else {
      this.moveDown(slot, last, deadline, arrival);
    }
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

  /** Whether slot `a` is due before slot `b`. */
  private before(a: number, b: number): boolean {
    const { deadlines, arrivals } = this;
    return precedes(deadlines[a] as number, arrivals[a] as number, deadlines[b] as number, arrivals[b] as number);
  }

  /**
   * Puts `entry` into the hole at `start` or above it: parents due after it move down into the hole
   * until one is not. Each slot on the way is written once (a hole, not a chain of swaps).
   */
  private moveUp(start: number, entry: Entry, deadline: number, arrival: number): void {
    const { entries, deadlines, arrivals } = this;
    let slot = start;
    while (slot > 0) {
      const parent = (slot - 1) >> 1;
      const parentDeadline = deadlines[parent] as number;
      const parentArrival = arrivals[parent] as number;
      if (!precedes(deadline, arrival, parentDeadline, parentArrival)) break;
      this.place(slot, entries[parent] as Entry, parentDeadline, parentArrival);
      slot = parent;
    }
    this.place(slot, entry, deadline, arrival);
  }

  /** Puts `entry` into the hole at `start` or below it: the earlier child moves up while it is due first. */
  private moveDown(start: number, entry: Entry, deadline: number, arrival: number): void {
    const { entries, deadlines, arrivals } = this;
    const size = entries.length;
    let slot = start;
    for (;;) {
      let child = 2 * slot + 1;
      if (child >= size) break;
      if (child + 1 < size && this.before(child + 1, child)) child++;
      const childDeadline = deadlines[child] as number;
      const childArrival = arrivals[child] as number;
      if (!precedes(childDeadline, childArrival, deadline, arrival)) break;
      this.place(slot, entries[child] as Entry, childDeadline, childArrival);
      slot = child;
    }
    this.place(slot, entry, deadline, arrival);
  }

  private place(slot: number, entry: Entry, deadline: number, arrival: number): void {
    this.entries[slot] = entry;
    this.deadlines[slot] = deadline;
    this.arrivals[slot] = arrival;
    entry.heapIndex = slot;
  }
}

/** Whether a deadline (and its arrival) comes before another: earlier, or as early and arrived first. */
function precedes(deadline: number, arrival: number, otherDeadline: number, otherArrival: number): boolean {
  return deadline < otherDeadline || (deadline === otherDeadline && arrival < otherArrival);
}

function broken(invariant: string, detail: string): never {
  throw new Error(`DeadlineHeap invariant broken: ${invariant} (${detail})`);
}
