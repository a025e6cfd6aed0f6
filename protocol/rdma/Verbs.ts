/**
 * The libibverbs vocabulary pvio mirrors (rdma-core `libibverbs/verbs.h`, reference
 * rdma-perftest-lending.md §2), in camelCase, with the numeric values of the real ABI so slots
 * and device queues carry the same numbers a real HCA would. 64-bit fields (`wr_id`, addresses)
 * are JavaScript numbers limited to safe integers (< 2^53) and travel as two u32 words.
 */

/** `ibv_access_flags`. REMOTE_WRITE (and REMOTE_ATOMIC) require LOCAL_WRITE (ibv_reg_mr.3). */
export const enum Access {
  LOCAL_WRITE = 1,
  REMOTE_WRITE = 2,
  REMOTE_READ = 4,
  REMOTE_ATOMIC = 8,
}

/** Access bits pvio implements; anything else is refused at registration. */
export const ACCESS_MASK = 0xf;

/** `ibv_qp_type` (RC only). */
export const enum QpType {
  RC = 2,
}

/** `ibv_qp_state`. */
export const enum QpState {
  RESET = 0,
  INIT = 1,
  RTR = 2,
  RTS = 3,
  SQD = 4,
  SQE = 5,
  ERR = 6,
}

/** `ibv_qp_attr_mask` bits used by RC transitions. */
export const enum QpAttrMask {
  STATE = 1 << 0,
  CUR_STATE = 1 << 1,
  ACCESS_FLAGS = 1 << 3,
  PKEY_INDEX = 1 << 4,
  PORT = 1 << 5,
  AV = 1 << 7,
  PATH_MTU = 1 << 8,
  TIMEOUT = 1 << 9,
  RETRY_CNT = 1 << 10,
  RNR_RETRY = 1 << 11,
  RQ_PSN = 1 << 12,
  MAX_QP_RD_ATOMIC = 1 << 13,
  MIN_RNR_TIMER = 1 << 15,
  SQ_PSN = 1 << 16,
  MAX_DEST_RD_ATOMIC = 1 << 17,
  DEST_QPN = 1 << 20,
}

/** Every attribute-mask bit pvio understands; a mask with any other bit is refused. */
export const QP_ATTR_KNOWN_MASK =
  QpAttrMask.STATE |
  QpAttrMask.CUR_STATE |
  QpAttrMask.ACCESS_FLAGS |
  QpAttrMask.PKEY_INDEX |
  QpAttrMask.PORT |
  QpAttrMask.AV |
  QpAttrMask.PATH_MTU |
  QpAttrMask.TIMEOUT |
  QpAttrMask.RETRY_CNT |
  QpAttrMask.RNR_RETRY |
  QpAttrMask.RQ_PSN |
  QpAttrMask.MAX_QP_RD_ATOMIC |
  QpAttrMask.MIN_RNR_TIMER |
  QpAttrMask.SQ_PSN |
  QpAttrMask.MAX_DEST_RD_ATOMIC |
  QpAttrMask.DEST_QPN;

/** Attributes each RC transition requires at least (ibv_modify_qp.3 NOTES). */
export const RC_REQUIRED_MASK: Readonly<Record<number, number>> = {
  [QpState.INIT]: QpAttrMask.STATE | QpAttrMask.PKEY_INDEX | QpAttrMask.PORT | QpAttrMask.ACCESS_FLAGS,
  [QpState.RTR]:
    QpAttrMask.STATE |
    QpAttrMask.AV |
    QpAttrMask.PATH_MTU |
    QpAttrMask.DEST_QPN |
    QpAttrMask.RQ_PSN |
    QpAttrMask.MAX_DEST_RD_ATOMIC |
    QpAttrMask.MIN_RNR_TIMER,
  [QpState.RTS]:
    QpAttrMask.STATE |
    QpAttrMask.SQ_PSN |
    QpAttrMask.MAX_QP_RD_ATOMIC |
    QpAttrMask.RETRY_CNT |
    QpAttrMask.RNR_RETRY |
    QpAttrMask.TIMEOUT,
};

/** `ibv_wr_opcode` (the ones pvio implements). */
export const enum WrOpcode {
  RDMA_WRITE = 0,
  RDMA_WRITE_WITH_IMM = 1,
  SEND = 2,
  SEND_WITH_IMM = 3,
  RDMA_READ = 4,
}

/** `ibv_send_flags`. */
export const enum SendFlags {
  FENCE = 1,
  SIGNALED = 2,
  SOLICITED = 4,
  INLINE = 8,
}

/** `ibv_wc_opcode`. Receive completions have bit 7 set (`opcode & RECV`). */
export const enum WcOpcode {
  SEND = 0,
  RDMA_WRITE = 1,
  RDMA_READ = 2,
  RECV = 128,
  RECV_RDMA_WITH_IMM = 129,
}

/** `ibv_wc_flags`. */
export const enum WcFlags {
  GRH = 1,
  WITH_IMM = 2,
}

/** `ibv_wc_status` with libibverbs' numbering. */
export const enum WcStatus {
  SUCCESS = 0,
  LOC_LEN_ERR = 1,
  LOC_QP_OP_ERR = 2,
  LOC_EEC_OP_ERR = 3,
  LOC_PROT_ERR = 4,
  WR_FLUSH_ERR = 5,
  MW_BIND_ERR = 6,
  BAD_RESP_ERR = 7,
  LOC_ACCESS_ERR = 8,
  REM_INV_REQ_ERR = 9,
  REM_ACCESS_ERR = 10,
  REM_OP_ERR = 11,
  RETRY_EXC_ERR = 12,
  RNR_RETRY_EXC_ERR = 13,
  LOC_RDD_VIOL_ERR = 14,
  REM_INV_RD_REQ_ERR = 15,
  REM_ABORT_ERR = 16,
  INV_EECN_ERR = 17,
  INV_EEC_STATE_ERR = 18,
  FATAL_ERR = 19,
  RESP_TIMEOUT_ERR = 20,
  GENERAL_ERR = 21,
  TM_ERR = 22,
  TM_RNDV_INCOMPLETE = 23,
}

