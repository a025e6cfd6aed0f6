/**
 * One virtio-rdma device in the driver domain: the device model of a guest's `virtio-rdma`
 * (protocol/rdma/virtio/VirtioRdma.ts), vhost-like. It builds the virtio-mmio register block in
 * the page the guest named (reached through the privileged foreign map, as everything of the
 * guest is), binds the event channel that carries the guest's traps and our interrupts, and is
 * polled by the driver domain's serving loop (VirtioRdmaBackend.ts):
 *  - register and Status writes are serviced first (MmioDevice validates every one);
 *  - DRIVER_OK with both queues ready starts a session: a GuestSession in `gpa` addressing (the
 *    guest names memory by guest-physical address; MRs and CQ rings are mapped for the NIC
 *    through the foreign map) with the SAME CtrlHandler and DataHandler as the vrdma backend, so
 *    both transports run the same command checks, WQE checks, limits and NIC;
 *  - a reset (Status 0), FAILED, or DEVICE_NEEDS_RESET (a queue the guest broke) ends the
 *    session: everything the guest had on the NIC is destroyed and every mapping released, as a
 *    virtio device forgets all state at reset;
 *  - kicked queues are served (VirtqServer.ts) up to a batch per round; a queue left with work
 *    (batch full, or a deferred WR) is served next round without a kick.
 * Nothing the guest writes can make `poll` throw: register writes come back refused with a code,
 * chains are validated by the queues, and command errors are answered in the response.
 */

import type { Hypercalls } from '../../../protocol/Hypercalls.js';
import type { CtrlCodec } from '../../../protocol/rdma/pv/CtrlCodec.js';
import { PV_CTRL_SLOT_SIZE, PV_DATA_SLOT_SIZE } from '../../../protocol/rdma/pv/PvConstants.js';
import { QpAttrMask, QpState } from '../../../protocol/rdma/Verbs.js';
import {
  encodeConfig,
  VRDMA_CTRL_QUEUE,
  VRDMA_DATA_QUEUE,
  VRDMA_QUEUE_NUM_MAX,
  VRDMA_QUEUES,
} from '../../../protocol/rdma/virtio/VirtioRdma.js';
import type { DomId, EvtchnPort } from '../../../protocol/Types.js';
import {
  featureBit,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
} from '../../../protocol/virtio/DeviceStatus.js';
import { MMIO_REG_BYTES } from '../../../protocol/virtio/MmioTransport.js';
import { foreignMemoryMap } from '../../virtio/ForeignMap.js';
import { type GuestMemoryMap, newTranslation, type Translation } from '../../virtio/GuestMemoryMap.js';
import { MmioDevice } from '../../virtio/MmioDevice.js';
import { CtrlHandler } from '../CtrlHandler.js';
import { DataHandler } from '../DataHandler.js';
import { GuestSession, type ServedNic } from '../GuestSession.js';
import { guestMaxCqe, type VrdmaLimits } from '../Limits.js';
import { VirtqServer } from './VirtqServer.js';

/** Features the device offers: split or packed queues, EVENT_IDX; no indirect tables (one slot each way). */
export const VIRTIO_RDMA_FEATURES =
  featureBit(VIRTIO_F_VERSION_1) | featureBit(VIRTIO_F_EVENT_IDX) | featureBit(VIRTIO_F_RING_PACKED);

/** Register and Status writes serviced per device per round. */
const MAX_REG_WRITES_PER_ROUND = 16;

/** What the backend found in the store for one device. */
export interface VirtioRdmaDeviceInit {
  readonly front: DomId;
  readonly devid: number;
  /** Guest-physical address of the register page (validated by the caller: page-aligned). */
  readonly mmioGpa: number;
  /** The guest's unbound port for this domain. */
  readonly guestPort: EvtchnPort;
  readonly nic: ServedNic;
  readonly limits: VrdmaLimits;
  readonly codec: CtrlCodec;
  /** Chains served per queue per round. */
  readonly batchLimit: number;
}

/** Counters of one device (summed into the backend's at close). */
export interface VirtioRdmaDeviceStats {
  sessions: number;
  resets: number;
  interrupts: number;
  malformed: number;
  brokenQueues: number;
}

/** One device; see the file comment. */
export class VirtioRdmaDevice {
  readonly front: DomId;
  readonly devid: number;
  readonly stats: VirtioRdmaDeviceStats = { sessions: 0, resets: 0, interrupts: 0, malformed: 0, brokenQueues: 0 };
  readonly mmio: MmioDevice;
  private readonly _port: EvtchnPort;
  private _session: GuestSession | undefined;
  private _servers: VirtqServer[] = [];
  private readonly _pending = [false, false];

  /** PV_ERR_* from the foreign map (no such guest, window outside its memory) or the event channel. */
  constructor(
    private readonly _hc: Hypercalls,
    private readonly _init: VirtioRdmaDeviceInit,
  ) {
    this.front = _init.front;
    this.devid = _init.devid;
    const memory = foreignMemoryMap(_hc.foreign, _init.front);
    const t = newTranslation();
    memory.translate(_init.mmioGpa, MMIO_REG_BYTES, true, t);
    const nic = _init.nic;
    const l = _init.limits;
    // ORDER: bind before the register block exists. The guest starts writing registers (each
    // write traps through this channel) the moment it sees MagicValue.
    this._port = _hc.evtchn.bindInterdomain(_init.front, _init.guestPort);
    try {
      this.mmio = this._build(memory, t, nic, l);
    } catch (err) {
      _hc.evtchn.close(this._port);
      throw err;
    }
  }

