/**
 * Per-thread directory of the guest memories this thread can reach: DomId → memory.
 *
 * The hypervisor code that runs inside a domain's worker (grant map and copy on that domain's
 * behalf) needs the *granter's* pages, which live in another domain's SharedArrayBuffer. The
 * host posts every domain's buffer to every worker, and each worker records it here. The
 * directory itself is thread-local (a plain Map): it is rebuilt in each thread from the posted
 * buffers, and the memories it holds are attached instances whose allocators must not be used
 * (see `SharedArrayGuestMemory.allocPages`).
 */

import { pvError } from '../../protocol/errors.js';
import type { DomId } from '../../protocol/Types.js';
import { SharedArrayGuestMemory } from './SharedArrayGuestMemory.js';

/** DomId → guest memory, local to one thread. */
export class MemoryDirectory {
  private readonly _byDomain = new Map<DomId, SharedArrayGuestMemory>();

  /**
   * Attaches to `buffer` as the memory of `domid` and records it. Adding the same buffer again
   * is a no-op that returns the recorded memory; a different buffer for a recorded domain is
   * refused (`PV_ERR_INVALID_ARG`): a reused domid must be `remove`d first, so a stale memory is
   * never silently swapped under a live mapping.
   */
  add(domid: DomId, buffer: SharedArrayBuffer): SharedArrayGuestMemory {
    const known = this._byDomain.get(domid);
    if (known !== undefined) {
      if (known.buffer === buffer) return known;
      throw pvError('PV_ERR_INVALID_ARG', `domain ${domid} already has a different memory; remove it first`);
    }
    const memory = new SharedArrayGuestMemory(domid, buffer);
    this._byDomain.set(domid, memory);
    return memory;
  }

  /**
   * Records an existing memory instance (for example the domain's own, so the directory and
   * the domain share one object). Same duplicate rules as `add`.
   */
  addMemory(memory: SharedArrayGuestMemory): SharedArrayGuestMemory {
    const known = this._byDomain.get(memory.domid);
    if (known !== undefined) {
      if (known.buffer === memory.buffer) return known;
      throw pvError('PV_ERR_INVALID_ARG', `domain ${memory.domid} already has a different memory; remove it first`);
    }
    this._byDomain.set(memory.domid, memory);
    return memory;
  }

  /** Forgets a domain's memory; returns false when it was not recorded. Live views stay valid. */
  remove(domid: DomId): boolean {
    return this._byDomain.delete(domid);
  }

  /** The memory of `domid`, or undefined. */
  get(domid: DomId): SharedArrayGuestMemory | undefined {
    return this._byDomain.get(domid);
  }

  /** The memory of `domid`; throws `PV_ERR_NO_DOMAIN` when it is not recorded. */
  require(domid: DomId): SharedArrayGuestMemory {
    const memory = this._byDomain.get(domid);
    if (memory === undefined) throw pvError('PV_ERR_NO_DOMAIN', `no memory recorded for domain ${domid}`);
    return memory;
  }

  /** True when `domid` has a recorded memory. */
  has(domid: DomId): boolean {
    return this._byDomain.has(domid);
  }

  /** Domains with a recorded memory, in insertion order. */
  domains(): DomId[] {
    return [...this._byDomain.keys()];
  }
}
