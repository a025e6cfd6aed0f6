/**
 * One RC queue pair as the software NIC keeps it: attributes set by MODIFY_QP, the requester's
 * view of its send queue, and the responder's view of incoming messages. Only the NIC thread
 * touches it; the guest reaches it through doorbell words and the command mailbox.
 *
 * Send-queue indices (free-running u32, compared with `>>> 0`):
 * ```
 *   sqAcked ≤ sqSend ≤ sqHead ≤ SQ_PROD (guest)
 *   [sqAcked, sqSend)  transmitted, waiting for ACK / READ response
 *   [sqSend, sqHead)   copied out of guest memory and checked, not yet (fully) transmitted
 *   [sqHead, SQ_PROD)  posted by the guest, not yet read
 * ```
 * SQ_CONS (shared) = sqAcked: slots the guest may reuse. Each WQE is copied from guest memory
 * exactly once, when sqHead passes it (XSA-155), into the private arrays below, and only the copy
 * is used afterwards — also for retransmissions.
 */

import { QpState } from '../../../protocol/rdma/Verbs.js';
import { emptyRecvWqe, emptySendWqe, MAX_INLINE_DATA, type RecvWqe, type SendWqe } from '../../../protocol/rdma/Wqe.js';
import type { SoftCq } from './Resources.js';

/** Where a message's payload lands: up to five guest ranges, filled in order. */
export class Sink {
  readonly addr = new Float64Array(5);
  readonly len = new Float64Array(5);
  n = 0;
  /** Sum of `len`. */
  total = 0;

  /** Sets a single range. */
  one(addr: number, len: number): void {
    this.addr[0] = addr;
    this.len[0] = len;
    this.n = 1;
    this.total = len;
  }
}

/** What a QP was created with. */
export interface SoftQpInit {
  readonly qpn: number;
  readonly gen: number;
  readonly pd: number;
  readonly sendCq: SoftCq;
  readonly recvCq: SoftCq;
  readonly sqEntries: number;
  readonly rqEntries: number;
  readonly sqWords: Int32Array;
  readonly rqWords: Int32Array;
  readonly sigAll: boolean;
  readonly maxSendSge: number;
  readonly maxRecvSge: number;
  readonly maxInline: number;
}

/** See the file comment. */
export class SoftQp {
  readonly qpn: number;
  /** Incarnation: queued work that names a QP checks it still has the same one. */
  readonly gen: number;
  readonly pd: number;
  readonly sendCq: SoftCq;
  readonly recvCq: SoftCq;
  readonly sqEntries: number;
  readonly rqEntries: number;
  /** The send and receive queues in guest memory (Wqe.ts layouts). */
  readonly sqWords: Int32Array;
  readonly rqWords: Int32Array;
  readonly sigAll: boolean;
  readonly maxSendSge: number;
  readonly maxRecvSge: number;
  readonly maxInline: number;

  state: QpState = QpState.RESET;
  accessFlags = 0;
  destQpn = 0;
  destPort = 0;
  rqPsn = 0;
  sqPsn = 0;
  minRnrTimer = 0;
  rnrRetry = 0;
  retryCnt = 0;
  timeout = 0;

  // Requester.
  sqHead = 0;
  sqSend = 0;
  sqAcked = 0;
  /** Bytes of WQE `sqSend` already framed. */
  sendOff = 0;
  /** Bytes of the READ at `sqAcked` already received. */
  readOff = 0;
  nextPsn = 0;
  /** Retransmission epoch: bumped at every rewind, carried by every request frame. */
  epoch = 0;
  rnrLeft = 0;
  retryLeft = 0;
  /** A retransmission timer is running: nothing is sent until it fires. */
  waiting = false;
  /** The timer, when it is a real one (sub-millisecond delays poll with setImmediate). */
  timer: NodeJS.Timeout | undefined;
  /** Bumped on cancel: a pending timer callback that sees another token does nothing. */
  timerToken = 0;
  /** Private copies of the WQEs, per slot. */
  readonly wqe: SendWqe[];
  readonly wqePsn: Uint32Array;
  /** Message length (sum of SGE lengths, or inline length). */
  readonly wqeLen: Float64Array;
  /** Local error found when the WQE was copied (a WcStatus), 0 if none. */
  readonly wqeErr: Uint8Array;
  /** Inline payloads, MAX_INLINE_DATA bytes per slot. */
  readonly inline: Uint8Array;
  readonly readSink = new Sink();

  // Responder.
  /** Next expected PSN. */
  epsn = 0;
  /** Epoch of the last NAK sent: frames of that epoch are stragglers and are dropped. */
  discardEpoch = -1;
  /** Newest requester epoch seen since RTR; frames of an older epoch are stale and dropped. */
  seenEpoch = 0;
  epochSeen = false;
  /** A message is being received (FIRST accepted, LAST not yet). */
  inActive = false;
  inOp = 0;
  inPsn = 0;
  inEpoch = 0;
  /** Next expected offset in the message. */
  inOff = 0;
  inLen = 0;
  inImm = 0;
  readonly inSink = new Sink();
  /** Next receive WQE to take; RQ_CONS is published when it completes. */
  rqCons = 0;
  /** The receive WQE being filled (private copy). */
  readonly recv: RecvWqe = emptyRecvWqe();
  /** True while `recv` is taken by the message being received. */
  recvTaken = false;

  constructor(init: SoftQpInit) {
    this.qpn = init.qpn;
    this.gen = init.gen;
    this.pd = init.pd;
    this.sendCq = init.sendCq;
    this.recvCq = init.recvCq;
    this.sqEntries = init.sqEntries;
    this.rqEntries = init.rqEntries;
    this.sqWords = init.sqWords;
    this.rqWords = init.rqWords;
    this.sigAll = init.sigAll;
    this.maxSendSge = init.maxSendSge;
    this.maxRecvSge = init.maxRecvSge;
    this.maxInline = init.maxInline;
    this.wqe = [];
    for (let i = 0; i < init.sqEntries; i++) this.wqe.push(emptySendWqe());
    this.wqePsn = new Uint32Array(init.sqEntries);
    this.wqeLen = new Float64Array(init.sqEntries);
    this.wqeErr = new Uint8Array(init.sqEntries);
    this.inline = new Uint8Array(init.sqEntries * MAX_INLINE_DATA);
  }

  /** Slot of send-queue index `i`. */
  sqSlot(i: number): number {
    return i & (this.sqEntries - 1);
  }

  /** True when the requester has something it could transmit now. */
  canSend(): boolean {
    return this.state === QpState.RTS && !this.waiting && this.sqSend !== this.sqHead;
  }

  /** True while transmitted WQEs wait for their ACK or READ response. */
  outstanding(): boolean {
    return this.sqAcked !== this.sqSend || this.sendOff !== 0;
  }

  /** Forgets all queue progress (RESET, or a fresh QP). */
  resetQueues(): void {
    this.cancelTimer();
    this.sqHead = 0;
    this.sqSend = 0;
    this.sqAcked = 0;
    this.sendOff = 0;
    this.readOff = 0;
    // The epoch keeps counting across a reset: responses still in flight for the old
    // incarnation then carry an older epoch and are dropped.
    this.epoch = (this.epoch + 1) >>> 0;
    this.epochSeen = false;
    this.rqCons = 0;
    this.recvTaken = false;
    this.inActive = false;
    this.discardEpoch = -1;
  }

  /** Stops a pending retransmission timer. */
  cancelTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerToken++;
    this.waiting = false;
  }
}
