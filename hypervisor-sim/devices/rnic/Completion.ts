/**
 * Completions and the error state: writing CQEs into CQ rings, CQ overrun, moving a QP to ERR
 * and flushing its outstanding work requests with WR_FLUSH_ERR (ibv_modify_qp.3: "all
 * outstanding and subsequently posted WRs complete with IBV_WC_WR_FLUSH_ERR").
 *
 * Every function here runs with the host fabric lock held, and never throws on anything a
 * driver or guest wrote: a CQ ring that cannot be reached or is full only loses the CQE and puts
 * the QPs feeding that CQ into ERR (an HCA's CQ overrun / catastrophic CQ error).
 */

import { produceCqe } from '../../../protocol/rdma/Cq.js';
import { rqDoorbell, sqDoorbell } from '../../../protocol/rdma/NicRegs.js';
import { QpState, type Wc, WcOpcode, WcStatus } from '../../../protocol/rdma/Verbs.js';
import { RECV_WQE_WORDS, RecvWqeWord, SEND_WQE_WORDS, SendWqeWord } from '../../../protocol/rdma/Wqe.js';
import { CqCtx, MetricSlot, QpCtx } from './DevLayout.js';
import { cqRing, rqView, sqView } from './QueueViews.js';
import type { RnicCtx } from './RnicContext.js';

/**
 * Appends `wc` to CQ `cqn`. False when the CQE was lost: the CQ is gone, already overrun, its
 * ring unreachable (a fault), or full (then it is marked overrun and every QP using it goes to
 * ERR). The caller moves its own QP to ERR on false.
 */
export function postCqe(ctx: RnicCtx, cqn: number, wc: Wc): boolean {
  const d = ctx.dev;
  const c = ctx.layout.cqBase(cqn);
  if (d[c + CqCtx.VALID] === 0 || d[c + CqCtx.OVERFLOW] !== 0) return false;
  const ring = cqRing(ctx, cqn, c);
  if (ring === null) return false;
  const next = produceCqe(ring, d[c + CqCtx.ENTRIES], d[c + CqCtx.PROD] >>> 0, wc);
  if (next < 0) {
    d[c + CqCtx.OVERFLOW] = 1;
    cqOverrun(ctx, cqn);
    return false;
  }
  d[c + CqCtx.PROD] = next | 0;
  ctx.count(MetricSlot.CQES);
  return true;
}

/** CQ `cqn` overran: every QP sending or receiving into it goes to ERR. */
function cqOverrun(ctx: RnicCtx, cqn: number): void {
  const d = ctx.dev;
  for (let qpn = 1; qpn < ctx.sizes.maxQp; qpn++) {
    const q = ctx.layout.qpBase(qpn);
    if (d[q + QpCtx.VALID] !== 0 && (d[q + QpCtx.SEND_CQ] === cqn || d[q + QpCtx.RECV_CQ] === cqn)) {
      moveToErr(ctx, qpn);
    }
  }
}

/**
 * Puts QP `qpn` in ERR. If no thread is running its send queue, its outstanding WRs are flushed
 * now; otherwise the running thread sees ERR at its next step and flushes them itself.
 */
export function moveToErr(ctx: RnicCtx, qpn: number): void {
  const d = ctx.dev;
  const q = ctx.layout.qpBase(qpn);
  // ORDERING: seq-cst load; STATE is only stored under the lock we hold, so this is exact.
  if (d[q + QpCtx.VALID] === 0 || Atomics.load(d, q + QpCtx.STATE) === QpState.ERR) return;
  // ORDERING: seq-cst store; an RQ doorbell stores its producer then loads STATE, so either it
  // sees ERR (and schedules a flush) or this flush sees its producer (Dekker pair).
  Atomics.store(d, q + QpCtx.STATE, QpState.ERR);
  if (d[q + QpCtx.BUSY] === 0) flushQp(ctx, qpn);
}

/** Fills the completion record for a flushed or failed WR (only wr_id, status, qp_num count). */
export function errorWc(ctx: RnicCtx, wrId: number, status: WcStatus, opcode: WcOpcode, qpn: number): Wc {
  const wc = ctx.wc;
  wc.wrId = wrId;
  wc.status = status;
  wc.opcode = opcode;
  wc.vendorErr = 0;
  wc.byteLen = 0;
  wc.immData = 0;
  wc.qpNum = qpn;
  wc.srcQp = 0;
  wc.wcFlags = 0;
  return wc;
}

/**
 * Completes every WR between the consumer and producer indices of both queues of an ERR QP
 * with WR_FLUSH_ERR. A producer index further ahead than the queue is long (a hostile driver)
 * flushes nothing: those slots were never valid WRs. Returns the number of CQEs attempted.
 */
export function flushQp(ctx: RnicCtx, qpn: number): number {
  const q = ctx.layout.qpBase(qpn);
  let n = 0;
  // ORDERING: seq-cst loads of the doorbell registers the driver stored.
  const sqProd = Atomics.load(ctx.bar, sqDoorbell(qpn) >> 2) >>> 0;
  const rqProd = Atomics.load(ctx.bar, rqDoorbell(qpn) >> 2) >>> 0;
  n += flushQueue(ctx, qpn, q, true, sqProd);
  n += flushQueue(ctx, qpn, q, false, rqProd);
  ctx.count(MetricSlot.FLUSHED, n);
  return n;
}

function flushQueue(ctx: RnicCtx, qpn: number, q: number, send: boolean, prod: number): number {
  const d = ctx.dev;
  const consWord = q + (send ? QpCtx.SQ_CONS : QpCtx.RQ_CONS);
  const entries = d[q + (send ? QpCtx.SQ_ENTRIES : QpCtx.RQ_ENTRIES)];
  let cons = d[consWord] >>> 0;
  const avail = (prod - cons) >>> 0;
  let n = 0;
  if (avail !== 0 && avail <= entries) {
    const ref = send ? sqView(ctx, qpn, q) : rqView(ctx, qpn, q);
    if (ref !== null) {
      const stride = send ? SEND_WQE_WORDS : RECV_WQE_WORDS;
      const cqn = d[q + (send ? QpCtx.SEND_CQ : QpCtx.RECV_CQ)];
      const opcode = send ? WcOpcode.SEND : WcOpcode.RECV;
      for (let i = 0; i < avail; i++, cons = (cons + 1) >>> 0) {
        const w = (ref.offset >> 2) + (cons & (entries - 1)) * stride;
        // Only wr_id is read from the queue (once per word): nothing else of a flushed WR counts.
        const lo = ref.words[w + (send ? SendWqeWord.WR_ID_LO : RecvWqeWord.WR_ID_LO)];
        const hi = ref.words[w + (send ? SendWqeWord.WR_ID_HI : RecvWqeWord.WR_ID_HI)] & 0x1fffff;
        postCqe(ctx, cqn, errorWc(ctx, (hi >>> 0) * 0x1_0000_0000 + (lo >>> 0), WcStatus.WR_FLUSH_ERR, opcode, qpn));
        n++;
      }
    }
  }
  d[consWord] = prod | 0;
  return n;
}
