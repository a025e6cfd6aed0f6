/**
 * The host's monitor buffer (layout: protocol/monitor/MonitorLayout.ts), seen from any thread:
 * the host creates it and resets a domain's record at create and teardown; a domain thread
 * stores its TID, counts grant ops and notifies into its record, and claims ring-end records;
 * the main thread reads everything for snapshots (HostMonitor.ts).
 */

import { pvError } from '../../protocol/errors.js';
import {
  DEFAULT_RING_RECORDS,
  DomainCounter,
  DomainRecordState,
  DomainRecordWord,
  domainRecordByte,
  MONITOR_MAGIC,
  MONITOR_VERSION,
  MonitorWord,
  monitorBytes,
  RING_RECORD_COUNTERS,
  RingPhase,
  RingRecordWord,
  ringKindCode,
  ringKindName,
  ringRecordByte,
  ringState,
  ringStateOwner,
  ringStatePhase,
} from '../../protocol/monitor/MonitorLayout.js';

/** Sizes of a monitor buffer. */
export interface MonitorSpaceConfig {
  readonly maxDomains: number;
  readonly ringRecords?: number;
}

/** A live ring-end record as read by a monitor. */
export interface RingRecordView {
  readonly index: number;
  readonly kind: string;
  readonly owner: number;
  readonly peer: number;
  readonly end: 'front' | 'back';
  /** A copy of the counters, RingCounter order. */
  readonly counters: Float64Array;
}

/** Views over one monitor buffer; see the file comment. */
export class MonitorSpace {
  readonly buffer: SharedArrayBuffer;
  readonly maxDomains: number;
  readonly ringRecords: number;
  private readonly _w: Int32Array;

