/**
 * The cluster-level fabric: every host's PCIe tree, the NTBs between them, each host's shared
 * window table, and `route()`, which every DMA and MMIO of a lent device, a peer-to-peer transfer
 * or a shared segment resolves through (reference §4: "all translation in NTB + IOMMU hardware").
 *
 * Routing one access of `bytes` at `addr`, issued by node `from` of host H:
 *  1. decode `addr` in H's address map: RAM → the root complex; a BAR → that endpoint; an NTB
 *     aperture → step 2; nothing → PV_ERR_PCIE_UNROUTABLE;
 *  2. find the live window of that aperture holding `addr`; none → PV_ERR_PCIE_NO_WINDOW (the
 *     adapter drops the TLP, as a DMA outside the lender's DMA window does); add the links from
 *     the issuer to the adapter and the NTB crossing, translate `addr` to the peer's address
 *     space, and continue at step 1 on the peer, issued by the peer's adapter. Routes may chain
 *     A → B → C; at most `maxNtbCrossings` crossings (loop guard: two windows pointing at each
 *     other would otherwise loop) → PV_ERR_PCIE_UNROUTABLE;
 *  3. add the links from the issuer to the target.
 *
 * Window edges: an access must lie inside ONE region at every step. `route()` REFUSES one that
 * straddles an edge — PV_ERR_PCIE_NO_WINDOW at a window edge (the part past it is outside that
 * window), PV_ERR_PCIE_UNROUTABLE at a RAM or BAR edge — so nothing silently spills into the
 * neighbouring window or device. `routeSplit()` instead cuts the transfer at every edge it meets,
 * as an NTB translates each TLP on its own, and returns one route per piece.
 *
 * Consistency: each window lookup is one seqlock snapshot; a route crossing two NTBs may see the
 * two tables at different instants (as two TLPs racing a remap would). Use `generation(host)`
 * to detect a change since a route was resolved.
 *
 * Route cache: a lent device routes EVERY MMIO and DMA (LentNic's BAR hook, NtbDmaResolver), and
 * a walk costs ≈ 1–3 µs (path arrays, window scans, hop objects and the garbage they leave) —
 * three walks per write_lat round trip and ~40 per driver command (QUERY_QP every 16 WRs): most of
 * a lent NIC's extra latency on the ideal fabric. A route depends only on the (immutable) spec and
 * the window tables, so `route()` keeps each successful walk, per issuer and address, tagged with
 * the sum of every host's window-table generation (each only grows, so the sum moves on any set or
 * clear anywhere) read BEFORE the walk; a hit with the same length and an unchanged sum returns the
 * same (readonly) Route, as an NTB's translation LUT would. Refused accesses are never cached (they
 * throw again).
 */

import { pvError } from '../../protocol/errors.js';
import type { HostPhysAddr } from '../../protocol/Types.js';
import { HostFabric } from './HostFabric.js';
import type { ClusterSpec, Hop, NodeRef, NtbHop, Route, WindowSpec } from './Types.js';
import { validateCluster } from './Validate.js';
import { hex, type WindowEntry, WindowTable } from './WindowTable.js';

/** What another thread needs to attach the same cluster (plain; postMessage it). */
export interface ClusterDescriptor {
  /** The normalised (validated, enumerated) description. */
  readonly spec: ClusterSpec;
  /** Each host's window table, by host name. */
  readonly windowTables: Readonly<Record<string, SharedArrayBuffer>>;
}

/** One NTB side on a host: a window's PORT names it. */
export interface NtbPort {
  /** Index among the host's ports (the PORT word of its windows). */
  readonly index: number;
  readonly ntb: string;
  readonly host: string;
  readonly node: string;
  readonly peerHost: string;
  readonly peerNode: string;
}

type ErrCode = 'PV_ERR_PCIE_UNROUTABLE' | 'PV_ERR_PCIE_NO_WINDOW';

/** Routes kept per issuing node before the cache starts over (a driver's BAR has fewer). */
const ROUTE_CACHE_PER_ISSUER = 4096;

/** One cached walk: valid while the length and the generation sum match. */
interface CachedRoute {
  readonly bytes: number;
  readonly gen: number;
  readonly route: Route;
}

/** The cluster's fabric, attached in one thread (see the file comment). */
export class PcieCluster {
  readonly descriptor: ClusterDescriptor;
  readonly spec: ClusterSpec;
  private readonly _hosts = new Map<string, HostFabric>();
  private readonly _tables = new Map<string, WindowTable>();
  private readonly _ports = new Map<string, NtbPort[]>();
  private readonly _maxCrossings: number;
  /** Issuer host → issuer node → address → last route (see the file comment). */
  private readonly _cache = new Map<string, Map<string, Map<number, CachedRoute>>>();

