/**
 * A per-guest table of verbs objects (PDs, MRs, CQs, QPs), named by small handles the backend
 * hands out. The guest only ever names objects through its own tables, so it cannot reach
 * another guest's objects by guessing device numbers, and each table's capacity is that
 * guest's limit (PV_ERR_LIMIT beyond it).
 *
 * Handles run 1, 2, 3, … and are not reused until the counter wraps (2^31), so a stale handle
 * after a destroy names nothing rather than a newer object.
 */

import { pvError } from '../../protocol/errors.js';

/** Objects of one kind, by handle; see the file comment. */
export class HandleTable<T> {
  private readonly _items = new Map<number, T>();
  private _next = 1;

  /** `what` names the kind in errors (`QP`). */
  constructor(
    readonly what: string,
    readonly capacity: number,
  ) {}

  /** Live objects. */
  get size(): number {
    return this._items.size;
  }

  /** Adds an object; PV_ERR_LIMIT when the guest already holds `capacity` of them. */
  add(item: T): number {
    if (this._items.size >= this.capacity) {
      throw pvError('PV_ERR_LIMIT', `a guest may hold at most ${this.capacity} ${this.what}s`);
    }
    let h = this._next;
    // Bounded: fewer than `capacity` handles are live, so a free one is at most that far.
    while (this._items.has(h)) h = h >= 0x7fffffff ? 1 : h + 1;
    this._next = h >= 0x7fffffff ? 1 : h + 1;
    this._items.set(h, item);
    return h;
  }

  /** The object named by a guest's handle, or undefined (any number is accepted). */
  get(handle: number): T | undefined {
    return this._items.get(handle);
  }

  /** The object, or PV_ERR_RDMA_BAD_HANDLE. */
  require(handle: number): T {
    const item = this._items.get(handle);
    if (item === undefined) throw pvError('PV_ERR_RDMA_BAD_HANDLE', `no ${this.what} ${handle} for this guest`);
    return item;
  }

  /** Removes a handle (no-op if absent). */
  delete(handle: number): void {
    this._items.delete(handle);
  }

  /** Live entries (a snapshot: safe to delete while iterating). */
  entries(): [number, T][] {
    return [...this._items.entries()];
  }
}
