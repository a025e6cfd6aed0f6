/**
 * What a driver sees of a PCIe function it owns: its BARs as MMIO regions and the DMA address
 * of its own memory. The device model behind it lives in hypervisor-sim; drivers, frontends and
 * backends only see these interfaces, so the same driver runs in the driver domain, in a guest
 * that owns the device through passthrough, and in a native program.
 */

import type { GuestPhysAddr, Iova } from './Types.js';

/** One BAR: 32-bit register reads and writes. A write may trap into the device model. */
export interface MmioRegion {
  /** Bytes in the BAR. */
  readonly size: number;
  /** Reads the 32-bit register at byte `offset` (4-aligned, inside the BAR). */
  read32(offset: number): number;
  /** Writes the 32-bit register at byte `offset`; doorbells start device work. */
  write32(offset: number, value: number): void;
}

/** Kinds of device pvio models. */
export type DeviceKind = 'rdma-nic' | 'nvme' | 'accel';

/** A PCIe function assigned to the calling domain (driver domain, passthrough guest or native). */
export interface PciFunction {
  /** Name in the host's device list, e.g. `nic0`. */
  readonly name: string;
  readonly kind: DeviceKind;
  /** Bus/device/function as text, e.g. `0000:03:00.0`. */
  readonly bdf: string;
  readonly bars: readonly MmioRegion[];
  /**
   * DMA address the device must use to reach `gpa` of the owning domain's memory. With an IOMMU
   * the host maps the owner's memory 1:1 (VFIO style), so this is `gpa`; in native mode the
   * IOMMU is off and it is the same number.
   */
  dmaAddr(gpa: GuestPhysAddr): Iova;
}

/** How a domain reaches a device it was given. */
export type Transport = 'paravirt' | 'paravirt-copy' | 'virtio' | 'virtio-packed' | 'passthrough' | 'native' | 'tcp';

/** One device attached to a domain, as the scenario described it. */
export interface DeviceAttachment {
  /** Device name the program asks for (`nic0`), or the attachment's own name for tcp. */
  readonly device: string;
  readonly kind: DeviceKind;
  readonly transport: Transport;
  /** xenbus device number (paravirt transports). */
  readonly devid?: number;
  /** Domain serving it (paravirt transports). */
  readonly backendDomid?: number;
  /** The function itself (passthrough and native). */
  readonly pci?: PciFunction;
}
