/**
 * A simulated physical machine: it owns the host-wide hypervisor state (grant tables and event
 * channels of every domain in shared memory, the store) and the domains, each a Worker running
 * a program module. Domain 0 is the first domain created and is the driver domain by default.
 *
 * Lifecycle: `createDomain` starts a worker; when its program returns or throws, or when the
 * host crashes or destroys it, the host tears the domain down the way Xen's toolstack does:
 * its event channels are closed (peers see their ports go unbound and are woken), its grants are
 * ended (pages still mapped by a peer stay pinned until the peer unmaps), the pins it held as a
 * grantee are dropped, and its store subtree and watches are removed.
 *
 * Devices (HostDevices.ts): the host creates every NIC's state, one IOMMU context per NIC and
 * the fabric lock; a domain that lists a device in `pci` owns it until it dies, when the device
 * is released and its IOMMU cleared. With `deviceEngine: 'dedicated'` one device thread
 * (DeviceEngineThread.ts) runs every NIC's engine; otherwise engines run inline in the thread
 * that rings the doorbell. NVMe SSDs (`nvmes`) are owned the same way and always run inline;
 * their media files are closed (temporary ones removed) by `shutdown`. With `wireMailboxes`, a
 * NIC of this host may talk to a NIC of another host process (devices/rnic/RemoteWire.ts,
 * WireResponder.ts): inline engine only.
 */

import { MessageChannel, Worker } from 'node:worker_threads';
import { CONSOLE_PAGE_BYTES } from '../../protocol/console/ConsoleRing.js';
import { pvError } from '../../protocol/errors.js';
import type { StoreOps } from '../../protocol/Hypercalls.js';
import { StageWindow } from '../../protocol/stage/StageLedger.js';
import { DOM0, DOMID_MAX, type DomId, domId } from '../../protocol/Types.js';
import { shutdownPath } from '../../protocol/xenbus/control.js';
import { createDevicePaths, type DeviceSpec, removeDevicePaths } from '../../protocol/xenbus/XenbusPaths.js';
import type { AccelSpec } from '../devices/accel/HostAccels.js';
import { DeviceEngineThread } from '../devices/DeviceEngineThread.js';
import type { WireProfile } from '../devices/rnic/RnicFabric.js';
import { EvtchnSpace } from '../evtchn/EvtchnSpace.js';
import { GrantTableSpace } from '../grant/GrantTableSpace.js';
import { createMailbox } from '../link/Mailbox.js';
import { SharedArrayGuestMemory } from '../memory/SharedArrayGuestMemory.js';
import { registerHost, unregisterHost } from '../monitor/LiveHosts.js';
import { MonitorSpace } from '../monitor/MonitorSpace.js';
import type { FabricProfileName } from '../pcie/Profiles.js';
import { LocalStoreClient } from '../store/LocalStoreClient.js';
import { StoreServer } from '../store/StoreServer.js';
import { XenStore } from '../store/XenStore.js';
import { Domain, type DomainResult, type DomainSpec } from './Domain.js';
import type { DomainWorkerData, HostToDomain } from './DomainWorker.js';
import { type DeviceEngineMode, HostDevices, type NicSpec, type NvmeSpec } from './HostDevices.js';

