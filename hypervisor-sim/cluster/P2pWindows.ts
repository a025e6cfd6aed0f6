/**
 * Peer-to-peer between lent accelerators across hosts (SmartIO, CC'20 §4: "lender(s) return the
 * local I/O addresses they would use to reach the target's BARs over the NTB"): for an
 * initiator accelerator physically on host Hi and a target accelerator on host Ht, the address
 * on Hi's bus at which the initiator's DMA engine reaches byte 0 of the target's BAR 1.
 *
 *  - same lender (Hi = Ht): the BAR's own bus address; the TLPs turn at Hi's switch
 *    (accel0 → sw → accel1: 2 links, no NTB, never the root complex);
 *  - two lenders: the shortest chain of NTB links Hi → … → Ht; a window is opened on each host of
 *    the chain but the last, from the end backwards, each onto the next one's window (the last
 *    onto the BAR), so one access crosses one NTB per link of the chain (direct link A–C: 1
 *    crossing and 4 links; A–B–C through the borrower: 2 crossings and 6 links).
 *
 * Reaching the BAR is not enough: the initiator's lease record carries a permission table
 * (NtbDmaResolver `peerAllow`), one counter per accelerator of the cluster, which `map` raises
 * and `unmap` lowers — the IOMMU-mapping half of SmartIO's P2P, and what keeps a lender-local
 * peer (no window to close) unreachable once the pair is unmapped or a lease ends.
 */

import { pvError } from '../../protocol/errors.js';
import type { PcieCluster } from '../pcie/PcieCluster.js';
import type { NodeRef } from '../pcie/Types.js';
import { peerKey } from './NtbDmaResolver.js';

/** An open window, as the Cluster records it (to close it later). */
export interface OpenedWindow {
  readonly host: string;
  readonly slot: number;
  readonly free: () => void;
}

/** Opens a window on `host`'s NTB side towards `peer`: `size` bytes onto `peerBase`; returns its base. */
export type OpenWindow = (host: string, peer: string, size: number, peerBase: number, out: OpenedWindow[]) => number;

/** A live P2P mapping (what `Cluster.mapP2p` returns). */
export interface P2pMapping {
  /** Address on the initiator's lender's bus of byte 0 of the target's BAR 1. */
  readonly addr: number;
  /** Bytes reachable from `addr` (the target's device memory). */
  readonly bytes: number;
  /** Where the initiator and the target physically are. */
  readonly initiator: NodeRef;
  readonly target: NodeRef;
  /** Hosts the TLPs pass, initiator's lender first. */
  readonly hosts: readonly string[];
  /** One access along the mapping: NTB crossings and link hops (counts, from the router). */
  readonly ntbCrossings: number;
  readonly linkHops: number;
}

/** A mapping and what tearing it down needs. */
export interface P2pRecord {
  readonly mapping: P2pMapping;
  /** Registry ids of the initiator's and the target's leases. */
  readonly initiatorId: string;
  readonly targetId: string;
  readonly allow: Int32Array;
  readonly index: number;
  readonly windows: OpenedWindow[];
  closed: boolean;
}

/** The shortest chain of NTB links from host `from` to host `to` (breadth-first), both included. */
export function hostPath(fabric: PcieCluster, from: string, to: string): string[] {
  const prev = new Map<string, string>([[from, '']]);
  const queue = [from];
  for (let i = 0; i < queue.length && !prev.has(to); i++) {
    for (const p of fabric.ports(queue[i])) {
      if (prev.has(p.peerHost)) continue;
      prev.set(p.peerHost, queue[i]);
      queue.push(p.peerHost);
    }
  }
  if (!prev.has(to)) throw pvError('PV_ERR_PCIE_UNROUTABLE', `no chain of NTB links joins ${from} and ${to}`);
  const path = [to];
  while (path[0] !== from) path.unshift(prev.get(path[0])!);
  return path;
}

/** What `mapP2pWindows` needs to know about the pair. */
export interface P2pPair {
  readonly initiator: NodeRef;
  readonly target: NodeRef;
  readonly initiatorId: string;
  readonly targetId: string;
  /** The target's BAR 1: bus address on its host, and size. */
  readonly barBase: number;
  readonly barBytes: number;
  /** The initiator lease's permission table and the peer list's keys (NtbDmaData.peers order). */
  readonly allow: SharedArrayBuffer;
  readonly peerKeys: readonly string[];
}

/** Opens the windows of a pair and allows it (see the file comment). */
export function mapP2pWindows(fabric: PcieCluster, pair: P2pPair, open: OpenWindow): P2pRecord {
  const index = pair.peerKeys.indexOf(peerKey(pair.target.host, pair.target.node));
  if (index < 0) throw pvError('PV_ERR_CONFIG', `${pair.target.host}/${pair.target.node} is no accelerator`);
  const hosts = hostPath(fabric, pair.initiator.host, pair.target.host);
  const windows: OpenedWindow[] = [];
  let addr = pair.barBase;
  try {
    for (let i = hosts.length - 2; i >= 0; i--) addr = open(hosts[i], hosts[i + 1], pair.barBytes, addr, windows);
    const route = fabric.route(pair.initiator, addr as never, 4);
    const allow = new Int32Array(pair.allow);
    // ORDERING: seq-cst add after the windows are open; the initiator's resolver loads it per DMA.
    Atomics.add(allow, index, 1);
    const mapping: P2pMapping = {
      addr,
      bytes: pair.barBytes,
      initiator: pair.initiator,
      target: pair.target,
      hosts,
      ntbCrossings: route.ntbCrossings,
      linkHops: route.hops.length - route.ntbCrossings,
    };
    return { mapping, initiatorId: pair.initiatorId, targetId: pair.targetId, allow, index, windows, closed: false };
  } catch (err) {
    closeWindows(fabric, windows);
    throw err;
  }
}

/** Disallows the pair, then closes its windows; a second call does nothing. */
export function unmapP2pWindows(fabric: PcieCluster, r: P2pRecord): void {
  if (r.closed) return;
  r.closed = true;
  // ORDERING: seq-cst sub before the windows close: a DMA racing the unmap faults either way.
  Atomics.sub(r.allow, r.index, 1);
  closeWindows(fabric, r.windows);
}

function closeWindows(fabric: PcieCluster, windows: OpenedWindow[]): void {
  for (const w of windows) {
    fabric.clearWindow(w.host, w.slot);
    w.free();
  }
  windows.length = 0;
}
