/**
 * A whole paravirtual RDMA host in ONE thread, built from the real pieces: a XenStore with a
 * LocalStoreClient per domain, real grant tables (GrantTableSpace + SimGrantOps), event
 * channels (EvtchnSpace + SimEvtchnOps) and SharedArrayGuestMemory for dom0 and the guests, the
 * real NIC model (RnicDevice behind an IommuContext that dom0 owns in translate mode, inline
 * engine) with the real native driver, and the real backend (RdmaBackend + RingServer +
 * BackendDirWatcher). Guests connect with the real frontend (`openParavirt`), whose waits run
 * the backend's serving round instead of sleeping (the one thread must do both).
 *
 * Shared by the backend tests (test/backend/rdma/helpers/PvWorld.ts re-exports it) and the
 * fuzzer's rdma target, which wraps dom0's grant operations (`wrapDom0Grant`) to record every
 * map and copy the backend makes.
 */

import { RdmaBackend, type RdmaBackendOptions } from '../../backend/rdma/RdmaBackend.js';
import { RingServer } from '../../backend/ring/RingServer.js';
import { BackendDirWatcher } from '../../backend/xenbus/BackendDirWatcher.js';
import { RdmaNicDriver } from '../../drivers/rdma-nic/RdmaNicDriver.js';
import { openParavirt, type ParavirtProvider } from '../../frontend/verbs/paravirt/ParavirtProvider.js';
import { RnicDevice } from '../../hypervisor-sim/devices/rnic/RnicDevice.js';
import { RnicFabric } from '../../hypervisor-sim/devices/rnic/RnicFabric.js';
import { EvtchnSpace } from '../../hypervisor-sim/evtchn/EvtchnSpace.js';
import { GrantTableSpace } from '../../hypervisor-sim/grant/GrantTableSpace.js';
import type { SimGrantOps } from '../../hypervisor-sim/grant/SimGrantOps.js';
import { IommuContext } from '../../hypervisor-sim/iommu/IommuContext.js';
import { MemoryDirectory } from '../../hypervisor-sim/memory/MemoryDirectory.js';
import { SharedArrayGuestMemory } from '../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import { LocalStoreClient } from '../../hypervisor-sim/store/LocalStoreClient.js';
import { XenStore } from '../../hypervisor-sim/store/XenStore.js';
import type { GrantOps } from '../../protocol/Hypercalls.js';
import type { DeviceAttachment, PciFunction, Transport } from '../../protocol/Pci.js';
import { VRDMA_DEVICE_TYPE } from '../../protocol/rdma/pv/PvConstants.js';
import { DOM0, type DomId, type GuestPhysAddr, type Iova } from '../../protocol/Types.js';
import { createDevicePaths, removeDevicePaths } from '../../protocol/xenbus/XenbusPaths.js';
import { type Dom, makeDom } from '../core/WorldDomain.js';

export type { Dom } from '../core/WorldDomain.js';

/** Options of a world. */
export interface PvWorldOptions {
  readonly guests?: number;
  readonly guestPages?: number;
  /** NICs dom0 owns (default 1). */
  readonly nics?: number;
  readonly backend?: RdmaBackendOptions;
  /** Wraps dom0's grant operations (what the backend calls), e.g. with a recorder. */
  readonly wrapDom0Grant?: (inner: SimGrantOps) => GrantOps;
  /** Grant entries per domain (default 8192). */
  readonly grantEntries?: number;
}

/** Lets queued store replies and watch deliveries run. */
export async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

/** Polls `pred` between macrotasks (serving the backend each time); fails after `ms`. */
export async function until(world: PvWorld, pred: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    world.serve();
    await settle(1);
  }
}

/** The world; see the file comment. */
export class PvWorld {
  readonly xs = new XenStore();
  readonly toolstack: LocalStoreClient;
  readonly dom0: Dom;
  readonly guests: Dom[] = [];
  /** nic0 (the backend's default NIC), its IOMMU context and driver. */
  readonly nic: RnicDevice;
  readonly iommu: IommuContext;
  readonly driver: RdmaNicDriver;
  /** Every NIC: nic0, nic1, … (port ids 7, 8, …). */
  readonly nics: Array<{ dev: RnicDevice; iommu: IommuContext; driver: RdmaNicDriver }> = [];
  readonly server: RingServer;
  readonly backend: RdmaBackend;
  readonly watcher: BackendDirWatcher;
  readonly log: string[] = [];
  /** The host-wide grant tables (to inspect entries). */
  readonly grants: GrantTableSpace;

