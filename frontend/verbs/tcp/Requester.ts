/**
 * The requester half of an RC QP: reads send WQEs out of guest memory once, checks them, streams
 * them as frames, and completes them in order when the responder ACKs (or, for RDMA READ, when
 * the last response frame has landed in the local buffers).
 *
 * Retransmission (IB go-back-N over a reliable stream): a NAK for the oldest outstanding message
 * that asks for a retry (RNR: no receive posted; NOT_READY: target QP not ready, or a sequence
 * error) rewinds `sqSend` to it, bumps the QP's `epoch`, and waits — `min_rnr_timer × 10 µs`
 * (NicRegs.ts RNR_TIMER_UNIT_US, the timer value the responder put in its NAK) or
 * `4.096 µs × 2^timeout` — before sending again. Frames carry their epoch; the responder drops
 * frames of an epoch it NAK'd (stragglers sent before the requester heard of the NAK), and the
 * requester ignores responses of an older epoch. After `rnr_retry` (or `retry_cnt`) retries the
 * WQE completes with RNR_RETRY_EXC_ERR (RETRY_EXC_ERR) and the QP goes to ERR.
 */

import { RNR_TIMER_UNIT_US } from '../../../protocol/rdma/NicRegs.js';
import { QpState, SendFlags, WcStatus, WrOpcode } from '../../../protocol/rdma/Verbs.js';
import { decodeSendWqe, inlineByte, MAX_INLINE_DATA, SEND_WQE_WORDS } from '../../../protocol/rdma/Wqe.js';
import { completeSendHead, flushSend, toError } from './Completer.js';
import { type Connection, ProtocolError } from './Connection.js';
import { MAX_MSG_SIZE, QpWord, qpWord, TcpStat } from './Layout.js';
import type { SoftNic } from './SoftNic.js';
import type { Sink, SoftQp } from './SoftQp.js';
import { FrameFlag, type FrameHeader, MAX_FRAME_PAYLOAD, NakCode, PSN_MASK, WireOp } from './Wire.js';

/** Frame opcode of each send opcode (index = WrOpcode). */
const WIRE_OP = [WireOp.WRITE, WireOp.WRITE_IMM, WireOp.SEND, WireOp.SEND_IMM, WireOp.READ_REQ];

/**
 * Reads the WQEs the guest posted since the last look (SQ_PROD), each exactly once, into the
 * private copies, checking them; in ERR they are flushed instead.
 */
export function fetchSend(nic: SoftNic, qp: SoftQp): void {
  // ORDERING: seq-cst load of SQ_PROD, which the guest stored after writing the WQEs.
  const prod = Atomics.load(nic.ctrl, qpWord(qp.qpn, QpWord.SQ_PROD)) >>> 0;
  if (prod === qp.sqHead) return;
  if (qp.state === QpState.ERR) {
    flushSend(nic, qp);
    return;
  }
  if (qp.state !== QpState.RTS) return; // posting before RTS is refused by the provider
  if ((prod - qp.sqAcked) >>> 0 > qp.sqEntries) {
    nic.log(`QP ${qp.qpn}: send producer ${prod} is more than ${qp.sqEntries} ahead of ${qp.sqAcked}; QP to ERR`);
    toError(nic, qp);
    return;
  }
  while (qp.sqHead !== prod) {
    const slot = qp.sqSlot(qp.sqHead);
    const w = qp.wqe[slot];
    const base = slot * SEND_WQE_WORDS;
    decodeSendWqe(qp.sqWords, base, w);
    qp.wqePsn[slot] = qp.nextPsn;
    qp.nextPsn = (qp.nextPsn + 1) & PSN_MASK;
    qp.wqeErr[slot] = checkSend(nic, qp, slot);
    if (qp.wqeErr[slot] === 0 && (w.sendFlags & SendFlags.INLINE) !== 0) {
      // INVARIANT: inlineLen ≤ MAX_INLINE_DATA was checked on the private copy; the bytes are
      // payload only (no decision depends on them), read once here.
      const dst = slot * MAX_INLINE_DATA;
      for (let i = 0; i < w.inlineLen; i++) qp.inline[dst + i] = inlineByte(qp.sqWords, base, i);
    }
    qp.sqHead = (qp.sqHead + 1) >>> 0;
  }
}

