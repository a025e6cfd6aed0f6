/**
 * Register map and command interface of pvio's RDMA NIC (BAR 0), shared by the device model
 * (hypervisor-sim) and the native driver (drivers/rdma-nic). The shape follows real HCAs and
 * VMware PVRDMA (reference §3.1): a command mailbox for control (the driver writes arguments,
 * rings the command doorbell, reads status and results), per-QP doorbell registers for the data
 * path (the driver writes the new producer index of its send or receive queue), and queues in
 * memory the driver allocates, reached by the device's DMA engine through the IOMMU.
 *
 * BAR 0 (byte offsets):
 * ```
 * offset          size   name            access  note
 * 0x000           4      VERSION         ro      NIC_VERSION
 * 0x004           4      PORT_ID         ro      this NIC's port id ("LID"), used in AhAttr.dlid
 * 0x008           4      MAX_QP          ro      QP numbers are 1 … MAX_QP − 1
 * 0x00C           4      MAX_CQ          ro
 * 0x010           4      MAX_MR          ro
 * 0x014           4      MAX_QP_WR       ro      largest send or receive queue
 * 0x018           4      MAX_CQE         ro      largest CQ
 * 0x01C           4      STATUS          ro      0 = ok; bit 0 = fatal error
 * 0x040           4      CMD_OPCODE      rw      NicCmd
 * 0x044           4      CMD_STATUS      ro      0 or a catalogue status (negative)
 * 0x048           4      CMD_DOORBELL    wo      write 1: execute the command (synchronously)
 * 0x080           128    CMD_IN[32]      rw      arguments (NicCmdIn per command)
 * 0x100           128    CMD_OUT[32]     ro      results
 * 0x1000 + 8·qpn  4      SQ_DB(qpn)      wo      new send-queue producer index (free-running)
 * 0x1004 + 8·qpn  4      RQ_DB(qpn)      wo      new receive-queue producer index
 * ```
 * BAR size = 0x1000 + 8·MAX_QP rounded up to a page.
 *
 * Queues in driver memory (DMA addresses = IOVAs, each queue IOVA-contiguous):
 *  - send queue: entries × SEND_WQE_SIZE (Wqe.ts), power of two entries;
 *  - receive queue: entries × RECV_WQE_SIZE;
 *  - completion queue: the ring of Cq.ts (header + entries × CQE_SIZE).
 * Memory regions are IOVA-contiguous: {va, length, iova}; the device translates
 * `addr ∈ [va, va + length)` to `iova + (addr − va)` and the IOMMU translates that.
 */

import type { QpAttr } from './Verbs.js';

/** Device version reported in VERSION. */
export const NIC_VERSION = 0x0001_0000;

/** Register byte offsets in BAR 0. */
export const enum NicReg {
  VERSION = 0x000,
  PORT_ID = 0x004,
  MAX_QP = 0x008,
  MAX_CQ = 0x00c,
  MAX_MR = 0x010,
  MAX_QP_WR = 0x014,
  MAX_CQE = 0x018,
  STATUS = 0x01c,
  CMD_OPCODE = 0x040,
  CMD_STATUS = 0x044,
  CMD_DOORBELL = 0x048,
  CMD_IN = 0x080,
  CMD_OUT = 0x100,
  DOORBELLS = 0x1000,
}

/** Arguments/results per command, in words. */
export const NIC_CMD_WORDS = 32;

/** Byte offset of the send-queue doorbell of `qpn`. */
export function sqDoorbell(qpn: number): number {
  return NicReg.DOORBELLS + qpn * 8;
}

/** Byte offset of the receive-queue doorbell of `qpn`. */
export function rqDoorbell(qpn: number): number {
  return NicReg.DOORBELLS + qpn * 8 + 4;
}

/** BAR 0 size for a NIC with `maxQp` QPs. */
export function nicBarSize(maxQp: number): number {
  return Math.ceil((NicReg.DOORBELLS + maxQp * 8) / 4096) * 4096;
}

/** Command opcodes. */
export const enum NicCmd {
  QUERY_PORT = 1,
  CREATE_PD = 2,
  DESTROY_PD = 3,
  CREATE_MR = 4,
  DESTROY_MR = 5,
  CREATE_CQ = 6,
  DESTROY_CQ = 7,
  CREATE_QP = 8,
  MODIFY_QP = 9,
  QUERY_QP = 10,
  DESTROY_QP = 11,
}

