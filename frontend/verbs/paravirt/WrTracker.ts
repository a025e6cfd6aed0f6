/**
 * The work requests a paravirt QP has outstanding, per queue, in posting order — so that when
 * the device is lost every one of them still completes (IB semantics of a QP going to ERR:
 * "all outstanding and subsequently posted WRs complete with IBV_WC_WR_FLUSH_ERR", send and
 * receive queues alike, signaled or not, in order).
 *
 * Why the frontend keeps this: in zero-copy mode the NIC writes CQEs straight into the guest's CQ
 * ring, so nothing between the guest and the NIC remembers what was posted. When the driver
 * domain dies the NIC is reset with it and writes nothing more; without this record a guest
 * waiting on its CQ for a WR it posted would wait for ever.
 *
 * A WR leaves its queue when pollCq hands out its completion (`retire`, fed every CQE taken from
 * the ring), when the backend refuses it (`remove`: the refusal is its completion), or when the
 * flush hands it out (`shiftInto`). An RC queue completes in order, so a CQE for WR X retires X
 * and every earlier WR of that queue (the unsignaled ones, which the device completed silently).
 *
 * Allocation-free on the fast path: each queue is a ring of typed arrays sized by the QP's
 * granted capability. It grows (doubling) only if the guest has more WRs outstanding than that —
 * possible because the device may free a slot before the guest polls the CQE that retires it.
 */

import { copyWc, type Wc, WcOpcode, WcStatus, WrOpcode } from '../../../protocol/rdma/Verbs.js';

/** The WC opcode a send WR of `op` completes with (ibv_wc_opcode). */
export function sendWcOpcode(op: number): WcOpcode {
  if (op === WrOpcode.RDMA_WRITE || op === WrOpcode.RDMA_WRITE_WITH_IMM) return WcOpcode.RDMA_WRITE;
  if (op === WrOpcode.RDMA_READ) return WcOpcode.RDMA_READ;
  return WcOpcode.SEND;
}

/** One queue (send or receive) of one QP: a FIFO of outstanding WRs; see the file comment. */
export class WrQueue {
  /** Times the ring had to grow past the QP's capability. */
  growths = 0;
  private _ids: Float64Array;
  private _ops: Uint8Array;
  private _sig: Uint8Array;
  private _head = 0;
  private _count = 0;

  /** A ring for `capacity` WRs (rounded up to a power of two). */
  constructor(capacity: number) {
    let n = 1;
    while (n < capacity) n *= 2;
    this._ids = new Float64Array(n);
    this._ops = new Uint8Array(n);
    this._sig = new Uint8Array(n);
  }

  /** WRs outstanding. */
  get length(): number {
    return this._count;
  }

  /** Records a posted WR: its wr_id, the WC opcode it completes with, and whether it is signaled. */
  push(wrId: number, opcode: WcOpcode, signaled: boolean): void {
    if (this._count === this._ids.length) this._grow();
    const i = (this._head + this._count) & (this._ids.length - 1);
    this._ids[i] = wrId;
    this._ops[i] = opcode;
    this._sig[i] = signaled ? 1 : 0;
    this._count++;
  }

  /**
   * A CQE for `wrId` came out of the ring: retires the WR it completes and every earlier one (RC
   * order). A successful CQE completes the oldest SIGNALED WR with that wr_id (unsignaled ones
   * make none); an error CQE may complete any WR (errors complete unsignaled WRs too). False if
   * no outstanding WR matches (already retired, or not ours): nothing is retired.
   */
  retire(wrId: number, error: boolean): boolean {
    const k = this._find(wrId, !error);
    if (k < 0) return false;
    this._head = (this._head + k + 1) & (this._ids.length - 1);
    this._count -= k + 1;
    return true;
  }

  /**
   * The backend refused the oldest outstanding WR with `wrId` (it never reached the device, and
   * its refusal is its completion): removes that one alone, keeping the order of the rest.
   * Error path only (shifts the tail).
   */
  remove(wrId: number): boolean {
    const k = this._find(wrId, false);
    if (k < 0) return false;
    const mask = this._ids.length - 1;
    for (let j = k; j < this._count - 1; j++) {
      const a = (this._head + j) & mask;
      const b = (this._head + j + 1) & mask;
      this._ids[a] = this._ids[b];
      this._ops[a] = this._ops[b];
      this._sig[a] = this._sig[b];
    }
    this._count--;
    return true;
  }

  /**
   * Hands the oldest outstanding WR out as a WR_FLUSH_ERR completion of QP `qpNum` into `wc`
   * (every field written: no allocation) and forgets it. INVARIANT: `length > 0`.
   */
  shiftInto(wc: Wc, qpNum: number): void {
    const i = this._head;
    wc.wrId = this._ids[i];
    wc.status = WcStatus.WR_FLUSH_ERR;
    wc.opcode = this._ops[i];
    wc.vendorErr = 0;
    wc.byteLen = 0;
    wc.immData = 0;
    wc.qpNum = qpNum;
    wc.srcQp = 0;
    wc.wcFlags = 0;
    this._head = (i + 1) & (this._ids.length - 1);
    this._count--;
  }

