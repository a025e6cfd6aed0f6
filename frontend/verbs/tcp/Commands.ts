/**
 * The command mailbox served by the software NIC: the NicRegs.ts command set (`NicCmd`) with the
 * same argument and result words, addresses being guest-physical (the guest's own memory; there
 * is no IOMMU between a guest and its software NIC). Arguments are the NIC's private copy
 * (`Mailbox.args`, read once); every value is checked before anything changes, and a refused command
 * changes nothing. Errors become the catalogue status in CMD_STATUS and a message in CMD_MSG.
 */

import { type ErrorCode, PvError, pvError } from '../../../protocol/errors.js';
import { NicCmd, PORT_ACTIVE } from '../../../protocol/rdma/NicRegs.js';
import {
  join64,
  MAX_INLINE_DATA,
  MAX_RECV_SGE,
  MAX_SEND_SGE,
  RECV_WQE_SIZE,
  SEND_WQE_SIZE,
} from '../../../protocol/rdma/Wqe.js';
import { CMD_MSG_BYTES, CMD_WORDS, CtrlWord, QpWord, qpWord, TCP_LIMITS } from './Layout.js';
import { modifyQp } from './QpModify.js';
import type { SoftNic } from './SoftNic.js';
import { SoftQp } from './SoftQp.js';

/** Incarnation and QP-number counters (one NIC per thread). */
let nextGen = 1;
let nextQpn = 1;

/** The NIC side of the command mailbox: the pending command and its private argument copy. */
export class Mailbox {
  /** CMD_IN copied once when the command is taken; only the copy is validated and used (XSA-155). */
  readonly args = new Int32Array(CMD_WORDS);
  /** Results, published by `finish`. */
  readonly out = new Int32Array(CMD_WORDS);
  /** Opcode of the command taken. */
  op = 0;
  private _seq: number;
  private _busy = false;

  constructor(private readonly _ctrl: Int32Array) {
    // ORDERING: the guest's command sequence starts where it is (0 for a fresh block).
    this._seq = Atomics.load(_ctrl, CtrlWord.CMD_SEQ);
  }

  /** Takes a newly posted command (copying its arguments); false when none, or one is running. */
  take(): boolean {
    // ORDERING: seq-cst load of CMD_SEQ, stored by the guest after CMD_OPCODE and CMD_IN.
    const seq = Atomics.load(this._ctrl, CtrlWord.CMD_SEQ);
    if (seq === this._seq || this._busy) return false;
    this._seq = seq;
    this._busy = true;
    this.op = this._ctrl[CtrlWord.CMD_OPCODE];
    for (let i = 0; i < CMD_WORDS; i++) this.args[i] = this._ctrl[CtrlWord.CMD_IN + i];
    this.out.fill(0);
    return true;
  }

  /** Publishes the result (status 0 or a catalogue status, and a message) and wakes the guest. */
  finish(status: number, message: string): void {
    const ctrl = this._ctrl;
    for (let i = 0; i < CMD_WORDS; i++) ctrl[CtrlWord.CMD_OUT + i] = this.out[i];
    // Control path only: a message is encoded when there is one.
    const text = message === '' ? EMPTY : Buffer.from(message, 'utf8').subarray(0, CMD_MSG_BYTES);
    new Uint8Array(ctrl.buffer, CtrlWord.CMD_MSG * 4, CMD_MSG_BYTES).set(text);
    ctrl[CtrlWord.CMD_MSG_LEN] = text.length;
    ctrl[CtrlWord.CMD_STATUS] = status;
    this._busy = false;
    // ORDERING: results were written with plain stores; this seq-cst store publishes them and
    // pairs with the guest's Atomics.load/wait on CMD_DONE.
    Atomics.store(ctrl, CtrlWord.CMD_DONE, this._seq);
    // ORDERING: after the store, so a guest asleep in Atomics.wait(CMD_DONE) wakes to the new value.
    Atomics.notify(ctrl, CtrlWord.CMD_DONE);
  }
}

const EMPTY = new Uint8Array(0);

/** Runs the command in `nic.cmdIn`; finishes it now or (MODIFY_QP to RTR) once connected. */
export function executeCommand(nic: SoftNic, op: number): void {
  try {
    if (run(nic, op)) nic.finishCommand(0, '');
  } catch (err) {
    if (err instanceof PvError) nic.finishCommand(err.status, err.message);
    else {
      nic.log(`tcp helper: command ${op} failed: ${(err as Error).stack ?? String(err)}`);
      nic.finishCommand(statusOf('PV_ERR_BAD_REQUEST'), String(err));
    }
  }
}

function statusOf(code: ErrorCode): number {
  return pvError(code).status;
}

