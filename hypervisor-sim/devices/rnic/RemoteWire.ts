/**
 * The requester half of a work request whose peer NIC belongs to ANOTHER host process (issue 6):
 * the request leaves as a wire packet (a `WireReqMsg` plus the WRITE/SEND payload as bulk,
 * protocol/link/LinkSchema.ts) through this thread's mailbox (hypervisor-sim/link/Mailbox.ts) to
 * the process's main thread, which owns the host links; the peer host's main thread runs the
 * responder half on its NIC (WireResponder.ts) and answers with a `WireRspMsg` (+ READ data).
 * Semantics are those of the local path (SendPath.ts, Responder.ts):
 *  - the payload is gathered under the fabric lock (inline bytes, or the SGEs DMA-copied straight
 *    into the mailbox data area — no other copy); a source fault is LOC_PROT_ERR;
 *  - the lock is released for the round trip (as for the modeled wire delay); once re-taken, a
 *    QP that changed meanwhile abandons the WR (the flush completes it);
 *  - RDMA READ: the SGEs are translated again (MRs may have gone) and the returned data
 *    scattered into them; a destination fault is LOC_PROT_ERR;
 *  - RNR: the responder answers `rnr` with its min_rnr_timer in µs instead of waiting; the
 *    requester sleeps that long (lock released) and retries up to the QP's rnr_retry times, then
 *    RNR_RETRY_EXC_ERR;
 *  - a call that fails (PV_ERR_PCIE_LINK_DOWN: the link or the peer host is gone,
 *    PV_ERR_TIMEOUT, any other error) is RETRY_EXC_ERR: the packets were lost until the retry
 *    count ran out. Never a hang (every call is bounded), never an error thrown out of the engine;
 *  - a message larger than the mailbox data area (or MAX_MESSAGE_BULK) is LOC_LEN_ERR.
 *
 * The mailbox call's argument layout and its main-thread side (`serveWireMailbox`) are in
 * WireMailbox.ts.
 */

import { pvError } from '../../../protocol/errors.js';
import { MAX_MESSAGE_BULK } from '../../../protocol/link/LinkFrame.js';
import { emptyWireReq, type WireReqMsg } from '../../../protocol/link/LinkSchema.js';
import { SendFlags, WcStatus, WrOpcode } from '../../../protocol/rdma/Verbs.js';
import type { SendWqe } from '../../../protocol/rdma/Wqe.js';
import { Stage, stages } from '../../../protocol/stage/StageLedger.js';
import type { DmaRef, DmaResolver } from '../../iommu/DmaResolver.js';
import { emptyDmaRef } from '../../iommu/DmaResolver.js';
import type { MailboxClient } from '../../link/Mailbox.js';
import { CopyResult, copySegments, type Segments } from './DataMover.js';
import { MetricSlot, QpCtx } from './DevLayout.js';
import { ABANDONED, stillSending } from './Responder.js';
import type { RnicCtx } from './RnicContext.js';
import { delayNs, type RemotePeer } from './RnicFabric.js';
import { prepareLocal } from './SendPath.js';
import { encodeWireArgs, WIRE_CALL, WireArg } from './WireMailbox.js';

/**
 * Default bound of one round trip; the peer's responder waits at most the RNR timer (≤ 655 ms), so
 * only a lost link or a stalled peer host hits it.
 */
export const DEFAULT_WIRE_TIMEOUT_MS = 10_000;
/** Longest RNR back-off honoured: the IB maximum RNR timer (655.36 ms). A larger answer is clamped. */
const MAX_RNR_TIMER_US = 655_360;
/** Byte offset of the inline payload in a send WQE (the SGE area, word 8). */
const INLINE_OFFSET = 32;
/** Highest WcStatus value (TM_RNDV_INCOMPLETE); anything else from the peer is BAD_RESP_ERR. */
const MAX_WC_STATUS = 23;

/**
 * A DMA resolver over one plain byte buffer (IOVA = offset in it): the mailbox data area, a wire
 * payload, READ data. A writable buffer must start 4-byte aligned (DataMover notifies the word of
 * the last byte written, so the words must cover it); a read-only one may sit anywhere (a
 * socket's Buffer).
 */
export class BufferDma implements DmaResolver {
  private _bytes: Uint8Array = new Uint8Array(0);
  private _words: Int32Array = new Int32Array(0);
  /** Bytes a write may reach. */
  private _writable = 0;

