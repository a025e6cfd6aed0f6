/**
 * Test rig: one real NVMe controller (file-backed media in a temporary directory) owned by one
 * fake domain — a real SharedArrayGuestMemory reached through a real IOMMU context in translate
 * mode (the passthrough path) — and the PciFunction a driver attaches to. `dispose` closes the
 * media and removes the temporary file.
 */

import { type NvmeConfig, NvmeDevice, type NvmeState } from '../../../../../hypervisor-sim/devices/nvme/NvmeDevice.js';
import { IommuContext, type IommuMode } from '../../../../../hypervisor-sim/iommu/IommuContext.js';
import { MemoryDirectory } from '../../../../../hypervisor-sim/memory/MemoryDirectory.js';
import { SharedArrayGuestMemory } from '../../../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import type { PciFunction } from '../../../../../protocol/Pci.js';
import { domId, type GuestPhysAddr, type Iova } from '../../../../../protocol/Types.js';

/** One controller and its owner. */
export interface NvmeRig {
  readonly state: NvmeState;
  readonly dev: NvmeDevice;
  readonly mem: SharedArrayGuestMemory;
  readonly iommu: IommuContext;
  readonly pci: PciFunction;
  dispose(): void;
}

/** Options of `makeRig`. */
export interface RigOpts extends Partial<NvmeConfig> {
  /** Owner memory, bytes (default 8 MiB). */
  memBytes?: number;
  /** IOMMU mode (default translate). */
  iommu?: IommuMode;
}

/** Builds a rig (see the file comment). */
export function makeRig(o: RigOpts = {}): NvmeRig {
  const domid = domId(1);
  const mem = SharedArrayGuestMemory.create(domid, o.memBytes ?? 8 << 20);
  const dir = new MemoryDirectory();
  dir.addMemory(mem);
  const iommu = IommuContext.attach(IommuContext.create({ device: 'nvme0' }), dir);
  iommu.assign(domid, mem.size, o.iommu ?? 'translate');
  const { memBytes: _m, iommu: _i, ...cfg } = o;
  const state = NvmeDevice.create({ name: 'nvme0', sizeBytes: 16 << 20, ...cfg });
  const dev = new NvmeDevice(state, iommu);
  const pci: PciFunction = {
    name: 'nvme0',
    kind: 'nvme',
    bdf: '0000:05:00.0',
    bars: [dev.mmio()],
    dmaAddr: (gpa: GuestPhysAddr) => gpa as number as Iova,
  };
  return { state, dev, mem, iommu, pci, dispose: () => NvmeDevice.destroy(state) };
}

/** Fills `len` bytes at `at` with a pattern derived from `seed`. */
export function fillPattern(bytes: Uint8Array, at: number, len: number, seed: number): void {
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[at + i] = x & 0xff;
  }
}
