/**
 * The driver's side of one QP: its send and receive queues in driver memory, the free-running
 * producer indices the driver owns, and its last knowledge of how far the device consumed.
 *
 * ```
 *   SQ (sqEntries × 128 B)            cons ≤ doorbell ≤ prod, all free-running u32
 *   ┌────┬────┬────┬────┬────┬────┐
 *   │done│done│ hw │ hw │new │free│   done: device finished (slot reusable)
 *   └────┴────┴────┴────┴────┴────┘   hw: doorbelled, device owns; new: written, not yet rung
 *              ^cons     ^db  ^prod
 * ```
 * Full when `prod − cons == entries`; empty when equal. Slot of index i: `i & (entries − 1)`.
 *
 * How the driver learns consumption (the choice the brief asks to document): it asks the device
 * (QUERY_QP's sq/rq consumer indices) only when its cached consumer index says the queue is
 * full. Counting CQEs would not work for the paravirtual backend, whose CQ rings live in guest
 * memory it never reads, nor without a rule on unsignaled WRs; one MMIO command per
 * "looks full" event costs nothing while the queue has room, and at worst one command per post
 * when an application keeps the queue exactly full (perftest's tx-depth = queue size).
 */

import { pvError } from '../../protocol/errors.js';
import { type QpCap, QpState, type RecvWr, SendFlags, type SendWr } from '../../protocol/rdma/Verbs.js';
import {
  encodeRecvWqe,
  encodeSendWqe,
  MAX_SEND_SGE,
  RECV_WQE_WORDS,
  RecvWqeWord,
  SEND_WQE_USED_WORDS,
  SEND_WQE_WORDS,
  SendWqeWord,
  SGE_WORDS,
} from '../../protocol/rdma/Wqe.js';

/** Words of the SGE area (also the inline payload area). */
const SGE_AREA_WORDS = MAX_SEND_SGE * SGE_WORDS;

/** One QP's queues and indices (driver-private; the device sees only memory and doorbells). */
export class QpQueues {
  /** QP state as last set through MODIFY_QP (the device may since have moved it to ERR). */
  state: QpState = QpState.RESET;
  /** Free-running producer indices (next slot to write). */
  sqProd = 0;
  rqProd = 0;
  /** Last consumer indices the device reported. */
  sqCons = 0;
  rqCons = 0;
  /** The send producer index the last SQ doorbell carried (what the device has been told). */
  sqRung = 0;
  /** Written since the last doorbell. */
  sqDirty = false;
  rqDirty = false;

  constructor(
    readonly qpn: number,
    readonly cap: QpCap,
    readonly sqEntries: number,
    readonly rqEntries: number,
    /** The send queue as words (a view of driver memory made once at creation). */
    readonly sq: Int32Array,
    readonly rq: Int32Array,
  ) {}

  /** True when the cached consumer index leaves no free send slot. */
  sqFull(): boolean {
    return (this.sqProd - this.sqCons) >>> 0 >= this.sqEntries;
  }

  /** True when the cached consumer index leaves no free receive slot. */
  rqFull(): boolean {
    return (this.rqProd - this.rqCons) >>> 0 >= this.rqEntries;
  }

  /**
   * Adopts consumer indices reported by the device, unless they are impossible (ahead of the
   * producer, or further behind it than the queue is long): a confused device must not make the
   * driver overwrite WQEs it still owns.
   */
  adoptCons(sqCons: number, rqCons: number): void {
    if ((this.sqProd - sqCons) >>> 0 <= this.sqEntries) this.sqCons = sqCons >>> 0;
    if ((this.rqProd - rqCons) >>> 0 <= this.rqEntries) this.rqCons = rqCons >>> 0;
  }

