/**
 * QP commands and the RC state machine (ibv_modify_qp.3, reference §2):
 * ```
 * RESET ─► INIT ─► RTR ─► RTS ◄─► SQD        any ─► RESET, any ─► ERR
 * ```
 * RESET→INIT, INIT→RTR and RTR→RTS need at least RC_REQUIRED_MASK of the target state; the
 * other allowed transitions need only STATE. Anything else — or a CUR_STATE that is not the
 * current state, or an attribute value out of range — is PV_ERR_RDMA_BAD_TRANSITION (values:
 * PV_ERR_INVALID_ARG / PV_ERR_RDMA_BAD_ACCESS) and modifies nothing. Extra known attributes
 * are accepted and applied (as optional attributes of the transition); unknown mask bits are
 * ignored.
 *
 * Effects: →RESET empties both queues without completions (consumer indices jump to the last
 * rung producer indices; the driver restarts from the consumer indices QUERY_QP reports);
 * →ERR flushes every outstanding WR (WR_FLUSH_ERR); →RTS lets WRs posted earlier run.
 */

import { pvError } from '../../../protocol/errors.js';
import { ModifyQpIn, rqDoorbell, sqDoorbell } from '../../../protocol/rdma/NicRegs.js';
import { ACCESS_MASK, QpAttrMask, QpState, RC_REQUIRED_MASK } from '../../../protocol/rdma/Verbs.js';
import {
  hi32,
  lo32,
  MAX_INLINE_DATA,
  MAX_RECV_SGE,
  MAX_SEND_SGE,
  RECV_WQE_SIZE,
  SEND_WQE_SIZE,
} from '../../../protocol/rdma/Wqe.js';
import { argPow2, argQueue, freeSlot, liveHandle, requireZero } from './CmdArgs.js';
import { moveToErr } from './Completion.js';
import { CqCtx, PdCtx, QpCtx } from './DevLayout.js';
import type { RnicCtx } from './RnicContext.js';

/** Attributes copied into the context when present in the mask: [mask bit, argument, context word, max]. */
const ATTRS: ReadonlyArray<readonly [number, number, number, number]> = [
  [QpAttrMask.PATH_MTU, ModifyQpIn.PATH_MTU, QpCtx.PATH_MTU, 5],
  [QpAttrMask.DEST_QPN, ModifyQpIn.DEST_QPN, QpCtx.DEST_QPN, 0xff_ffff],
  [QpAttrMask.RQ_PSN, ModifyQpIn.RQ_PSN, QpCtx.RQ_PSN, 0xff_ffff],
  [QpAttrMask.SQ_PSN, ModifyQpIn.SQ_PSN, QpCtx.SQ_PSN, 0xff_ffff],
  [QpAttrMask.MAX_QP_RD_ATOMIC, ModifyQpIn.MAX_RD_ATOMIC, QpCtx.MAX_RD_ATOMIC, 16],
  [QpAttrMask.MAX_DEST_RD_ATOMIC, ModifyQpIn.MAX_DEST_RD_ATOMIC, QpCtx.MAX_DEST_RD_ATOMIC, 16],
  [QpAttrMask.MIN_RNR_TIMER, ModifyQpIn.MIN_RNR_TIMER, QpCtx.MIN_RNR_TIMER, 31],
  [QpAttrMask.TIMEOUT, ModifyQpIn.TIMEOUT, QpCtx.TIMEOUT, 31],
  [QpAttrMask.RETRY_CNT, ModifyQpIn.RETRY_CNT, QpCtx.RETRY_CNT, 7],
  [QpAttrMask.RNR_RETRY, ModifyQpIn.RNR_RETRY, QpCtx.RNR_RETRY, 7],
];

function qpHandle(ctx: RnicCtx, v: number): number {
  return liveHandle(ctx, v, ctx.sizes.maxQp, (h) => ctx.layout.qpBase(h), 'QP');
}

