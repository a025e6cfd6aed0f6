/**
 * Wire layouts of blkif on x86_64 (blkif.h `blkif_request`, `blkif_request_indirect`,
 * `blkif_request_segment`, `blkif_response`), as Int32 words of a ring slot. A request and its
 * response share a 112-byte slot (ring entry = max(112, 16)), so a one-page ring holds
 * (4096 − 64) / 112 = 36 → 32 slots (reference §1.2). Byte order is the host's (little-endian,
 * as on x86). 64-bit fields travel as two u32 words (lo, hi).
 *
 * Direct request (READ, WRITE, FLUSH_DISKCACHE, …), 112 bytes:
 * ```
 * word   offset  size  field          note
 * 0      0       1     operation      BlkifOp
 * 0      1       1     nr_segments    u8: 1..11 (0 only for FLUSH_DISKCACHE)
 * 0      2       2     handle         blkif_vdev_t (u16); not used by the backend
 * 1      4       4     pad            x86_64 alignment of id; 0 on every write
 * 2-3    8       8     id             u64, echoed in the response
 * 4-5    16      8     sector_number  u64, 512-byte units
 * 6+2i   24+8i   4     seg[i].gref    i in 0..10
 * 7+2i   28+8i   1     first_sect     0..7
 * 7+2i   29+8i   1     last_sect      first_sect..7
 * 7+2i   30+8i   2     pad            0
 * ```
 * Indirect request (operation = INDIRECT), 64 bytes used, rest of the slot zero:
 * ```
 * word   offset  size  field            note
 * 0      0       1     operation        6
 * 0      1       1     indirect_op      READ or WRITE
 * 0      2       2     nr_segments      u16: 1..feature-max-indirect-segments
 * 1      4       4     pad              0
 * 2-3    8       8     id
 * 4-5    16      8     sector_number
 * 6      24      2     handle
 * 6      26      2     pad              0
 * 7-14   28      32    indirect_grefs[8] one per 512 segments, the rest 0
 * 15     60      4     pad              0
 * ```
 * Segment descriptor inside an indirect page (8 bytes, 512 per page) = one `seg[i]` above:
 * word 0 gref, word 1 `first_sect | last_sect << 8`.
 *
 * Response, 16 bytes (the rest of the slot keeps the guest's own request bytes):
 * ```
 * word   offset  size  field      note
 * 0-1    0       8     id         from the backend's private copy
 * 2      8       1     operation  from the private copy
 * 2      9       1     pad        0 (XSA-216: never stale bytes)
 * 2      10      2     status     i16 BlkifStatus
 * 3      12      4     pad        0 (XSA-216)
 * ```
 */

import { BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_SEGMENTS_PER_REQUEST, BlkifOp } from './BlkifConstants.js';

/** Ring entry size in bytes (the request; the 16-byte response fits in it). */
export const BLKIF_SLOT_SIZE = 112;
/** Ring entry size in Int32 words. */
export const BLKIF_SLOT_WORDS = BLKIF_SLOT_SIZE / 4;
/** Bytes of a response. */
export const BLKIF_RSP_SIZE = 16;
/** Words of a response. */
export const BLKIF_RSP_WORDS = BLKIF_RSP_SIZE / 4;
/** Bytes of a segment descriptor (inline or in an indirect page). */
export const BLKIF_SEG_SIZE = 8;
/** Words of a segment descriptor. */
export const BLKIF_SEG_WORDS = 2;

/** Word indices of a direct request. */
export const enum BlkReqWord {
  OP_NSEG_HANDLE = 0,
  PAD = 1,
  ID_LO = 2,
  ID_HI = 3,
  SECTOR_LO = 4,
  SECTOR_HI = 5,
  /** First segment; segment i is at SEG + 2i (gref) and SEG + 2i + 1 (sects). */
  SEG = 6,
}

