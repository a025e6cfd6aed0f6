/**
 * SmartIO Device Lending in one process (CC'20 §4–6): N simulated hosts linked by NTBs, one PCIe
 * fabric (PcieCluster) and one device registry. A host lends a NIC; another borrows it, and on
 * the borrower the NIC appears as a local PCIe device named `nic0@A` that any of its domains can
 * own — natively (IOMMU bypass) or passed through to a guest (translate) — with the UNCHANGED
 * RdmaNicDriver:
 *
 * ```
 *  borrower B                               lender A
 *  driver ─ MMIO ─► rc ─► sw ─► ntb-A ═══ BAR window ═══► ntb-B ─► sw ─► nic0 BAR 0
 *  B memory ◄─ IOMMU(nic0@A) ◄─ rc ◄─ sw ◄─ ntb-A ◄═══ DMA window ═══ ntb-B ◄─ sw ◄─ nic0 DMA
 * ```
 * `borrow` opens both windows (borrower side: a window onto the NIC's BAR; lender side: a DMA
 * window onto the borrower's bus addresses), creates the borrower's IOMMU context and lease
 * record for the lease, and makes `nic0@A` assignable on the borrower (LentDevices). Domains
 * created AFTER the borrow attach it (so create them after borrowing).
 *
 * Returning: the registry refuses a plain return while `inUse` (queued WRs, an attached domain).
 * A forced return (or a revocation) first flushes every QP — outstanding WRs complete with
 * WR_FLUSH_ERR while the windows are open — then ends the lease record (later MMIO throws
 * PV_ERR_LEND_REVOKED, DMA faults), closes the windows and resets the function.
 *
 * NVMe SSDs (LentNvme.ts; shared use, one I/O queue pair per host: SharedNvme.ts) and
 * accelerators (LentAccel.ts) are lent the same way; P2P between borrowed devices is ClusterP2p.ts,
 * shared memory segments ClusterSegments.ts — each file describes its part.
 *
 * NICs of one borrower share its fabric lock (WRs run inline in the doorbell writer's thread),
 * so hosts run inline engines, NIC port ids are cluster-unique, and a lent NIC's RDMA peers are
 * NICs of the borrower.
 */

import { pvError } from '../../protocol/errors.js';
import type { NvmeState } from '../devices/nvme/NvmeDevice.js';
import { Host } from '../domain/Host.js';
import { IommuContext } from '../iommu/IommuContext.js';
import { InMemoryRegistry } from '../lending/InMemoryRegistry.js';
import { SegmentRegistry } from '../lending/SegmentRegistry.js';
import type { DeviceRegistry, RegistryEvent } from '../lending/Types.js';
import { MemoryDirectory } from '../memory/MemoryDirectory.js';
import { PcieCluster } from '../pcie/PcieCluster.js';
import type { FabricProfileName } from '../pcie/Profiles.js';
import { ClusterP2p } from './ClusterP2p.js';
import {
  ClusterSegments,
  type DeviceSegmentWindow,
  type SegmentExport,
  type SegmentWindow,
} from './ClusterSegments.js';
import {
  type Active,
  activeKey,
  type ClusterBorrowOptions,
  type ClusterLendOptions,
  type ClusterOptions,
  type LentHandle,
  type LentKind,
  type Member,
} from './ClusterTypes.js';
import { type ApertureSpace, apertureSpaces, ntbNode, planFabric, planHostOf, planHosts } from './FabricPlan.js';
import type { LentAccelData } from './LentAccel.js';
import { LentDevices } from './LentDevices.js';
import type { LentNicData } from './LentNic.js';
import type { LentNvmeData } from './LentNvme.js';
import { LentStats } from './LentStats.js';
import { peerKey } from './NtbDmaResolver.js';
import { p2pInitiatorKind } from './P2pNvme.js';
import type { P2pMapping } from './P2pWindows.js';
import { createSegmentPool, defaultSegmentBytes, type SegmentPoolData } from './SegmentPool.js';
import { SharedNvmeManager } from './SharedNvme.js';

export type {
  ClusterBorrowOptions,
  ClusterHostSpec,
  ClusterLendOptions,
  ClusterOptions,
  LentHandle,
  LentKind,
} from './ClusterTypes.js';

