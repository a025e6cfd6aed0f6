/**
 * The device side's memory table for one guest, built from the hypervisor's foreign-memory ops:
 * what a vhost backend receives with `VHOST_SET_MEM_TABLE` (reference §5.3). The virtio device
 * (SplitDevice, DescChain) translates every descriptor's guest-physical address through the
 * `GuestMemoryMap` returned here, which checks the regions once more (no overlap, no alias,
 * inside their buffers) — the regions come from the hypervisor, but the map's rules do not
 * depend on trusting it.
 *
 * Only a privileged domain has `hc.foreign`; anywhere else this refuses with
 * `PV_ERR_NOT_SUPPORTED`: a guest never builds a map of another guest's memory.
 *
 * The map is a snapshot of the guest's regions: it keeps aliasing the guest's buffer after the
 * guest dies, so the backend drops it (and the device using it) when the guest goes away.
 */

import { pvError } from '../../protocol/errors.js';
import type { ForeignMemoryOps } from '../../protocol/Hypercalls.js';
import type { DomId } from '../../protocol/Types.js';
import { GuestMemoryMap, type MemRegion } from './GuestMemoryMap.js';

/** Options of `foreignMemoryMap`. */
export interface ForeignMapOptions {
  /** Map every region read-only: the device may then only read the guest (a device that never writes). */
  readonly readOnly?: boolean;
}

/**
 * The `GuestMemoryMap` of `guest`'s memory as `foreign` (the caller's `hc.foreign`) exposes it.
 * Throws `PV_ERR_NOT_SUPPORTED` without foreign ops, what `regions` throws for the domain
 * (`PV_ERR_NO_DOMAIN`, `PV_ERR_INVALID_ARG`), and `PV_ERR_VIRTQ_LAYOUT` for regions the map refuses.
 */
export function foreignMemoryMap(
  foreign: ForeignMemoryOps | undefined,
  guest: DomId,
  opts: ForeignMapOptions = {},
): GuestMemoryMap {
  if (foreign === undefined) {
    throw pvError('PV_ERR_NOT_SUPPORTED', `no foreign memory ops: this domain may not map domain ${guest}'s memory`);
  }
  const readOnly = opts.readOnly === true;
  const regions: MemRegion[] = foreign.regions(guest).map((r) => ({
    gpa: r.gpa,
    size: r.size,
    backing: r.buffer,
    offset: r.offset,
    readOnly,
  }));
  return new GuestMemoryMap(regions);
}
