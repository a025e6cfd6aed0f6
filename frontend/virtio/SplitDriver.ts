/**
 * The guest driver's side of one split virtqueue (VIRTIO 1.2 §2.7.13, reference §5.1) in guest
 * memory: a SharedArrayBuffer whose byte offsets are the guest-physical addresses, and the
 * queue's offset inside it. The driver writes the descriptor table and the available ring; it
 * only reads the used ring, and everything it reads there is checked before it indexes anything.
 *
 * ```
 *  private state (never in guest memory)         guest memory (shared with the device)
 *  next[QS]      free list and chain links  ──▶   desc[i].next is written from next[i]
 *  chainLen[QS]  descriptors of each head (0 = not an outstanding head)
 *  addedAt[QS]   avail index the head went in at (tells published from not yet published)
 *  writable[QS]  device-writable bytes of each head (bounds used.len)
 *  tokens[QS]    the caller's cookie per head
 *  availShadow / availPub / lastUsed: free-running u16 indices
 * ```
 * The free list is linked through `next` as Linux's `virtio_ring.c` links it through the
 * descriptors, but the links live in private memory (Linux's `desc_extra`): freeing a chain
 * walks our own copy, so a device that scribbles over the descriptor table cannot make the driver
 * free the wrong descriptors. A used element is accepted only if its id is a head this driver
 * published and has not had back, and its len does not exceed the head's writable bytes.
 */

import { pvError, VirtioError } from '../../protocol/errors.js';
import type { GuestPhysAddr } from '../../protocol/Types.js';
import {
  AvailOffset,
  availEventOffset,
  DescOffset,
  HOST_IS_LITTLE_ENDIAN,
  type SplitLayout,
  splitLayout,
  UsedElemOffset,
  UsedOffset,
  usedEventOffset,
  VIRTQ_ALIGN,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_BYTES,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_USED_ELEM_BYTES,
  VIRTQ_USED_F_NO_NOTIFY,
  vringNeedEvent,
} from '../../protocol/virtio/SplitRing.js';
import { checkChain, checkIndirectTable, checkQueuePlacement, type VirtqBuffer } from './Buffers.js';

export type { VirtqBuffer } from './Buffers.js';

/** What the device gave back: the caller's token and the bytes it wrote. */
export interface UsedBuffer<T> {
  readonly token: T;
  readonly len: number;
}

/** Negotiated features that change the driver's behaviour. */
export interface SplitDriverOptions {
  /** VIRTIO_F_EVENT_IDX: used_event / avail_event instead of the flag words. */
  readonly eventIdx?: boolean;
  /** VIRTIO_F_INDIRECT_DESC: `addChain` may take an indirect table. */
  readonly indirect?: boolean;
}

/**
 * A used element whose len exceeds the chain's device-writable bytes. The chain was freed (the
 * device is done with it); `token` lets the caller fail its request.
 */
export class UsedLenError<T> extends VirtioError {
  readonly token: T;
  constructor(token: T, message: string) {
    super('PV_ERR_VIRTQ_BAD_DESC', message);
    this.token = token;
  }
}

const TWO_32 = 2 ** 32;

/** The driver side of a split virtqueue (see the file comment). */
export class SplitDriver<T> {
  readonly size: number;
  /** Byte offset (GPA) of the queue block in guest memory. */
  readonly base: number;
  readonly layout: SplitLayout;
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  private readonly _memBytes: number;
  private readonly _u16: Uint16Array;
  private readonly _u32: Uint32Array;
  private readonly _mask: number;
  /** Absolute byte offsets of the areas and of the words this side touches. */
  private readonly _desc: number;
  private readonly _availIdx: number;
  private readonly _availFlags: number;
  private readonly _availRing: number;
  private readonly _usedEvent: number;
  private readonly _usedFlags: number;
  private readonly _usedIdx: number;
  private readonly _usedRing: number;
  private readonly _availEvent: number;
  private readonly _next: Uint16Array;
  private readonly _chainLen: Uint16Array;
  private readonly _addedAt: Uint16Array;
  private readonly _writable: Float64Array;
  private readonly _tokens: Array<T | undefined>;
  private _freeHead = 0;
  private _numFree: number;
  private _inFlight = 0;
  private _availShadow = 0;
  private _availPub = 0;
  private _lastUsed = 0;

