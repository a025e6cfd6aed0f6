/**
 * A domain thread's devices: attaches the NICs the host handed it (each over its IOMMU context,
 * translated through this thread's MemoryDirectory), joins them in one fabric, and turns every
 * device the domain owns into a `PciFunction` (BAR 0 = the NIC's MMIO, DMA address = GPA, as
 * the host mapped the owner's memory 1:1) wrapped in a `DeviceAttachment` — transport
 * `passthrough` under a translating IOMMU, `native` with it in bypass. The scenario's own
 * attachments (paravirt, tcp) follow, untouched. Owned NVMe SSDs become `nvme` functions the
 * same way (BAR 0 = the controller's MMIO, whose doorbells run it inline in this thread).
 * Borrowed devices (Device Lending) attach through cluster/LentNic.ts, LentNvme.ts and LentAccel.ts.
 * Owned accelerators become `accel` functions (devices/accel/AccelAttach.ts), and owned SSDs and
 * accelerators get a `peerDma` port: P2P DMA into an owned accelerator's memory.
 * With a wire mailbox (HostOptions.wireMailboxes) the fabric's `remote` ships work requests for
 * ports of other host processes over the host link (devices/rnic/RemoteWire.ts).
 */

import { pvError } from '../../protocol/errors.js';
import type { DeviceAttachment, PciFunction } from '../../protocol/Pci.js';
import type { GuestPhysAddr, Iova } from '../../protocol/Types.js';
import { attachLentAccels, isLentAccel, type LentAccelData } from '../cluster/LentAccel.js';
import { isLentNic } from '../cluster/LentDevices.js';
import { attachLentNics, type LentNicData } from '../cluster/LentNic.js';
import { attachLentNvmes, isLentNvme, type LentNvmeData } from '../cluster/LentNvme.js';
import { DomainAccels } from '../devices/accel/AccelAttach.js';
import type { AccelDevice } from '../devices/accel/AccelDevice.js';
import { NvmeDevice } from '../devices/nvme/NvmeDevice.js';
import { RemoteWire } from '../devices/rnic/RemoteWire.js';
import { RnicDevice } from '../devices/rnic/RnicDevice.js';
import { RnicFabric } from '../devices/rnic/RnicFabric.js';
import { IommuContext } from '../iommu/IommuContext.js';
import { MailboxClient } from '../link/Mailbox.js';
import type { MemoryDirectory } from '../memory/MemoryDirectory.js';
import { LocalFabric } from '../pcie/LocalFabric.js';
import type { DomainDeviceData } from './HostDevices.js';

/** What a domain thread gets out of its device data. */
export interface DomainDevices {
  /** `env.devices`: owned devices in spec order, then the pass-through attachments. */
  readonly attachments: DeviceAttachment[];
  /** IOMMU contexts of the owned devices, by name (for grant device maps). */
  readonly iommus: Map<string, IommuContext>;
  /**
   * Bus address at which an owned device sees IOVA 0, for devices whose DMA does not reach the
   * IOMMU at its own address: a borrowed device's lender-side DMA window base (SimGrantOps adds
   * it to `deviceAddr`). Local devices are absent (base 0).
   */
  readonly dmaBases: Map<string, number>;
  /** Every NIC attached in this thread (their engines may run here in inline mode). */
  readonly nics: RnicDevice[];
  /** The NVMe SSDs this domain owns, attached in this thread. */
  readonly nvmes: NvmeDevice[];
  /** The accelerators this domain owns, attached in this thread. */
  readonly accels?: AccelDevice[];
}

/** The DMA address of an owner's GPA: the IOMMU maps (or, in bypass, is) the identity. */
function identity(gpa: GuestPhysAddr): Iova {
  return gpa as number as Iova;
}

