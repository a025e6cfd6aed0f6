/**
 * The domain-thread side of accelerators and peer-to-peer DMA (called from
 * domain/DomainDevices.ts): attaches the accelerators the domain owns, each over its IOMMU
 * context, turns each into an `accel` PciFunction (BAR 0 registers, BAR 1 device memory), and
 * gives every device the domain owns a PeerResolver (PeerWindows.ts) plus a `peerDma` port on
 * its function (protocol/accel/PeerDma.ts), so the owner can point one of its devices' DMA at
 * another one's BAR 1 — an NVMe READ straight into accelerator memory.
 *
 * Only accelerators this domain owns are attached here, so `mapPeerBar` can only target a device
 * of the same owner ("an owner holding both devices"); anything else is PV_ERR_CONFIG.
 */

import type { PeerDmaPort } from '../../../protocol/accel/PeerDma.js';
import { pvError } from '../../../protocol/errors.js';
import type { DeviceAttachment, PciFunction, Transport } from '../../../protocol/Pci.js';
import type { GuestPhysAddr, Iova } from '../../../protocol/Types.js';
import type { DmaResolver } from '../../iommu/DmaResolver.js';
import { IommuContext, type IommuDescriptor } from '../../iommu/IommuContext.js';
import type { MemoryDirectory } from '../../memory/MemoryDirectory.js';
import { AccelDevice, type AccelState } from './AccelDevice.js';
import { PeerResolver } from './PeerWindows.js';

/** One accelerator as handed to the thread of the domain that owns it (structured-cloneable). */
export interface AccelData {
  /** Registers, control memory and device memory (AccelDevice.create). */
  readonly state: AccelState;
  /** The accelerator's IOMMU context; `iommu.device` is its name. */
  readonly iommu: IommuDescriptor;
  /** PCI address. */
  readonly bdf: string;
}

/** The DMA address of an owner's GPA: the IOMMU maps (or, in bypass, is) the identity. */
function identity(gpa: GuestPhysAddr): Iova {
  return gpa as number as Iova;
}

interface Attached {
  readonly dev: AccelDevice;
  readonly iommu: IommuContext;
  readonly bdf: string;
}

/** One domain thread's accelerators and peer windows (see the file comment). */
export class DomainAccels {
  private readonly _accels = new Map<string, Attached>();
  private readonly _resolvers = new Map<string, PeerResolver>();

  constructor(data: readonly AccelData[], directory: MemoryDirectory) {
    for (const a of data) {
      const iommu = IommuContext.attach(a.iommu, directory);
      const dev = new AccelDevice(a.state, this.resolver(a.iommu.device, iommu));
      this._accels.set(a.iommu.device, { dev, iommu, bdf: a.bdf });
    }
  }

  /** The DMA path of device `name` in this thread: peer windows in front of `iommu`. */
  resolver(name: string, iommu: DmaResolver): PeerResolver {
    let r = this._resolvers.get(name);
    if (r === undefined) {
      r = new PeerResolver(name, iommu);
      this._resolvers.set(name, r);
    }
    return r;
  }

  /** The accelerators attached here. */
  devices(): AccelDevice[] {
    return [...this._accels.values()].map((a) => a.dev);
  }

  /** The attachment of owned accelerator `name` and its IOMMU, or undefined if it is not one. */
  attachment(name: string, transport: Transport): { attachment: DeviceAttachment; iommu: IommuContext } | undefined {
    const a = this._accels.get(name);
    if (a === undefined) return undefined;
    const pci = this.withPeerDma({
      name,
      kind: 'accel',
      bdf: a.bdf,
      bars: [a.dev.mmio(), a.dev.memory()],
      dmaAddr: identity,
    });
    return { attachment: { device: name, kind: 'accel', transport, pci }, iommu: a.iommu };
  }

  /** `fn` with a `peerDma` port, when its device has a resolver here; `fn` itself otherwise. */
  withPeerDma(fn: PciFunction): PciFunction {
    const r = this._resolvers.get(fn.name);
    if (r === undefined) return fn;
    const port: PeerDmaPort = {
      mapPeerBar: (peer, bar, readOnly) => this._map(r, peer, bar, readOnly === true),
      unmapPeerBar: (iova) => r.unmap(iova),
    };
    return { ...fn, peerDma: port } as PciFunction;
  }

  private _map(r: PeerResolver, peer: PciFunction, bar: number, readOnly: boolean): Iova {
    const a = this._accels.get(peer?.name);
    if (a === undefined || peer.kind !== 'accel') {
      throw pvError('PV_ERR_CONFIG', `${r.device}: ${String(peer?.name)} is not an accelerator this domain owns`);
    }
    if (peer.name === r.device) throw pvError('PV_ERR_CONFIG', `${r.device}: a device cannot be its own peer`);
    if (bar !== 1) throw pvError('PV_ERR_CONFIG', `${peer.name}: only BAR 1 (device memory) is a DMA target`);
    const iova = r.map(peer.name, a.dev.state.mem, !readOnly);
    if (iova < 0) throw pvError('PV_ERR_LIMIT', `${r.device}: every peer window is in use`);
    return iova as Iova;
  }
}
