/**
 * The wire format between software NIC threads: a byte stream of frames, each a fixed 56-byte
 * little-endian header followed by `length` payload bytes. One TCP connection carries every QP
 * between two helpers (multiplexed by QP number); a message larger than MAX_FRAME_PAYLOAD streams
 * as several frames (FIRST … LAST) whose `offset` says where the payload goes in the message.
 *
 * ```
 * offset  size  field      note
 * 0       4     magic      WIRE_MAGIC
 * 4       1     opcode     WireOp
 * 5       1     flags      FrameFlag (FIRST, LAST)
 * 6       1     status     NAK: WcStatus the requester completes with (or a NakCode); else 0
 * 7       1     aux8       RNR NAK: the responder's min_rnr_timer; HELLO: WIRE_VERSION; else 0
 * 8       4     src_qpn    sender's QP (0 for HELLO)
 * 12      4     dst_qpn    receiver's QP (0 for HELLO)
 * 16      4     psn        message sequence number, 24 bits
 * 20      4     epoch      requester retransmission epoch (see Requester.ts), echoed in responses
 * 24      4     length     payload bytes after this header, ≤ MAX_FRAME_PAYLOAD
 * 28      4     raddr_lo   WRITE*, READ_REQ: remote address (message start)
 * 32      4     raddr_hi   < 2^21 (safe integer)
 * 36      4     rkey       WRITE*, READ_REQ
 * 40      4     imm        *_WITH_IMM (on every frame of the message)
 * 44      4     msg_len    total message bytes (READ_REQ: bytes asked for), ≤ 2^31
 * 48      4     offset     byte offset of this frame's payload in the message
 * 52      4     aux32      HELLO: the sender's listening port (its "LID"); else 0
 * ```
 * A header that breaks any rule of `checkHeader` is a protocol violation: the receiving helper
 * logs it and closes that connection (never the process). Semantic refusals (a bad rkey, no
 * receive posted) are not violations: they are answered with a NAK.
 */

/** "PVRD" as a little-endian u32. */
export const WIRE_MAGIC = 0x4452_5650;
/** Version carried in HELLO's aux8. */
export const WIRE_VERSION = 1;
/** Header size in bytes. */
export const HEADER_SIZE = 56;
/** Largest payload of one frame: big messages stream in chunks of this size. */
export const MAX_FRAME_PAYLOAD = 65536;

/** Frame opcodes. */
export const enum WireOp {
  /** First frame on every connection: who is talking (aux32 = listening port). */
  HELLO = 1,
  WRITE = 2,
  WRITE_IMM = 3,
  SEND = 4,
  SEND_IMM = 5,
  READ_REQ = 6,
  READ_RESP = 7,
  /** Positive acknowledgement of one message (psn). */
  ACK = 8,
  /** Negative acknowledgement (status says why). */
  NAK = 9,
}

/** Frame flags. */
export const enum FrameFlag {
  FIRST = 1,
  LAST = 2,
  BOTH = 3,
}

/** NAK statuses that are not completion statuses: the requester retries (IB would time out). */
export const enum NakCode {
  /** Receiver not ready (no receive WQE posted): retried `rnr_retry` times. */
  RNR = 0xf0,
  /** Target QP missing or not in RTR/RTS, or sequence error: retried `retry_cnt` times. */
  NOT_READY = 0xf1,
}

/** Byte offsets of the header fields. */
export const enum Hdr {
  MAGIC = 0,
  OPCODE = 4,
  FLAGS = 5,
  STATUS = 6,
  AUX8 = 7,
  SRC_QPN = 8,
  DST_QPN = 12,
  PSN = 16,
  EPOCH = 20,
  LENGTH = 24,
  RADDR_LO = 28,
  RADDR_HI = 32,
  RKEY = 36,
  IMM = 40,
  MSG_LEN = 44,
  OFFSET = 48,
  AUX32 = 52,
}

/** PSNs are 24-bit. */
export const PSN_MASK = 0xff_ffff;

/** A decoded header (one reusable object per connection). */
export interface FrameHeader {
  opcode: number;
  flags: number;
  status: number;
  aux8: number;
  srcQpn: number;
  dstQpn: number;
  psn: number;
  epoch: number;
  length: number;
  raddr: number;
  rkey: number;
  imm: number;
  msgLen: number;
  offset: number;
  aux32: number;
}

/** A fresh header object. */
export function emptyHeader(): FrameHeader {
  return {
    opcode: 0,
    flags: 0,
    status: 0,
    aux8: 0,
    srcQpn: 0,
    dstQpn: 0,
    psn: 0,
    epoch: 0,
    length: 0,
    raddr: 0,
    rkey: 0,
    imm: 0,
    msgLen: 0,
    offset: 0,
    aux32: 0,
  };
}

/**
 * Zeroes every field of a reused header, so a frame built from it carries nothing left over from
 * the previous one; callers then set what their frame needs.
 */
export function clearHeader(h: FrameHeader): FrameHeader {
  h.opcode = 0;
  h.flags = 0;
  h.status = 0;
  h.aux8 = 0;
  h.srcQpn = 0;
  h.dstQpn = 0;
  h.psn = 0;
  h.epoch = 0;
  h.length = 0;
  h.raddr = 0;
  h.rkey = 0;
  h.imm = 0;
  h.msgLen = 0;
  h.offset = 0;
  h.aux32 = 0;
  return h;
}

