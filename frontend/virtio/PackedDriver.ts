/**
 * The guest driver's side of one packed virtqueue (VIRTIO 1.2 §2.8, reference §5.2; layout in
 * protocol/virtio/PackedRing.ts) in guest memory: a SharedArrayBuffer whose byte offsets are the
 * guest-physical addresses. Same API as SplitDriver, so MmioDriver can hand out either.
 *
 * ```
 *  private state (never in guest memory)
 *  nextId[QS]    free list of buffer ids (the packed ring has no `next` field to link through)
 *  slots[QS]     ring slots each outstanding id's chain took (0 = id not outstanding)
 *  writable[QS]  device-writable bytes of each id's chain (bounds the used len)
 *  tokens[QS]    the caller's cookie per id
 *  availPos/availWrap, usedPos/usedWrap: the driver's two ring positions and wrap counters
 * ```
 * A chain is written in ring order, each descriptor's flags carrying the AVAIL/USED bits of the
 * wrap counter at ITS slot; the head's flags are stored last, with Atomics: that store makes the
 * whole chain available (as Linux's `virtqueue_add_packed`). `publish()` is then only the kick
 * decision over the slots added since the last call (`virtqueue_kick_prepare_packed`).
 *
 * getUsed reads the flags word at usedPos first (Atomics), then id and len once into locals. The
 * id must be < QS and outstanding, and the chain's slot count comes from `slots[id]` — the
 * driver's own record — never from the device. A used descriptor whose id is not acceptable gives
 * the driver no slot count, so it steps over one slot (the least it can) and throws; one whose
 * chain would carry usedPos past availPos is refused the same way. The private records are never
 * touched by a refused descriptor, so the wrong chain is never freed and nothing out of range is
 * indexed.
 */

import { pvError } from '../../protocol/errors.js';
import type { GuestPhysAddr } from '../../protocol/Types.js';
import {
  availFlags,
  checkPackedQueueSize,
  isDescUsed,
  PackedDescOffset,
  PackedEventOffset,
  type PackedLayout,
  packEventDesc,
  packedLayout,
  packedNotifyNeeded,
  VIRTQ_PACKED_ALIGN,
  VIRTQ_PACKED_DESC_BYTES,
  VIRTQ_PACKED_DESC_F_INDIRECT,
  VIRTQ_PACKED_DESC_F_WRITE,
  VRING_PACKED_EVENT_FLAG_DESC,
  VRING_PACKED_EVENT_FLAG_DISABLE,
  VRING_PACKED_EVENT_FLAG_ENABLE,
} from '../../protocol/virtio/PackedRing.js';
import { HOST_IS_LITTLE_ENDIAN } from '../../protocol/virtio/SplitRing.js';
import { checkChain, checkIndirectTable, checkQueuePlacement } from './Buffers.js';
import { type SplitDriverOptions, type UsedBuffer, UsedLenError, type VirtqBuffer } from './SplitDriver.js';

const TWO_32 = 2 ** 32;

/** The driver side of a packed virtqueue (see the file comment). */
export class PackedDriver<T> {
  readonly size: number;
  /** Byte offset (GPA) of the queue block in guest memory. */
  readonly base: number;
  readonly layout: PackedLayout;
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  private readonly _memBytes: number;
  private readonly _u16: Uint16Array;
  private readonly _u32: Uint32Array;
  private readonly _desc: number;
  private readonly _drvEvent: number;
  private readonly _devEvent: number;
  private readonly _nextId: Uint16Array;
  private readonly _slots: Uint16Array;
  private readonly _writable: Float64Array;
  private readonly _tokens: Array<T | undefined>;
  private _freeId = 0;
  /** Slots not held by an outstanding chain (Linux's num_free). */
  private _numFree: number;
  private _inFlight = 0;
  private _availPos = 0;
  private _availWrap = true;
  private _usedPos = 0;
  private _usedWrap = true;
  /** Slots made available since the last publish() (the batch its kick decision covers). */
  private _unkicked = 0;