/** CREATE_QP: in [0] pdn … [12] max recv sge (NicRegs.ts); out [0] qpn. */
export function createQp(ctx: RnicCtx, a: Int32Array, out: Int32Array): void {
  requireZero(a, 13);
  const L = ctx.layout;
  const d = ctx.dev;
  const pdn = liveHandle(ctx, a[0], L.maxPd, (h) => L.pdBase(h), 'PD');
  const scq = liveHandle(ctx, a[1], ctx.sizes.maxCq, (h) => L.cqBase(h), 'CQ');
  const rcq = liveHandle(ctx, a[2], ctx.sizes.maxCq, (h) => L.cqBase(h), 'CQ');
  const sqEntries = argPow2(a[3], ctx.sizes.maxQpWr, 'SQ entries');
  const rqEntries = argPow2(a[4], ctx.sizes.maxQpWr, 'RQ entries');
  const sq = argQueue(ctx, a[5], a[6], sqEntries * SEND_WQE_SIZE, false, 'send queue');
  const rq = argQueue(ctx, a[7], a[8], rqEntries * RECV_WQE_SIZE, false, 'receive queue');
  if (a[9] !== 0 && a[9] !== 1) throw pvError('PV_ERR_INVALID_ARG', 'sq_sig_all must be 0 or 1');
  const maxInline = a[10] >>> 0;
  const maxSendSge = a[11] >>> 0;
  const maxRecvSge = a[12] >>> 0;
  if (maxInline > MAX_INLINE_DATA || maxSendSge > MAX_SEND_SGE || maxRecvSge > MAX_RECV_SGE) {
    throw pvError(
      'PV_ERR_BAD_LENGTH',
      `QP caps exceed the device (inline ≤ ${MAX_INLINE_DATA}, send sge ≤ ${MAX_SEND_SGE}, recv sge ≤ ${MAX_RECV_SGE})`,
    );
  }
  const qpn = freeSlot(ctx, ctx.sizes.maxQp, (i) => L.qpBase(i), 'QP');
  const q = L.qpBase(qpn);
  const epoch = (d[q + QpCtx.EPOCH] + 1) | 0;
  for (let i = 0; i < QpCtx.STRIDE; i++) d[q + i] = 0;
  d[q + QpCtx.EPOCH] = epoch;
  d[q + QpCtx.PD] = pdn;
  d[q + QpCtx.SEND_CQ] = scq;
  d[q + QpCtx.RECV_CQ] = rcq;
  d[q + QpCtx.SQ_ENTRIES] = sqEntries;
  d[q + QpCtx.RQ_ENTRIES] = rqEntries;
  d[q + QpCtx.SQ_LO] = lo32(sq) | 0;
  d[q + QpCtx.SQ_HI] = hi32(sq) | 0;
  d[q + QpCtx.RQ_LO] = lo32(rq) | 0;
  d[q + QpCtx.RQ_HI] = hi32(rq) | 0;
  d[q + QpCtx.SQ_SIG_ALL] = a[9];
  d[q + QpCtx.MAX_INLINE] = maxInline;
  d[q + QpCtx.MAX_SEND_SGE] = maxSendSge;
  d[q + QpCtx.MAX_RECV_SGE] = maxRecvSge;
  // ORDERING: seq-cst stores: doorbells of a new QP start at 0, and RQ doorbells read STATE.
  Atomics.store(ctx.bar, sqDoorbell(qpn) >> 2, 0);
  Atomics.store(ctx.bar, rqDoorbell(qpn) >> 2, 0);
  Atomics.store(d, q + QpCtx.STATE, QpState.RESET);
  d[q + QpCtx.VALID] = 1;
  d[L.pdBase(pdn) + PdCtx.USERS]++;
  d[L.cqBase(scq) + CqCtx.USERS]++;
  d[L.cqBase(rcq) + CqCtx.USERS]++;
  out[0] = qpn;
}

