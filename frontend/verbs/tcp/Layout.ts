/**
 * The control block shared by the guest thread (`TcpProvider`) and its software NIC thread
 * (`TcpHelperWorker`), one `SharedArrayBuffer` per provider. It plays the part of a NIC's BAR:
 * a command mailbox answered synchronously (the NicRegs.ts command vocabulary, `NicCmd` with
 * the same argument words, addresses being guest-physical), one bell word the NIC thread sleeps
 * on, and per-QP doorbell words (the producer indices of the send and receive queues, which live
 * in guest memory as rings of Wqe.ts WQEs).
 *
 * ```
 * word        offset        size  field       writer  reader  note
 * 0           0             4     MAGIC       guest   helper  CTRL_MAGIC
 * 1           4             4     BELL        guest   helper  Atomics.add after publishing work; helper waitAsync's on it
 * 2           8             4     IDLE        helper  guest   1 while the helper sleeps on BELL: only then is a notify needed
 * 3           12            4     CMD_SEQ     guest   helper  bumped (Atomics.store) after CMD_OPCODE and CMD_IN are written
 * 4           16            4     CMD_DONE    helper  guest   set to CMD_SEQ after CMD_STATUS/CMD_OUT/CMD_MSG; notified
 * 5           20            4     CMD_OPCODE  guest   helper  NicCmd
 * 6           24            4     CMD_STATUS  helper  guest   0 or a catalogue status (negative)
 * 7           28            4     CMD_MSG_LEN helper  guest   bytes of UTF-8 in CMD_MSG (error text)
 * 8-15        32            32    STATS[8]    helper  guest   TcpStat counters, published after each pump
 * 16-47       64            128   CMD_IN[32]  guest   helper  NicRegs.ts argument words
 * 48-79       192           128   CMD_OUT[32] helper  guest   results
 * 80-143      320           256   CMD_MSG     helper  guest   error message bytes
 * 144+4q      576+16q       16    QP[q]       -       -       q = qpn in [0, maxQp): the four words below
 *   +0                      4     SQ_PROD     guest   helper  send-queue producer index (free-running u32)
 *   +1                      4     SQ_CONS     helper  guest   WQEs completed (slots the guest may reuse)
 *   +2                      4     RQ_PROD     guest   helper  receive-queue producer index
 *   +3                      4     RQ_CONS     helper  guest   receive WQEs completed
 * ```
 * Full/empty of a work queue: empty when PROD == CONS; full when PROD − CONS == entries (`>>> 0`).
 * The helper never trusts PROD: a PROD more than `entries` ahead of CONS is a protocol violation
 * and moves that QP to ERR (XSA-39).
 */

/** Value of MAGIC: "PVTC". */
export const CTRL_MAGIC = 0x4354_5650;

/** Int32 word indices of the control block header. */
export const enum CtrlWord {
  MAGIC = 0,
  BELL = 1,
  IDLE = 2,
  CMD_SEQ = 3,
  CMD_DONE = 4,
  CMD_OPCODE = 5,
  CMD_STATUS = 6,
  CMD_MSG_LEN = 7,
  STATS = 8,
  CMD_IN = 16,
  CMD_OUT = 48,
  CMD_MSG = 80,
  QP_TABLE = 144,
}

/** Words in CMD_IN and in CMD_OUT (NicRegs.ts NIC_CMD_WORDS). */
export const CMD_WORDS = 32;
/** Bytes of CMD_MSG. */
export const CMD_MSG_BYTES = 256;
/** Counters in STATS. */
export const STAT_COUNT = 8;
/** Words per QP in the QP table. */
export const QP_WORDS = 4;

/** Offsets inside one QP's doorbell words. */
export const enum QpWord {
  SQ_PROD = 0,
  SQ_CONS = 1,
  RQ_PROD = 2,
  RQ_CONS = 3,
}

/** Helper counters published in STATS, for tests and `pvio top`. */
export const enum TcpStat {
  FRAMES_TX = 0,
  FRAMES_RX = 1,
  /** Connections closed because a frame was malformed or truncated. */
  BAD_FRAMES = 2,
  CONNS_OPENED = 3,
  CONNS_CLOSED = 4,
  /** RNR NAKs this helper sent as a responder. */
  RNR_NAKS = 5,
  /** Retransmissions this helper made as a requester (after RNR or not-ready NAKs). */
  RETRIES = 6,
  /** Frames dropped on purpose (stale epoch, unknown QP, aborted message). */
  DISCARDED = 7,
}

/** Word index of QP `qpn`'s doorbell word `w`. */
export function qpWord(qpn: number, w: QpWord): number {
  return CtrlWord.QP_TABLE + qpn * QP_WORDS + w;
}

/** Bytes of a control block for `maxQp` QP numbers. */
export function ctrlBytes(maxQp: number): number {
  return (CtrlWord.QP_TABLE + maxQp * QP_WORDS) * 4;
}

/** Limits of one software NIC (what callers and tests may rely on). */
export const TCP_LIMITS = {
  /** QP numbers are 1 … MAX_QP − 1 (0 is never a QP, as on the NIC). */
  MAX_QP: 256,
  /** MR indices are 1 … MAX_MR − 1; a key is `index << 8 | key byte`. */
  MAX_MR: 4096,
  /** CQ numbers are 1 … MAX_CQ − 1. */
  MAX_CQ: 256,
  /** PD numbers are 1 … MAX_PD − 1. */
  MAX_PD: 256,
  /** Largest send or receive queue (entries, a power of two). */
  MAX_QP_WR: 4096,
  /** Largest CQ (entries, a power of two). */
  MAX_CQE: 65536,
} as const;

/** Largest message (IB's 2^31). */
export const MAX_MSG_SIZE = 0x8000_0000;
