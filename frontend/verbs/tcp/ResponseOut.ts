/**
 * Responder output: ACKs, NAKs and RDMA READ responses are queued per sending connection in
 * request order (RespQueue.ts) and turned into frames as the transmit slab has room. A READ
 * response streams in MAX_FRAME_PAYLOAD chunks read from guest memory at send time; before each
 * chunk the responder QP (same incarnation, still RTR/RTS) and the MR are re-checked, and a READ
 * whose QP or MR went away is answered with a NAK instead of stale data.
 *
 * Back-pressure: when a connection's response queue grows past RESP_HIGH_WATER, the connection
 * whose requests produce those responses stops reading its socket (`pause()`); the pump resumes
 * it below RESP_LOW_WATER. TCP flow control then slows the requester down.
 */

import { QpState, WcStatus } from '../../../protocol/rdma/Verbs.js';
import type { Connection } from './Connection.js';
import { emptyJob, RESP_HIGH_WATER, type RespJob, RespKind } from './RespQueue.js';
import type { SoftNic } from './SoftNic.js';
import type { SoftQp } from './SoftQp.js';
import { clearHeader, FrameFlag, type FrameHeader, MAX_FRAME_PAYLOAD, NakCode, WireOp } from './Wire.js';

const pushJob = emptyJob();
const headJob = emptyJob();

/** Queues a response to request `h` that arrived on `conn` (qp: the READ's responder QP). */
export function queueResponse(
  nic: SoftNic,
  conn: Connection,
  op: WireOp,
  h: FrameHeader,
  status: number,
  aux8: number,
  qp: SoftQp | undefined,
): void {
  const out = nic.responseConn(conn);
  const j = pushJob;
  j.kind = op === WireOp.ACK ? RespKind.ACK : op === WireOp.NAK ? RespKind.NAK : RespKind.READ;
  j.srcQpn = h.dstQpn;
  j.dstQpn = h.srcQpn;
  j.psn = h.psn;
  j.epoch = h.epoch;
  j.status = status;
  j.aux8 = aux8;
  j.addr = h.raddr;
  j.len = j.kind === RespKind.READ ? h.msgLen : 0;
  j.sent = 0;
  j.qpGen = qp ? qp.gen : 0;
  j.mrKey = h.rkey;
  out.resp.push(j);
  if (out.resp.length > RESP_HIGH_WATER && !conn.paused) {
    conn.paused = true;
    conn.socket.pause();
  }
}

/** Emits queued responses while the slab has room; true when at least one frame was built. */
export function emitResponses(nic: SoftNic, conn: Connection): boolean {
  const j = headJob;
  let did = false;
  while (conn.resp.peek(j)) {
    if (j.kind === RespKind.READ) {
      const qp = nic.qpFor(j.srcQpn);
      const live = qp !== undefined && qp.gen === j.qpGen && (qp.state === QpState.RTR || qp.state === QpState.RTS);
      if (!live || !nic.res.mrLive(j.mrKey)) {
        // The data can no longer be read: answer with a NAK (the requester retries or fails).
        j.kind = RespKind.NAK;
        j.status = live ? WcStatus.REM_ACCESS_ERR : NakCode.NOT_READY;
      }
    }
    if (j.kind !== RespKind.READ) {
      if (!control(nic, conn, j)) break;
      conn.resp.shift();
      did = true;
      continue;
    }
    const len = Math.min(j.len - j.sent, MAX_FRAME_PAYLOAD);
    const h = header(nic, j, WireOp.READ_RESP);
    h.flags = (j.sent === 0 ? FrameFlag.FIRST : 0) | (j.sent + len === j.len ? FrameFlag.LAST : 0);
    h.length = len;
    h.offset = j.sent;
    h.msgLen = j.len;
    const at = nic.writeFrame(conn, h);
    if (at < 0) break;
    // INVARIANT: [addr, addr + len) was checked against the live MR when the READ was accepted,
    // and the MR is still live (checked above).
    nic.memory.copy(conn.tx.buf, at, j.addr + j.sent, j.addr + j.sent + len);
    did = true;
    if (j.sent + len === j.len) conn.resp.shift();
    else conn.resp.setHeadSent(j.sent + len);
  }
  return did;
}

/** Builds an ACK or NAK frame; false when the slab is full. */
function control(nic: SoftNic, conn: Connection, j: RespJob): boolean {
  const h = header(nic, j, j.kind === RespKind.ACK ? WireOp.ACK : WireOp.NAK);
  h.status = j.kind === RespKind.ACK ? 0 : j.status;
  h.aux8 = j.kind === RespKind.ACK ? 0 : j.aux8;
  return nic.writeFrame(conn, h) >= 0;
}

/** Fills the shared transmit header with a response's addressing; payload fields zeroed. */
function header(nic: SoftNic, j: RespJob, op: WireOp): FrameHeader {
  const h = clearHeader(nic.txHdr);
  h.opcode = op;
  h.flags = FrameFlag.BOTH;
  h.srcQpn = j.srcQpn;
  h.dstQpn = j.dstQpn;
  h.psn = j.psn;
  h.epoch = j.epoch;
  return h;
}
