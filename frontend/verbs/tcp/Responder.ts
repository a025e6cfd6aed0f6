/**
 * The responder half of an RC QP: accepts request messages addressed to it, checks them against
 * this NIC's own tables, lands their payload in guest memory, consumes receive WQEs, and answers.
 *
 * Rules, on the FIRST frame of a message (the later frames follow its decision):
 *  - target QP missing, not in RTR/RTS, or connected to someone else → NAK NOT_READY (IB would
 *    drop the packet and let the requester time out; the NAK makes that retry prompt);
 *  - PSN other than the expected one → NAK NOT_READY (sequence error);
 *  - RDMA WRITE (with or without immediate) and READ: the rkey must name a live MR of the QP's PD, covering the whole message,
 *    with REMOTE_WRITE/REMOTE_READ, and the QP must allow it (qp_access_flags) → else NAK
 *    REM_ACCESS_ERR and this QP goes to ERR (responder class C error, as rxe does);
 *  - SEND*, WRITE_WITH_IMM: a receive WQE must be posted → else NAK RNR (with min_rnr_timer);
 *    for SEND its SGEs must be valid local writable memory → else the receive completes with
 *    LOC_PROT_ERR and the requester gets REM_OP_ERR; too small → LOC_LEN_ERR here and
 *    REM_INV_REQ_ERR there; both QPs go to ERR.
 * After any NAK, frames of the same epoch are dropped until the requester retransmits.
 */

import { Access, QpState, WcOpcode, WcStatus } from '../../../protocol/rdma/Verbs.js';
import { decodeRecvWqe, RECV_WQE_WORDS } from '../../../protocol/rdma/Wqe.js';
import { completeRecv, toError } from './Completer.js';
import { type Connection, ProtocolError } from './Connection.js';
import { QpWord, qpWord, TcpStat } from './Layout.js';
import type { SoftNic } from './SoftNic.js';
import type { Sink, SoftQp } from './SoftQp.js';
import { FrameFlag, type FrameHeader, NakCode, PSN_MASK, WireOp } from './Wire.js';

/** Outcome of taking a receive WQE. */
const enum Take {
  NONE = 0,
  OK = 1,
  /** The receive queue's producer index is garbage: the QP was moved to ERR. */
  BAD = 2,
}

/** A request frame arrived: where its payload goes, or null to drop it. */
export function onRequestHeader(nic: SoftNic, conn: Connection, h: FrameHeader): Sink | null {
  const qp = nic.qpFor(h.dstQpn);
  const first = (h.flags & FrameFlag.FIRST) !== 0;
  const ours = qp !== undefined && qp.destQpn === h.srcQpn && qp.destPort === conn.peerPort;
  if (!ours || (qp.state !== QpState.RTR && qp.state !== QpState.RTS)) {
    if (first && !(ours && qp.discardEpoch === h.epoch)) {
      nic.sendNak(conn, h, NakCode.NOT_READY, 0);
      if (ours) qp.discardEpoch = h.epoch;
    }
    nic.count(TcpStat.DISCARDED);
    return null;
  }
  // Epochs only grow (serial arithmetic): an older one is a straggler from before a rewind or
  // a reset of the requester; the epoch of our last NAK is one we asked to be resent.
  if (h.epoch === qp.discardEpoch || (qp.epochSeen && ((h.epoch - qp.seenEpoch) | 0) < 0)) {
    nic.count(TcpStat.DISCARDED);
    return null;
  }
  qp.seenEpoch = h.epoch;
  qp.epochSeen = true;
  if (qp.inActive) {
    if (!first && h.psn === qp.inPsn && h.epoch === qp.inEpoch) {
      if (h.opcode !== qp.inOp || h.offset !== qp.inOff || h.msgLen !== qp.inLen) {
        throw new ProtocolError(`QP ${qp.qpn}: frame out of sequence in message ${h.psn}`);
      }
      return qp.inSink;
    }
    // A new message while one is open: the requester abandoned the old one (its QP was reset
    // or flushed). Drop it; a receive WQE it took stays taken for the next message.
    if (first) qp.inActive = false;
  }
  if (!first) {
    nic.count(TcpStat.DISCARDED);
    return null;
  }
  if (h.psn !== qp.epsn) {
    nic.sendNak(conn, h, NakCode.NOT_READY, 0);
    qp.discardEpoch = h.epoch;
    return null;
  }
  return acceptFirst(nic, conn, qp, h);
}

