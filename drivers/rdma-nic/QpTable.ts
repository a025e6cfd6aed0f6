/**
 * The driver's queue pairs: creation (queues allocated in driver memory), state changes, and
 * the data path — posting WQEs into the queues and ringing doorbells once per batch.
 *
 * Doorbell batching: a post marks its QP dirty and lists it once in `_dirty`; `flush` writes one
 * doorbell per dirty queue (the new free-running producer index), so a chain of N WRs costs one
 * MMIO write, not N (PVRDMA provider, reference §3.1).
 */

import { pvError } from '../../protocol/errors.js';
import type { GuestMemory } from '../../protocol/Hypercalls.js';
import type { MmioRegion } from '../../protocol/Pci.js';
import { encodeModifyQpArgs, NicCmd, rqDoorbell, sqDoorbell } from '../../protocol/rdma/NicRegs.js';
import { type QpAttr, type QpCap, QpState, type RecvWr, type SendWr } from '../../protocol/rdma/Verbs.js';
import { MAX_INLINE_DATA, MAX_RECV_SGE, MAX_SEND_SGE, RECV_WQE_SIZE, SEND_WQE_SIZE } from '../../protocol/rdma/Wqe.js';
import type { GuestPhysAddr } from '../../protocol/Types.js';
import { pow2AtLeast } from './CqTable.js';
import type { NicMailbox } from './NicMailbox.js';
import { QpQueues } from './QpQueues.js';
import type { DriverBuffer, DriverQp, DriverQpInit, QpQuery, QueueMemory } from './Types.js';
import { checkRecvWr, checkSendWr } from './WrCheck.js';

/** Send queues with at most this many new WQEs are rung before longer batches (`flush`). */
const SHORT_BATCH = 2;

function capField(cap: QpCap, key: keyof QpCap, min: number, max: number): number {
  const v = cap[key];
  if (!Number.isInteger(v) || v < min || v > max) {
    throw pvError('PV_ERR_LIMIT', `QP cap ${key} = ${v}: the NIC allows ${min} … ${max}`);
  }
  return v;
}

/** QPs by qpn, and the doorbells they owe. */
export class QpTable {
  /** Doorbell writes so far. */
  doorbells = 0;
  private readonly _qm: QueueMemory;
  private readonly _bar: MmioRegion;
  private readonly _mbox: NicMailbox;
  /** The whole driver memory as bytes, made once (inline gathers index it directly). */
  private readonly _bytes: Uint8Array;
  /** Indexed by qpn (1 … maxQp − 1). */
  private readonly _qps: Array<QpQueues | undefined>;
  private readonly _bufs = new Map<number, [DriverBuffer, DriverBuffer]>();
  /** qpns owing a doorbell, each listed at most once (`_listed[qpn]`). */
  private readonly _dirty: Int32Array;
  private readonly _listed: Uint8Array;
  private _dirtyCount = 0;

  constructor(qm: QueueMemory, bar: MmioRegion, mbox: NicMailbox, mem: GuestMemory) {
    this._qm = qm;
    this._bar = bar;
    this._mbox = mbox;
    this._bytes = mem.view(0 as GuestPhysAddr, mem.size);
    const n = qm.caps.maxQp;
    this._qps = new Array<QpQueues | undefined>(n).fill(undefined);
    this._dirty = new Int32Array(n);
    this._listed = new Uint8Array(n);
  }

