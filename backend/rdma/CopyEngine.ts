/**
 * paravirt-copy: the naive split driver. The guest's local buffers are never mapped for the
 * NIC; each guest has a bounce region in driver-domain memory (registered on the NIC in every
 * one of its PDs), and every operation moves data through it with page-bounded grant copies:
 *  - SEND / RDMA_WRITE: the guest's SGEs are copied INTO a bounce run before the WQE is posted;
 *  - RDMA_READ / RECV: the device fills a bounce run; on success the data is copied OUT to the
 *    guest's SGEs (RECV: byte_len bytes; RDMA_WRITE_WITH_IMM's receive completion carries no data);
 *  - INLINE sends carry their payload in the WQE and need no bounce.
 * The device WQE names the bounce run with one SGE and the bounce MR's lkey, and carries a
 * tracking id instead of the guest's wr_id (WrTracker.ts). The backend resolves the guest's
 * lkeys itself (copy-mode keys, GuestSession.mrByLkey): a WR with an SGE outside an MR of the
 * QP's PD, or a READ/RECV into an MR without LOCAL_WRITE, is still posted, with an SGE the NIC
 * refuses, so it completes with LOC_PROT_ERR in order, as the same WR does in zero-copy mode.
 *
 * Memory a guest registers with REMOTE_READ/REMOTE_WRITE is still grant-mapped for the device
 * (MrCommands.ts): a one-sided operation from a peer has no guest-side operation to copy on.
 *
 * Completions come through the backend: every device QP is created with sq_sig_all (so each
 * WR's bounce run is freed by its CQE), the device CQs live in driver memory, and this engine —
 * a RingServer poller — drains them each round, copies data out, restores the guest's wr_id,
 * drops the CQEs of successful WRs the guest did not signal, and produces the guest's CQE into
 * its CQ ring (grant-mapped, not device-mapped; GuestCq.ts).
 *
 * When the bounce region or the tracking table is full, posting returns DEFER: backpressure,
 * never an error and never unbounded buffering. Data path allocation-free.
 */

import type { DriverBuffer } from '../../drivers/rdma-nic/Types.js';
import { ERROR_CATALOGUE } from '../../protocol/errors.js';
import { CqWord } from '../../protocol/rdma/Cq.js';
import { Access, emptyWc, SendFlags, type Wc, WcOpcode, WcStatus, WrOpcode } from '../../protocol/rdma/Verbs.js';
import {
  hi32,
  join64,
  lo32,
  MAX_RECV_SGE,
  MAX_SEND_SGE,
  RecvWqeWord,
  SEND_WQE_USED_WORDS,
  SendWqeWord,
  SGE_WORDS,
} from '../../protocol/rdma/Wqe.js';
import { type GuestPhysAddr, PAGE_SIZE } from '../../protocol/Types.js';
import type { Poller } from '../ring/RingServer.js';
import { BounceAllocator } from './BounceAllocator.js';
import { BounceCopier } from './BounceCopier.js';
import { DEFER, postToDevice } from './DataHandler.js';
import { overflowGuestCq, produceGuestCqe } from './GuestCq.js';
import type { CqRec, GuestSession, QpRec } from './GuestSession.js';
import { WrKind, WrTracker } from './WrTracker.js';

const BAD_LENGTH = ERROR_CATALOGUE.PV_ERR_BAD_LENGTH.status;
/** CQEs taken from one device CQ per round (bounded work per guest per round). */
const POLL_BATCH = 32;
/** Largest tracking table per guest. */
const MAX_TRACKED = 8192;

