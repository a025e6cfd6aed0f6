/**
 * MODIFY_QP for RC QPs (ibv_modify_qp.3): the state machine RESET → INIT → RTR → RTS, any → ERR,
 * any → RESET, with attribute changes in INIT and RTS. Each forward transition needs at least the
 * attributes of `RC_REQUIRED_MASK`; anything else — a missing attribute, a skipped state, a
 * `cur_qp_state` that is not the current one — is PV_ERR_RDMA_BAD_TRANSITION, and a refused
 * modify changes nothing. Arguments are the ModifyQpIn words of NicRegs.ts.
 *
 * INIT → RTR also opens (or reuses) the connection to the peer helper at `ahAttr.dlid`; the
 * command completes when the connection is up, and a peer that cannot be reached fails it with
 * PV_ERR_DISCONNECTED, the QP staying in INIT.
 */

import { pvError } from '../../../protocol/errors.js';
import { ModifyQpIn } from '../../../protocol/rdma/NicRegs.js';
import { Access, QpAttrMask, QpState, RC_REQUIRED_MASK } from '../../../protocol/rdma/Verbs.js';
import { toError } from './Completer.js';
import { QpWord, qpWord } from './Layout.js';
import type { SoftNic } from './SoftNic.js';
import type { SoftQp } from './SoftQp.js';
import { PSN_MASK } from './Wire.js';

const STATE_NAMES = ['RESET', 'INIT', 'RTR', 'RTS', 'SQD', 'SQE', 'ERR'];

/** Transitions RC allows (from → to), besides → RESET and → ERR from anywhere. */
function allowed(from: number, to: number): boolean {
  if (to === QpState.RESET || to === QpState.ERR) return true;
  return (
    (from === QpState.RESET && to === QpState.INIT) ||
    (from === QpState.INIT && (to === QpState.INIT || to === QpState.RTR)) ||
    (from === QpState.RTR && to === QpState.RTS) ||
    (from === QpState.RTS && to === QpState.RTS)
  );
}

function inRange(v: number, lo: number, hi: number, what: string): void {
  if (!Number.isInteger(v) || v < lo || v > hi) {
    throw pvError('PV_ERR_INVALID_ARG', `${what} must be in [${lo}, ${hi}], got ${v}`);
  }
}

/** Applies a MODIFY_QP; true when done, false when it waits for the connection (RTR). */
export function modifyQp(nic: SoftNic, qp: SoftQp, a: Int32Array): boolean {
  const mask = a[ModifyQpIn.MASK] >>> 0;
  const cur = qp.state;
  const next = (mask & QpAttrMask.STATE) !== 0 ? a[ModifyQpIn.STATE] : cur;
  const name = (s: number): string => STATE_NAMES[s] ?? `state ${s}`;
  if ((mask & QpAttrMask.CUR_STATE) !== 0 && a[ModifyQpIn.CUR_STATE] !== cur) {
    throw pvError('PV_ERR_RDMA_BAD_TRANSITION', `cur_qp_state ${name(a[ModifyQpIn.CUR_STATE])} but QP is ${name(cur)}`);
  }
  if (!allowed(cur, next)) {
    throw pvError('PV_ERR_RDMA_BAD_TRANSITION', `QP ${qp.qpn}: ${name(cur)} → ${name(next)} is not an RC transition`);
  }
  const required = cur !== next ? (RC_REQUIRED_MASK[next] ?? QpAttrMask.STATE) : 0;
  if ((mask & required) !== required) {
    const missing = (required & ~mask) >>> 0;
    throw pvError(
      'PV_ERR_RDMA_BAD_TRANSITION',
      `QP ${qp.qpn}: ${name(cur)} → ${name(next)} misses attributes (mask bits 0x${missing.toString(16)})`,
    );
  }
  const toRtr = cur === QpState.INIT && next === QpState.RTR;
  if ((mask & (QpAttrMask.AV | QpAttrMask.DEST_QPN)) !== 0 && !toRtr) {
    throw pvError('PV_ERR_RDMA_BAD_TRANSITION', `QP ${qp.qpn}: the destination is set only by INIT → RTR`);
  }
  check(a, mask);
  if (!toRtr) {
    apply(nic, qp, a, mask, next);
    return true;
  }
  const port = a[ModifyQpIn.DEST_PORT];
  const conn = nic.connFor(port);
  if (conn.connected) {
    apply(nic, qp, a, mask, next);
    return true;
  }
  // One closure per connect (control path). Nothing else can touch the QP meanwhile: the guest
  // is blocked in this command and the NIC serves one command at a time; `a` is the NIC's
  // private argument copy, which the next command overwrites only after this one finished.
  conn.waiters.push((err?: string): void => {
    if (err !== undefined) {
      nic.finishCommand(pvError('PV_ERR_DISCONNECTED').status, `QP ${qp.qpn}: cannot reach port ${port}: ${err}`);
      return;
    }
    apply(nic, qp, a, mask, next);
    nic.finishCommand(0, '');
  });
  return false;
}

