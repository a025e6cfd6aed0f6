/**
 * The frontend's grants to the backend: page ranges of memory regions, CQ rings and the
 * indirect pages that carry an MR's refs. Grants end only when the backend no longer maps them
 * (XSA-396): `end` tries each ref, and a ref still in use — a backend that has not unmapped yet,
 * or never will — is kept aside, with the pages it pins, and retried by `settle()` at close
 * (endAccessDeferred). Pages the frontend allocated are freed only once every grant on them
 * ended: a page a backend may still write is never reused.
 */

import type { Hypercalls } from '../../../protocol/Hypercalls.js';
import { type DomId, type GrantRef, type GuestPhysAddr, gfnOf } from '../../../protocol/Types.js';
import { endAccessDeferred } from '../../grant/endAccessDeferred.js';
import type { MemoryExport } from './RdmaChannel.js';

/** Grants still in use, and pages to free once they end. */
interface Lingering {
  readonly refs: GrantRef[];
  readonly free: { addr: GuestPhysAddr; pages: number } | undefined;
}

/** Grants of one frontend to its backend; see the file comment. */
export class PvGrants implements MemoryExport {
  readonly byAddress = false;
  private readonly _lingering: Lingering[] = [];

  constructor(
    private readonly _hc: Hypercalls,
    private readonly _backend: DomId,
  ) {}

  /** Grants `pages` pages from `addr` (page-aligned or not: the pages it lies in). */
  grantRange(addr: number, pages: number, readonly: boolean): GrantRef[] {
    const first = gfnOf(addr as GuestPhysAddr);
    const refs: GrantRef[] = [];
    try {
      for (let i = 0; i < pages; i++) {
        refs.push(this._hc.grant.grantAccess(this._backend, (first + i) as typeof first, readonly));
      }
    } catch (err) {
      this.end(refs);
      throw err;
    }
    return refs;
  }

  /**
   * Ends `refs` (the backend should have unmapped them); frees `free` pages when all ended,
   * otherwise keeps both for `settle()`.
   */
  end(refs: readonly GrantRef[], free?: { addr: GuestPhysAddr; pages: number }): void {
    const busy: GrantRef[] = [];
    for (const ref of refs) {
      if (this._hc.grant.isGrantInUse(ref)) busy.push(ref);
      else this._hc.grant.endAccess(ref);
    }
    if (busy.length === 0) {
      if (free) this._hc.memory.freePages(free.addr, free.pages);
      return;
    }
    this._lingering.push({ refs: busy, free });
  }

  /** Grants kept because the backend still mapped them. */
  get lingering(): number {
    let n = 0;
    for (const l of this._lingering) n += l.refs.length;
    return n;
  }

  /**
   * Retries the lingering grants until they end or `timeoutMs` passes; frees the pages of those
   * that ended. Returns how many refs are still mapped (leaked, never reused).
   */
  async settle(timeoutMs = 5000): Promise<number> {
    const all = this._lingering.splice(0);
    let leaked = 0;
    for (const l of all) {
      const left = await endAccessDeferred(this._hc.grant, l.refs, timeoutMs);
      leaked += left.length;
      if (left.length === 0 && l.free) this._hc.memory.freePages(l.free.addr, l.free.pages);
    }
    return leaked;
  }
}
