/**
 * The device side of one split virtqueue over a guest's memory (vhost-like; VIRTIO 1.2 §2.7,
 * reference §5.1, §6.1; rust-vmm virtio-queue `Queue`, Firecracker `queue.rs`). Layout and
 * offsets: protocol/virtio/SplitRing.ts.
 *
 * attach: QS a power of two ≤ 32768; the descriptor table (16·QS bytes, align 16) and the
 * available ring (align 2) readable, the used ring (align 4) writable, all inside guest memory,
 * the three areas pairwise disjoint (else writing the used ring could rewrite the driver's
 * descriptors), each backing offset aligned so typed-array views and `Atomics` reach the fields.
 *
 * pop: reads avail.idx once (Atomics); nothing new → returns −1 (a spurious kick costs one load).
 * A jump of more than QS past the device's own `lastAvail` is refused (PV_ERR_VIRTQ_AVAIL_IDX,
 * Firecracker's InvalidAvailIdx). The head comes from avail.ring once; DescChain walks and checks
 * it. Every refusal is fatal to the queue, as the catalogue's policy says: the queue becomes
 * `broken` (the device reports DEVICE_NEEDS_RESET, VIRTIO 1.2 §2.1.2) and pop/addUsed throw
 * PV_ERR_VIRTIO_NEEDS_RESET until `reset()` and a new `attach()`. With EVENT_IDX the device
 * publishes avail_event = lastAvail only when it finds the queue empty, and re-reads avail.idx
 * after publishing it before it reports "empty", so a driver's publish cannot slip between the
 * two; while it keeps finding chains, the driver's publishes do not kick it.
 *
 * addUsed/publishUsed: the element (id, len) is written with plain stores, then used.idx with an
 * Atomics store, so the driver that loads used.idx sees the element (VIRTIO: the device MUST set
 * len before it updates idx). `len` may not exceed the chain's writable bytes, and only a head
 * the device popped and has not completed may be completed. The used index is the device's own
 * counter, never re-read from the guest-writable page. publishUsed returns whether to interrupt
 * the driver: EVENT_IDX `vring_need_event(used_event, new, old)`, else !(avail.flags & NO_INTERRUPT).
 *
 * The device writes guest memory only in the used ring and through the writable iovecs of the
 * chains it popped (IovecList): never the descriptor table, the available ring or a readable buffer.
 */

import { type ErrorCode, pvError, VirtioError } from '../../protocol/errors.js';
import type { GuestPhysAddr } from '../../protocol/Types.js';
import {
  AvailOffset,
  availEventOffset,
  availRingBytes,
  checkQueueSize,
  descTableBytes,
  HOST_IS_LITTLE_ENDIAN,
  UsedOffset,
  usedEventOffset,
  usedRingBytes,
  VIRTQ_ALIGN,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  vringNeedEvent,
} from '../../protocol/virtio/SplitRing.js';
import { DescChain, IovecList } from './DescChain.js';
import { checkAreasDisjoint, type GuestMemoryMap, translateArea } from './GuestMemoryMap.js';

/** Where the driver put the queue (the transport's queue_desc / queue_driver / queue_device). */
export interface SplitQueueAddrs {
  readonly size: number;
  readonly desc: GuestPhysAddr;
  readonly avail: GuestPhysAddr;
  readonly used: GuestPhysAddr;
}

/** The negotiated features that change how a split queue is served. */
export interface SplitFeatures {
  /** VIRTIO_F_INDIRECT_DESC (bit 28). */
  readonly indirectDesc: boolean;
  /** VIRTIO_F_EVENT_IDX (bit 29). */
  readonly eventIdx: boolean;
}

interface Attached {
  readonly qs: number;
  readonly chain: DescChain;
  /** The available ring as u16s (flags, idx, ring[QS], used_event). */
  readonly avail: Uint16Array;
  /** The used ring as u16s (flags, idx, …, avail_event). */
  readonly used16: Uint16Array;
  /** The used ring as u32s (word 1 + 2·i = ring[i].id, 2 + 2·i = ring[i].len). */
  readonly used32: Uint32Array;
  /** Times each head was popped and not yet completed. */
  readonly inFlight: Uint32Array;
  /** Writable bytes of each head's last popped chain (the bound on its used len). */
  readonly writable: Float64Array;
}

/** One split queue's device side; see the file comment. */
export class SplitDevice {
  private _q: Attached | undefined;
  private _brokenBy: ErrorCode | undefined;
  private _lastAvail = 0;
  private _usedShadow = 0;
  private _usedPublished = 0;

  constructor(
    private readonly _mem: GuestMemoryMap,
    private readonly _features: SplitFeatures,
  ) {}

