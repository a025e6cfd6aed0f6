/**
 * Test rig: one owner domain (a real SharedArrayGuestMemory) holding an accelerator — and, with
 * `nvme`, a file-backed NVMe SSD — each behind its own real IOMMU context, attached through the
 * same code a domain thread uses (DomainAccels: accel functions, peer windows, peerDma ports).
 * `dispose` closes the NVMe media and removes its temporary file.
 */

import { type AccelData, DomainAccels } from '../../../../../hypervisor-sim/devices/accel/AccelAttach.js';
import { type AccelConfig, AccelDevice } from '../../../../../hypervisor-sim/devices/accel/AccelDevice.js';
import { NvmeDevice, type NvmeState } from '../../../../../hypervisor-sim/devices/nvme/NvmeDevice.js';
import { IommuContext, type IommuMode } from '../../../../../hypervisor-sim/iommu/IommuContext.js';
import { MemoryDirectory } from '../../../../../hypervisor-sim/memory/MemoryDirectory.js';
import { SharedArrayGuestMemory } from '../../../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import type { PciFunction } from '../../../../../protocol/Pci.js';
import { domId, type GuestPhysAddr, type Iova } from '../../../../../protocol/Types.js';

/** An owner with an accelerator (and maybe an NVMe). */
export interface AccelRig {
  readonly mem: SharedArrayGuestMemory;
  readonly accels: DomainAccels;
  readonly accel: AccelDevice;
  readonly accelPci: PciFunction;
  readonly accelIommu: IommuContext;
  readonly nvme?: NvmeDevice;
  readonly nvmeState?: NvmeState;
  readonly nvmePci?: PciFunction;
  dispose(): void;
}

/** Options of `makeAccelRig`. */
export interface AccelRigOpts extends Partial<AccelConfig> {
  /** Owner memory bytes (default 8 MiB). */
  memBytes?: number;
  /** Accelerator memory bytes (default 4 MiB). */
  devBytes?: number;
  iommu?: IommuMode;
  /** Also an NVMe SSD of this many bytes. */
  nvmeBytes?: number;
}

/** Builds a rig (see the file comment). */
export function makeAccelRig(o: AccelRigOpts = {}): AccelRig {
  const domid = domId(1);
  const mem = SharedArrayGuestMemory.create(domid, o.memBytes ?? 8 << 20);
  const dir = new MemoryDirectory();
  dir.addMemory(mem);
  const mode = o.iommu ?? 'translate';
  const state = AccelDevice.create({ name: 'accel0', memBytes: o.devBytes ?? 4 << 20, maxXfer: o.maxXfer });
  const accelDesc = IommuContext.create({ device: 'accel0' });
  const accelIommu = IommuContext.attach(accelDesc, dir);
  accelIommu.assign(domid, mem.size, mode);
  const data: AccelData = { state, iommu: accelDesc, bdf: '0000:06:00.0' };
  const accels = new DomainAccels([data], dir);
  const att = accels.attachment('accel0', mode === 'bypass' ? 'native' : 'passthrough');
  if (att?.attachment.pci === undefined) throw new Error('accel0 not attached');
  const accel = accels.devices()[0];
  let nvme: NvmeDevice | undefined;
  let nvmeState: NvmeState | undefined;
  let nvmePci: PciFunction | undefined;
  if (o.nvmeBytes !== undefined) {
    nvmeState = NvmeDevice.create({ name: 'nvme0', sizeBytes: o.nvmeBytes });
    const nvmeIommu = IommuContext.attach(IommuContext.create({ device: 'nvme0' }), dir);
    nvmeIommu.assign(domid, mem.size, mode);
    nvme = new NvmeDevice(nvmeState, accels.resolver('nvme0', nvmeIommu));
    nvmePci = accels.withPeerDma({
      name: 'nvme0',
      kind: 'nvme',
      bdf: '0000:05:00.0',
      bars: [nvme.mmio()],
      dmaAddr: (gpa: GuestPhysAddr) => gpa as number as Iova,
    });
  }
  const ns = nvmeState;
  return {
    mem,
    accels,
    accel,
    accelPci: att.attachment.pci,
    accelIommu,
    nvme,
    nvmeState,
    nvmePci,
    dispose: () => {
      if (ns !== undefined) NvmeDevice.destroy(ns);
    },
  };
}

/** Deterministic bytes (xorshift) from `seed`. */
export function pattern(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