/** A cluster of hosts with Device Lending (see the file comment). */
export class Cluster {
  readonly registry: DeviceRegistry;
  readonly fabric: PcieCluster;
  readonly profile: FabricProfileName;
  private readonly _members = new Map<string, Member>();
  private readonly _apertures: Map<string, ApertureSpace>;
  private readonly _offers = new Map<string, { host: string; device: string; kind: LentKind }>();
  /** Every accelerator's device memory, by `host/endpoint` (P2P targets; NtbDmaData.peers). */
  private readonly _peers: { key: string; mem: SharedArrayBuffer }[] = [];
  /** P2P mappings between borrowed devices (ClusterP2p.ts). */
  private readonly _p2pLayer: ClusterP2p;
  /** Lender-side queue managers of shareable NVMe SSDs, by registry id. */
  private readonly _managers = new Map<string, SharedNvmeManager>();
  private readonly _active = new Map<string, Active>();
  private readonly _unwatch: () => void;
  private _bdfs = 0;
  /** Every host's segment pool (NtbDmaData.segments) and the segment layer. */
  private readonly _segPools: SegmentPoolData[] = [];
  private readonly _segs: ClusterSegments;
  /** Exported segments and their mappings (program-side handles). */
  readonly segments = new SegmentRegistry();

  constructor(opts: ClusterOptions) {
    this.profile = opts.profile ?? 'ideal';
    this.registry = opts.registry ?? new InMemoryRegistry();
    const names = opts.hosts.map((h) => h.name);
    const links = opts.links ?? names.flatMap((a, i) => names.slice(i + 1).map((b) => [a, b] as const));
    const plan = planHosts(opts.hosts);
    this.fabric = PcieCluster.create(planFabric(plan.map(planHostOf), links));
    this._apertures = apertureSpaces(this.fabric, names);
    for (const p of plan) {
      const host = new Host({
        ...p.spec.options,
        name: p.spec.name,
        nics: p.nics,
        nvmes: p.spec.nvmes,
        accels: p.spec.accels,
        deviceEngine: 'inline',
      });
      for (const a of host.devices.accelNames()) {
        this._peers.push({ key: peerKey(p.spec.name, a), mem: host.devices.accelData(a).state.mem });
      }
      const lending = new LentDevices(host.devices.fabricLock, host.devices.wire, () => this._memories(p.spec.name));
      host.devices.attachLending(lending);
      this._members.set(p.spec.name, { host, lending, ramBytes: p.ramBytes });
    }
    for (const p of plan) {
      const bytes = p.spec.segmentBytes ?? defaultSegmentBytes(p.ramBytes);
      if (bytes > 0) this._segPools.push(createSegmentPool(p.spec.name, p.ramBytes, bytes));
    }
    this._p2pLayer = new ClusterP2p(this.fabric, this._peers, (host, ntb, node, size, peerBase, slots) =>
      this._open(host, ntb, node, size, peerBase, slots),
    );
    this._segs = new ClusterSegments({
      fabric: this.fabric,
      registry: this.segments,
      pools: this._segPools,
      open: (host, peer, size, peerBase, out) => this._p2pLayer.openWindow(host, peer, size, peerBase, out),
    });
    this._unwatch = this.registry.watch((e) => this._onEvent(e));
  }

  /** The host called `name`. */
  host(name: string): Host {
    return this._member(name).host;
  }

  /** Host `name`'s lending state (borrowed devices, their owners and IOMMU contexts). */
  lending(name: string): LentDevices {
    return this._member(name).lending;
  }

