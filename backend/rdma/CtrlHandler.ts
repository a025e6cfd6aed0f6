/**
 * The control-ring handler of one guest: decodes the protobuf request from the RingServer's
 * private copy of the slot (never the shared slot), runs the command against the guest's
 * session, and writes a whole response slot. Nothing the guest writes makes it throw: a length
 * word out of range, bytes that do not parse, a request without a command, and every refusal of
 * the command itself become an error response carrying the catalogue code and status, and the
 * ring goes on (policy `request`). Control is synchronous on the frontend side, so one command
 * is served at a time per guest and the 2-slot ring never holds more than one.
 */

import { PvError, pvError } from '../../protocol/errors.js';
import { type CtrlCodec, readCtrlSlot, writeCtrlSlot } from '../../protocol/rdma/pv/CtrlCodec.js';
import type { CtrlCommand, CtrlResponse, CtrlResult } from '../../protocol/rdma/pv/CtrlSchema.js';
import type { RequestHandler } from '../ring/RingServer.js';
import type { GuestSession } from './GuestSession.js';
import { deregMr, regMr } from './MrCommands.js';
import { allocPd, createCq, createQp, deallocPd, destroyCq, destroyQp, modifyQp } from './ResourceCommands.js';

/** Serves one guest's control ring. */
export class CtrlHandler {
  /** The last refusal, for logs and tests. */
  lastError: PvError | undefined;

  constructor(
    private readonly _s: GuestSession,
    private readonly _codec: CtrlCodec,
  ) {}

  /** The ring-server callback (never defers, never throws). */
  readonly handle: RequestHandler = (req, rsp, rspWord) => {
    const s = this._s;
    s.counters.ctrlRequests++;
    let seq = 0;
    let response: CtrlResponse;
    try {
      const request = this._codec.decodeRequest(readCtrlSlot(req, 0));
      seq = request.seq;
      response = { seq, status: 0, code: '', message: '', result: this._execute(request.cmd) };
    } catch (err) {
      s.counters.ctrlErrors++;
      // A non-PvError is a backend bug on a guest's input: still answered, never propagated.
      const e = err instanceof PvError ? err : pvError('PV_ERR_BAD_REQUEST', `backend error: ${String(err)}`);
      this.lastError = e;
      response = { seq, status: e.status, code: e.code, message: e.message };
    }
    writeCtrlSlot(rsp, rspWord, this._codec.encodeResponse(response));
  };

  private _execute(cmd: CtrlCommand): CtrlResult | undefined {
    const s = this._s;
    switch (cmd.kind) {
      case 'queryPort': {
        const p = s.driver.queryPort();
        return { kind: 'port', portId: p.portId, state: p.state, activeMtu: p.activeMtu };
      }
      case 'allocPd':
        return allocPd(s);
      case 'deallocPd':
        deallocPd(s, cmd.pd);
        return undefined;
      case 'regMr':
        return regMr(s, cmd);
      case 'deregMr':
        deregMr(s, cmd.mr);
        return undefined;
      case 'createCq':
        return createCq(s, cmd);
      case 'destroyCq':
        destroyCq(s, cmd.cq);
        return undefined;
      case 'createQp':
        return createQp(s, cmd);
      case 'modifyQp':
        modifyQp(s, cmd);
        return undefined;
      case 'destroyQp':
        destroyQp(s, cmd.qp);
        return undefined;
    }
  }
}