/** Writes a whole header at `off` (every byte). */
export function encodeHeader(buf: Buffer, off: number, h: FrameHeader): void {
  buf.writeUInt32LE(WIRE_MAGIC, off + Hdr.MAGIC);
  buf[off + Hdr.OPCODE] = h.opcode;
  buf[off + Hdr.FLAGS] = h.flags;
  buf[off + Hdr.STATUS] = h.status;
  buf[off + Hdr.AUX8] = h.aux8;
  buf.writeUInt32LE(h.srcQpn >>> 0, off + Hdr.SRC_QPN);
  buf.writeUInt32LE(h.dstQpn >>> 0, off + Hdr.DST_QPN);
  buf.writeUInt32LE(h.psn >>> 0, off + Hdr.PSN);
  buf.writeUInt32LE(h.epoch >>> 0, off + Hdr.EPOCH);
  buf.writeUInt32LE(h.length >>> 0, off + Hdr.LENGTH);
  buf.writeUInt32LE(h.raddr >>> 0, off + Hdr.RADDR_LO);
  buf.writeUInt32LE(Math.floor(h.raddr / 0x1_0000_0000) >>> 0, off + Hdr.RADDR_HI);
  buf.writeUInt32LE(h.rkey >>> 0, off + Hdr.RKEY);
  buf.writeUInt32LE(h.imm >>> 0, off + Hdr.IMM);
  buf.writeUInt32LE(h.msgLen >>> 0, off + Hdr.MSG_LEN);
  buf.writeUInt32LE(h.offset >>> 0, off + Hdr.OFFSET);
  buf.writeUInt32LE(h.aux32 >>> 0, off + Hdr.AUX32);
}

/**
 * Decodes and checks a header copied out of the stream. Returns undefined when it is valid,
 * else the rule it broke (the caller closes the connection and logs that text).
 */
export function decodeHeader(buf: Buffer, off: number, h: FrameHeader): string | undefined {
  if (buf.readUInt32LE(off + Hdr.MAGIC) !== WIRE_MAGIC) return 'bad magic';
  h.opcode = buf[off + Hdr.OPCODE];
  h.flags = buf[off + Hdr.FLAGS];
  h.status = buf[off + Hdr.STATUS];
  h.aux8 = buf[off + Hdr.AUX8];
  h.srcQpn = buf.readUInt32LE(off + Hdr.SRC_QPN);
  h.dstQpn = buf.readUInt32LE(off + Hdr.DST_QPN);
  h.psn = buf.readUInt32LE(off + Hdr.PSN);
  h.epoch = buf.readUInt32LE(off + Hdr.EPOCH);
  h.length = buf.readUInt32LE(off + Hdr.LENGTH);
  const hi = buf.readUInt32LE(off + Hdr.RADDR_HI);
  h.raddr = hi * 0x1_0000_0000 + buf.readUInt32LE(off + Hdr.RADDR_LO);
  h.rkey = buf.readUInt32LE(off + Hdr.RKEY);
  h.imm = buf.readUInt32LE(off + Hdr.IMM);
  h.msgLen = buf.readUInt32LE(off + Hdr.MSG_LEN);
  h.offset = buf.readUInt32LE(off + Hdr.OFFSET);
  h.aux32 = buf.readUInt32LE(off + Hdr.AUX32);
  if (hi >= 0x20_0000) return 'remote address is not a safe integer';
  return checkHeader(h);
}

/** Opcodes whose frames carry no payload and are a whole message (FIRST | LAST). */
function isControl(op: number): boolean {
  return op === WireOp.HELLO || op === WireOp.READ_REQ || op === WireOp.ACK || op === WireOp.NAK;
}

/** The framing rules every header obeys, whatever the receiver's state. */
export function checkHeader(h: FrameHeader): string | undefined {
  if (h.opcode < WireOp.HELLO || h.opcode > WireOp.NAK) return `unknown opcode ${h.opcode}`;
  if ((h.flags & ~FrameFlag.BOTH) !== 0) return `unknown flags 0x${h.flags.toString(16)}`;
  if (h.length > MAX_FRAME_PAYLOAD) return `payload of ${h.length} bytes exceeds ${MAX_FRAME_PAYLOAD}`;
  if (h.psn > PSN_MASK) return `psn ${h.psn} exceeds 24 bits`;
  if (h.msgLen > 0x8000_0000) return `message of ${h.msgLen} bytes exceeds 2^31`;
  // Both are < 2^32, so the sum is exact.
  if (h.offset + h.length > h.msgLen) return 'payload runs past the message';
  if (isControl(h.opcode)) {
    if (h.flags !== FrameFlag.BOTH || h.length !== 0 || h.offset !== 0) return 'control frame with payload or flags';
  } else {
    if ((h.flags & FrameFlag.FIRST) !== 0 && h.offset !== 0) return 'FIRST frame at a non-zero offset';
    if ((h.flags & FrameFlag.LAST) !== 0 && h.offset + h.length !== h.msgLen) return 'LAST frame ends early';
    if ((h.flags & FrameFlag.LAST) === 0 && h.length === 0) return 'empty middle frame';
  }
  if (h.opcode === WireOp.HELLO) {
    if (h.aux8 !== WIRE_VERSION) return `wire version ${h.aux8}, expected ${WIRE_VERSION}`;
    if (h.aux32 === 0 || h.aux32 > 0xffff) return `HELLO from port ${h.aux32}`;
  } else if (h.aux32 !== 0) return 'non-zero aux32';
  if (h.aux8 !== 0 && h.opcode !== WireOp.HELLO && h.opcode !== WireOp.NAK) return 'non-zero aux8';
  if (h.opcode !== WireOp.NAK && h.status !== 0) return 'status on a frame that is not a NAK';
  return undefined;
}
