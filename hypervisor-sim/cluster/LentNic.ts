/**
 * A borrowed RDMA NIC inside one of the borrower's domain threads (Device Lending's "shadow
 * device", CC'20 §4): the lender's NIC state attached with an NtbDmaResolver as its DMA path,
 * joined to the thread's NIC fabric (so WRs between it and the borrower's own NICs run here,
 * inline in the doorbell writer's thread), and — for the domain that owns it — a `PciFunction`
 * the UNCHANGED RdmaNicDriver runs against:
 *
 *  - BAR 0 is the NIC's inline MMIO behind a LentFunction whose `onAccess` hook routes every
 *    access from B's root complex through the borrower-side NTB window onto the NIC's BAR on A,
 *    pays that route (payRoute) and counts it; once the lease is revoked the hook revokes the
 *    view and the access fails with PV_ERR_LEND_REVOKED;
 *  - `dmaAddr(gpa)` is the lender-side address that reaches `gpa`: the DMA window base plus the
 *    owner's bus address on B (= gpa: the IOMMU maps the owner 1:1, or is in bypass).
 */

import { pvError } from '../../protocol/errors.js';
import type { PciFunction } from '../../protocol/Pci.js';
import type { GuestPhysAddr, HostPhysAddr, Iova } from '../../protocol/Types.js';
import { RnicDevice, type RnicState } from '../devices/rnic/RnicDevice.js';
import type { RnicFabric } from '../devices/rnic/RnicFabric.js';
import type { IommuContext } from '../iommu/IommuContext.js';
import { type AccessHook, LentFunction } from '../lending/LentFunction.js';
import type { Lease } from '../lending/Types.js';
import type { MemoryDirectory } from '../memory/MemoryDirectory.js';
import { payRoute } from '../pcie/PayNs.js';
import type { Route } from '../pcie/Types.js';
import { LentBig, LentWord } from './LentStats.js';
import { type NtbDmaData, NtbDmaResolver } from './NtbDmaResolver.js';

/** What the fabric hook of a lent device's BAR needs (LentNicData and LentNvmeData have it). */
export interface LentMmioData {
  readonly name: string;
  readonly lender: string;
  readonly endpoint: string;
  readonly borrower: string;
  readonly barWindowBase: number;
  /** Borrower address of the window onto each BAR, when the device has more than BAR 0 (accel). */
  readonly barWindowBases?: readonly number[];
  readonly lease: Lease;
}

/**
 * Extra rule of a lent view's BAR: returns a reason to refuse the access (counted as refused,
 * thrown as PV_ERR_LEND_NOT_HOLDER), or undefined to let it through. Shared NVMe uses it.
 */
export type MmioFilter = (kind: 'read' | 'write', offset: number) => string | undefined;

/** One borrowed NIC as handed to a borrower's domain thread (structured-cloneable). */
export interface LentNicData extends NtbDmaData, LentMmioData {
  /** Absent or 'rdma-nic' (LentNvme.ts has the NVMe kind). */
  readonly kind?: 'rdma-nic';
  /** Name on the borrower (`nic0@A`). */
  readonly name: string;
  /** PCI address on the borrower. */
  readonly bdf: string;
  /** The NIC's registers and device memory (the same buffers the lender created). */
  readonly state: RnicState;
  /** Borrower address of the window onto the NIC's BAR 0. */
  readonly barWindowBase: number;
  /** Lender address of the DMA window onto the borrower's bus address 0. */
  readonly dmaWindowBase: number;
  readonly lease: Lease;
}

/** A borrowed NIC attached in this thread. */
export interface AttachedLentNic {
  readonly nic: RnicDevice;
  /** B's IOMMU context for the lease (grant device maps go here). */
  readonly iommu: IommuContext;
  readonly resolver: NtbDmaResolver;
  /** The function the owner's driver gets (a LentFunction). */
  readonly pci: LentFunction;
  /** Lender bus address of B's bus address 0 (the DMA window base): grant device maps add it. */
  readonly dmaBase: number;
}

/** Attaches every borrowed NIC of `list` in this thread, on `fabric`, by name. */
export function attachLentNics(
  list: readonly LentNicData[],
  fabric: RnicFabric,
  directory: MemoryDirectory,
): Map<string, AttachedLentNic> {
  const out = new Map<string, AttachedLentNic>();
  for (const data of list) {
    const resolver = new NtbDmaResolver(data, directory);
    const nic = new RnicDevice(data.state, resolver, fabric);
    const inner: PciFunction = {
      name: data.name,
      kind: 'rdma-nic',
      bdf: data.bdf,
      bars: [nic.mmio('inline')],
      dmaAddr: (gpa: GuestPhysAddr) => (data.dmaWindowBase + gpa) as Iova,
    };
    let lent: LentFunction | undefined;
    const hook = lentMmioHook(data, resolver, () => lent?.revoke('revoked by a forced return'));
    lent = new LentFunction(inner, { lease: data.lease, onAccess: hook });
    out.set(data.name, { nic, iommu: resolver.iommu, resolver, pci: lent, dmaBase: data.dmaWindowBase });
  }
  return out;
}

/**
 * The fabric hook of a lent view's BAR: refuses once revoked (or what `filter` refuses),
 * otherwise routes the access from B's root complex through that BAR's window, checks it lands on
 * the lent device's BAR, pays and counts it.
 */
export function lentMmioHook(
  data: LentMmioData,
  r: NtbDmaResolver,
  onRevoked: () => void,
  filter?: MmioFilter,
): AccessHook {
  const from = { host: data.borrower, node: r.fabric.host(data.borrower).rc };
  const stats = r.stats;
  return (kind, bytes, bar, offset) => {
    if (stats.revoked) {
      stats.add(LentWord.MMIO_REFUSED);
      onRevoked();
      throw pvError(
        'PV_ERR_LEND_REVOKED',
        `lent device ${data.name}: the lease ended (lease ${data.lease.generation})`,
      );
    }
    const refused = filter?.(kind, offset);
    if (refused !== undefined) {
      stats.add(LentWord.MMIO_REFUSED);
      throw pvError('PV_ERR_LEND_NOT_HOLDER', `${data.name}: ${data.borrower} ${refused}`);
    }
    const base = data.barWindowBases?.[bar] ?? (bar === 0 ? data.barWindowBase : undefined);
    if (base === undefined) {
      stats.add(LentWord.MMIO_REFUSED);
      throw pvError('PV_ERR_PCIE_NO_WINDOW', `${data.name}: ${data.borrower} has no window onto BAR ${bar}`);
    }
    let route: Route;
    try {
      route = r.fabric.route(from, (base + offset) as HostPhysAddr, bytes);
    } catch (err) {
      stats.add(LentWord.MMIO_REFUSED);
      throw err;
    }
    const t = route.target;
    if (t.kind !== 'bar' || t.host !== data.lender || t.endpoint !== data.endpoint || t.bar !== bar) {
      stats.add(LentWord.MMIO_REFUSED);
      throw pvError('PV_ERR_PCIE_NO_WINDOW', `${data.name}: BAR window of ${data.borrower} does not reach the device`);
    }
    stats.add(kind === 'read' ? LentWord.MMIO_READS : LentWord.MMIO_WRITES);
    stats.add(LentWord.MMIO_NTB_CROSSINGS, route.ntbCrossings);
    stats.add(LentWord.MMIO_LINK_HOPS, route.hops.length - route.ntbCrossings);
    stats.addBig(LentBig.FABRIC_NS, payRoute(r.profile, route, bytes, kind));
  };
}
