/**
 * The guest end of the virtio-rdma queues (protocol/rdma/virtio/VirtioRdma.ts): the RdmaChannel
 * of the `virtio` and `virtio-packed` transports, the counterpart of PvChannel's two rings.
 *
 * Memory: every request has a fixed pair of slots in this guest's memory (VirtioLayout.ts), a
 * request slot the device reads and a response slot it writes, and each chain is exactly
 * [request slot][response slot], its token the slot index. The data queue has 128 slot pairs
 * (256 descriptors), the control queue 2.
 *  - control: synchronous — encode into a free slot, add the chain, publish, kick if the device
 *    asked (EVENT_IDX avail_event), wait for the used entry, copy the response out once;
 *  - data: DataPoster fills the slot `dataSlot()` returns and commits it (the chain is added);
 *    `push()` publishes and kicks only if the device asked; used entries are taken lazily
 *    (`drainData`) when no slot is free, in `progress()`, or before sleeping, so the data path
 *    never waits for the device. Interrupts are enabled only while waiting (virtio's callback
 *    enable before sleep), so the device raises none on the data path otherwise.
 * A kick is the virtio-mmio QueueNotify (the trap wakes the device model through the event
 * channel); an interrupt arrives on the same event channel. Every wait is bounded: a device that
 * stops answering is PV_ERR_TIMEOUT, one that reports DEVICE_NEEDS_RESET or FAILED ends the
 * device (PV_ERR_DISCONNECTED: verbs objects are gone with the device's reset).
 * The device is not trusted either: a used token must be a slot this channel has in flight
 * (the drivers check it), and a used length short of a slot is a refusal of the request.
 */

import { ERROR_CATALOGUE, pvError } from '../../../protocol/errors.js';
import type { EvtchnOps, MonitorOps } from '../../../protocol/Hypercalls.js';
import { readCtrlSlot, writeCtrlSlot } from '../../../protocol/rdma/pv/CtrlCodec.js';
import { encodeDataResponse, PV_DATA_HDR_WORDS, PvDataReqWord } from '../../../protocol/rdma/pv/DataSlot.js';
import { PV_CTRL_SLOT_SIZE, PV_DATA_SLOT_SIZE } from '../../../protocol/rdma/pv/PvConstants.js';
import { VRDMA_CTRL_QUEUE, VRDMA_DATA_QUEUE } from '../../../protocol/rdma/virtio/VirtioRdma.js';
import { RingCounters } from '../../../protocol/ring/RingCounters.js';
import { Stage, stages } from '../../../protocol/stage/StageLedger.js';
import type { DomId, EvtchnPort } from '../../../protocol/Types.js';
import {
  VIRTIO_STATUS_DEVICE_NEEDS_RESET,
  VIRTIO_STATUS_DRIVER_OK,
  VIRTIO_STATUS_FAILED,
} from '../../../protocol/virtio/DeviceStatus.js';
import type { MmioDriver, VirtqDriver } from '../../virtio/MmioDriver.js';
import type { DataResponseSink, RdmaChannel } from '../paravirt/RdmaChannel.js';
import type { VirtioLayout } from './VirtioLayout.js';

/** Tuning of a channel. */
export interface VirtioChannelOptions {
  /** Polls of the wake word before sleeping. */
  readonly spinBudget?: number;
  /** Longest wait for a control response or a free data slot (ms; default 10 000). */
  readonly timeoutMs?: number;
}

/** What the channel needs of the negotiated device. */
export interface VirtioChannelParts {
  readonly driver: MmioDriver;
  readonly ctrl: VirtqDriver<number>;
  readonly dataq: VirtqDriver<number>;
  readonly layout: VirtioLayout;
  /** Guest memory as Int32 words (word = guest-physical address / 4). */
  readonly words: Int32Array;
  readonly evtchn: EvtchnOps;
  readonly port: EvtchnPort;
  /** Called once when the device is found broken (the provider's link goes dead). */
  readonly onLost: () => void;
  /** Where the queues' counters are published for `pvio top` (absent: kept private). */
  readonly monitor?: MonitorOps;
  /** The domain serving the device (the peer of the published queues). */
  readonly backend: DomId;
}