  /** Validates `spec`, makes every host's window table and installs the initial windows. */
  static create(spec: ClusterSpec): PcieCluster {
    const norm = validateCluster(spec);
    const tables: Record<string, SharedArrayBuffer> = {};
    for (const h of norm.hosts) tables[h.name] = WindowTable.create(norm.maxWindowsPerHost!).buffer;
    const cluster = new PcieCluster({ spec: norm, windowTables: tables });
    for (const n of norm.ntbs) {
      for (const side of n.sides) {
        for (const w of side.windows ?? []) cluster.setWindow(side.host, n.name, w);
      }
    }
    return cluster;
  }

  /** Attaches to a cluster made by `create` (in this or another thread). */
  static attach(desc: ClusterDescriptor): PcieCluster {
    return new PcieCluster({ spec: validateCluster(desc.spec), windowTables: desc.windowTables });
  }

  private constructor(desc: ClusterDescriptor) {
    this.descriptor = desc;
    this.spec = desc.spec;
    this._maxCrossings = desc.spec.maxNtbCrossings!;
    for (const h of desc.spec.hosts) {
      this._hosts.set(h.name, new HostFabric(h));
      const buf = desc.windowTables[h.name];
      if (!(buf instanceof SharedArrayBuffer)) throw pvError('PV_ERR_INVALID_ARG', `no window table for '${h.name}'`);
      this._tables.set(h.name, new WindowTable(buf));
      this._ports.set(h.name, []);
    }
    for (const n of desc.spec.ntbs) {
      n.sides.forEach((s, i) => {
        const peer = n.sides[1 - i];
        const list = this._ports.get(s.host)!;
        list.push({
          index: list.length,
          ntb: n.name,
          host: s.host,
          node: s.node,
          peerHost: peer.host,
          peerNode: peer.node,
        });
      });
    }
  }

  /** The host named `name` (PV_ERR_INVALID_ARG if none). */
  host(name: string): HostFabric {
    const h = this._hosts.get(name);
    if (h === undefined) throw pvError('PV_ERR_INVALID_ARG', `no host '${name}' in the cluster`);
    return h;
  }

  /** NTB sides on host `name`, by port index. */
  ports(name: string): readonly NtbPort[] {
    this.host(name);
    return this._ports.get(name)!;
  }

  /** Host `name`'s window table. */
  windowTable(name: string): WindowTable {
    this.host(name);
    return this._tables.get(name)!;
  }

  /** Live windows of host `name` (one snapshot). */
  windows(name: string): WindowEntry[] {
    return this.windowTable(name).list();
  }

  /** Window-table generation of host `name` (bumped on every set and clear). */
  generation(name: string): number {
    return this.windowTable(name).generation();
  }

  /**
   * Opens a window on `host`'s side of NTB `ntb`: [base, base + size) of `host` (inside that
   * side's aperture) → [peerBase, …) of the peer host. Returns the slot (for `clearWindow`).
   */
  setWindow(host: string, ntb: string, w: WindowSpec): number {
    const port = this.ports(host).find((p) => p.ntb === ntb);
    if (port === undefined) throw pvError('PV_ERR_INVALID_ARG', `NTB '${ntb}' has no side on host '${host}'`);
    const node = this.host(host).node(port.node)!;
    // INVARIANT: validateCluster made this node an ntb adapter with an assigned aperture.
    const ap = node.kind === 'ntb' ? node.aperture : { base: 0, size: 0 };
    const apBase = ap.base!;
    if (!(w.base >= apBase && w.size >= 1 && w.base + w.size <= apBase + ap.size)) {
      throw pvError(
        'PV_ERR_INVALID_ARG',
        `window [${hex(w.base)}, +${hex(w.size)}) leaves aperture [${hex(apBase)}, +${hex(ap.size)}) of ${host}/${port.node}`,
      );
    }
    return this._tables.get(host)!.set(port.index, w.base, w.size, w.peerBase);
  }

  /** Closes window `slot` of `host`; false if it was not open. */
  clearWindow(host: string, slot: number): boolean {
    return this.windowTable(host).clear(slot);
  }

  /** Routes one access (see the file comment); refuses one that straddles a region edge. */
  route(from: NodeRef, addr: HostPhysAddr, bytes: number): Route {
    if (from === null || typeof from !== 'object') return this._walk(from, addr, bytes, false);
    // ORDERING: the generations are read BEFORE the walk (as IommuContext.generation asks), so a
    // remap racing the walk shows up as a mismatch on the next access instead of being cached.
    const gen = this._generationSum();
    const hit = this._cache.get(from.host)?.get(from.node)?.get(addr);
    if (hit !== undefined && hit.bytes === bytes && hit.gen === gen) return hit.route;
    const route = this._walk(from, addr, bytes, false);
    // INVARIANT: the walk validated `from` and the numbers, so only real issuers get entries.
    const byAddr = this._issuerCache(from);
    // Bounded: a device sweeping a large buffer must not grow the cache without limit.
    if (hit === undefined && byAddr.size >= ROUTE_CACHE_PER_ISSUER) byAddr.clear();
    byAddr.set(addr, { bytes, gen, route });
    return route;
  }