  /** Attaches to a queue of `qs` entries (1..32768) at byte `base` of `mem`; zeroes the ring and driver event. */
  constructor(mem: SharedArrayBuffer, base: number, qs: number, opts: SplitDriverOptions = {}) {
    checkPackedQueueSize(qs);
    this.layout = packedLayout(qs);
    checkQueuePlacement(HOST_IS_LITTLE_ENDIAN, mem.byteLength, base, this.layout.bytes, VIRTQ_PACKED_ALIGN.desc);
    this.size = qs;
    this.base = base;
    this.eventIdx = opts.eventIdx ?? false;
    this.indirect = opts.indirect ?? false;
    this._memBytes = mem.byteLength;
    this._u16 = new Uint16Array(mem, 0, mem.byteLength >> 1);
    this._u32 = new Uint32Array(mem, 0, mem.byteLength >> 2);
    this._desc = base + this.layout.desc;
    this._drvEvent = base + this.layout.driverEvent;
    this._devEvent = base + this.layout.deviceEvent;
    this._nextId = new Uint16Array(qs);
    for (let i = 0; i < qs - 1; i++) this._nextId[i] = i + 1;
    this._slots = new Uint16Array(qs);
    this._writable = new Float64Array(qs);
    this._tokens = new Array<T | undefined>(qs).fill(undefined);
    this._numFree = qs;
    // Stale flags could look available to the device's first lap: the ring starts all zero.
    this._u32.fill(0, this._desc >> 2, (this._desc + VIRTQ_PACKED_DESC_BYTES * qs) >> 2);
    // ORDERING: before the device is told where the queue is (QueueReady, then DRIVER_OK); seq-cst.
    Atomics.store(this._u16, (this._drvEvent + PackedEventOffset.DESC) >> 1, 0);
    Atomics.store(this._u16, (this._drvEvent + PackedEventOffset.FLAGS) >> 1, VRING_PACKED_EVENT_FLAG_ENABLE);
  }

  /** Free ring slots. */
  get numFree(): number {
    return this._numFree;
  }

  /** Chains added and not yet returned by `getUsed`. */
  get inFlight(): number {
    return this._inFlight;
  }

  /** The driver's next avail slot and wrap counter (diagnostics and tests). */
  get availPosition(): { pos: number; wrap: boolean } {
    return { pos: this._availPos, wrap: this._availWrap };
  }

