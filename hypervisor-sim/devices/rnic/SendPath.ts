/**
 * The requester half of a work request: fetch the WQE at the send queue's consumer index into a
 * private copy ONCE (XSA-155: never re-read the queue), decode and validate the copy, wait the
 * modeled wire time, run the responder half on the peer NIC, and complete. A peer NIC of another
 * host process is reached through the fabric's `remote` (RemoteWire.ts): same semantics, the
 * request travels as a wire packet over the host link.
 *
 * Validation of the private copy, in order (first failure wins):
 *  - opcode ∉ {RDMA_WRITE, RDMA_WRITE_WITH_IMM, SEND, SEND_WITH_IMM, RDMA_READ}, unknown
 *    send_flags, INLINE with RDMA_READ or with num_sge ≠ 0, num_sge > the QP's max_send_sge
 *    → LOC_QP_OP_ERR;
 *  - inline_len > the QP's max_inline_data (≤ MAX_INLINE_DATA), total length > 2^31 (the IB
 *    maximum message size; the sum of ≤ 5 u32 lengths cannot overflow a double) → LOC_LEN_ERR;
 *  - an SGE whose lkey is not live, whose MR is in another PD, whose range leaves the MR or whose
 *    address is not a safe integer, or an RDMA READ destination without LOCAL_WRITE → LOC_PROT_ERR.
 * Zero-length SGEs are skipped (they name no memory).
 *
 * Completion: a successful WR produces a CQE only if the QP has sq_sig_all or the WR is
 * SIGNALED; an error always does, and then the QP goes to ERR (its later WRs are flushed).
 */

import { SendFlags, WcOpcode, WcStatus, WrOpcode } from '../../../protocol/rdma/Verbs.js';
import { decodeSendWqe, MAX_INLINE_DATA, SEND_WQE_WORDS, type SendWqe } from '../../../protocol/rdma/Wqe.js';
import { Stage, stages } from '../../../protocol/stage/StageLedger.js';
import { errorWc, moveToErr, postCqe } from './Completion.js';
import { MetricSlot, QpCtx } from './DevLayout.js';
import { localIova } from './MrCheck.js';
import { sqView } from './QueueViews.js';
import {
  ABANDONED,
  awaitRecv,
  connectedPeer,
  respondRead,
  respondSend,
  respondWrite,
  stillSending,
} from './Responder.js';
import type { RnicCtx } from './RnicContext.js';
import { delayNs } from './RnicFabric.js';

/** IB maximum message size (2 GiB). */
const MAX_MESSAGE = 0x8000_0000;
/** send_flags pvio knows (FENCE | SIGNALED | SOLICITED | INLINE). */
const KNOWN_FLAGS = 0xf;

/** Work-completion opcode of a send-queue WR. */
function sendWcOpcode(op: number): WcOpcode {
  if (op === WrOpcode.RDMA_READ) return WcOpcode.RDMA_READ;
  if (op === WrOpcode.RDMA_WRITE || op === WrOpcode.RDMA_WRITE_WITH_IMM) return WcOpcode.RDMA_WRITE;
  return WcOpcode.SEND;
}

/**
 * Validates the private copy and translates its SGEs into `ctx.loc`; returns a WcStatus.
 * (RemoteWire re-runs it after the lock was released, as executeWqe does after the wire delay.)
 */
export function prepareLocal(ctx: RnicCtx, q: number, wqe: SendWqe): WcStatus {
  const d = ctx.dev;
  const op = wqe.opcode;
  const flags = wqe.sendFlags;
  if (op > WrOpcode.RDMA_READ || (flags & ~KNOWN_FLAGS) !== 0) return WcStatus.LOC_QP_OP_ERR;
  const loc = ctx.loc;
  loc.dma = ctx.dma;
  loc.count = 0;
  ctx.total = 0;
  if ((flags & SendFlags.INLINE) !== 0) {
    if (op === WrOpcode.RDMA_READ || wqe.numSge !== 0) return WcStatus.LOC_QP_OP_ERR;
    const len = wqe.inlineLen;
    if (len > d[q + QpCtx.MAX_INLINE] || len > MAX_INLINE_DATA) return WcStatus.LOC_LEN_ERR;
    ctx.total = len;
    return WcStatus.SUCCESS;
  }
  // INVARIANT: MAX_SEND_SGE in the context is ≤ Wqe.MAX_SEND_SGE (CREATE_QP), so the loop stays
  // inside the decoded arrays.
  if (wqe.numSge > d[q + QpCtx.MAX_SEND_SGE]) return WcStatus.LOC_QP_OP_ERR;
  const pd = d[q + QpCtx.PD];
  const write = op === WrOpcode.RDMA_READ;
  let total = 0;
  for (let i = 0; i < wqe.numSge; i++) {
    const len = wqe.sgeLen[i];
    if (len === 0) continue;
    total += len;
    if (total > MAX_MESSAGE) return WcStatus.LOC_LEN_ERR;
    const iova = localIova(ctx, pd, wqe.sgeLkey[i], wqe.sgeAddr[i], len, write);
    if (iova < 0) return WcStatus.LOC_PROT_ERR;
    loc.iova[loc.count] = iova;
    loc.len[loc.count++] = len;
  }
  ctx.total = total;
  return WcStatus.SUCCESS;
}

