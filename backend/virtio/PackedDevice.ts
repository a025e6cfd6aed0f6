/**
 * The device side of one packed virtqueue over a guest's memory (vhost-like; VIRTIO 1.2 §2.8,
 * reference §5.2, §6; layout in protocol/virtio/PackedRing.ts). Same surface as SplitDevice
 * (attach, pop, addUsed/publishUsed/pushUsed, reset, broken), so a transport can serve either.
 *
 * attach: QS in [1, 32768] (any integer: packed positions are never masked); the descriptor ring
 * (16·QS bytes, align 16) and the device event structure (4 bytes, align 4) writable, the driver
 * event structure (4, align 4) readable, all inside guest memory, pairwise disjoint, each backing
 * offset aligned for the typed views `Atomics` needs.
 *
 * pop looks only at the slot at the device's avail position. Its flags word is loaded once with
 * Atomics (acquire); a slot not available for the device's wrap counter is not consumed (→ −1, a
 * spurious kick costs one load). Only the head's flags decide availability: the driver stores
 * them last, so the chain's other slots (whose AVAIL/USED bits are not looked at) are complete. Then every descriptor of the chain is copied ONCE into a private
 * scratch (the head's other 14 bytes, then each following slot's 16, then each indirect entry's
 * 16) and judged on that copy only, with DescChain's rules and codes:
 *  - at most QS slots in a chain (TTL; the ring holds no more) → LOOP;
 *  - INDIRECT only if negotiated, never with NEXT, never inside a table; table length a non-zero
 *    multiple of 16 and ≤ 16·QS → BAD_DESC; the table inside guest memory → BAD_ADDR. A table's
 *    entries are read in order, len/16 of them; their NEXT flag is ignored (VIRTIO 1.2 §2.8.19)
 *    and so is WRITE on the descriptor pointing at the table;
 *  - addresses past 2^53, ranges outside guest memory, writable ranges in read-only memory → BAD_ADDR;
 *  - a device-readable buffer after a device-writable one → DIRECTION; > 2^32 bytes → TOO_LONG;
 *  - the buffer id (of the chain's last slot) < QS and not already outstanding → BAD_DESC: the
 *    device's per-id record (slots, writable bytes) must be unambiguous.
 * A chain running past the ring's end continues at slot 0 with the wrap counter flipped.
 *
 * addUsed writes ONE used descriptor at the device's used position — id and len with plain
 * stores, then flags (AVAIL = USED = the device's used wrap) with an Atomics store, so the driver
 * that acquires the flags sees len — and advances by the chain's slot count (the device's record).
 * publishUsed says whether to interrupt, from the driver event suppression (`packedNotifyNeeded`)
 * over the slots used since the last call. With EVENT_IDX the device event is DESC at the device's
 * avail position (re-armed after each pop, with a re-check before reporting empty); otherwise
 * ENABLE. Any refusal breaks the queue: PV_ERR_VIRTIO_NEEDS_RESET until `reset()`.
 */

import { type ErrorCode, pvError, VirtioError } from '../../protocol/errors.js';
import type { GuestPhysAddr } from '../../protocol/Types.js';
import {
  checkPackedQueueSize,
  isDescAvail,
  PackedDescOffset,
  PackedEventOffset,
  packEventDesc,
  packedNotifyNeeded,
  usedFlags,
  VIRTQ_PACKED_ALIGN,
  VIRTQ_PACKED_DESC_BYTES,
  VIRTQ_PACKED_DESC_F_INDIRECT,
  VIRTQ_PACKED_DESC_F_NEXT,
  VIRTQ_PACKED_DESC_F_WRITE,
  VIRTQ_PACKED_EVENT_BYTES,
  VRING_PACKED_EVENT_FLAG_DESC,
  VRING_PACKED_EVENT_FLAG_ENABLE,
} from '../../protocol/virtio/PackedRing.js';
import { HOST_IS_LITTLE_ENDIAN } from '../../protocol/virtio/SplitRing.js';
import { IovecList } from './DescChain.js';
import {
  checkAreasDisjoint,
  type GuestMemoryMap,
  newTranslation,
  type Translation,
  translateArea,
} from './GuestMemoryMap.js';
import type { SplitFeatures } from './SplitDevice.js';

/** Where the driver put the queue (QueueDesc / QueueDriver / QueueDevice of a packed queue). */
export interface PackedQueueAddrs {
  readonly size: number;
  readonly desc: GuestPhysAddr;
  readonly driverEvent: GuestPhysAddr;
  readonly deviceEvent: GuestPhysAddr;
}