  /** Attaches to a queue of `qs` entries at byte `base` of `mem`, and resets the driver's areas. */
  constructor(mem: SharedArrayBuffer, base: number, qs: number, opts: SplitDriverOptions = {}) {
    this.layout = splitLayout(qs);
    checkQueuePlacement(HOST_IS_LITTLE_ENDIAN, mem.byteLength, base, this.layout.bytes, VIRTQ_ALIGN.desc);
    this.size = qs;
    this.base = base;
    this.eventIdx = opts.eventIdx ?? false;
    this.indirect = opts.indirect ?? false;
    this._memBytes = mem.byteLength;
    this._u16 = new Uint16Array(mem, 0, mem.byteLength >> 1);
    this._u32 = new Uint32Array(mem, 0, mem.byteLength >> 2);
    this._mask = qs - 1;
    this._desc = base + this.layout.desc;
    const avail = base + this.layout.avail;
    const used = base + this.layout.used;
    this._availFlags = avail + AvailOffset.FLAGS;
    this._availIdx = avail + AvailOffset.IDX;
    this._availRing = avail + AvailOffset.RING;
    this._usedEvent = avail + usedEventOffset(qs);
    this._usedFlags = used + UsedOffset.FLAGS;
    this._usedIdx = used + UsedOffset.IDX;
    this._usedRing = used + UsedOffset.RING;
    this._availEvent = used + availEventOffset(qs);
    this._next = new Uint16Array(qs);
    for (let i = 0; i < qs - 1; i++) this._next[i] = i + 1;
    this._chainLen = new Uint16Array(qs);
    this._addedAt = new Uint16Array(qs);
    this._writable = new Float64Array(qs);
    this._tokens = new Array<T | undefined>(qs).fill(undefined);
    this._numFree = qs;
    // ORDERING: before the device is told where the queue is (DRIVER_OK); seq-cst keeps it simple.
    Atomics.store(this._u16, this._availFlags >> 1, 0);
    Atomics.store(this._u16, this._availIdx >> 1, 0);
    Atomics.store(this._u16, this._usedEvent >> 1, 0);
  }

  /** Free descriptors. */
  get numFree(): number {
    return this._numFree;
  }

  /** Chains added and not yet returned by `getUsed` (published or not). */
  get inFlight(): number {
    return this._inFlight;
  }

