/**
 * Data-ring slots of the `vrdma` device: the fast path of postSend/postRecv. Fixed binary
 * layouts (protobuf stays off the fast path, DESIGN §5); a request and its response share a
 * 128-byte slot.
 *
 * Request (F2B), 128 bytes:
 * ```
 * word   offset  size  field      writer  note
 * 0      0       4     op         front   PvDataOp: POST_SEND = 1, POST_RECV = 2
 * 1      4       4     qp         front   the guest's QP handle (from CreateQp)
 * 2      8       4     reserved   front   0
 * 3      12      4     reserved   front   0
 * 4-31   16      112   wqe        front   POST_SEND: send WQE words 0-27 (Wqe.ts);
 *                                         POST_RECV: recv WQE words 0-15, then 12 zero words
 * ```
 * Response (B2F), 128 bytes:
 * ```
 * word   offset  size  field      writer  note
 * 0      0       1     op         back    echoed from the backend's private copy
 * 0      1       1     pad        back    0
 * 0      2       2     status     back    i16: 0, or a catalogue status (the WR was rejected)
 * 1      4       4     qp         back    echoed
 * 2      8       4     wr_id_lo   back    echoed from the private copy of the WQE
 * 3      12      4     wr_id_hi   back
 * 4-31   16      112   pad        back    zero on every write (XSA-216)
 * ```
 * A response with status 0 only frees the slot: the work completion comes through the CQ. A
 * non-zero status means the backend refused the WR before the device saw it; the frontend
 * turns it into an error work completion (see `rejectWcStatus`).
 */

import { ERROR_CATALOGUE } from '../../errors.js';
import { WcStatus } from '../Verbs.js';
import { hi32, join64, lo32, SEND_WQE_USED_WORDS } from '../Wqe.js';
import { PV_DATA_SLOT_WORDS } from './PvConstants.js';

/** Operations on the data ring. */
export const enum PvDataOp {
  POST_SEND = 1,
  POST_RECV = 2,
}

/** Word indices of a data request. */
export const enum PvDataReqWord {
  OP = 0,
  QP = 1,
  RESERVED0 = 2,
  RESERVED1 = 3,
  /** First WQE word. */
  WQE = 4,
}

/** Header words before the WQE. */
export const PV_DATA_HDR_WORDS = 4;
/** WQE words a data request carries (the used words of a send WQE; a recv WQE uses 16). */
export const PV_DATA_WQE_WORDS = PV_DATA_SLOT_WORDS - PV_DATA_HDR_WORDS;

/** Word indices of a data response. */
export const enum PvDataRspWord {
  OP_STATUS = 0,
  QP = 1,
  WR_ID_LO = 2,
  WR_ID_HI = 3,
  PAD = 4,
}

/** A decoded data response. */
export interface PvDataResponse {
  op: number;
  /** Signed 16-bit status. */
  status: number;
  qp: number;
  wrId: number;
}

/** A fresh decode target. */
export function emptyDataResponse(): PvDataResponse {
  return { op: 0, status: 0, qp: 0, wrId: 0 };
}

/** Writes the request header (op, qp, zero reserved words) at word `w`; the WQE follows. */
export function encodeDataHeader(dst: Int32Array, w: number, op: PvDataOp, qp: number): void {
  dst[w + PvDataReqWord.OP] = op;
  dst[w + PvDataReqWord.QP] = qp | 0;
  dst[w + PvDataReqWord.RESERVED0] = 0;
  dst[w + PvDataReqWord.RESERVED1] = 0;
}

/** Writes a whole response slot (every word; padding zeroed) at word `w`. */
export function encodeDataResponse(
  dst: Int32Array,
  w: number,
  op: number,
  status: number,
  qp: number,
  wrId: number,
): void {
  dst[w + PvDataRspWord.OP_STATUS] = (op & 0xff) | ((status & 0xffff) << 16);
  dst[w + PvDataRspWord.QP] = qp | 0;
  dst[w + PvDataRspWord.WR_ID_LO] = lo32(wrId) | 0;
  dst[w + PvDataRspWord.WR_ID_HI] = hi32(wrId) | 0;
  for (let i = PvDataRspWord.PAD; i < PV_DATA_SLOT_WORDS; i++) dst[w + i] = 0;
}

/** Reads a response (the frontend does not trust it either: callers range-check `qp`). */
export function decodeDataResponse(src: Int32Array, w: number, out: PvDataResponse): PvDataResponse {
  const os = src[w + PvDataRspWord.OP_STATUS];
  out.op = os & 0xff;
  out.status = os >> 16; // arithmetic shift sign-extends the i16
  out.qp = src[w + PvDataRspWord.QP] >>> 0;
  out.wrId = join64(src[w + PvDataRspWord.WR_ID_LO], src[w + PvDataRspWord.WR_ID_HI] & 0x1fffff);
  return out;
}

/**
 * The work-completion status a frontend reports for a WR the backend refused with catalogue
 * `status` (libibverbs has no "refused by the hypervisor"; these are the nearest verbs meanings).
 */
export function rejectWcStatus(status: number): WcStatus {
  // An SGE outside any region the guest registered: what the HCA reports for a bad lkey.
  if (status === ERROR_CATALOGUE.PV_ERR_RDMA_BAD_MEMORY.status) return WcStatus.LOC_PROT_ERR;
  // num_sge or inline length beyond the QP's capabilities.
  if (status === ERROR_CATALOGUE.PV_ERR_BAD_LENGTH.status) return WcStatus.LOC_LEN_ERR;
  // Unknown QP, opcode or flags, QP state: the WR could not be executed on this QP.
  return WcStatus.LOC_QP_OP_ERR;
}

/** Static check used by the layout test: the send WQE's used words fill the slot exactly. */
export const PV_DATA_SLOT_EXACT = PV_DATA_HDR_WORDS + SEND_WQE_USED_WORDS === PV_DATA_SLOT_WORDS;
