/**
 * A guest's memory for virtqueue tests and the virtq fuzz target: one SharedArrayBuffer holding
 * the guest-physical regions, with HOLES between and around them — backing bytes that belong to
 * no region. The holes are canaries: filled with a seeded pattern, they must never change, and
 * no translation may ever point into them (fuzz/core/Canary.ts's idea, over raw backing bytes
 * instead of guest pages, since a virtio device reaches memory by address, not by grant).
 *
 * This is the driver side's own view, written from the spec, independent of the device's
 * GuestMemoryMap: `regionAt` is the oracle the fuzz target checks the device's translations
 * against, and `map()` builds the device's map from the same region list.
 */

import { GuestMemoryMap } from '../../backend/virtio/GuestMemoryMap.js';
import { pvError } from '../../protocol/errors.js';
import { type GuestPhysAddr, guestPhysAddr } from '../../protocol/Types.js';
import { XorShiftRng } from '../core/Rng.js';

/** One region of the guest: `[gpa, gpa + size)` at backing byte `offset`. */
export interface RamRegion {
  readonly gpa: number;
  readonly size: number;
  readonly offset: number;
  readonly readOnly?: boolean;
}

/** See the file comment. */
export class GuestRam {
  readonly sab: SharedArrayBuffer;
  readonly u8: Uint8Array;
  readonly dv: DataView;
  private readonly _holes: Array<[number, number]> = [];
  private _pattern: Uint8Array = new Uint8Array(0);

  constructor(
    bytes: number,
    readonly regions: readonly RamRegion[],
  ) {
    this.sab = new SharedArrayBuffer(bytes);
    this.u8 = new Uint8Array(this.sab);
    this.dv = new DataView(this.sab);
    const byOff = [...regions].sort((a, b) => a.offset - b.offset);
    let at = 0;
    for (const r of byOff) {
      if (r.offset > at) this._holes.push([at, r.offset]);
      at = Math.max(at, r.offset + r.size);
    }
    if (at < bytes) this._holes.push([at, bytes]);
  }

  /** One writable region at gpa 0 covering the whole buffer (no holes). */
  static flat(bytes: number): GuestRam {
    return new GuestRam(bytes, [{ gpa: 0, size: bytes, offset: 0 }]);
  }

  /** The device's map of this memory (a subclass `C`: tests give a deliberately faulty map). */
  map(C: typeof GuestMemoryMap = GuestMemoryMap): GuestMemoryMap {
    return new C(
      this.regions.map((r) => ({
        gpa: guestPhysAddr(r.gpa),
        size: r.size,
        backing: this.sab,
        offset: r.offset,
        readOnly: r.readOnly,
      })),
    );
  }

  /**
   * The region holding `[gpa, gpa + len)` entirely, or undefined. A zero-length range at the
   * boundary of two GPA-adjacent regions is the second one's (the one that holds `gpa`).
   */
  regionAt(gpa: number, len: number): RamRegion | undefined {
    const inside = this.regions.find((r) => gpa >= r.gpa && gpa < r.gpa + r.size && gpa + len <= r.gpa + r.size);
    return inside ?? (len === 0 ? this.regions.find((r) => gpa === r.gpa + r.size) : undefined);
  }

  /** Backing offset of `gpa` (which must be mapped); a test helper's misuse is a caller error. */
  off(gpa: number): number {
    const r = this.regionAt(gpa, 0);
    if (!r) throw pvError('PV_ERR_INVALID_ARG', `gpa 0x${gpa.toString(16)} is not mapped`);
    return r.offset + (gpa - r.gpa);
  }

  /** The guest's byte view of `[gpa, gpa + len)` (one region). */
  bytes(gpa: number, len: number): Uint8Array {
    return this.u8.subarray(this.off(gpa), this.off(gpa) + len);
  }

  /** A branded address (tests). */
  gpa(n: number): GuestPhysAddr {
    return guestPhysAddr(n);
  }

  /** The backing byte ranges outside every region. */
  get holes(): ReadonlyArray<readonly [number, number]> {
    return this._holes;
  }

  /** True when backing byte `off` lies inside a region that is not read-only. */
  writableAt(off: number): boolean {
    return this.regions.some((r) => !r.readOnly && off >= r.offset && off < r.offset + r.size);
  }

  /** Fills the holes with a pattern from `seed`. */
  armHoles(seed: number): void {
    const total = this._holes.reduce((s, [a, b]) => s + b - a, 0);
    this._pattern = new Uint8Array(total);
    new XorShiftRng(seed).fill(this._pattern);
    let k = 0;
    for (const [a, b] of this._holes) {
      this.u8.set(this._pattern.subarray(k, k + b - a), a);
      k += b - a;
    }
  }

  /** First changed hole byte (backing offset), restoring the pattern; −1 when all are intact. */
  checkHoles(): number {
    let k = 0;
    let first = -1;
    for (const [a, b] of this._holes) {
      for (let i = a; i < b; i++, k++) {
        if (this.u8[i] !== this._pattern[k]) {
          if (first < 0) first = i;
          this.u8[i] = this._pattern[k];
        }
      }
    }
    return first;
  }
}