/** A descriptor address whose high word reaches this is past Number.MAX_SAFE_INTEGER. */
const UNSAFE_HI = 0x200000;
const TWO_32 = 2 ** 32;

interface Attached {
  readonly qs: number;
  readonly ring: Translation;
  readonly ring16: Uint16Array;
  readonly ring32: Uint32Array;
  readonly drvEvent: Uint16Array;
  readonly devEvent: Uint16Array;
  /** Slots of each outstanding id's chain (0 = not outstanding). */
  readonly slots: Uint16Array;
  readonly writable: Float64Array;
}

/** One packed queue's device side; see the file comment. */
export class PackedDevice {
  private _q: Attached | undefined;
  private _brokenBy: ErrorCode | undefined;
  private _availPos = 0;
  private _availWrap = true;
  private _usedPos = 0;
  private _usedWrap = true;
  private _unsignalled = 0;
  private readonly _scratch = new Uint8Array(VIRTQ_PACKED_DESC_BYTES);
  private readonly _dv = new DataView(this._scratch.buffer);
  private readonly _tr: Translation = newTranslation();
  private readonly _table: Translation = newTranslation();

  constructor(
    private readonly _mem: GuestMemoryMap,
    private readonly _features: SplitFeatures,
  ) {}

  /** Validates the queue's placement and starts serving it; see the file comment. */
  attach(q: PackedQueueAddrs): void {
    if (this._q) throw pvError('PV_ERR_VIRTIO_STATUS', 'queue already attached: reset it first');
    if (!HOST_IS_LITTLE_ENDIAN) throw pvError('PV_ERR_VIRTQ_LAYOUT', 'pvio virtqueues need a little-endian host');
    checkPackedQueueSize(q.size);
    const qs = q.size;
    const ringBytes = VIRTQ_PACKED_DESC_BYTES * qs;
    const ev = VIRTQ_PACKED_EVENT_BYTES;
    const ring = translateArea(this._mem, 'descriptor ring', q.desc, ringBytes, VIRTQ_PACKED_ALIGN.desc, true);
    const drv = translateArea(this._mem, 'driver event', q.driverEvent, ev, VIRTQ_PACKED_ALIGN.driverEvent, false);
    const dev = translateArea(this._mem, 'device event', q.deviceEvent, ev, VIRTQ_PACKED_ALIGN.deviceEvent, true);
    // INVARIANT: translateArea placed each area inside guest memory.
    checkAreasDisjoint([
      [q.desc, ringBytes],
      [q.driverEvent, ev],
      [q.deviceEvent, ev],
    ]);
    const buf = ring.bytes.buffer as SharedArrayBuffer;
    this._q = {
      qs,
      ring,
      ring16: new Uint16Array(buf, ring.offset, ringBytes >> 1),
      ring32: new Uint32Array(buf, ring.offset, ringBytes >> 2),
      drvEvent: new Uint16Array(drv.bytes.buffer, drv.offset, 2),
      devEvent: new Uint16Array(dev.bytes.buffer, dev.offset, 2),
      slots: new Uint16Array(qs),
      writable: new Float64Array(qs),
    };
    this._availPos = this._usedPos = this._unsignalled = 0;
    this._availWrap = this._usedWrap = true;
    this._armKick(this._q);
  }

  /** Queue size (0 when not attached). */
  get size(): number {
    return this._q?.qs ?? 0;
  }
  /** The queue hit a protocol violation and serves nothing until reset (DEVICE_NEEDS_RESET). */
  get broken(): boolean {
    return this._brokenBy !== undefined;
  }
  /** The code that broke the queue, if it is broken. */
  get brokenBy(): ErrorCode | undefined {
    return this._brokenBy;
  }
  /** The device's next slot to look at for an available chain, and its wrap counter. */
  get availPosition(): { pos: number; wrap: boolean } {
    return { pos: this._availPos, wrap: this._availWrap };
  }
  /** The device's next slot to write a used descriptor to, and its wrap counter. */
  get usedPosition(): { pos: number; wrap: boolean } {
    return { pos: this._usedPos, wrap: this._usedWrap };
  }

  /** An iovec list sized for this queue (reuse it for every pop). */
  newIovecList(): IovecList {
    return new IovecList(this._attached().qs);
  }

  /** Stops serving and forgets all state (a device reset); attach again to serve. */
  reset(): void {
    this._q = undefined;
    this._brokenBy = undefined;
    this._availPos = this._usedPos = this._unsignalled = 0;
    this._availWrap = this._usedWrap = true;
  }