/** Host-wide limits. */
export interface HostOptions {
  /** Name shown in logs and results. */
  readonly name?: string;
  /** Most domains alive at once (sizes the shared grant and event-channel spaces). */
  readonly maxDomains?: number;
  /** Grant-table entries per domain (each 4 KiB page granted needs one). */
  readonly grantEntriesPerDomain?: number;
  /** Event-channel ports per domain. */
  readonly portsPerDomain?: number;
  /** Print every domain's log lines to stdout as they arrive. */
  readonly echoConsole?: boolean;
  /** The host's RDMA NICs (`portId` defaults to index + 1). */
  readonly nics?: ReadonlyArray<NicSpec>;
  /**
   * The host's NVMe SSDs (`nvme0`, …): media of `sizeBytes` in a sparse temporary file, or
   * `backingFile`. A domain owns one with `pci: [{ device: 'nvme0', iommu }]`, as for a NIC.
   */
  readonly nvmes?: ReadonlyArray<NvmeSpec>;
  /**
   * The host's accelerators (`accel0`, …; devices/accel): device memory of `memBytes` (default
   * 64 MiB). Owned like an NVMe; an owner of both may DMA NVMe → accelerator directly (P2P).
   */
  readonly accels?: ReadonlyArray<AccelSpec>;
  /** Where device engines run: in the doorbell writer's thread (default) or one device thread. */
  readonly deviceEngine?: DeviceEngineMode;
  /** Wire model between the NICs (default ideal). */
  readonly wire?: WireProfile;
  /** PCIe timing of local device paths (default `ideal`: no cost; pcie/LocalFabric.ts). */
  readonly fabric?: FabricProfileName;
  /** Polls the dedicated engine makes before it sleeps when idle (default 1000). */
  readonly engineSpinBudget?: number;
  /**
   * Run every domain's and the device thread's stage ledger (protocol/stage/StageLedger.ts) and
   * return it with their results. It costs a clock read per stage switch, so a run that
   * measures latency or bandwidth leaves it off and the breakdown comes from a separate run.
   */
  readonly instrumentStages?: boolean;
  /**
   * Give every domain that runs NIC engines (it owns a device; inline engine) a wire mailbox
   * (link/Mailbox.ts), so a QP whose DEST_PORT is a NIC of ANOTHER host process works: the
   * domain thread's requester ships the request through it (devices/rnic/RemoteWire.ts) and the
   * host process serves it (`onWireMailbox`, WireMailbox.serveWireMailbox) over its host link.
   * Remote peers need the inline engine: with `deviceEngine: 'dedicated'` this is PV_ERR_CONFIG.
   */
  readonly wireMailboxes?: boolean;
  /**
   * Called with each wire mailbox as its domain is created (its first call waits for it), so the
   * host process can serve it; stop the server when the domain's `result` settles.
   */
  readonly onWireMailbox?: (domid: number, sab: SharedArrayBuffer) => void;
}

/** Default guest memory when a spec gives none: 16 MiB. */
export const DEFAULT_DOMAIN_MEMORY = 16 << 20;

export class Host {
  readonly name: string;
  readonly store = new XenStore();
  readonly grants: GrantTableSpace;
  readonly evtchn: EvtchnSpace;
  /** The toolstack's (privileged, dom0) view of the store. */
  readonly toolstack: StoreOps;
  /** NICs, their IOMMU contexts and who owns them. */
  readonly devices: HostDevices;
  /** The dedicated device thread, when `deviceEngine` is 'dedicated' and there are NICs. */
  readonly engineThread: DeviceEngineThread | undefined;
  private readonly _storeServer: StoreServer;
  private _engineStop: Promise<'none' | 'stopped' | 'terminated'> | undefined;
  private readonly _domains = new Map<number, Domain>();
  private readonly _maxDomains: number;
  private readonly _echo: boolean;
  private readonly _wireMailboxes: boolean;
  private readonly _onWireMailbox: ((domid: number, sab: SharedArrayBuffer) => void) | undefined;
  /** The stage window every ledger of this host follows (when it instruments stages). */
  readonly stageWindow: SharedArrayBuffer | undefined;
  /** Counters every domain thread publishes for monitors (HostMonitor.ts reads them). */
  readonly monitor: MonitorSpace;

  constructor(opts: HostOptions = {}) {
    this.name = opts.name ?? 'host0';
    this._maxDomains = opts.maxDomains ?? 32;
    this._echo = opts.echoConsole ?? false;
    this._wireMailboxes = opts.wireMailboxes === true;
    this._onWireMailbox = opts.onWireMailbox;
    if (this._wireMailboxes && opts.deviceEngine === 'dedicated') {
      throw pvError('PV_ERR_CONFIG', 'wireMailboxes (NICs of other hosts) need the inline device engine');
    }
    this.stageWindow = opts.instrumentStages === true ? new SharedArrayBuffer(StageWindow.BYTES) : undefined;
    this.grants = GrantTableSpace.create({
      maxDomains: this._maxDomains,
      entriesPerDomain: opts.grantEntriesPerDomain ?? 16384,
    });
    this.evtchn = EvtchnSpace.create({ maxDomains: this._maxDomains, portsPerDomain: opts.portsPerDomain ?? 256 });
    this.monitor = MonitorSpace.create({ maxDomains: this._maxDomains });
    // A domain sleeping in Atomics.wait only sees store messages once it returns to its event
    // loop: kick its wake word after every post so it returns promptly.
    this._storeServer = new StoreServer(this.store, { onPost: (domid) => this.evtchn.wake(domid) });
    this.toolstack = new LocalStoreClient(this.store, DOM0);
    this.devices = new HostDevices(opts);
    this.engineThread =
      this.devices.engine === 'dedicated' && this.devices.names().length > 0
        ? new DeviceEngineThread({
            nics: this.devices.allNics(),
            fabricLock: this.devices.fabricLock,
            wire: this.devices.wire,
            fabric: this.devices.fabric,
            spinBudget: opts.engineSpinBudget ?? 1000,
            stageWindow: this.stageWindow,
          })
        : undefined;
    // Seen by `pvio top` and snapshotAll() until shutdown().
    registerHost(this);
  }

