/**
 * Completions and the error state: CQEs for send and receive WQEs, the move to ERR after an error
 * completion, and the flush of everything outstanding with WR_FLUSH_ERR (IB: "all outstanding and
 * newly posted WRs complete with flush error", signaled or not).
 *
 * SQ_CONS and RQ_CONS are published BEFORE the CQE of the WQE they release, as a NIC retires a
 * WQE before it writes the completion: a guest that polled a completion may post into the slots
 * it frees at once (perftest keeps tx_depth WRs in flight this way) and never finds them full.
 */

import { QpState, SendFlags, WcFlags, WcOpcode, WcStatus, WrOpcode } from '../../../protocol/rdma/Verbs.js';
import { decodeRecvWqe, decodeSendWqe, RECV_WQE_WORDS, SEND_WQE_WORDS } from '../../../protocol/rdma/Wqe.js';
import { QpWord, qpWord } from './Layout.js';
import type { SoftNic } from './SoftNic.js';
import type { SoftQp } from './SoftQp.js';

/** The work-completion opcode of a send WQE's opcode. */
export function wcOpcodeOf(op: number): WcOpcode {
  if (op === WrOpcode.RDMA_READ) return WcOpcode.RDMA_READ;
  if (op === WrOpcode.RDMA_WRITE || op === WrOpcode.RDMA_WRITE_WITH_IMM) return WcOpcode.RDMA_WRITE;
  return WcOpcode.SEND;
}

/** Publishes SQ_CONS = sqAcked. */
export function publishSq(nic: SoftNic, qp: SoftQp): void {
  // ORDERING: seq-cst store before the CQE is published; pairs with the guest's load of SQ_CONS
  // in postSend after it polled that CQE.
  Atomics.store(nic.ctrl, qpWord(qp.qpn, QpWord.SQ_CONS), qp.sqAcked | 0);
}

/** Publishes RQ_CONS = rqCons (only when no receive WQE is taken). */
export function publishRq(nic: SoftNic, qp: SoftQp): void {
  // ORDERING: seq-cst store before the CQE is published; pairs with the guest's load of RQ_CONS.
  Atomics.store(nic.ctrl, qpWord(qp.qpn, QpWord.RQ_CONS), qp.rqCons | 0);
}

/**
 * Completes the oldest outstanding send WQE with `status`. Success makes a CQE only when the WQE
 * is signaled; an error always makes one and moves the QP to ERR.
 */
export function completeSendHead(nic: SoftNic, qp: SoftQp, status: WcStatus): void {
  const slot = qp.sqSlot(qp.sqAcked);
  const w = qp.wqe[slot];
  const signaled = status !== WcStatus.SUCCESS || qp.sigAll || (w.sendFlags & SendFlags.SIGNALED) !== 0;
  if (signaled) {
    const wc = nic.wc;
    wc.wrId = w.wrId;
    wc.status = status;
    wc.opcode = wcOpcodeOf(w.opcode);
    wc.vendorErr = 0;
    wc.byteLen = status === WcStatus.SUCCESS ? qp.wqeLen[slot] : 0;
    wc.immData = 0;
    wc.qpNum = qp.qpn;
    wc.srcQp = 0;
    wc.wcFlags = 0;
  }
  // Account for the WQE before emitting: a full CQ moves the QP to ERR from inside `emit`, and
  // the flush that follows must start after this WQE, not complete it a second time.
  if (qp.sqSend === qp.sqAcked) {
    // An error found before the WQE was fully transmitted.
    qp.sqSend = (qp.sqSend + 1) >>> 0;
    qp.sendOff = 0;
  }
  qp.sqAcked = (qp.sqAcked + 1) >>> 0;
  qp.readOff = 0;
  qp.rnrLeft = qp.rnrRetry;
  qp.retryLeft = qp.retryCnt;
  publishSq(nic, qp);
  if (signaled) emit(nic, qp, true);
  if (status !== WcStatus.SUCCESS) toError(nic, qp);
}

/** Completes the receive WQE taken by the current message. */
export function completeRecv(
  nic: SoftNic,
  qp: SoftQp,
  status: WcStatus,
  opcode: WcOpcode,
  byteLen: number,
  imm: number | undefined,
): void {
  const wc = nic.wc;
  wc.wrId = qp.recv.wrId;
  wc.status = status;
  wc.opcode = opcode;
  wc.vendorErr = 0;
  wc.byteLen = status === WcStatus.SUCCESS ? byteLen : 0;
  wc.immData = imm ?? 0;
  wc.qpNum = qp.qpn;
  wc.srcQp = qp.destQpn;
  wc.wcFlags = imm === undefined ? 0 : WcFlags.WITH_IMM;
  qp.recvTaken = false;
  publishRq(nic, qp);
  emit(nic, qp, false);
  if (status !== WcStatus.SUCCESS) toError(nic, qp);
}

