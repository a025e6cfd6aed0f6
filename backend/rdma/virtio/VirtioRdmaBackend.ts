/**
 * The virtio-rdma service of the driver domain, beside the vrdma one (RdmaBackend.ts) on the same
 * NICs, limits and serving loop. The toolstack plugs a `virtio-rdma` device as it plugs any split
 * device (both store directories); there is no xenbus handshake after that:
 *  - the backend directory `/local/domain/<me>/backend/virtio-rdma/<front>/<devid>` appearing is
 *    the device being plugged; the service then watches the guest's frontend directory until the
 *    guest has written `event-channel` (its last key: protocol/rdma/virtio/VirtioRdma.ts);
 *  - it reads `mmio-gpa`, `event-channel` and the optional `device` (every value is the guest's:
 *    parsed strictly, the window must be page-aligned and inside the guest's memory, the NIC one
 *    this domain serves) and builds the device (VirtioRdmaDevice.ts), which from then on talks to
 *    the guest only through its register block and its virtqueues;
 *  - the backend directory going away (unplug, or the guest died and the toolstack cleaned up)
 *    ends the device; a guest that lives on gets its outstanding WRs flushed first.
 * A device that cannot be built (a bad key) is logged and counted, and never retried until the
 * guest writes its keys again. Every device is polled by one Poller of the RingServer; the
 * doorbells its WRs owe are rung at the end of that poll (the vrdma poller ran earlier in the
 * round), so a posted WR reaches the NIC in the round that took it.
 */

import protobuf from 'protobufjs';
import type { Hypercalls, Unwatch } from '../../../protocol/Hypercalls.js';
import { CtrlCodec } from '../../../protocol/rdma/pv/CtrlCodec.js';
import { VIRTIO_RDMA_DEVICE_TYPE, VirtioRdmaKey } from '../../../protocol/rdma/virtio/VirtioRdma.js';
import { type DomId, evtchnPort, PAGE_SIZE } from '../../../protocol/Types.js';
import { frontendDir } from '../../../protocol/xenbus/XenbusPaths.js';
import type { RingServer } from '../../ring/RingServer.js';
import { listBackendEntries } from '../../xenbus/BackendDirWatcher.js';
import type { RdmaBackend } from '../RdmaBackend.js';
import { VirtioRdmaDevice } from './VirtioRdmaDevice.js';

const NUMBER = /^(0|[1-9][0-9]{0,9})$/;
const U64 = /^(0|[1-9][0-9]{0,15})$/;

/** Counters of the service. */
export interface VirtioRdmaBackendStats {
  connects: number;
  disconnects: number;
  refused: number;
  teardownErrors: number;
  sessions: number;
  resets: number;
  interrupts: number;
  malformed: number;
  brokenQueues: number;
}

interface Plugged {
  unwatch: Unwatch | undefined;
  dev: VirtioRdmaDevice | undefined;
  /** The keys a refused attempt saw (not retried until they change). */
  refusedKeys: string | undefined;
}

/** The service; see the file comment. */
export class VirtioRdmaBackend {
  readonly stats: VirtioRdmaBackendStats = {
    connects: 0,
    disconnects: 0,
    refused: 0,
    teardownErrors: 0,
    sessions: 0,
    resets: 0,
    interrupts: 0,
    malformed: 0,
    brokenQueues: 0,
  };
  private readonly _codec = new CtrlCodec(protobuf);
  private readonly _plugged = new Map<string, Plugged>();
  private _unwatch: Unwatch | undefined;
  private _scanning = Promise.resolve();
  private readonly _pollerId: number;
  private readonly _log: (line: string) => void;
  private readonly _batchLimit: number;

  constructor(
    private readonly _hc: Hypercalls,
    private readonly _rdma: RdmaBackend,
    private readonly _server: RingServer,
    opts: { log?: (line: string) => void; batchLimit?: number } = {},
  ) {
    this._log = opts.log ?? (() => {});
    this._batchLimit = opts.batchLimit ?? 64;
    this._pollerId = _server.addPoller({
      poll: () => this._poll(),
      outstanding: () => {
        for (const p of this._plugged.values()) if (p.dev?.outstanding) return true;
        return false;
      },
    });
  }

  /** The watched directory. */
  get dir(): string {
    return `/local/domain/${this._hc.domid}/backend/${VIRTIO_RDMA_DEVICE_TYPE}`;
  }

  /** The device of `front`'s `devid`, once built (tests and monitors). */
  device(front: number, devid: number): VirtioRdmaDevice | undefined {
    return this._plugged.get(`${front}/${devid}`)?.dev;
  }

  /** Devices built. */
  get connections(): number {
    let n = 0;
    for (const p of this._plugged.values()) if (p.dev !== undefined) n++;
    return n;
  }

