/**
 * Test-only DmaResolver: one fake domain's memory (one SharedArrayBuffer) mapped 1:1 at IOVA 0,
 * like a VFIO passthrough mapping, with holes a test can punch (unmapped or read-only ranges) to
 * provoke DMA faults. Every change bumps the generation, as an IOMMU unmap does.
 */

import type { DmaRef, DmaResolver } from '../../../../../hypervisor-sim/iommu/DmaResolver.js';

interface Hole {
  readonly start: number;
  readonly end: number;
  readonly readOnly: boolean;
}

/** A flat, identity-mapped DMA view of one memory. */
export class FlatDma implements DmaResolver {
  readonly memory: SharedArrayBuffer;
  readonly domid: number;
  readonly bytes: Uint8Array;
  readonly words: Int32Array;
  /** Successful resolutions (to check that queue views are cached). */
  resolves = 0;
  private _holes: Hole[] = [];
  private _gen = 0;

  constructor(memory: SharedArrayBuffer, domid = 1) {
    this.memory = memory;
    this.domid = domid;
    this.bytes = new Uint8Array(memory);
    this.words = new Int32Array(memory);
  }

  resolve(iova: number, len: number, write: boolean, out: DmaRef): boolean {
    if (!Number.isSafeInteger(iova) || !Number.isSafeInteger(len) || iova < 0 || len < 0) return false;
    const size = this.bytes.length;
    const span = len === 0 ? 1 : len;
    if (iova > size || span > size - iova) return false;
    for (const h of this._holes) {
      if (iova < h.end && iova + span > h.start && (!h.readOnly || write)) return false;
    }
    out.bytes = this.bytes;
    out.words = this.words;
    out.offset = iova;
    out.domid = this.domid;
    this.resolves++;
    return true;
  }

  generation(): number {
    return this._gen;
  }

  /** Makes `[iova, iova + len)` unreachable. */
  unmap(iova: number, len: number): void {
    this._holes.push({ start: iova, end: iova + len, readOnly: false });
    this._gen++;
  }

  /** Makes `[iova, iova + len)` read-only for the device. */
  readOnly(iova: number, len: number): void {
    this._holes.push({ start: iova, end: iova + len, readOnly: true });
    this._gen++;
  }

  /** Removes every hole. */
  restore(): void {
    this._holes = [];
    this._gen++;
  }
}
