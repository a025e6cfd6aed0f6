/**
 * The guest's data path: encodes postSend/postRecv work requests into data-ring slots (4 header
 * words + the WQE words of protocol/rdma/Wqe.ts; DataSlot.ts) without waiting for the backend,
 * and turns the backend's refusals (a response with a non-zero status) into error work
 * completions queued on the right CQ — the send CQ of the QP for POST_SEND, its receive CQ for
 * POST_RECV — which `pollCq` takes through `VerbsProvider.takeCompletions`.
 *
 * WRs reach here already checked by the verbs layer against the QP's granted capabilities; the
 * backend checks everything again on its own copy. An INLINE send's payload is gathered from the
 * caller's memory into the WQE here (the buffer is reusable on return, as ibv_post_send
 * promises). Each WR committed to the ring is recorded in its QP's WrTracker (outstanding until
 * its completion is handed out); a refused one leaves it with its refusal. Allocation-free except
 * on the error path.
 */

import { pvError } from '../../../protocol/errors.js';
import type { GuestMemory } from '../../../protocol/Hypercalls.js';
import {
  decodeDataResponse,
  emptyDataResponse,
  encodeDataHeader,
  PV_DATA_HDR_WORDS,
  PvDataOp,
  rejectWcStatus,
} from '../../../protocol/rdma/pv/DataSlot.js';
import { PV_DATA_SLOT_WORDS } from '../../../protocol/rdma/pv/PvConstants.js';
import { type RecvWr, SendFlags, type SendWr, type Wc, WcOpcode } from '../../../protocol/rdma/Verbs.js';
import {
  encodeRecvWqe,
  encodeSendWqe,
  MAX_SEND_SGE,
  RECV_WQE_WORDS,
  SEND_WQE_USED_WORDS,
  SEND_WQE_WORDS,
  SendWqeWord,
  SGE_WORDS,
} from '../../../protocol/rdma/Wqe.js';
import { Stage, stages } from '../../../protocol/stage/StageLedger.js';
import type { GuestPhysAddr } from '../../../protocol/Types.js';
import type { RdmaChannel } from './RdmaChannel.js';
import { type QpWrs, sendWcOpcode } from './WrTracker.js';

/** What the frontend keeps of a QP to route refusals (and, with `wrs`, to flush it: WrTracker.ts). */
export interface FrontQp {
  readonly handle: number;
  readonly qpNum: number;
  readonly sendCq: number;
  readonly recvCq: number;
  /** Every send WR completes with a CQE (otherwise only SIGNALED ones). */
  readonly sqSigAll?: boolean;
  /** The WRs outstanding on each queue, in posting order. */
  readonly wrs?: QpWrs;
}

/** The data path of one device; see the file comment. */
export class DataPoster {
  /** Refused WRs turned into error completions; responses naming no QP of ours (ignored). */
  readonly stats = { rejects: 0, strayResponses: 0 };
  /** Error completions per CQ handle, oldest first. */
  readonly errorWcs = new Map<number, Wc[]>();
  private readonly _wqe = new Int32Array(SEND_WQE_WORDS);
  private readonly _rsp = emptyDataResponse();
  private readonly _bytes: Uint8Array;

  constructor(
    private readonly _ch: RdmaChannel,
    private readonly _mem: GuestMemory,
    private readonly _qps: ReadonlyMap<number, FrontQp>,
  ) {
    this._bytes = _mem.view(0 as GuestPhysAddr, _mem.size);
    _ch.onDataResponse((words, w) => this._response(words, w));
  }

  /** Queues one send WR for QP `qp` (published by the channel's `push`). */
  postSend(qp: number, wr: SendWr): void {
    const wqe = this._wqe;
    encodeSendWqe(wqe, 0, wr);
    if (((wr.sendFlags ?? 0) & SendFlags.INLINE) !== 0) this._gatherInline(wr);
    // Stage ledger: from here the WR is ring work (slot, header, copy, commit); dataSlot may
    // wait for room (IDLE inside) or time out, hence the finally.
    const prev = stages.enter(Stage.RING);
    try {
      const w = this._ch.dataSlot();
      const words = this._ch.data.words;
      encodeDataHeader(words, w, PvDataOp.POST_SEND, qp);
      const d = w + PV_DATA_HDR_WORDS;
      for (let i = 0; i < SEND_WQE_USED_WORDS; i++) words[d + i] = wqe[i];
      this._ch.data.commitRequest();
    } finally {
      stages.enter(prev);
    }
    // Recorded once committed: a WR that threw above never reached the ring.
    const q = this._qps.get(qp);
    if (q?.wrs !== undefined) {
      const signaled = q.sqSigAll === true || ((wr.sendFlags ?? 0) & SendFlags.SIGNALED) !== 0;
      q.wrs.send.push(wr.wrId, sendWcOpcode(wr.opcode), signaled);
    }
  }