  /** Forgets every WR (the QP went back to RESET: its queues were emptied without completions). */
  clear(): void {
    this._head = 0;
    this._count = 0;
  }

  /** Position (from the head) of the oldest WR with `wrId` (signaled only if asked); -1 if none. */
  private _find(wrId: number, signaledOnly: boolean): number {
    const mask = this._ids.length - 1;
    for (let j = 0; j < this._count; j++) {
      const i = (this._head + j) & mask;
      if (this._ids[i] === wrId && (!signaledOnly || this._sig[i] === 1)) return j;
    }
    return -1;
  }

  private _grow(): void {
    const n = this._ids.length;
    const ids = new Float64Array(n * 2);
    const ops = new Uint8Array(n * 2);
    const sig = new Uint8Array(n * 2);
    for (let j = 0; j < this._count; j++) {
      const i = (this._head + j) & (n - 1);
      ids[j] = this._ids[i];
      ops[j] = this._ops[i];
      sig[j] = this._sig[i];
    }
    this._ids = ids;
    this._ops = ops;
    this._sig = sig;
    this._head = 0;
    this.growths++;
  }
}

/** Both queues of one QP. */
export class QpWrs {
  readonly send: WrQueue;
  readonly recv: WrQueue;

  constructor(maxSendWr: number, maxRecvWr: number) {
    this.send = new WrQueue(maxSendWr);
    this.recv = new WrQueue(maxRecvWr);
  }

  /**
   * A CQE pollCq took from the ring: receive completions have bit 7 of the opcode set (also on
   * the NIC's error CQEs, which carry SEND or RECV); an error CQE that matches nothing in its
   * queue is tried on the other (a producer that wrote a bare opcode on error). False if it
   * matched no outstanding WR.
   */
  retire(wc: Wc): boolean {
    const error = wc.status !== WcStatus.SUCCESS;
    const recv = (wc.opcode & WcOpcode.RECV) !== 0;
    if ((recv ? this.recv : this.send).retire(wc.wrId, error)) return true;
    return error && (recv ? this.send : this.recv).retire(wc.wrId, error);
  }
}

/** What the tracker needs of a QP (DataPoster's FrontQp). */
export interface TrackedQp {
  readonly qpNum: number;
  readonly sendCq: number;
  readonly recvCq: number;
  readonly wrs?: QpWrs;
}

/** Every QP of one device, by QP number (what a CQE names): retires CQEs, flushes at the loss. */
export class DeviceWrs {
  /** WRs handed out as WR_FLUSH_ERR after the device was lost. */
  flushed = 0;
  /** Ring CQEs dropped after the loss: their WR had been flushed already. */
  duplicates = 0;
  private readonly _byQpNum = new Map<number, TrackedQp>();

  add(q: TrackedQp): void {
    this._byQpNum.set(q.qpNum, q);
  }

  delete(qpNum: number): void {
    this._byQpNum.delete(qpNum);
  }

  clear(): void {
    this._byQpNum.clear();
  }

  /** WRs whose completion has not been handed out (all QPs, both queues). */
  get outstanding(): number {
    let n = 0;
    for (const q of this._byQpNum.values()) if (q.wrs !== undefined) n += q.wrs.send.length + q.wrs.recv.length;
    return n;
  }

  /**
   * CQEs pollCq took from a ring (`wc[start … start + n)`): each retires its WR (and the
   * unsignaled ones before it). Returns how many to hand out, the kept ones moved down in order:
   * all of them while the device lives. Once it is `lost`, a CQE of one of our QPs that matches
   * no outstanding WR completes a WR already flushed — an unplugged backend's NIC flushing the
   * same QPs (RdmaBackend's `_flushQps`) may land after the frontend saw the device go — and is
   * dropped, so each WR completes exactly once. Allocation-free.
   */
  retire(wc: Wc[], start: number, n: number, lost: boolean): number {
    let kept = start;
    for (let i = start; i < start + n; i++) {
      const wrs = this._byQpNum.get(wc[i].qpNum)?.wrs;
      if (wrs !== undefined && !wrs.retire(wc[i]) && lost) {
        this.duplicates++;
        continue;
      }
      if (kept !== i) copyWc(wc[kept], wc[i]);
      kept++;
    }
    return kept - start;
  }

  /**
   * The device is lost: hands out up to `max` WRs still outstanding on queues that complete on
   * CQ `cq`, as WR_FLUSH_ERR, oldest first per queue, into `out[start …)`; returns the count.
   * Each leaves its queue as it is handed out, so none is handed out twice.
   */
  flush(cq: number, out: Wc[], start: number, max: number): number {
    let n = 0;
    for (const q of this._byQpNum.values()) {
      const wrs = q.wrs;
      if (wrs === undefined) continue;
      if (q.sendCq === cq) while (n < max && wrs.send.length > 0) wrs.send.shiftInto(out[start + n++], q.qpNum);
      if (q.recvCq === cq) while (n < max && wrs.recv.length > 0) wrs.recv.shiftInto(out[start + n++], q.qpNum);
      if (n >= max) break;
    }
    this.flushed += n;
    return n;
  }
}
