/**
 * A domain thread's devices: attaches the NICs the host handed it (each over its IOMMU context,
 * translated through this thread's MemoryDirectory), joins them in one fabric, and turns every
 * device the domain owns into a `PciFunction` (BAR 0 = the NIC's MMIO, DMA address = GPA, as
 * the host mapped the owner's memory 1:1) wrapped in a `DeviceAttachment` — transport
 * `passthrough` under a translating IOMMU, `native` with it in bypass. The scenario's own
 * attachments (paravirt, tcp) follow, untouched. Owned NVMe SSDs become `nvme` functions the
 * same way (BAR 0 = the controller's MMIO, whose doorbells run it inline in this thread).
 */

import { pvError } from '../../protocol/errors.js';
import type { DeviceAttachment, PciFunction } from '../../protocol/Pci.js';
import type { GuestPhysAddr, Iova } from '../../protocol/Types.js';
import { NvmeDevice } from '../devices/nvme/NvmeDevice.js';
import { RnicDevice } from '../devices/rnic/RnicDevice.js';
import { RnicFabric } from '../devices/rnic/RnicFabric.js';
import { IommuContext } from '../iommu/IommuContext.js';
import type { MemoryDirectory } from '../memory/MemoryDirectory.js';
import type { DomainDeviceData } from './HostDevices.js';

/** What a domain thread gets out of its device data. */
export interface DomainDevices {
  /** `env.devices`: owned devices in spec order, then the pass-through attachments. */
  readonly attachments: DeviceAttachment[];
  /** IOMMU contexts of the owned devices, by name (for grant device maps). */
  readonly iommus: Map<string, IommuContext>;
  /** Every NIC attached in this thread (their engines may run here in inline mode). */
  readonly nics: RnicDevice[];
  /** The NVMe SSDs this domain owns, attached in this thread. */
  readonly nvmes: NvmeDevice[];
}

/** The DMA address of an owner's GPA: the IOMMU maps (or, in bypass, is) the identity. */
function identity(gpa: GuestPhysAddr): Iova {
  return gpa as number as Iova;
}

/** Attaches the devices described by `data` in this thread (see the file comment). */
export function attachDevices(data: DomainDeviceData, directory: MemoryDirectory): DomainDevices {
  const fabric = new RnicFabric(data.fabricLock, data.wire);
  const byName = new Map<string, { nic: RnicDevice; iommu: IommuContext; bdf: string }>();
  for (const n of data.nics) {
    const iommu = IommuContext.attach(n.iommu, directory);
    const nic = new RnicDevice(n.state, iommu, fabric);
    fabric.add(nic);
    byName.set(n.iommu.device, { nic, iommu, bdf: n.bdf });
  }
  const ssds = new Map<string, { dev: NvmeDevice; iommu: IommuContext; bdf: string }>();
  for (const n of data.nvmes ?? []) {
    const iommu = IommuContext.attach(n.iommu, directory);
    ssds.set(n.iommu.device, { dev: new NvmeDevice(n.state, iommu), iommu, bdf: n.bdf });
  }
  const attachments: DeviceAttachment[] = [];
  const iommus = new Map<string, IommuContext>();
  for (const owned of data.owned) {
    const transport = owned.iommu === 'bypass' ? 'native' : 'passthrough';
    const ssd = ssds.get(owned.device);
    if (ssd !== undefined) {
      const fn: PciFunction = {
        name: owned.device,
        kind: 'nvme',
        bdf: ssd.bdf,
        bars: [ssd.dev.mmio()],
        dmaAddr: identity,
      };
      attachments.push({ device: owned.device, kind: 'nvme', transport, pci: fn });
      iommus.set(owned.device, ssd.iommu);
      continue;
    }
    const entry = byName.get(owned.device);
    if (entry === undefined) throw pvError('PV_ERR_CONFIG', `device ${owned.device} was not handed to this domain`);
    const pci: PciFunction = {
      name: owned.device,
      kind: 'rdma-nic',
      bdf: entry.bdf,
      bars: [entry.nic.mmio(data.engine)],
      dmaAddr: identity,
    };
    attachments.push({ device: owned.device, kind: 'rdma-nic', transport, pci });
    iommus.set(owned.device, entry.iommu);
  }
  attachments.push(...data.attachments);
  return {
    attachments,
    iommus,
    nics: [...byName.values()].map((e) => e.nic),
    nvmes: [...ssds.values()].map((e) => e.dev),
  };
}
