/**
 * Two real RnicDevice instances on one RnicFabric in this thread, each with its own guest memory
 * and the real native driver on top: the smallest world in which the driver can move bytes.
 *
 * The DMA resolver is identity over one SharedArrayGuestMemory (native mode: the IOMMU is off,
 * so a device address is a guest-physical address of the owner); it refuses ranges outside that
 * memory, as a translation miss would.
 */

import { RdmaNicDriver } from '../../../../drivers/rdma-nic/RdmaNicDriver.js';
import { RnicDevice } from '../../../../hypervisor-sim/devices/rnic/RnicDevice.js';
import { RnicFabric } from '../../../../hypervisor-sim/devices/rnic/RnicFabric.js';
import type { DmaRef, DmaResolver } from '../../../../hypervisor-sim/iommu/DmaResolver.js';
import { SharedArrayGuestMemory } from '../../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import type { PciFunction } from '../../../../protocol/Pci.js';
import { domId, type GuestPhysAddr, type Iova } from '../../../../protocol/Types.js';

/** Device address = guest-physical address of one domain's memory (IOMMU bypass). */
export class IdentityDma implements DmaResolver {
  private readonly _words: Int32Array;

  constructor(private readonly _mem: SharedArrayGuestMemory) {
    this._words = new Int32Array(_mem.buffer);
  }

  resolve(iova: number, len: number, _write: boolean, out: DmaRef): boolean {
    if (!Number.isSafeInteger(iova) || !Number.isSafeInteger(len) || iova < 0 || len < 0) return false;
    if (iova > this._mem.size || len > this._mem.size - iova) return false;
    out.bytes = this._mem.bytes;
    out.words = this._words;
    out.offset = iova;
    out.domid = this._mem.domid;
    return true;
  }

  generation(): number {
    return 0;
  }
}

/** One NIC and the memory of the domain that owns it. */
export interface Nic {
  readonly mem: SharedArrayGuestMemory;
  readonly dev: RnicDevice;
  readonly pci: PciFunction;
}

/** One side: a NIC with the native driver attached. */
export interface Side extends Nic {
  readonly drv: RdmaNicDriver;
}

/** Builds one NIC on `fabric` with `pages` of memory for domain `domid` (no driver yet). */
export function nic(
  fabric: RnicFabric,
  domid: number,
  portId: number,
  mode: 'inline' | 'dedicated' = 'inline',
  pages = 512,
): Nic {
  const mem = SharedArrayGuestMemory.create(domId(domid), pages * 4096);
  const dev = new RnicDevice(
    RnicDevice.create({ name: `nic${portId}`, portId, maxQp: 16, maxCq: 16, maxMr: 64, maxQpWr: 256, maxCqe: 1024 }),
    new IdentityDma(mem),
    fabric,
  );
  const pci: PciFunction = {
    name: `nic${portId}`,
    kind: 'rdma-nic',
    bdf: `0000:0${portId}:00.0`,
    bars: [dev.mmio(mode)],
    dmaAddr: (gpa: GuestPhysAddr) => gpa as number as Iova,
  };
  return { mem, dev, pci };
}

/** Builds one NIC and attaches the driver. */
export function side(fabric: RnicFabric, domid: number, portId: number, mode: 'inline' | 'dedicated' = 'inline'): Side {
  const n = nic(fabric, domid, portId, mode);
  return { ...n, drv: new RdmaNicDriver(n.pci, n.mem) };
}

/** Two NICs (ports 1 and 2) on one fabric. */
export function twoNics(mode: 'inline' | 'dedicated' = 'inline'): { a: Side; b: Side; fabric: RnicFabric } {
  const fabric = new RnicFabric(RnicFabric.createLock());
  return { a: side(fabric, 1, 1, mode), b: side(fabric, 2, 2, mode), fabric };
}