/**
 * Runs the responder half on the peer NIC — a NIC of this host, or through the fabric's `remote`
 * one of another host process — and returns a WcStatus or ABANDONED.
 */
function transfer(ctx: RnicCtx, qpn: number, q: number, epoch: number, wqe: SendWqe): number {
  const d = ctx.dev;
  const peer = ctx.fabric.get(d[q + QpCtx.DEST_PORT] >>> 0);
  if (peer === undefined) {
    const remote = ctx.fabric.remote;
    return remote === undefined ? WcStatus.RETRY_EXC_ERR : remote.transfer(ctx, qpn, q, epoch, wqe);
  }
  const p = peer.ctx;
  const pqpn = d[q + QpCtx.DEST_QPN];
  const pq = connectedPeer(ctx, qpn, p, pqpn);
  if (pq < 0) return WcStatus.RETRY_EXC_ERR;
  const op = wqe.opcode;
  if (op === WrOpcode.RDMA_WRITE) return respondWrite(ctx, qpn, p, pqpn, pq, wqe);
  if (op === WrOpcode.RDMA_READ) return respondRead(ctx, p, pqpn, pq, wqe);
  const st = awaitRecv(ctx, qpn, q, epoch, p, pqpn, pq);
  if (st !== WcStatus.SUCCESS) return st;
  return op === WrOpcode.RDMA_WRITE_WITH_IMM
    ? respondWrite(ctx, qpn, p, pqpn, pq, wqe)
    : respondSend(ctx, qpn, p, pqpn, pq, wqe);
}

/** Advances the send queue past the WR and writes its CQE if one is due. */
function complete(ctx: RnicCtx, qpn: number, q: number, wqe: SendWqe, status: WcStatus): void {
  const d = ctx.dev;
  d[q + QpCtx.SQ_CONS] = ((d[q + QpCtx.SQ_CONS] >>> 0) + 1) | 0;
  ctx.count(MetricSlot.WRS);
  const ok = status === WcStatus.SUCCESS;
  if (!ok) ctx.count(MetricSlot.ERRORS);
  if (!ok || d[q + QpCtx.SQ_SIG_ALL] !== 0 || (wqe.sendFlags & SendFlags.SIGNALED) !== 0) {
    const wc = errorWc(ctx, wqe.wrId, status, sendWcOpcode(wqe.opcode), qpn);
    if (ok) wc.byteLen = ctx.total;
    if (!postCqe(ctx, d[q + QpCtx.SEND_CQ], wc)) moveToErr(ctx, qpn);
  }
  if (!ok) moveToErr(ctx, qpn);
}

/**
 * Executes the WR at the consumer index of QP `qpn` (context word `q`, in RTS, BUSY held by the
 * caller, fabric lock held). Returns false when the WR was abandoned because the QP changed while
 * the lock was released (its consumer index is then untouched).
 */
export function executeWqe(ctx: RnicCtx, qpn: number, q: number, epoch: number): boolean {
  const d = ctx.dev;
  const ref = sqView(ctx, qpn, q);
  if (ref === null) {
    // The send queue cannot be fetched: a fatal QP error, as on an HCA.
    moveToErr(ctx, qpn);
    return true;
  }
  const entries = d[q + QpCtx.SQ_ENTRIES];
  const base = (ref.offset >> 2) + ((d[q + QpCtx.SQ_CONS] >>> 0) & (entries - 1)) * SEND_WQE_WORDS;
  const w = ctx.wqeWords;
  const src = ref.words;
  for (let i = 0; i < SEND_WQE_WORDS; i++) w[i] = src[base + i];
  // INVARIANT: from here on only the private copy is read.
  const wqe = decodeSendWqe(w, 0, ctx.swqe);
  let status: number = prepareLocal(ctx, q, wqe);
  if (status === WcStatus.SUCCESS) {
    const ns = ctx.fabric.wireNs(ctx.total);
    if (ns > 0) {
      // The wire time passes before anything lands or completes; the lock is released so other
      // NICs and QPs run meanwhile (BUSY keeps this QP ours).
      ctx.fabric.unlock();
      // Stage ledger: the modeled wire is FABRIC, taken out of DEVICE (delayNs cannot throw).
      const prev = stages.enter(Stage.FABRIC);
      delayNs(ns);
      stages.enter(prev);
      ctx.fabric.lock();
      if (!stillSending(ctx, q, epoch)) return false;
      // MRs may have been deregistered meanwhile: translate the SGEs again (same private copy).
      status = prepareLocal(ctx, q, wqe);
    }
  }
  if (status === WcStatus.SUCCESS) {
    status = transfer(ctx, qpn, q, epoch, wqe);
    if (status === ABANDONED) return false;
  }
  complete(ctx, qpn, q, wqe, status);
  return true;
}
