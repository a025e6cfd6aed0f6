/**
 * How a lent device reaches the borrower's memory (SmartIO Device Lending, CC'20 §4.2): the
 * device on the lender (host A) issues DMA to an address of A's bus; the lender-side DMA window
 * of the NTB maps it onto the borrower's (host B's) bus, where B's IOMMU context for the lease
 * turns it into a place in the owning domain's memory:
 *
 * ```
 *  device DMA addr (A) ─ PcieCluster.route ─► A links ─► NTB (window: A aperture → B bus) ─►
 *      B links ─► B "RAM" address = IOVA ─ IommuContext.resolve (translate: guest passthrough,
 *      bypass: native owner) ─► owner's memory
 * ```
 * Each resolution pays the route's modelled cost as real delay (payRoute, FABRIC stage) and
 * counts its hops in the lease record (LentStats.ts). Anything else — the lease revoked, an
 * address outside every window (PV_ERR_PCIE_NO_WINDOW) or unroutable, a route that ends anywhere
 * but B's RAM, an IOMMU miss — returns false, so the NIC completes the work request with an
 * error and keeps serving (DmaResolver contract: never throws).
 *
 * Peer-to-peer (a lent accelerator or NVMe SSD as initiator, P2pWindows.ts, P2pNvme.ts): a route that ends instead at BAR 1 of an
 * accelerator listed in `peers` — reached through the lender's own switch, or through a P2P
 * window the Cluster opened on an NTB — resolves into that accelerator's device memory, provided
 * the lease's permission table (`peerAllow`, one Int32 per peer, set by the Cluster when it maps
 * the pair and cleared when it unmaps it or either lease ends) allows it: the windows and the
 * table are the "lender-side I/O addresses / IOMMU mappings" of SmartIO's P2P between lenders.
 * It is counted as P2P (LentStats P2P_*) and paid like any other route.
 *
 * Shared memory segments (ClusterSegments.ts): a route that ends in the segment pool of any host
 * (`segments`, the top of its RAM — reached through the windows the Cluster opened for a segment
 * mapping) resolves into the pool's memory when the whole range lies in ONE live segment of its
 * table, and faults otherwise (never asking the IOMMU about the pool). It is counted and paid as
 * a DMA (LentStats DMA_*): the device wrote or read host memory, only on another host.
 *
 * Built in whatever thread runs the NIC engine (the doorbell writer: a domain worker of B) from
 * plain, postable data: the cluster descriptor (window tables are SABs), B's IOMMU descriptor
 * and the lease record.
 *
 * `generation()` sums the IOMMU generation, both hosts' window-table generations and the lease
 * STATE, each of which only grows: any remap, window change or revocation moves it, so a queue
 * view the NIC cached (QueueViews.ts) is resolved again — and refused — after the lease ends.
 * Known simplification: a cached queue view pays the fabric once, when resolved, not per access.
 */

import type { HostPhysAddr } from '../../protocol/Types.js';
import type { DmaRef, DmaResolver } from '../iommu/DmaResolver.js';
import { IommuContext, type IommuDescriptor } from '../iommu/IommuContext.js';
import type { MemoryDirectory } from '../memory/MemoryDirectory.js';
import { payRoute } from '../pcie/PayNs.js';
import { type ClusterDescriptor, PcieCluster } from '../pcie/PcieCluster.js';
import { type FabricProfile, type FabricProfileName, fabricProfile } from '../pcie/Profiles.js';
import type { NodeRef, Route } from '../pcie/Types.js';
import { LentBig, LentStats, LentWord } from './LentStats.js';
import { SegmentPool, type SegmentPoolData } from './SegmentPool.js';

/** What a thread needs to build the resolver (structured-cloneable). */
export interface NtbDmaData {
  /** The fabric (spec and window tables). */
  readonly cluster: ClusterDescriptor;
  /** Timing profile of the fabric. */
  readonly profile: FabricProfileName;
  /** The lender host and the device's endpoint node there (where its DMA starts). */
  readonly lender: string;
  readonly endpoint: string;
  /** The borrower host (where the DMA must land). */
  readonly borrower: string;
  /** B's IOMMU context for this lease (device name `nic0@A`). */
  readonly iommu: IommuDescriptor;
  /** The lease record (LentStats.ts). */
  readonly stats: SharedArrayBuffer;
  /** P2P targets: every accelerator's device memory (BAR 1) in the cluster, by `host/endpoint`. */
  readonly peers?: readonly { readonly key: string; readonly mem: SharedArrayBuffer }[];
  /** P2P permission table: Int32 per entry of `peers`, non-zero = this lease may reach it. */
  readonly peerAllow?: SharedArrayBuffer;
  /** Every host's segment pool (ClusterSegments.ts). */
  readonly segments?: readonly SegmentPoolData[];
}

/** `DmaRef.domid` of a resolution into a peer accelerator's memory (never a domain id). */
export const FABRIC_PEER_DOMID = -100;
/** `DmaRef.domid` of a resolution into a host's shared memory segment (never a domain id). */
export const FABRIC_SEGMENT_DOMID = -101;

/** Key of an endpoint in `NtbDmaData.peers`. */
export function peerKey(host: string, endpoint: string): string {
  return `${host}/${endpoint}`;
}