/** Word indices of an indirect request. */
export const enum BlkIndWord {
  OP_IOP_NSEG = 0,
  PAD1 = 1,
  ID_LO = 2,
  ID_HI = 3,
  SECTOR_LO = 4,
  SECTOR_HI = 5,
  HANDLE = 6,
  /** indirect_grefs[0..7]. */
  GREFS = 7,
  PAD3 = 15,
  /** Words written by the encoder (the rest of the slot is zeroed). */
  USED = 16,
}

/** Word indices of a response. */
export const enum BlkRspWord {
  ID_LO = 0,
  ID_HI = 1,
  OP_STATUS = 2,
  PAD = 3,
}

/** One segment: `gref` page, sectors `first..last` of it (inclusive). */
export interface BlkifSegment {
  readonly gref: number;
  readonly first: number;
  readonly last: number;
}

/** What a frontend encodes: a direct request, or an indirect one when `indirectGrefs` is set. */
export interface BlkifRequestIn {
  readonly op: number;
  readonly idLo: number;
  readonly idHi: number;
  readonly sectorLo: number;
  readonly sectorHi: number;
  readonly handle: number;
  /** Direct: the inline segments (≤ 11). Ignored for an indirect request. */
  readonly segs?: readonly BlkifSegment[];
  /** Indirect: the operation carried (READ/WRITE), the segment count and the page refs. */
  readonly indirectOp?: number;
  readonly nseg?: number;
  readonly indirectGrefs?: readonly number[];
}

/**
 * A decoded request: unvalidated guest data read from the backend's private copy. Direct
 * segments are copied (at most 11) into `segWords` as (gref, first | last << 8) pairs.
 */
export interface BlkifRequest {
  op: number;
  /** Direct: u8 nr_segments; indirect: u16 nr_segments. */
  nseg: number;
  /** Indirect only (0 otherwise). */
  indirectOp: number;
  handle: number;
  idLo: number;
  idHi: number;
  sectorLo: number;
  sectorHi: number;
  /** Direct: up to 11 segment descriptors, 2 words each. */
  readonly segWords: Int32Array;
  /** Indirect: the 8 indirect grant refs. */
  readonly indirectGrefs: Uint32Array;
}

/** A fresh decode target. */
export function emptyBlkifRequest(): BlkifRequest {
  return {
    op: 0,
    nseg: 0,
    indirectOp: 0,
    handle: 0,
    idLo: 0,
    idHi: 0,
    sectorLo: 0,
    sectorHi: 0,
    segWords: new Int32Array(BLKIF_MAX_SEGMENTS_PER_REQUEST * BLKIF_SEG_WORDS),
    indirectGrefs: new Uint32Array(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST),
  };
}

/** Writes segment descriptor `s` at word `w` (2 words, pad zeroed). */
export function encodeBlkifSegment(dst: Int32Array, w: number, s: BlkifSegment): void {
  dst[w] = s.gref | 0;
  dst[w + 1] = (s.first & 0xff) | ((s.last & 0xff) << 8);
}

/** Writes a whole request slot (every word; unused segments and padding zeroed) at word `w`. */
export function encodeBlkifRequest(dst: Int32Array, w: number, r: BlkifRequestIn): void {
  dst.fill(0, w, w + BLKIF_SLOT_WORDS);
  dst[w + BlkReqWord.ID_LO] = r.idLo | 0;
  dst[w + BlkReqWord.ID_HI] = r.idHi | 0;
  dst[w + BlkReqWord.SECTOR_LO] = r.sectorLo | 0;
  dst[w + BlkReqWord.SECTOR_HI] = r.sectorHi | 0;
  if (r.indirectGrefs !== undefined) {
    const nseg = r.nseg ?? 0;
    dst[w + BlkIndWord.OP_IOP_NSEG] = (r.op & 0xff) | (((r.indirectOp ?? 0) & 0xff) << 8) | ((nseg & 0xffff) << 16);
    dst[w + BlkIndWord.HANDLE] = r.handle & 0xffff;
    const n = Math.min(r.indirectGrefs.length, BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST);
    for (let i = 0; i < n; i++) dst[w + BlkIndWord.GREFS + i] = r.indirectGrefs[i] | 0;
    return;
  }
  const segs = r.segs ?? [];
  const n = Math.min(segs.length, BLKIF_MAX_SEGMENTS_PER_REQUEST);
  const nseg = r.nseg ?? segs.length;
  dst[w + BlkReqWord.OP_NSEG_HANDLE] = (r.op & 0xff) | ((nseg & 0xff) << 8) | ((r.handle & 0xffff) << 16);
  for (let i = 0; i < n; i++) encodeBlkifSegment(dst, w + BlkReqWord.SEG + i * BLKIF_SEG_WORDS, segs[i]);
}

