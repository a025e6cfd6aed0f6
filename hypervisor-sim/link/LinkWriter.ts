/**
 * The send side of a host link: one FIFO of messages, each written as its CONTROL frame then its
 * BULK frames back to back (LinkFrame.ts), so the peer never sees two bulks interleaved.
 *
 * Memory is bounded twice, never by buffering without limit:
 *  - the queue: messages admitted but not yet handed to the socket hold at most SEND_QUEUE_BYTES
 *    (frames counted with their headers); a sender whose message does not fit waits, in order,
 *    for room. A message larger than the bound is admitted when the queue is empty.
 *  - the socket: frames are written while `socket.writableLength` < SOCKET_HIGH_WATER; above it
 *    the writer awaits 'drain' (a peer that stops reading stalls the writer, not the heap).
 * A message's `done` resolves from the write callback of its last frame (flushed to the kernel),
 * so its bulk buffer is no longer referenced and the sender may reuse it.
 */

import type net from 'node:net';
import { pvError } from '../../protocol/errors.js';
import {
  FRAME_HEADER_BYTES,
  FrameFlag,
  FrameKind,
  MAX_BULK_CHUNK,
  writeHeader,
} from '../../protocol/link/LinkFrame.js';
import type { LinkCodec, LinkOutMessage } from './LinkCodec.js';

/** Unsent bytes the queue admits (beyond what sits in the socket). */
export const SEND_QUEUE_BYTES = 1024 * 1024;
/** Bytes kept in the socket's own buffer before the writer awaits 'drain'. */
export const SOCKET_HIGH_WATER = 1024 * 1024;

/** A message handed to the writer. */
export interface Outgoing {
  /** Resolves when the message's last frame was flushed; rejects if it never will be. */
  readonly done: Promise<void>;
  /** Drops the message if none of its frames was written yet (a request that timed out). */
  cancel(): void;
}

interface Out {
  control: Uint8Array;
  bulk: Uint8Array | undefined;
  stream: number;
  /** Bytes still to hand to the socket (headers included). */
  left: number;
  started: boolean;
  settled: boolean;
  resolve(): void;
  reject(err: Error): void;
}

export class LinkWriter {
  framesOut = 0;
  bytesOut = 0;
  maxQueuedBytes = 0;
  private readonly _queue: Out[] = [];
  private readonly _waiting: Out[] = [];
  private readonly _drainWaiters: (() => void)[] = [];
  /** Messages fully handed to the socket whose last write callback has not run yet. */
  private readonly _inflight = new Set<Out>();
  private _queueBytes = 0;
  private _stream = 0;
  private _pumping = false;
  private _down: Error | undefined;

  constructor(
    private readonly _socket: net.Socket,
    private readonly _codec: LinkCodec,
  ) {
    _socket.on('drain', () => this._wakeDrain());
  }

  /** Bytes accepted but not yet flushed: the queue's plus the socket's buffer. */
  queuedBytes(): number {
    return this._queueBytes + this._socket.writableLength;
  }

  /** Queues one message (`m.bulkLen` must be `bulk`'s length). Never throws; `done` reports. */
  send(m: LinkOutMessage, bulk?: Uint8Array): Outgoing {
    let out!: Out;
    const done = new Promise<void>((resolve, reject) => {
      out = { control: new Uint8Array(0), bulk, stream: 0, left: 0, started: false, settled: false, resolve, reject };
    });
    // Callers that only cancel must not leave an unhandled rejection behind.
    done.catch(() => {});
    const handle: Outgoing = { done, cancel: () => this._cancel(out) };
    try {
      if (this._down) throw this._down;
      out.control = this._codec.encode(m);
    } catch (err) {
      this._settle(out, err as Error);
      return handle;
    }
    const bulkLen = bulk?.length ?? 0;
    out.stream = this._stream;
    this._stream = (this._stream + 1) >>> 0;
    out.left = FRAME_HEADER_BYTES * (1 + Math.ceil(bulkLen / MAX_BULK_CHUNK)) + out.control.length + bulkLen;
    if (this._waiting.length === 0 && this._fits(out)) this._admit(out);
    else this._waiting.push(out);
    return handle;
  }

  /** The link is down: every message not yet flushed fails with `err`. */
  close(err: Error): void {
    if (this._down) return;
    this._down = err;
    for (const out of [...this._waiting, ...this._queue, ...this._inflight]) this._settle(out, err);
    this._waiting.length = 0;
    this._queue.length = 0;
    this._queueBytes = 0;
    this._wakeDrain();
  }

