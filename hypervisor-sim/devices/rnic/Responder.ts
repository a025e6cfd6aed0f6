/**
 * The responder half of an RC work request, executed on the PEER NIC's context (same host, same
 * thread, fabric lock held): connection check, receive-queue consumption with RNR retry, R_Key
 * checks and the payload move for RDMA WRITE (WITH_IMM), RDMA READ and SEND (WITH_IMM).
 *
 * Error semantics follow libibverbs and the IB responder classes (as rdma-core's rxe
 * implements them, rxe_resp.c): a responder that detects an access or length violation NAKs
 * the request (the requester completes with REM_ACCESS_ERR / REM_INV_REQ_ERR / REM_OP_ERR), and
 * the responder QP itself goes to ERR; if a receive WQE was consumed it completes with the
 * responder's error status. A requester whose peer is missing, not connected back to it, or not
 * in RTR/RTS/SQD gets RETRY_EXC_ERR (its packets would be dropped until the retry count ran out).
 *
 * Functions return a WcStatus for the requester, or ABANDONED when the requester's own QP
 * changed while the lock was released (destroyed, reset, or moved to ERR: the flush completes
 * the WR then).
 *
 * The responder functions see the requester only through `RequesterSide` (its payload, its
 * port and its counters), so the same code answers a request from a NIC of this host (its
 * RnicCtx) and one that arrived as a wire packet from another host (WireResponder.ts).
 */

import { RNR_TIMER_UNIT_US, rqDoorbell } from '../../../protocol/rdma/NicRegs.js';
import { Access, QpState, SendFlags, WcFlags, WcOpcode, WcStatus, WrOpcode } from '../../../protocol/rdma/Verbs.js';
import { decodeRecvWqe, MAX_RECV_SGE, RECV_WQE_WORDS, type SendWqe } from '../../../protocol/rdma/Wqe.js';
import { Stage, stages } from '../../../protocol/stage/StageLedger.js';
import { errorWc, moveToErr, postCqe } from './Completion.js';
import { CopyResult, copyInline, copySegments, type Segments } from './DataMover.js';
import { MetricSlot, QpCtx } from './DevLayout.js';
import { localIova, remoteIova } from './MrCheck.js';
import { rqView } from './QueueViews.js';
import type { RnicCtx } from './RnicContext.js';

/** Not a WcStatus: the WR was not completed because its QP changed under it. */
export const ABANDONED = -1;
/** Not a WcStatus: the responder has no receive posted (an RNR NAK; see `recvReady`). */
export const RNR = -2;

/**
 * What the responder half needs of the requester: the message (`total` bytes: inline in
 * `wqeBytes`, or the segments `loc`), scratch segments `rem` for the responder's side, the
 * requester's port id (the connection check) and its counters. An RnicCtx is one.
 */
export interface RequesterSide {
  /** Payload bytes of the request. */
  readonly total: number;
  /** The requester's segments: WRITE/SEND source, READ destination. */
  readonly loc: Segments;
  /** Scratch: the responder's segments (`rem.dma` is set to the responder's resolver). */
  readonly rem: Segments;
  /** The private WQE copy as bytes (inline payload from byte 32). */
  readonly wqeBytes: Uint8Array;
  readonly sizes: { readonly portId: number };
  /** Counts a requester-side event (BYTES, FAULTS). */
  count(slot: MetricSlot, n?: number): void;
}

/** Byte offset of the inline payload in a send WQE (the SGE area, word 8). */
const INLINE_OFFSET = 32;

/** True while QP word `q` is still the QP of `epoch` and in a state that completes in-flight WRs. */
export function stillSending(ctx: RnicCtx, q: number, epoch: number): boolean {
  const d = ctx.dev;
  if (d[q + QpCtx.VALID] === 0 || d[q + QpCtx.EPOCH] !== epoch) return false;
  // ORDERING: seq-cst load under the lock (re-taken after a wait); STATE stores happen under it.
  const st = Atomics.load(d, q + QpCtx.STATE);
  return st === QpState.RTS || st === QpState.SQD;
}

/**
 * QP word of `pqpn` on `p` if it exists, can receive (RTR, RTS, SQD) and is connected back to
 * requester QP `qpn` on `ctx`'s port; -1 otherwise.
 */