  /** Starts watching (the first scan happens at once). */
  async start(): Promise<void> {
    this._unwatch = await this._hc.store.watch(this.dir, () => this._rescan());
  }

  /** Stops watching and ends every device. */
  async stop(): Promise<void> {
    await this._unwatch?.();
    await this._scanning;
    for (const key of [...this._plugged.keys()]) await this._unplug(key, false);
    this._server.removePoller(this._pollerId);
  }

  private _rescan(): void {
    this._scanning = this._scanning.then(() => this._scan()).catch((err: unknown) => this._log(`virtio-rdma: ${err}`));
  }

  private async _scan(): Promise<void> {
    const seen = new Set<string>();
    for (const { key, front, devid } of await listBackendEntries(this._hc.store, this.dir)) {
      seen.add(key);
      if (this._plugged.has(key)) continue;
      const p: Plugged = { unwatch: undefined, dev: undefined, refusedKeys: undefined };
      this._plugged.set(key, p);
      p.unwatch = await this._hc.store.watch(frontendDir(front, VIRTIO_RDMA_DEVICE_TYPE, devid), () => {
        this._scanning = this._scanning.then(() => this._tryConnect(key, front, devid)).catch(() => {});
      });
    }
    for (const key of [...this._plugged.keys()]) if (!seen.has(key)) await this._unplug(key, true);
  }

  private async _tryConnect(key: string, front: DomId, devid: number): Promise<void> {
    const p = this._plugged.get(key);
    if (p === undefined || p.dev !== undefined) return;
    const dir = frontendDir(front, VIRTIO_RDMA_DEVICE_TYPE, devid);
    const st = this._hc.store;
    const port = await st.tryRead(`${dir}/${VirtioRdmaKey.EVENT_CHANNEL}`).catch(() => undefined);
    if (port === undefined) return;
    const gpa = (await st.tryRead(`${dir}/${VirtioRdmaKey.MMIO_GPA}`).catch(() => undefined)) ?? '';
    const wanted = await st.tryRead(`${dir}/${VirtioRdmaKey.DEVICE}`).catch(() => undefined);
    const seen = `${port}|${gpa}|${wanted}`;
    if (p.refusedKeys === seen) return;
    try {
      if (!NUMBER.test(port) || !U64.test(gpa) || !Number.isSafeInteger(Number(gpa)) || Number(gpa) % PAGE_SIZE !== 0) {
        throw new Error(`bad keys: event-channel '${port.slice(0, 16)}', mmio-gpa '${gpa.slice(0, 24)}'`);
      }
      const nic = wanted === undefined ? this._rdma.defaultNic : this._rdma.nics.find((n) => n.name === wanted);
      if (nic === undefined) throw new Error(`this backend does not own ${String(wanted).slice(0, 32)}`);
      p.dev = new VirtioRdmaDevice(this._hc, {
        front,
        devid,
        mmioGpa: Number(gpa),
        guestPort: evtchnPort(Number(port)),
        nic,
        limits: this._rdma.limits,
        codec: this._codec,
        batchLimit: this._batchLimit,
      });
      this.stats.connects++;
      this._log(`virtio-rdma: dom${front}/${devid} plugged (window at ${gpa}, ${nic.name})`);
      this._hc.evtchn.kickSelf();
    } catch (err) {
      p.refusedKeys = seen;
      this.stats.refused++;
      this._log(`virtio-rdma: dom${front}/${devid} refused: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private async _unplug(key: string, mayFlush: boolean): Promise<void> {
    const p = this._plugged.get(key);
    if (p === undefined) return;
    this._plugged.delete(key);
    await p.unwatch?.().catch(() => {});
    const dev = p.dev;
    if (dev === undefined) return;
    // Flush only for a guest that lives on (unplugged); a dead guest's pages are not written.
    const alive =
      mayFlush && (await this._hc.store.tryRead(`/local/domain/${dev.front}`).catch(() => undefined)) !== undefined;
    const errors = dev.close(alive);
    for (const k of Object.keys(dev.stats) as (keyof typeof dev.stats)[]) this.stats[k] += dev.stats[k];
    this.stats.teardownErrors += errors.length;
    for (const e of errors) this._log(`virtio-rdma: teardown of dom${dev.front}: ${e}`);
    this.stats.disconnects++;
    this._log(`virtio-rdma: dom${key} unplugged`);
  }

  private _poll(): number {
    let work = 0;
    for (const p of this._plugged.values()) {
      const dev = p.dev;
      if (dev === undefined) continue;
      // The guest's trap and its kicks arrive on this port: clear it as the loop does its rings'.
      this._hc.evtchn.testAndClearPending(dev.port);
      work += dev.poll();
    }
    if (work > 0) this._rdma.ringDoorbells();
    return work;
  }
}