  /** Live domains by id. */
  domains(): Domain[] {
    return [...this._domains.values()];
  }

  /** A live domain, or PV_ERR_NO_DOMAIN. */
  domain(id: number): Domain {
    const d = this._domains.get(id);
    if (!d) throw pvError('PV_ERR_NO_DOMAIN', `domain ${id} does not exist on ${this.name}`);
    return d;
  }

  /** Starts a domain running `spec.program`; the first one is dom0. */
  createDomain(spec: DomainSpec): Domain {
    const id = spec.domid !== undefined ? domId(spec.domid) : this._freeDomId();
    if (this._domains.has(id)) throw pvError('PV_ERR_CONFIG', `domain id ${id} is already in use`);
    if (id >= this._maxDomains) {
      throw pvError('PV_ERR_CONFIG', `domain id ${id} exceeds this host's maxDomains (${this._maxDomains})`);
    }
    const pci = spec.pci ?? [];
    const attachments = spec.attachments ?? [];
    this.devices.validate(spec.name, pci, attachments);
    const engineError = this.engineThread?.error;
    if (engineError !== undefined && pci.length > 0) {
      throw pvError('PV_ERR_CONFIG', `the device thread of ${this.name} failed: ${engineError.message}`);
    }
    const bytes = spec.memoryBytes ?? DEFAULT_DOMAIN_MEMORY;
    const memory = SharedArrayGuestMemory.create(id, bytes);
    this.store.introduceDomain(id);
    this.evtchn.resetDomain(id);
    // A reused id: end grants the previous owner left that nobody maps any more.
    this.grants.releaseDomain(id);
    this.monitor.openDomain(id);
    const devices = this.devices.workerData(pci, attachments);
    // A thread that runs NIC engines (it attaches NICs) may have to reach another host's NIC.
    const wireMailbox = this._wireMailboxes && devices.nics.length > 0 ? createMailbox() : undefined;
    const channel = new MessageChannel();
    this._storeServer.attach(id, channel.port1);
    const program = spec.program instanceof URL ? spec.program.href : spec.program;
    const consolePage = new SharedArrayBuffer(CONSOLE_PAGE_BYTES);
    const data: DomainWorkerData = {
      domid: id,
      name: spec.name,
      program,
      args: spec.args ?? {},
      memory: memory.buffer,
      grantBuffer: this.grants.buffer,
      grantConfig: this.grants.config,
      evtchnBuffer: this.evtchn.buffer,
      evtchnConfig: this.evtchn.config,
      storePort: channel.port2,
      peers: this.domains().map((d) => ({ domid: d.domid, buffer: d.memory.buffer })),
      devices: wireMailbox === undefined ? devices : { ...devices, wireMailbox },
      stageWindow: this.stageWindow,
      monitorBuffer: this.monitor.buffer,
      // One console page per domain (zeroed: every index starts at 0), read by its Domain.
      consolePage,
    };
    // The owner's identity map is programmed before its thread can touch the device.
    this.devices.assign(id, memory.size, pci);
    let worker: Worker;
    try {
      worker = new Worker(new URL('./DomainWorker.js', import.meta.url), {
        workerData: data,
        transferList: [channel.port2],
        stdout: false,
        stderr: false,
      });
    } catch (err) {
      this.devices.release(id);
      this.monitor.closeDomain(id);
      this._storeServer.detach(id);
      this.store.removeDomain(id);
      throw err;
    }
    // Read now: a Worker's threadId is -1 once it has exited, and teardown needs it.
    const threadId = worker.threadId;
    const domain = new Domain(
      id,
      spec.name,
      memory,
      worker,
      this._echo,
      () => this._teardown(id, threadId),
      consolePage,
    );
    if (wireMailbox !== undefined) this._onWireMailbox?.(id, wireMailbox);
    this._domains.set(id, domain);
    this._broadcast({ type: 'domain-added', domid: id, buffer: memory.buffer }, id);
    this.engineThread?.domainAdded(id, memory.buffer);
    return domain;
  }

