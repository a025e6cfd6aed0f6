/**
 * The mailbox through which a domain thread's wire requester (RemoteWire.ts) reaches the host
 * process's main thread, which owns the host links (hypervisor-sim/link/Mailbox.ts): the layout
 * of a wire call's arguments, and the main-thread side that serves the calls.
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
 */

import { pvError } from '../../../protocol/errors.js';
import type { WireReqMsg, WireRspMsg } from '../../../protocol/link/LinkSchema.js';
import { WrOpcode } from '../../../protocol/rdma/Verbs.js';
import { MailboxServer } from '../../link/Mailbox.js';

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