  /** Validates the queue's placement and starts serving it; see the file comment. */
  attach(q: SplitQueueAddrs): void {
    if (this._q) throw pvError('PV_ERR_VIRTIO_STATUS', 'queue already attached: reset it first');
    if (!HOST_IS_LITTLE_ENDIAN) throw pvError('PV_ERR_VIRTQ_LAYOUT', 'pvio virtqueues need a little-endian host');
    checkQueueSize(q.size);
    const qs = q.size;
    const desc = translateArea(this._mem, 'descriptor table', q.desc, descTableBytes(qs), VIRTQ_ALIGN.desc, false);
    const avail = translateArea(this._mem, 'available ring', q.avail, availRingBytes(qs), VIRTQ_ALIGN.avail, false);
    const used = translateArea(this._mem, 'used ring', q.used, usedRingBytes(qs), VIRTQ_ALIGN.used, true);
    // INVARIANT: translateArea placed each area inside guest memory.
    checkAreasDisjoint([
      [q.desc, descTableBytes(qs)],
      [q.avail, availRingBytes(qs)],
      [q.used, usedRingBytes(qs)],
    ]);
    const usedBuf = used.bytes.buffer as SharedArrayBuffer;
    this._q = {
      qs,
      chain: new DescChain(this._mem, qs, desc, this._features.indirectDesc),
      avail: new Uint16Array(avail.bytes.buffer, avail.offset, availRingBytes(qs) >> 1),
      used16: new Uint16Array(usedBuf, used.offset, usedRingBytes(qs) >> 1),
      used32: new Uint32Array(usedBuf, used.offset, usedRingBytes(qs) >> 2),
      inFlight: new Uint32Array(qs),
      writable: new Float64Array(qs),
    };
    this._lastAvail = this._usedShadow = this._usedPublished = 0;
    const u = this._q.used16;
    u[UsedOffset.FLAGS >> 1] = 0;
    u[availEventOffset(qs) >> 1] = 0;
    // ORDERING: the device's initial used.idx, published after the words above.
    Atomics.store(u, UsedOffset.IDX >> 1, 0);
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
  /** The device's next avail index to consume (free-running u16). */
  get lastAvail(): number {
    return this._lastAvail;
  }
  /** The used index the device last published (free-running u16). */
  get usedIdx(): number {
    return this._usedPublished;
  }

  /** An iovec list sized for this queue (reuse it for every pop). */
  newIovecList(): IovecList {
    return new IovecList(this._attached().qs);
  }

  /** Stops serving and forgets all state (a device reset); attach again to serve. */
  reset(): void {
    this._q = undefined;
    this._brokenBy = undefined;
    this._lastAvail = this._usedShadow = this._usedPublished = 0;
  }

  /** Pops the next chain into `out` and returns its head, or −1 when nothing is available. */
  pop(out: IovecList): number {
    const q = this._serving();
    const idxAt = AvailOffset.IDX >> 1;
    // ORDERING: acquire the driver's avail.idx: ring entries and descriptors written before it are visible.
    let availIdx = Atomics.load(q.avail, idxAt);
    if (availIdx === this._lastAvail) {
      if (!this._features.eventIdx) return -1;
      // ORDERING: publish avail_event, then re-read avail.idx (seq-cst both): a publish that
      // missed our avail_event is seen here, one that follows it will kick.
      Atomics.store(q.used16, availEventOffset(q.qs) >> 1, this._lastAvail);
      // ORDERING: see above.
      availIdx = Atomics.load(q.avail, idxAt);
      if (availIdx === this._lastAvail) return -1;
    }
    const pending = (availIdx - this._lastAvail) & 0xffff;
    if (pending > q.qs) {
      this._brokenBy = 'PV_ERR_VIRTQ_AVAIL_IDX';
      throw pvError(
        'PV_ERR_VIRTQ_AVAIL_IDX',
        `avail.idx ${availIdx} is ${pending} past ${this._lastAvail}, QS ${q.qs}`,
      );
    }
    // Read once: the head is a guest value, DescChain checks it (< QS) on this copy.
    const head = q.avail[(AvailOffset.RING >> 1) + (this._lastAvail & (q.qs - 1))];
    try {
      q.chain.walk(head, out);
    } catch (err) {
      if (err instanceof VirtioError) this._brokenBy = err.code;
      throw err;
    }
    this._lastAvail = (this._lastAvail + 1) & 0xffff;
    q.inFlight[head]++;
    q.writable[head] = out.writableBytes;
    // No avail_event store here: while the device keeps finding chains it wants no kicks (a kick
    // per publish cost the driver a notify each in `pvio ring-bench`). It asks for the next one
    // only when it finds the queue empty (above), as vhost re-enables notification before it
    // sleeps; a driver publish then crosses avail_event once and kicks.
    return head;
  }

  /** Writes a used element for `head` (popped, not yet completed) with `len` ≤ its writable bytes; not yet published. */
  addUsed(head: number, len: number): void {
    const q = this._serving();
    if (!Number.isInteger(head) || head < 0 || head >= q.qs || q.inFlight[head] === 0) {
      throw pvError('PV_ERR_INVALID_ARG', `head ${head} is not a chain this queue popped and has not completed`);
    }
    if (!Number.isInteger(len) || len < 0 || len > q.writable[head]) {
      throw pvError('PV_ERR_INVALID_ARG', `used len ${len} exceeds the chain's ${q.writable[head]} writable bytes`);
    }
    q.inFlight[head]--;
    const slot = this._usedShadow & (q.qs - 1);
    q.used32[(UsedOffset.RING >> 2) + 2 * slot] = head;
    q.used32[(UsedOffset.RING >> 2) + 2 * slot + 1] = len;
    this._usedShadow = (this._usedShadow + 1) & 0xffff;
  }

  /** Publishes the elements added so far; returns whether the driver wants an interrupt for them. */
  publishUsed(): boolean {
    const q = this._serving();
    const old = this._usedPublished;
    const now = this._usedShadow;
    if (old === now) return false;
    // ORDERING: release the used elements written above with the new used.idx (seq-cst store),
    // and order it before the event/flags load below (the write-idx, barrier, read-event rule).
    Atomics.store(q.used16, UsedOffset.IDX >> 1, now);
    this._usedPublished = now;
    if (this._features.eventIdx) {
      // ORDERING: seq-cst load after the idx store above.
      const usedEvent = Atomics.load(q.avail, usedEventOffset(q.qs) >> 1);
      return vringNeedEvent(usedEvent, now, old);
    }
    // ORDERING: seq-cst load after the idx store above.
    return (Atomics.load(q.avail, AvailOffset.FLAGS >> 1) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
  }

  /** addUsed + publishUsed. */
  pushUsed(head: number, len: number): boolean {
    this.addUsed(head, len);
    return this.publishUsed();
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
