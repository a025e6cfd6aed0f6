/**
 * Completion queue ring, in memory the consumer owns (a driver's own pages, or a guest's pages
 * granted to the backend and mapped for the device): the NIC — or the paravirtual backend, or
 * the TCP provider thread — writes CQEs and publishes its producer index; the consumer polls.
 * Every transport uses this one format, so `pollCq` is the same code everywhere.
 *
 * ```
 * offset   size   field      writer     reader     note
 * 0        4      prod       producer   consumer   free-running u32, Atomics.store after the CQE
 * 4        4      cons       consumer   producer   free-running u32, Atomics.store after reading
 * 8        4      armed      both       producer   1: consumer may sleep on `prod`; one-shot: the producer clears it and notifies
 * 12       4      overflow   producer   consumer   set when a CQE found the ring full (CQ error)
 * 16       48     pad        -          -          zero
 * 64       N*64   cqe[N]     producer   consumer   N a power of two
 * ```
 * Full/empty: empty when prod == cons; full when prod − cons == N (`>>> 0`). A producer that
 * finds the ring full sets `overflow` and drops the CQE; the QPs feeding it go to ERR (as an
 * HCA's CQ overrun is a fatal async error).
 *
 * CQE, 64 bytes:
 * ```
 * word  offset  size  field                     note
 * 0     0       4     wr_id_lo
 * 1     4       4     wr_id_hi
 * 2     8       4     qp_num
 * 3     12      1     opcode (WcOpcode)
 * 3     13      1     status (WcStatus)
 * 3     14      1     wc_flags (WcFlags)
 * 3     15      1     pad                       0
 * 4     16      4     byte_len
 * 5     20      4     imm_data
 * 6     24      4     src_qp
 * 7     28      4     vendor_err
 * 8-15  32      32    pad                       zero on every write
 * ```
 */

import type { Wc } from './Verbs.js';
import { hi32, join64, lo32 } from './Wqe.js';

/** CQ header size in bytes (CQEs start here). */
export const CQ_HEADER_SIZE = 64;
/** CQE size in bytes. */
export const CQE_SIZE = 64;
/** CQE size in words. */
export const CQE_WORDS = 16;

/** Int32 word indices of the CQ header. */
export const enum CqWord {
  PROD = 0,
  CONS = 1,
  ARMED = 2,
  OVERFLOW = 3,
  /** First word of the CQE array. */
  CQES = 16,
}

/** Word indices inside a CQE. */
export const enum CqeWord {
  WR_ID_LO = 0,
  WR_ID_HI = 1,
  QP_NUM = 2,
  OP_STATUS_FLAGS = 3,
  BYTE_LEN = 4,
  IMM = 5,
  SRC_QP = 6,
  VENDOR_ERR = 7,
  PAD = 8,
}

/** Bytes of a CQ ring with `entries` CQEs. */
export function cqBytes(entries: number): number {
  return CQ_HEADER_SIZE + entries * CQE_SIZE;
}

/** Writes a whole CQE (every word; padding zeroed) at word `w`. */
export function encodeCqe(dst: Int32Array, w: number, wc: Wc): void {
  dst[w + CqeWord.WR_ID_LO] = lo32(wc.wrId) | 0;
  dst[w + CqeWord.WR_ID_HI] = hi32(wc.wrId) | 0;
  dst[w + CqeWord.QP_NUM] = wc.qpNum | 0;
  dst[w + CqeWord.OP_STATUS_FLAGS] = (wc.opcode & 0xff) | ((wc.status & 0xff) << 8) | ((wc.wcFlags & 0xff) << 16);
  dst[w + CqeWord.BYTE_LEN] = wc.byteLen | 0;
  dst[w + CqeWord.IMM] = wc.immData | 0;
  dst[w + CqeWord.SRC_QP] = wc.srcQp | 0;
  dst[w + CqeWord.VENDOR_ERR] = wc.vendorErr | 0;
  for (let i = CqeWord.PAD; i < CQE_WORDS; i++) dst[w + i] = 0;
}

