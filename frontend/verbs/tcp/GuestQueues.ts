/**
 * The guest half of the tcp provider's queues: CQ rings, send and receive queues allocated in
 * guest memory, WQEs written in the Wqe.ts format, producer indices published as doorbells
 * (Layout.ts QP words) by `flush()`. Checks here are the ones libibverbs makes at post time (a
 * WR the QP cannot take throws); everything about memory keys is the NIC's to check, and ends as
 * a completion status.
 */

import { pvError } from '../../../protocol/errors.js';
import type { GuestMemory } from '../../../protocol/Hypercalls.js';
import { cqBytes } from '../../../protocol/rdma/Cq.js';
import { encodeModifyQpArgs, NicCmd } from '../../../protocol/rdma/NicRegs.js';
import {
  type QpAttr,
  QpAttrMask,
  type QpCap,
  QpState,
  type RecvWr,
  SendFlags,
  type SendWr,
  WrOpcode,
} from '../../../protocol/rdma/Verbs.js';
import {
  encodeRecvWqe,
  encodeSendWqe,
  hi32,
  lo32,
  MAX_INLINE_DATA,
  MAX_RECV_SGE,
  MAX_SEND_SGE,
  RECV_WQE_SIZE,
  RECV_WQE_WORDS,
  SEND_WQE_SIZE,
  SEND_WQE_WORDS,
} from '../../../protocol/rdma/Wqe.js';
import { Stage, stages } from '../../../protocol/stage/StageLedger.js';
import { type GuestPhysAddr, PAGE_SIZE } from '../../../protocol/Types.js';
import type { ProviderCq, ProviderQp, ProviderQpInit } from '../Provider.js';
import type { ControlClient } from './ControlClient.js';
import { QpWord, qpWord, TCP_LIMITS } from './Layout.js';

/** A QP as the guest side keeps it. */
interface GuestQp {
  readonly qpn: number;
  readonly sqAddr: GuestPhysAddr;
  readonly sqPages: number;
  readonly rqAddr: GuestPhysAddr;
  readonly rqPages: number;
  readonly sqEntries: number;
  readonly rqEntries: number;
  readonly sqWords: Int32Array;
  readonly rqWords: Int32Array;
  readonly cap: QpCap;
  sqProd: number;
  rqProd: number;
  dirty: boolean;
  /** The state last set through modifyQp (the NIC may since have moved it to ERR). */
  state: QpState;
}

/** A CQ's ring pages. */
interface GuestCq {
  readonly addr: GuestPhysAddr;
  readonly pages: number;
}

function pow2AtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** See the file comment. */
export class GuestQueues {
  private readonly _qps = new Map<number, GuestQp>();
  private readonly _cqs = new Map<number, GuestCq>();
  private readonly _dirty: GuestQp[] = [];
  /** Inline payload views of every length 0 … MAX_INLINE_DATA over one buffer (no per-post alloc). */
  private readonly _inline: Uint8Array[] = [];
  private readonly _bytes: Uint8Array;

  constructor(
    private readonly _memory: GuestMemory,
    private readonly _sab: SharedArrayBuffer,
    private readonly _client: ControlClient,
  ) {
    const buf = new Uint8Array(MAX_INLINE_DATA);
    for (let n = 0; n <= MAX_INLINE_DATA; n++) this._inline.push(buf.subarray(0, n));
    this._bytes = new Uint8Array(_sab);
  }

  /** Allocates a zeroed ring of ≥ `entries` CQEs and registers it. */
  createCq(entries: number): ProviderCq {
    if (!Number.isInteger(entries) || entries < 1 || entries > TCP_LIMITS.MAX_CQE) {
      throw pvError('PV_ERR_RDMA_RESOURCE', `CQ of ${entries} entries (max ${TCP_LIMITS.MAX_CQE})`);
    }
    const n = pow2AtLeast(entries);
    const pages = Math.ceil(cqBytes(n) / PAGE_SIZE);
    const addr = this._memory.allocPages(pages);
    try {
      const a = this._client.begin();
      a[0] = n;
      a[1] = lo32(addr) | 0;
      a[2] = hi32(addr) | 0;
      const cqn = this._client.call(NicCmd.CREATE_CQ)[0];
      this._cqs.set(cqn, { addr, pages });
      return { handle: cqn, entries: n, ring: addr };
    } catch (err) {
      this._memory.freePages(addr, pages);
      throw err;
    }
  }

  /** Destroys a CQ and frees its ring. */
  destroyCq(cqn: number): void {
    const cq = this._cqs.get(cqn);
    if (!cq) throw pvError('PV_ERR_RDMA_BAD_HANDLE', `unknown CQ ${cqn}`);
    this._client.begin()[0] = cqn;
    this._client.call(NicCmd.DESTROY_CQ);
    this._cqs.delete(cqn);
    this._memory.freePages(cq.addr, cq.pages);
  }

