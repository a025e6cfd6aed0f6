/**
 * Copy mode's table of work requests in flight on the device, one slot per WR, as flat typed
 * arrays (no object per request). The backend posts each WR to the NIC with a tracking id in
 * place of the guest's wr_id, and on completion the id finds the slot: the guest's wr_id, whether
 * the guest asked for a completion, the bounce run to free, and — for RDMA READ and RECV — the
 * guest's scatter list to copy the data out to.
 *
 * Tracking id = generation · 2^20 + slot. The generation changes each time a slot is reused, so
 * a stale or forged id (the device is trusted, but the check is cheap) names nothing.
 */

import type { MrRec, QpRec } from './GuestSession.js';

/** What a tracked WR does with bounce space. */
export const enum WrKind {
  /** SEND / RDMA_WRITE: data was copied in at post time (or inline, or zero-length). */
  SEND = 1,
  /** RDMA_READ: the device fills the bounce run; copied out on success. */
  READ = 2,
  /** RECV: the device fills the bounce run; byte_len bytes copied out on success. */
  RECV = 3,
}

/** Slots per table at most (the slot lives in the id's low 20 bits). */
export const TRACK_SPAN = 1 << 20;
/** SGEs saved per WR (a send WQE has 5, a receive WQE 3). */
const SGES = 5;

/** The tracking table; fields are public arrays indexed by slot (read by CopyEngine). */
export class WrTracker {
  readonly capacity: number;
  /** WRs in flight. */
  inflight = 0;
  readonly guestWrId: Float64Array;
  readonly kind: Uint8Array;
  readonly signaled: Uint8Array;
  /** Bounce run (byte offset), or -1 without one. */
  readonly bounceOff: Int32Array;
  readonly bounceLen: Float64Array;
  readonly qp: Array<QpRec | undefined>;
  readonly nsge: Uint8Array;
  /** Saved scatter list: SGES entries per slot. */
  readonly sgeAddr: Float64Array;
  readonly sgeLen: Float64Array;
  readonly sgeMr: Array<MrRec | undefined>;
  private readonly _gen: Uint32Array;
  private readonly _used: Uint8Array;
  private readonly _free: Int32Array;
  private _top: number;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.guestWrId = new Float64Array(capacity);
    this.kind = new Uint8Array(capacity);
    this.signaled = new Uint8Array(capacity);
    this.bounceOff = new Int32Array(capacity);
    this.bounceLen = new Float64Array(capacity);
    this.qp = new Array<QpRec | undefined>(capacity).fill(undefined);
    this.nsge = new Uint8Array(capacity);
    this.sgeAddr = new Float64Array(capacity * SGES);
    this.sgeLen = new Float64Array(capacity * SGES);
    this.sgeMr = new Array<MrRec | undefined>(capacity * SGES).fill(undefined);
    this._gen = new Uint32Array(capacity);
    this._used = new Uint8Array(capacity);
    this._free = new Int32Array(capacity);
    for (let i = 0; i < capacity; i++) this._free[i] = capacity - 1 - i;
    this._top = capacity;
  }

  /** A free slot (fields to be filled by the caller), or -1 when all are in flight. */
  take(): number {
    if (this._top === 0) return -1;
    const slot = this._free[--this._top];
    this._used[slot] = 1;
    this._gen[slot] = (this._gen[slot] + 1) & 0x1fffff;
    this.nsge[slot] = 0;
    this.bounceOff[slot] = -1;
    this.bounceLen[slot] = 0;
    this.inflight++;
    return slot;
  }

  /** The id the device carries for `slot`. */
  id(slot: number): number {
    return this._gen[slot] * TRACK_SPAN + slot;
  }

  /** The slot an id names, or -1 for an id that names no WR in flight. */
  lookup(id: number): number {
    if (!Number.isSafeInteger(id) || id < 0) return -1;
    const slot = id % TRACK_SPAN;
    if (slot >= this.capacity || this._used[slot] === 0) return -1;
    return Math.floor(id / TRACK_SPAN) === this._gen[slot] ? slot : -1;
  }

  /** Index of SGE `i` of `slot` in the sge* arrays. */
  sge(slot: number, i: number): number {
    return slot * SGES + i;
  }

  /** Returns a slot (the caller freed its bounce run). */
  release(slot: number): void {
    if (this._used[slot] === 0) return;
    this._used[slot] = 0;
    this.qp[slot] = undefined;
    const base = slot * SGES;
    for (let i = 0; i < SGES; i++) this.sgeMr[base + i] = undefined;
    this._free[this._top++] = slot;
    this.inflight--;
  }

  /** Slots in flight that belong to `qp` (rare path: QP reset or destroy). */
  slotsOf(qp: QpRec): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.capacity; i++) if (this._used[i] !== 0 && this.qp[i] === qp) out.push(i);
    return out;
  }
}