  private _fits(out: Out): boolean {
    return this._queueBytes === 0 || this._queueBytes + out.left <= SEND_QUEUE_BYTES;
  }

  private _admit(out: Out): void {
    this._queue.push(out);
    this._queueBytes += out.left;
    this._noteQueued();
    void this._pump();
  }

  private _admitWaiting(): void {
    while (this._waiting.length > 0 && this._fits(this._waiting[0])) this._admit(this._waiting.shift() as Out);
  }

  private _cancel(out: Out): void {
    if (out.started || out.settled) return;
    const w = this._waiting.indexOf(out);
    if (w >= 0) this._waiting.splice(w, 1);
    const q = this._queue.indexOf(out);
    if (q >= 0) {
      this._queue.splice(q, 1);
      this._queueBytes -= out.left;
      this._admitWaiting();
    }
    this._settle(out, pvError('PV_ERR_TIMEOUT', 'message cancelled before it was sent'));
  }

  /** Writes queued messages in order; runs synchronously until the socket asks it to wait. */
  private async _pump(): Promise<void> {
    if (this._pumping) return;
    this._pumping = true;
    try {
      while (!this._down && this._queue.length > 0) {
        const out = this._queue[0];
        out.started = true;
        await this._writeMessage(out);
        if (this._down) return;
        this._queue.shift();
      }
    } finally {
      this._pumping = false;
    }
  }

  private async _writeMessage(out: Out): Promise<void> {
    const bulkLen = out.bulk?.length ?? 0;
    if (this._socket.writableLength >= SOCKET_HIGH_WATER && !(await this._drained())) return;
    this._frame(out, FrameKind.CONTROL, 0, out.control, bulkLen === 0);
    for (let at = 0; at < bulkLen; ) {
      if (this._socket.writableLength >= SOCKET_HIGH_WATER && !(await this._drained())) return;
      const n = Math.min(MAX_BULK_CHUNK, bulkLen - at);
      const last = at + n === bulkLen;
      // INVARIANT: bulk is defined when bulkLen > 0.
      this._frame(out, FrameKind.BULK, last ? FrameFlag.LAST : 0, (out.bulk as Uint8Array).subarray(at, at + n), last);
      at += n;
    }
  }

  /** Hands one frame to the socket; the message's last frame settles it from its write callback. */
  private _frame(out: Out, kind: FrameKind, flags: number, payload: Uint8Array, last: boolean): void {
    const onWritten = last
      ? (err?: Error | null) => this._settle(out, err ? this._linkDown(err) : undefined)
      : undefined;
    const header = { kind, flags, stream: out.stream, length: payload.length };
    if (kind === FrameKind.CONTROL) {
      // Control payloads are small: one buffer, one write.
      const buf = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
      writeHeader(buf, 0, header);
      buf.set(payload, FRAME_HEADER_BYTES);
      this._socket.write(buf, onWritten);
    } else {
      const h = new Uint8Array(FRAME_HEADER_BYTES);
      writeHeader(h, 0, header);
      this._socket.write(h);
      this._socket.write(payload, onWritten);
    }
    if (last) this._inflight.add(out);
    const bytes = FRAME_HEADER_BYTES + payload.length;
    out.left -= bytes;
    this._queueBytes -= bytes;
    this.framesOut++;
    this.bytesOut += bytes;
    this._noteQueued();
    this._admitWaiting();
  }

  /** Waits for the socket to drain; false when the link went down meanwhile. */
  private async _drained(): Promise<boolean> {
    while (!this._down && this._socket.writableLength >= SOCKET_HIGH_WATER) {
      await new Promise<void>((r) => this._drainWaiters.push(r));
    }
    return !this._down;
  }

  private _wakeDrain(): void {
    for (const r of this._drainWaiters.splice(0)) r();
  }

  private _linkDown(err: Error): Error {
    return this._down ?? pvError('PV_ERR_PCIE_LINK_DOWN', `host link write failed: ${err.message}`);
  }

  private _settle(out: Out, err: Error | undefined): void {
    if (out.settled) return;
    out.settled = true;
    this._inflight.delete(out);
    if (err) out.reject(err);
    else out.resolve();
  }

  private _noteQueued(): void {
    const q = this.queuedBytes();
    if (q > this.maxQueuedBytes) this.maxQueuedBytes = q;
  }
}
