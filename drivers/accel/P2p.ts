/**
 * The owner's side of peer-to-peer DMA: `p2p(initiator, accel)` asks the host to let
 * `initiator`'s DMA reach `accel`'s device memory (BAR 1) and returns the device address at
 * which it does (protocol/accel/PeerDma.ts). An NVMe READ whose data address is `iova + offset`
 * then lands in accelerator memory at `offset`, with no bounce through host RAM:
 *
 * ```ts
 * const win = p2p(nvmeFn, accelFn);
 * nvme.wait(1, nvme.submitIo('read', lba, blocks, (win + devOffset) as Iova));
 * accel.checksum(devOffset, blocks * 512);
 * ```
 * Both functions must be owned by the calling domain; the window lives until `unmapP2p` or the
 * owner's exit.
 */

import { hasPeerDma } from '../../protocol/accel/PeerDma.js';
import { pvError } from '../../protocol/errors.js';
import type { PciFunction } from '../../protocol/Pci.js';
import type { Iova } from '../../protocol/Types.js';

/** Maps `accel`'s BAR 1 for `initiator`'s DMA; returns where `initiator` sees its byte 0. */
export function p2p(initiator: PciFunction, accel: PciFunction, readOnly = false): Iova {
  if (accel.kind !== 'accel') throw pvError('PV_ERR_CONFIG', `${accel.name} is a ${accel.kind}, not an accel`);
  if (!hasPeerDma(initiator)) {
    throw pvError('PV_ERR_NOT_SUPPORTED', `${initiator.name} offers no peer-to-peer DMA (not owned by this domain?)`);
  }
  return initiator.peerDma.mapPeerBar(accel, 1, readOnly);
}

/** Removes a window made by `p2p`; false if none starts at `iova`. */
export function unmapP2p(initiator: PciFunction, iova: Iova): boolean {
  return hasPeerDma(initiator) && initiator.peerDma.unmapPeerBar(iova);
}