  /**
   * Writes a chain (device-readable buffers first, then device-writable ones) and its avail ring
   * entry; `publish()` makes it visible. With `indirectTable` (VIRTIO_F_INDIRECT_DESC), the
   * descriptors go into the 16-aligned table the caller placed there (16 bytes per buffer,
   * untouched by the caller until the chain is used) and the chain takes one ring descriptor.
   * Returns the head index. Throws `PV_ERR_RING_FULL` when too few descriptors are free;
   * nothing is written unless the whole chain fits.
   */
  addChain(
    readable: readonly VirtqBuffer[],
    writable: readonly VirtqBuffer[],
    token: T,
    indirectTable?: GuestPhysAddr,
  ): number {
    const wcap = checkChain(readable, writable, this.size, this._memBytes);
    const n = readable.length + writable.length;
    let head: number;
    if (indirectTable === undefined) {
      if (n > this._numFree) throw pvError('PV_ERR_RING_FULL', `${n} descriptors needed, ${this._numFree} free`);
      head = this._freeHead;
      let i = head;
      for (let k = 0; k < n; k++) {
        const w = k >= readable.length;
        const b = w ? writable[k - readable.length] : readable[k];
        const more = k < n - 1;
        this._writeDesc(this._desc + VIRTQ_DESC_BYTES * i, b.addr, b.len, w, more, more ? this._next[i] : 0);
        if (more) i = this._next[i];
      }
      this._freeHead = this._next[i];
      this._numFree -= n;
      this._chainLen[head] = n;
    } else {
      if (!this.indirect) throw pvError('PV_ERR_NOT_SUPPORTED', 'VIRTIO_F_INDIRECT_DESC was not negotiated');
      const t = checkIndirectTable(
        indirectTable,
        n,
        VIRTQ_DESC_BYTES,
        VIRTQ_ALIGN.desc,
        this._memBytes,
        this.base,
        this.layout.bytes,
      );
      if (this._numFree === 0) throw pvError('PV_ERR_RING_FULL', 'no free descriptor for the indirect table');
      for (let k = 0; k < n; k++) {
        const w = k >= readable.length;
        const b = w ? writable[k - readable.length] : readable[k];
        this._writeDesc(t + VIRTQ_DESC_BYTES * k, b.addr, b.len, w, k < n - 1, k < n - 1 ? k + 1 : 0);
      }
      head = this._freeHead;
      // VIRTIO 1.2 §2.7.5.3.1: the table descriptor has INDIRECT only (no NEXT, no WRITE).
      this._writeDesc(this._desc + VIRTQ_DESC_BYTES * head, t, VIRTQ_DESC_BYTES * n, false, false, 0);
      this._u16[(this._desc + VIRTQ_DESC_BYTES * head + DescOffset.FLAGS) >> 1] = VIRTQ_DESC_F_INDIRECT;
      this._freeHead = this._next[head];
      this._numFree -= 1;
      this._chainLen[head] = 1;
    }
    this._tokens[head] = token;
    this._writable[head] = wcap;
    this._addedAt[head] = this._availShadow;
    this._inFlight++;
    // ORDERING: a plain store; the device reads it only after the Atomics.store of avail.idx in publish().
    this._u16[(this._availRing >> 1) + (this._availShadow & this._mask)] = head;
    this._availShadow = (this._availShadow + 1) & 0xffff;
    return head;
  }

  /**
   * Publishes every chain added since the last call (stores avail.idx) and says whether to kick
   * the device: EVENT_IDX → `vring_need_event(avail_event, new, old)`, else !(used.flags & NO_NOTIFY).
   */
  publish(): boolean {
    const newIdx = this._availShadow;
    const oldIdx = this._availPub;
    if (newIdx === oldIdx) return false;
    // ORDERING: seq-cst store; the descriptor and avail.ring writes above happen before it, so a
    // device that loads this index sees them (Firecracker's fence before the index update).
    Atomics.store(this._u16, this._availIdx >> 1, newIdx);
    this._availPub = newIdx;
    // ORDERING: seq-cst load after the seq-cst store (the full barrier of VS:685-699): either the
    // device sees our new index, or we see its latest suppression word; a kick is never lost.
    if (this.eventIdx) return vringNeedEvent(Atomics.load(this._u16, this._availEvent >> 1), newIdx, oldIdx);
    return (Atomics.load(this._u16, this._usedFlags >> 1) & VIRTQ_USED_F_NO_NOTIFY) === 0;
  }