  /** Pops the chain at the device's avail position into `out` and returns its buffer id, or −1 if none. */
  pop(out: IovecList): number {
    const q = this._serving();
    let flags = this._headFlags(q);
    if (!isDescAvail(flags, this._availWrap)) {
      if (!this._features.eventIdx) return -1;
      this._armKick(q);
      flags = this._headFlags(q);
      if (!isDescAvail(flags, this._availWrap)) return -1;
    }
    let id: number;
    try {
      id = this._walk(q, flags, out);
    } catch (err) {
      if (err instanceof VirtioError) this._brokenBy = err.code;
      throw err;
    }
    if (this._features.eventIdx) this._armKick(q);
    return id;
  }

  /** Writes the used descriptor for `id` (popped, not completed) with `len` ≤ its writable bytes. */
  addUsed(id: number, len: number): void {
    const q = this._serving();
    if (!Number.isInteger(id) || id < 0 || id >= q.qs || q.slots[id] === 0) {
      throw pvError('PV_ERR_INVALID_ARG', `id ${id} is not a chain this queue popped and has not completed`);
    }
    if (!Number.isInteger(len) || len < 0 || len > q.writable[id]) {
      throw pvError('PV_ERR_INVALID_ARG', `used len ${len} exceeds the chain's ${q.writable[id]} writable bytes`);
    }
    const n = q.slots[id];
    q.slots[id] = 0;
    const p = this._usedPos;
    q.ring16[(VIRTQ_PACKED_DESC_BYTES * p + PackedDescOffset.ID) >> 1] = id;
    q.ring32[(VIRTQ_PACKED_DESC_BYTES * p + PackedDescOffset.LEN) >> 2] = len;
    // ORDERING: seq-cst store of the flags after id and len: the driver acquires the flags, then reads them.
    Atomics.store(q.ring16, (VIRTQ_PACKED_DESC_BYTES * p + PackedDescOffset.FLAGS) >> 1, usedFlags(this._usedWrap));
    this._usedPos += n;
    if (this._usedPos >= q.qs) {
      this._usedPos -= q.qs;
      this._usedWrap = !this._usedWrap;
    }
    this._unsignalled += n;
  }

  /** Whether the driver wants an interrupt for the used descriptors written since the last call. */
  publishUsed(): boolean {
    const q = this._serving();
    const count = Math.min(this._unsignalled, q.qs);
    this._unsignalled = 0;
    if (count === 0) return false;
    // ORDERING: seq-cst loads after the seq-cst used flags stores (write-flags, barrier, read-event).
    const evFlags = Atomics.load(q.drvEvent, PackedEventOffset.FLAGS >> 1);
    // ORDERING: see above.
    const offWrap = Atomics.load(q.drvEvent, PackedEventOffset.DESC >> 1);
    return packedNotifyNeeded(evFlags, offWrap, this._usedPos, this._usedWrap, count, q.qs);
  }

  /** addUsed + publishUsed. */
  pushUsed(id: number, len: number): boolean {
    this.addUsed(id, len);
    return this.publishUsed();
  }

  private _headFlags(q: Attached): number {
    // ORDERING: seq-cst load (acquire) of the head's flags; the driver stored the chain before them.
    return Atomics.load(q.ring16, (VIRTQ_PACKED_DESC_BYTES * this._availPos + PackedDescOffset.FLAGS) >> 1);
  }

  /** Device event: EVENT_IDX → DESC at our avail position; else ENABLE (kick on every publish). */
  private _armKick(q: Attached): void {
    if (this._features.eventIdx) {
      // ORDERING: position, then flags, then the caller's seq-cst re-check of the head flags.
      Atomics.store(q.devEvent, PackedEventOffset.DESC >> 1, packEventDesc(this._availPos, this._availWrap));
      Atomics.store(q.devEvent, PackedEventOffset.FLAGS >> 1, VRING_PACKED_EVENT_FLAG_DESC);
    } else {
      // ORDERING: seq-cst stores at attach, before DRIVER_OK lets the driver publish.
      Atomics.store(q.devEvent, PackedEventOffset.DESC >> 1, 0);
      Atomics.store(q.devEvent, PackedEventOffset.FLAGS >> 1, VRING_PACKED_EVENT_FLAG_ENABLE);
    }
  }