/** One copy-mode guest's bounce space, WR tracking and completion path; see the file comment. */
export class CopyEngine implements Poller {
  /** Driver-domain address of the bounce region (what the device WQEs name). */
  readonly bounceAddr: GuestPhysAddr;
  readonly bounceBytes: number;
  /** Bytes moved, CQEs with no tracked WR, CQEs dropped on a full guest ring. */
  readonly stats = { poisoned: 0, strayCqes: 0, guestOverflows: 0 };
  private readonly _buf: DriverBuffer;
  private readonly _alloc: BounceAllocator;
  private readonly _t: WrTracker;
  private readonly _copier: BounceCopier;
  private readonly _cqs: CqRec[] = [];
  private readonly _wqe = new Int32Array(SEND_WQE_USED_WORDS);
  /** num_sge of the device WQE `_stage` built. */
  private _nsge = 0;
  private readonly _wcs: Wc[] = Array.from({ length: POLL_BATCH }, emptyWc);

  constructor(private readonly _s: GuestSession) {
    this._buf = _s.driver.allocBuffer(_s.limits.bounceBytes);
    this.bounceAddr = this._buf.addr;
    this.bounceBytes = this._buf.pages * PAGE_SIZE;
    this._alloc = new BounceAllocator(this.bounceBytes);
    this._t = new WrTracker(Math.min(_s.limits.maxOutstandingWr, MAX_TRACKED));
    this._copier = new BounceCopier(_s.hc.grant, _s.front, this._t);
  }

  /** Bytes grant-copied into bounce space (SEND, RDMA WRITE). */
  get copiedIn(): number {
    return this._copier.copiedIn;
  }

  /** Bytes grant-copied out of bounce space (RDMA READ, RECV). */
  get copiedOut(): number {
    return this._copier.copiedOut;
  }

  /** WRs in flight on the device. */
  get inflight(): number {
    return this._t.inflight;
  }

  /** Starts draining a guest CQ's device CQ. */
  addCq(cq: CqRec): void {
    this._cqs.push(cq);
  }

  /** Stops draining it (before DESTROY_CQ). */
  removeCq(cq: CqRec): void {
    const i = this._cqs.indexOf(cq);
    if (i >= 0) this._cqs.splice(i, 1);
  }

  /** Posts a checked send WQE (at `req[w]`) through bounce; 0, a status, or DEFER. */
  postSend(qp: QpRec, req: Int32Array, w: number): number {
    const opw = req[w + SendWqeWord.OP_FLAGS_NSGE];
    const op = opw & 0xff;
    const flags = (opw >>> 8) & 0xff;
    const slot = this._t.take();
    if (slot < 0) return DEFER;
    const t = this._t;
    const wqe = this._wqe;
    // Build the device WQE in a scratch copy: a deferred request must find its slot unchanged.
    for (let i = 0; i < SEND_WQE_USED_WORDS; i++) wqe[i] = req[w + i];
    t.kind[slot] = op === WrOpcode.RDMA_READ ? WrKind.READ : WrKind.SEND;
    if ((flags & SendFlags.INLINE) === 0) {
      const nsge = (opw >>> 16) & 0xff;
      const st = this._stage(slot, qp, wqe, SendWqeWord.SGE, nsge, MAX_SEND_SGE, op === WrOpcode.RDMA_READ);
      if (st !== 0) return this._undo(slot, st);
      wqe[SendWqeWord.OP_FLAGS_NSGE] = op | ((flags | SendFlags.SIGNALED) << 8) | (this._nsge << 16);
    } else {
      wqe[SendWqeWord.OP_FLAGS_NSGE] = opw | (SendFlags.SIGNALED << 8);
    }
    t.signaled[slot] = (flags & SendFlags.SIGNALED) !== 0 || qp.sqSigAll ? 1 : 0;
    return this._post(slot, qp, req, w, true);
  }