  /** Attaches to an existing buffer (checks its header). */
  constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this._w = new Int32Array(buffer);
    // ORDERING: the header was written by the host before the buffer was handed to any thread.
    if (Atomics.load(this._w, MonitorWord.MAGIC) !== MONITOR_MAGIC) {
      throw pvError('PV_ERR_CONFIG', 'not a monitor buffer (bad magic)');
    }
    if (Atomics.load(this._w, MonitorWord.VERSION) !== MONITOR_VERSION) {
      throw pvError('PV_ERR_CONFIG', 'monitor buffer of another layout version');
    }
    this.maxDomains = this._w[MonitorWord.MAX_DOMAINS];
    this.ringRecords = this._w[MonitorWord.RING_RECORDS];
    if (buffer.byteLength < monitorBytes(this.maxDomains, this.ringRecords)) {
      throw pvError('PV_ERR_CONFIG', `monitor buffer of ${buffer.byteLength} bytes is too small for its header`);
    }
  }

  /** A zeroed buffer for `maxDomains` domains and a pool of ring-end records. */
  static create(config: MonitorSpaceConfig): MonitorSpace {
    const rings = config.ringRecords ?? DEFAULT_RING_RECORDS;
    const d = config.maxDomains;
    if (!Number.isInteger(d) || d < 1 || !Number.isInteger(rings) || rings < 0) {
      throw pvError('PV_ERR_CONFIG', `monitor of ${d} domains and ${rings} ring records`);
    }
    const buffer = new SharedArrayBuffer(monitorBytes(d, rings));
    const w = new Int32Array(buffer);
    w[MonitorWord.MAX_DOMAINS] = d;
    w[MonitorWord.RING_RECORDS] = rings;
    w[MonitorWord.VERSION] = MONITOR_VERSION;
    // ORDERING: magic last; the buffer reaches other threads only through postMessage anyway.
    Atomics.store(w, MonitorWord.MAGIC, MONITOR_MAGIC);
    return new MonitorSpace(buffer);
  }

  /** The Float64 counters of `domid`'s record (DomainCounter order); its thread is their only writer. */
  domainCounters(domid: number): Float64Array {
    this._checkDomain(domid);
    const byte = domainRecordByte(domid) + DomainRecordWord.COUNTERS_BYTE;
    return new Float64Array(this.buffer, byte, DomainCounter.COUNT);
  }

  /** Host, at domain create (before its thread starts): zeroed counters, no TID, LIVE. */
  openDomain(domid: number): void {
    this._checkDomain(domid);
    this.domainCounters(domid).fill(0);
    const w = domainRecordByte(domid) >> 2;
    // ORDERING: counters are zeroed before the state says LIVE.
    Atomics.store(this._w, w + DomainRecordWord.TID, 0);
    Atomics.store(this._w, w + DomainRecordWord.STATE, DomainRecordState.LIVE);
  }

  /** Host, at domain teardown: the record goes FREE and every ring record the domain held is freed. */
  closeDomain(domid: number): number {
    this._checkDomain(domid);
    // ORDERING: seq-cst store; a reader that sees FREE ignores the record.
    Atomics.store(this._w, (domainRecordByte(domid) >> 2) + DomainRecordWord.STATE, DomainRecordState.FREE);
    let freed = 0;
    for (let i = 0; i < this.ringRecords; i++) {
      const s = this._ringStateIndex(i);
      // ORDERING: seq-cst load; the dead domain's thread can no longer change its records.
      const state = Atomics.load(this._w, s);
      if (state === 0 || ringStateOwner(state) !== domid) continue;
      // ORDERING: CAS, so a record that was meanwhile freed and claimed by someone else is left alone.
      if (Atomics.compareExchange(this._w, s, state, 0) === state) freed++;
    }
    return freed;
  }

  /** Domain thread: its Linux TID (for /proc/self/task/<tid>/schedstat). */
  setTid(domid: number, tid: number): void {
    this._checkDomain(domid);
    // ORDERING: seq-cst store; the host reads it with a load.
    Atomics.store(this._w, (domainRecordByte(domid) >> 2) + DomainRecordWord.TID, tid | 0);
  }

  /** The TID a domain thread stored (0 if unknown). */
  tid(domid: number): number {
    this._checkDomain(domid);
    // ORDERING: seq-cst load of a word the domain thread stores once.
    return Atomics.load(this._w, (domainRecordByte(domid) >> 2) + DomainRecordWord.TID);
  }

  /** True while `domid`'s record is LIVE. */
  domainLive(domid: number): boolean {
    this._checkDomain(domid);
    // ORDERING: seq-cst load of the host-written state.
    return Atomics.load(this._w, (domainRecordByte(domid) >> 2) + DomainRecordWord.STATE) === DomainRecordState.LIVE;
  }

  /**
   * Claims a free ring-end record for `owner` (first fit, CAS on the state word), fills it in and
   * publishes it LIVE with zeroed counters; -1 when the pool is exhausted.
   */
  claimRing(owner: number, kind: string, peer: number, end: 'front' | 'back'): number {
    this._checkDomain(owner);
    const w = this._w;
    const claiming = ringState(owner, RingPhase.CLAIMING);
    for (let i = 0; i < this.ringRecords; i++) {
      const s = this._ringStateIndex(i);
      // ORDERING: cheap load first; the CAS claims.
      if (Atomics.load(w, s) !== 0) continue;
      // ORDERING: seq-cst CAS against every other thread claiming at once.
      if (Atomics.compareExchange(w, s, 0, claiming) !== 0) continue;
      // ORDERING: gen first, so a reader that read the old record sees it change.
      Atomics.add(w, s + RingRecordWord.GEN, 1);
      Atomics.store(w, s + RingRecordWord.KIND, ringKindCode(kind));
      Atomics.store(w, s + RingRecordWord.OWNER, owner);
      Atomics.store(w, s + RingRecordWord.PEER, peer | 0);
      Atomics.store(w, s + RingRecordWord.END, end === 'back' ? 1 : 0);
      this.ringCounters(i).fill(0);
      // ORDERING: seq-cst store publishes the fields and the zeroed counters above.
      Atomics.store(w, s, ringState(owner, RingPhase.LIVE));
      return i;
    }
    return -1;
  }

  /** The Float64 counters of ring-end record `index`. */
  ringCounters(index: number): Float64Array {
    const byte = ringRecordByte(this.maxDomains, index) + RingRecordWord.COUNTERS_BYTE;
    return new Float64Array(this.buffer, byte, RING_RECORD_COUNTERS);
  }

  /** Frees a record `owner` holds; false if it no longer holds it (already freed by the host). */
  releaseRing(index: number, owner: number): boolean {
    const live = ringState(owner, RingPhase.LIVE);
    // ORDERING: CAS LIVE(owner) → FREE; never frees a record someone else claimed since.
    return Atomics.compareExchange(this._w, this._ringStateIndex(index), live, 0) === live;
  }

  /** Every LIVE ring-end record, with a copy of its counters (records that changed while read are skipped). */
  liveRings(): RingRecordView[] {
    const w = this._w;
    const out: RingRecordView[] = [];
    for (let i = 0; i < this.ringRecords; i++) {
      const s = this._ringStateIndex(i);
      // ORDERING: seq-cst loads of state and gen, then the fields, then both again: a record
      // freed or re-claimed meanwhile is skipped rather than shown with mixed fields.
      const state = Atomics.load(w, s);
      if (ringStatePhase(state) !== RingPhase.LIVE) continue;
      const gen = Atomics.load(w, s + RingRecordWord.GEN);
      const view: RingRecordView = {
        index: i,
        kind: ringKindName(Atomics.load(w, s + RingRecordWord.KIND)),
        owner: Atomics.load(w, s + RingRecordWord.OWNER),
        peer: Atomics.load(w, s + RingRecordWord.PEER),
        end: Atomics.load(w, s + RingRecordWord.END) === 1 ? 'back' : 'front',
        counters: this.ringCounters(i).slice(),
      };
      // ORDERING: re-check after the plain counter reads.
      if (Atomics.load(w, s) !== state || Atomics.load(w, s + RingRecordWord.GEN) !== gen) continue;
      out.push(view);
    }
    return out;
  }

  private _ringStateIndex(index: number): number {
    return ringRecordByte(this.maxDomains, index) >> 2;
  }

  private _checkDomain(domid: number): void {
    if (!Number.isInteger(domid) || domid < 0 || domid >= this.maxDomains) {
      throw pvError('PV_ERR_CONFIG', `domain ${domid} has no monitor record (maxDomains ${this.maxDomains})`);
    }
  }
}
