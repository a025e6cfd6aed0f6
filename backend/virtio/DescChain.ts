/**
 * Walking one descriptor chain on the device side (VIRTIO 1.2 §2.7.5, reference §5.1 and §6.2
 * item 8; rust-vmm virtio-queue `DescriptorChain`, Firecracker `DescriptorChain::checked_new`).
 *
 * The guest may rewrite its descriptor table while the device walks it (XSA-155's double fetch),
 * so each descriptor is copied ONCE, byte by byte, into a private 16-byte scratch and every
 * decision below is taken on that copy; nothing is re-read from guest memory. A torn copy (half
 * old, half new) is still one consistent set of values and is judged as such.
 *
 * Rules, each refused with a typed VirtioError (all 'fatal': the queue needs a reset):
 *  - the head and every `next` < QS (inside an indirect table: < its entry count) → BAD_DESC;
 *  - at most QS descriptors in the direct chain, at most n in an n-entry indirect table (TTL,
 *    so a loop ends) → LOOP;
 *  - INDIRECT only when VIRTIO_F_INDIRECT_DESC was negotiated, never with NEXT, never inside an
 *    indirect table; the table's length a non-zero multiple of 16 and at most 16·QS → BAD_DESC;
 *    the table inside guest memory → BAD_ADDR. The WRITE flag of the descriptor that points at
 *    the table is ignored, as the spec says the device MUST;
 *  - an address whose high word is ≥ 2^21 (past 2^53) or a range outside guest memory, or a
 *    device-writable buffer in a read-only region → BAD_ADDR;
 *  - a device-readable descriptor after a device-writable one → DIRECTION;
 *  - more than 2^32 bytes in the chain (summed exactly: at most 2·QS terms below 2^32) → TOO_LONG.
 *
 * The output is an `IovecList` the caller reuses: readable segments first, then writable ones.
 * It is the device's ONLY way to touch the buffers: reads come from readable segments, writes go
 * to writable segments and stop at their total, so writing a readable buffer, the descriptor
 * table or past the chain cannot be expressed. Nothing is allocated per chain.
 */