  /** Creates a QP with its queues in guest memory; grants the NIC's full SGE and inline caps. */
  createQp(init: ProviderQpInit): ProviderQp {
    const c = init.cap;
    if (
      c.maxSendWr > TCP_LIMITS.MAX_QP_WR ||
      c.maxRecvWr > TCP_LIMITS.MAX_QP_WR ||
      c.maxSendSge > MAX_SEND_SGE ||
      c.maxRecvSge > MAX_RECV_SGE ||
      c.maxInlineData > MAX_INLINE_DATA
    ) {
      throw pvError('PV_ERR_RDMA_RESOURCE', `QP caps ${JSON.stringify(c)} exceed the tcp NIC's`);
    }
    const sqEntries = pow2AtLeast(Math.max(1, c.maxSendWr));
    const rqEntries = pow2AtLeast(Math.max(1, c.maxRecvWr));
    const sqPages = Math.ceil((sqEntries * SEND_WQE_SIZE) / PAGE_SIZE);
    const rqPages = Math.ceil((rqEntries * RECV_WQE_SIZE) / PAGE_SIZE);
    const sqAddr = this._memory.allocPages(sqPages);
    let rqAddr: GuestPhysAddr | undefined;
    try {
      rqAddr = this._memory.allocPages(rqPages);
      const a = this._client.begin();
      a[0] = init.pd;
      a[1] = init.sendCq;
      a[2] = init.recvCq;
      a[3] = sqEntries;
      a[4] = rqEntries;
      a[5] = lo32(sqAddr) | 0;
      a[6] = hi32(sqAddr) | 0;
      a[7] = lo32(rqAddr) | 0;
      a[8] = hi32(rqAddr) | 0;
      a[9] = init.sqSigAll ? 1 : 0;
      a[10] = MAX_INLINE_DATA;
      a[11] = MAX_SEND_SGE;
      a[12] = MAX_RECV_SGE;
      const qpn = this._client.call(NicCmd.CREATE_QP)[0];
      const cap: QpCap = {
        maxSendWr: sqEntries,
        maxRecvWr: rqEntries,
        maxSendSge: MAX_SEND_SGE,
        maxRecvSge: MAX_RECV_SGE,
        maxInlineData: MAX_INLINE_DATA,
      };
      this._qps.set(qpn, {
        qpn,
        sqAddr,
        sqPages,
        rqAddr,
        rqPages,
        sqEntries,
        rqEntries,
        sqWords: new Int32Array(this._sab, sqAddr, sqEntries * SEND_WQE_WORDS),
        rqWords: new Int32Array(this._sab, rqAddr, rqEntries * RECV_WQE_WORDS),
        cap,
        sqProd: 0,
        rqProd: 0,
        dirty: false,
        state: QpState.RESET,
      });
      return { handle: qpn, qpNum: qpn, cap };
    } catch (err) {
      this._memory.freePages(sqAddr, sqPages);
      if (rqAddr !== undefined) this._memory.freePages(rqAddr, rqPages);
      throw err;
    }
  }

  /** MODIFY_QP with the ModifyQpIn words of NicRegs.ts; `ahAttr.dlid` is the peer's port. */
  modifyQp(qpn: number, attr: QpAttr, mask: number): void {
    const q = this._qp(qpn);
    const a = this._client.begin();
    encodeModifyQpArgs(a, qpn, attr, mask);
    this._client.call(NicCmd.MODIFY_QP);
    if ((mask & QpAttrMask.STATE) !== 0 && attr.qpState !== undefined) {
      q.state = attr.qpState;
      if (attr.qpState === QpState.RESET) {
        // The NIC zeroed the doorbell words; start over with them.
        q.sqProd = 0;
        q.rqProd = 0;
      }
    }
  }

  /** Destroys a QP and frees its queues. */
  destroyQp(qpn: number): void {
    const q = this._qp(qpn);
    this._client.begin()[0] = qpn;
    this._client.call(NicCmd.DESTROY_QP);
    this._qps.delete(qpn);
    const i = this._dirty.indexOf(q);
    if (i >= 0) this._dirty.splice(i, 1);
    this._memory.freePages(q.sqAddr, q.sqPages);
    this._memory.freePages(q.rqAddr, q.rqPages);
  }

  /** Destroys every QP, then every CQ (provider close). */
  destroyAll(): void {
    for (const qpn of [...this._qps.keys()]) this.destroyQp(qpn);
    for (const cqn of [...this._cqs.keys()]) this.destroyCq(cqn);
  }