/** The queues of one virtio-rdma device; see the file comment. */
export class VirtioChannel implements RdmaChannel {
  readonly stats = { calls: 0, sleeps: 0, dataFullWaits: 0, kicks: 0, refused: 0 };
  readonly data: { readonly words: Int32Array; commitRequest(): void };
  /**
   * Per queue, counted as a Xen ring end counts (`pvio top`): requests = chains added, responses
   * = used chains taken, notifies = kicks, suppressed = publishes the device did not want kicked,
   * full stalls = waits for a free data slot.
   */
  readonly ctrlCounters = new RingCounters();
  readonly dataCounters = new RingCounters();
  private readonly _p: VirtioChannelParts;
  private readonly _spin: number;
  private readonly _timeoutMs: number;
  private readonly _free: number[] = [];
  private readonly _ctrlFree: number[] = [0, 1];
  private _unpushed = 0;
  private _sink: DataResponseSink = () => {};
  private _lost = false;

  constructor(parts: VirtioChannelParts, opts: VirtioChannelOptions = {}) {
    this._p = parts;
    this._spin = opts.spinBudget ?? 1000;
    this._timeoutMs = opts.timeoutMs ?? 10_000;
    for (let i = parts.layout.dataSlots - 1; i >= 0; i--) this._free.push(i);
    this.data = { words: parts.words, commitRequest: () => this._commitData() };
    this.ctrlCounters.publish(parts.monitor, 'virtio-ctrl', parts.backend, 'front');
    this.dataCounters.publish(parts.monitor, 'virtio-data', parts.backend, 'front');
  }

  /** Stops publishing the counters (the device is closed). */
  unpublish(): void {
    this.ctrlCounters.unpublish();
    this.dataCounters.unpublish();
  }

  /** Data requests added and not yet taken back (in the device's hands or used, not drained). */
  get inFlight(): number {
    return this._p.layout.dataSlots - this._free.length;
  }

