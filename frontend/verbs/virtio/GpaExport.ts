/**
 * MemoryExport of the virtio transports: nothing is exported. Commands name guest-physical
 * addresses and the device model, privileged, reaches this guest's memory itself (the vhost
 * model: the guest trusts the driver domain with all of its memory, where a grant trusts it with
 * one page). So there is no ref to end and no grant to linger: a page is freed as soon as its
 * object is destroyed, because the device unmapped it from the NIC before it answered.
 */

import type { GuestMemory } from '../../../protocol/Hypercalls.js';
import type { GrantRef, GuestPhysAddr } from '../../../protocol/Types.js';
import type { MemoryExport } from '../paravirt/RdmaChannel.js';

/** See the file comment. */
export class GpaExport implements MemoryExport {
  readonly byAddress = true;
  readonly lingering = 0;

  constructor(private readonly _mem: GuestMemory) {}

  grantRange(): GrantRef[] {
    return [];
  }

  end(_refs: readonly GrantRef[], free?: { addr: GuestPhysAddr; pages: number }): void {
    if (free) this._mem.freePages(free.addr, free.pages);
  }

  async settle(): Promise<number> {
    return 0;
  }
}
