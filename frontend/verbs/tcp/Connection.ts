/**
 * One TCP connection between two software NIC threads: the receive-side frame parser (which
 * copies payload straight from socket chunks into guest memory, as a kernel stack copies into
 * user buffers) and the transmit side (a `TxSlab` plus the queue of responder output).
 *
 * Every connection starts with a HELLO from each side naming its listening port. The parser
 * treats the peer as hostile: a header that breaks a framing rule (Wire.ts `checkHeader`), a
 * first frame that is not HELLO, a second HELLO, or a stream that ends inside a frame closes this
 * connection with a logged error. Nothing a peer sends can throw out of the 'data' handler.
 */

import type { Socket } from 'node:net';
import { RespQueue } from './RespQueue.js';
import type { Sink } from './SoftQp.js';
import { TxSlab } from './TxSlab.js';
import { decodeHeader, emptyHeader, type FrameHeader, HEADER_SIZE, WireOp } from './Wire.js';

/** What a connection needs from its NIC thread. */
export interface FrameHandler {
  /** The guest memory, as a Buffer (payload is copied into it). */
  readonly memory: Buffer;
  /** The same memory as Int32 words, to wake a guest sleeping on a word we wrote. */
  readonly memoryWords: Int32Array;
  /** A valid header arrived: where should its payload go (null: drop it)? Throws ProtocolError. */
  onHeader(conn: Connection, h: FrameHeader): Sink | null;
  /** The frame's payload has been consumed (`accepted`: onHeader returned a sink). */
  onFrameEnd(conn: Connection, h: FrameHeader, accepted: boolean): void;
  /** The peer said who it is. */
  onHello(conn: Connection): void;
  /** A socket chunk was processed, or transmit room was freed: time to make progress. */
  onProgress(): void;
  /** The connection is gone (after `fail` or a socket close). */
  onClose(conn: Connection): void;
  /** Counts a malformed or truncated frame. */
  onBadFrame(conn: Connection, reason: string): void;
}

/** Thrown by handlers for a frame that breaks the protocol: the connection is closed. */
export class ProtocolError extends Error {}

/**
 * Payload bytes of one frame go into a sink's ranges, starting at message offset `pos`. Returns
 * the guest-memory index of the last byte written, or -1 if none was.
 */
export function scatter(src: Buffer, from: number, to: number, dst: Buffer, sink: Sink, pos: number): number {
  let last = -1;
  let i = 0;
  let base = 0;
  // Skip the ranges that end before `pos` (at most five).
  while (i < sink.n && base + sink.len[i] <= pos) base += sink.len[i++];
  while (from < to && i < sink.n) {
    const inRange = pos - base;
    const n = Math.min(to - from, sink.len[i] - inRange);
    // INVARIANT: the sink's ranges were checked against a live MR when the message was accepted,
    // and the frame's offset + length ≤ msg_len ≤ sink.total, so this stays inside guest memory.
    src.copy(dst, sink.addr[i] + inRange, from, from + n);
    if (n > 0) last = sink.addr[i] + inRange + n - 1;
    from += n;
    pos += n;
    base += sink.len[i++];
  }
  return last;
}

/** See the file comment. */
export class Connection {
  readonly socket: Socket;
  readonly outbound: boolean;
  readonly tx: TxSlab;
  readonly resp = new RespQueue();
  /** The peer's listening port: known at once for outbound connections, from HELLO for inbound. */
  peerPort: number;
  /** Outbound: the TCP connection is established. Inbound: always true. */
  connected: boolean;
  helloSeen = false;
  closed = false;
  /** Paused for back-pressure (its requests' responses queue up elsewhere). */
  paused = false;
  /** Callbacks waiting for `connected` (RTR commands): called with undefined or an error text. */
  readonly waiters: ((err?: string) => void)[] = [];
  private readonly _h: FrameHandler;
  private readonly _hdrBuf = Buffer.alloc(HEADER_SIZE);
  private _hdrFill = 0;
  private readonly _hdr = emptyHeader();
  private _inPayload = false;
  private _remaining = 0;
  private _sink: Sink | null = null;
  private _pos = 0;

