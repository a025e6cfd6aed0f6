/**
 * Synchronous control commands to the `vrdma` backend: encode (protobuf, CtrlSchema.ts), one
 * round trip on the control ring, decode, and turn the response into a result or a typed error.
 * The backend's status travels as its catalogue code, so a refusal surfaces as the same
 * `PvError` the backend raised (`PV_ERR_LIMIT`, `PV_ERR_RDMA_BAD_MEMORY`, …). A response that
 * does not match the request (wrong sequence number or result kind) is a backend fault:
 * PV_ERR_BAD_REQUEST.
 */

import protobuf from 'protobufjs';
import { codeFromStatus, errorFromCode, isErrorCode, pvError } from '../../../protocol/errors.js';
import { CtrlCodec } from '../../../protocol/rdma/pv/CtrlCodec.js';
import type { CtrlCommand, CtrlResult, PvQpAttr } from '../../../protocol/rdma/pv/CtrlSchema.js';
import type { QpAttr } from '../../../protocol/rdma/Verbs.js';
import type { RdmaChannel } from './RdmaChannel.js';

/** The result of one kind (`pick('qp')`). */
type ResultOf<K extends CtrlResult['kind']> = Extract<CtrlResult, { kind: K }>;

/** Control commands over a channel. */
export class CtrlClient {
  private readonly _codec = new CtrlCodec(protobuf);
  private _seq = 0;

  constructor(private readonly _ch: RdmaChannel) {}

  /** Runs a command that returns nothing. */
  run(cmd: CtrlCommand): void {
    this._call(cmd);
  }

  /** Runs a command and returns its result, which must be of kind `kind`. */
  get<K extends CtrlResult['kind']>(cmd: CtrlCommand, kind: K): ResultOf<K> {
    const r = this._call(cmd);
    if (r === undefined || r.kind !== kind) {
      throw pvError('PV_ERR_BAD_REQUEST', `backend answered ${cmd.kind} without a ${kind} result`);
    }
    return r as ResultOf<K>;
  }

  private _call(cmd: CtrlCommand): CtrlResult | undefined {
    this._seq = (this._seq + 1) >>> 0 || 1;
    const seq = this._seq;
    const bytes = this._ch.call(this._codec.encodeRequest({ seq, cmd }));
    const rsp = this._codec.decodeResponse(bytes);
    if (rsp.seq !== seq) throw pvError('PV_ERR_BAD_REQUEST', `backend answered request ${rsp.seq}, expected ${seq}`);
    if (rsp.status === 0) return rsp.result;
    const code = isErrorCode(rsp.code) ? rsp.code : (codeFromStatus(rsp.status) ?? 'PV_ERR_BAD_REQUEST');
    throw errorFromCode(code, `${cmd.kind}: ${rsp.message || rsp.code}`);
  }
}

/** `qp_attr` on the wire: fields outside the mask travel as 0. */
export function wireQpAttr(a: QpAttr): PvQpAttr {
  return {
    qpState: a.qpState ?? 0,
    curQpState: a.curQpState ?? 0,
    qpAccessFlags: a.qpAccessFlags ?? 0,
    pkeyIndex: a.pkeyIndex ?? 0,
    portNum: a.portNum ?? 0,
    pathMtu: a.pathMtu ?? 0,
    destQpNum: a.destQpNum ?? 0,
    rqPsn: a.rqPsn ?? 0,
    sqPsn: a.sqPsn ?? 0,
    maxRdAtomic: a.maxRdAtomic ?? 0,
    maxDestRdAtomic: a.maxDestRdAtomic ?? 0,
    minRnrTimer: a.minRnrTimer ?? 0,
    timeout: a.timeout ?? 0,
    retryCnt: a.retryCnt ?? 0,
    rnrRetry: a.rnrRetry ?? 0,
    dlid: a.ahAttr?.dlid ?? 0,
  };
}
