/**
 * The grant copies of copy mode: moves bytes between a run of the backend's bounce space and a
 * guest's scatter list (saved in the WR tracker), one `GNTTABOP_copy` per piece. A grant copy
 * may not cross a page on either side (protocol.md §2.2), so every SGE is cut at the guest's page
 * boundaries AND at the bounce run's. The hypervisor checks each piece against the guest's grant
 * (read for copy-in, write for copy-out): a guest that ended its grants, or granted them
 * read-only, makes the copy fail, never the backend. The op objects are reused for every piece:
 * no allocation per copy.
 */

import type { GrantOps } from '../../protocol/Hypercalls.js';
import { Stage, stages } from '../../protocol/stage/StageLedger.js';
import { PAGE_SIZE } from '../../protocol/Types.js';
import type { MrRec } from './GuestSession.js';
import type { WrTracker } from './WrTracker.js';

/** Mutable shapes of a grant-copy op (reused; the hypercall reads them synchronously). */
interface GuestSide {
  domid: number;
  ref: number;
  offset: number;
}
interface OwnSide {
  gpa: number;
}

/** Page-bounded grant copies for one guest; see the file comment. */
export class BounceCopier {
  /** Bytes copied into bounce space and out of it. */
  copiedIn = 0;
  copiedOut = 0;
  private readonly _gside: GuestSide;
  private readonly _oside: OwnSide = { gpa: 0 };
  private readonly _in: { source: GuestSide; dest: OwnSide; len: number };
  private readonly _out: { source: OwnSide; dest: GuestSide; len: number };

  constructor(
    private readonly _grant: GrantOps,
    front: number,
    private readonly _t: WrTracker,
  ) {
    this._gside = { domid: front, ref: 0, offset: 0 };
    this._in = { source: this._gside, dest: this._oside, len: 0 };
    this._out = { source: this._oside, dest: this._gside, len: 0 };
  }

  /**
   * Copies `len` bytes between the guest SGEs saved for `slot` and bounce space at `bounce` (a
   * driver-domain address). `into`: guest → bounce. False if a grant copy was refused.
   * INVARIANT: every saved SGE lies inside its MR (checked when it was staged), so each page
   * index below names one of the MR's refs.
   */
  copy(slot: number, bounce: number, len: number, into: boolean): boolean {
    // Stage ledger: the whole copy, page splitting included, is GRANT time (grant map/copy).
    const prev = stages.enter(Stage.GRANT);
    const ok = this._copy(slot, bounce, len, into);
    stages.enter(prev);
    return ok;
  }

  private _copy(slot: number, bounce: number, len: number, into: boolean): boolean {
    const t = this._t;
    const gs = this._gside;
    const os = this._oside;
    const op = into ? this._in : this._out;
    let dst = bounce;
    let left = len;
    try {
      for (let i = 0; i < t.nsge[slot] && left > 0; i++) {
        const k = t.sge(slot, i);
        const mr = t.sgeMr[k] as MrRec;
        const first = Math.floor(mr.addr / PAGE_SIZE);
        let pos = t.sgeAddr[k];
        let n = Math.min(t.sgeLen[k], left);
        while (n > 0) {
          const page = Math.floor(pos / PAGE_SIZE);
          const inPage = pos - page * PAGE_SIZE;
          const piece = Math.min(n, PAGE_SIZE - inPage, PAGE_SIZE - (dst % PAGE_SIZE));
          gs.ref = mr.refs[page - first];
          gs.offset = inPage;
          os.gpa = dst;
          op.len = piece;
          this._grant.grantCopy(op as never);
          pos += piece;
          dst += piece;
          n -= piece;
          left -= piece;
        }
      }
    } catch {
      return false;
    }
    if (into) this.copiedIn += len;
    else this.copiedOut += len;
    return true;
  }
}