/** The target state of a MODIFY_QP, or PV_ERR_RDMA_BAD_TRANSITION (see the file comment). */
function checkTransition(cur: number, mask: number, a: Int32Array): number {
  const bad = (why: string) => pvError('PV_ERR_RDMA_BAD_TRANSITION', why);
  if ((mask & QpAttrMask.STATE) === 0) throw bad('the STATE attribute is required');
  if ((mask & QpAttrMask.CUR_STATE) !== 0 && a[ModifyQpIn.CUR_STATE] !== cur) {
    throw bad(`cur_qp_state ${a[ModifyQpIn.CUR_STATE]} is not the current state ${cur}`);
  }
  const next = a[ModifyQpIn.STATE];
  let required = QpAttrMask.STATE;
  if (next === QpState.RESET || next === QpState.ERR) {
    // any → RESET, any → ERR
  } else if (cur === QpState.RESET && next === QpState.INIT) {
    required = RC_REQUIRED_MASK[QpState.INIT];
  } else if (cur === QpState.INIT && next === QpState.RTR) {
    required = RC_REQUIRED_MASK[QpState.RTR];
  } else if (cur === QpState.RTR && next === QpState.RTS) {
    required = RC_REQUIRED_MASK[QpState.RTS];
  } else if ((cur === QpState.RTS && next === QpState.SQD) || (cur === QpState.SQD && next === QpState.RTS)) {
    // drain and resume
  } else {
    throw bad(`no transition ${cur} → ${next}`);
  }
  if ((mask & required) !== required) {
    throw bad(`transition ${cur} → ${next} lacks attributes 0x${(required & ~mask).toString(16)}`);
  }
  return next;
}

/** Validates the values of the attributes present in `mask` (nothing is modified). */
function checkAttrs(mask: number, a: Int32Array): void {
  if ((mask & QpAttrMask.ACCESS_FLAGS) !== 0 && (a[ModifyQpIn.ACCESS] & ~ACCESS_MASK) !== 0) {
    throw pvError('PV_ERR_RDMA_BAD_ACCESS', `unknown qp_access_flags ${a[ModifyQpIn.ACCESS] >>> 0}`);
  }
  // One partition key (index 0) and one physical port (IB ports count from 1).
  if ((mask & QpAttrMask.PKEY_INDEX) !== 0 && a[ModifyQpIn.PKEY] !== 0) {
    throw pvError('PV_ERR_INVALID_ARG', 'pkey_index must be 0');
  }
  if ((mask & QpAttrMask.PORT) !== 0 && a[ModifyQpIn.PORT] !== 1)
    throw pvError('PV_ERR_INVALID_ARG', 'port_num must be 1');
  for (const [bit, arg, , max] of ATTRS) {
    if ((mask & bit) === 0) continue;
    const v = a[arg] >>> 0;
    const min = bit === QpAttrMask.PATH_MTU || bit === QpAttrMask.DEST_QPN ? 1 : 0;
    if (v < min || v > max) throw pvError('PV_ERR_INVALID_ARG', `attribute word ${arg} = ${v} outside ${min} … ${max}`);
  }
}