  /**
   * Offers device `device` of `host` (a NIC, an NVMe SSD or an accelerator) in the registry; returns its id
   * (`nic0@A`). `shareable` (NVMe only): several hosts may borrow it at once, one I/O queue pair
   * each, the lender keeping the admin queue (SharedNvme.ts).
   */
  async lend(host: string, device: string, opts: ClusterLendOptions = {}): Promise<string> {
    const m = this._member(host);
    const d = m.host.devices;
    const kind: LentKind | undefined = d.nvmeNames().includes(device)
      ? 'nvme'
      : d.accelNames().includes(device)
        ? 'accel'
        : d.names().includes(device)
          ? 'rdma-nic'
          : undefined;
    if (kind === undefined)
      throw pvError('PV_ERR_CONFIG', `${host} has no NIC, NVMe SSD or accelerator named ${device}`);
    if (opts.shareable === true && kind !== 'nvme') {
      throw pvError('PV_ERR_NOT_SUPPORTED', `only NVMe SSDs are lent shareable`);
    }
    const owner = d.owner(device);
    if (owner !== undefined) throw pvError('PV_ERR_LEND_IN_USE', `${device} of ${host} is owned by domain ${owner}`);
    const id = `${device}@${host}`;
    // PCI buses as HostDevices numbers them: NICs, then SSDs, then accelerators, from bus 3.
    const index =
      kind === 'rdma-nic'
        ? d.names().indexOf(device)
        : kind === 'nvme'
          ? d.names().length + d.nvmeNames().indexOf(device)
          : d.names().length + d.nvmeNames().length + d.accelNames().indexOf(device);
    const bdf = `0000:${(3 + index).toString(16).padStart(2, '0')}:00.0`;
    const queues = kind === 'nvme' ? d.nvmeData(device).state.sizes.maxIoQueues : 1;
    const shareable = opts.shareable === true;
    await this.registry.register({ id, owner: host, kind, bdf, shareable, queues });
    m.lending.markLentOut(device, 'offered for lending');
    this._offers.set(id, { host, device, kind });
    return id;
  }

  /** Withdraws an offer nobody holds (PV_ERR_LEND_BUSY otherwise); the lender may use it again. */
  async withdraw(id: string): Promise<void> {
    const offer = this._offers.get(id);
    if (offer === undefined) throw pvError('PV_ERR_LEND_NOT_FOUND', `no device ${id} was lent through this cluster`);
    await this.registry.unregister(id);
    this._offers.delete(id);
    this._managers.get(id)?.stop();
    this._managers.delete(id);
    this._member(offer.host).lending.clearLentOut(offer.device);
  }

  /** Borrows `id` for `byHost`, exclusively or (shareable NVMe) one queue pair (see the file comment). */
  async borrow(id: string, byHost: string, opts: ClusterBorrowOptions = {}): Promise<LentHandle> {
    const offer = this._offers.get(id);
    if (offer === undefined) throw pvError('PV_ERR_LEND_NOT_FOUND', `no device ${id} was lent through this cluster`);
    const b = this._member(byHost);
    if (byHost === offer.host) throw pvError('PV_ERR_INVALID_ARG', `${byHost} owns ${id}: use ${offer.device} locally`);
    if (this._active.has(activeKey(id, byHost))) throw pvError('PV_ERR_LEND_BUSY', `${byHost} already holds ${id}`);
    const port = this.fabric.ports(offer.host).find((p) => p.peerHost === byHost);
    if (port === undefined) throw pvError('PV_ERR_PCIE_UNROUTABLE', `no NTB links ${offer.host} and ${byHost}`);
    const dmaBytes = opts.dmaWindowBytes ?? b.ramBytes;
    if (!Number.isSafeInteger(dmaBytes) || dmaBytes <= 0 || dmaBytes > b.ramBytes) {
      throw pvError('PV_ERR_INVALID_ARG', `dmaWindowBytes must be in [1, ${b.ramBytes}]`);
    }
    const mode = opts.mode ?? 'exclusive';
    const lease = await this.registry.borrow(id, byHost, { mode });
    const slots: Active['slots'] = [];
    try {
      const ep = this.fabric.host(offer.host).node(offer.device);
      // INVARIANT: planFabric made every device an endpoint (NICs and SSDs one BAR, accelerators
      // two), enumerated with a base. One borrower-side window per BAR.
      const bars = ep?.kind === 'endpoint' ? ep.bars : [];
      const barWins = bars.map((bar) => this._open(byHost, port.ntb, ntbNode(offer.host), bar.size, bar.base!, slots));
      const barWin = barWins[0];
      const dmaWin = this._open(offer.host, port.ntb, ntbNode(byHost), dmaBytes, 0, slots);
      const stats = LentStats.create();
      // P2P initiators (accelerators, NVMe SSDs: P2pNvme.ts) carry a permission table per lease.
      const peerAllow = p2pInitiatorKind(offer.kind) ? new SharedArrayBuffer(4 * this._peers.length) : undefined;
      const qid = lease.queue === undefined ? undefined : lease.queue + 1;
      const handle: Active = {
        lease,
        name: id,
        kind: offer.kind,
        qid,
        lender: offer.host,
        device: offer.device,
        borrower: byHost,
        stats: new LentStats(stats),
        barWindowBase: barWin,
        dmaWindowBase: dmaWin,
        dmaWindowBytes: dmaBytes,
        peerAllow,
        slots,
      };
      const common = {
        name: id,
        bdf: `0000:${(0x40 + (this._bdfs++ % 0xc0)).toString(16)}:00.0`,
        barWindowBase: barWin,
        dmaWindowBase: dmaWin,
        lease,
        cluster: this.fabric.descriptor,
        profile: this.profile,
        lender: offer.host,
        endpoint: offer.device,
        borrower: byHost,
        iommu: IommuContext.create({ device: id }),
        stats,
        segments: this._segPools,
      };
      const lender = this._member(offer.host).host.devices;
      if (offer.kind === 'nvme') {
        const state = lender.nvmeData(offer.device).state;
        let data: LentNvmeData = { ...common, kind: 'nvme', state, peers: this._peers, peerAllow };
        let release: (() => void) | undefined;
        if (qid !== undefined) {
          const manager = this._manager(id, offer.host, state);
          const mailbox = manager.addHost(qid, data, () => this._memories(byHost));
          data = { ...data, qid, mailbox };
          release = () => manager.dropQueue(qid);
        }
        b.lending.addBorrowed(data, release);
      } else if (offer.kind === 'accel') {
        const data: LentAccelData = {
          ...common,
          kind: 'accel',
          state: lender.accelData(offer.device).state,
          barWindowBases: barWins,
          peers: this._peers,
          peerAllow,
        };
        b.lending.addBorrowed(data);
      } else {
        const nicData = lender.allNics().find((n) => n.iommu.device === offer.device)!;
        const data: LentNicData = { ...common, state: nicData.state };
        b.lending.addBorrowed(data);
      }
      this._member(offer.host).lending.markLentOut(offer.device, `borrowed by ${byHost}`);
      this._active.set(activeKey(id, byHost), handle);
      return handle;
    } catch (err) {
      this._close(slots);
      await this.registry.return(lease, { force: true }).catch(() => {});
      throw err;
    }
  }

