/**
 * The data-ring handler of one guest: the fast path of postSend/postRecv. Per request, on the
 * RingServer's private copy of the slot: the header (op whitelist, reserved words zero), the QP
 * handle (it must name one of THIS guest's QPs), then the WQE (WqeCheck.ts). Zero-copy mode
 * copies the checked WQE word for word into the device queue (`postSendWords`), with the
 * guest's lkeys, rkeys and addresses unchanged: the NIC resolves them against MRs registered on
 * the guest's own device PDs. Copy mode hands it to CopyEngine (bounce buffers, tracking ids).
 *
 * A refused request is answered in its response slot with the catalogue status, and the
 * frontend reports it as an error work completion. Ordering caveat (documented for users): such
 * an error reaches the guest when its frontend drains responses, which may be after completions
 * of WRs posted later that the device executed. A full device queue is not an error: the
 * request is DEFERRED (the handler returns false and the ring stalls behind it, keeping order)
 * until the device consumes WQEs. Doorbells are rung once per serving round, receive queues
 * first (Doorbells.ts), so a burst of posts costs one MMIO write per queue.
 * Allocation-free.
 */

import { ERROR_CATALOGUE, PvError } from '../../protocol/errors.js';
import { encodeDataResponse, PV_DATA_HDR_WORDS, PvDataOp, PvDataReqWord } from '../../protocol/rdma/pv/DataSlot.js';
import { join64 } from '../../protocol/rdma/Wqe.js';
import type { RequestHandler } from '../ring/RingServer.js';
import type { GuestSession, ServedNic } from './GuestSession.js';
import { checkRecvWqe, checkSendWqe } from './WqeCheck.js';

/** Returned instead of a status when the request must wait (statuses are ≤ 0). */
export const DEFER = 1;

const BAD_OP = ERROR_CATALOGUE.PV_ERR_BAD_OP.status;
const BAD_REQUEST = ERROR_CATALOGUE.PV_ERR_BAD_REQUEST.status;
const BAD_HANDLE = ERROR_CATALOGUE.PV_ERR_RDMA_BAD_HANDLE.status;

/**
 * Posts an encoded WQE (at `src[w]`) to the device. A full queue gets the owed doorbells rung
 * (so the device can make room) and one retry; still full → DEFER. Other refusals → status.
 */
export function postToDevice(nic: ServedNic, qpn: number, src: Int32Array, w: number, send: boolean): number {
  const d = nic.driver;
  for (let attempt = 0; ; attempt++) {
    try {
      if (send) d.postSendWords(qpn, src, w);
      else d.postRecvWords(qpn, src, w);
      return 0;
    } catch (err) {
      if (!(err instanceof PvError)) return BAD_REQUEST;
      if (err.code !== 'PV_ERR_RDMA_QUEUE_FULL') return err.status;
      if (attempt > 0) return DEFER;
      nic.doorbells.flush();
    }
  }
}

/** Serves one guest's data ring. */
export class DataHandler {
  constructor(private readonly _s: GuestSession) {}

  /** The ring-server callback; returns false to defer (backpressure). */
  readonly handle: RequestHandler = (req, rsp, rspWord) => {
    const s = this._s;
    const op = req[PvDataReqWord.OP] >>> 0;
    const qp = req[PvDataReqWord.QP] >>> 0;
    const status = this._execute(op, qp, req);
    if (status === DEFER) {
      s.counters.deferrals++;
      return false;
    }
    s.counters.dataRequests++;
    if (status !== 0) s.counters.dataRejects++;
    // wr_id sits in words 0-1 of both WQE kinds; echoed from the private copy.
    const w = PV_DATA_HDR_WORDS;
    encodeDataResponse(rsp, rspWord, op, status, qp, join64(req[w], req[w + 1] & 0x1fffff));
    return true;
  };

  private _execute(op: number, handle: number, req: Int32Array): number {
    const s = this._s;
    if (req[PvDataReqWord.RESERVED0] !== 0 || req[PvDataReqWord.RESERVED1] !== 0) return BAD_REQUEST;
    if (op !== PvDataOp.POST_SEND && op !== PvDataOp.POST_RECV) return BAD_OP;
    const qp = s.qps.get(handle);
    if (qp === undefined) return BAD_HANDLE;
    const w = PV_DATA_HDR_WORDS;
    if (op === PvDataOp.POST_SEND) {
      const st = checkSendWqe(req, w, qp.cap);
      if (st !== 0) return st;
      return s.copy ? s.copy.postSend(qp, req, w) : postToDevice(s.nic, qp.qpn, req, w, true);
    }
    let st = checkRecvWqe(req, w, qp.cap);
    if (st !== 0) return st;
    st = s.copy ? s.copy.postRecv(qp, req, w) : postToDevice(s.nic, qp.qpn, req, w, false);
    if (st === 0) s.nic.doorbells.markRecv(s.nic.index, qp.qpn);
    return st;
  }
}