function acceptFirst(nic: SoftNic, conn: Connection, qp: SoftQp, h: FrameHeader): Sink | null {
  const op = h.opcode;
  if (op === WireOp.READ_REQ || op === WireOp.WRITE || op === WireOp.WRITE_IMM) {
    const need = op === WireOp.READ_REQ ? Access.REMOTE_READ : Access.REMOTE_WRITE;
    const st =
      (qp.accessFlags & need) === 0
        ? WcStatus.REM_ACCESS_ERR
        : nic.res.checkRemote(h.rkey, qp.pd, h.raddr, h.msgLen, need);
    if (st !== WcStatus.SUCCESS) {
      nic.sendNak(conn, h, st, 0);
      toError(nic, qp);
      return null;
    }
    if (op === WireOp.READ_REQ) {
      nic.sendRead(conn, qp, h);
      qp.epsn = (qp.epsn + 1) & PSN_MASK;
      return null;
    }
  }
  if (op !== WireOp.WRITE) {
    const got = takeRecv(nic, qp);
    if (got !== Take.OK) {
      if (got === Take.NONE) {
        nic.count(TcpStat.RNR_NAKS);
        nic.sendNak(conn, h, NakCode.RNR, qp.minRnrTimer);
        qp.discardEpoch = h.epoch;
      } else nic.sendNak(conn, h, WcStatus.REM_OP_ERR, 0);
      return null;
    }
  }
  const sink = qp.inSink;
  if (op === WireOp.SEND || op === WireOp.SEND_IMM) {
    const st = recvSink(nic, qp, sink);
    if (st !== WcStatus.SUCCESS) {
      nic.sendNak(conn, h, st === WcStatus.LOC_LEN_ERR ? WcStatus.REM_INV_REQ_ERR : WcStatus.REM_OP_ERR, 0);
      completeRecv(nic, qp, st, WcOpcode.RECV, 0, undefined);
      return null;
    }
    if (sink.total < h.msgLen) {
      nic.sendNak(conn, h, WcStatus.REM_INV_REQ_ERR, 0);
      completeRecv(nic, qp, WcStatus.LOC_LEN_ERR, WcOpcode.RECV, 0, undefined);
      return null;
    }
  } else {
    sink.one(h.raddr, h.msgLen);
  }
  qp.inActive = true;
  qp.inOp = op;
  qp.inPsn = h.psn;
  qp.inEpoch = h.epoch;
  qp.inOff = 0;
  qp.inLen = h.msgLen;
  qp.inImm = h.imm;
  return sink;
}

/** A request frame's payload has landed: on LAST, complete the receive and ACK. */
export function onRequestEnd(nic: SoftNic, conn: Connection, h: FrameHeader, accepted: boolean): void {
  if (!accepted) return;
  const qp = nic.qpFor(h.dstQpn);
  // The QP may have gone to ERR (or been reset) while the payload was arriving.
  if (!qp?.inActive || qp.inPsn !== h.psn || qp.inEpoch !== h.epoch) return;
  qp.inOff += h.length;
  if ((h.flags & FrameFlag.LAST) === 0) return;
  qp.inActive = false;
  qp.epsn = (qp.epsn + 1) & PSN_MASK;
  if (qp.inOp === WireOp.WRITE_IMM) {
    completeRecv(nic, qp, WcStatus.SUCCESS, WcOpcode.RECV_RDMA_WITH_IMM, qp.inLen, qp.inImm);
  } else if (qp.inOp === WireOp.SEND) {
    completeRecv(nic, qp, WcStatus.SUCCESS, WcOpcode.RECV, qp.inLen, undefined);
  } else if (qp.inOp === WireOp.SEND_IMM) {
    completeRecv(nic, qp, WcStatus.SUCCESS, WcOpcode.RECV, qp.inLen, qp.inImm);
  }
  nic.sendAck(conn, h);
}

/** Takes the next posted receive WQE (copied once into `qp.recv`). */
function takeRecv(nic: SoftNic, qp: SoftQp): Take {
  if (qp.recvTaken) return Take.OK;
  // ORDERING: seq-cst load of RQ_PROD, which the guest stored after writing the WQEs.
  const prod = Atomics.load(nic.ctrl, qpWord(qp.qpn, QpWord.RQ_PROD)) >>> 0;
  const avail = (prod - qp.rqCons) >>> 0;
  if (avail === 0) return Take.NONE;
  if (avail > qp.rqEntries) {
    nic.log(`QP ${qp.qpn}: receive producer ${prod} is more than ${qp.rqEntries} ahead of ${qp.rqCons}; QP to ERR`);
    toError(nic, qp);
    return Take.BAD;
  }
  decodeRecvWqe(qp.rqWords, (qp.rqCons & (qp.rqEntries - 1)) * RECV_WQE_WORDS, qp.recv);
  qp.rqCons = (qp.rqCons + 1) >>> 0;
  qp.recvTaken = true;
  return Take.OK;
}

/** Checks the taken receive WQE's SGEs (private copy) and loads them into `sink`. */
function recvSink(nic: SoftNic, qp: SoftQp, sink: Sink): WcStatus {
  const r = qp.recv;
  if (r.numSge > qp.maxRecvSge) return WcStatus.LOC_QP_OP_ERR;
  sink.n = r.numSge;
  sink.total = 0;
  for (let i = 0; i < r.numSge; i++) {
    const st = nic.res.checkLocal(r.sgeLkey[i], qp.pd, r.sgeAddr[i], r.sgeLen[i], true);
    if (st !== WcStatus.SUCCESS) return st;
    sink.addr[i] = r.sgeAddr[i];
    sink.len[i] = r.sgeLen[i];
    sink.total += r.sgeLen[i];
  }
  return WcStatus.SUCCESS;
}