const WC_STATUS_STR = [
  'success',
  'local length error',
  'local QP operation error',
  'local EE context operation error',
  'local protection error',
  'Work Request Flushed Error',
  'memory management operation error',
  'bad response error',
  'local access error',
  'remote invalid request error',
  'remote access error',
  'remote operation error',
  'transport retry counter exceeded',
  'RNR retry counter exceeded',
  'local RDD violation error',
  'remote invalid RD request',
  'operation aborted',
  'invalid EE context number',
  'invalid EE context state',
  'fatal error',
  'response timeout error',
  'general error',
  'TM error',
  'TM software rendezvous',
];

/** `ibv_wc_status_str`: libibverbs' text, "unknown" when out of range. */
export function wcStatusStr(status: number): string {
  return WC_STATUS_STR[status] ?? 'unknown';
}

const WC_STATUS_NAMES = [
  'SUCCESS',
  'LOC_LEN_ERR',
  'LOC_QP_OP_ERR',
  'LOC_EEC_OP_ERR',
  'LOC_PROT_ERR',
  'WR_FLUSH_ERR',
  'MW_BIND_ERR',
  'BAD_RESP_ERR',
  'LOC_ACCESS_ERR',
  'REM_INV_REQ_ERR',
  'REM_ACCESS_ERR',
  'REM_OP_ERR',
  'RETRY_EXC_ERR',
  'RNR_RETRY_EXC_ERR',
  'LOC_RDD_VIOL_ERR',
  'REM_INV_RD_REQ_ERR',
  'REM_ABORT_ERR',
  'INV_EECN_ERR',
  'INV_EEC_STATE_ERR',
  'FATAL_ERR',
  'RESP_TIMEOUT_ERR',
  'GENERAL_ERR',
  'TM_ERR',
  'TM_RNDV_INCOMPLETE',
];

/** The enum name of a status (`'REM_ACCESS_ERR'`), for messages and tests. */
export function wcStatusName(status: number): string {
  return WC_STATUS_NAMES[status] ?? `UNKNOWN_${status}`;
}

/** `ibv_sge`: a local buffer, by address inside a memory region and that region's lkey. */
export interface Sge {
  addr: number;
  length: number;
  lkey: number;
}

/** `ibv_send_wr` (single WR; pvio's postSend takes one or an array). */
export interface SendWr {
  wrId: number;
  sgList: Sge[];
  opcode: WrOpcode;
  sendFlags?: number;
  /** Immediate data (u32) for *_WITH_IMM. */
  immData?: number;
  /** For RDMA_WRITE*, RDMA_READ. */
  remoteAddr?: number;
  rkey?: number;
}

/** `ibv_recv_wr`. */
export interface RecvWr {
  wrId: number;
  sgList: Sge[];
}

/** `ibv_wc`. On error only wrId, status, qpNum and vendorErr are meaningful. */
export interface Wc {
  wrId: number;
  status: WcStatus;
  opcode: WcOpcode;
  vendorErr: number;
  byteLen: number;
  immData: number;
  qpNum: number;
  srcQp: number;
  wcFlags: number;
}

/** A fresh, zeroed work completion to poll into. */
export function emptyWc(): Wc {
  return { wrId: 0, status: 0, opcode: 0, vendorErr: 0, byteLen: 0, immData: 0, qpNum: 0, srcQp: 0, wcFlags: 0 };
}

/** Copies a completion field by field (no allocation). */
export function copyWc(dst: Wc, src: Wc): void {
  dst.wrId = src.wrId;
  dst.status = src.status;
  dst.opcode = src.opcode;
  dst.vendorErr = src.vendorErr;
  dst.byteLen = src.byteLen;
  dst.immData = src.immData;
  dst.qpNum = src.qpNum;
  dst.srcQp = src.srcQp;
  dst.wcFlags = src.wcFlags;
}

/** `ibv_qp_cap`. */
export interface QpCap {
  maxSendWr: number;
  maxRecvWr: number;
  maxSendSge: number;
  maxRecvSge: number;
  maxInlineData: number;
}

/** Address vector: which port (NIC) the peer QP lives on. pvio addresses NICs by a port id. */
export interface AhAttr {
  /** Destination port id (the peer NIC's `portId`, exchanged out of band like a LID). */
  dlid: number;
}

/** `ibv_qp_attr` (the fields RC uses). */
export interface QpAttr {
  qpState?: QpState;
  curQpState?: QpState;
  qpAccessFlags?: number;
  pkeyIndex?: number;
  portNum?: number;
  pathMtu?: number;
  destQpNum?: number;
  rqPsn?: number;
  sqPsn?: number;
  maxRdAtomic?: number;
  maxDestRdAtomic?: number;
  /** Encoded as in IB: index into the RNR timer table; pvio uses it as µs × 10 (see NIC docs). */
  minRnrTimer?: number;
  timeout?: number;
  retryCnt?: number;
  /** 0–7; 7 means retry forever in IB (pvio caps it). */
  rnrRetry?: number;
  ahAttr?: AhAttr;
}
