/**
 * Fixed 64-byte request/response slots for a generic I/O ring (one granted page per request),
 * used by the foundation's integration test and benchmarks; device rings define their own slot
 * codecs the same way. 64-bit ids travel as two u32 words (BigInt costs ≈ 75 ns per field).
 *
 * Request (F2B), 64 bytes:
 * ```
 * word  offset  size  field      note
 * 0     0       4     id_lo      echoed in the response
 * 1     4       4     id_hi
 * 2     8       1     op         IoOp
 * 2     9       1     flags      reserved, 0
 * 2     10      2     nseg       0 or 1 for this ring
 * 3     12      4     gref       grant ref of the data page
 * 4     16      4     offset     byte offset in that page
 * 5     20      4     length     bytes; offset + length ≤ 4096 (checked by the backend)
 * 6     24      4     checksum   FNV-1a of the payload, for verification
 * 7-15  28      36    pad        zero on every write
 * ```
 * Response (B2F), 64 bytes:
 * ```
 * word  offset  size  field      note
 * 0     0       4     id_lo      from the backend's private copy of the request
 * 1     4       4     id_hi
 * 2     8       1     op
 * 2     9       1     pad        0
 * 2     10      2     status     i16: 0 or a catalogue status
 * 3     12      4     length     bytes processed
 * 4     16      4     checksum   computed by the backend over the data it saw
 * 5-15  20      44    pad        zero on every write (XSA-216: no stale bytes)
 * ```
 */

/** Slot size in bytes. */
export const IO_SLOT_SIZE = 64;
/** Slot size in Int32 words. */
export const IO_SLOT_WORDS = IO_SLOT_SIZE / 4;

/** Operations on the generic I/O ring. */
export const enum IoOp {
  /** Backend reads the granted bytes and returns their checksum. */
  CHECKSUM = 1,
  /** Backend fills the granted bytes with a pattern derived from the id. */
  FILL = 2,
}

/** Word indices inside a request slot. */
export const enum IoReqWord {
  ID_LO = 0,
  ID_HI = 1,
  OP_FLAGS_NSEG = 2,
  GREF = 3,
  OFFSET = 4,
  LENGTH = 5,
  CHECKSUM = 6,
  PAD = 7,
}

/** Word indices inside a response slot. */
export const enum IoRspWord {
  ID_LO = 0,
  ID_HI = 1,
  OP_STATUS = 2,
  LENGTH = 3,
  CHECKSUM = 4,
  PAD = 5,
}

/** A decoded request (all fields u32 unless noted). */
export interface IoRequest {
  idLo: number;
  idHi: number;
  op: number;
  nseg: number;
  gref: number;
  offset: number;
  length: number;
  checksum: number;
}

/** A decoded response. */
export interface IoResponse {
  idLo: number;
  idHi: number;
  op: number;
  /** Signed 16-bit status. */
  status: number;
  length: number;
  checksum: number;
}

/** Writes a whole request slot (every word, padding zeroed) at word `w` of `dst`. */
export function encodeIoRequest(dst: Int32Array, w: number, r: IoRequest): void {
  dst[w + IoReqWord.ID_LO] = r.idLo | 0;
  dst[w + IoReqWord.ID_HI] = r.idHi | 0;
  dst[w + IoReqWord.OP_FLAGS_NSEG] = (r.op & 0xff) | ((r.nseg & 0xffff) << 16);
  dst[w + IoReqWord.GREF] = r.gref | 0;
  dst[w + IoReqWord.OFFSET] = r.offset | 0;
  dst[w + IoReqWord.LENGTH] = r.length | 0;
  dst[w + IoReqWord.CHECKSUM] = r.checksum | 0;
  for (let i = IoReqWord.PAD; i < IO_SLOT_WORDS; i++) dst[w + i] = 0;
}

/** Reads a request from a (private) copy; the result is unvalidated guest data. */
export function decodeIoRequest(src: Int32Array, w: number, out: IoRequest): IoRequest {
  const opw = src[w + IoReqWord.OP_FLAGS_NSEG];
  out.idLo = src[w + IoReqWord.ID_LO] >>> 0;
  out.idHi = src[w + IoReqWord.ID_HI] >>> 0;
  out.op = opw & 0xff;
  out.nseg = (opw >>> 16) & 0xffff;
  out.gref = src[w + IoReqWord.GREF] >>> 0;
  out.offset = src[w + IoReqWord.OFFSET] >>> 0;
  out.length = src[w + IoReqWord.LENGTH] >>> 0;
  out.checksum = src[w + IoReqWord.CHECKSUM] >>> 0;
  return out;
}

/** Writes a whole response slot (every word, padding zeroed) at word `w` of `dst`. */
export function encodeIoResponse(dst: Int32Array, w: number, r: IoResponse): void {
  dst[w + IoRspWord.ID_LO] = r.idLo | 0;
  dst[w + IoRspWord.ID_HI] = r.idHi | 0;
  dst[w + IoRspWord.OP_STATUS] = (r.op & 0xff) | ((r.status & 0xffff) << 16);
  dst[w + IoRspWord.LENGTH] = r.length | 0;
  dst[w + IoRspWord.CHECKSUM] = r.checksum | 0;
  for (let i = IoRspWord.PAD; i < IO_SLOT_WORDS; i++) dst[w + i] = 0;
}

/** Reads a response (the front copies it before trusting it). */
export function decodeIoResponse(src: Int32Array, w: number, out: IoResponse): IoResponse {
  const opw = src[w + IoRspWord.OP_STATUS];
  out.idLo = src[w + IoRspWord.ID_LO] >>> 0;
  out.idHi = src[w + IoRspWord.ID_HI] >>> 0;
  out.op = opw & 0xff;
  out.status = opw >> 16; // arithmetic shift: sign-extends the i16
  out.length = src[w + IoRspWord.LENGTH] >>> 0;
  out.checksum = src[w + IoRspWord.CHECKSUM] >>> 0;
  return out;
}

/** FNV-1a 32-bit over `len` bytes of `buf` from `off`: cheap, order-sensitive payload check. */
export function fnv1a(buf: Uint8Array, off: number, len: number): number {
  let h = 0x811c9dc5;
  const end = off + len;
  for (let i = off; i < end; i++) {
    h ^= buf[i];
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Byte i of the pattern a FILL writes for request id `idLo` (the front verifies it). */
export function fillByte(idLo: number, i: number): number {
  return (idLo + i * 31) & 0xff;
}