  onDataResponse(sink: DataResponseSink): void {
    this._sink = sink;
  }

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
    const { ctrl, layout, words } = this._p;
    // A response left by a call that timed out is stale: take it back so slots do not run out.
    for (let u = ctrl.getUsed(); u !== undefined; u = ctrl.getUsed()) {
      this._ctrlFree.push(u.token);
      this.ctrlCounters.responses++;
    }
    const slot = this._ctrlFree.pop();
    if (slot === undefined) throw pvError('PV_ERR_TIMEOUT', 'the device still holds every control request');
    const req = layout.ctrlReq(slot);
    const rsp = layout.ctrlRsp(slot);
    writeCtrlSlot(words, req >> 2, msg);
    ctrl.addChain([{ addr: req, len: PV_CTRL_SLOT_SIZE }], [{ addr: rsp, len: PV_CTRL_SLOT_SIZE }], slot);
    this.ctrlCounters.requests++;
    this._kick(ctrl, VRDMA_CTRL_QUEUE, this.ctrlCounters, 1);
    this.stats.calls++;
    const deadline = performance.now() + this._timeoutMs;
    for (;;) {
      const u = ctrl.getUsed();
      if (u !== undefined) {
        this._ctrlFree.push(u.token);
        this.ctrlCounters.responses++;
        if (u.token !== slot) continue;
        if (u.len < 4) throw pvError('PV_ERR_BAD_REQUEST', 'the device refused the control request (used length 0)');
        return readCtrlSlot(words, rsp >> 2);
      }
      this._checkDevice();
      if (performance.now() >= deadline) {
        throw pvError('PV_ERR_TIMEOUT', `no control response from the device in ${this._timeoutMs} ms`);
      }
      this._wait(ctrl, deadline);
    }
  }

  dataSlot(): number {
    if (this._free.length === 0) {
      this.drainData();
      if (this._free.length === 0) {
        this.stats.dataFullWaits++;
        this.dataCounters.fullStalls++;
        this.push();
        const deadline = performance.now() + this._timeoutMs;
        for (;;) {
          this.drainData();
          if (this._free.length > 0) break;
          this._checkDevice();
          if (performance.now() >= deadline) {
            throw pvError('PV_ERR_TIMEOUT', `the device answered none of ${this.inFlight} data requests in time`);
          }
          this._wait(this._p.dataq, deadline);
        }
      }
    }
    // INVARIANT: a slot is free; it is taken at commit, so a throw before that leaves it free.
    return this._p.layout.dataReq(this._free[this._free.length - 1]) >> 2;
  }

  private _commitData(): void {
    const slot = this._free.pop();
    if (slot === undefined) throw pvError('PV_ERR_INVALID_ARG', 'commit without a slot from dataSlot()');
    const l = this._p.layout;
    this._p.dataq.addChain(
      [{ addr: l.dataReq(slot), len: PV_DATA_SLOT_SIZE }],
      [{ addr: l.dataRsp(slot), len: PV_DATA_SLOT_SIZE }],
      slot,
    );
    this._unpushed++;
    this.dataCounters.requests++;
  }

  push(): void {
    // With nothing queued this is a look (progress() calls it on every empty poll): no clock.
    if (this._unpushed === 0) return;
    const prev = stages.enter(Stage.RING);
    try {
      const n = this._unpushed;
      this._unpushed = 0;
      this._kick(this._p.dataq, VRDMA_DATA_QUEUE, this.dataCounters, n);
    } finally {
      stages.enter(prev);
    }
  }

  drainData(): number {
    const q = this._p.dataq;
    let u = q.getUsed();
    if (u === undefined) {
      // Nothing used: a device that broke (NEEDS_RESET) uses nothing any more. Noticing it here
      // (one load) lets pollCq flush the outstanding WRs instead of waiting for ever.
      this._peekDevice();
      return 0;
    }
    const prev = stages.enter(Stage.RING);
    const { layout, words } = this._p;
    let n = 0;
    try {
      for (; u !== undefined; u = q.getUsed()) {
        const slot = u.token;
        const w = layout.dataRsp(slot) >> 2;
        if (u.len < PV_DATA_SLOT_SIZE) {
          // The device used the chain without a response: report it as a refusal of that WR.
          this.stats.refused++;
          const r = layout.dataReq(slot) >> 2;
          // wr_id is in words 0-1 of both WQE kinds (DataHandler echoes it from there too).
          const d = r + PV_DATA_HDR_WORDS;
          const wrId = (words[d] >>> 0) + (words[d + 1] & 0x1fffff) * 2 ** 32;
          const status = ERROR_CATALOGUE.PV_ERR_BAD_REQUEST.status;
          encodeDataResponse(words, w, words[r + PvDataReqWord.OP], status, words[r + PvDataReqWord.QP], wrId);
        }
        this._sink(words, w);
        this._free.push(slot);
        n++;
      }
    } finally {
      this.dataCounters.responses += n;
      stages.enter(prev);
    }
    return n;
  }

  /** Publishes the `n` chains added; QueueNotify only if the device asked (avail_event / flags). */
  private _kick(q: VirtqDriver<number>, index: number, c: RingCounters, n: number): void {
    c.batches++;
    c.batchedItems += n;
    if (q.publish()) {
      this.stats.kicks++;
      c.notifies++;
      this._p.driver.notify(index);
    } else {
      c.suppressed++;
    }
  }

  /** PV_ERR_DISCONNECTED once the device needs a reset, failed, or was reset under us. */
  private _checkDevice(): void {
    const s = this._peekDevice();
    if (this._lost) {
      throw pvError('PV_ERR_DISCONNECTED', `the virtio-rdma device stopped (status 0x${s.toString(16)})`);
    }
  }

  /** Reads Status; the first time it shows the device stopped, marks the channel lost (onLost). */
  private _peekDevice(): number {
    const s = this._p.driver.status();
    if (this._lost) return s;
    if ((s & (VIRTIO_STATUS_DEVICE_NEEDS_RESET | VIRTIO_STATUS_FAILED)) !== 0 || (s & VIRTIO_STATUS_DRIVER_OK) === 0) {
      this._lost = true;
      this._p.onLost();
    }
    return s;
  }

  /**
   * Sleeps until `q` may have a used buffer: snapshot the wake word, clear the port, enable the
   * queue's interrupt (which re-checks used), then wait (spin first); interrupts off again after.
   */
  private _wait(q: VirtqDriver<number>, deadline: number): void {
    const ev = this._p.evtchn;
    const snapshot = ev.wakeSnapshot();
    ev.testAndClearPending(this._p.port);
    // enableInterrupts re-checks used: false means buffers arrived meanwhile, do not sleep.
    if (!q.enableInterrupts()) {
      q.disableInterrupts();
      return;
    }
    this.stats.sleeps++;
    const left = Math.max(0, deadline - performance.now());
    ev.waitForEvent(snapshot, { spinBudget: this._spin, timeoutMs: Math.min(left, 100) });
    q.disableInterrupts();
  }
}
