/**
 * The fabric's view of peer-to-peer DMA versus the bounce path, from the PCIe model
 * (pcie/PcieCluster.ts `route`), so the comparison is counted hop by hop rather than claimed:
 *
 * ```
 *        rc (host RAM)                 P2P:    nvme0 → sw0 → accel0            (never reaches rc)
 *        │                             bounce: nvme0 → sw0 → rc   (write RAM)
 *       sw0                                    accel0 → sw0 → rc  (read RAM, DMA engine)
 *      ╱    ╲
 *   nvme0   accel0 (BAR0 regs, BAR1 memory)
 * ```
 * `p2pHost` builds that one-host topology; `p2pPath` routes the NVMe's write into the
 * accelerator's BAR 1, `bouncePath` the two legs through RAM. Each summary carries the routes,
 * the link hops, how many legs reach the root complex, and the modeled cost under a profile
 * (`ideal` costs nothing; `pcie3-x8-ntb` prices each link).
 *
 * Across hosts (accelerator on host B, NVMe on host A) the same `p2pPath` applies once an NTB
 * window of A maps onto B's accelerator BAR 1: the address passed is then the window's, and the
 * route crosses the NTB (see the lending integration in hypervisor-sim/cluster).
 */

import { ACCEL_BAR0_BYTES } from '../../../protocol/accel/AccelRegs.js';
import { pvError } from '../../../protocol/errors.js';
import { type HostPhysAddr, hostPhysAddr } from '../../../protocol/Types.js';
import type { PcieCluster } from '../../pcie/PcieCluster.js';
import type { FabricProfile } from '../../pcie/Profiles.js';
import type { HostSpec, NodeRef, Route } from '../../pcie/Types.js';

/** PCI class code of a processing accelerator (base class 0x12). */
export const ACCEL_CLASS = 0x120000;
/** PCI class code of an NVMe controller. */
export const NVME_CLASS = 0x010802;

/** Options of `p2pHost`. */
export interface P2pHostOptions {
  readonly name?: string;
  readonly ramBytes?: number;
  /** The accelerator's BAR 1 (device memory) size; default 64 MiB. */
  readonly accelMemBytes?: number;
}

/** One host: rc ─ sw0 ─ {nvme0, accel0} (see the file comment). BARs are assigned by enumeration. */
export function p2pHost(o: P2pHostOptions = {}): HostSpec {
  return {
    name: o.name ?? 'h0',
    ramBytes: o.ramBytes ?? 1 << 30,
    nodes: [
      { id: 'rc', kind: 'rc' },
      { id: 'sw0', kind: 'switch' },
      {
        id: 'nvme0',
        kind: 'endpoint',
        config: { vendorId: 0x8086, deviceId: 0x2700, classCode: NVME_CLASS },
        bars: [{ size: 0x4000 }],
      },
      {
        id: 'accel0',
        kind: 'endpoint',
        config: { vendorId: 0x10de, deviceId: 0x1db4, classCode: ACCEL_CLASS },
        bars: [{ size: ACCEL_BAR0_BYTES }, { size: o.accelMemBytes ?? 64 << 20 }],
      },
    ],
    links: [
      { a: 'rc', b: 'sw0' },
      { a: 'sw0', b: 'nvme0' },
      { a: 'sw0', b: 'accel0' },
    ],
  };
}

/** A path's routes and what they cost. */
export interface PathSummary {
  readonly routes: readonly Route[];
  /** Link hops over all routes. */
  readonly linkHops: number;
  /** Routes with a hop into or out of the root complex (legs through host RAM's side). */
  readonly rootComplexLegs: number;
  readonly ntbCrossings: number;
  /** Modeled time under the profile, ns (legs run one after the other). */
  readonly costNs: number;
}

function summarise(
  cluster: PcieCluster,
  legs: ReadonlyArray<{ route: Route; dir: 'write' | 'read' }>,
  profile: FabricProfile,
): PathSummary {
  let linkHops = 0;
  let rcLegs = 0;
  let ntb = 0;
  let cost = 0;
  for (const { route, dir } of legs) {
    let touches = false;
    for (const h of route.hops) {
      if (h.kind !== 'link') continue;
      linkHops++;
      const rc = cluster.host(h.host).rc;
      if (h.from === rc || h.to === rc) touches = true;
    }
    if (touches) rcLegs++;
    ntb += route.ntbCrossings;
    cost += profile.costNs(route, route.bytes, dir);
  }
  return { routes: legs.map((l) => l.route), linkHops, rootComplexLegs: rcLegs, ntbCrossings: ntb, costNs: cost };
}

/** Bus address of byte `offset` of BAR `bar` of endpoint `at`. */
export function barAddr(cluster: PcieCluster, at: NodeRef, bar: number, offset: number): HostPhysAddr {
  const n = cluster.host(at.host).node(at.node);
  const b = n?.kind === 'endpoint' ? n.bars[bar] : undefined;
  if (b?.base === undefined) throw pvError('PV_ERR_INVALID_ARG', `${at.host}/${at.node} has no BAR ${bar}`);
  return hostPhysAddr(b.base + offset);
}

/** `initiator` writes `bytes` straight into BAR 1 of `accel` at `offset`. */
export function p2pPath(
  cluster: PcieCluster,
  initiator: NodeRef,
  accel: NodeRef,
  offset: number,
  bytes: number,
  profile: FabricProfile,
): PathSummary {
  const route = cluster.route(initiator, barAddr(cluster, accel, 1, offset), bytes);
  return summarise(cluster, [{ route, dir: 'write' }], profile);
}

/** `initiator` writes `bytes` into host RAM at `ram`, then `accel`'s DMA engine reads them from there. */
export function bouncePath(
  cluster: PcieCluster,
  initiator: NodeRef,
  accel: NodeRef,
  ram: number,
  bytes: number,
  profile: FabricProfile,
): PathSummary {
  const write = cluster.route(initiator, hostPhysAddr(ram), bytes);
  const read = cluster.route(accel, hostPhysAddr(ram), bytes);
  return summarise(
    cluster,
    [
      { route: write, dir: 'write' },
      { route: read, dir: 'read' },
    ],
    profile,
  );
}