export function connectedPeer(ctx: RequesterSide, qpn: number, p: RnicCtx, pqpn: number): number {
  if (!(pqpn >= 1 && pqpn < p.sizes.maxQp)) return -1;
  const pd = p.dev;
  const pq = p.layout.qpBase(pqpn);
  if (pd[pq + QpCtx.VALID] === 0) return -1;
  // ORDERING: seq-cst load under the host lock, which also guards the peer NIC's STATE stores.
  const st = Atomics.load(pd, pq + QpCtx.STATE);
  if (st !== QpState.RTR && st !== QpState.RTS && st !== QpState.SQD) return -1;
  if (pd[pq + QpCtx.DEST_QPN] !== qpn || pd[pq + QpCtx.DEST_PORT] >>> 0 !== ctx.sizes.portId) return -1;
  return pq;
}

/**
 * Whether responder QP `pqpn` (word `pq`) has a receive posted: SUCCESS, RNR when none, or
 * REM_OP_ERR when its driver published an impossible producer index (the QP goes to ERR).
 * Never waits: the wire responder answers RNR and the requester host backs off.
 */
export function recvReady(p: RnicCtx, pqpn: number, pq: number): number {
  const pd = p.dev;
  // ORDERING: seq-cst load of the producer the responder's driver stored.
  const prod = Atomics.load(p.bar, rqDoorbell(pqpn) >> 2);
  const avail = ((prod >>> 0) - (pd[pq + QpCtx.RQ_CONS] >>> 0)) >>> 0;
  if (avail > pd[pq + QpCtx.RQ_ENTRIES]) {
    // The responder's driver published an impossible producer index: its QP is broken.
    moveToErr(p, pqpn);
    return WcStatus.REM_OP_ERR;
  }
  return avail !== 0 ? WcStatus.SUCCESS : RNR;
}

/** The responder QP's RNR timer in µs (what an RNR NAK carries). */
export function rnrTimerUs(p: RnicCtx, pq: number): number {
  return p.dev[pq + QpCtx.MIN_RNR_TIMER] * RNR_TIMER_UNIT_US;
}

/**
 * Waits until the responder has a receive posted: SUCCESS, or RNR_RETRY_EXC_ERR after
 * `rnr_retry` retries `min_rnr_timer × RNR_TIMER_UNIT_US` apart (the responder's timer, as an
 * RNR NAK carries it). Each wait releases the fabric lock and sleeps on the responder's RQ
 * doorbell register, so a receive posted meanwhile ends the wait early.
 */
export function awaitRecv(
  ctx: RnicCtx,
  qpn: number,
  q: number,
  epoch: number,
  p: RnicCtx,
  pqpn: number,
  pq: number,
): number {
  const d = ctx.dev;
  const pd = p.dev;
  const rqIndex = rqDoorbell(pqpn) >> 2;
  const retries = d[q + QpCtx.RNR_RETRY];
  for (let attempt = 0; ; attempt++) {
    // ORDERING: seq-cst load of the producer the responder's driver stored (recvReady loads it
    // again; a receive posted in between only makes this wait end at once).
    const prod = Atomics.load(p.bar, rqIndex);
    const ready = recvReady(p, pqpn, pq);
    if (ready !== RNR) return ready;
    if (attempt >= retries) return WcStatus.RNR_RETRY_EXC_ERR;
    ctx.count(MetricSlot.RNR_RETRIES);
    const pEpoch = pd[pq + QpCtx.EPOCH];
    const timeoutMs = rnrTimerUs(p, pq) / 1000;
    // ORDERING: seq-cst add before the wait; an RQ doorbell stores the producer, then loads
    // RNR_WAITERS and notifies when it is non-zero (Dekker pair: no lost wake-up).
    Atomics.add(pd, pq + QpCtx.RNR_WAITERS, 1);
    ctx.fabric.unlock();
    // Stage ledger: an RNR back-off waits for the responder's driver: IDLE.
    const prev = stages.enter(Stage.IDLE);
    // ORDERING: wait re-checks the doorbell word atomically against the producer we saw.
    if (timeoutMs > 0) Atomics.wait(p.bar, rqIndex, prod, timeoutMs);
    stages.enter(prev);
    ctx.fabric.lock();
    // A destroyed (and maybe recreated) responder QP reset its waiter count: leave it alone.
    if (pd[pq + QpCtx.EPOCH] === pEpoch) Atomics.sub(pd, pq + QpCtx.RNR_WAITERS, 1);
    if (!stillSending(ctx, q, epoch)) return ABANDONED;
    if (pd[pq + QpCtx.EPOCH] !== pEpoch || connectedPeer(ctx, qpn, p, pqpn) !== pq) return WcStatus.RETRY_EXC_ERR;
  }
}

/**
 * Consumes the responder's next receive WQE into `p.rwqe` (a private copy, read once).
 * False when the RQ cannot be read (fault: the responder QP goes to ERR).
 */
