/**
 * The receive side of a host link: cuts the TCP byte stream into frames (LinkFrame.ts) and
 * frames into messages (one CONTROL frame, then its bulk in BULK frames).
 *
 * The peer is untrusted, so a frame's header is checked (`checkHeader`, and against the message
 * being reassembled) BEFORE its payload is buffered: a hostile peer costs at most one socket read
 * plus one frame (≤ MAX_BULK_CHUNK) plus the bulk it actually sent (≤ MAX_MESSAGE_BULK, the
 * announced `bulk_len` is not allocated up front). Every violation throws `PV_ERR_LINK_FRAME`
 * with the rule it broke; the caller closes the link.
 *
 * Reassembly rules: a BULK frame needs a preceding CONTROL frame with bulk_len > 0; its stream is
 * that CONTROL frame's; the bulk frames' lengths sum to bulk_len exactly, and only the frame that
 * completes it carries LAST; a CONTROL frame may not arrive inside a bulk.
 */

import { pvError } from '../../protocol/errors.js';
import {
  checkHeader,
  FRAME_HEADER_BYTES,
  FrameFlag,
  type FrameHeader,
  FrameKind,
} from '../../protocol/link/LinkFrame.js';
import type { LinkCodec, LinkInMessage } from './LinkCodec.js';

/** One received message: its normalized control part and its bulk (if bulk_len > 0). */
export interface ReadMessage {
  msg: LinkInMessage;
  bulk: Uint8Array | undefined;
}

interface BulkInProgress {
  msg: LinkInMessage;
  stream: number;
  parts: Uint8Array[];
  got: number;
}

function violation(why: string): Error {
  return pvError('PV_ERR_LINK_FRAME', why);
}

/** Stateful frame parser for one link; feed it every socket chunk in order. */
export class LinkReader {
  framesIn = 0;
  bytesIn = 0;
  private _chunks: Uint8Array[] = [];
  private _head = 0;
  private _have = 0;
  private _hdr: FrameHeader | undefined;
  private _bulk: BulkInProgress | undefined;

  constructor(
    private readonly _codec: LinkCodec,
    private readonly _onMessage: (m: ReadMessage) => void,
  ) {}

  /** Feeds bytes; delivers every message they complete. Throws PV_ERR_LINK_FRAME on a violation. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.bytesIn += chunk.length;
    this._chunks.push(chunk);
    this._have += chunk.length;
    for (;;) {
      if (!this._hdr) {
        if (this._have < FRAME_HEADER_BYTES) return;
        const h = checkHeader(this._take(FRAME_HEADER_BYTES), 0);
        if (typeof h === 'string') throw violation(h);
        this._checkSequence(h);
        this._hdr = h;
      }
      const h = this._hdr;
      if (this._have < h.length) return;
      // INVARIANT: h passed checkHeader and _checkSequence, so h.length is bounded and expected.
      const payload = this._take(h.length);
      this._hdr = undefined;
      this.framesIn++;
      if (h.kind === FrameKind.CONTROL) this._control(payload, h.stream);
      else this._bulkFrame(payload, h);
    }
  }

  /** The stream ended: why that is a truncation, or undefined at a message boundary. */
  truncation(): string | undefined {
    if (this._hdr) return `stream ended inside a frame (${this._have} of ${this._hdr.length} payload bytes)`;
    if (this._have > 0) return `stream ended inside a frame header (${this._have} bytes)`;
    if (this._bulk) return `stream ended inside a bulk (${this._bulk.got} of ${this._bulk.msg.bulkLen} bytes)`;
    return undefined;
  }

  /** Checks a header against the message being reassembled, before its payload is read. */
  private _checkSequence(h: FrameHeader): void {
    const b = this._bulk;
    if (h.kind === FrameKind.CONTROL) {
      if (b) throw violation(`control frame inside the bulk of stream ${b.stream} (${b.got}/${b.msg.bulkLen} bytes)`);
      return;
    }
    if (!b) throw violation(`bulk frame of stream ${h.stream} without a control frame`);
    if (h.stream !== b.stream)
      throw violation(`bulk frame of stream ${h.stream} inside the bulk of stream ${b.stream}`);
    const after = b.got + h.length;
    if (after > b.msg.bulkLen) throw violation(`bulk frames exceed bulk_len ${b.msg.bulkLen} (stream ${b.stream})`);
    const last = (h.flags & FrameFlag.LAST) !== 0;
    if (last && after !== b.msg.bulkLen) {
      throw violation(`LAST bulk frame ends at ${after} of bulk_len ${b.msg.bulkLen} (stream ${b.stream})`);
    }
    if (!last && after === b.msg.bulkLen) throw violation(`bulk of stream ${b.stream} complete without LAST`);
  }

  private _control(payload: Uint8Array, stream: number): void {
    const msg = this._codec.decode(payload);
    if (msg.bulkLen === 0) {
      this._onMessage({ msg, bulk: undefined });
      return;
    }
    this._bulk = { msg, stream, parts: [], got: 0 };
  }

  private _bulkFrame(payload: Uint8Array, h: FrameHeader): void {
    // INVARIANT: _checkSequence ensured a bulk is in progress with this stream and room for it.
    const b = this._bulk as BulkInProgress;
    b.parts.push(payload);
    b.got += payload.length;
    if ((h.flags & FrameFlag.LAST) === 0) return;
    this._bulk = undefined;
    this._onMessage({ msg: b.msg, bulk: concat(b.parts, b.got) });
  }

  /** Removes `n` ≤ _have bytes from the front: a view when they sit in one chunk, else a copy. */
  private _take(n: number): Uint8Array {
    this._have -= n;
    const first = this._chunks[0];
    if (first.length - this._head >= n) {
      const out = first.subarray(this._head, this._head + n);
      this._head += n;
      if (this._head === first.length) {
        this._chunks.shift();
        this._head = 0;
      }
      return out;
    }
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const c = this._chunks[0];
      const k = Math.min(n - at, c.length - this._head);
      out.set(c.subarray(this._head, this._head + k), at);
      at += k;
      this._head += k;
      if (this._head === c.length) {
        this._chunks.shift();
        this._head = 0;
      }
    }
    return out;
  }
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  // A plain Uint8Array view, not the socket's Buffer (whose `slice` would not copy).
  if (parts.length === 1) return new Uint8Array(parts[0].buffer, parts[0].byteOffset, parts[0].length);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