/** Reads a CQE into `out`. */
export function decodeCqe(src: Int32Array, w: number, out: Wc): Wc {
  const osf = src[w + CqeWord.OP_STATUS_FLAGS];
  out.wrId = join64(src[w + CqeWord.WR_ID_LO], src[w + CqeWord.WR_ID_HI] & 0x1fffff);
  out.qpNum = src[w + CqeWord.QP_NUM] >>> 0;
  out.opcode = osf & 0xff;
  out.status = (osf >>> 8) & 0xff;
  out.wcFlags = (osf >>> 16) & 0xff;
  out.byteLen = src[w + CqeWord.BYTE_LEN] >>> 0;
  out.immData = src[w + CqeWord.IMM] >>> 0;
  out.srcQp = src[w + CqeWord.SRC_QP] >>> 0;
  out.vendorErr = src[w + CqeWord.VENDOR_ERR] >>> 0;
  return out;
}

/**
 * Producer side: appends one CQE to the ring in `words` (the CQ's Int32 view) with `entries`
 * slots, publishing it and waking a sleeping consumer. `prod` is the producer's private index
 * (the producer never trusts the shared copy). Returns the new private index, or -1 when the
 * ring was full (the overflow flag is then set and the CQE dropped).
 */
export function produceCqe(words: Int32Array, entries: number, prod: number, wc: Wc): number {
  // ORDERING: seq-cst load of the consumer index the consumer published after reading CQEs.
  const cons = Atomics.load(words, CqWord.CONS) >>> 0;
  if ((prod - cons) >>> 0 >= entries) {
    // ORDERING: seq-cst store so the consumer's next load of OVERFLOW sees it.
    Atomics.store(words, CqWord.OVERFLOW, 1);
    return -1;
  }
  encodeCqe(words, CqWord.CQES + (prod & (entries - 1)) * CQE_WORDS, wc);
  const next = (prod + 1) >>> 0;
  // ORDERING: the CQE was written with plain stores; this seq-cst store publishes it.
  Atomics.store(words, CqWord.PROD, next | 0);
  // The arm is one-shot (as ibv_req_notify_cq's): the first CQE after it takes it and wakes the
  // consumer; later ones do not pay for another notify until the consumer arms again.
  // ORDERING: load, then exchange, after the store (Dekker pair with the consumer's store ARMED
  // → load PROD); the exchange makes exactly one producer send the wake-up.
  if (Atomics.load(words, CqWord.ARMED) !== 0 && Atomics.exchange(words, CqWord.ARMED, 0) !== 0) {
    Atomics.notify(words, CqWord.PROD);
  }
  return next;
}

/**
 * Consumer side: polls up to `max` CQEs into `out` starting at private index `cons`; returns
 * the number taken. The caller advances its index by that number and calls `releaseCqes`.
 */
export function pollCqes(words: Int32Array, entries: number, cons: number, out: Wc[], max: number): number {
  // ORDERING: seq-cst load of prod before reading CQEs (the producer stored them before prod).
  const prod = Atomics.load(words, CqWord.PROD) >>> 0;
  let avail = (prod - cons) >>> 0;
  if (avail > entries) avail = entries; // a corrupt producer index never makes us read past the ring
  const n = avail < max ? avail : max;
  for (let i = 0; i < n; i++) {
    decodeCqe(words, CqWord.CQES + ((cons + i) & (entries - 1)) * CQE_WORDS, out[i]);
  }
  return n;
}

/** Consumer side: publishes the consumer index so the producer sees the freed slots. */
export function releaseCqes(words: Int32Array, cons: number): void {
  // ORDERING: seq-cst store after the CQEs were read; pairs with produceCqe's load of CONS.
  Atomics.store(words, CqWord.CONS, cons | 0);
}