function takeRecv(p: RnicCtx, pqpn: number, pq: number): boolean {
  const pd = p.dev;
  const ref = rqView(p, pqpn, pq);
  if (ref === null) {
    moveToErr(p, pqpn);
    return false;
  }
  const cons = pd[pq + QpCtx.RQ_CONS] >>> 0;
  const base = (ref.offset >> 2) + (cons & (pd[pq + QpCtx.RQ_ENTRIES] - 1)) * RECV_WQE_WORDS;
  const w = p.rwqeWords;
  for (let i = 0; i < RECV_WQE_WORDS; i++) w[i] = ref.words[base + i];
  decodeRecvWqe(w, 0, p.rwqe);
  pd[pq + QpCtx.RQ_CONS] = (cons + 1) | 0;
  return true;
}

/** A responder-side failure: error CQE for a consumed receive, responder QP to ERR. */
function responderFails(p: RnicCtx, pqpn: number, pq: number, recvTaken: boolean, targetStatus: WcStatus): void {
  if (recvTaken) {
    p.count(MetricSlot.ERRORS);
    postCqe(p, p.dev[pq + QpCtx.RECV_CQ], errorWc(p, p.rwqe.wrId, targetStatus, WcOpcode.RECV, pqpn));
  }
  moveToErr(p, pqpn);
}

/** Posts the responder's successful receive completion. */
function recvCompletes(
  p: RnicCtx,
  pqpn: number,
  pq: number,
  qpn: number,
  opcode: WcOpcode,
  len: number,
  imm: number,
  flags: number,
): void {
  const wc = errorWc(p, p.rwqe.wrId, WcStatus.SUCCESS, opcode, pqpn);
  wc.byteLen = len;
  wc.immData = imm;
  wc.srcQp = qpn;
  wc.wcFlags = flags;
  if (!postCqe(p, p.dev[pq + QpCtx.RECV_CQ], wc)) moveToErr(p, pqpn);
}

/** Copies the requester's payload (inline or its SGEs) into `ctx.rem` on the responder. */
function pushPayload(ctx: RequesterSide, wqe: SendWqe): CopyResult {
  // INVARIANT: with INLINE, ctx.total ≤ MAX_INLINE_DATA (prepareLocal), so the bytes read from
  // the private WQE copy stay inside its SGE area.
  if ((wqe.sendFlags & SendFlags.INLINE) !== 0) return copyInline(ctx.wqeBytes, INLINE_OFFSET, ctx.total, ctx.rem);
  return copySegments(ctx.loc, ctx.rem);
}

/** RDMA WRITE and WRITE_WITH_IMM (the latter after awaitRecv found a receive). */
export function respondWrite(
  ctx: RequesterSide,
  qpn: number,
  p: RnicCtx,
  pqpn: number,
  pq: number,
  wqe: SendWqe,
): number {
  const pd = p.dev;
  const withImm = wqe.opcode === WrOpcode.RDMA_WRITE_WITH_IMM;
  const len = ctx.total;
  // A zero-length RDMA carries no R_Key check (IBA 9.4.5: the R_Key is not validated for 0 bytes).
  if (len > 0) {
    const iova = remoteIova(
      p,
      pd[pq + QpCtx.PD],
      pd[pq + QpCtx.ACCESS],
      wqe.rkey,
      wqe.remoteAddr,
      len,
      Access.REMOTE_WRITE,
    );
    if (iova < 0) {
      responderFails(p, pqpn, pq, withImm && takeRecv(p, pqpn, pq), WcStatus.REM_ACCESS_ERR);
      return WcStatus.REM_ACCESS_ERR;
    }
    const rem = ctx.rem;
    rem.dma = p.dma;
    rem.iova[0] = iova;
    rem.len[0] = len;
    rem.count = 1;
    const r = pushPayload(ctx, wqe);
    if (r === CopyResult.SRC_FAULT) {
      ctx.count(MetricSlot.FAULTS);
      return WcStatus.LOC_PROT_ERR;
    }
    if (r === CopyResult.DST_FAULT) {
      p.count(MetricSlot.FAULTS);
      responderFails(p, pqpn, pq, withImm && takeRecv(p, pqpn, pq), WcStatus.REM_ACCESS_ERR);
      return WcStatus.REM_ACCESS_ERR;
    }
    ctx.count(MetricSlot.BYTES, len);
  }
  if (withImm) {
    if (!takeRecv(p, pqpn, pq)) return WcStatus.REM_OP_ERR;
    recvCompletes(p, pqpn, pq, qpn, WcOpcode.RECV_RDMA_WITH_IMM, len, wqe.immData, WcFlags.WITH_IMM);
  }
  return WcStatus.SUCCESS;
}

