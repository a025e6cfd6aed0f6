/**
 * The guest end of the `vrdma` rings: allocates, initialises and grants the control ring
 * (order 0, two 1 KiB slots) and the data ring (order 3, 128 slots of 128 bytes), allocates the
 * one event channel both use, and moves messages:
 *  - control: synchronous — write one request, push, notify if asked, wait for its response;
 *  - data: the caller fills slots and `push()`es; responses are consumed lazily (`drainData`)
 *    when the ring is full, in `progress()`, or before sleeping, so the data path never waits for
 *    the backend. Because responses are not waited for, the data ring's `rsp_event` stays where
 *    it is and the backend sends no notification for them, except when the front asks (a full
 *    ring: `finalCheckForResponses` re-arms it).
 *
 * The backend is not trusted either: response producers are checked against what was published
 * (FrontRing: RING_RESPONSE_PROD_OVERFLOW), control responses are copied out of the slot once
 * before decoding, and every wait is bounded (PV_ERR_TIMEOUT).
 *
 * Waiting uses the domain's event channel by default; single-thread tests pass an `idle`
 * function instead (it runs the backend's serving round where a real guest would sleep).
 */

import { pvError } from '../../../protocol/errors.js';
import type { Hypercalls } from '../../../protocol/Hypercalls.js';
import { readCtrlSlot, writeCtrlSlot } from '../../../protocol/rdma/pv/CtrlCodec.js';
import {
  PV_CTRL_RING_ORDER,
  PV_CTRL_SLOT_SIZE,
  PV_DATA_RING_ORDER,
  PV_DATA_SLOT_SIZE,
} from '../../../protocol/rdma/pv/PvConstants.js';
import { FrontRing } from '../../../protocol/ring/FrontRing.js';
import { initSharedRing, ringBytes } from '../../../protocol/ring/Layout.js';
import { Stage, stages } from '../../../protocol/stage/StageLedger.js';
import { type DomId, type EvtchnPort, type GrantRef, type GuestPhysAddr, gfnOf } from '../../../protocol/Types.js';
import type { DataResponseSink, RdmaChannel } from './RdmaChannel.js';

/** Tuning and test hooks of a channel. */
export interface PvChannelOptions {
  /** Polls of the wake word before sleeping. */
  readonly spinBudget?: number;
  /** Longest wait for a control response or a free data slot (ms; default 10 000, as PVRDMA). */
  readonly timeoutMs?: number;
  /** Replaces sleeping on the event channel (single-thread tests: run the backend's round). */
  readonly idle?: () => void;
}

/** What the frontend publishes for the rings. */
export interface PvRingRefs {
  readonly ctrlRingRef: GrantRef;
  readonly dataRingRefs: readonly GrantRef[];
  readonly port: EvtchnPort;
}

export type { DataResponseSink } from './RdmaChannel.js';

/** Both rings and the event channel of one `vrdma` device; see the file comment. */
export class PvChannel implements RdmaChannel {
  readonly ctrl: FrontRing;
  readonly data: FrontRing;
  readonly refs: PvRingRefs;
  /** Control round trips, sleeps taken, and timeouts. */
  readonly stats = { calls: 0, sleeps: 0, dataFullWaits: 0 };
  private readonly _hc: Hypercalls;
  private readonly _ctrlAddr: GuestPhysAddr;
  private readonly _dataAddr: GuestPhysAddr;
  private readonly _spin: number;
  private readonly _timeoutMs: number;
  private readonly _idle: (() => void) | undefined;
  private _sink: DataResponseSink = () => {};

  /** Allocates, initialises and grants both rings to `backend`, and allocates the port. */
  constructor(hc: Hypercalls, backend: DomId, opts: PvChannelOptions = {}) {
    this._hc = hc;
    this._spin = opts.spinBudget ?? 1000;
    this._timeoutMs = opts.timeoutMs ?? 10_000;
    this._idle = opts.idle;
    const ctrlPages = 1 << PV_CTRL_RING_ORDER;
    const dataPages = 1 << PV_DATA_RING_ORDER;
    this._ctrlAddr = hc.memory.allocPages(ctrlPages);
    this._dataAddr = hc.memory.allocPages(dataPages);
    const ctrlView = hc.memory.view(this._ctrlAddr, ringBytes(PV_CTRL_RING_ORDER));
    const dataView = hc.memory.view(this._dataAddr, ringBytes(PV_DATA_RING_ORDER));
    initSharedRing(ctrlView);
    initSharedRing(dataView);
    this.ctrl = new FrontRing(ctrlView, PV_CTRL_SLOT_SIZE);
    this.data = new FrontRing(dataView, PV_DATA_SLOT_SIZE);
    this.ctrl.counters.publish(hc.monitor, 'vrdma-ctrl', backend, 'front');
    this.data.counters.publish(hc.monitor, 'vrdma-data', backend, 'front');
    const granted: GrantRef[] = [];
    try {
      granted.push(hc.grant.grantAccess(backend, gfnOf(this._ctrlAddr), false));
      const first = gfnOf(this._dataAddr);
      for (let i = 0; i < dataPages; i++)
        granted.push(hc.grant.grantAccess(backend, (first + i) as typeof first, false));
      const port = hc.evtchn.allocUnbound(backend);
      this.refs = { ctrlRingRef: granted[0], dataRingRefs: granted.slice(1), port };
    } catch (err) {
      this.ctrl.counters.unpublish();
      this.data.counters.unpublish();
      for (const ref of granted) hc.grant.endAccess(ref);
      hc.memory.freePages(this._ctrlAddr, ctrlPages);
      hc.memory.freePages(this._dataAddr, dataPages);
      throw err;
    }
  }