  private constructor(opts: PvWorldOptions) {
    const n = opts.guests ?? 2;
    const grants = GrantTableSpace.create({ maxDomains: n + 1, entriesPerDomain: opts.grantEntries ?? 8192 });
    this.grants = grants;
    const evtchn = EvtchnSpace.create({ maxDomains: n + 1, portsPerDomain: 64 });
    const memories = new MemoryDirectory();
    const mem0 = memories.addMemory(SharedArrayGuestMemory.create(DOM0, 16384 * 4096));
    const iommus = new Map<string, IommuContext>();
    for (let k = 0; k < (opts.nics ?? 1); k++) {
      const ctx = IommuContext.attach(IommuContext.create({ device: `nic${k}`, maxExtents: 256 }), memories);
      ctx.assign(DOM0, mem0.size, 'translate');
      iommus.set(`nic${k}`, ctx);
    }
    const spaces = { xs: this.xs, grants, evtchn, memories };
    this.dom0 = makeDom(spaces, DOM0, mem0, iommus, opts.wrapDom0Grant);
    for (let i = 1; i <= n; i++) {
      const mem = memories.addMemory(SharedArrayGuestMemory.create(i as DomId, (opts.guestPages ?? 1024) * 4096));
      this.guests.push(makeDom(spaces, i as DomId, mem));
    }
    this.toolstack = new LocalStoreClient(this.xs, DOM0);
    const fabric = new RnicFabric(RnicFabric.createLock());
    for (const [name, iommu] of iommus) {
      const k = this.nics.length;
      const dev = new RnicDevice(
        RnicDevice.create({ name, portId: 7 + k, maxQp: 64, maxCq: 64, maxMr: 256, maxQpWr: 1024, maxCqe: 4096 }),
        iommu,
        fabric,
      );
      const pci: PciFunction = {
        name,
        kind: 'rdma-nic',
        bdf: `0000:0${3 + k}:00.0`,
        bars: [dev.mmio('inline')],
        // Translate mode maps dom0's own memory 1:1.
        dmaAddr: (gpa: GuestPhysAddr) => gpa as number as Iova,
      };
      this.nics.push({ dev, iommu, driver: new RdmaNicDriver(pci, mem0) });
    }
    this.nic = this.nics[0].dev;
    this.iommu = this.nics[0].iommu;
    this.driver = this.nics[0].driver;
    this.server = new RingServer(this.dom0.evtchn, { spinBudget: 0, idleTimeoutMs: 1 });
    const served = this.nics.map((n) => ({ name: n.dev.name, driver: n.driver }));
    this.backend = new RdmaBackend(this.dom0.hc, served, this.server, {
      log: (line) => this.log.push(line),
      ...opts.backend,
      limits: { bounceBytes: 2 << 20, ...opts.backend?.limits },
    });
    this.watcher = new BackendDirWatcher(this.dom0.store, DOM0, VRDMA_DEVICE_TYPE, this.backend.hooks);
  }

  /** Builds a world and starts the backend's directory watch. */
  static async create(opts: PvWorldOptions = {}): Promise<PvWorld> {
    const w = new PvWorld(opts);
    await w.watcher.start();
    return w;
  }

  /** One serving round of the backend (what its thread does when woken). */
  serve(rounds = 1): number {
    let work = 0;
    for (let i = 0; i < rounds; i++) work += this.server.serveOnce();
    return work;
  }

  /** The toolstack plugs a vrdma device for `guest`. */
  async plug(guest: Dom, devid = 0): Promise<void> {
    await createDevicePaths(this.toolstack, {
      type: VRDMA_DEVICE_TYPE,
      devid,
      frontDomid: guest.domid,
      backDomid: DOM0,
    });
  }

  /** The toolstack removes the device (unplug, or what it does when the guest dies). */
  async unplug(guest: Dom, devid = 0): Promise<void> {
    await removeDevicePaths(this.toolstack, {
      type: VRDMA_DEVICE_TYPE,
      devid,
      frontDomid: guest.domid,
      backDomid: DOM0,
    });
  }

  /** Plugs and connects a guest's device with the real frontend. */
  async open(
    guest: Dom,
    transport: Transport = 'paravirt',
    devid = 0,
    idle: () => void = () => this.serve(),
    device = 'nic0',
    timeoutMs = 2000,
  ): Promise<ParavirtProvider> {
    await this.plug(guest, devid);
    const att: DeviceAttachment = { device, kind: 'rdma-nic', transport, devid, backendDomid: DOM0 };
    return openParavirt(guest.hc, att, { idle, connectTimeoutMs: 5000, timeoutMs });
  }

  /** Stops the watch (every served device is destroyed) and closes the store clients. */
  async close(): Promise<void> {
    await this.watcher.stop();
    this.backend.close();
    for (const d of [this.dom0, ...this.guests]) d.store.close();
    this.toolstack.close();
  }
}