  /**
   * What `handle`'s borrower has in use: WRs queued on a NIC, or commands an NVMe controller
   * holds on the borrower's queues, plus 1 while a domain of the borrower owns it.
   */
  inUse(handle: LentHandle): number {
    const l = this._member(handle.borrower).lending;
    return l.outstanding(handle.name) + (l.owner(handle.name) === undefined ? 0 : 1);
  }

  /** Returns a borrow: refused (PV_ERR_LEND_IN_USE) while in use unless `force`. */
  async giveBack(handle: LentHandle, opts: { readonly force?: boolean } = {}): Promise<void> {
    if (this._active.get(activeKey(handle.name, handle.borrower)) !== handle) {
      throw pvError('PV_ERR_LEND_NOT_HOLDER', `${handle.borrower} no longer holds ${handle.name}`);
    }
    await this.registry.setInUse(handle.lease, this.inUse(handle));
    await this.registry.return(handle.lease, { force: opts.force === true });
  }

  /** Lets borrowed `initiator` (accelerator, NVMe SSD) DMA into BAR 1 of borrowed accelerator `target`. */
  mapP2p(initiator: LentHandle, target: LentHandle): P2pMapping {
    return this._p2pLayer.map(this._held(initiator), this._held(target));
  }

  /** Ends a mapping made by `mapP2p` (the initiator's next DMA there faults); false if already gone. */
  unmapP2p(mapping: P2pMapping): boolean {
    return this._p2pLayer.unmap(mapping);
  }

  /** Exports `bytes` of `host`'s memory as segment `name` (ClusterSegments.ts); the exporter's view is `local`. */
  exportSegment(host: string, name: string, bytes: number): SegmentExport {
    this._member(host);
    return this._segs.export(host, name, bytes);
  }

  /** Maps segment `name` on `byHost` through an NTB window onto the exporter's segment address. */
  mapSegment(name: string, byHost: string): SegmentWindow {
    this._member(byHost);
    return this._segs.map(name, byHost);
  }

  /** Lets the device of `handle` (borrowed by the mapping host) DMA into the segment; returns its address. */
  mapSegmentForDevice(w: SegmentWindow, handle: LentHandle): DeviceSegmentWindow {
    const a = this._held(handle);
    return this._segs.mapForDevice(w, a.name, a.lender, a.device, a.borrower);
  }

