/**
 * Cached DMA views of a QP's send and receive queues and of a CQ ring. A queue is resolved
 * through the IOMMU as a whole once, then reused until the object is recreated (its epoch moves)
 * or a mapping changes (the IOMMU generation moves) — the DmaResolver contract — so the data
 * path does one `generation()` load per access instead of a page walk.
 *
 * A queue that cannot be resolved (unmapped, read-only CQ, not contiguous, misaligned) returns
 * null and counts a fault; the caller moves the QP to ERR, as a real HCA raises a fatal QP
 * error when it cannot fetch a WQE or write a CQE.
 */

import { cqBytes } from '../../../protocol/rdma/Cq.js';
import { RECV_WQE_SIZE, SEND_WQE_SIZE } from '../../../protocol/rdma/Wqe.js';
import type { DmaRef } from '../../iommu/DmaResolver.js';
import { CqCtx, MetricSlot, QpCtx } from './DevLayout.js';
import type { QueueView, RnicCtx } from './RnicContext.js';

/** Joins a lo/hi word pair stored by a command (already validated as a safe integer). */
export function joinWords(lo: number, hi: number): number {
  return (hi >>> 0) * 0x1_0000_0000 + (lo >>> 0);
}

function resolveView(
  ctx: RnicCtx,
  v: QueueView,
  epoch: number,
  iova: number,
  bytes: number,
  write: boolean,
): DmaRef | null {
  // The generation is read BEFORE resolving (IommuContext.generation): a change racing with the
  // resolve then shows up as a mismatch next time instead of being cached as current.
  const gen = ctx.dma.generation();
  if (v.epoch === epoch && v.gen === gen) return v.ref;
  v.epoch = -1;
  v.ring = null;
  const ref = v.ref;
  // Int32 access needs a 4-aligned byte offset in the target memory.
  if (!ctx.dma.resolve(iova, bytes, write, ref) || ((ref.words.byteOffset + ref.offset) & 3) !== 0) {
    ctx.count(MetricSlot.FAULTS);
    return null;
  }
  v.epoch = epoch;
  v.gen = gen;
  return ref;
}

/** The send queue of QP `qpn` (context word `q`), or null on a DMA fault. */
export function sqView(ctx: RnicCtx, qpn: number, q: number): DmaRef | null {
  const d = ctx.dev;
  // INVARIANT: SQ address and entries were validated by CREATE_QP (safe, aligned, ≤ caps).
  return resolveView(
    ctx,
    ctx.sqViews[qpn],
    d[q + QpCtx.EPOCH],
    joinWords(d[q + QpCtx.SQ_LO], d[q + QpCtx.SQ_HI]),
    d[q + QpCtx.SQ_ENTRIES] * SEND_WQE_SIZE,
    false,
  );
}

/** The receive queue of QP `qpn`, or null on a DMA fault. */
export function rqView(ctx: RnicCtx, qpn: number, q: number): DmaRef | null {
  const d = ctx.dev;
  return resolveView(
    ctx,
    ctx.rqViews[qpn],
    d[q + QpCtx.EPOCH],
    joinWords(d[q + QpCtx.RQ_LO], d[q + QpCtx.RQ_HI]),
    d[q + QpCtx.RQ_ENTRIES] * RECV_WQE_SIZE,
    false,
  );
}

/**
 * CQ `cqn`'s ring (context word `c`) as an Int32Array starting at its header — the shape
 * `produceCqe` indexes — or null on a DMA fault. The array is built once per resolution.
 */
export function cqRing(ctx: RnicCtx, cqn: number, c: number): Int32Array | null {
  const d = ctx.dev;
  const v = ctx.cqViews[cqn];
  const entries = d[c + CqCtx.ENTRIES];
  const ref = resolveView(
    ctx,
    v,
    d[c + CqCtx.EPOCH],
    joinWords(d[c + CqCtx.RING_LO], d[c + CqCtx.RING_HI]),
    cqBytes(entries),
    true,
  );
  if (ref === null) return null;
  if (v.ring === null)
    v.ring = new Int32Array(ref.words.buffer, ref.words.byteOffset + ref.offset, cqBytes(entries) >> 2);
  return v.ring;
}