  /**
   * Encodes a checked send WR into the next SQ slot. With INLINE the payload is gathered from
   * the SGEs' addresses in driver memory (`bytes`, the whole memory) into the WQE, as a real
   * driver copies it so the buffer is reusable on return; an SGE outside memory →
   * PV_ERR_RDMA_BAD_WR, and nothing is published (the slot is beyond the producer index until
   * `sqProd++`).
   */
  writeSend(wr: SendWr, inlineLen: number, bytes: Uint8Array): void {
    const sq = this.sq;
    const w = (this.sqProd & (this.sqEntries - 1)) * SEND_WQE_WORDS;
    encodeSendWqe(sq, w, wr);
    if (((wr.sendFlags ?? 0) & SendFlags.INLINE) !== 0) {
      const base = w + SendWqeWord.SGE;
      for (let i = 0; i < SGE_AREA_WORDS; i++) sq[base + i] = 0;
      let k = 0;
      for (let s = 0; s < wr.sgList.length; s++) {
        const sge = wr.sgList[s];
        // INVARIANT: checkSendWr proved addr and length are safe integers ≥ 0.
        if (sge.length > bytes.length - sge.addr) {
          throw pvError('PV_ERR_RDMA_BAD_WR', `inline SGE [${sge.addr}, +${sge.length}) is outside driver memory`);
        }
        for (let j = 0; j < sge.length; j++, k++) {
          sq[base + (k >> 2)] |= bytes[sge.addr + j] << ((k & 3) * 8);
        }
      }
      // num_sge is 0 for an inline WQE (Wqe.ts); keep opcode and flags.
      sq[w + SendWqeWord.OP_FLAGS_NSGE] &= 0xffff;
      sq[w + SendWqeWord.INLINE_LEN] = inlineLen;
    }
    this.sqProd = (this.sqProd + 1) >>> 0;
    this.sqDirty = true;
  }

  /** Encodes a checked receive WR into the next RQ slot. */
  writeRecv(wr: RecvWr): void {
    encodeRecvWqe(this.rq, (this.rqProd & (this.rqEntries - 1)) * RECV_WQE_WORDS, wr);
    this.rqProd = (this.rqProd + 1) >>> 0;
    this.rqDirty = true;
  }

  /**
   * Copies an encoded send WQE (its SEND_WQE_USED_WORDS information words) into the next SQ
   * slot and zeroes the padding. Returns false, publishing nothing, when the copied num_sge or
   * inline length exceeds this QP's capabilities (the caller validated the WQE, but the copy is
   * what the device will read, so the bound is checked on the copy).
   */
  copySend(src: Int32Array, srcWord: number): boolean {
    const sq = this.sq;
    const w = (this.sqProd & (this.sqEntries - 1)) * SEND_WQE_WORDS;
    for (let i = 0; i < SEND_WQE_USED_WORDS; i++) sq[w + i] = src[srcWord + i];
    for (let i = SEND_WQE_USED_WORDS; i < SEND_WQE_WORDS; i++) sq[w + i] = 0;
    // The pad byte of word 2 must be zero (Wqe.ts); force it rather than trust the source.
    const opw = sq[w + SendWqeWord.OP_FLAGS_NSGE] & 0xff_ffff;
    sq[w + SendWqeWord.OP_FLAGS_NSGE] = opw;
    // INVARIANT: checked on our copy in driver memory, which only this thread writes.
    const nsge = (opw >>> 16) & 0xff;
    const inline = ((opw >>> 8) & SendFlags.INLINE) !== 0;
    if (nsge > this.cap.maxSendSge) return false;
    if (inline && (nsge !== 0 || sq[w + SendWqeWord.INLINE_LEN] >>> 0 > this.cap.maxInlineData)) return false;
    this.sqProd = (this.sqProd + 1) >>> 0;
    this.sqDirty = true;
    return true;
  }

  /** Copies an encoded receive WQE (RECV_WQE_WORDS) into the next RQ slot; false if num_sge is too big. */
  copyRecv(src: Int32Array, srcWord: number): boolean {
    const rq = this.rq;
    const w = (this.rqProd & (this.rqEntries - 1)) * RECV_WQE_WORDS;
    for (let i = 0; i < RECV_WQE_WORDS; i++) rq[w + i] = src[srcWord + i];
    // Padding must be zero (Wqe.ts): force it rather than trust the source.
    rq[w + RecvWqeWord.NSGE] &= 0xff;
    rq[w + RecvWqeWord.PAD] = 0;
    // INVARIANT: checked on our copy, as in copySend.
    if (rq[w + RecvWqeWord.NSGE] > this.cap.maxRecvSge) return false;
    this.rqProd = (this.rqProd + 1) >>> 0;
    this.rqDirty = true;
    return true;
  }
}