  /** Kills a domain as a crash would (terminate, then clean up). Its result rejects. */
  async crashDomain(id: number): Promise<void> {
    await this.domain(id).kill('crashed');
  }

  /** Stops a domain deliberately (terminate, then clean up). */
  async destroyDomain(id: number): Promise<void> {
    await this.domain(id).kill('destroyed');
  }

  /**
   * Attaches a split device: writes both xenbus directories in state Initialising (the
   * toolstack's part of the handshake). The backend domain's driver picks it up by watching.
   */
  async addDevice(spec: DeviceSpec): Promise<void> {
    this.domain(spec.frontDomid);
    this.domain(spec.backDomid);
    await createDevicePaths(this.toolstack, spec);
  }

  /** Unplugs a split device: removes both directories. */
  async removeDevice(spec: DeviceSpec): Promise<void> {
    await removeDevicePaths(this.toolstack, spec);
  }

  /** Asks a domain to power off (`control/shutdown`) and waits for its result. */
  async shutdownDomain(id: number, reason = 'poweroff'): Promise<DomainResult> {
    const d = this.domain(id);
    await this.toolstack.write(shutdownPath(d.domid), reason);
    return d.result;
  }

  /**
   * Destroys every domain, guests first and dom0 last, then stops the device thread; says how
   * that thread ended ('none' without one).
   */
  async shutdown(): Promise<'none' | 'stopped' | 'terminated'> {
    unregisterHost(this);
    const order = this.domains().sort((a, b) => b.domid - a.domid);
    for (const d of order) await d.kill('destroyed');
    // Stopping twice (a second shutdown) waits for the first stop.
    this._engineStop ??= this.engineThread?.stop() ?? Promise.resolve('none');
    const how = await this._engineStop;
    // No thread can run an NVMe controller any more: close the media (idempotent).
    this.devices.closeMedia();
    return how;
  }

  private _freeDomId(): DomId {
    for (let i = 0; i <= DOMID_MAX && i < this._maxDomains; i++) {
      if (!this._domains.has(i)) return i as DomId;
    }
    throw pvError('PV_ERR_CONFIG', `all ${this._maxDomains} domain slots of ${this.name} are in use`);
  }

  private _broadcast(msg: HostToDomain, except: number): void {
    for (const d of this._domains.values()) {
      if (d.domid !== except) d.post(msg);
    }
  }

  /** Called once when a domain's worker has exited for any reason. */
  private _teardown(id: DomId, threadId: number): void {
    this._domains.delete(id);
    // A thread killed inside a NIC critical section leaves the fabric lock held: break it first.
    this.devices.breakLocksOfThread(threadId);
    // Its thread is gone: release the devices it owned and revoke extents on its memory first.
    this.devices.release(id);
    this.evtchn.closeDomain(id);
    this.grants.releaseDomain(id);
    // Its ring records go too (a ring it never tore down, a claim cut short by a crash).
    this.monitor.closeDomain(id);
    this._storeServer.detach(id);
    this.store.removeDomain(id);
    this._broadcast({ type: 'domain-removed', domid: id }, id);
    this.engineThread?.domainRemoved(id);
    void this._removeBackendDirsOf(id);
  }

  /** The toolstack removes the backend directories that served a dead frontend (unplug). */
  private async _removeBackendDirsOf(front: DomId): Promise<void> {
    for (const d of this._domains.values()) {
      const base = `/local/domain/${d.domid}/backend`;
      const types = await this.toolstack.directory(base).catch(() => [] as string[]);
      for (const type of types) {
        const dir = `${base}/${type}/${front}`;
        if ((await this.toolstack.tryRead(dir)) !== undefined) await this.toolstack.rm(dir).catch(() => {});
      }
    }
  }
}
