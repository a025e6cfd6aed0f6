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
 * Mailbox call `WIRE_CALL`: request data = the payload (WRITE/SEND), response data = the READ
 * data. Arguments (i32; u32 fields stored `| 0`, read `>>> 0`):
 * ```
 * arg  field         dir  note
 * 0    op            in   WrOpcode
 * 1    src_port      in   the requester NIC's port id
 * 2    src_qpn       in
 * 3    dst_port      in   QP's DEST_PORT
 * 4    dst_qpn       in   QP's DEST_QPN
 * 5    rkey          in
 * 6    addr_lo       in   remote_addr bits 0-31
 * 7    addr_hi       in   remote_addr bits 32-52; -1 (with addr_lo -1): not a safe integer
 * 8    imm           in
 * 9    length        in   message bytes (= OUT_LEN for WRITE/SEND)
 * 10   send_flags    in   INLINE cleared: the payload is in the data area either way
 * 11   status        out  WcStatus for the requester
 * 12   rnr           out  1: RNR NAK (no data; the request data area is left as it was)
 * 13   rnr_timer_us  out  the responder's RNR timer
 * ```
 * The main-thread side of the same mailbox is `serveWireMailbox` below.
 */

import { pvError } from '../../../protocol/errors.js';
import { MAX_MESSAGE_BULK } from '../../../protocol/link/LinkFrame.js';
import type { WireReqMsg, WireRspMsg } from '../../../protocol/link/LinkSchema.js';
import { SendFlags, WcStatus, WrOpcode } from '../../../protocol/rdma/Verbs.js';
import type { SendWqe } from '../../../protocol/rdma/Wqe.js';
import { Stage, stages } from '../../../protocol/stage/StageLedger.js';
import type { DmaRef, DmaResolver } from '../../iommu/DmaResolver.js';
import { emptyDmaRef } from '../../iommu/DmaResolver.js';
import { type MailboxClient, MailboxServer } from '../../link/Mailbox.js';
import { CopyResult, copySegments, type Segments } from './DataMover.js';
import { MetricSlot, QpCtx } from './DevLayout.js';
import { ABANDONED, stillSending } from './Responder.js';
import type { RnicCtx } from './RnicContext.js';
import { delayNs, type RemotePeer } from './RnicFabric.js';
import { prepareLocal } from './SendPath.js';

/** Mailbox operation number of a wire request. */
export const WIRE_CALL = 1;

/** Argument indices of a wire call (the table above). */
export const enum WireArg {
  OP = 0,
  SRC_PORT = 1,
  SRC_QPN = 2,
  DST_PORT = 3,
  DST_QPN = 4,
  RKEY = 5,
  ADDR_LO = 6,
  ADDR_HI = 7,
  IMM = 8,
  LENGTH = 9,
  SEND_FLAGS = 10,
  STATUS = 11,
  RNR = 12,
  RNR_TIMER_US = 13,
}

/** Default bound of one round trip; the peer's responder never waits, so only a lost link hits it. */
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

/** Encodes a wire request into mailbox arguments (the table above). */
export function encodeWireArgs(a: Int32Array, r: WireReqMsg): void {
  a[WireArg.OP] = r.op;
  a[WireArg.SRC_PORT] = r.srcPort | 0;
  a[WireArg.SRC_QPN] = r.srcQpn | 0;
  a[WireArg.DST_PORT] = r.dstPort | 0;
  a[WireArg.DST_QPN] = r.dstQpn | 0;
  a[WireArg.RKEY] = r.rkey | 0;
  const addr = r.remoteAddr;
  const safe = Number.isSafeInteger(addr) && addr >= 0;
  a[WireArg.ADDR_LO] = safe ? (addr % 0x1_0000_0000) | 0 : -1;
  a[WireArg.ADDR_HI] = safe ? Math.floor(addr / 0x1_0000_0000) : -1;
  a[WireArg.IMM] = r.imm | 0;
  a[WireArg.LENGTH] = r.length | 0;
  a[WireArg.SEND_FLAGS] = r.sendFlags | 0;
}

/** Decodes mailbox arguments into a wire request (remote_addr -1 when not a safe integer). */
export function decodeWireArgs(a: Int32Array): WireReqMsg {
  const hi = a[WireArg.ADDR_HI] >>> 0;
  return {
    op: a[WireArg.OP] >>> 0,
    srcPort: a[WireArg.SRC_PORT] >>> 0,
    srcQpn: a[WireArg.SRC_QPN] >>> 0,
    dstPort: a[WireArg.DST_PORT] >>> 0,
    dstQpn: a[WireArg.DST_QPN] >>> 0,
    rkey: a[WireArg.RKEY] >>> 0,
    remoteAddr: hi >= 0x20_0000 ? -1 : hi * 0x1_0000_0000 + (a[WireArg.ADDR_LO] >>> 0),
    imm: a[WireArg.IMM] >>> 0,
    length: a[WireArg.LENGTH] >>> 0,
    sendFlags: a[WireArg.SEND_FLAGS] >>> 0,
  };
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
  private readonly _req: WireReqMsg = {
    op: 0,
    srcPort: 0,
    srcQpn: 0,
    dstPort: 0,
    dstQpn: 0,
    rkey: 0,
    remoteAddr: 0,
    imm: 0,
    length: 0,
    sendFlags: 0,
  };

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

/** What the host process does with one wire request: send it over the link, await the answer. */
export type WireSend = (
  req: WireReqMsg,
  payload: Uint8Array | undefined,
) => Promise<{ rsp: WireRspMsg; data?: Uint8Array }>;

/**
 * The main-thread side of a domain thread's wire mailbox: decodes each call into a WireReqMsg and
 * a view of its payload (valid until `send` resolves: the caller is blocked until the answer),
 * awaits `send`, and writes the answer back. Started; `stop()` it when the domain is gone.
 * A rejection of `send` is answered as that error (the requester completes RETRY_EXC_ERR).
 */
export function serveWireMailbox(sab: SharedArrayBuffer, send: WireSend): MailboxServer {
  const server = new MailboxServer(sab, async (call) => {
    if (call.op !== WIRE_CALL) throw pvError('PV_ERR_BAD_REQUEST', `unknown wire mailbox call ${call.op}`);
    const a = call.args;
    const req = decodeWireArgs(a);
    const carries = req.op !== WrOpcode.RDMA_READ;
    if (carries ? call.outLen !== req.length : call.outLen !== 0) {
      throw pvError('PV_ERR_BAD_LENGTH', `wire op ${req.op}: ${call.outLen} payload bytes for length ${req.length}`);
    }
    const payload = carries && req.length > 0 ? call.data.subarray(0, req.length) : undefined;
    const { rsp, data } = await send(req, payload);
    const rnr = rsp.rnr === true;
    a[WireArg.STATUS] = rsp.status | 0;
    a[WireArg.RNR] = rnr ? 1 : 0;
    a[WireArg.RNR_TIMER_US] = rsp.rnrTimerUs | 0;
    if (rnr || data === undefined) return 0;
    if (data.length > call.data.length) {
      throw pvError('PV_ERR_BAD_LENGTH', `wire answer of ${data.length} bytes exceeds the mailbox`);
    }
    call.data.set(data);
    return data.length;
  });
  server.start();
  return server;
}