/**
 * Moves a QP to ERR: stops its requester, drops the message being received, and flushes every
 * outstanding and posted WQE. Idempotent; later doorbells on an ERR QP flush at once.
 */
export function toError(nic: SoftNic, qp: SoftQp): void {
  if (qp.state !== QpState.ERR) {
    qp.state = QpState.ERR;
    qp.cancelTimer();
    qp.inActive = false;
  }
  flushSend(nic, qp);
  flushRecv(nic, qp);
}

/** Flushes the send queue up to the guest's producer index (ERR state). */
export function flushSend(nic: SoftNic, qp: SoftQp): void {
  const wc = nic.wc;
  // Posted but never read: read each once for its wr_id (the rest of the copy is not used).
  // ORDERING: seq-cst load of the producer index the guest stored after writing its WQEs.
  const prod = Atomics.load(nic.ctrl, qpWord(qp.qpn, QpWord.SQ_PROD)) >>> 0;
  const valid = (prod - qp.sqAcked) >>> 0 <= qp.sqEntries;
  const end = valid ? prod : qp.sqHead;
  while (qp.sqHead !== end) {
    decodeSendWqe(qp.sqWords, qp.sqSlot(qp.sqHead) * SEND_WQE_WORDS, qp.wqe[qp.sqSlot(qp.sqHead)]);
    qp.sqHead = (qp.sqHead + 1) >>> 0;
  }
  if (qp.sqAcked === qp.sqHead) return;
  while (qp.sqAcked !== qp.sqHead) {
    const w = qp.wqe[qp.sqSlot(qp.sqAcked)];
    wc.wrId = w.wrId;
    wc.status = WcStatus.WR_FLUSH_ERR;
    wc.opcode = wcOpcodeOf(w.opcode);
    wc.vendorErr = 0;
    wc.byteLen = 0;
    wc.immData = 0;
    wc.qpNum = qp.qpn;
    wc.srcQp = 0;
    wc.wcFlags = 0;
    emit(nic, qp, true);
    qp.sqAcked = (qp.sqAcked + 1) >>> 0;
  }
  qp.sqSend = qp.sqAcked;
  qp.sendOff = 0;
  qp.readOff = 0;
  publishSq(nic, qp);
}

/** Flushes the receive queue up to the guest's producer index (ERR state). */
export function flushRecv(nic: SoftNic, qp: SoftQp): void {
  if (qp.recvTaken) flushRecvWqe(nic, qp);
  // ORDERING: seq-cst load of the producer index the guest stored after writing its WQEs.
  const prod = Atomics.load(nic.ctrl, qpWord(qp.qpn, QpWord.RQ_PROD)) >>> 0;
  // A producer more than a queue ahead is garbage: flush nothing more (the QP is in ERR anyway).
  if ((prod - qp.rqCons) >>> 0 > qp.rqEntries) return;
  if (prod === qp.rqCons) return;
  while (qp.rqCons !== prod) {
    decodeRecvWqe(qp.rqWords, (qp.rqCons & (qp.rqEntries - 1)) * RECV_WQE_WORDS, qp.recv);
    qp.rqCons = (qp.rqCons + 1) >>> 0;
    flushRecvWqe(nic, qp);
  }
  publishRq(nic, qp);
}

/** Completes `qp.recv` with WR_FLUSH_ERR. */
function flushRecvWqe(nic: SoftNic, qp: SoftQp): void {
  const wc = nic.wc;
  qp.recvTaken = false;
  wc.wrId = qp.recv.wrId;
  wc.status = WcStatus.WR_FLUSH_ERR;
  wc.opcode = WcOpcode.RECV;
  wc.vendorErr = 0;
  wc.byteLen = 0;
  wc.immData = 0;
  wc.qpNum = qp.qpn;
  wc.srcQp = 0;
  wc.wcFlags = 0;
  emit(nic, qp, false);
  publishRq(nic, qp);
}

/** Writes `nic.wc` to the QP's send or receive CQ; a full CQ puts its QPs in ERR. */
function emit(nic: SoftNic, qp: SoftQp, send: boolean): void {
  const cq = send ? qp.sendCq : qp.recvCq;
  if (!nic.res.complete(cq, nic.wc)) nic.cqOverflow(cq);
}