/**
 * Decodes a request from `src` at word `w` — the backend's private copy, never the shared slot
 * (XSA-155). The operation byte decides which layout the rest is read with.
 */
export function decodeBlkifRequest(src: Int32Array, w: number, out: BlkifRequest): BlkifRequest {
  const w0 = src[w];
  out.op = w0 & 0xff;
  out.idLo = src[w + BlkReqWord.ID_LO] >>> 0;
  out.idHi = src[w + BlkReqWord.ID_HI] >>> 0;
  out.sectorLo = src[w + BlkReqWord.SECTOR_LO] >>> 0;
  out.sectorHi = src[w + BlkReqWord.SECTOR_HI] >>> 0;
  if (out.op === BlkifOp.INDIRECT) {
    out.indirectOp = (w0 >>> 8) & 0xff;
    out.nseg = (w0 >>> 16) & 0xffff;
    out.handle = src[w + BlkIndWord.HANDLE] & 0xffff;
    for (let i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; i++) {
      out.indirectGrefs[i] = src[w + BlkIndWord.GREFS + i] >>> 0;
    }
    return out;
  }
  out.indirectOp = 0;
  out.nseg = (w0 >>> 8) & 0xff;
  out.handle = (w0 >>> 16) & 0xffff;
  // Copy at most 11 descriptors whatever nr_segments claims (blkif_get_x86_64_req clamps too).
  const words = BLKIF_MAX_SEGMENTS_PER_REQUEST * BLKIF_SEG_WORDS;
  for (let i = 0; i < words; i++) out.segWords[i] = src[w + BlkReqWord.SEG + i];
  return out;
}

/** Grant ref of segment `i` in a descriptor array (inline `segWords` or an indirect copy). */
export function segGref(words: Int32Array, i: number): number {
  return words[i * BLKIF_SEG_WORDS] >>> 0;
}

/** `first_sect` of segment `i`. */
export function segFirst(words: Int32Array, i: number): number {
  return words[i * BLKIF_SEG_WORDS + 1] & 0xff;
}

/** `last_sect` of segment `i`. */
export function segLast(words: Int32Array, i: number): number {
  return (words[i * BLKIF_SEG_WORDS + 1] >>> 8) & 0xff;
}

/** A decoded response. */
export interface BlkifResponse {
  idLo: number;
  idHi: number;
  op: number;
  /** Signed 16-bit status. */
  status: number;
}

/**
 * Writes the 16-byte response at word `w`: every byte of it, padding zeroed (XSA-216). The
 * values come from the backend's private copy of the request.
 */
export function encodeBlkifResponse(dst: Int32Array, w: number, r: BlkifResponse): void {
  dst[w + BlkRspWord.ID_LO] = r.idLo | 0;
  dst[w + BlkRspWord.ID_HI] = r.idHi | 0;
  dst[w + BlkRspWord.OP_STATUS] = (r.op & 0xff) | ((r.status & 0xffff) << 16);
  dst[w + BlkRspWord.PAD] = 0;
}

/** Reads a response (the frontend copies it into `out` before trusting it). */
export function decodeBlkifResponse(src: Int32Array, w: number, out: BlkifResponse): BlkifResponse {
  const w2 = src[w + BlkRspWord.OP_STATUS];
  out.idLo = src[w + BlkRspWord.ID_LO] >>> 0;
  out.idHi = src[w + BlkRspWord.ID_HI] >>> 0;
  out.op = w2 & 0xff;
  out.status = w2 >> 16; // arithmetic shift sign-extends the i16
  return out;
}
