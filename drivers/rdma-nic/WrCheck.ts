/**
 * Checks of work requests against a QP's capabilities, shared by the driver (which must not
 * encode a WR that does not fit its WQE) and the verbs API (which gives every transport the same
 * errors). Each failure is `PV_ERR_RDMA_BAD_WR` with a message naming the rule, as
 * `ibv_post_send` fails with EINVAL/ENOMEM and `bad_wr` pointing at the culprit.
 *
 * Allocation-free on success: no closures, no temporary arrays (these run per request).
 */

import { pvError } from '../../protocol/errors.js';
import { type QpCap, type RecvWr, SendFlags, type SendWr, type Sge, WrOpcode } from '../../protocol/rdma/Verbs.js';

const U32_MAX = 0xffff_ffff;
/** Largest RC message (IB: 2^31 bytes). */
export const MAX_MESSAGE_BYTES = 0x8000_0000;
/** Send flags pvio knows. */
const SEND_FLAGS_MASK = SendFlags.FENCE | SendFlags.SIGNALED | SendFlags.SOLICITED | SendFlags.INLINE;

function isU32(x: unknown): boolean {
  return typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= U32_MAX;
}

function isAddr(x: unknown): boolean {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

function badWr(what: string): never {
  throw pvError('PV_ERR_RDMA_BAD_WR', what);
}

/** Checks a scatter list; returns the total byte count. */
function checkSgList(sgList: readonly Sge[] | undefined, max: number, kind: string): number {
  if (!Array.isArray(sgList)) badWr(`${kind} WR: sgList must be an array`);
  if (sgList.length > max) badWr(`${kind} WR: ${sgList.length} SGEs, the QP allows ${max}`);
  let total = 0;
  for (let i = 0; i < sgList.length; i++) {
    const s = sgList[i];
    if (s === null || typeof s !== 'object') badWr(`${kind} WR: SGE ${i} is not an object`);
    if (!isAddr(s.addr)) badWr(`${kind} WR: SGE ${i} address ${s.addr} is not a safe integer ≥ 0`);
    if (!isU32(s.length)) badWr(`${kind} WR: SGE ${i} length ${s.length} is not a u32`);
    if (!isU32(s.lkey)) badWr(`${kind} WR: SGE ${i} lkey ${s.lkey} is not a u32`);
    total += s.length;
  }
  if (total > MAX_MESSAGE_BYTES) badWr(`${kind} WR: ${total} bytes exceed the ${MAX_MESSAGE_BYTES}-byte message limit`);
  return total;
}

/**
 * Checks one send WR against `cap`; returns its total length (the inline payload size when
 * INLINE is set).
 */
export function checkSendWr(wr: SendWr, cap: QpCap): number {
  if (wr === null || typeof wr !== 'object') badWr('send WR is not an object');
  if (!isAddr(wr.wrId)) badWr(`send WR: wrId ${wr.wrId} is not a safe integer ≥ 0`);
  const op = wr.opcode;
  if (
    op !== WrOpcode.RDMA_WRITE &&
    op !== WrOpcode.RDMA_WRITE_WITH_IMM &&
    op !== WrOpcode.SEND &&
    op !== WrOpcode.SEND_WITH_IMM &&
    op !== WrOpcode.RDMA_READ
  ) {
    badWr(`send WR ${wr.wrId}: unsupported opcode ${op}`);
  }
  const flags = wr.sendFlags ?? 0;
  if (!Number.isInteger(flags) || (flags & ~SEND_FLAGS_MASK) !== 0 || flags < 0) {
    badWr(`send WR ${wr.wrId}: unknown send flags ${flags}`);
  }
  if (wr.immData !== undefined && !isU32(wr.immData)) badWr(`send WR ${wr.wrId}: immData is not a u32`);
  const rdma = op === WrOpcode.RDMA_WRITE || op === WrOpcode.RDMA_WRITE_WITH_IMM || op === WrOpcode.RDMA_READ;
  if (rdma) {
    if (!isAddr(wr.remoteAddr)) badWr(`send WR ${wr.wrId}: remoteAddr ${wr.remoteAddr} is not a safe integer ≥ 0`);
    if (!isU32(wr.rkey)) badWr(`send WR ${wr.wrId}: rkey ${wr.rkey} is not a u32`);
  }
  const total = checkSgList(wr.sgList, cap.maxSendSge, 'send');
  if ((flags & SendFlags.INLINE) !== 0) {
    if (op === WrOpcode.RDMA_READ) badWr(`send WR ${wr.wrId}: RDMA_READ cannot be INLINE`);
    if (total > cap.maxInlineData) {
      badWr(`send WR ${wr.wrId}: ${total} inline bytes, the QP allows ${cap.maxInlineData}`);
    }
  }
  return total;
}

/** Checks one receive WR against `cap`; returns its total length. */
export function checkRecvWr(wr: RecvWr, cap: QpCap): number {
  if (wr === null || typeof wr !== 'object') badWr('receive WR is not an object');
  if (!isAddr(wr.wrId)) badWr(`receive WR: wrId ${wr.wrId} is not a safe integer ≥ 0`);
  return checkSgList(wr.sgList, cap.maxRecvSge, 'receive');
}
