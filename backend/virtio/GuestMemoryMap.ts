/**
 * The device side's view of a guest's memory: the vhost `SET_MEM_TABLE` analogue. A virtio
 * descriptor carries a bare guest-physical address (no grant), so the device can be pointed at
 * ANY address; every range it touches must first be resolved here (reference §5.3, §6.2 item 7;
 * rust-vmm vm-memory `GuestMemory::get_slice` + `check_range(…, Permissions)`).
 *
 * A region maps `[gpa, gpa + size)` onto `backing[offset, offset + size)`. Rules checked at
 * construction (else PV_ERR_VIRTQ_LAYOUT): sizes > 0, every number a safe non-negative integer,
 * each region inside its SharedArrayBuffer, no two regions overlapping in guest-physical space,
 * and no two regions aliasing the same backing bytes (an alias would let a read-only region be
 * written through a writable twin).
 *
 * `translate(gpa, len, write, out)` resolves a range inside ONE region, as vm-memory's
 * `get_slice` does: a range that spans two GPA-adjacent regions is refused, even though a
 * scatter-gather iterator could split it. pvio's drivers allocate every buffer inside one
 * region, so refusing keeps the device's iovec one piece per descriptor. The check never adds
 * two guest numbers: it finds the region holding `gpa`, then compares `len` against the bytes
 * left in it (`end − gpa`, both already validated), so no sum can pass 2^53 and round.
 *
 * A zero-length range is accepted when `gpa` lies in `[base, base + size]` of a region (the
 * one-past-the-end address included, like a C pointer): it names no byte, so it cannot reach
 * memory, yet a wild address with len 0 is still refused. A write to a read-only region is
 * refused (PV_ERR_VIRTQ_BAD_ADDR): the device may only read it.
 *
 * `translate` allocates nothing: it fills a caller-owned `Translation` with the region's
 * byte view (over the WHOLE backing buffer, made once here) and the backing offset.
 */

import { pvError } from '../../protocol/errors.js';
import type { GuestPhysAddr } from '../../protocol/Types.js';

/** One region of guest-physical memory and where its bytes live. */
export interface MemRegion {
  /** First guest-physical address of the region. */
  readonly gpa: GuestPhysAddr;
  /** Bytes (> 0). */
  readonly size: number;
  /** The memory holding the region's bytes (shared with the guest's threads). */
  readonly backing: SharedArrayBuffer;
  /** Byte offset of `gpa` inside `backing`. */
  readonly offset: number;
  /** The device may only read this region (e.g. a ROM, or memory the guest lends read-only). */
  readonly readOnly?: boolean;
}

/** Where a translated range lives; filled by `translate` (reuse one per caller). */
export interface Translation {
  /** A byte view over the whole backing buffer of the region. */
  bytes: Uint8Array;
  /** Byte offset of the range's first byte in `bytes`. */
  offset: number;
  /** Index of the region (in address order). */
  region: number;
}

/** A fresh scratch object for `translate`. */
export function newTranslation(): Translation {
  return { bytes: new Uint8Array(0), offset: 0, region: -1 };
}

interface Entry {
  readonly base: number;
  readonly end: number;
  readonly offset: number;
  readonly readOnly: boolean;
  readonly backing: SharedArrayBuffer;
  readonly bytes: Uint8Array;
}