/** MODIFY_QP; returns the qpn when the QP entered RTS (its queued WRs may now run), else 0. */
export function modifyQp(ctx: RnicCtx, a: Int32Array): number {
  requireZero(a, 18);
  const d = ctx.dev;
  const qpn = qpHandle(ctx, a[ModifyQpIn.QPN]);
  const q = ctx.layout.qpBase(qpn);
  const mask = a[ModifyQpIn.MASK] >>> 0;
  // ORDERING: seq-cst load under the lock (every STATE store happens under it too).
  const cur = Atomics.load(d, q + QpCtx.STATE);
  const next = checkTransition(cur, mask, a);
  checkAttrs(mask, a);
  // INVARIANT: everything below was validated above; from here the command cannot fail.
  if ((mask & QpAttrMask.ACCESS_FLAGS) !== 0) d[q + QpCtx.ACCESS] = a[ModifyQpIn.ACCESS];
  if ((mask & QpAttrMask.AV) !== 0) d[q + QpCtx.DEST_PORT] = a[ModifyQpIn.DEST_PORT];
  for (const [bit, arg, word] of ATTRS) if ((mask & bit) !== 0) d[q + word] = a[arg];
  if (next === QpState.ERR) {
    moveToErr(ctx, qpn);
    return 0;
  }
  if (next === QpState.RESET) {
    // ORDERING: seq-cst loads of the last rung producers; the queues restart from there.
    d[q + QpCtx.SQ_CONS] = Atomics.load(ctx.bar, sqDoorbell(qpn) >> 2);
    d[q + QpCtx.RQ_CONS] = Atomics.load(ctx.bar, rqDoorbell(qpn) >> 2);
  }
  // ORDERING: seq-cst store; RQ doorbells and runners read STATE with Atomics.load.
  Atomics.store(d, q + QpCtx.STATE, next);
  return next === QpState.RTS ? qpn : 0;
}

/** QUERY_QP: out [0] state, [1] dest qpn, [2] dest port, [3] sq cons, [4] rq cons. */
export function queryQp(ctx: RnicCtx, a: Int32Array, out: Int32Array): void {
  requireZero(a, 1);
  const d = ctx.dev;
  const q = ctx.layout.qpBase(qpHandle(ctx, a[0]));
  // ORDERING: seq-cst load under the lock; a snapshot for the driver.
  out[0] = Atomics.load(d, q + QpCtx.STATE);
  out[1] = d[q + QpCtx.DEST_QPN];
  out[2] = d[q + QpCtx.DEST_PORT];
  out[3] = d[q + QpCtx.SQ_CONS];
  out[4] = d[q + QpCtx.RQ_CONS];
}

/**
 * Invalidates a QP's context: VALID cleared, epoch bumped (a thread still running it notices and
 * stops), back to RESET, doorbells cleared; an RNR waiter on the RQ doorbell is woken. Returns
 * the context's first word. Shared by DESTROY_QP and function-level reset.
 */
export function retireQp(ctx: RnicCtx, qpn: number): number {
  const d = ctx.dev;
  const q = ctx.layout.qpBase(qpn);
  d[q + QpCtx.VALID] = 0;
  d[q + QpCtx.EPOCH] = (d[q + QpCtx.EPOCH] + 1) | 0;
  d[q + QpCtx.BUSY] = 0;
  // ORDERING: seq-cst stores; RNR waiters sleeping on the RQ doorbell wake on the change.
  Atomics.store(d, q + QpCtx.STATE, QpState.RESET);
  Atomics.store(ctx.bar, sqDoorbell(qpn) >> 2, 0);
  Atomics.store(ctx.bar, rqDoorbell(qpn) >> 2, 0);
  Atomics.notify(ctx.bar, rqDoorbell(qpn) >> 2);
  return q;
}

/** DESTROY_QP: no completions; a thread still running it notices the epoch change and stops. */
export function destroyQp(ctx: RnicCtx, a: Int32Array): void {
  requireZero(a, 1);
  const L = ctx.layout;
  const d = ctx.dev;
  const qpn = qpHandle(ctx, a[0]);
  const q = retireQp(ctx, qpn);
  // ORDERING: seq-cst RMW; pairs with doorbells' Atomics.or (a runner finds the QP invalid anyway).
  Atomics.and(d, L.pending + (qpn >> 5), ~(1 << (qpn & 31)));
  d[L.pdBase(d[q + QpCtx.PD]) + PdCtx.USERS]--;
  d[L.cqBase(d[q + QpCtx.SEND_CQ]) + CqCtx.USERS]--;
  d[L.cqBase(d[q + QpCtx.RECV_CQ]) + CqCtx.USERS]--;
}