  constructor(bytes: Uint8Array, writable: boolean) {
    this.set(bytes, writable);
  }

  /** Points the resolver at another buffer (PV_ERR_CONFIG: a writable one that is unaligned). */
  set(bytes: Uint8Array, writable: boolean): void {
    this._bytes = bytes;
    this._writable = 0;
    this._words = EMPTY_WORDS;
    if (!writable || bytes.length === 0) return;
    if (bytes.byteOffset % 4 !== 0) throw pvError('PV_ERR_CONFIG', 'a writable DMA buffer must be 4-byte aligned');
    const words = Math.min((bytes.buffer.byteLength - bytes.byteOffset) >> 2, (bytes.length + 3) >> 2);
    this._words = new Int32Array(bytes.buffer, bytes.byteOffset, words);
    this._writable = Math.min(words * 4, bytes.length);
  }

  resolve(iova: number, len: number, write: boolean, out: DmaRef): boolean {
    const limit = write ? this._writable : this._bytes.length;
    if (!(iova >= 0 && len >= 0 && iova <= limit - len)) return false;
    out.bytes = this._bytes;
    out.words = this._words;
    out.offset = iova;
    out.domid = -1;
    return true;
  }

  generation(): number {
    return 0;
  }
}

const EMPTY_WORDS = new Int32Array(0);

/** One segment `[0, len)` of `dma`. */
export function bufferSegments(dma: BufferDma, len: number): Segments {
  return { dma, iova: [0], len: [len], count: len > 0 ? 1 : 0, ref: emptyDmaRef() };
}

/** Sets `seg` to the one segment `[0, len)` of its buffer. */
export function setLength(seg: Segments, len: number): Segments {
  seg.len[0] = len;
  seg.count = len > 0 ? 1 : 0;
  return seg;
}

/** The requester side over one domain thread's mailbox (see the file comment). */
export class RemoteWire implements RemotePeer {
  private readonly _mb: MailboxClient;
  private readonly _timeoutMs: number;
  /** The usable data area: whole words, so a READ scatter's source and a gather's target fit. */
  private readonly _room: number;
  /** The data area as one segment (its length set per message). */
  private readonly _seg: Segments;
  /** Response bytes of the last call (READ data). */
  private _inLen = 0;
  private readonly _req: WireReqMsg = emptyWireReq();

  constructor(mailbox: MailboxClient, timeoutMs = DEFAULT_WIRE_TIMEOUT_MS) {
    if (!(timeoutMs > 0)) throw pvError('PV_ERR_CONFIG', `wire timeout must be > 0 ms, got ${timeoutMs}`);
    this._mb = mailbox;
    this._timeoutMs = timeoutMs;
    this._room = Math.min(mailbox.data.length & ~3, MAX_MESSAGE_BULK);
    this._seg = bufferSegments(new BufferDma(mailbox.data.subarray(0, this._room), true), 0);
  }

  transfer(ctx: RnicCtx, qpn: number, q: number, epoch: number, wqe: SendWqe): number {
    const d = ctx.dev;
    const op = wqe.opcode;
    const len = ctx.total;
    if (len > this._room) return WcStatus.LOC_LEN_ERR;
    // An earlier request timed out and the main thread still answers it: its payload is still
    // in the data area — the peer is unreachable as far as this WR is concerned.
    if (!this._mb.idle()) return WcStatus.RETRY_EXC_ERR;
    const read = op === WrOpcode.RDMA_READ;
    if (!read && len > 0) {
      const st = this._gather(ctx, wqe, len);
      if (st !== WcStatus.SUCCESS) return st;
    }
    const r = this._req;
    r.op = op;
    r.srcPort = ctx.sizes.portId;
    r.srcQpn = qpn;
    r.dstPort = d[q + QpCtx.DEST_PORT] >>> 0;
    r.dstQpn = d[q + QpCtx.DEST_QPN] >>> 0;
    r.rkey = wqe.rkey;
    r.remoteAddr = wqe.remoteAddr;
    r.imm = wqe.immData;
    r.length = len;
    r.sendFlags = wqe.sendFlags & ~SendFlags.INLINE;
    // The round trip (and any RNR back-off) happens without the lock, as the wire delay does;
    // BUSY keeps this QP ours meanwhile.
    ctx.fabric.unlock();
    const prev = stages.enter(Stage.FABRIC);
    let status: number;
    try {
      status = this._roundTrip(ctx, q, epoch, read ? 0 : len);
    } finally {
      stages.enter(prev);
      ctx.fabric.lock();
    }
    if (status === ABANDONED || !stillSending(ctx, q, epoch)) return ABANDONED;
    if (status !== WcStatus.SUCCESS) return status;
    if (read) return this._scatter(ctx, q, wqe, len, this._inLen);
    ctx.count(MetricSlot.BYTES, len);
    return WcStatus.SUCCESS;
  }