  /** Every grant ref of the rings (to end at release). */
  get allRefs(): GrantRef[] {
    return [this.refs.ctrlRingRef, ...this.refs.dataRingRefs];
  }

  /** Where data responses go (set once by the provider). */
  onDataResponse(sink: DataResponseSink): void {
    this._sink = sink;
  }

  /**
   * One control round trip: writes `msg` (an encoded request) into the control ring, publishes
   * it, and returns a private copy of the next response's bytes. PV_ERR_TIMEOUT if none comes.
   */
  call(msg: Uint8Array): Uint8Array {
    // Stage ledger: a control round trip is RING (the wait for the answer is IDLE inside).
    const prev = stages.enter(Stage.RING);
    try {
      return this._call(msg);
    } finally {
      stages.enter(prev);
    }
  }

  private _call(msg: Uint8Array): Uint8Array {
    const ring = this.ctrl;
    // A response left by a call that timed out is stale: drop it so slots do not run out.
    while (ring.unconsumedResponses() > 0) ring.consumeResponse();
    const w = ring.nextRequestSlot();
    writeCtrlSlot(ring.words, w, msg);
    ring.commitRequest();
    if (ring.pushRequests()) this._hc.evtchn.notify(this.refs.port);
    this.stats.calls++;
    const deadline = performance.now() + this._timeoutMs;
    while (ring.unconsumedResponses() === 0) {
      if (performance.now() >= deadline) {
        throw pvError('PV_ERR_TIMEOUT', `no control response from the backend in ${this._timeoutMs} ms`);
      }
      this._wait(ring, deadline);
    }
    const bytes = readCtrlSlot(ring.words, ring.responseSlot());
    ring.consumeResponse();
    return bytes;
  }

  /**
   * Word offset of a free data slot, taking responses off the ring if it is full and, if the
   * backend has not answered any, publishing what is queued and waiting (bounded).
   */
  dataSlot(): number {
    const ring = this.data;
    if (ring.freeRequests() === 0) {
      this.drainData();
      if (ring.freeRequests() === 0) {
        this.stats.dataFullWaits++;
        this.push();
        const deadline = performance.now() + this._timeoutMs;
        for (;;) {
          this.drainData();
          if (ring.freeRequests() > 0) break;
          if (performance.now() >= deadline) {
            throw pvError('PV_ERR_TIMEOUT', `the backend answered none of ${ring.size} data requests in time`);
          }
          this._wait(ring, deadline);
        }
      }
    }
    return ring.nextRequestSlot();
  }

  /** Publishes queued data requests; notifies the backend only if it asked. */
  push(): void {
    // Stage ledger: publishing and the notify are RING. With nothing queued this is a look
    // (progress() calls it on every empty poll), so it reads no clock.
    if (this.data.unpushed === 0) return;
    const prev = stages.enter(Stage.RING);
    try {
      if (this.data.pushRequests()) this._hc.evtchn.notify(this.refs.port);
    } finally {
      // notify throws on a port that was closed under us: keep the ledger straight.
      stages.enter(prev);
    }
  }

  /** Takes every published data response off the ring, handing each to the sink. */
  drainData(): number {
    const ring = this.data;
    const n = ring.unconsumedResponses();
    if (n === 0) return 0;
    // Stage ledger: consuming responses is RING (an empty ring is a look, not ring work).
    const prev = stages.enter(Stage.RING);
    try {
      for (let i = 0; i < n; i++) {
        this._sink(ring.words, ring.responseSlot());
        ring.consumeResponse();
      }
    } finally {
      stages.enter(prev);
    }
    return n;
  }

  /** Frees the ring pages (after every grant ended) and closes the port. */
  freePages(): void {
    this._hc.memory.freePages(this._ctrlAddr, 1 << PV_CTRL_RING_ORDER);
    this._hc.memory.freePages(this._dataAddr, 1 << PV_DATA_RING_ORDER);
  }

  /** Closes the event channel. */
  closePort(): void {
    // The rings are torn down from here on: stop publishing their counters.
    this.ctrl.counters.unpublish();
    this.data.counters.unpublish();
    this._hc.evtchn.close(this.refs.port);
  }

  /**
   * Sleeps until `ring` may have a response: snapshot the wake word, clear the port's pending
   * bit, re-arm `rsp_event` with the final check, then wait (spin first); as IoRingFront does.
   */
  private _wait(ring: FrontRing, deadline: number): void {
    if (this._idle) {
      this._idle();
      return;
    }
    const ev = this._hc.evtchn;
    const snapshot = ev.wakeSnapshot();
    ev.testAndClearPending(this.refs.port);
    if (ring.finalCheckForResponses()) return;
    this.stats.sleeps++;
    const left = Math.max(0, deadline - performance.now());
    ev.waitForEvent(snapshot, { spinBudget: this._spin, timeoutMs: Math.min(left, 100) });
  }
}