  /** Writes one send WQE (INLINE: the payload is copied now, as ibv_post_send does). */
  postSend(qpn: number, wr: SendWr): void {
    const q = this._qp(qpn);
    if (q.state !== QpState.RTS && q.state !== QpState.ERR) {
      throw pvError('PV_ERR_RDMA_BAD_STATE', `QP ${qpn}: post_send needs RTS`);
    }
    const op = wr.opcode;
    if (!Number.isInteger(op) || op < WrOpcode.RDMA_WRITE || op > WrOpcode.RDMA_READ) {
      throw pvError('PV_ERR_RDMA_BAD_WR', `unknown send opcode ${op}`);
    }
    checkWrId(wr.wrId);
    const sges = wr.sgList;
    if (sges.length > q.cap.maxSendSge)
      throw pvError('PV_ERR_RDMA_BAD_WR', `${sges.length} SGEs > ${q.cap.maxSendSge}`);
    checkSgeLengths(sges);
    let inline: Uint8Array | undefined;
    if (((wr.sendFlags ?? 0) & SendFlags.INLINE) !== 0) {
      if (op === WrOpcode.RDMA_READ) throw pvError('PV_ERR_RDMA_BAD_WR', 'RDMA READ cannot be INLINE');
      inline = this._gatherInline(sges, q.cap.maxInlineData);
    }
    // ORDERING: seq-cst load of SQ_CONS, published by the NIC after the completions it releases.
    const cons = Atomics.load(this._client.ctrl, qpWord(qpn, QpWord.SQ_CONS)) >>> 0;
    if ((q.sqProd - cons) >>> 0 >= q.sqEntries) throw pvError('PV_ERR_RDMA_QUEUE_FULL', `QP ${qpn} send queue full`);
    encodeSendWqe(q.sqWords, (q.sqProd & (q.sqEntries - 1)) * SEND_WQE_WORDS, wr, inline);
    q.sqProd = (q.sqProd + 1) >>> 0;
    this._markDirty(q);
  }

  /** Writes one receive WQE. */
  postRecv(qpn: number, wr: RecvWr): void {
    const q = this._qp(qpn);
    if (q.state === QpState.RESET) throw pvError('PV_ERR_RDMA_BAD_STATE', `QP ${qpn}: post_recv in RESET`);
    checkWrId(wr.wrId);
    if (wr.sgList.length > q.cap.maxRecvSge) {
      throw pvError('PV_ERR_RDMA_BAD_WR', `${wr.sgList.length} SGEs > ${q.cap.maxRecvSge}`);
    }
    checkSgeLengths(wr.sgList);
    // ORDERING: seq-cst load of RQ_CONS, published by the NIC after the completion it releases.
    const cons = Atomics.load(this._client.ctrl, qpWord(qpn, QpWord.RQ_CONS)) >>> 0;
    if ((q.rqProd - cons) >>> 0 >= q.rqEntries) throw pvError('PV_ERR_RDMA_QUEUE_FULL', `QP ${qpn} receive queue full`);
    encodeRecvWqe(q.rqWords, (q.rqProd & (q.rqEntries - 1)) * RECV_WQE_WORDS, wr);
    q.rqProd = (q.rqProd + 1) >>> 0;
    this._markDirty(q);
  }

  /** Publishes the producer index of every QP posted to, then rings the bell once. */
  flush(): void {
    const d = this._dirty;
    if (d.length === 0) return;
    // Stage ledger: handing the posted WQEs to the NIC thread — publishing the producer indices
    // and the bell (a notify when it sleeps) — is this transport's ring + notify. Nothing here
    // throws.
    const prev = stages.enter(Stage.RING);
    const ctrl = this._client.ctrl;
    for (let i = 0; i < d.length; i++) {
      const q = d[i];
      // ORDERING: the WQEs were written with plain stores; these seq-cst stores publish them.
      Atomics.store(ctrl, qpWord(q.qpn, QpWord.SQ_PROD), q.sqProd | 0);
      // ORDERING: as above, for the receive queue.
      Atomics.store(ctrl, qpWord(q.qpn, QpWord.RQ_PROD), q.rqProd | 0);
      q.dirty = false;
    }
    d.length = 0;
    this._client.ring();
    stages.enter(prev);
  }

  private _markDirty(q: GuestQp): void {
    if (q.dirty) return;
    q.dirty = true;
    this._dirty.push(q);
  }

  private _qp(qpn: number): GuestQp {
    const q = this._qps.get(qpn);
    if (!q) throw pvError('PV_ERR_RDMA_BAD_HANDLE', `unknown QP ${qpn}`);
    return q;
  }

  /** Copies the SGEs' bytes into an inline view of exactly their total length. */
  private _gatherInline(sges: readonly { addr: number; length: number }[], max: number): Uint8Array {
    let total = 0;
    for (const s of sges) total += s.length;
    if (total > max) throw pvError('PV_ERR_RDMA_BAD_WR', `inline payload of ${total} bytes > ${max}`);
    const out = this._inline[total];
    let at = 0;
    for (const s of sges) {
      this._memory.checkRange(s.addr as GuestPhysAddr, s.length);
      // INVARIANT: checkRange proved [addr, addr + length) is inside memory; ≤ 80 bytes in all.
      for (let i = 0; i < s.length; i++) out[at++] = this._bytes[s.addr + i];
    }
    return out;
  }
}

function checkWrId(wrId: number): void {
  if (!Number.isSafeInteger(wrId) || wrId < 0) throw pvError('PV_ERR_RDMA_BAD_WR', `wr_id ${wrId} is not a u53`);
}

function checkSgeLengths(sges: readonly { length: number }[]): void {
  for (const s of sges) {
    if (!Number.isInteger(s.length) || s.length < 0 || s.length > 0xffff_ffff) {
      throw pvError('PV_ERR_RDMA_BAD_WR', `SGE length ${s.length} is not a u32`);
    }
  }
}