  /**
   * Sends the request in `_req` (payload: the first `outLen` bytes of the data area) until it is
   * answered without RNR or the QP's rnr_retry runs out; lock NOT held. Returns the WcStatus
   * (answer data length in `_inLen`), or ABANDONED when the QP went away during a back-off.
   */
  private _roundTrip(ctx: RnicCtx, q: number, epoch: number, outLen: number): number {
    const a = this._mb.args;
    const retries = ctx.dev[q + QpCtx.RNR_RETRY];
    for (let attempt = 0; ; attempt++) {
      // INVARIANT: an rnr answer writes no data (serveWireMailbox), so a retry resends the
      // payload still in the data area.
      encodeWireArgs(a, this._req);
      try {
        this._inLen = this._mb.call(WIRE_CALL, outLen, this._timeoutMs);
      } catch {
        // The link or the peer host is gone (PV_ERR_PCIE_LINK_DOWN), or did not answer in time:
        // its packets were lost until the retry count ran out.
        return WcStatus.RETRY_EXC_ERR;
      }
      if (a[WireArg.RNR] === 0) {
        const status = a[WireArg.STATUS] >>> 0;
        return status > MAX_WC_STATUS ? WcStatus.BAD_RESP_ERR : status;
      }
      if (attempt >= retries) return WcStatus.RNR_RETRY_EXC_ERR;
      const us = Math.min(a[WireArg.RNR_TIMER_US] >>> 0, MAX_RNR_TIMER_US);
      // Stage ledger: an RNR back-off waits for the responder's driver: IDLE.
      const prev = stages.enter(Stage.IDLE);
      delayNs(us * 1000);
      stages.enter(prev);
      // The QP may have been destroyed during the back-off: stop retrying for it.
      ctx.fabric.lock();
      const alive = stillSending(ctx, q, epoch);
      if (alive) ctx.count(MetricSlot.RNR_RETRIES);
      ctx.fabric.unlock();
      if (!alive) return ABANDONED;
    }
  }

  /** Copies the payload (inline bytes or the SGEs in `ctx.loc`) to the start of the data area. */
  private _gather(ctx: RnicCtx, wqe: SendWqe, len: number): number {
    if ((wqe.sendFlags & SendFlags.INLINE) !== 0) {
      // INVARIANT: with INLINE, len ≤ MAX_INLINE_DATA (prepareLocal): inside the WQE's SGE area.
      this._mb.data.set(ctx.wqeBytes.subarray(INLINE_OFFSET, INLINE_OFFSET + len));
      return WcStatus.SUCCESS;
    }
    if (copySegments(ctx.loc, setLength(this._seg, len)) !== CopyResult.OK) {
      // Only the source can fault: the data area is at least `len` bytes.
      ctx.count(MetricSlot.FAULTS);
      return WcStatus.LOC_PROT_ERR;
    }
    return WcStatus.SUCCESS;
  }

  /** RDMA READ: the returned data into the local SGEs, translated again (lock held). */
  private _scatter(ctx: RnicCtx, q: number, wqe: SendWqe, len: number, inLen: number): number {
    if (inLen !== len) return WcStatus.BAD_RESP_ERR;
    const st = prepareLocal(ctx, q, wqe);
    if (st !== WcStatus.SUCCESS) return st;
    if (len === 0) return WcStatus.SUCCESS;
    if (copySegments(setLength(this._seg, len), ctx.loc) !== CopyResult.OK) {
      ctx.count(MetricSlot.FAULTS);
      return WcStatus.LOC_PROT_ERR;
    }
    ctx.count(MetricSlot.BYTES, len);
    return WcStatus.SUCCESS;
  }
}