/** RDMA READ: the responder's range into the requester's SGEs (checked LOCAL_WRITE already). */
export function respondRead(ctx: RequesterSide, p: RnicCtx, pqpn: number, pq: number, wqe: SendWqe): number {
  const pd = p.dev;
  const len = ctx.total;
  if (len === 0) return WcStatus.SUCCESS;
  const iova = remoteIova(
    p,
    pd[pq + QpCtx.PD],
    pd[pq + QpCtx.ACCESS],
    wqe.rkey,
    wqe.remoteAddr,
    len,
    Access.REMOTE_READ,
  );
  if (iova < 0) {
    responderFails(p, pqpn, pq, false, WcStatus.REM_ACCESS_ERR);
    return WcStatus.REM_ACCESS_ERR;
  }
  const rem = ctx.rem;
  rem.dma = p.dma;
  rem.iova[0] = iova;
  rem.len[0] = len;
  rem.count = 1;
  const r = copySegments(rem, ctx.loc);
  if (r === CopyResult.SRC_FAULT) {
    p.count(MetricSlot.FAULTS);
    responderFails(p, pqpn, pq, false, WcStatus.REM_ACCESS_ERR);
    return WcStatus.REM_ACCESS_ERR;
  }
  if (r === CopyResult.DST_FAULT) {
    ctx.count(MetricSlot.FAULTS);
    return WcStatus.LOC_PROT_ERR;
  }
  ctx.count(MetricSlot.BYTES, len);
  return WcStatus.SUCCESS;
}

/**
 * SEND and SEND_WITH_IMM (after awaitRecv found a receive): scatter into the receive's SGEs.
 * A receive too small completes LOC_LEN_ERR at the responder and REM_INV_REQ_ERR here; a bad
 * receive SGE (key, PD, bounds, no LOCAL_WRITE) LOC_PROT_ERR there and REM_OP_ERR here.
 */
export function respondSend(
  ctx: RequesterSide,
  qpn: number,
  p: RnicCtx,
  pqpn: number,
  pq: number,
  wqe: SendWqe,
): number {
  if (!takeRecv(p, pqpn, pq)) return WcStatus.REM_OP_ERR;
  const pd = p.dev;
  const r = p.rwqe;
  const rem = ctx.rem;
  const maxSge = pd[pq + QpCtx.MAX_RECV_SGE];
  if (r.numSge > maxSge || r.numSge > MAX_RECV_SGE) {
    responderFails(p, pqpn, pq, true, WcStatus.LOC_QP_OP_ERR);
    return WcStatus.REM_OP_ERR;
  }
  rem.dma = p.dma;
  rem.count = 0;
  let room = 0;
  const ppd = pd[pq + QpCtx.PD];
  for (let i = 0; i < r.numSge; i++) {
    const len = r.sgeLen[i];
    if (len === 0) continue;
    const iova = localIova(p, ppd, r.sgeLkey[i], r.sgeAddr[i], len, true);
    if (iova < 0) {
      responderFails(p, pqpn, pq, true, WcStatus.LOC_PROT_ERR);
      return WcStatus.REM_OP_ERR;
    }
    rem.iova[rem.count] = iova;
    rem.len[rem.count++] = len;
    room += len;
  }
  const len = ctx.total;
  if (room < len) {
    responderFails(p, pqpn, pq, true, WcStatus.LOC_LEN_ERR);
    return WcStatus.REM_INV_REQ_ERR;
  }
  const res = len === 0 ? CopyResult.OK : pushPayload(ctx, wqe);
  if (res === CopyResult.SRC_FAULT) {
    // The request never left: give the receive back (nothing else touched the RQ: lock held).
    pd[pq + QpCtx.RQ_CONS] = ((pd[pq + QpCtx.RQ_CONS] >>> 0) - 1) | 0;
    ctx.count(MetricSlot.FAULTS);
    return WcStatus.LOC_PROT_ERR;
  }
  if (res === CopyResult.DST_FAULT) {
    p.count(MetricSlot.FAULTS);
    responderFails(p, pqpn, pq, true, WcStatus.LOC_PROT_ERR);
    return WcStatus.REM_ACCESS_ERR;
  }
  ctx.count(MetricSlot.BYTES, len);
  const withImm = wqe.opcode === WrOpcode.SEND_WITH_IMM;
  recvCompletes(p, pqpn, pq, qpn, WcOpcode.RECV, len, withImm ? wqe.immData : 0, withImm ? WcFlags.WITH_IMM : 0);
  return WcStatus.SUCCESS;
}