/** Attaches the devices described by `data` in this thread (see the file comment). */
export function attachDevices(data: DomainDeviceData, directory: MemoryDirectory): DomainDevices {
  const fabric = new RnicFabric(data.fabricLock, data.wire);
  // Ports of no NIC of this host may be NICs of other host processes, reached over the link.
  if (data.wireMailbox !== undefined) fabric.remote = new RemoteWire(new MailboxClient(data.wireMailbox));
  // Local devices pay the host's rc ── sw ── device path under a timing profile (pcie/LocalFabric.ts).
  const local = new LocalFabric(data.fabric ?? 'ideal');
  const byName = new Map<string, { nic: RnicDevice; iommu: IommuContext; bdf: string }>();
  for (const n of data.nics) {
    const iommu = IommuContext.attach(n.iommu, directory);
    const nic = new RnicDevice(n.state, local.wrapResolver(iommu), fabric);
    fabric.add(nic);
    byName.set(n.iommu.device, { nic, iommu, bdf: n.bdf });
  }
  // Borrowed devices (Device Lending): the lender's NIC with an NTB DMA path, on this fabric;
  // the lender's NVMe controller with an NTB DMA path, run inline by the owner's doorbells.
  const lentList = data.lent ?? [];
  const lent = attachLentNics(
    lentList.filter((d): d is LentNicData => isLentNic(d)),
    fabric,
    directory,
  );
  const lentNvmes = attachLentNvmes(
    lentList.filter((d): d is LentNvmeData => isLentNvme(d)),
    directory,
  );
  // The lender's accelerator with an NTB DMA path (and P2P into other lent accelerators' BAR 1).
  const lentAccels = attachLentAccels(
    lentList.filter((d): d is LentAccelData => isLentAccel(d)),
    directory,
  );
  // Owned accelerators, and peer windows (P2P DMA into their memory) in front of each owned SSD.
  const accels = new DomainAccels(data.accels ?? [], directory);
  const ssds = new Map<string, { dev: NvmeDevice; iommu: IommuContext; bdf: string }>();
  for (const n of data.nvmes ?? []) {
    const iommu = IommuContext.attach(n.iommu, directory);
    const dev = new NvmeDevice(n.state, local.wrapResolver(accels.resolver(n.iommu.device, iommu)));
    ssds.set(n.iommu.device, { dev, iommu, bdf: n.bdf });
  }
  const attachments: DeviceAttachment[] = [];
  const iommus = new Map<string, IommuContext>();
  const dmaBases = new Map<string, number>();
  // Borrowed functions of every kind attach alike: the lent view, its IOMMU and DMA window base.
  const borrowedKinds = [
    ['rdma-nic', lent],
    ['nvme', lentNvmes],
    ['accel', lentAccels],
  ] as const;
  for (const owned of data.owned) {
    const transport = owned.iommu === 'bypass' ? 'native' : 'passthrough';
    const borrowed = borrowedKinds
      .map(([kind, fns]) => ({ kind, fn: fns.get(owned.device) }))
      .find((b) => b.fn !== undefined);
    if (borrowed?.fn !== undefined) {
      attachments.push({ device: owned.device, kind: borrowed.kind, transport, pci: borrowed.fn.pci });
      iommus.set(owned.device, borrowed.fn.iommu);
      dmaBases.set(owned.device, borrowed.fn.dmaBase);
      continue;
    }
    const accel = accels.attachment(owned.device, transport);
    if (accel !== undefined) {
      attachments.push(accel.attachment);
      iommus.set(owned.device, accel.iommu);
      continue;
    }
    const ssd = ssds.get(owned.device);
    if (ssd !== undefined) {
      const fn: PciFunction = {
        name: owned.device,
        kind: 'nvme',
        bdf: ssd.bdf,
        bars: [local.wrapBar(ssd.dev.mmio())],
        dmaAddr: identity,
      };
      attachments.push({ device: owned.device, kind: 'nvme', transport, pci: accels.withPeerDma(fn) });
      iommus.set(owned.device, ssd.iommu);
      continue;
    }
    const entry = byName.get(owned.device);
    if (entry === undefined) throw pvError('PV_ERR_CONFIG', `device ${owned.device} was not handed to this domain`);
    const pci: PciFunction = {
      name: owned.device,
      kind: 'rdma-nic',
      bdf: entry.bdf,
      bars: [local.wrapBar(entry.nic.mmio(data.engine))],
      dmaAddr: identity,
    };
    attachments.push({ device: owned.device, kind: 'rdma-nic', transport, pci });
    iommus.set(owned.device, entry.iommu);
  }
  attachments.push(...data.attachments);
  return {
    attachments,
    iommus,
    dmaBases,
    nics: [...byName.values(), ...lent.values()].map((e) => e.nic),
    nvmes: [...ssds.values(), ...lentNvmes.values()].map((e) => e.dev),
    accels: [...accels.devices(), ...[...lentAccels.values()].map((e) => e.dev)],
  };
}
