/**
 * Allocator of one copy-mode guest's bounce space: a fixed region of driver-domain memory,
 * carved into `UNIT`-byte units, handed out as contiguous runs (one run per work request, so the
 * device WQE needs a single SGE). Completions come back in any order across QPs, so runs are
 * freed out of order; a next-fit scan over a unit map from a rover keeps the common case (FIFO
 * frees) O(run) without per-request allocation.
 *
 * Exhaustion is not an error: the data-ring handler defers the request (backpressure) until
 * completions free space. A request larger than the whole region can never fit and is refused.
 */

import { pvError } from '../../protocol/errors.js';

/** Allocation granule in bytes. */
export const BOUNCE_UNIT = 256;

/** Contiguous runs of units inside a region of `bytes`. */
export class BounceAllocator {
  /** Region size in bytes (a multiple of BOUNCE_UNIT). */
  readonly bytes: number;
  private readonly _units: number;
  /** Per unit: 0 free, else the run length in units stored at the run's first unit, 1 on the rest. */
  private readonly _map: Uint32Array;
  private _rover = 0;
  private _used = 0;

  constructor(bytes: number) {
    if (!Number.isInteger(bytes) || bytes < BOUNCE_UNIT) {
      throw pvError('PV_ERR_CONFIG', `bounce region of ${bytes} bytes is smaller than one unit`);
    }
    this._units = Math.floor(bytes / BOUNCE_UNIT);
    this.bytes = this._units * BOUNCE_UNIT;
    this._map = new Uint32Array(this._units);
  }

  /** Bytes currently handed out. */
  get usedBytes(): number {
    return this._used * BOUNCE_UNIT;
  }

  /** Units needed for `len` bytes (at least one). */
  unitsFor(len: number): number {
    return len <= BOUNCE_UNIT ? 1 : Math.ceil(len / BOUNCE_UNIT);
  }

  /**
   * Byte offset of a free run holding `len` bytes, or -1 when none is free now. The caller checks
   * `len ≤ bytes` first (a larger request would never fit).
   */
  alloc(len: number): number {
    const need = this.unitsFor(len);
    const n = this._units;
    if (need > n - this._used) return -1;
    const map = this._map;
    let start = this._rover;
    let scanned = 0;
    // Next fit: walk at most the whole map once (plus one run), wrapping at the end.
    while (scanned < n + need) {
      if (start + need > n) {
        scanned += n - start;
        start = 0;
        continue;
      }
      let run = 0;
      while (run < need && map[start + run] === 0) run++;
      if (run === need) {
        map[start] = need;
        for (let i = 1; i < need; i++) map[start + i] = 1;
        this._used += need;
        this._rover = start + need >= n ? 0 : start + need;
        return start * BOUNCE_UNIT;
      }
      // Skip past the unit that blocked us (if it starts a run, past the whole run).
      const blocked = start + run;
      const skip = map[blocked] > 1 ? map[blocked] : 1;
      scanned += run + skip;
      start = blocked + skip;
      if (start >= n) start = 0;
    }
    return -1;
  }

  /** Frees the run at byte `offset` (as returned by `alloc`). */
  free(offset: number): void {
    const u = offset / BOUNCE_UNIT;
    const len = Number.isInteger(u) && u >= 0 && u < this._units ? this._map[u] : 0;
    if (len === 0) throw pvError('PV_ERR_INVALID_ARG', `no bounce run starts at ${offset}`);
    for (let i = 0; i < len; i++) this._map[u + i] = 0;
    this._used -= len;
  }
}
