/**
 * The DMA engine's payload mover: copies a message from a list of source segments to a list of
 * destination segments (IOVAs already translated through MRs), resolving each run through the
 * IOMMU of the NIC that owns that side. A run is the overlap of one source segment with one
 * destination segment; each run is ONE `set()` from the source view into the destination view
 * (≈ 21–25 GB/s on a SharedArrayBuffer, DESIGN §4), with one `subarray()` — no intermediate
 * buffer.
 *
 * After the last run, `Atomics.notify` on the Int32 word holding the LAST byte written: a guest
 * that sleeps on the last byte of its receive buffer (MONITOR/MWAIT style, DESIGN §4) wakes.
 */

import type { DmaRef, DmaResolver } from '../../iommu/DmaResolver.js';

/** Outcome of a copy. */
export const enum CopyResult {
  OK = 0,
  /** A source run did not resolve for reading. */
  SRC_FAULT = 1,
  /** A destination run did not resolve for writing. */
  DST_FAULT = 2,
}

/** Source and destination of one copy: a resolver and its segments. */
export interface Segments {
  dma: DmaResolver;
  iova: number[];
  len: number[];
  count: number;
  /** Scratch ref the runs resolve into. */
  ref: DmaRef;
}

function notifyLast(ref: DmaRef, lastByte: number): void {
  // ORDERING: the payload was written with set() before this; a waiter woken here (or one that
  // loads the word after it) sees it, as Atomics.notify follows the stores in program order and
  // the waiter's Atomics.wait/load is seq-cst.
  Atomics.notify(ref.words, lastByte >> 2);
}

/**
 * Copies until either side runs out (callers make the destination at least as long as the
 * source). Stops at the first fault; runs before it stay written, as on a real NIC.
 */
export function copySegments(src: Segments, dst: Segments): CopyResult {
  let si = 0;
  let so = 0;
  let di = 0;
  let dOff = 0;
  let last = -1;
  const sr = src.ref;
  const dr = dst.ref;
  while (si < src.count && di < dst.count) {
    const sLeft = src.len[si] - so;
    const dLeft = dst.len[di] - dOff;
    const run = sLeft < dLeft ? sLeft : dLeft;
    if (run > 0) {
      if (!src.dma.resolve(src.iova[si] + so, run, false, sr)) return CopyResult.SRC_FAULT;
      if (!dst.dma.resolve(dst.iova[di] + dOff, run, true, dr)) return CopyResult.DST_FAULT;
      dr.bytes.set(sr.bytes.subarray(sr.offset, sr.offset + run), dr.offset);
      last = dr.offset + run - 1;
    }
    so += run;
    dOff += run;
    if (so === src.len[si]) {
      si++;
      so = 0;
    }
    if (dOff === dst.len[di]) {
      di++;
      dOff = 0;
    }
  }
  if (last >= 0) notifyLast(dr, last);
  return CopyResult.OK;
}

/**
 * Copies `len` inline payload bytes, which sit in the private WQE copy `bytes` from `from`, into
 * the destination segments. Only the destination can fault.
 */
export function copyInline(bytes: Uint8Array, from: number, len: number, dst: Segments): CopyResult {
  let done = 0;
  let last = -1;
  const dr = dst.ref;
  for (let di = 0; di < dst.count && done < len; di++) {
    const want = len - done;
    const run = dst.len[di] < want ? dst.len[di] : want;
    if (run === 0) continue;
    if (!dst.dma.resolve(dst.iova[di], run, true, dr)) return CopyResult.DST_FAULT;
    dr.bytes.set(bytes.subarray(from + done, from + done + run), dr.offset);
    last = dr.offset + run - 1;
    done += run;
  }
  if (last >= 0) notifyLast(dr, last);
  return CopyResult.OK;
}