  /**
   * The next used buffer, or undefined if there is none (a spurious interrupt is harmless). Frees
   * the chain's descriptors. A used element that is not acceptable is consumed and refused with
   * `PV_ERR_VIRTQ_BAD_DESC` (id ≥ QS, id not an outstanding published head; `UsedLenError` for a
   * len beyond the writable bytes); a used.idx ahead of every published chain is
   * `PV_ERR_RING_RSP_OVERFLOW` and consumes nothing. The driver's own state is never touched by
   * a refused element, so it stays usable.
   */
  getUsed(): UsedBuffer<T> | undefined {
    // ORDERING: seq-cst load (acquire): the device stored the element before this index.
    const usedIdx = Atomics.load(this._u16, this._usedIdx >> 1);
    if (usedIdx === this._lastUsed) return undefined;
    const pending = (usedIdx - this._lastUsed) & 0xffff;
    const published = this._inFlight - ((this._availShadow - this._availPub) & 0xffff);
    if (pending > published) {
      throw pvError('PV_ERR_RING_RSP_OVERFLOW', `used.idx ${usedIdx} is ${pending} ahead, ${published} published`);
    }
    const e = (this._usedRing + VIRTQ_USED_ELEM_BYTES * (this._lastUsed & this._mask)) >> 2;
    // Read once into locals: the device may rewrite the element; these copies are what we check.
    const id = this._u32[e + (UsedElemOffset.ID >> 2)];
    const len = this._u32[e + (UsedElemOffset.LEN >> 2)];
    this._lastUsed = (this._lastUsed + 1) & 0xffff;
    if (id >= this.size) throw pvError('PV_ERR_VIRTQ_BAD_DESC', `used id ${id} ≥ queue size ${this.size}`);
    const n = this._chainLen[id];
    const unpublished =
      ((this._addedAt[id] - this._availPub) & 0xffff) < ((this._availShadow - this._availPub) & 0xffff);
    if (n === 0 || unpublished) throw pvError('PV_ERR_VIRTQ_BAD_DESC', `used id ${id} is not an outstanding head`);
    // INVARIANT: id < QS and chainLen[id] > 0, so the walk below follows our own links only.
    const token = this._tokens[id] as T;
    const cap = this._writable[id];
    let last = id;
    for (let k = 1; k < n; k++) last = this._next[last];
    this._next[last] = this._freeHead;
    this._freeHead = id;
    this._numFree += n;
    this._chainLen[id] = 0;
    this._tokens[id] = undefined;
    this._inFlight--;
    if (len > cap) throw new UsedLenError(token, `used len ${len} of head ${id} exceeds its ${cap} writable bytes`);
    return { token, len };
  }

  /**
   * Asks the device not to interrupt (a hint; spurious interrupts stay possible). With EVENT_IDX
   * avail.flags must stay 0 (VIRTIO 1.2 §2.7.7.1), so used_event is moved behind last_used instead.
   */
  disableInterrupts(): void {
    // ORDERING: seq-cst stores of driver-owned words; the device reads them after its used.idx store.
    if (this.eventIdx) Atomics.store(this._u16, this._usedEvent >> 1, (this._lastUsed - 1) & 0xffff);
    else Atomics.store(this._u16, this._availFlags >> 1, VIRTQ_AVAIL_F_NO_INTERRUPT);
  }

  /**
   * Asks to be interrupted at the next used buffer (EVENT_IDX: used_event = last_used; else clear
   * NO_INTERRUPT), then re-checks: true if nothing is pending (safe to sleep), false if used
   * buffers arrived meanwhile (call `getUsed` again; VS:701-736).
   */
  enableInterrupts(): boolean {
    // ORDERING: seq-cst store, then seq-cst load of used.idx: a device that published before it
    // could see our request is caught by the re-check; one that published after will interrupt.
    if (this.eventIdx) Atomics.store(this._u16, this._usedEvent >> 1, this._lastUsed);
    else Atomics.store(this._u16, this._availFlags >> 1, 0);
    return Atomics.load(this._u16, this._usedIdx >> 1) === this._lastUsed;
  }

  /** Plain stores: the descriptor is the driver's until avail.idx publishes it. */
  private _writeDesc(at: number, addr: number, len: number, write: boolean, more: boolean, next: number): void {
    const w = at >> 2;
    this._u32[w + (DescOffset.ADDR >> 2)] = addr % TWO_32;
    this._u32[w + (DescOffset.ADDR >> 2) + 1] = Math.floor(addr / TWO_32);
    this._u32[w + (DescOffset.LEN >> 2)] = len;
    this._u16[(at + DescOffset.FLAGS) >> 1] = (write ? VIRTQ_DESC_F_WRITE : 0) | (more ? VIRTQ_DESC_F_NEXT : 0);
    this._u16[(at + DescOffset.NEXT) >> 1] = next;
  }
}
