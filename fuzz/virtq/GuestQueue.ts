/**
 * The driver side of one split virtqueue, written from VIRTIO 1.2 §2.7 with DataView (explicit
 * little endian), NOT from pvio's frontend: tests and the virtq fuzz target use it to build
 * honest and hostile chains and to read what the device published (rust-vmm's `MockSplitQueue`).
 * It writes anything it is told to, including garbage: it is also the adversary's pen.
 *
 * Only the published indices and event words (avail.idx, used_event; used.idx, avail_event),
 * which the device accesses with Atomics, go through a Uint16Array; the rest is DataView.
 */

import type { SplitQueueAddrs } from '../../backend/virtio/SplitDevice.js';
import { guestPhysAddr } from '../../protocol/Types.js';
import {
  AvailOffset,
  availEventOffset,
  availRingBytes,
  DescOffset,
  descTableBytes,
  splitLayout,
  UsedElemOffset,
  UsedOffset,
  usedEventOffset,
  usedRingBytes,
  VIRTQ_DESC_BYTES,
  VIRTQ_USED_ELEM_BYTES,
} from '../../protocol/virtio/SplitRing.js';
import type { GuestRam } from './GuestRam.js';

/** One descriptor as the driver writes it; `hi` is the address's upper 32 bits (for addresses ≥ 2^53). */
export interface DescSpec {
  readonly addr: number;
  readonly len: number;
  readonly flags: number;
  readonly next: number;
  readonly hi?: number;
}

/** See the file comment. */
export class GuestQueue {
  readonly addrs: SplitQueueAddrs;
  private readonly _idx16: Uint16Array;
  private _availIdx = 0;
  private _usedSeen = 0;

  /** A queue of `qs` entries laid out contiguously (splitLayout) from `base`. */
  constructor(
    readonly ram: GuestRam,
    readonly qs: number,
    base: number,
  ) {
    const l = splitLayout(qs);
    this.addrs = {
      size: qs,
      desc: guestPhysAddr(base + l.desc),
      avail: guestPhysAddr(base + l.avail),
      used: guestPhysAddr(base + l.used),
    };
    this._idx16 = new Uint16Array(ram.sab);
  }

  /** Bytes of the queue's block. */
  static bytes(qs: number): number {
    return splitLayout(qs).bytes;
  }

  /** Zeroes the three areas and the driver's counters (a fresh queue after a reset). */
  init(): void {
    const r = this.ram;
    r.bytes(this.addrs.desc, descTableBytes(this.qs)).fill(0);
    r.bytes(this.addrs.avail, availRingBytes(this.qs)).fill(0);
    r.bytes(this.addrs.used, usedRingBytes(this.qs)).fill(0);
    this._availIdx = 0;
    this._usedSeen = 0;
  }

  /** Writes descriptor `i` of the table at `table` (default: the queue's own table). */
  setDesc(i: number, d: DescSpec, table: number = this.addrs.desc): void {
    const o = this.ram.off(table) + i * VIRTQ_DESC_BYTES;
    const dv = this.ram.dv;
    dv.setUint32(o + DescOffset.ADDR, d.addr % 2 ** 32, true);
    dv.setUint32(o + DescOffset.ADDR + 4, d.hi ?? Math.floor(d.addr / 2 ** 32), true);
    dv.setUint32(o + DescOffset.LEN, d.len >>> 0, true);
    dv.setUint16(o + DescOffset.FLAGS, d.flags & 0xffff, true);
    dv.setUint16(o + DescOffset.NEXT, d.next & 0xffff, true);
  }

  /** Puts `head` in the next avail slot and publishes it (ring entry, then avail.idx). */
  publish(head: number): void {
    const o = this.ram.off(this.addrs.avail);
    this.ram.dv.setUint16(o + AvailOffset.RING + 2 * (this._availIdx & (this.qs - 1)), head & 0xffff, true);
    this.setAvailIdx(this._availIdx + 1);
  }

  /** Writes avail.ring[slot] without publishing. */
  setRing(slot: number, head: number): void {
    this.ram.dv.setUint16(this.ram.off(this.addrs.avail) + AvailOffset.RING + 2 * slot, head & 0xffff, true);
  }

  /** Stores avail.idx = v (any value: a jump is the adversary's business). */
  setAvailIdx(v: number): void {
    this._availIdx = v & 0xffff;
    // ORDERING: seq-cst store publishes the ring entry and descriptors written before it.
    Atomics.store(this._idx16, (this.ram.off(this.addrs.avail) + AvailOffset.IDX) >> 1, this._availIdx);
  }

  /** The driver's avail.idx. */
  get availIdx(): number {
    return this._availIdx;
  }

  /** avail.flags (NO_INTERRUPT). */
  setAvailFlags(v: number): void {
    this.ram.dv.setUint16(this.ram.off(this.addrs.avail) + AvailOffset.FLAGS, v, true);
  }

  /** used_event (EVENT_IDX). */
  setUsedEvent(v: number): void {
    // ORDERING: seq-cst store of the event word the device loads after publishing used.idx.
    Atomics.store(this._idx16, (this.ram.off(this.addrs.avail) + usedEventOffset(this.qs)) >> 1, v & 0xffff);
  }

  /** used.idx as published by the device. */
  usedIdx(): number {
    // ORDERING: acquire the device's used.idx: the elements written before it are visible.
    return Atomics.load(this._idx16, (this.ram.off(this.addrs.used) + UsedOffset.IDX) >> 1);
  }

  /** avail_event as published by the device (EVENT_IDX). */
  availEvent(): number {
    // ORDERING: seq-cst load of the event word the device stores after consuming.
    return Atomics.load(this._idx16, (this.ram.off(this.addrs.used) + availEventOffset(this.qs)) >> 1);
  }

  /** Used element at free-running index `i`. */
  usedElem(i: number): { id: number; len: number } {
    const o = this.ram.off(this.addrs.used) + UsedOffset.RING + VIRTQ_USED_ELEM_BYTES * (i & (this.qs - 1));
    const dv = this.ram.dv;
    return { id: dv.getUint32(o + UsedElemOffset.ID, true), len: dv.getUint32(o + UsedElemOffset.LEN, true) };
  }

  /** The used elements published since the last call. */
  takeUsed(): Array<{ id: number; len: number }> {
    const now = this.usedIdx();
    const out: Array<{ id: number; len: number }> = [];
    for (; this._usedSeen !== now; this._usedSeen = (this._usedSeen + 1) & 0xffff)
      out.push(this.usedElem(this._usedSeen));
    return out;
  }
}