  /** Ends a device path made by `mapSegmentForDevice`; false if already gone. */
  unmapSegmentForDevice(dw: DeviceSegmentWindow): boolean {
    return this._segs.unmapForDevice(dw);
  }

  /** Unmaps a segment mapping (its windows and device paths close); false if already gone. */
  unmapSegment(w: SegmentWindow): boolean {
    return this._segs.unmap(w);
  }

  /** Withdraws a segment: refused while mapped (PV_ERR_LEND_IN_USE) unless forced; returns mappings revoked. */
  unexportSegment(name: string, host: string, opts: { readonly force?: boolean } = {}): number {
    return this._segs.unexport(name, host, opts.force === true);
  }

  /** Stops watching the registry and the queue managers, and shuts every host down. */
  async shutdown(): Promise<void> {
    this._unwatch();
    for (const m of this._managers.values()) m.stop();
    this._managers.clear();
    for (const m of this._members.values()) await m.host.shutdown();
  }

  /** Registry events: a lease of ours ended (returned, or revoked by force) → tear it down. */
  private _onEvent(e: RegistryEvent): void {
    if (e.type !== 'returned' && e.type !== 'revoked') return;
    const key = activeKey(e.lease.id, e.lease.holder);
    const a = this._active.get(key);
    if (a === undefined || a.lease.generation !== e.lease.generation) return;
    this._active.delete(key);
    const borrower = this._member(a.borrower).lending;
    // Forced: fail every outstanding WR into the borrower's CQs while the windows are open.
    if (e.type === 'revoked' && a.kind === 'rdma-nic') borrower.flushAll(a.name);
    a.stats.revoke();
    // P2P mappings from or into the device: disallowed and their windows closed before the reset.
    this._p2pLayer.dropLease(a.name);
    this._segs.dropLease(a.name);
    // Reset (or, shared, delete the host's queue pair) while the windows are still open.
    borrower.removeBorrowed(a.name);
    this._close(a.slots);
    this._managers.get(a.name)?.removeHost(a.qid);
    const lender = this._member(a.lender).lending;
    const stillLent = [...this._active.values()].some((x) => x.name === a.name);
    lender.markLentOut(a.device, stillLent ? 'shared' : 'offered for lending');
  }

  /** The lender-side queue manager of a shareable NVMe (created at its first shared borrow). */
  private _manager(id: string, host: string, state: NvmeState): SharedNvmeManager {
    let m = this._managers.get(id);
    if (m === undefined) {
      m = new SharedNvmeManager({ state, ramBytes: this._member(host).ramBytes });
      this._managers.set(id, m);
    }
    return m;
  }

  /** A directory of `host`'s live domain memories (main-thread DMA: queue checks, resets). */
  private _memories(host: string): MemoryDirectory {
    const dir = new MemoryDirectory();
    for (const d of this._member(host).host.domains()) dir.addMemory(d.memory);
    return dir;
  }

  /** Places and opens a window on `host`'s side of `ntb`; returns its base. */
  private _open(
    host: string,
    ntb: string,
    node: string,
    size: number,
    peerBase: number,
    slots: Active['slots'],
  ): number {
    const space = this._apertures.get(`${host}/${node}`)!;
    const p = space.place(size);
    try {
      const slot = this.fabric.setWindow(host, ntb, { base: p.base, size, peerBase });
      slots.push({ host, slot, space, p });
    } catch (err) {
      space.free(p);
      throw err;
    }
    return p.base;
  }

  /** The live borrow `handle` stands for (PV_ERR_LEND_NOT_HOLDER once it ended). */
  private _held(handle: LentHandle): Active {
    const a = this._active.get(activeKey(handle.name, handle.borrower));
    if (a === undefined || a !== handle) {
      throw pvError('PV_ERR_LEND_NOT_HOLDER', `${handle.borrower} no longer holds ${handle.name}`);
    }
    return a;
  }

  private _close(slots: Active['slots']): void {
    for (const s of slots) {
      this.fabric.clearWindow(s.host, s.slot);
      s.space.free(s.p);
    }
    slots.length = 0;
  }

  private _member(name: string): Member {
    const m = this._members.get(name);
    if (m === undefined) throw pvError('PV_ERR_CONFIG', `no host ${String(name)} in the cluster`);
    return m;
  }
}
