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
 * Returning: `giveBack` reports what is in use — the WRs queued on the NIC, plus one while a
 * domain of the borrower has it attached — and the registry refuses a plain return of a busy
 * lease (PV_ERR_LEND_IN_USE). A forced return (or the registry revoking the lease) first moves
 * every QP to ERR, so each outstanding WR completes with WR_FLUSH_ERR in the borrower's CQs while
 * the windows are still open, then ends the lease record (every later MMIO of the borrower throws
 * PV_ERR_LEND_REVOKED, every DMA faults), closes the windows and resets the function. The lender
 * may then lend it to another host.
 *
 * NVMe SSDs are lent the same way (`nvmes` of a host; LentNvme.ts): exclusively, the borrower's
 * domain runs the unchanged NvmeDriver against `nvme0@A` (BAR through the BAR window, DMA through
 * the DMA window into B, media writes into A's backing file); its in-use count is the owner plus
 * the commands the controller holds on its I/O queues; a forced return ends the lease (every
 * later doorbell throws PV_ERR_LEND_REVOKED, every DMA faults) and resets the controller, so the
 * driver's next ring or reap fails at once instead of waiting. An SSD lent `shareable` is borrowed
 * with `mode: 'shared'` by several hosts at once, each holding one I/O queue pair (registry queue k
 * → qid k + 1) that the lender's queue manager creates for it (SharedNvme.ts).
 *
 * Accelerators (`accels` of a host; LentAccel.ts) are lent exclusively too: the borrower opens
 * one window onto each BAR (registers, device memory) and the lender a DMA window, and the
 * unchanged AccelDriver runs against `accel0@A`. `mapP2p` lets one borrowed accelerator's DMA
 * engine write into another's BAR 1 — both on one lender (through its switch) or on two (through
 * the NTB chain between them, P2pWindows.ts) — and returns the address to use; the mapping ends
 * with `unmapP2p` or with either lease. A borrowed NVMe SSD may be the initiator too (P2pNvme.ts):
 * its READs then land straight in the accelerator's memory, never in the borrower's RAM.
 *
 * Shared memory segments (ClusterSegments.ts): `exportSegment` places a segment in the host's
 * segment pool (the top `segmentBytes` of its bus space, outside what domains and IOMMUs use),
 * `mapSegment` opens a window onto it on another host, and `mapSegmentForDevice` lets a device
 * borrowed by that host DMA into it through that window; unexport is refused while mapped unless
 * forced (SegmentRegistry.ts).
 *
 * NICs of one borrower share its fabric lock (a WR between a local NIC and a borrowed one runs
 * inline in the doorbell writer's thread), so every host runs inline engines and NIC port ids
 * are unique across the cluster. RDMA peers of a lent NIC are NICs of the borrower (or the lent
 * NIC itself): see the report for what cross-host RDMA would need.
 */

import { pvError } from '../../protocol/errors.js';
import { ACCEL_DEFAULT_MEM_BYTES } from '../devices/accel/AccelDevice.js';
import type { AccelSpec } from '../devices/accel/HostAccels.js';
import type { NvmeState } from '../devices/nvme/NvmeDevice.js';
import { Host, type HostOptions } from '../domain/Host.js';
import type { NicSpec, NvmeSpec } from '../domain/HostDevices.js';
import { IommuContext } from '../iommu/IommuContext.js';
import { InMemoryRegistry } from '../lending/InMemoryRegistry.js';
import { SegmentRegistry } from '../lending/SegmentRegistry.js';
import type { DeviceRegistry, Lease, LeaseMode, RegistryEvent } from '../lending/Types.js';
import { MemoryDirectory } from '../memory/MemoryDirectory.js';
import { PcieCluster } from '../pcie/PcieCluster.js';
import type { FabricProfileName } from '../pcie/Profiles.js';
import {
  ClusterSegments,
  type DeviceSegmentWindow,
  type SegmentExport,
  type SegmentWindow,
} from './ClusterSegments.js';
import { ApertureSpace, DEFAULT_RAM_BYTES, ntbNode, nvmeBarBytes, type Placement, planFabric } from './FabricPlan.js';
import type { LentAccelData } from './LentAccel.js';
import { LentDevices } from './LentDevices.js';
import type { LentNicData } from './LentNic.js';
import type { LentNvmeData } from './LentNvme.js';
import { LentStats } from './LentStats.js';
import { peerKey } from './NtbDmaResolver.js';
import { p2pInitiatorKind } from './P2pNvme.js';
import { mapP2pWindows, type OpenedWindow, type P2pMapping, type P2pRecord, unmapP2pWindows } from './P2pWindows.js';
import { createSegmentPool, DEFAULT_SEGMENT_BYTES, type SegmentPoolData } from './SegmentPool.js';
import { SharedNvmeManager } from './SharedNvme.js';

/** One host of the cluster. */
export interface ClusterHostSpec {
  readonly name: string;
  /** NICs (`portId` defaults to a cluster-unique one). */
  readonly nics?: readonly NicSpec[];
  /** NVMe SSDs (file-backed; lendable with kind 'nvme'). */
  readonly nvmes?: readonly NvmeSpec[];
  /** Accelerators (lendable with kind 'accel'; default device memory 64 MiB). */
  readonly accels?: readonly AccelSpec[];
  /** Bus-address space of the host in the fabric (default 1 GiB). */
  readonly ramBytes?: number;
  /**
   * Top of `ramBytes` reserved for exported segments (a multiple of 64 KiB; 0: none). Default
   * 16 MiB, or ramBytes / 16 when that is less. Domain memory plus IOMMU window must stay below it.
   */
  readonly segmentBytes?: number;
  /** Other host options (the engine is always inline). */
  readonly options?: Omit<HostOptions, 'name' | 'nics' | 'nvmes' | 'accels' | 'deviceEngine'>;
}

/** What a cluster is built from. */
export interface ClusterOptions {
  readonly hosts: readonly ClusterHostSpec[];
  /** NTB links; default: every pair of hosts. */
  readonly links?: readonly (readonly [string, string])[];
  /** Fabric timing profile (default `ideal`). */
  readonly profile?: FabricProfileName;
  /** Default: a new InMemoryRegistry. */
  readonly registry?: DeviceRegistry;
}

/** Options of `borrow`. */
export interface ClusterBorrowOptions {
  /** Bytes of the borrower's bus space the lender's DMA window covers (default: all of it). */
  readonly dmaWindowBytes?: number;
  /** 'exclusive' (default) or 'shared' (an NVMe lent shareable: one I/O queue pair, SharedNvme.ts). */
  readonly mode?: LeaseMode;
}

/** Options of `lend`. */
export interface ClusterLendOptions {
  /** NVMe only: several hosts may borrow it at once, each one I/O queue pair (SmartIO). */
  readonly shareable?: boolean;
}

/** A live borrow, as `borrow` returns it. */
export interface LentHandle {
  readonly lease: Lease;
  /** Name on the borrower (= registry id), e.g. `nic0@A`. */
  readonly name: string;
  readonly kind: LentKind;
  /** Shared NVMe lease: the I/O queue id the borrower uses (lease.queue + 1). */
  readonly qid?: number;
  readonly lender: string;
  readonly device: string;
  readonly borrower: string;
  /** The lease record (revocation and fabric counts). */
  readonly stats: LentStats;
  readonly barWindowBase: number;
  readonly dmaWindowBase: number;
  readonly dmaWindowBytes: number;
}

/** What can be lent. */
export type LentKind = 'rdma-nic' | 'nvme' | 'accel';

interface Active extends LentHandle {
  /** Accelerator leases: the P2P permission table of the lease (NtbDmaResolver `peerAllow`). */
  readonly peerAllow?: SharedArrayBuffer;
  readonly slots: {
    readonly host: string;
    readonly slot: number;
    readonly space: ApertureSpace;
    readonly p: Placement;
  }[];
}

interface Member {
  readonly host: Host;
  readonly lending: LentDevices;
  readonly ramBytes: number;
}

/** A cluster of hosts with Device Lending (see the file comment). */
export class Cluster {
  readonly registry: DeviceRegistry;
  readonly fabric: PcieCluster;
  readonly profile: FabricProfileName;
  private readonly _members = new Map<string, Member>();
  private readonly _apertures = new Map<string, ApertureSpace>();
  private readonly _offers = new Map<string, { host: string; device: string; kind: LentKind }>();
  /** Every accelerator's device memory, by `host/endpoint` (P2P targets; NtbDmaData.peers). */
  private readonly _peers: { key: string; mem: SharedArrayBuffer }[] = [];
  /** Live P2P mappings (P2pWindows.ts). */
  private readonly _p2p = new Set<P2pRecord>();
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
    const plan = opts.hosts.map((h, hi) => ({
      spec: h,
      ramBytes: h.ramBytes ?? DEFAULT_RAM_BYTES,
      nics: (h.nics ?? []).map((n, i) => ({ ...n, portId: n.portId ?? hi * 64 + i + 1 })),
    }));
    this.fabric = PcieCluster.create(
      planFabric(
        plan.map((p) => ({
          name: p.spec.name,
          ramBytes: p.ramBytes,
          nics: p.nics.map((n) => ({ name: n.name, maxQp: n.maxQp ?? 256 })),
          nvmes: (p.spec.nvmes ?? []).map((n) => ({
            name: n.name,
            barBytes: nvmeBarBytes(n.maxIoQueues ?? 16, n.dstrd ?? 0),
          })),
          accels: (p.spec.accels ?? []).map((a) => ({ name: a.name, memBytes: a.memBytes ?? ACCEL_DEFAULT_MEM_BYTES })),
        })),
        links,
      ),
    );
    for (const name of names) {
      for (const port of this.fabric.ports(name)) {
        const node = this.fabric.host(name).node(port.node);
        // INVARIANT: validateCluster assigned every aperture a base.
        if (node?.kind === 'ntb')
          this._apertures.set(`${name}/${port.node}`, new ApertureSpace(node.aperture.base!, node.aperture.size));
      }
    }
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
      const memories = (): MemoryDirectory => {
        const dir = new MemoryDirectory();
        for (const d of host.domains()) dir.addMemory(d.memory);
        return dir;
      };
      const lending = new LentDevices(host.devices.fabricLock, host.devices.wire, memories);
      host.devices.attachLending(lending);
      this._members.set(p.spec.name, { host, lending, ramBytes: p.ramBytes });
    }
    for (const p of plan) {
      const bytes =
        p.spec.segmentBytes ?? Math.min(DEFAULT_SEGMENT_BYTES, Math.floor(p.ramBytes / 16 / 0x1_0000) * 0x1_0000);
      if (bytes > 0) this._segPools.push(createSegmentPool(p.spec.name, p.ramBytes, bytes));
    }
    this._segs = new ClusterSegments({
      fabric: this.fabric,
      registry: this.segments,
      pools: this._segPools,
      open: (host, peer, size, peerBase, out) => this._openP2p(host, peer, size, peerBase, out),
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

  /**
   * Lets the DMA engine of borrowed accelerator (or the controller of borrowed NVMe SSD, P2pNvme.ts)
   * `initiator` reach BAR 1 (device memory) of borrowed accelerator `target`, both held by the
   * same borrower (P2pWindows.ts): opens the NTB windows on the way and allows the pair. Returns
   * the mapping; its `addr` is what the initiator's driver passes as the host address of a DMA
   * (`AccelDriver.dma`) or as the data address of an NVMe command (`NvmeDriver.submitIo`).
   */
  mapP2p(initiator: LentHandle, target: LentHandle): P2pMapping {
    const a = this._held(initiator);
    const t = this._held(target);
    if (!p2pInitiatorKind(a.kind) || t.kind !== 'accel' || a.peerAllow === undefined) {
      throw pvError(
        'PV_ERR_CONFIG',
        `P2P joins an accelerator or NVMe SSD to an accelerator, not a ${a.kind} to a ${t.kind}`,
      );
    }
    if (a === t) throw pvError('PV_ERR_CONFIG', `${a.name}: a device cannot be its own peer`);
    if (a.borrower !== t.borrower) {
      throw pvError('PV_ERR_LEND_NOT_HOLDER', `${a.borrower} holds ${a.name} but not ${t.name} (${t.borrower} does)`);
    }
    const ep = this.fabric.host(t.lender).node(t.device);
    // INVARIANT: planFabric gave every accelerator endpoint BAR 0 and BAR 1, enumerated.
    const bar1 = ep?.kind === 'endpoint' ? ep.bars[1] : { base: 0, size: 0 };
    const rec = mapP2pWindows(
      this.fabric,
      {
        initiator: { host: a.lender, node: a.device },
        target: { host: t.lender, node: t.device },
        initiatorId: a.name,
        targetId: t.name,
        barBase: bar1.base!,
        barBytes: bar1.size,
        allow: a.peerAllow,
        peerKeys: this._peers.map((p) => p.key),
      },
      (host, peer, size, peerBase, out) => this._openP2p(host, peer, size, peerBase, out),
    );
    this._p2p.add(rec);
    return rec.mapping;
  }

  /** Ends a mapping made by `mapP2p` (the initiator's next DMA there faults); false if already gone. */
  unmapP2p(mapping: P2pMapping): boolean {
    for (const r of this._p2p) {
      if (r.mapping !== mapping) continue;
      unmapP2pWindows(this.fabric, r);
      this._p2p.delete(r);
      return true;
    }
    return false;
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
    for (const r of this._p2p) {
      if (r.initiatorId !== a.name && r.targetId !== a.name) continue;
      unmapP2pWindows(this.fabric, r);
      this._p2p.delete(r);
    }
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

  /** Opens a P2P window on `host`'s NTB side towards `peer` (P2pWindows.OpenWindow). */
  private _openP2p(host: string, peer: string, size: number, peerBase: number, out: OpenedWindow[]): number {
    const port = this.fabric.ports(host).find((p) => p.peerHost === peer);
    if (port === undefined) throw pvError('PV_ERR_PCIE_UNROUTABLE', `no NTB links ${host} and ${peer}`);
    const slots: Active['slots'] = [];
    const base = this._open(host, port.ntb, ntbNode(peer), size, peerBase, slots);
    const s = slots[0];
    out.push({ host, slot: s.slot, free: () => s.space.free(s.p) });
    return base;
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

/** Key of a live borrow: one per (device, borrower) — a host holds at most one lease on a device. */
function activeKey(id: string, holder: string): string {
  return `${id}|${holder}`;
}