  /** Live qpns (a copy). */
  numbers(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this._qps.length; i++) if (this._qps[i]) out.push(i);
    return out;
  }

  /** Allocates the queues and creates the QP. */
  create(init: DriverQpInit): DriverQp {
    const maxWr = this._qm.caps.maxQpWr;
    const cap = init.cap;
    const sqEntries = pow2AtLeast(Math.max(1, capField(cap, 'maxSendWr', 0, maxWr)));
    const rqEntries = pow2AtLeast(Math.max(1, capField(cap, 'maxRecvWr', 0, maxWr)));
    if (sqEntries > maxWr || rqEntries > maxWr) {
      throw pvError('PV_ERR_LIMIT', `QP depth rounds up to ${Math.max(sqEntries, rqEntries)} > ${maxWr}`);
    }
    const granted: QpCap = {
      maxSendWr: sqEntries,
      maxRecvWr: rqEntries,
      maxSendSge: capField(cap, 'maxSendSge', 0, MAX_SEND_SGE),
      maxRecvSge: capField(cap, 'maxRecvSge', 0, MAX_RECV_SGE),
      maxInlineData: capField(cap, 'maxInlineData', 0, MAX_INLINE_DATA),
    };
    const sq = this._qm.allocBuffer(sqEntries * SEND_WQE_SIZE);
    let rq: DriverBuffer | undefined;
    let qpn: number;
    try {
      rq = this._qm.allocBuffer(rqEntries * RECV_WQE_SIZE);
      const sqIova = this._qm.dmaAddr(sq.addr);
      const rqIova = this._qm.dmaAddr(rq.addr);
      const a = this._mbox.begin();
      a[0] = init.pd;
      a[1] = init.sendCq;
      a[2] = init.recvCq;
      a[3] = sqEntries;
      a[4] = rqEntries;
      a[5] = sqIova >>> 0;
      a[6] = Math.floor(sqIova / 0x1_0000_0000);
      a[7] = rqIova >>> 0;
      a[8] = Math.floor(rqIova / 0x1_0000_0000);
      a[9] = init.sqSigAll ? 1 : 0;
      a[10] = granted.maxInlineData;
      a[11] = granted.maxSendSge;
      a[12] = granted.maxRecvSge;
      this._mbox.exec(NicCmd.CREATE_QP);
      qpn = this._mbox.out(0);
      if (qpn < 1 || qpn >= this._qps.length || this._qps[qpn] !== undefined) {
        throw pvError(
          'PV_ERR_RDMA_RESOURCE',
          `NIC returned QP number ${qpn}, outside 1 … ${this._qps.length - 1} or in use`,
        );
      }
    } catch (err) {
      this._qm.freeBuffer(sq);
      if (rq) this._qm.freeBuffer(rq);
      throw err;
    }
    const q = new QpQueues(qpn, granted, sqEntries, rqEntries, sq.words, rq.words);
    this._qps[qpn] = q;
    this._bufs.set(qpn, [sq, rq]);
    return { qpn, cap: granted, sqAddr: sq.addr, rqAddr: rq.addr };
  }

  /** MODIFY_QP; see RdmaNicDriver.modifyQp. */
  modify(qpn: number, attr: QpAttr, mask: number): void {
    const q = this._get(qpn);
    const a = this._mbox.begin();
    encodeModifyQpArgs(a, qpn, attr, mask);
    this._mbox.exec(NicCmd.MODIFY_QP);
    if ((mask & 1) !== 0 && attr.qpState !== undefined) {
      q.state = attr.qpState;
      if (attr.qpState === QpState.RESET) {
        // RESET empties both queues: restart from whatever the device now reports consumed
        // (it may have kept its indices or zeroed them; either way producer = consumer).
        const r = this._read(qpn);
        q.sqProd = q.sqCons = r.sqCons;
        q.rqProd = q.rqCons = r.rqCons;
        q.sqDirty = false;
        q.rqDirty = false;
      }
    }
  }

  /** QUERY_QP; refreshes the cached consumer indices. */
  query(qpn: number): QpQuery {
    const q = this._get(qpn);
    const r = this._read(qpn);
    q.adoptCons(r.sqCons, r.rqCons);
    return r;
  }

  /** QUERY_QP without touching the cache. */
  private _read(qpn: number): QpQuery {
    this._mbox.begin()[0] = qpn;
    this._mbox.exec(NicCmd.QUERY_QP);
    const m = this._mbox;
    return {
      state: m.out(0) as QpState,
      destQpNum: m.out(1),
      destPortId: m.out(2),
      sqCons: m.out(3),
      rqCons: m.out(4),
    };
  }

  /** DESTROY_QP, then frees the queues. */
  destroy(qpn: number): void {
    this._get(qpn);
    this._mbox.begin()[0] = qpn;
    this._mbox.exec(NicCmd.DESTROY_QP);
    this._qps[qpn] = undefined;
    const bufs = this._bufs.get(qpn);
    this._bufs.delete(qpn);
    if (bufs) {
      this._qm.freeBuffer(bufs[0]);
      this._qm.freeBuffer(bufs[1]);
    }
  }

  /** Checks and encodes one send WR. */
  postSend(qpn: number, wr: SendWr): void {
    const q = this._sendable(qpn);
    const total = checkSendWr(wr, q.cap);
    this._sqRoom(q);
    q.writeSend(wr, total, this._bytes);
    this._list(qpn);
  }

  /** Checks and encodes one receive WR. */
  postRecv(qpn: number, wr: RecvWr): void {
    const q = this._receivable(qpn);
    checkRecvWr(wr, q.cap);
    this._rqRoom(q);
    q.writeRecv(wr);
    this._list(qpn);
  }

  /** Copies one encoded send WQE. */
  postSendWords(qpn: number, src: Int32Array, srcWord: number): void {
    const q = this._sendable(qpn);
    this._sqRoom(q);
    if (!q.copySend(src, srcWord))
      throw pvError('PV_ERR_RDMA_BAD_WR', `QP ${qpn}: WQE exceeds the QP's SGE or inline capacity`);
    this._list(qpn);
  }

  /** Copies one encoded receive WQE. */
  postRecvWords(qpn: number, src: Int32Array, srcWord: number): void {
    const q = this._receivable(qpn);
    this._rqRoom(q);
    if (!q.copyRecv(src, srcWord))
      throw pvError('PV_ERR_RDMA_BAD_WR', `QP ${qpn}: receive WQE exceeds the QP's SGE capacity`);
    this._list(qpn);
  }

  /** Writes the SQ doorbell of one QP if it owes one. */
  ringSq(qpn: number): void {
    const q = this._get(qpn);
    if (!q.sqDirty) return;
    q.sqDirty = false;
    q.sqRung = q.sqProd;
    this.doorbells++;
    this._bar.write32(sqDoorbell(qpn), q.sqProd | 0);
  }

  /** Writes the RQ doorbell of one QP if it owes one. */
  ringRq(qpn: number): void {
    const q = this._get(qpn);
    if (!q.rqDirty) return;
    q.rqDirty = false;
    this.doorbells++;
    this._bar.write32(rqDoorbell(qpn), q.rqProd | 0);
  }

  /**
   * Writes every owed doorbell: every receive queue first, so a SEND looped back finds its
   * buffer; then send queues with at most SHORT_BATCH new WQEs; then the rest. A device that
   * runs queues in doorbell order (the inline engine runs each in the writer's thread) then
   * does a quiet QP's single WR before a busy QP's batch, not after it: the batch costs the
   * busy QP one WR's delay, while the other order costs the quiet QP the whole batch's.
   */
  flush(): void {
    const n = this._dirtyCount;
    this._dirtyCount = 0;
    const dirty = this._dirty;
    for (let i = 0; i < n; i++) {
      const q = this._qps[dirty[i]];
      if (q?.rqDirty) this.ringRq(q.qpn);
    }
    let long = 0;
    for (let i = 0; i < n; i++) {
      const qpn = dirty[i];
      this._listed[qpn] = 0;
      const q = this._qps[qpn];
      if (q === undefined || !q.sqDirty) continue;
      if ((q.sqProd - q.sqRung) >>> 0 <= SHORT_BATCH) this.ringSq(qpn);
      else dirty[long++] = qpn;
    }
    for (let i = 0; i < long; i++) {
      const q = this._qps[dirty[i]];
      if (q?.sqDirty) this.ringSq(q.qpn);
    }
  }

  private _list(qpn: number): void {
    if (this._listed[qpn] !== 0) return;
    this._listed[qpn] = 1;
    this._dirty[this._dirtyCount++] = qpn;
  }

  private _get(qpn: number): QpQueues {
    const q = Number.isInteger(qpn) ? this._qps[qpn] : undefined;
    if (q === undefined) throw pvError('PV_ERR_RDMA_BAD_HANDLE', `no QP ${qpn}`);
    return q;
  }

  /** A QP that may post sends: RTS or later (ERR included: the NIC flushes them), not RESET/INIT/RTR. */
  private _sendable(qpn: number): QpQueues {
    const q = this._get(qpn);
    if (q.state < QpState.RTS) {
      throw pvError('PV_ERR_RDMA_BAD_STATE', `QP ${qpn} is in state ${q.state}; sends need RTS`);
    }
    return q;
  }

  /** A QP that may post receives: any state but RESET. */
  private _receivable(qpn: number): QpQueues {
    const q = this._get(qpn);
    if (q.state === QpState.RESET)
      throw pvError('PV_ERR_RDMA_BAD_STATE', `QP ${qpn} is in RESET; receives need INIT or later`);
    return q;
  }

  /** Makes sure one SQ slot is free, asking the device only when the cache says full. */
  private _sqRoom(q: QpQueues): void {
    if (!q.sqFull()) return;
    this.query(q.qpn);
    if (q.sqFull()) throw pvError('PV_ERR_RDMA_QUEUE_FULL', `QP ${q.qpn}: send queue of ${q.sqEntries} is full`);
  }

  private _rqRoom(q: QpQueues): void {
    if (!q.rqFull()) return;
    this.query(q.qpn);
    if (q.rqFull()) throw pvError('PV_ERR_RDMA_QUEUE_FULL', `QP ${q.qpn}: receive queue of ${q.rqEntries} is full`);
  }
}