  private _build(memory: GuestMemoryMap, t: Translation, nic: ServedNic, l: VrdmaLimits): MmioDevice {
    return new MmioDevice({
      offered: VIRTIO_RDMA_FEATURES,
      memory,
      queues: VRDMA_QUEUES,
      queueNumMax: VRDMA_QUEUE_NUM_MAX,
      window: { buffer: t.bytes.buffer as SharedArrayBuffer, offset: t.bytes.byteOffset + t.offset },
      config: encodeConfig({
        portId: nic.driver.portId,
        maxQp: l.maxQp,
        maxCq: l.maxCq,
        maxMr: l.maxMr,
        maxPinnedPages: l.maxPinnedPages,
        maxOutstandingWr: l.maxOutstandingWr,
        maxCqe: guestMaxCqe(nic.driver.caps.maxCqe),
        maxQpWr: nic.driver.caps.maxQpWr,
      }),
    });
  }

  /** The local port (its pending bit is cleared by the serving loop's owner). */
  get port(): EvtchnPort {
    return this._port;
  }

  /** The live session (DRIVER_OK seen, not reset since), if any. */
  get session(): GuestSession | undefined {
    return this._session;
  }

  /** True while a queue has work left over from the last round (batch full or a deferred WR). */
  get outstanding(): boolean {
    return this._pending[0] || this._pending[1];
  }

  /** One round: registers, session lifecycle, kicked queues. Returns the work done. */
  poll(): number {
    const dev = this.mmio;
    let work = 0;
    // Bounded: a guest that posts writes without waiting for their acks gets a few per round,
    // not the whole loop (the other guests' queues are served in the same round).
    for (let i = 0; i < MAX_REG_WRITES_PER_ROUND && dev.service() !== undefined; i++) work++;
    if (this._session !== undefined && !dev.live) {
      this.stats.resets++;
      this._endSession();
    }
    if (this._session === undefined) {
      if (!dev.live || dev.virtq(VRDMA_CTRL_QUEUE) === undefined || dev.virtq(VRDMA_DATA_QUEUE) === undefined) {
        return work;
      }
      this._startSession();
    }
    for (const q of dev.kicked()) if (q < this._pending.length) this._pending[q] = true;
    for (let q = 0; q < this._servers.length; q++) {
      const srv = this._servers[q];
      // A broken queue serves nothing until the reset that ends the session.
      if (!this._pending[q] || srv.brokenBy !== undefined) continue;
      const { done, interrupt } = srv.serve(this._init.batchLimit);
      work += done;
      // Work left: the batch filled, or a WR waits for room in the device. Otherwise the queue
      // is empty and (EVENT_IDX) asked for the next kick when pop found it so.
      this._pending[q] = srv.brokenBy === undefined && (done >= this._init.batchLimit || srv.stalled);
      if (interrupt) this._interrupt(q);
      if (srv.brokenBy !== undefined) {
        this.stats.brokenQueues++;
        // The mmio device says DEVICE_NEEDS_RESET now, not at the guest's next register write.
        dev.service();
      }
    }
    return work;
  }

  /**
   * Ends the device (unplug, the guest died, shutdown). `flush`: the guest lives on, so its QPs
   * go to ERR first and every WR outstanding completes with WR_FLUSH_ERR in its CQ ring (still
   * mapped). Returns the errors met (never throws).
   */
  close(flush: boolean): string[] {
    const errors: string[] = [];
    const s = this._session;
    if (flush && s !== undefined) {
      for (const [h, qp] of s.qps.entries()) {
        try {
          s.driver.modifyQp(qp.qpn, { qpState: QpState.ERR }, QpAttrMask.STATE);
        } catch (err) {
          errors.push(`QP ${h} to ERR: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    }
    errors.push(...this._endSession());
    try {
      this._hc.evtchn.close(this._port);
    } catch (err) {
      errors.push(`closing the event channel: ${err instanceof Error ? err.message : String(err)}`);
    }
    return errors;
  }

  private _startSession(): void {
    const s = new GuestSession(this._hc, this.front, 'zero-copy', this._init.nic, this._init.limits, 'gpa');
    const ctrl = new CtrlHandler(s, this._init.codec);
    const data = new DataHandler(s);
    const dev = this.mmio;
    // INVARIANT: poll checked both queues are ready.
    const cq = dev.virtq(VRDMA_CTRL_QUEUE) as NonNullable<ReturnType<MmioDevice['virtq']>>;
    const dq = dev.virtq(VRDMA_DATA_QUEUE) as NonNullable<ReturnType<MmioDevice['virtq']>>;
    this._servers = [
      new VirtqServer(cq, ctrl.handle, PV_CTRL_SLOT_SIZE),
      new VirtqServer(dq, data.handle, PV_DATA_SLOT_SIZE),
    ];
    // Shown by `pvio top` beside the vrdma rings while the session lives.
    this._servers[0].counters.publish(this._hc.monitor, 'virtio-ctrl', this.front, 'back');
    this._servers[1].counters.publish(this._hc.monitor, 'virtio-data', this.front, 'back');
    this._session = s;
    this._pending[0] = this._pending[1] = true;
    this.stats.sessions++;
  }

  private _endSession(): string[] {
    const s = this._session;
    for (const srv of this._servers) {
      this.stats.malformed += srv.malformed;
      srv.counters.unpublish();
    }
    this._servers = [];
    this._session = undefined;
    this._pending[0] = this._pending[1] = false;
    return s === undefined ? [] : s.destroy();
  }

  private _interrupt(q: number): void {
    this.stats.interrupts++;
    this.mmio.interrupt(q);
    // The guest sleeps on its event channel: the interrupt is injected through it.
    this._hc.evtchn.notify(this._port);
  }
}