import { pvError } from '../../protocol/errors.js';
import {
  DescOffset,
  VIRTQ_DESC_BYTES,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from '../../protocol/virtio/SplitRing.js';
import { type GuestMemoryMap, newTranslation, type Translation } from './GuestMemoryMap.js';

/** A chain may carry at most this many bytes (VIRTIO 1.2 §2.7.5.2). */
export const VIRTQ_CHAIN_MAX_BYTES = 2 ** 32;
/** A descriptor address whose high word reaches this is past Number.MAX_SAFE_INTEGER. */
const UNSAFE_HI = 0x200000;

/** The buffers of one chain; see the file comment. */
export class IovecList {
  /** Most segments: a direct chain of QS and an indirect table of QS. */
  readonly capacity: number;
  private readonly _views: Uint8Array[];
  private readonly _offs: Float64Array;
  private readonly _lens: Float64Array;
  private readonly _gpas: Float64Array;
  private _readable = 0;
  private _writable = 0;
  private _readBytes = 0;
  private _writeBytes = 0;

  constructor(qs: number) {
    this.capacity = 2 * qs;
    this._views = new Array<Uint8Array>(this.capacity).fill(new Uint8Array(0));
    this._offs = new Float64Array(this.capacity);
    this._lens = new Float64Array(this.capacity);
    this._gpas = new Float64Array(this.capacity);
  }

  /** Device-readable segments (they come first). */
  get readableCount(): number {
    return this._readable;
  }
  /** Device-writable segments (after the readable ones). */
  get writableCount(): number {
    return this._writable;
  }
  /** Bytes the device may read. */
  get readableBytes(): number {
    return this._readBytes;
  }
  /** Bytes the device may write. */
  get writableBytes(): number {
    return this._writeBytes;
  }
  /** Guest-physical address of segment `i` (as validated). */
  gpa(i: number): number {
    return this._gpas[i];
  }
  /** Length of segment `i` (as validated). */
  len(i: number): number {
    return this._lens[i];
  }

  /** Empties the list. */
  clear(): void {
    this._readable = this._writable = this._readBytes = this._writeBytes = 0;
  }

  /**
   * Judges one buffer descriptor of the chain being walked and appends it: device-readable
   * buffers only before device-writable ones (PV_ERR_VIRTQ_DIRECTION), the chain's bytes at most
   * 2^32 (PV_ERR_VIRTQ_TOO_LONG), `[gpa, gpa + len)` inside guest memory with the right
   * permission (`mem.translate` into the caller's scratch `t`). The split and packed walkers
   * both call it, so the rules are the same for both layouts.
   */
  append(mem: GuestMemoryMap, t: Translation, gpa: number, len: number, write: boolean): void {
    if (!write && this._writable > 0) {
      throw pvError('PV_ERR_VIRTQ_DIRECTION', `buffer at 0x${gpa.toString(16)}: device-readable after device-writable`);
    }
    // Exact: at most 2·QS ≤ 65536 terms each below 2^32, far under 2^53.
    if (this._readBytes + this._writeBytes + len > VIRTQ_CHAIN_MAX_BYTES) {
      throw pvError('PV_ERR_VIRTQ_TOO_LONG', 'the chain carries more than 2^32 bytes');
    }
    mem.translate(gpa, len, write, t);
    this._push(t, gpa, len, write);
  }

  private _push(t: Translation, gpa: number, len: number, write: boolean): void {
    const i = this._readable + this._writable;
    // INVARIANT: the walker's TTLs bound a chain to QS direct + QS indirect descriptors = capacity.
    this._views[i] = t.bytes;
    this._offs[i] = t.offset;
    this._lens[i] = len;
    this._gpas[i] = gpa;
    if (write) {
      this._writable++;
      this._writeBytes += len;
    } else {
      this._readable++;
      this._readBytes += len;
    }
  }

  /**
   * Copies up to `n` readable bytes, starting at readable byte `from`, into `dst[at…]`; returns
   * the count. (The copy makes one subarray view per segment: the walk allocates nothing, the
   * data path a view per segment touched.)
   */
  read(from: number, dst: Uint8Array, at: number, n: number): number {
    n = Math.min(n, dst.length - at);
    let done = 0;
    let skip = from;
    for (let i = 0; i < this._readable && done < n; i++) {
      const len = this._lens[i];
      if (skip >= len) {
        skip -= len;
        continue;
      }
      const k = Math.min(len - skip, n - done);
      const o = this._offs[i] + skip;
      dst.set(this._views[i].subarray(o, o + k), at + done);
      done += k;
      skip = 0;
    }
    return done;
  }

  /**
   * Writes up to `n` bytes of `src[at…]` at writable byte `to`; stops at the writable total (so
   * nothing past the chain's writable part can be written); returns the count.
   */
  write(to: number, src: Uint8Array, at: number, n: number): number {
    n = Math.min(n, src.length - at);
    let done = 0;
    let skip = to;
    const end = this._readable + this._writable;
    for (let i = this._readable; i < end && done < n; i++) {
      const len = this._lens[i];
      if (skip >= len) {
        skip -= len;
        continue;
      }
      const k = Math.min(len - skip, n - done);
      this._views[i].set(src.subarray(at + done, at + done + k), this._offs[i] + skip);
      done += k;
      skip = 0;
    }
    return done;
  }
}

/** Walks chains of one queue; see the file comment. */
export class DescChain {
  private readonly _scratch = new Uint8Array(VIRTQ_DESC_BYTES);
  private readonly _dv = new DataView(this._scratch.buffer);
  private readonly _tr: Translation = newTranslation();
  private readonly _table: Translation = newTranslation();

  /**
   * @param mem the guest's memory map
   * @param qs the queue size (INVARIANT: checked by the queue's attach)
   * @param desc where the descriptor table lives (translated, 16·QS bytes, by the queue's attach)
   * @param indirectDesc VIRTIO_F_INDIRECT_DESC was negotiated
   */
  constructor(
    private readonly _mem: GuestMemoryMap,
    private readonly _qs: number,
    private readonly _desc: Readonly<Translation>,
    private readonly _indirectDesc: boolean,
  ) {}

  /** Walks the chain whose head is `head` into `out` (cleared first); throws a VirtioError on any rule. */
  walk(head: number, out: IovecList): void {
    out.clear();
    const qs = this._qs;
    if (!(head >= 0 && head < qs)) throw pvError('PV_ERR_VIRTQ_BAD_DESC', `head ${head} is not below QS ${qs}`);
    let table: Readonly<Translation> = this._desc;
    let entries = qs;
    let ttl = qs;
    let indirect = false;
    let idx = head;
    for (;;) {
      if (ttl === 0) {
        throw pvError('PV_ERR_VIRTQ_LOOP', `chain from head ${head} has more than ${entries} descriptors`);
      }
      ttl--;
      // INVARIANT: idx < entries and the table spans 16·entries bytes (translated), so the copy stays inside it.
      const src = table.bytes;
      const base = table.offset + idx * VIRTQ_DESC_BYTES;
      for (let k = 0; k < VIRTQ_DESC_BYTES; k++) this._scratch[k] = src[base + k];
      const dv = this._dv;
      const lo = dv.getUint32(DescOffset.ADDR, true);
      const hi = dv.getUint32(DescOffset.ADDR + 4, true);
      const len = dv.getUint32(DescOffset.LEN, true);
      const flags = dv.getUint16(DescOffset.FLAGS, true);
      const next = dv.getUint16(DescOffset.NEXT, true);
      if (hi >= UNSAFE_HI) {
        throw pvError(
          'PV_ERR_VIRTQ_BAD_ADDR',
          `descriptor ${idx}: address 0x${hi.toString(16)}_${hex8(lo)} beyond 2^53`,
        );
      }
      const addr = lo + hi * 2 ** 32;
      if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
        if (indirect) throw pvError('PV_ERR_VIRTQ_BAD_DESC', `descriptor ${idx}: nested indirect table`);
        if (!this._indirectDesc) {
          throw pvError('PV_ERR_VIRTQ_BAD_DESC', `descriptor ${idx}: INDIRECT without VIRTIO_F_INDIRECT_DESC`);
        }
        if ((flags & VIRTQ_DESC_F_NEXT) !== 0) {
          throw pvError('PV_ERR_VIRTQ_BAD_DESC', `descriptor ${idx}: INDIRECT together with NEXT`);
        }
        if (len === 0 || len % VIRTQ_DESC_BYTES !== 0 || len > VIRTQ_DESC_BYTES * qs) {
          throw pvError('PV_ERR_VIRTQ_BAD_DESC', `descriptor ${idx}: indirect table of ${len} bytes`);
        }
        this._mem.translate(addr, len, false, this._table);
        table = this._table;
        entries = ttl = len / VIRTQ_DESC_BYTES;
        indirect = true;
        idx = 0;
        continue;
      }
      out.append(this._mem, this._tr, addr, len, (flags & VIRTQ_DESC_F_WRITE) !== 0);
      if ((flags & VIRTQ_DESC_F_NEXT) === 0) return;
      if (next >= entries) {
        throw pvError('PV_ERR_VIRTQ_BAD_DESC', `descriptor ${idx}: next ${next} is not below ${entries}`);
      }
      idx = next;
    }
  }
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}