  constructor(h: FrameHandler, socket: Socket, outbound: boolean, peerPort: number, slabBytes: number) {
    this._h = h;
    this.socket = socket;
    this.outbound = outbound;
    this.peerPort = peerPort;
    this.connected = !outbound;
    this.tx = new TxSlab(slabBytes, () => h.onProgress());
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this._onData(chunk));
    socket.on('drain', () => {
      this.tx.unblock();
      h.onProgress();
    });
    socket.on('end', () => {
      if (this._hdrFill !== 0 || this._inPayload) this._bad('stream ended inside a frame (truncated)');
      socket.end();
    });
    socket.on('error', (err) => this._closeWith(`socket error: ${err.message}`));
    socket.on('close', () => this._closeWith('closed'));
    if (outbound) {
      socket.on('connect', () => {
        this.connected = true;
        this._wake(undefined);
      });
    }
  }

  /** Closes the connection after a protocol violation (logged by the handler). */
  fail(reason: string): void {
    this._bad(reason);
  }

  /** Hands reserved frames to the socket. */
  flush(): void {
    if (!this.closed) this.tx.flush(this.socket);
  }

  private _bad(reason: string): void {
    if (this.closed) return;
    this._h.onBadFrame(this, reason);
    this.socket.destroy();
    this._closeWith(reason);
  }

  private _closeWith(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.connected = false;
    this.resp.clear();
    this._wake(`connection to port ${this.peerPort} ${reason}`);
    this._h.onClose(this);
  }

  private _wake(err: string | undefined): void {
    const w = this.waiters.splice(0);
    for (const cb of w) cb(err);
  }

  private _onData(chunk: Buffer): void {
    try {
      this._parse(chunk);
    } catch (err) {
      // A handler refused a frame (ProtocolError) or had a bug: either way only this
      // connection pays; the helper keeps running.
      this._bad(err instanceof Error ? err.message : String(err));
    }
    this._h.onProgress();
  }

  private _parse(chunk: Buffer): void {
    const n = chunk.length;
    let off = 0;
    while (off < n && !this.closed) {
      if (!this._inPayload) {
        let src = chunk;
        let at = off;
        if (this._hdrFill === 0 && n - off >= HEADER_SIZE) {
          off += HEADER_SIZE; // the whole header is in this chunk: decode it in place
        } else {
          const take = Math.min(HEADER_SIZE - this._hdrFill, n - off);
          chunk.copy(this._hdrBuf, this._hdrFill, off, off + take);
          this._hdrFill += take;
          off += take;
          if (this._hdrFill < HEADER_SIZE) return;
          this._hdrFill = 0;
          src = this._hdrBuf;
          at = 0;
        }
        this._onHeader(src, at);
        continue;
      }
      const take = Math.min(this._remaining, n - off);
      if (this._sink) {
        const last = scatter(chunk, off, off + take, this._h.memory, this._sink, this._pos);
        // Like the NIC: wake a guest sleeping on the word that holds the last byte written
        // (perftest's write_lat polls the last byte of its buffer). ORDERING: the bytes were
        // copied before this notify; a sleeper re-checks them after waking.
        if (last >= 0) Atomics.notify(this._h.memoryWords, last >> 2);
      }
      this._pos += take;
      this._remaining -= take;
      off += take;
      if (this._remaining === 0) this._endFrame();
    }
  }

  private _onHeader(src: Buffer, at: number): void {
    const h = this._hdr;
    const err = decodeHeader(src, at, h);
    if (err !== undefined) throw new ProtocolError(err);
    if (h.opcode === WireOp.HELLO) {
      if (this.helloSeen) throw new ProtocolError('second HELLO');
      if (this.outbound && h.aux32 !== this.peerPort) {
        throw new ProtocolError(`HELLO from port ${h.aux32} on a connection to port ${this.peerPort}`);
      }
      this.helloSeen = true;
      this.peerPort = h.aux32;
      this._h.onHello(this);
      return;
    }
    if (!this.helloSeen) throw new ProtocolError('first frame is not HELLO');
    this._sink = this._h.onHeader(this, h);
    this._pos = h.offset;
    this._remaining = h.length;
    if (this._sink && h.offset + h.length > this._sink.total) throw new ProtocolError('payload beyond the message');
    if (h.length === 0) this._endFrame();
    else this._inPayload = true;
  }

  private _endFrame(): void {
    this._inPayload = false;
    const accepted = this._sink !== null;
    this._sink = null;
    this._h.onFrameEnd(this, this._hdr, accepted);
  }
}
