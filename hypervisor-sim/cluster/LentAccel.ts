/**
 * A borrowed accelerator inside one of the borrower's domain threads — the same shadow device as
 * a lent NIC or NVMe (LentNic.ts, LentNvme.ts), for pvio's GPU-like accelerator: the lender's
 * accelerator state (`AccelState`: registers, control memory, device memory) attached with an
 * NtbDmaResolver as its DMA path, and a LentFunction the UNCHANGED AccelDriver runs against:
 *
 *  - BAR 0 (registers) and BAR 1 (device memory) each sit behind their own borrower-side NTB
 *    window (`barWindowBases`); every access goes through the lent BAR hook (lentMmioHook):
 *    routed from B's root complex through that window onto the BAR on A, paid and counted. A
 *    doorbell runs the DMA engine or a kernel inline in this (the writer's) thread;
 *  - the DMA engine's host addresses are lender-side bus addresses: the DMA window onto B's
 *    memory (`dmaAddr(gpa)` = DMA window base + gpa, as for the NIC), or — peer-to-peer — an
 *    address the Cluster handed out for another accelerator's BAR 1 (Cluster.mapP2p), which the
 *    resolver turns into that accelerator's device memory (NtbDmaResolver `peers`).
 *
 * An accelerator holds no queued work (each operation completes inside its doorbell write), so a
 * lease is in use only while a domain owns it; a forced return makes the driver's next register
 * access throw PV_ERR_LEND_REVOKED, every later DMA faults, and the lender's function-level reset
 * scrubs the device memory before anyone else borrows it.
 */

import type { PciFunction } from '../../protocol/Pci.js';
import type { GuestPhysAddr, Iova } from '../../protocol/Types.js';
import { AccelDevice, type AccelState } from '../devices/accel/AccelDevice.js';
import type { IommuContext } from '../iommu/IommuContext.js';
import { LentFunction } from '../lending/LentFunction.js';
import type { MemoryDirectory } from '../memory/MemoryDirectory.js';
import { type LentMmioData, lentMmioHook } from './LentNic.js';
import { type NtbDmaData, NtbDmaResolver } from './NtbDmaResolver.js';

/** One borrowed accelerator as handed to a borrower's domain thread (structured-cloneable). */
export interface LentAccelData extends NtbDmaData, LentMmioData {
  readonly kind: 'accel';
  readonly bdf: string;
  /** The accelerator's state on the lender (the same buffers). */
  readonly state: AccelState;
  /** Borrower addresses of the windows onto BAR 0 and BAR 1. */
  readonly barWindowBases: readonly number[];
  /** Lender address of the DMA window onto the borrower's bus address 0. */
  readonly dmaWindowBase: number;
}

/** A borrowed accelerator attached in this thread. */
export interface AttachedLentAccel {
  readonly dev: AccelDevice;
  readonly iommu: IommuContext;
  readonly resolver: NtbDmaResolver;
  readonly pci: LentFunction;
  /** Lender bus address of B's bus address 0 (grant device maps add it). */
  readonly dmaBase: number;
}

/** Type guard: a lent-device record of the accelerator kind. */
export function isLentAccel(d: { readonly kind?: string }): d is LentAccelData {
  return d.kind === 'accel';
}

/** Attaches one borrowed accelerator in this thread (`directory`: the borrower's domain memories). */
export function attachLentAccel(data: LentAccelData, directory: MemoryDirectory): AttachedLentAccel {
  const resolver = new NtbDmaResolver(data, directory);
  const dev = new AccelDevice(data.state, resolver);
  const inner: PciFunction = {
    name: data.name,
    kind: 'accel',
    bdf: data.bdf,
    bars: [dev.mmio(), dev.memory()],
    dmaAddr: (gpa: GuestPhysAddr) => (data.dmaWindowBase + gpa) as Iova,
  };
  let lent: LentFunction | undefined;
  const hook = lentMmioHook(data, resolver, () => lent?.revoke('revoked by a forced return'));
  lent = new LentFunction(inner, { lease: data.lease, onAccess: hook });
  return { dev, iommu: resolver.iommu, resolver, pci: lent, dmaBase: data.dmaWindowBase };
}

/** Attaches every borrowed accelerator of `list` in this thread, by name. */
export function attachLentAccels(
  list: readonly LentAccelData[],
  directory: MemoryDirectory,
): Map<string, AttachedLentAccel> {
  const out = new Map<string, AttachedLentAccel>();
  for (const data of list) out.set(data.name, attachLentAccel(data, directory));
  return out;
}