  /** Queues one receive WR for QP `qp`. */
  postRecv(qp: number, wr: RecvWr): void {
    const wqe = this._wqe;
    encodeRecvWqe(wqe, 0, wr);
    const prev = stages.enter(Stage.RING);
    try {
      const w = this._ch.dataSlot();
      const words = this._ch.data.words;
      encodeDataHeader(words, w, PvDataOp.POST_RECV, qp);
      const d = w + PV_DATA_HDR_WORDS;
      for (let i = 0; i < RECV_WQE_WORDS; i++) words[d + i] = wqe[i];
      // The rest of the slot is zero (no stale bytes reach the backend).
      for (let i = d + RECV_WQE_WORDS; i < w + PV_DATA_SLOT_WORDS; i++) words[i] = 0;
      this._ch.data.commitRequest();
    } finally {
      stages.enter(prev);
    }
    this._qps.get(qp)?.wrs?.recv.push(wr.wrId, WcOpcode.RECV, true);
  }

  /** Moves up to `max` error completions of CQ `cq` into `out[start …]`; returns the count. */
  take(cq: number, out: Wc[], start: number, max: number): number {
    const q = this.errorWcs.get(cq);
    if (q === undefined || q.length === 0 || max <= 0) return 0;
    const n = Math.min(max, q.length);
    for (let i = 0; i < n; i++) Object.assign(out[start + i], q[i]);
    q.splice(0, n);
    return n;
  }

  /** Packs the payload of an INLINE send from the caller's memory into the WQE's SGE area. */
  private _gatherInline(wr: SendWr): void {
    const wqe = this._wqe;
    const base = SendWqeWord.SGE;
    for (let i = 0; i < MAX_SEND_SGE * SGE_WORDS; i++) wqe[base + i] = 0;
    const bytes = this._bytes;
    let k = 0;
    for (let s = 0; s < wr.sgList.length; s++) {
      const sge = wr.sgList[s];
      try {
        this._mem.checkRange(sge.addr as GuestPhysAddr, sge.length);
      } catch {
        throw pvError('PV_ERR_RDMA_BAD_MEMORY', `inline SGE [${sge.addr}, +${sge.length}) is outside this domain`);
      }
      for (let j = 0; j < sge.length; j++, k++) wqe[base + (k >> 2)] |= bytes[sge.addr + j] << ((k & 3) * 8);
    }
    // num_sge is 0 for an inline WQE (Wqe.ts); opcode and flags stay.
    wqe[SendWqeWord.OP_FLAGS_NSGE] &= 0xffff;
    wqe[SendWqeWord.INLINE_LEN] = k;
  }

  /** One data response: status 0 only frees the slot; a refusal becomes an error completion. */
  private _response(words: Int32Array, w: number): void {
    const r = decodeDataResponse(words, w, this._rsp);
    if (r.status === 0) return;
    const qp = this._qps.get(r.qp);
    if (qp === undefined || (r.op !== PvDataOp.POST_SEND && r.op !== PvDataOp.POST_RECV)) {
      this.stats.strayResponses++;
      return;
    }
    const send = r.op === PvDataOp.POST_SEND;
    const cq = send ? qp.sendCq : qp.recvCq;
    // The refusal is this WR's completion: it is no longer outstanding (never flushed too).
    if (qp.wrs !== undefined) (send ? qp.wrs.send : qp.wrs.recv).remove(r.wrId);
    let q = this.errorWcs.get(cq);
    if (q === undefined) {
      q = [];
      this.errorWcs.set(cq, q);
    }
    // ibv_poll_cq.3: on error only wr_id, status, qp_num and vendor_err are meaningful.
    q.push({
      wrId: r.wrId,
      status: rejectWcStatus(r.status),
      opcode: send ? WcOpcode.SEND : WcOpcode.RECV,
      vendorErr: -r.status,
      byteLen: 0,
      immData: 0,
      qpNum: qp.qpNum,
      srcQp: 0,
      wcFlags: 0,
    });
    this.stats.rejects++;
  }
}
