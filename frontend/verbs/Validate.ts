/**
 * Argument checks of the verbs API, done once above every provider so a program gets the same
 * typed error whatever the transport (the device or backend still checks everything again: it
 * cannot trust the caller). Rules cite the libibverbs man pages (reference §2).
 */

import { pvError } from '../../protocol/errors.js';
import {
  ACCESS_MASK,
  Access,
  QP_ATTR_KNOWN_MASK,
  type QpAttr,
  QpAttrMask,
  type QpCap,
  QpState,
  RC_REQUIRED_MASK,
} from '../../protocol/rdma/Verbs.js';
import { MAX_INLINE_DATA, MAX_RECV_SGE, MAX_SEND_SGE } from '../../protocol/rdma/Wqe.js';

/** PSNs and QP numbers are 24-bit in IB. */
const U24_MAX = 0xff_ffff;

/**
 * `ibv_reg_mr.3`: only known access bits; REMOTE_WRITE and REMOTE_ATOMIC require LOCAL_WRITE.
 * Throws PV_ERR_RDMA_BAD_ACCESS.
 */
export function checkAccess(access: number): void {
  if (!Number.isInteger(access) || access < 0 || (access & ~ACCESS_MASK) !== 0) {
    throw pvError('PV_ERR_RDMA_BAD_ACCESS', `access flags ${access} include bits pvio does not implement`);
  }
  if ((access & (Access.REMOTE_WRITE | Access.REMOTE_ATOMIC)) !== 0 && (access & Access.LOCAL_WRITE) === 0) {
    throw pvError('PV_ERR_RDMA_BAD_ACCESS', 'REMOTE_WRITE and REMOTE_ATOMIC require LOCAL_WRITE (ibv_reg_mr.3)');
  }
}

/** Checks requested QP capabilities against what any pvio transport can carry (PV_ERR_LIMIT). */
export function checkQpCap(cap: QpCap): void {
  if (cap === null || typeof cap !== 'object') throw pvError('PV_ERR_INVALID_ARG', 'QP cap is required');
  const field = (key: keyof QpCap, max: number): void => {
    const v = cap[key];
    if (!Number.isInteger(v) || v < 0)
      throw pvError('PV_ERR_INVALID_ARG', `QP cap ${key} = ${v} is not an integer ≥ 0`);
    if (v > max) throw pvError('PV_ERR_LIMIT', `QP cap ${key} = ${v} exceeds ${max}`);
  };
  field('maxSendWr', 0xffff_ffff);
  field('maxRecvWr', 0xffff_ffff);
  field('maxSendSge', MAX_SEND_SGE);
  field('maxRecvSge', MAX_RECV_SGE);
  field('maxInlineData', MAX_INLINE_DATA);
}

function inRange(attr: QpAttr, key: keyof QpAttr, min: number, max: number): void {
  const v = attr[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw pvError('PV_ERR_INVALID_ARG', `QP attribute ${key} = ${String(v)} is not in ${min} … ${max}`);
  }
}

/**
 * True for the RC transitions pvio implements (IB spec 10.3.1, as the NIC model does):
 * RESET → INIT → RTR → RTS ⇄ SQD, and any state → RESET or ERR.
 */
export function isLegalTransition(from: QpState, to: QpState): boolean {
  if (to === QpState.RESET || to === QpState.ERR) return true;
  if (to === QpState.INIT) return from === QpState.RESET;
  if (to === QpState.RTR) return from === QpState.INIT;
  if (to === QpState.RTS) return from === QpState.RTR || from === QpState.SQD;
  if (to === QpState.SQD) return from === QpState.RTS;
  return false;
}

/**
 * Checks a `modifyQp` call for an RC QP currently in `current` and returns the target state.
 * Unknown mask bits or out-of-range values: PV_ERR_INVALID_ARG; an illegal transition or a
 * missing required attribute (`RC_REQUIRED_MASK`, ibv_modify_qp.3 NOTES):
 * PV_ERR_RDMA_BAD_TRANSITION; bad access flags: PV_ERR_RDMA_BAD_ACCESS. Nothing is modified
 * when a check fails.
 */