  /** The route cache of issuer `from` (made on first use). */
  private _issuerCache(from: NodeRef): Map<number, CachedRoute> {
    let byNode = this._cache.get(from.host);
    if (byNode === undefined) {
      byNode = new Map();
      this._cache.set(from.host, byNode);
    }
    let byAddr = byNode.get(from.node);
    if (byAddr === undefined) {
      byAddr = new Map();
      byNode.set(from.node, byAddr);
    }
    return byAddr;
  }

  /** Sum of every host's window-table generation; moves whenever any window changes. */
  private _generationSum(): number {
    let sum = 0;
    // ORDERING: each generation() is a seq-cst load of a counter that only grows.
    for (const t of this._tables.values()) sum += t.generation();
    return sum;
  }

  /** Routes a transfer cut at every window, BAR or RAM edge it meets: one route per piece. */
  routeSplit(from: NodeRef, addr: HostPhysAddr, bytes: number): Route[] {
    if (bytes === 0) return [this._walk(from, addr, 0, true)];
    const out: Route[] = [];
    let a = addr as number;
    let left = bytes;
    while (left > 0) {
      const r = this._walk(from, a as HostPhysAddr, left, true);
      out.push(r);
      a += r.bytes;
      left -= r.bytes;
    }
    return out;
  }

  private _walk(from: NodeRef, addr: HostPhysAddr, bytes: number, clip: boolean): Route {
    if (from === null || typeof from !== 'object') throw pvError('PV_ERR_INVALID_ARG', 'route: from must be a NodeRef');
    let host = this.host(from.host);
    if (host.node(from.node) === undefined) {
      throw pvError('PV_ERR_INVALID_ARG', `no node '${from.node}' on host '${from.host}'`);
    }
    if (!Number.isSafeInteger(addr) || addr < 0 || !Number.isSafeInteger(bytes) || bytes < 0) {
      throw pvError('PV_ERR_INVALID_ARG', `route: address and length must be safe integers ≥ 0`);
    }
    let node = from.node;
    let a = addr as number;
    let len = bytes;
    const hops: Hop[] = [];
    let crossings = 0;
    for (;;) {
      const d = host.decode(a);
      if (d === null) {
        throw pvError('PV_ERR_PCIE_UNROUTABLE', `${host.name}: ${hex(a)} is outside RAM, every BAR and every NTB`);
      }
      if (d.kind !== 'aperture') {
        const what = d.kind === 'ram' ? `RAM of ${host.name}` : `BAR ${d.bar} of ${host.name}/${d.node}`;
        len = clipToRegion(a, len, d.base, d.size, clip, 'PV_ERR_PCIE_UNROUTABLE', what);
        const to = d.kind === 'ram' ? host.rc : d.node;
        hops.push(...host.path(node, to));
        const target =
          d.kind === 'ram'
            ? { kind: 'ram' as const, host: host.name, addr: a as HostPhysAddr }
            : { kind: 'bar' as const, host: host.name, endpoint: d.node, bar: d.bar, offset: a - d.base };
        return { from: { host: from.host, node: from.node }, addr, bytes: len, target, hops, ntbCrossings: crossings };
      }
      const w = this._tables.get(host.name)!.lookup(a);
      const port = w === null ? undefined : this._ports.get(host.name)![w.port];
      // INVARIANT: setWindow keeps each window inside its own port's aperture, and apertures
      // never overlap, so a window holding `a` belongs to the aperture `a` decoded to.
      if (w === null || port === undefined || port.node !== d.node) {
        throw pvError('PV_ERR_PCIE_NO_WINDOW', `${host.name}/${d.node}: no window holds ${hex(a)}`);
      }
      len = clipToRegion(
        a,
        len,
        w.base,
        w.size,
        clip,
        'PV_ERR_PCIE_NO_WINDOW',
        `window ${w.slot} of ${host.name}/${d.node}`,
      );
      if (crossings >= this._maxCrossings) {
        throw pvError('PV_ERR_PCIE_UNROUTABLE', `loop guard: more than ${this._maxCrossings} NTB crossings`);
      }
      hops.push(...host.path(node, d.node));
      const hop: NtbHop = { kind: 'ntb', ntb: port.ntb, fromHost: host.name, toHost: port.peerHost, window: w.slot };
      hops.push(hop);
      crossings++;
      a = w.peerBase + (a - w.base);
      host = this._hosts.get(port.peerHost)!;
      node = port.peerNode;
    }
  }
}

/**
 * The length that fits in region [base, base + size) from `a`: all of `len` when it fits; when
 * it does not, the part up to the edge (clip) or an error naming the edge (strict). A zero-length
 * access must still start inside the region (it was decoded there).
 */
function clipToRegion(
  a: number,
  len: number,
  base: number,
  size: number,
  clip: boolean,
  code: ErrCode,
  what: string,
): number {
  const room = base + size - a;
  if (len <= room) return len;
  if (clip) return room;
  throw pvError(code, `[${hex(a)}, +${hex(len)}) straddles the end of ${what} at ${hex(base + size)}; use routeSplit`);
}