  /** Posts a checked receive WQE (at `req[w]`) through bounce; 0, a status, or DEFER. */
  postRecv(qp: QpRec, req: Int32Array, w: number): number {
    const slot = this._t.take();
    if (slot < 0) return DEFER;
    const wqe = this._wqe;
    for (let i = 0; i < SEND_WQE_USED_WORDS; i++) wqe[i] = i < 16 ? req[w + i] : 0;
    this._t.kind[slot] = WrKind.RECV;
    this._t.signaled[slot] = 1;
    const nsge = req[w + RecvWqeWord.NSGE] & 0xff;
    const st = this._stage(slot, qp, wqe, RecvWqeWord.SGE, nsge, MAX_RECV_SGE, true);
    if (st !== 0) return this._undo(slot, st);
    wqe[RecvWqeWord.NSGE] = this._nsge;
    return this._post(slot, qp, req, w, false);
  }

  /** Poller: drains every device CQ of the guest (bounded per CQ per round). */
  poll(): number {
    let work = 0;
    const d = this._s.driver;
    for (let c = 0; c < this._cqs.length; c++) {
      const cq = this._cqs[c];
      // INVARIANT: copy-mode CQs always have a device CQ in driver memory.
      const n = d.pollCq(cq.cqn, POLL_BATCH, this._wcs);
      for (let i = 0; i < n; i++) this._complete(cq, this._wcs[i]);
      work += n;
      // ORDERING: seq-cst load of the device's overflow flag, set before it dropped a CQE.
      if (cq.overflows === 0 && n < POLL_BATCH && Atomics.load(d.cqWords(cq.cqn), CqWord.OVERFLOW) !== 0) {
        this.stats.guestOverflows++;
        overflowGuestCq(this._s, cq);
      }
    }
    return work;
  }

  /** Poller: WRs in flight need the loop to keep polling. */
  outstanding(): boolean {
    return this._t.inflight > 0;
  }

  /** Frees the tracking of a QP's WRs (its queues were reset or destroyed: no CQEs will come). */
  forgetQp(qp: QpRec): void {
    for (const slot of this._t.slotsOf(qp)) this._finish(slot);
  }

  /** Returns the bounce region (teardown, after every QP and PD is gone). */
  release(): void {
    this._s.driver.freeBuffer(this._buf);
  }

  /**
   * Resolves the guest's SGEs (from the WQE copy at word `base`), allocates one bounce run for
   * them, copies data in unless the device is to fill it (`fill`), and rewrites the SGE area to
   * name the run. An SGE the guest may not use becomes the poison SGE (`_poison`). Returns 0,
   * DEFER or BAD_LENGTH; `_nsge` is then the device WQE's num_sge.
   */
  private _stage(
    slot: number,
    qp: QpRec,
    wqe: Int32Array,
    base: number,
    nsge: number,
    maxSge: number,
    fill: boolean,
  ): number {
    const t = this._t;
    let total = 0;
    for (let i = 0; i < nsge; i++) {
      const b = base + i * SGE_WORDS;
      // INVARIANT: WqeCheck verified each used address is a safe integer.
      const addr = join64(wqe[b], wqe[b + 1]);
      const len = wqe[b + 2] >>> 0;
      const mr = this._s.mrByLkey.get(wqe[b + 3] >>> 0);
      // Overflow-safe containment: no sum of two guest numbers is formed.
      if (
        mr === undefined ||
        mr.pd !== qp.pd ||
        addr < mr.addr ||
        len > mr.length ||
        addr - mr.addr > mr.length - len ||
        (fill && (mr.access & Access.LOCAL_WRITE) === 0)
      ) {
        return this._poison(slot, wqe, base, maxSge);
      }
      const k = t.sge(slot, i);
      t.sgeAddr[k] = addr;
      t.sgeLen[k] = len;
      t.sgeMr[k] = mr;
      total += len;
    }
    t.nsge[slot] = nsge;
    // The device WQE names one SGE (the bounce run): clear the others.
    for (let i = base + SGE_WORDS; i < base + maxSge * SGE_WORDS; i++) wqe[i] = 0;
    if (total === 0) {
      for (let i = 0; i < SGE_WORDS; i++) wqe[base + i] = 0;
      this._nsge = 0;
      return 0;
    }
    if (total > this.bounceBytes) return BAD_LENGTH;
    const off = this._alloc.alloc(total);
    if (off < 0) return DEFER;
    t.bounceOff[slot] = off;
    t.bounceLen[slot] = total;
    if (!fill && !this._copier.copy(slot, this.bounceAddr + off, total, true)) {
      // The guest's grants do not allow the copy (ended, or never ours): as a bad lkey.
      this._alloc.free(off);
      t.bounceOff[slot] = -1;
      return this._poison(slot, wqe, base, maxSge);
    }
    const bounce = qp.pd.bounceMr;
    // INVARIANT: every PD of a copy-mode guest has its bounce MR (ResourceCommands.allocPd).
    const addr = this.bounceAddr + off;
    wqe[base] = lo32(addr) | 0;
    wqe[base + 1] = hi32(addr) | 0;
    wqe[base + 2] = total | 0;
    wqe[base + 3] = (bounce ? bounce.lkey : 0) | 0;
    this._nsge = 1;
    return 0;
  }

