/**
 * Work-queue entries as the RDMA NIC reads them from driver memory (its send and receive queues
 * are rings of fixed-size WQEs the driver allocates, like a real HCA's). The same 128-byte send
 * WQE also travels on the paravirtual data ring, so the backend can copy a validated guest WR
 * into the device queue word by word.
 *
 * Send WQE, 128 bytes (32 words):
 * ```
 * word   offset  size  field           note
 * 0      0       4     wr_id_lo
 * 1      4       4     wr_id_hi        wr_id < 2^53
 * 2      8       1     opcode          WrOpcode
 * 2      9       1     send_flags      SendFlags
 * 2      10      1     num_sge         ≤ MAX_SEND_SGE; with INLINE: 0
 * 2      11      1     pad             0
 * 3      12      4     imm_data        *_WITH_IMM
 * 4      16      4     remote_addr_lo  RDMA_WRITE, RDMA_READ
 * 5      20      4     remote_addr_hi
 * 6      24      4     rkey
 * 7      28      4     inline_len      bytes of inline data in the SGE area (INLINE only)
 * 8-27   32      80    sge[5]          {addr_lo, addr_hi, length, lkey} × 5, or inline data
 * 28-31  112     16    pad             0 (the paravirtual data ring carries words 0-27 only)
 * ```
 * Receive WQE, 64 bytes (16 words):
 * ```
 * word   offset  size  field      note
 * 0      0       4     wr_id_lo
 * 1      4       4     wr_id_hi
 * 2      8       1     num_sge    ≤ MAX_RECV_SGE
 * 2      9       3     pad        0
 * 3      12      4     pad        0
 * 4-15   16      48    sge[3]     {addr_lo, addr_hi, length, lkey} × 3
 * ```
 */

import type { RecvWr, SendWr, Sge } from './Verbs.js';

/** Send WQE size in bytes (stride of the send queue). */
export const SEND_WQE_SIZE = 128;
/** Send WQE size in words. */
export const SEND_WQE_WORDS = 32;
/** Receive WQE size in bytes. */
export const RECV_WQE_SIZE = 64;
/** Receive WQE size in words. */
export const RECV_WQE_WORDS = 16;
/** SGEs in a send WQE. */
export const MAX_SEND_SGE = 5;
/** SGEs in a receive WQE. */
export const MAX_RECV_SGE = 3;
/** Inline payload capacity of a send WQE (the SGE area). */
export const MAX_INLINE_DATA = 80;
/** Words per SGE. */
export const SGE_WORDS = 4;

/** Word indices in a send WQE. */
export const enum SendWqeWord {
  WR_ID_LO = 0,
  WR_ID_HI = 1,
  OP_FLAGS_NSGE = 2,
  IMM = 3,
  RADDR_LO = 4,
  RADDR_HI = 5,
  RKEY = 6,
  INLINE_LEN = 7,
  SGE = 8,
  PAD = 28,
}

/** Words of a send WQE that carry information (the rest is padding). */
export const SEND_WQE_USED_WORDS = 28;

/** Word indices in a receive WQE. */
export const enum RecvWqeWord {
  WR_ID_LO = 0,
  WR_ID_HI = 1,
  NSGE = 2,
  PAD = 3,
  SGE = 4,
}

/** Low 32 bits of a safe integer. */
export function lo32(x: number): number {
  return x >>> 0;
}

/** High 32 bits of a safe integer (< 2^53). */
export function hi32(x: number): number {
  return Math.floor(x / 0x1_0000_0000) >>> 0;
}

/** Joins two u32 words into a number; callers must reject hi ≥ 2^21 (not a safe integer). */
export function join64(lo: number, hi: number): number {
  return (hi >>> 0) * 0x1_0000_0000 + (lo >>> 0);
}

function writeSges(dst: Int32Array, w: number, sges: readonly Sge[], max: number): void {
  for (let i = 0; i < max; i++) {
    const b = w + i * SGE_WORDS;
    const s = sges[i];
    if (s) {
      dst[b] = lo32(s.addr) | 0;
      dst[b + 1] = hi32(s.addr) | 0;
      dst[b + 2] = s.length | 0;
      dst[b + 3] = s.lkey | 0;
    } else {
      dst[b] = 0;
      dst[b + 1] = 0;
      dst[b + 2] = 0;
      dst[b + 3] = 0;
    }
  }
}

/**
 * Writes a whole send WQE (every word; padding zeroed). With INLINE, `inline` holds the payload
 * (≤ MAX_INLINE_DATA bytes) and num_sge is 0.
 */
export function encodeSendWqe(dst: Int32Array, w: number, wr: SendWr, inline?: Uint8Array): void {
  const flags = wr.sendFlags ?? 0;
  const nsge = inline ? 0 : wr.sgList.length;
  dst[w + SendWqeWord.WR_ID_LO] = lo32(wr.wrId) | 0;
  dst[w + SendWqeWord.WR_ID_HI] = hi32(wr.wrId) | 0;
  dst[w + SendWqeWord.OP_FLAGS_NSGE] = (wr.opcode & 0xff) | ((flags & 0xff) << 8) | ((nsge & 0xff) << 16);
  dst[w + SendWqeWord.IMM] = (wr.immData ?? 0) | 0;
  const raddr = wr.remoteAddr ?? 0;
  dst[w + SendWqeWord.RADDR_LO] = lo32(raddr) | 0;
  dst[w + SendWqeWord.RADDR_HI] = hi32(raddr) | 0;
  dst[w + SendWqeWord.RKEY] = (wr.rkey ?? 0) | 0;
  dst[w + SendWqeWord.INLINE_LEN] = inline ? inline.length : 0;
  for (let i = SendWqeWord.PAD; i < SEND_WQE_WORDS; i++) dst[w + i] = 0;
  if (inline) {
    // Inline bytes packed little-endian into the SGE words; the rest zeroed.
    for (let i = 0; i < MAX_SEND_SGE * SGE_WORDS; i++) dst[w + SendWqeWord.SGE + i] = 0;
    for (let i = 0; i < inline.length; i++) {
      const word = w + SendWqeWord.SGE + (i >> 2);
      dst[word] |= inline[i] << ((i & 3) * 8);
    }
  } else {
    writeSges(dst, w + SendWqeWord.SGE, wr.sgList, MAX_SEND_SGE);
  }
}