/** Range checks of every attribute present in `mask` (before anything changes). */
function check(a: Int32Array, mask: number): void {
  if ((mask & QpAttrMask.STATE) !== 0) inRange(a[ModifyQpIn.STATE], QpState.RESET, QpState.ERR, 'qp_state');
  if ((mask & QpAttrMask.ACCESS_FLAGS) !== 0) {
    const f = a[ModifyQpIn.ACCESS];
    if ((f & ~(Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ | Access.REMOTE_ATOMIC)) !== 0) {
      throw pvError('PV_ERR_RDMA_BAD_ACCESS', `unknown qp_access_flags 0x${(f >>> 0).toString(16)}`);
    }
  }
  if ((mask & QpAttrMask.PORT) !== 0) inRange(a[ModifyQpIn.PORT], 1, 255, 'port_num');
  if ((mask & QpAttrMask.PATH_MTU) !== 0) inRange(a[ModifyQpIn.PATH_MTU], 1, 5, 'path_mtu');
  if ((mask & QpAttrMask.DEST_QPN) !== 0) inRange(a[ModifyQpIn.DEST_QPN], 1, 0xff_ffff, 'dest_qp_num');
  if ((mask & QpAttrMask.AV) !== 0) inRange(a[ModifyQpIn.DEST_PORT], 1, 0xffff, 'ah_attr.dlid (port)');
  if ((mask & QpAttrMask.RQ_PSN) !== 0) inRange(a[ModifyQpIn.RQ_PSN], 0, PSN_MASK, 'rq_psn');
  if ((mask & QpAttrMask.SQ_PSN) !== 0) inRange(a[ModifyQpIn.SQ_PSN], 0, PSN_MASK, 'sq_psn');
  if ((mask & QpAttrMask.MIN_RNR_TIMER) !== 0) inRange(a[ModifyQpIn.MIN_RNR_TIMER], 0, 31, 'min_rnr_timer');
  if ((mask & QpAttrMask.TIMEOUT) !== 0) inRange(a[ModifyQpIn.TIMEOUT], 0, 31, 'timeout');
  if ((mask & QpAttrMask.RETRY_CNT) !== 0) inRange(a[ModifyQpIn.RETRY_CNT], 0, 7, 'retry_cnt');
  if ((mask & QpAttrMask.RNR_RETRY) !== 0) inRange(a[ModifyQpIn.RNR_RETRY], 0, 7, 'rnr_retry');
  if ((mask & QpAttrMask.MAX_QP_RD_ATOMIC) !== 0) inRange(a[ModifyQpIn.MAX_RD_ATOMIC], 0, 255, 'max_rd_atomic');
  if ((mask & QpAttrMask.MAX_DEST_RD_ATOMIC) !== 0) {
    inRange(a[ModifyQpIn.MAX_DEST_RD_ATOMIC], 0, 255, 'max_dest_rd_atomic');
  }
}

/** Applies a checked modify. */
function apply(nic: SoftNic, qp: SoftQp, a: Int32Array, mask: number, next: QpState): void {
  if ((mask & QpAttrMask.ACCESS_FLAGS) !== 0) qp.accessFlags = a[ModifyQpIn.ACCESS];
  if ((mask & QpAttrMask.DEST_QPN) !== 0) qp.destQpn = a[ModifyQpIn.DEST_QPN];
  if ((mask & QpAttrMask.AV) !== 0) qp.destPort = a[ModifyQpIn.DEST_PORT];
  if ((mask & QpAttrMask.RQ_PSN) !== 0) qp.rqPsn = a[ModifyQpIn.RQ_PSN];
  if ((mask & QpAttrMask.SQ_PSN) !== 0) qp.sqPsn = a[ModifyQpIn.SQ_PSN];
  if ((mask & QpAttrMask.MIN_RNR_TIMER) !== 0) qp.minRnrTimer = a[ModifyQpIn.MIN_RNR_TIMER];
  if ((mask & QpAttrMask.TIMEOUT) !== 0) qp.timeout = a[ModifyQpIn.TIMEOUT];
  if ((mask & QpAttrMask.RETRY_CNT) !== 0) qp.retryCnt = a[ModifyQpIn.RETRY_CNT];
  if ((mask & QpAttrMask.RNR_RETRY) !== 0) qp.rnrRetry = a[ModifyQpIn.RNR_RETRY];
  const cur = qp.state;
  if (next === cur) {
    if (cur === QpState.RTS) {
      qp.rnrLeft = qp.rnrRetry;
      qp.retryLeft = qp.retryCnt;
    }
    return;
  }
  switch (next) {
    case QpState.RESET:
      qp.state = QpState.RESET;
      qp.resetQueues();
      qp.accessFlags = 0;
      qp.destQpn = 0;
      qp.destPort = 0;
      for (let w = QpWord.SQ_PROD; w <= QpWord.RQ_CONS; w++) {
        // ORDERING: the guest is blocked in this command and resets its own indices after it.
        Atomics.store(nic.ctrl, qpWord(qp.qpn, w), 0);
      }
      return;
    case QpState.ERR:
      toError(nic, qp);
      return;
    case QpState.RTR:
      qp.epsn = qp.rqPsn;
      qp.discardEpoch = -1;
      qp.epochSeen = false;
      qp.inActive = false;
      break;
    case QpState.RTS:
      qp.nextPsn = qp.sqPsn;
      qp.rnrLeft = qp.rnrRetry;
      qp.retryLeft = qp.retryCnt;
      break;
  }
  qp.state = next;
}
