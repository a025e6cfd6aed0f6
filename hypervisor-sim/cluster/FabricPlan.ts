/**
 * The PCIe side of a Cluster: the fabric description built from its hosts (each host's tree and
 * the NTBs between them), and the placement of lending windows inside NTB apertures.
 *
 * Every host gets the same shape, a root complex with one switch below it and every device on
 * that switch (a Dolphin PXH830 and the NICs in slots behind one PCIe switch):
 * ```
 *  rc ── sw ─┬─ nic0 (BAR 0)           one endpoint per NIC of the host
 *            ├─ nic1 …
 *            ├─ nvme0 (BAR 0)          one endpoint per NVMe SSD
 *            ├─ accel0 (BAR 0, BAR 1)  one endpoint per accelerator (registers, device memory)
 *            └─ ntb-B (aperture)       one NTB adapter per link, named after the peer host
 * ```
 * so a lent NIC's DMA crosses nic0 → sw → ntb-B on the lender, the NTB, and ntb-A → sw → rc on
 * the borrower: 4 links and 1 NTB; its MMIO the same in reverse; a local NIC's DMA 2 links.
 * Two accelerators of one host reach each other's BAR 1 through the switch (accel0 → sw →
 * accel1: 2 links, never the root complex); accelerators of two linked hosts through the NTB
 * (accel0 → sw → ntb-C on A, the NTB, ntb-A → sw → accel0 on C: 4 links and 1 NTB).
 *
 * "RAM" of a host in the fabric is the borrower's bus-address space that the IOMMU translates
 * (IOVA = guest-physical for a passthrough owner, physical for a native one, plus the IOMMU's
 * foreign window for grant device maps), hence its default of 1 GiB.
 */

import { ACCEL_BAR0_BYTES } from '../../protocol/accel/AccelRegs.js';
import { pvError } from '../../protocol/errors.js';
import { nvmeBarSize } from '../../protocol/nvme/NvmeRegs.js';
import { nicBarSize } from '../../protocol/rdma/NicRegs.js';
import { ACCEL_DEFAULT_MEM_BYTES } from '../devices/accel/AccelDevice.js';
import type { NicSpec } from '../domain/HostDevices.js';
import type { PcieCluster } from '../pcie/PcieCluster.js';
import type { ClusterSpec, HostSpec, LinkSpec, NodeSpec, NtbSpec } from '../pcie/Types.js';
import type { ClusterHostSpec } from './ClusterTypes.js';

/** Default bus-address space ("RAM") of a host: 1 GiB. */
export const DEFAULT_RAM_BYTES = 1 << 30;
/** Aperture of each NTB adapter: 4 GiB (room for DMA windows of several leases). */
export const APERTURE_BYTES = 2 ** 32;
/** Windows start on 64 KiB boundaries (the adapters' translation granule). */
export const WINDOW_ALIGN = 0x1_0000;

/** What the plan needs of a host. */
export interface PlanHost {
  readonly name: string;
  readonly ramBytes: number;
  /** NIC names and their maxQp (it sizes BAR 0). */
  readonly nics: readonly { readonly name: string; readonly maxQp: number }[];
  /** NVMe SSD names and their BAR 0 size in the fabric (nvmeBarBytes). */
  readonly nvmes?: readonly { readonly name: string; readonly barBytes: number }[];
  /** Accelerator names and their device memory bytes (BAR 1 size, a power of two). */
  readonly accels?: readonly { readonly name: string; readonly memBytes: number }[];
}

/** Node id of the NTB adapter on `host` that leads to `peer`. */
export function ntbNode(peer: string): string {
  return `ntb-${peer}`;
}

/** Name of the NTB joining `a` and `b`. */
export function ntbName(a: string, b: string): string {
  return `${a}-${b}`;
}

/** Size of a NIC's BAR 0 in the fabric: the register file rounded up to a power of two. */
export function nicBarBytes(maxQp: number): number {
  return 2 ** Math.ceil(Math.log2(nicBarSize(maxQp)));
}

/** Size of an NVMe SSD's BAR 0 in the fabric: its register file rounded up to a power of two. */
export function nvmeBarBytes(maxIoQueues: number, dstrd: number): number {
  return 2 ** Math.ceil(Math.log2(nvmeBarSize(maxIoQueues, dstrd)));
}