function safe(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

/** The guest memory map; see the file comment. */
export class GuestMemoryMap {
  private readonly _regions: readonly Entry[];

  constructor(regions: readonly MemRegion[]) {
    if (regions.length === 0) throw pvError('PV_ERR_VIRTQ_LAYOUT', 'a guest memory map needs at least one region');
    const entries: Entry[] = [];
    for (const r of regions) {
      if (!safe(r.gpa) || !safe(r.size) || !safe(r.offset) || r.size === 0 || !safe(r.gpa + r.size)) {
        throw pvError('PV_ERR_VIRTQ_LAYOUT', `region gpa ${r.gpa} size ${r.size} offset ${r.offset} is not valid`);
      }
      if (!(r.backing instanceof SharedArrayBuffer) || r.size > r.backing.byteLength - r.offset) {
        throw pvError('PV_ERR_VIRTQ_LAYOUT', `region at gpa 0x${r.gpa.toString(16)} does not fit its backing buffer`);
      }
      const bytes = entries.find((e) => e.backing === r.backing)?.bytes ?? new Uint8Array(r.backing);
      entries.push({
        base: r.gpa,
        end: r.gpa + r.size,
        offset: r.offset,
        readOnly: r.readOnly === true,
        backing: r.backing,
        bytes,
      });
    }
    entries.sort((a, b) => a.base - b.base);
    for (let i = 0; i < entries.length; i++) {
      const a = entries[i];
      if (i > 0 && a.base < entries[i - 1].end) {
        throw pvError('PV_ERR_VIRTQ_LAYOUT', `regions overlap at gpa 0x${a.base.toString(16)}`);
      }
      for (let j = 0; j < i; j++) {
        const b = entries[j];
        const aliased =
          a.backing === b.backing && a.offset < b.offset + (b.end - b.base) && b.offset < a.offset + (a.end - a.base);
        if (aliased) throw pvError('PV_ERR_VIRTQ_LAYOUT', `regions at 0x${a.base.toString(16)} share backing bytes`);
      }
    }
    this._regions = entries;
  }

  /** Number of regions. */
  get regionCount(): number {
    return this._regions.length;
  }

  /** Region `i` (address order) as plain data, for diagnostics and test oracles. */
  region(i: number): { gpa: number; size: number; offset: number; readOnly: boolean; backing: SharedArrayBuffer } {
    const e = this._regions[i];
    return { gpa: e.base, size: e.end - e.base, offset: e.offset, readOnly: e.readOnly, backing: e.backing };
  }

  /**
   * Resolves `[gpa, gpa + len)` for a read (`write` false) or a write into `out`; throws
   * PV_ERR_VIRTQ_BAD_ADDR when the range is not inside one region or a write hits a read-only
   * region. See the file comment for the zero-length rule.
   */
  translate(gpa: number, len: number, write: boolean, out: Translation): void {
    if (!safe(gpa) || !safe(len)) {
      throw pvError('PV_ERR_VIRTQ_BAD_ADDR', `range ${gpa}+${len} is not a pair of safe integers`);
    }
    const i = this._find(gpa, len === 0);
    if (i < 0) throw pvError('PV_ERR_VIRTQ_BAD_ADDR', `gpa 0x${gpa.toString(16)} is not in guest memory`);
    const e = this._regions[i];
    // INVARIANT: base ≤ gpa ≤ end, so `end − gpa` is exact; comparing against it never adds guest numbers.
    if (len > e.end - gpa) {
      throw pvError('PV_ERR_VIRTQ_BAD_ADDR', `range 0x${gpa.toString(16)}+${len} runs past its region's end`);
    }
    if (write && e.readOnly) {
      throw pvError('PV_ERR_VIRTQ_BAD_ADDR', `range 0x${gpa.toString(16)}+${len} is in a read-only region`);
    }
    out.bytes = e.bytes;
    out.offset = e.offset + (gpa - e.base);
    out.region = i;
  }

  /**
   * Index of the region holding `gpa`, else (when `atEnd`) of the one ending at it, else −1.
   * Binary search for the last region with base ≤ gpa: regions are sorted and disjoint.
   */
  private _find(gpa: number, atEnd: boolean): number {
    const rs = this._regions;
    let lo = 0;
    let hi = rs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (rs[mid].base <= gpa) lo = mid;
      else hi = mid - 1;
    }
    const r = rs[lo];
    if (gpa < r.base) return -1;
    if (gpa < r.end || (atEnd && gpa === r.end)) return lo;
    return -1;
  }
}

/**
 * Translates one area of a queue (descriptor table or ring, avail/used ring, event structure) for
 * a device's `attach`: `gpa` must be `align`-aligned in guest memory and in its backing buffer
 * (so typed-array views and Atomics can address it), inside one region, writable if `write`.
 * Any failure is PV_ERR_VIRTQ_LAYOUT naming the area.
 */
export function translateArea(
  mem: GuestMemoryMap,
  what: string,
  gpa: number,
  bytes: number,
  align: number,
  write: boolean,
): Translation {
  if (!Number.isSafeInteger(gpa) || gpa % align !== 0) {
    throw pvError('PV_ERR_VIRTQ_LAYOUT', `${what} at ${gpa} is not ${align}-byte aligned`);
  }
  const t = newTranslation();
  try {
    mem.translate(gpa, bytes, write, t);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw pvError('PV_ERR_VIRTQ_LAYOUT', `${what} at 0x${gpa.toString(16)}+${bytes}: ${why}`);
  }
  if (t.offset % align !== 0) {
    throw pvError('PV_ERR_VIRTQ_LAYOUT', `${what}'s backing offset ${t.offset} is not ${align}-byte aligned`);
  }
  return t;
}

/** One area of a queue as [guest-physical address, bytes]. */
export type QueueArea = readonly [number, number];

/**
 * True if two areas share a byte. INVARIANT: callers pass areas already inside guest memory
 * (translated, or assembled from validated register halves), so the sums are exact.
 */
export function areasOverlap([a, al]: QueueArea, [b, bl]: QueueArea): boolean {
  return a < b + bl && b < a + al;
}

/** PV_ERR_VIRTQ_LAYOUT if any two of one queue's areas overlap (one could overwrite another). */
export function checkAreasDisjoint(areas: readonly QueueArea[]): void {
  for (let i = 0; i < areas.length; i++) {
    for (let j = i + 1; j < areas.length; j++) {
      if (areasOverlap(areas[i], areas[j])) throw pvError('PV_ERR_VIRTQ_LAYOUT', 'virtqueue areas overlap');
    }
  }
}