/** Checks a private WQE copy; returns 0 or the WcStatus it will complete with. */
function checkSend(nic: SoftNic, qp: SoftQp, slot: number): WcStatus {
  const w = qp.wqe[slot];
  if (w.opcode > WrOpcode.RDMA_READ) return WcStatus.LOC_QP_OP_ERR;
  if ((w.sendFlags & SendFlags.INLINE) !== 0) {
    if (w.opcode === WrOpcode.RDMA_READ || w.numSge !== 0) return WcStatus.LOC_QP_OP_ERR;
    if (w.inlineLen > qp.maxInline || w.inlineLen > MAX_INLINE_DATA) return WcStatus.LOC_LEN_ERR;
    qp.wqeLen[slot] = w.inlineLen;
    return WcStatus.SUCCESS;
  }
  if (w.numSge > qp.maxSendSge) return WcStatus.LOC_QP_OP_ERR;
  let total = 0;
  const write = w.opcode === WrOpcode.RDMA_READ;
  for (let i = 0; i < w.numSge; i++) {
    const st = nic.res.checkLocal(w.sgeLkey[i], qp.pd, w.sgeAddr[i], w.sgeLen[i], write);
    if (st !== WcStatus.SUCCESS) return st;
    total += w.sgeLen[i];
  }
  if (total > MAX_MSG_SIZE) return WcStatus.LOC_LEN_ERR;
  qp.wqeLen[slot] = total;
  return WcStatus.SUCCESS;
}

/**
 * Builds the next frame of the QP's next message into `conn`'s slab. Returns false when nothing
 * was done (no room, or waiting behind an earlier WQE).
 */
export function emitRequest(nic: SoftNic, qp: SoftQp, conn: Connection): boolean {
  const slot = qp.sqSlot(qp.sqSend);
  const err = qp.wqeErr[slot];
  if (err !== 0) {
    // Completions are in order: the bad WQE fails once everything before it has completed.
    if (qp.sqAcked !== qp.sqSend) return false;
    completeSendHead(nic, qp, err);
    return true;
  }
  const w = qp.wqe[slot];
  const total = qp.wqeLen[slot];
  const h = nic.txHdr;
  h.opcode = WIRE_OP[w.opcode];
  h.srcQpn = qp.qpn;
  h.dstQpn = qp.destQpn;
  h.psn = qp.wqePsn[slot];
  h.epoch = qp.epoch;
  h.status = 0;
  h.aux8 = 0;
  h.aux32 = 0;
  // An address that is not a safe integer decoded as -1: send one no MR can contain.
  h.raddr = w.remoteAddr < 0 ? Number.MAX_SAFE_INTEGER : w.remoteAddr;
  h.rkey = w.rkey;
  h.imm = w.immData;
  h.msgLen = total;
  if (w.opcode === WrOpcode.RDMA_READ) {
    h.flags = FrameFlag.BOTH;
    h.length = 0;
    h.offset = 0;
    if (nic.writeFrame(conn, h) < 0) return false;
    qp.sqSend = (qp.sqSend + 1) >>> 0;
    return true;
  }
  const off = qp.sendOff;
  const len = Math.min(total - off, MAX_FRAME_PAYLOAD);
  h.flags = (off === 0 ? FrameFlag.FIRST : 0) | (off + len === total ? FrameFlag.LAST : 0);
  h.length = len;
  h.offset = off;
  const at = nic.writeFrame(conn, h);
  if (at < 0) return false;
  if ((w.sendFlags & SendFlags.INLINE) !== 0) {
    // ≤ 80 bytes: a loop beats making a view.
    const src = slot * MAX_INLINE_DATA;
    const buf = conn.tx.buf;
    for (let i = 0; i < len; i++) buf[at + i] = qp.inline[src + i];
  } else {
    gather(nic.memory, w.sgeAddr, w.sgeLen, w.numSge, off, len, conn.tx.buf, at);
  }
  if (off + len === total) {
    qp.sqSend = (qp.sqSend + 1) >>> 0;
    qp.sendOff = 0;
  } else {
    qp.sendOff = off + len;
  }
  return true;
}

/** Copies `len` message bytes starting at message offset `off` from the SGE list into `dst`. */
function gather(
  mem: Buffer,
  addr: number[],
  lens: number[],
  n: number,
  off: number,
  len: number,
  dst: Buffer,
  at: number,
): void {
  let i = 0;
  let base = 0;
  while (i < n && base + lens[i] <= off) base += lens[i++];
  while (len > 0 && i < n) {
    const inSge = off - base;
    const take = Math.min(len, lens[i] - inSge);
    // INVARIANT: every SGE was checked against a live MR (checkLocal) when the WQE was copied.
    mem.copy(dst, at, addr[i] + inSge, addr[i] + inSge + take);
    at += take;
    off += take;
    len -= take;
    base += lens[i++];
  }
}