  /** Copies and judges the chain at the avail position (head flags already loaded); returns its id. */
  private _walk(q: Attached, headFlags: number, out: IovecList): number {
    out.clear();
    const qs = q.qs;
    const src = q.ring.bytes;
    const sc = this._scratch;
    const dv = this._dv;
    let pos = this._availPos;
    let wrap = this._availWrap;
    let slots = 0;
    let id = 0;
    for (;;) {
      if (slots === qs) throw pvError('PV_ERR_VIRTQ_LOOP', `chain at slot ${this._availPos} is longer than QS ${qs}`);
      const at = pos;
      const base = q.ring.offset + VIRTQ_PACKED_DESC_BYTES * pos;
      // The head's flags were loaded once with Atomics; copy its other 14 bytes, every other slot's 16.
      const upTo = slots === 0 ? PackedDescOffset.FLAGS : VIRTQ_PACKED_DESC_BYTES;
      for (let k = 0; k < upTo; k++) sc[k] = src[base + k];
      const flags = slots === 0 ? headFlags : dv.getUint16(PackedDescOffset.FLAGS, true);
      slots++;
      if (++pos === qs) {
        pos = 0;
        wrap = !wrap;
      }
      id = dv.getUint16(PackedDescOffset.ID, true);
      const addr = this._addr();
      const len = dv.getUint32(PackedDescOffset.LEN, true);
      const next = (flags & VIRTQ_PACKED_DESC_F_NEXT) !== 0;
      if ((flags & VIRTQ_PACKED_DESC_F_INDIRECT) !== 0) {
        if (!this._features.indirectDesc) {
          throw pvError('PV_ERR_VIRTQ_BAD_DESC', `slot ${at}: INDIRECT without VIRTIO_F_INDIRECT_DESC`);
        }
        if (next) throw pvError('PV_ERR_VIRTQ_BAD_DESC', `slot ${at}: INDIRECT together with NEXT`);
        if (len === 0 || len % VIRTQ_PACKED_DESC_BYTES !== 0 || len > VIRTQ_PACKED_DESC_BYTES * qs) {
          throw pvError('PV_ERR_VIRTQ_BAD_DESC', `slot ${at}: indirect table of ${len} bytes`);
        }
        this._mem.translate(addr, len, false, this._table);
        const tb = this._table.bytes;
        const entries = len / VIRTQ_PACKED_DESC_BYTES;
        for (let e = 0; e < entries; e++) {
          // INVARIANT: the table was translated for 16·entries bytes, so the copy stays inside it.
          const from = this._table.offset + VIRTQ_PACKED_DESC_BYTES * e;
          for (let k = 0; k < VIRTQ_PACKED_DESC_BYTES; k++) sc[k] = tb[from + k];
          const f = dv.getUint16(PackedDescOffset.FLAGS, true);
          if ((f & VIRTQ_PACKED_DESC_F_INDIRECT) !== 0) {
            throw pvError('PV_ERR_VIRTQ_BAD_DESC', `indirect entry ${e}: nested indirect table`);
          }
          this._buffer(f, out);
        }
      } else {
        this._buffer(flags, out);
      }
      if (!next) break;
    }
    if (id >= qs) throw pvError('PV_ERR_VIRTQ_BAD_DESC', `buffer id ${id} is not below QS ${qs}`);
    if (q.slots[id] !== 0) throw pvError('PV_ERR_VIRTQ_BAD_DESC', `buffer id ${id} is already outstanding`);
    q.slots[id] = slots;
    q.writable[id] = out.writableBytes;
    this._availPos = pos;
    this._availWrap = wrap;
    return id;
  }

  /** Appends the buffer descriptor in the scratch (flags `f`) to `out`, under IovecList.append's rules. */
  private _buffer(f: number, out: IovecList): void {
    const len = this._dv.getUint32(PackedDescOffset.LEN, true);
    out.append(this._mem, this._tr, this._addr(), len, (f & VIRTQ_PACKED_DESC_F_WRITE) !== 0);
  }

  /** The scratch descriptor's address (BAD_ADDR if its high word puts it past 2^53). */
  private _addr(): number {
    const lo = this._dv.getUint32(PackedDescOffset.ADDR, true);
    const hi = this._dv.getUint32(PackedDescOffset.ADDR + 4, true);
    if (hi >= UNSAFE_HI) throw pvError('PV_ERR_VIRTQ_BAD_ADDR', `address 0x${hi.toString(16)}_… beyond 2^53`);
    return lo + hi * TWO_32;
  }

  private _attached(): Attached {
    if (!this._q) throw pvError('PV_ERR_VIRTIO_STATUS', 'queue not attached');
    return this._q;
  }

  private _serving(): Attached {
    if (this._brokenBy !== undefined) {
      throw pvError('PV_ERR_VIRTIO_NEEDS_RESET', `queue broken by ${this._brokenBy}: reset it`);
    }
    return this._attached();
  }
}