/** Builds the cluster's fabric description (validated later by PcieCluster.create). */
export function planFabric(hosts: readonly PlanHost[], links: readonly (readonly [string, string])[]): ClusterSpec {
  const names = new Set(hosts.map((h) => h.name));
  const peers = new Map<string, string[]>(hosts.map((h) => [h.name, []]));
  const ntbs: NtbSpec[] = [];
  for (const [a, b] of links) {
    if (!names.has(a) || !names.has(b) || a === b) {
      throw pvError('PV_ERR_CONFIG', `NTB link ${a}–${b} must join two different hosts of the cluster`);
    }
    if (peers.get(a)!.includes(b)) throw pvError('PV_ERR_CONFIG', `hosts ${a} and ${b} are linked twice`);
    peers.get(a)!.push(b);
    peers.get(b)!.push(a);
    ntbs.push({
      name: ntbName(a, b),
      sides: [
        { host: a, node: ntbNode(b) },
        { host: b, node: ntbNode(a) },
      ],
    });
  }
  const specs: HostSpec[] = hosts.map((h) => {
    const nodes: NodeSpec[] = [
      { id: 'rc', kind: 'rc' },
      { id: 'sw', kind: 'switch' },
    ];
    const ls: LinkSpec[] = [{ a: 'rc', b: 'sw' }];
    for (const n of h.nics) {
      // Mellanox ConnectX-5 identity, class 0x0207 (InfiniBand controller).
      const config = { vendorId: 0x15b3, deviceId: 0x1017, classCode: 0x020700 };
      nodes.push({ id: n.name, kind: 'endpoint', config, bars: [{ size: nicBarBytes(n.maxQp) }] });
      ls.push({ a: 'sw', b: n.name });
    }
    for (const n of h.nvmes ?? []) {
      // Samsung PM1725-class identity, class 0x010802 (NVM Express controller).
      const config = { vendorId: 0x144d, deviceId: 0xa822, classCode: 0x010802 };
      nodes.push({ id: n.name, kind: 'endpoint', config, bars: [{ size: n.barBytes }] });
      ls.push({ a: 'sw', b: n.name });
    }
    for (const a of h.accels ?? []) {
      // NVIDIA-class identity, class 0x120000 (processing accelerator).
      const config = { vendorId: 0x10de, deviceId: 0x1db4, classCode: 0x120000 };
      nodes.push({ id: a.name, kind: 'endpoint', config, bars: [{ size: ACCEL_BAR0_BYTES }, { size: a.memBytes }] });
      ls.push({ a: 'sw', b: a.name });
    }
    for (const p of peers.get(h.name)!) {
      // Dolphin PXH830 identity, class 0x068000 (other bridge).
      const config = { vendorId: 0x11c8, deviceId: 0x0830, classCode: 0x068000 };
      nodes.push({ id: ntbNode(p), kind: 'ntb', aperture: { size: APERTURE_BYTES }, config });
      ls.push({ a: 'sw', b: ntbNode(p) });
    }
    return { name: h.name, ramBytes: h.ramBytes, nodes, links: ls };
  });
  return { hosts: specs, ntbs };
}

/** A placed window: where it lies in its aperture. */
export interface Placement {
  readonly base: number;
  readonly size: number;
}

/**
 * First-fit placement of windows inside one aperture (one per NTB side). Freed ranges are reused;
 * nothing here touches the window tables (the Cluster opens the window once placed).
 */
export class ApertureSpace {
  private readonly _used: Placement[] = [];

  constructor(
    readonly base: number,
    readonly size: number,
  ) {}

  /** Places `bytes` (rounded up to WINDOW_ALIGN); PV_ERR_LIMIT when no hole is large enough. */
  place(bytes: number): Placement {
    const size = Math.ceil(bytes / WINDOW_ALIGN) * WINDOW_ALIGN;
    let at = this.base;
    for (const u of this._used) {
      if (u.base - at >= size) break;
      at = Math.max(at, u.base + u.size);
    }
    if (at + size > this.base + this.size) {
      throw pvError('PV_ERR_LIMIT', `no ${size}-byte hole left in the NTB aperture at 0x${this.base.toString(16)}`);
    }
    const p = { base: at, size };
    this._used.push(p);
    this._used.sort((x, y) => x.base - y.base);
    return p;
  }

  /** Frees a placement made by `place`. */
  free(p: Placement): void {
    const i = this._used.findIndex((u) => u.base === p.base && u.size === p.size);
    if (i >= 0) this._used.splice(i, 1);
  }
}

/** A cluster host with its defaults applied: bus space, and NIC port ids unique across the cluster. */
export interface PlannedHost {
  readonly spec: ClusterHostSpec;
  readonly ramBytes: number;
  readonly nics: readonly NicSpec[];
}

/** Applies the defaults to every host (NIC `portId` defaults to host index × 64 + NIC index + 1). */
export function planHosts(hosts: readonly ClusterHostSpec[]): PlannedHost[] {
  return hosts.map((h, hi) => ({
    spec: h,
    ramBytes: h.ramBytes ?? DEFAULT_RAM_BYTES,
    nics: (h.nics ?? []).map((n, i) => ({ ...n, portId: n.portId ?? hi * 64 + i + 1 })),
  }));
}

/** What planFabric needs of a planned host: its devices and their BAR sizes. */
export function planHostOf(p: PlannedHost): PlanHost {
  return {
    name: p.spec.name,
    ramBytes: p.ramBytes,
    nics: p.nics.map((n) => ({ name: n.name, maxQp: n.maxQp ?? 256 })),
    nvmes: (p.spec.nvmes ?? []).map((n) => ({
      name: n.name,
      barBytes: nvmeBarBytes(n.maxIoQueues ?? 16, n.dstrd ?? 0),
    })),
    accels: (p.spec.accels ?? []).map((a) => ({ name: a.name, memBytes: a.memBytes ?? ACCEL_DEFAULT_MEM_BYTES })),
  };
}

/** One window placer per NTB aperture of `hosts`, keyed `host/node`. */
export function apertureSpaces(fabric: PcieCluster, hosts: readonly string[]): Map<string, ApertureSpace> {
  const out = new Map<string, ApertureSpace>();
  for (const name of hosts) {
    for (const port of fabric.ports(name)) {
      const node = fabric.host(name).node(port.node);
      // INVARIANT: validateCluster assigned every aperture a base.
      if (node?.kind === 'ntb')
        out.set(`${name}/${port.node}`, new ApertureSpace(node.aperture.base!, node.aperture.size));
    }
  }
  return out;
}