  /**
   * Writes a chain (device-readable buffers first, then device-writable ones) into the next
   * slots and makes it available (head flags last). With `indirectTable` the descriptors go into
   * the 16-aligned table (16 bytes per buffer) and the chain takes one slot. Returns the buffer
   * id. PV_ERR_RING_FULL when too few slots are free; nothing is written unless it all fits.
   */
  addChain(
    readable: readonly VirtqBuffer[],
    writable: readonly VirtqBuffer[],
    token: T,
    indirectTable?: GuestPhysAddr,
  ): number {
    const wcap = checkChain(readable, writable, this.size, this._memBytes);
    const n = readable.length + writable.length;
    const slots = indirectTable === undefined ? n : 1;
    if (indirectTable !== undefined && !this.indirect) {
      throw pvError('PV_ERR_NOT_SUPPORTED', 'VIRTIO_F_INDIRECT_DESC was not negotiated');
    }
    const t =
      indirectTable === undefined
        ? 0
        : checkIndirectTable(
            indirectTable,
            n,
            VIRTQ_PACKED_DESC_BYTES,
            VIRTQ_PACKED_ALIGN.desc,
            this._memBytes,
            this.base,
            this.layout.bytes,
          );
    if (slots > this._numFree) throw pvError('PV_ERR_RING_FULL', `${slots} slots needed, ${this._numFree} free`);
    // INVARIANT: numFree ≥ 1 means some id is free (each outstanding chain holds ≥ 1 slot and 1 id).
    const id = this._freeId;
    this._freeId = this._nextId[id];
    const headAt = this._desc + VIRTQ_PACKED_DESC_BYTES * this._availPos;
    let headFlags: number;
    if (indirectTable === undefined) {
      headFlags = 0;
      for (let k = 0; k < n; k++) {
        const w = k >= readable.length;
        const b = w ? writable[k - readable.length] : readable[k];
        const flags = availFlags(this._availWrap, w, k < n - 1);
        const at = this._desc + VIRTQ_PACKED_DESC_BYTES * this._availPos;
        this._writeDesc(at, b.addr, b.len, id);
        if (k === 0) headFlags = flags;
        // ORDERING: plain store; the device reads this slot only after the head's Atomics flags store below.
        else this._u16[(at + PackedDescOffset.FLAGS) >> 1] = flags;
        this._advanceAvail();
      }
    } else {
      for (let k = 0; k < n; k++) {
        const w = k >= readable.length;
        const b = w ? writable[k - readable.length] : readable[k];
        const at = t + VIRTQ_PACKED_DESC_BYTES * k;
        this._writeDesc(at, b.addr, b.len, id);
        // Table entries are read in order; no NEXT (the table's length says how many), no AVAIL/USED.
        this._u16[(at + PackedDescOffset.FLAGS) >> 1] = w ? VIRTQ_PACKED_DESC_F_WRITE : 0;
      }
      // VIRTIO 1.2 §2.8.19: the table descriptor has INDIRECT only (no NEXT, no WRITE).
      this._writeDesc(headAt, t, VIRTQ_PACKED_DESC_BYTES * n, id);
      headFlags = availFlags(this._availWrap, false, false) | VIRTQ_PACKED_DESC_F_INDIRECT;
      this._advanceAvail();
    }
    this._slots[id] = slots;
    this._writable[id] = wcap;
    this._tokens[id] = token;
    this._numFree -= slots;
    this._inFlight++;
    this._unkicked += slots;
    // ORDERING: seq-cst store of the head's flags, after every other word of the chain: the device
    // acquires it with an Atomics load before reading the rest, so this store publishes the chain.
    Atomics.store(this._u16, (headAt + PackedDescOffset.FLAGS) >> 1, headFlags);
    return id;
  }

  /**
   * The kick decision for every chain added since the last call: the device event suppression's
   * DESC position (EVENT_IDX) or its ENABLE/DISABLE flags (`packedNotifyNeeded`).
   */
  publish(): boolean {
    const count = Math.min(this._unkicked, this.size);
    this._unkicked = 0;
    if (count === 0) return false;
    // ORDERING: seq-cst loads after the seq-cst head-flag stores of addChain (the full barrier of
    // VS packed-ring "driver notification"): either the device sees our slots or we see its event.
    const flags = Atomics.load(this._u16, (this._devEvent + PackedEventOffset.FLAGS) >> 1);
    // ORDERING: see above.
    const offWrap = Atomics.load(this._u16, (this._devEvent + PackedEventOffset.DESC) >> 1);
    return packedNotifyNeeded(flags, offWrap, this._availPos, this._availWrap, count, this.size);
  }

  /**
   * The next used buffer, or undefined when the slot at usedPos is not used (a spurious interrupt
   * is harmless). Frees the chain's id and slots. Refusals: a used slot while no slot is
   * outstanding → PV_ERR_RING_RSP_OVERFLOW (nothing consumed); id ≥ QS, not outstanding, or a
   * chain longer than the distance to availPos → PV_ERR_VIRTQ_BAD_DESC (one slot stepped over);
   * len beyond the chain's writable bytes → UsedLenError (the chain is freed, its token given).
   */
  getUsed(): UsedBuffer<T> | undefined {
    const at = this._desc + VIRTQ_PACKED_DESC_BYTES * this._usedPos;
    // ORDERING: seq-cst load (acquire) of the flags first; the device stored id and len before them.
    const flags = Atomics.load(this._u16, (at + PackedDescOffset.FLAGS) >> 1);
    if (!isDescUsed(flags, this._usedWrap)) return undefined;
    const ahead = this._outstandingSlots();
    if (ahead === 0) throw pvError('PV_ERR_RING_RSP_OVERFLOW', `slot ${this._usedPos} used with nothing outstanding`);
    // Read once into locals: the device may rewrite the descriptor; these copies are what we check.
    const id = this._u16[(at + PackedDescOffset.ID) >> 1];
    const len = this._u32[(at + PackedDescOffset.LEN) >> 2];
    const n = id < this.size ? this._slots[id] : 0;
    if (n === 0 || n > ahead) {
      this._advanceUsed(1);
      throw pvError('PV_ERR_VIRTQ_BAD_DESC', `used id ${id} is not an outstanding chain that fits before availPos`);
    }
    // INVARIANT: id < QS and slots[id] > 0: the records below are this driver's own.
    const token = this._tokens[id] as T;
    const cap = this._writable[id];
    this._advanceUsed(n);
    this._slots[id] = 0;
    this._tokens[id] = undefined;
    this._nextId[id] = this._freeId;
    this._freeId = id;
    this._numFree += n;
    this._inFlight--;
    if (len > cap) throw new UsedLenError(token, `used len ${len} of id ${id} exceeds its ${cap} writable bytes`);
    return { token, len };
  }