/**
 * Argument word indices (CMD_IN) and result word indices (CMD_OUT) per command. Addresses are
 * two words (lo, hi). Unused words must be zero.
 *
 * - QUERY_PORT: out [0] port id, [1] state (4 = ACTIVE), [2] active MTU enum.
 * - CREATE_PD: out [0] pdn.
 * - DESTROY_PD: in [0] pdn.
 * - CREATE_MR: in [0] pdn, [1] va lo, [2] va hi, [3] length, [4] access, [5] iova lo, [6] iova hi;
 *   out [0] mr index, [1] lkey, [2] rkey.
 * - DESTROY_MR: in [0] lkey.
 * - CREATE_CQ: in [0] entries (power of two), [1] ring iova lo, [2] ring iova hi; out [0] cqn.
 * - DESTROY_CQ: in [0] cqn.
 * - CREATE_QP: in [0] pdn, [1] send cqn, [2] recv cqn, [3] sq entries, [4] rq entries,
 *   [5] sq iova lo, [6] sq iova hi, [7] rq iova lo, [8] rq iova hi, [9] sq_sig_all,
 *   [10] max inline data, [11] max send sge, [12] max recv sge; out [0] qpn.
 * - MODIFY_QP: in [0] qpn, [1] attr mask (QpAttrMask), [2] qp state, [3] cur state,
 *   [4] access flags, [5] pkey index, [6] port, [7] path mtu, [8] dest qpn, [9] dest port id,
 *   [10] rq psn, [11] sq psn, [12] max rd atomic, [13] max dest rd atomic, [14] min rnr timer,
 *   [15] timeout, [16] retry cnt, [17] rnr retry.
 * - QUERY_QP: in [0] qpn; out [0] state, [1] dest qpn, [2] dest port, [3] sq cons, [4] rq cons.
 * - DESTROY_QP: in [0] qpn.
 */
export const enum ModifyQpIn {
  QPN = 0,
  MASK = 1,
  STATE = 2,
  CUR_STATE = 3,
  ACCESS = 4,
  PKEY = 5,
  PORT = 6,
  PATH_MTU = 7,
  DEST_QPN = 8,
  DEST_PORT = 9,
  RQ_PSN = 10,
  SQ_PSN = 11,
  MAX_RD_ATOMIC = 12,
  MAX_DEST_RD_ATOMIC = 13,
  MIN_RNR_TIMER = 14,
  TIMEOUT = 15,
  RETRY_CNT = 16,
  RNR_RETRY = 17,
}

/** Writes MODIFY_QP's arguments (every word, unused ones zero) from verbs-style attributes. */
export function encodeModifyQpArgs(a: Int32Array, qpn: number, attr: QpAttr, mask: number): void {
  a.fill(0, 0, NIC_CMD_WORDS);
  a[ModifyQpIn.QPN] = qpn;
  a[ModifyQpIn.MASK] = mask | 0;
  a[ModifyQpIn.STATE] = attr.qpState ?? 0;
  a[ModifyQpIn.CUR_STATE] = attr.curQpState ?? 0;
  a[ModifyQpIn.ACCESS] = attr.qpAccessFlags ?? 0;
  a[ModifyQpIn.PKEY] = attr.pkeyIndex ?? 0;
  a[ModifyQpIn.PORT] = attr.portNum ?? 0;
  a[ModifyQpIn.PATH_MTU] = attr.pathMtu ?? 0;
  a[ModifyQpIn.DEST_QPN] = attr.destQpNum ?? 0;
  a[ModifyQpIn.DEST_PORT] = attr.ahAttr?.dlid ?? 0;
  a[ModifyQpIn.RQ_PSN] = attr.rqPsn ?? 0;
  a[ModifyQpIn.SQ_PSN] = attr.sqPsn ?? 0;
  a[ModifyQpIn.MAX_RD_ATOMIC] = attr.maxRdAtomic ?? 0;
  a[ModifyQpIn.MAX_DEST_RD_ATOMIC] = attr.maxDestRdAtomic ?? 0;
  a[ModifyQpIn.MIN_RNR_TIMER] = attr.minRnrTimer ?? 0;
  a[ModifyQpIn.TIMEOUT] = attr.timeout ?? 0;
  a[ModifyQpIn.RETRY_CNT] = attr.retryCnt ?? 0;
  a[ModifyQpIn.RNR_RETRY] = attr.rnrRetry ?? 0;
}

/** Port state reported by QUERY_PORT. */
export const PORT_ACTIVE = 4;

/**
 * RNR timer: pvio reads `minRnrTimer` as a delay of `minRnrTimer × 10 µs` (IB encodes a table
 * from 0.01 to 655 ms; the scale here keeps conformance runs short while keeping the meaning:
 * a SEND that finds no receive posted is retried `rnrRetry` times, this far apart, then fails
 * with RNR_RETRY_EXC_ERR).
 */
export const RNR_TIMER_UNIT_US = 10;