export function checkModifyQp(current: QpState, attr: QpAttr, mask: number): QpState {
  if (attr === null || typeof attr !== 'object') throw pvError('PV_ERR_INVALID_ARG', 'QP attributes are required');
  if (!Number.isInteger(mask) || mask < 0 || (mask & ~QP_ATTR_KNOWN_MASK) !== 0) {
    throw pvError('PV_ERR_INVALID_ARG', `attribute mask ${mask} has bits pvio does not implement`);
  }
  // Every pvio modifyQp is a state transition (attribute-only changes are not implemented).
  if ((mask & QpAttrMask.STATE) === 0) {
    throw pvError('PV_ERR_RDMA_BAD_TRANSITION', 'the STATE attribute is required in every modifyQp');
  }
  inRange(attr, 'qpState', QpState.RESET, QpState.ERR);
  const to = attr.qpState as QpState;
  if ((mask & QpAttrMask.CUR_STATE) !== 0 && attr.curQpState !== current) {
    throw pvError('PV_ERR_RDMA_BAD_TRANSITION', `curQpState ${attr.curQpState} but the QP is in state ${current}`);
  }
  if (!isLegalTransition(current, to)) {
    throw pvError('PV_ERR_RDMA_BAD_TRANSITION', `RC QP cannot go from state ${current} to ${to}`);
  }
  // The three bring-up steps need their attributes; the other transitions need only STATE.
  const bringUp =
    (current === QpState.RESET && to === QpState.INIT) ||
    (current === QpState.INIT && to === QpState.RTR) ||
    (current === QpState.RTR && to === QpState.RTS);
  const required = bringUp ? RC_REQUIRED_MASK[to] : QpAttrMask.STATE;
  if ((mask & required) !== required) {
    throw pvError(
      'PV_ERR_RDMA_BAD_TRANSITION',
      `state ${current} → ${to} needs attribute mask ${required}, got ${mask} (missing ${required & ~mask})`,
    );
  }
  if ((mask & QpAttrMask.ACCESS_FLAGS) !== 0) {
    const a = attr.qpAccessFlags;
    if (typeof a !== 'number' || !Number.isInteger(a) || a < 0 || (a & ~ACCESS_MASK) !== 0) {
      throw pvError('PV_ERR_RDMA_BAD_ACCESS', `QP access flags ${String(a)} include bits pvio does not implement`);
    }
  }
  if ((mask & QpAttrMask.PKEY_INDEX) !== 0) inRange(attr, 'pkeyIndex', 0, 0xffff);
  if ((mask & QpAttrMask.PORT) !== 0) inRange(attr, 'portNum', 1, 0xff);
  if ((mask & QpAttrMask.PATH_MTU) !== 0) inRange(attr, 'pathMtu', 1, 5);
  if ((mask & QpAttrMask.DEST_QPN) !== 0) inRange(attr, 'destQpNum', 1, U24_MAX);
  if ((mask & QpAttrMask.RQ_PSN) !== 0) inRange(attr, 'rqPsn', 0, U24_MAX);
  if ((mask & QpAttrMask.SQ_PSN) !== 0) inRange(attr, 'sqPsn', 0, U24_MAX);
  if ((mask & QpAttrMask.MAX_QP_RD_ATOMIC) !== 0) inRange(attr, 'maxRdAtomic', 0, 0xff);
  if ((mask & QpAttrMask.MAX_DEST_RD_ATOMIC) !== 0) inRange(attr, 'maxDestRdAtomic', 0, 0xff);
  if ((mask & QpAttrMask.MIN_RNR_TIMER) !== 0) inRange(attr, 'minRnrTimer', 0, 31);
  if ((mask & QpAttrMask.TIMEOUT) !== 0) inRange(attr, 'timeout', 0, 31);
  if ((mask & QpAttrMask.RETRY_CNT) !== 0) inRange(attr, 'retryCnt', 0, 7);
  if ((mask & QpAttrMask.RNR_RETRY) !== 0) inRange(attr, 'rnrRetry', 0, 7);
  if ((mask & QpAttrMask.AV) !== 0) {
    const dlid = attr.ahAttr?.dlid;
    if (typeof dlid !== 'number' || !Number.isInteger(dlid) || dlid < 0 || dlid > 0xffff_ffff) {
      throw pvError('PV_ERR_INVALID_ARG', `ahAttr.dlid ${String(dlid)} is not a port id`);
    }
  }
  return to;
}