  /**
   * Replaces the SGEs with one the NIC refuses (lkey 0 names no MR: MR slot 0 is never used), so
   * the WR still goes to the device and completes there with LOC_PROT_ERR — in order with the
   * QP's other WRs, and moving the QP to ERR — exactly as a bad lkey does in zero-copy mode.
   */
  private _poison(slot: number, wqe: Int32Array, base: number, maxSge: number): number {
    this._t.nsge[slot] = 0;
    for (let i = base; i < base + maxSge * SGE_WORDS; i++) wqe[i] = 0;
    wqe[base + 2] = 1;
    this._nsge = 1;
    this.stats.poisoned++;
    return 0;
  }

  /** Gives the device WQE its tracking id and posts it; undoes everything if the device refuses. */
  private _post(slot: number, qp: QpRec, req: Int32Array, w: number, send: boolean): number {
    const t = this._t;
    const wqe = this._wqe;
    t.guestWrId[slot] = join64(req[w], req[w + 1] & 0x1fffff);
    t.qp[slot] = qp;
    const id = t.id(slot);
    wqe[0] = lo32(id) | 0;
    wqe[1] = hi32(id) | 0;
    const st = postToDevice(this._s.nic, qp.qpn, wqe, 0, send);
    return st === 0 ? 0 : this._undo(slot, st);
  }

  private _undo(slot: number, status: number): number {
    this._finish(slot);
    return status;
  }

  /** Frees a slot's bounce run and the slot. */
  private _finish(slot: number): void {
    const off = this._t.bounceOff[slot];
    if (off >= 0) this._alloc.free(off);
    this._t.release(slot);
  }

  /** One device CQE: copy out, restore wr_id, filter, produce the guest's CQE, free. */
  private _complete(cq: CqRec, wc: Wc): void {
    const t = this._t;
    const slot = t.lookup(wc.wrId);
    if (slot < 0) {
      this.stats.strayCqes++;
      return;
    }
    const kind = t.kind[slot];
    if (wc.status === WcStatus.SUCCESS && t.bounceOff[slot] >= 0) {
      // RDMA_WRITE_WITH_IMM consumes a receive but puts no data in it (IB spec 9.4.1).
      const len = kind === WrKind.READ ? t.bounceLen[slot] : wc.opcode === WcOpcode.RECV ? wc.byteLen : 0;
      if ((kind === WrKind.READ || kind === WrKind.RECV) && len > 0) {
        const from = this.bounceAddr + t.bounceOff[slot];
        if (!this._copier.copy(slot, from, Math.min(len, t.bounceLen[slot]), false)) wc.status = WcStatus.LOC_PROT_ERR;
      }
    }
    const suppress = wc.status === WcStatus.SUCCESS && kind !== WrKind.RECV && t.signaled[slot] === 0;
    if (!suppress) {
      wc.wrId = t.guestWrId[slot];
      if (!produceGuestCqe(this._s, cq, wc)) this.stats.guestOverflows++;
    }
    this._finish(slot);
  }
}