/**
 * A response frame for one of our QPs arrived: returns the READ sink for READ_RESP data, or null
 * (ACK/NAK are handled at frame end; anything stale is dropped).
 */
export function onResponseHeader(nic: SoftNic, conn: Connection, h: FrameHeader): Sink | null {
  const qp = nic.qpFor(h.dstQpn);
  if (
    !qp ||
    qp.state !== QpState.RTS ||
    qp.destQpn !== h.srcQpn ||
    qp.destPort !== conn.peerPort ||
    h.epoch !== qp.epoch ||
    !qp.outstanding()
  ) {
    nic.count(TcpStat.DISCARDED);
    return null;
  }
  const slot = qp.sqSlot(qp.sqAcked);
  if (h.psn !== qp.wqePsn[slot]) {
    nic.count(TcpStat.DISCARDED); // a NAK for a later message of the same epoch: a consequence
    return null;
  }
  if (h.opcode === WireOp.NAK) return nic.emptySink;
  const w = qp.wqe[slot];
  // ACK and READ_RESP are only for a message we finished sending.
  if (qp.sqAcked === qp.sqSend) throw protocolError(qp, 'response for a message not yet sent');
  const isRead = w.opcode === WrOpcode.RDMA_READ;
  if (h.opcode === WireOp.ACK) {
    if (isRead) throw protocolError(qp, 'ACK for an RDMA READ');
    return nic.emptySink;
  }
  if (!isRead || h.offset !== qp.readOff || h.msgLen !== qp.wqeLen[slot]) {
    throw protocolError(qp, 'READ response out of place');
  }
  const sink = qp.readSink;
  sink.n = w.numSge;
  sink.total = 0;
  for (let i = 0; i < w.numSge; i++) {
    sink.addr[i] = w.sgeAddr[i];
    sink.len[i] = w.sgeLen[i];
    sink.total += w.sgeLen[i];
  }
  return sink;
}

/** A response frame was consumed: complete, retry or fail. */
export function onResponseEnd(nic: SoftNic, h: FrameHeader): void {
  const qp = nic.qpFor(h.dstQpn);
  if (!qp) return;
  if (h.opcode === WireOp.ACK) {
    completeSendHead(nic, qp, WcStatus.SUCCESS);
  } else if (h.opcode === WireOp.READ_RESP) {
    qp.readOff += h.length;
    if ((h.flags & FrameFlag.LAST) !== 0) completeSendHead(nic, qp, WcStatus.SUCCESS);
  } else if (h.status === NakCode.RNR) {
    if (qp.rnrLeft > 0) {
      qp.rnrLeft--;
      rewind(nic, qp, h.aux8 * RNR_TIMER_UNIT_US);
    } else completeSendHead(nic, qp, WcStatus.RNR_RETRY_EXC_ERR);
  } else if (h.status === NakCode.NOT_READY) {
    if (qp.retryLeft > 0) {
      qp.retryLeft--;
      rewind(nic, qp, 4.096 * 2 ** Math.min(Math.max(qp.timeout, 1), 20));
    } else completeSendHead(nic, qp, WcStatus.RETRY_EXC_ERR);
  } else {
    const st = h.status;
    const known = st === WcStatus.REM_ACCESS_ERR || st === WcStatus.REM_INV_REQ_ERR || st === WcStatus.REM_OP_ERR;
    completeSendHead(nic, qp, known ? st : WcStatus.BAD_RESP_ERR);
  }
}

/** Go back to the oldest outstanding message in a new epoch, after `delayUs`. */
function rewind(nic: SoftNic, qp: SoftQp, delayUs: number): void {
  nic.count(TcpStat.RETRIES);
  qp.epoch = (qp.epoch + 1) >>> 0;
  qp.sqSend = qp.sqAcked;
  qp.sendOff = 0;
  qp.readOff = 0;
  qp.cancelTimer();
  qp.waiting = true;
  const token = qp.timerToken;
  const fire = (): void => {
    if (qp.timerToken !== token) return;
    qp.timer = undefined;
    qp.waiting = false;
    nic.onProgress();
  };
  if (delayUs >= 1000) {
    qp.timer = setTimeout(fire, delayUs / 1000);
    return;
  }
  // Node timers have 1 ms granularity: poll shorter delays between event-loop turns.
  const deadline = performance.now() + delayUs / 1000;
  const poll = (): void => {
    if (qp.timerToken !== token) return;
    if (performance.now() >= deadline) fire();
    else setImmediate(poll);
  };
  setImmediate(poll);
}

function protocolError(qp: SoftQp, what: string): ProtocolError {
  return new ProtocolError(`QP ${qp.qpn}: ${what}`);
}