/** True when finished; false when the command completes later (it calls finishCommand). */
function run(nic: SoftNic, op: number): boolean {
  const a = nic.mailbox.args;
  const out = nic.mailbox.out;
  switch (op) {
    case NicCmd.QUERY_PORT:
      out[0] = nic.port;
      out[1] = PORT_ACTIVE;
      out[2] = 5; // IBV_MTU_4096
      return true;
    case NicCmd.CREATE_PD:
      out[0] = nic.res.allocPd();
      return true;
    case NicCmd.DESTROY_PD:
      nic.res.deallocPd(a[0]);
      return true;
    case NicCmd.CREATE_MR: {
      const [idx, key] = nic.res.regMr(a[0], join64(a[1], a[2]), a[3] >>> 0, a[4]);
      out[0] = idx;
      out[1] = key | 0;
      out[2] = key | 0;
      return true;
    }
    case NicCmd.DESTROY_MR:
      nic.res.deregMr(a[0] >>> 0);
      return true;
    case NicCmd.CREATE_CQ:
      out[0] = nic.res.createCq(a[0], join64(a[1], a[2])).cqn;
      return true;
    case NicCmd.DESTROY_CQ:
      nic.res.destroyCq(a[0]);
      return true;
    case NicCmd.CREATE_QP:
      out[0] = createQp(nic, a);
      return true;
    case NicCmd.MODIFY_QP:
      return modifyQp(nic, liveQp(nic, a[0]), a);
    case NicCmd.QUERY_QP: {
      const qp = liveQp(nic, a[0]);
      out[0] = qp.state;
      out[1] = qp.destQpn;
      out[2] = qp.destPort;
      out[3] = qp.sqAcked | 0;
      out[4] = qp.rqCons | 0;
      return true;
    }
    case NicCmd.DESTROY_QP: {
      const qp = liveQp(nic, a[0]);
      nic.removeQp(qp);
      qp.sendCq.refs--;
      qp.recvCq.refs--;
      nic.res.refPd(qp.pd, -1);
      for (let w = QpWord.SQ_PROD; w <= QpWord.RQ_CONS; w++) {
        // ORDERING: the guest is blocked in this command; the next QP with this number starts at 0.
        Atomics.store(nic.ctrl, qpWord(qp.qpn, w), 0);
      }
      return true;
    }
    default:
      throw pvError('PV_ERR_BAD_OP', `unknown NIC command ${op}`);
  }
}

/** The live QP `qpn`, or PV_ERR_RDMA_BAD_HANDLE. */
function liveQp(nic: SoftNic, qpn: number): SoftQp {
  const qp = nic.qpFor(qpn);
  if (!qp) throw pvError('PV_ERR_RDMA_BAD_HANDLE', `unknown QP ${qpn}`);
  return qp;
}

/** A power of two in [1, max]. */
function pow2(n: number, max: number, what: string): number {
  if (!Number.isInteger(n) || n < 1 || n > max || (n & (n - 1)) !== 0) {
    throw pvError('PV_ERR_INVALID_ARG', `${what} must be a power of two in [1, ${max}], got ${n}`);
  }
  return n;
}

/** An Int32 view of a queue the guest allocated; 64-byte aligned, inside memory. */
function queueView(nic: SoftNic, addr: number, bytes: number, what: string): Int32Array {
  const size = nic.memoryBuffer.byteLength;
  if (addr % 64 !== 0 || addr > size || bytes > size - addr) {
    throw pvError('PV_ERR_RDMA_BAD_MEMORY', `${what} at ${addr} (+${bytes}) is misaligned or outside memory`);
  }
  return new Int32Array(nic.memoryBuffer, addr, bytes / 4);
}

function createQp(nic: SoftNic, a: Int32Array): number {
  const pd = a[0];
  nic.res.checkPd(pd);
  const sendCq = nic.res.cq(a[1]);
  const recvCq = nic.res.cq(a[2]);
  const sqEntries = pow2(a[3], TCP_LIMITS.MAX_QP_WR, 'send queue entries');
  const rqEntries = pow2(a[4], TCP_LIMITS.MAX_QP_WR, 'receive queue entries');
  const maxInline = a[10];
  const maxSendSge = a[11];
  const maxRecvSge = a[12];
  if (a[9] !== 0 && a[9] !== 1) throw pvError('PV_ERR_INVALID_ARG', `sq_sig_all must be 0 or 1, got ${a[9]}`);
  if (maxInline < 0 || maxInline > MAX_INLINE_DATA || maxSendSge < 0 || maxSendSge > MAX_SEND_SGE) {
    throw pvError('PV_ERR_RDMA_RESOURCE', `send caps (inline ${maxInline}, sge ${maxSendSge}) exceed the NIC's`);
  }
  if (maxRecvSge < 0 || maxRecvSge > MAX_RECV_SGE) {
    throw pvError('PV_ERR_RDMA_RESOURCE', `receive SGEs ${maxRecvSge} exceed ${MAX_RECV_SGE}`);
  }
  const sqWords = queueView(nic, join64(a[5], a[6]), sqEntries * SEND_WQE_SIZE, 'send queue');
  const rqWords = queueView(nic, join64(a[7], a[8]), rqEntries * RECV_WQE_SIZE, 'receive queue');
  // Rotate through QP numbers so a destroyed QP's number comes back as late as possible (stale
  // frames for it then find nothing, or a QP of another incarnation that drops them).
  let qpn = 0;
  for (let n = 0; n < TCP_LIMITS.MAX_QP - 1; n++) {
    const q = ((nextQpn - 1 + n) % (TCP_LIMITS.MAX_QP - 1)) + 1;
    if (!nic.qpFor(q)) {
      qpn = q;
      break;
    }
  }
  if (qpn === 0) throw pvError('PV_ERR_RDMA_RESOURCE', 'no free QP');
  nextQpn = qpn + 1;
  const qp = new SoftQp({
    qpn,
    gen: nextGen++,
    pd,
    sendCq,
    recvCq,
    sqEntries,
    rqEntries,
    sqWords,
    rqWords,
    sigAll: a[9] === 1,
    maxSendSge,
    maxRecvSge,
    maxInline,
  });
  sendCq.refs++;
  recvCq.refs++;
  nic.res.refPd(pd, 1);
  for (let w = QpWord.SQ_PROD; w <= QpWord.RQ_CONS; w++) {
    // ORDERING: the guest is blocked in this command; it reads these after CMD_DONE.
    Atomics.store(nic.ctrl, qpWord(qpn, w), 0);
  }
  nic.addQp(qp);
  return qpn;
}