/** Writes a whole receive WQE (every word; padding zeroed). */
export function encodeRecvWqe(dst: Int32Array, w: number, wr: RecvWr): void {
  dst[w + RecvWqeWord.WR_ID_LO] = lo32(wr.wrId) | 0;
  dst[w + RecvWqeWord.WR_ID_HI] = hi32(wr.wrId) | 0;
  dst[w + RecvWqeWord.NSGE] = wr.sgList.length & 0xff;
  dst[w + RecvWqeWord.PAD] = 0;
  writeSges(dst, w + RecvWqeWord.SGE, wr.sgList, MAX_RECV_SGE);
}

/** A send WQE decoded from a private copy (fields unvalidated). */
export interface SendWqe {
  wrId: number;
  opcode: number;
  sendFlags: number;
  numSge: number;
  immData: number;
  remoteAddr: number;
  rkey: number;
  inlineLen: number;
  /** addr, length, lkey per SGE, flattened (numSge entries used). */
  sgeAddr: number[];
  sgeLen: number[];
  sgeLkey: number[];
}

/** A fresh decode target. */
export function emptySendWqe(): SendWqe {
  return {
    wrId: 0,
    opcode: 0,
    sendFlags: 0,
    numSge: 0,
    immData: 0,
    remoteAddr: 0,
    rkey: 0,
    inlineLen: 0,
    sgeAddr: [0, 0, 0, 0, 0],
    sgeLen: [0, 0, 0, 0, 0],
    sgeLkey: [0, 0, 0, 0, 0],
  };
}

/**
 * Decodes a send WQE. Addresses whose high word would make them unsafe integers decode as -1 so
 * the validator rejects them.
 */
export function decodeSendWqe(src: Int32Array, w: number, out: SendWqe): SendWqe {
  const opw = src[w + SendWqeWord.OP_FLAGS_NSGE];
  out.wrId = join64(src[w + SendWqeWord.WR_ID_LO], src[w + SendWqeWord.WR_ID_HI] & 0x1fffff);
  out.opcode = opw & 0xff;
  out.sendFlags = (opw >>> 8) & 0xff;
  out.numSge = (opw >>> 16) & 0xff;
  out.immData = src[w + SendWqeWord.IMM] >>> 0;
  out.remoteAddr = safeAddr(src[w + SendWqeWord.RADDR_LO], src[w + SendWqeWord.RADDR_HI]);
  out.rkey = src[w + SendWqeWord.RKEY] >>> 0;
  out.inlineLen = src[w + SendWqeWord.INLINE_LEN] >>> 0;
  for (let i = 0; i < MAX_SEND_SGE; i++) {
    const b = w + SendWqeWord.SGE + i * SGE_WORDS;
    out.sgeAddr[i] = safeAddr(src[b], src[b + 1]);
    out.sgeLen[i] = src[b + 2] >>> 0;
    out.sgeLkey[i] = src[b + 3] >>> 0;
  }
  return out;
}

/** A receive WQE decoded from a private copy (fields unvalidated). */
export interface RecvWqe {
  wrId: number;
  numSge: number;
  sgeAddr: number[];
  sgeLen: number[];
  sgeLkey: number[];
}

/** A fresh decode target. */
export function emptyRecvWqe(): RecvWqe {
  return { wrId: 0, numSge: 0, sgeAddr: [0, 0, 0], sgeLen: [0, 0, 0], sgeLkey: [0, 0, 0] };
}

/** Decodes a receive WQE. */
export function decodeRecvWqe(src: Int32Array, w: number, out: RecvWqe): RecvWqe {
  out.wrId = join64(src[w + RecvWqeWord.WR_ID_LO], src[w + RecvWqeWord.WR_ID_HI] & 0x1fffff);
  out.numSge = src[w + RecvWqeWord.NSGE] & 0xff;
  for (let i = 0; i < MAX_RECV_SGE; i++) {
    const b = w + RecvWqeWord.SGE + i * SGE_WORDS;
    out.sgeAddr[i] = safeAddr(src[b], src[b + 1]);
    out.sgeLen[i] = src[b + 2] >>> 0;
    out.sgeLkey[i] = src[b + 3] >>> 0;
  }
  return out;
}

/** Joins an address, or -1 when it is not a safe integer (hi ≥ 2^21). */
export function safeAddr(lo: number, hi: number): number {
  const h = hi >>> 0;
  return h >= 0x200000 ? -1 : join64(lo, h);
}

/** Reads inline payload byte i from a send WQE's SGE area. */
export function inlineByte(src: Int32Array, w: number, i: number): number {
  return (src[w + SendWqeWord.SGE + (i >> 2)] >>> ((i & 3) * 8)) & 0xff;
}