interface PeerMem {
  readonly index: number;
  readonly bytes: Uint8Array;
  readonly words: Int32Array;
}

/** A lent device's DMA path, attached in one thread (see the file comment). */
export class NtbDmaResolver implements DmaResolver {
  readonly fabric: PcieCluster;
  readonly iommu: IommuContext;
  readonly stats: LentStats;
  readonly profile: FabricProfile;
  private readonly _from: NodeRef;
  private readonly _lender: string;
  private readonly _borrower: string;
  private readonly _peers = new Map<string, PeerMem>();
  private readonly _allow: Int32Array;
  private readonly _pools = new Map<string, SegmentPool>();

  /** `directory` is this thread's memories of the borrower's domains. */
  constructor(data: NtbDmaData, directory: MemoryDirectory) {
    this.fabric = PcieCluster.attach(data.cluster);
    this.iommu = IommuContext.attach(data.iommu, directory);
    this.stats = new LentStats(data.stats);
    this.profile = fabricProfile(data.profile);
    this._from = { host: data.lender, node: data.endpoint };
    this._lender = data.lender;
    this._borrower = data.borrower;
    (data.peers ?? []).forEach((p, index) => {
      this._peers.set(p.key, { index, bytes: new Uint8Array(p.mem), words: new Int32Array(p.mem) });
    });
    this._allow = new Int32Array(data.peerAllow ?? new SharedArrayBuffer(4 * this._peers.size));
    for (const p of data.segments ?? []) this._pools.set(p.host, new SegmentPool(p));
  }

  resolve(addr: number, len: number, write: boolean, out: DmaRef): boolean {
    if (this.stats.revoked) return this._fault();
    let route: Route;
    try {
      route = this.fabric.route(this._from, addr as HostPhysAddr, len);
    } catch {
      // Unroutable or outside every window: the adapter drops the TLP; the device sees an error.
      return this._fault();
    }
    const t = route.target;
    if (t.kind === 'bar') return this._peer(route, t.host, t.endpoint, t.bar, t.offset, len, write, out);
    const pool = this._pools.get(t.host);
    if (pool?.covers(t.addr)) return this._segment(route, pool, t.addr, len, write, out);
    if (t.host !== this._borrower) return this._fault();
    if (!this.iommu.resolve(t.addr, len, write, out)) return this._fault();
    this._count(route, len, write);
    return true;
  }

  generation(): number {
    // ORDERING: each term is a seq-cst load of a counter that only grows (see the file comment);
    // segment tables too (a queue the device cached inside a segment is re-checked).
    let segs = 0;
    for (const p of this._pools.values()) segs += p.generation();
    return (
      this.iommu.generation() +
      this.fabric.generation(this._lender) +
      this.fabric.generation(this._borrower) +
      segs +
      (this.stats.revoked ? 1 : 0)
    );
  }

  /** A route ending at a BAR: only BAR 1 of an allowed peer accelerator resolves (P2P). */
  private _peer(
    route: Route,
    host: string,
    endpoint: string,
    bar: number,
    offset: number,
    len: number,
    write: boolean,
    out: DmaRef,
  ): boolean {
    const p = bar === 1 ? this._peers.get(peerKey(host, endpoint)) : undefined;
    // ORDERING: seq-cst load; pairs with the Cluster's store when it maps or unmaps the pair.
    if (p === undefined || Atomics.load(this._allow, p.index) === 0) return this._fault();
    // INVARIANT: route() kept [offset, +len) inside the BAR, whose size is the memory's.
    out.bytes = p.bytes;
    out.words = p.words;
    out.offset = offset;
    out.domid = FABRIC_PEER_DOMID;
    const s = this.stats;
    s.add(write ? LentWord.P2P_WRITES : LentWord.P2P_READS);
    s.add(LentWord.P2P_NTB_CROSSINGS, route.ntbCrossings);
    s.add(LentWord.P2P_LINK_HOPS, route.hops.length - route.ntbCrossings);
    s.addBig(LentBig.DMA_BYTES, len);
    s.addBig(LentBig.FABRIC_NS, payRoute(this.profile, route, len, write ? 'write' : 'read'));
    return true;
  }

  /** A route ending in a host's segment pool: only a range inside one live segment resolves. */
  private _segment(route: Route, pool: SegmentPool, addr: number, len: number, write: boolean, out: DmaRef): boolean {
    const off = pool.lookup(addr, len);
    if (off < 0) return this._fault();
    out.bytes = pool.bytes;
    out.words = pool.words;
    out.offset = off;
    out.domid = FABRIC_SEGMENT_DOMID;
    this._count(route, len, write);
    return true;
  }

  private _count(route: Route, len: number, write: boolean): void {
    const s = this.stats;
    s.add(write ? LentWord.DMA_WRITES : LentWord.DMA_READS);
    s.add(LentWord.DMA_NTB_CROSSINGS, route.ntbCrossings);
    s.add(LentWord.DMA_LINK_HOPS, route.hops.length - route.ntbCrossings);
    s.addBig(LentBig.DMA_BYTES, len);
    s.addBig(LentBig.FABRIC_NS, payRoute(this.profile, route, len, write ? 'write' : 'read'));
  }

  private _fault(): false {
    this.stats.add(LentWord.DMA_FAULTS);
    return false;
  }
}
