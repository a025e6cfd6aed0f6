/**
 * Frames on a host link: the TCP connection between two `pvio host` processes (or a host and a
 * controller) that carries what an NTB carries between machines — MMIO to a lent BAR, DMA
 * through a window, NIC wire packets — plus the cluster's control messages.
 *
 * A message is ONE control frame (a protobuf `LinkMessage`, LinkSchema.ts) followed by
 * `bulk_len` bytes of binary payload cut into BULK frames of at most `MAX_BULK_CHUNK` bytes, all
 * with the message's `stream` number, the last one flagged LAST. A sender writes one message's
 * frames back to back, so a receiver never interleaves two bulks. Header (big-endian, network
 * order):
 * ```
 * offset  size  field    note
 * 0       4     magic    0x50564c4b ('PVLK'); anything else closes the link
 * 4       1     version  LINK_VERSION
 * 5       1     kind     FrameKind.CONTROL or FrameKind.BULK
 * 6       2     flags    FrameFlag.LAST on the last BULK frame of a message; other bits 0
 * 8       4     stream   the sender's message number (u32, wraps); BULK frames repeat it
 * 12      4     length   payload bytes: CONTROL 1 … MAX_CONTROL, BULK 1 … MAX_BULK_CHUNK
 * 16      …     payload
 * ```
 * The peer is untrusted: every field is checked before a byte of payload is buffered
 * (`checkHeader`), and a message's announced bulk is bounded by `MAX_MESSAGE_BULK`, so a
 * malformed or hostile peer costs at most one frame of memory before its link is closed.
 */

/** 'PVLK'. */
export const LINK_MAGIC = 0x50564c4b;
/** Protocol version; a peer with another one is refused at hello. */
export const LINK_VERSION = 1;
/** Header bytes. */
export const FRAME_HEADER_BYTES = 16;
/** Largest control payload (a protobuf LinkMessage). */
export const MAX_CONTROL = 64 * 1024;
/** Largest BULK frame payload: what one frame may hold the socket for. */
export const MAX_BULK_CHUNK = 256 * 1024;
/** Largest bulk of one message (an RDMA message or a DMA burst): 16 MiB. */
export const MAX_MESSAGE_BULK = 16 * 1024 * 1024;

/** Byte offsets of the header fields (the table above). */
export const enum FrameOffset {
  MAGIC = 0,
  VERSION = 4,
  KIND = 5,
  FLAGS = 6,
  STREAM = 8,
  LENGTH = 12,
}

export const enum FrameKind {
  CONTROL = 1,
  BULK = 2,
}

export const enum FrameFlag {
  LAST = 1,
}

/** A decoded header. */
export interface FrameHeader {
  kind: FrameKind;
  flags: number;
  stream: number;
  length: number;
}

/** Writes a header at `at` of `buf`. */
export function writeHeader(buf: Uint8Array, at: number, h: FrameHeader): void {
  const v = new DataView(buf.buffer, buf.byteOffset + at, FRAME_HEADER_BYTES);
  v.setUint32(FrameOffset.MAGIC, LINK_MAGIC);
  v.setUint8(FrameOffset.VERSION, LINK_VERSION);
  v.setUint8(FrameOffset.KIND, h.kind);
  v.setUint16(FrameOffset.FLAGS, h.flags);
  v.setUint32(FrameOffset.STREAM, h.stream >>> 0);
  v.setUint32(FrameOffset.LENGTH, h.length >>> 0);
}

/**
 * Reads and checks the header at `at` of `buf` (≥ FRAME_HEADER_BYTES available). Returns the
 * header, or a reason string when the frame is malformed (the caller closes the link with it).
 */
export function checkHeader(buf: Uint8Array, at: number): FrameHeader | string {
  const v = new DataView(buf.buffer, buf.byteOffset + at, FRAME_HEADER_BYTES);
  const magic = v.getUint32(FrameOffset.MAGIC);
  if (magic !== LINK_MAGIC) return `bad magic 0x${magic.toString(16).padStart(8, '0')}`;
  const version = v.getUint8(FrameOffset.VERSION);
  if (version !== LINK_VERSION) return `unsupported version ${version}`;
  const kind = v.getUint8(FrameOffset.KIND);
  const flags = v.getUint16(FrameOffset.FLAGS);
  const length = v.getUint32(FrameOffset.LENGTH);
  const stream = v.getUint32(FrameOffset.STREAM);
  if (kind === FrameKind.CONTROL) {
    if (flags !== 0) return `control frame with flags 0x${flags.toString(16)}`;
    if (length === 0 || length > MAX_CONTROL) return `control frame length ${length} outside 1…${MAX_CONTROL}`;
  } else if (kind === FrameKind.BULK) {
    if ((flags & ~FrameFlag.LAST) !== 0) return `bulk frame with unknown flags 0x${flags.toString(16)}`;
    if (length === 0 || length > MAX_BULK_CHUNK) return `bulk frame length ${length} outside 1…${MAX_BULK_CHUNK}`;
  } else {
    return `unknown frame kind ${kind}`;
  }
  return { kind, flags, stream, length };
}