  /** Asks the device not to interrupt (a hint; spurious interrupts stay possible). */
  disableInterrupts(): void {
    // ORDERING: seq-cst store of a driver-owned word; the device loads it after its used flags store.
    Atomics.store(this._u16, (this._drvEvent + PackedEventOffset.FLAGS) >> 1, VRING_PACKED_EVENT_FLAG_DISABLE);
  }

  /**
   * Asks to be interrupted at the next used buffer (EVENT_IDX: DESC at usedPos/usedWrap, else
   * ENABLE), then re-checks: true if nothing is pending (safe to sleep), false if a used buffer
   * arrived meanwhile (call `getUsed` again).
   */
  enableInterrupts(): boolean {
    const flagsAt = (this._drvEvent + PackedEventOffset.FLAGS) >> 1;
    if (this.eventIdx) {
      // ORDERING: the position before the DESC flag that makes the device look at it (seq-cst both).
      Atomics.store(
        this._u16,
        (this._drvEvent + PackedEventOffset.DESC) >> 1,
        packEventDesc(this._usedPos, this._usedWrap),
      );
      Atomics.store(this._u16, flagsAt, VRING_PACKED_EVENT_FLAG_DESC);
    } else {
      // ORDERING: seq-cst store, then the seq-cst re-check below.
      Atomics.store(this._u16, flagsAt, VRING_PACKED_EVENT_FLAG_ENABLE);
    }
    const at = this._desc + VIRTQ_PACKED_DESC_BYTES * this._usedPos;
    // ORDERING: seq-cst load after the stores above: a device that marked the slot used before it
    // could see our request is caught here; one that marks it after will interrupt.
    return !isDescUsed(Atomics.load(this._u16, (at + PackedDescOffset.FLAGS) >> 1), this._usedWrap);
  }

  /** Slots between usedPos and availPos (the ring the device may still hand back). */
  private _outstandingSlots(): number {
    const lap = this._availWrap === this._usedWrap ? 0 : this.size;
    return this._availPos + lap - this._usedPos;
  }

  private _advanceAvail(): void {
    if (++this._availPos === this.size) {
      this._availPos = 0;
      this._availWrap = !this._availWrap;
    }
  }

  private _advanceUsed(n: number): void {
    this._usedPos += n;
    if (this._usedPos >= this.size) {
      this._usedPos -= this.size;
      this._usedWrap = !this._usedWrap;
    }
  }

  /** Plain stores of addr, len, id; the caller writes flags (last, for the head). */
  private _writeDesc(at: number, addr: number, len: number, id: number): void {
    const w = at >> 2;
    this._u32[w + (PackedDescOffset.ADDR >> 2)] = addr % TWO_32;
    this._u32[w + (PackedDescOffset.ADDR >> 2) + 1] = Math.floor(addr / TWO_32);
    this._u32[w + (PackedDescOffset.LEN >> 2)] = len;
    this._u16[(at + PackedDescOffset.ID) >> 1] = id;
  }
}
