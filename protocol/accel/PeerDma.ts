/**
 * Peer-to-peer DMA as a driver sees it: an owner holding two devices asks for device A's DMA to
 * reach a BAR of device B directly (NVMe → accelerator memory, without bouncing through host RAM),
 * as VFIO lets a user map a peer BAR's mmap into a container's IOMMU and GPUDirect Storage points
 * an NVMe READ at a GPU's BAR 1. The host's side answers with the device address at which A sees
 * byte 0 of B's BAR; A's commands then carry addresses in [iova, iova + bar size).
 *
 * A `PciFunction` that can do this carries a `peerDma` port (the host adds it to the functions it
 * hands a domain); `hasPeerDma` tells the two apart without casts.
 */

import type { PciFunction } from '../Pci.js';
import type { Iova } from '../Types.js';

/** Maps peers' BARs into one function's DMA address space. */
export interface PeerDmaPort {
  /**
   * Maps BAR `bar` of `peer` (a function the same domain owns) for this function's DMA, writable
   * unless `readOnly`; returns the device address of the BAR's byte 0. PV_ERR_CONFIG when the
   * peer is not owned here or its BAR cannot be a DMA target, PV_ERR_LIMIT when no slot is left.
   */
  mapPeerBar(peer: PciFunction, bar: number, readOnly?: boolean): Iova;
  /** Removes the mapping made at `iova`; false if none starts there. */
  unmapPeerBar(iova: Iova): boolean;
}

/** A function with a peer DMA port. */
export interface PeerDmaFunction extends PciFunction {
  readonly peerDma: PeerDmaPort;
}

/** True when `fn` can be pointed at a peer's BAR. */
export function hasPeerDma(fn: PciFunction): fn is PeerDmaFunction {
  const port = (fn as Partial<PeerDmaFunction>).peerDma;
  return port !== undefined && typeof port.mapPeerBar === 'function';
}
