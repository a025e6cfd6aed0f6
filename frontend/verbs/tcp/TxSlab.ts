/**
 * A connection's transmit buffer: one fixed slab used as a ring of contiguous frames, like a
 * NIC's TX FIFO. Frames are built in place (header + payload copied from guest memory), handed
 * to the socket in batches, and their bytes are released when the socket's write callback says
 * the kernel has them. The slab is the bound on what a helper buffers toward one peer: when a
 * frame does not fit, its producer waits for a release (back-pressure), and after a `write()`
 * that returned false nothing more is handed over until 'drain'.
 *
 * ```
 *  not wrapped:  [ free | tail … flushed … head | free ]
 *  wrapped:      [ 0 … head | free | tail … wrapEnd | unused ]
 * ```
 * Invariant: bytes in flight or waiting are [tail, head) (not wrapped) or
 * [tail, wrapEnd) ∪ [0, head) (wrapped, head ≤ tail); empty when tail == head and not wrapped.
 */

import type { Socket } from 'node:net';
import { Stage, stages } from '../../../protocol/stage/StageLedger.js';

/** In-flight write records kept at most (each flush makes at most two writes). */
const MAX_WRITES = 1024;

/** See the file comment. */
export class TxSlab {
  /** The slab; frames are written at offsets `reserve` returns. */
  readonly buf: Buffer;
  private readonly _size: number;
  private _head = 0;
  private _tail = 0;
  private _flushed = 0;
  private _wrapEnd = 0;
  private _wrapped = false;
  /** True after write() returned false, until 'drain'. */
  private _blocked = false;
  /** End offsets of writes in flight, FIFO (write callbacks arrive in order). */
  private readonly _ends = new Int32Array(MAX_WRITES);
  private _endsHead = 0;
  private _endsCount = 0;
  private readonly _onWritten: (err?: Error | null) => void;

  /** `onRelease` runs after bytes are released (producers may continue). */
  constructor(size: number, onRelease: () => void) {
    this.buf = Buffer.alloc(size);
    this._size = size;
    this._onWritten = () => {
      this._release();
      onRelease();
    };
  }

  /** Bytes reserved and not yet released (for tests and stats). */
  get used(): number {
    if (!this._wrapped) return this._head - this._tail;
    return this._wrapEnd - this._tail + this._head;
  }

  /** Reserves `n` contiguous bytes and returns their offset, or -1 when they do not fit now. */
  reserve(n: number): number {
    if (!this._wrapped) {
      if (this._tail === this._head && this._flushed === this._head) {
        // Empty: restart at 0 so the largest frame fits.
        this._head = 0;
        this._tail = 0;
        this._flushed = 0;
      }
      if (this._size - this._head >= n) {
        const at = this._head;
        this._head += n;
        return at;
      }
      if (n > this._tail) return -1;
      // Wrap: the top part ends at the old head; new frames start at 0.
      this._wrapEnd = this._head;
      this._wrapped = true;
      if (this._flushed === this._wrapEnd) this._flushed = 0;
      this._head = n;
      return 0;
    }
    if (this._tail - this._head < n) return -1;
    const at = this._head;
    this._head += n;
    return at;
  }

  /** Lets flushing go on after the socket's 'drain'. */
  unblock(): void {
    this._blocked = false;
  }

  /** True when bytes are reserved but not yet handed to the socket. */
  get pending(): boolean {
    return this._flushed !== this._head;
  }

  /** Hands everything reserved so far to the socket (at most two writes). */
  flush(sock: Socket): void {
    if (this._blocked || this._flushed === this._head) return;
    if (this._wrapped && this._flushed > this._head) {
      // The top part is still pending: write it up to wrapEnd, then the bottom part.
      if (!this._write(sock, this._flushed, this._wrapEnd)) return;
      this._flushed = 0;
      if (this._head === 0) return;
    }
    this._write(sock, this._flushed, this._head);
  }

  private _write(sock: Socket, from: number, to: number): boolean {
    if (this._endsCount === MAX_WRITES || this._blocked) return false;
    this._ends[(this._endsHead + this._endsCount) % MAX_WRITES] = to;
    this._endsCount++;
    this._flushed = to;
    // Stage ledger: handing bytes to the kernel (node:net tries the send syscall right here) is
    // the tcp transport's FABRIC.
    const prev = stages.enter(Stage.FABRIC);
    try {
      if (!sock.write(this.buf.subarray(from, to), this._onWritten)) this._blocked = true;
    } finally {
      stages.enter(prev);
    }
    return true;
  }

  private _release(): void {
    if (this._endsCount === 0) return;
    const end = this._ends[this._endsHead];
    this._endsHead = (this._endsHead + 1) % MAX_WRITES;
    this._endsCount--;
    this._tail = end;
    if (this._wrapped && end === this._wrapEnd) {
      this._tail = 0;
      this._wrapped = false;
    }
  }
}
