/**
 * A double-ended ring buffer: the storage (not the waiting) of Channel's buffered values, Pool's idle
 * resources and map's result window.
 *
 * It exists because `Array.prototype.shift` is O(n) once an array grows past V8's fast path, and a
 * channel or a pool is exactly the place where one end is consumed while the other is filled (the
 * "O(n) shift on hot paths" STYLE.md warns about). Waiters never live here: they live in the
 * {@link WaitQueue}, which owns priorities, abort and timeouts.
 */
export class Deque<T> {
  /**
   * Slots `head .. head + length - 1` (modulo the capacity) hold the values, oldest first.
   * Invariant: `slots.length` is a power of two, so `& mask` replaces `%`; freed slots are reset to
   * `undefined` so the buffer never keeps a consumed value alive.
   */
  private slots: (T | undefined)[];
  private mask: number;
  private first = 0;
  private count = 0;

  constructor(initialCapacity = 16) {
    let size = 4;
    while (size < initialCapacity) size *= 2;
    this.slots = new Array<T | undefined>(size);
    this.mask = size - 1;
  }

  /** How many values are stored. */
  get length(): number {
    return this.count;
  }

  /** Appends at the back (the newest end). */
  push(value: T): void {
    if (this.count === this.slots.length) this.grow();
    this.slots[(this.first + this.count) & this.mask] = value;
    this.count++;
  }

  /** Removes and returns the oldest value, or `undefined` when empty. */
  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const value = this.slots[this.first];
    this.slots[this.first] = undefined;
    this.first = (this.first + 1) & this.mask;
    this.count--;
    return value;
  }

  /** Removes and returns the newest value, or `undefined` when empty. */
  pop(): T | undefined {
    if (this.count === 0) return undefined;
    this.count--;
    const index = (this.first + this.count) & this.mask;
    const value = this.slots[index];
    this.slots[index] = undefined;
    return value;
  }

  /** The oldest value without removing it. */
  peekFirst(): T | undefined {
    return this.count === 0 ? undefined : this.slots[this.first];
  }

  /** Removes everything and returns it, oldest first. */
  drain(): T[] {
    const values: T[] = [];
    while (this.count > 0) values.push(this.shift() as T);
    return values;
  }

  private grow(): void {
    const old = this.slots;
    const slots = new Array<T | undefined>(old.length * 2);
    for (let i = 0; i < this.count; i++) slots[i] = old[(this.first + i) & this.mask];
    this.slots = slots;
    this.mask = slots.length - 1;
    this.first = 0;
  }
}
