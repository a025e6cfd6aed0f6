/**
 * The adversary's disk, watched from the guest's side while the backend moves bytes (XSA-396):
 * on every read or write the device is asked to do for the adversary, at least one of the
 * guest's grants must be in use (the segment's page is mapped for exactly the length of the I/O
 * — a device call on a page the backend already unmapped is a use after unmap), and the guest,
 * trying to end every grant that is in use, must be refused (`PV_ERR_GRANT_IN_USE`): a grant
 * can never be revoked under a live mapping, so the guest cannot reuse the page while the
 * backend writes it.
 *
 * Presented read-only (`readOnly`), it also catches a backend that writes a read-only vbd.
 *
 * Signatures: `blk/grant:io-without-mapping`, `blk/grant:revoked-while-mapped`,
 * `blk/ro:write-to-read-only`.
 */

import type { BlockDevice } from '../../protocol/blkif/BlockDevice.js';
import type { GrantRef } from '../../protocol/Types.js';
import type { Violation } from '../core/FuzzTarget.js';
import { type AdvGuest, FORGED_REFS } from './AdvGuest.js';

/** Wraps `dev`; violations are collected in `violations` (the target drains them per case). */
export class WatchedDevice implements BlockDevice {
  readonly violations: Violation[] = [];
  /** Grants the guest tried to end under a live mapping (all refused, unless a violation says otherwise). */
  revokeAttempts = 0;
  private _refs: readonly GrantRef[] = [];
  private _calls = 0;

  constructor(
    private readonly _dev: BlockDevice,
    private readonly _adv: () => AdvGuest | undefined,
    /** Extra refs to watch (the current ring's, read through this). */
    private readonly _ringRefs: () => readonly GrantRef[],
    /** Present the disk as a read-only vbd: any write reaching it is a violation. */
    private readonly _readOnly = false,
  ) {}

  get sectors(): number {
    return this._dev.sectors;
  }

  get sectorSize(): number {
    return this._dev.sectorSize;
  }

  get readOnly(): boolean {
    return this._readOnly || this._dev.readOnly;
  }

  read(sector: number, count: number, into: Uint8Array): void {
    this._watch('read');
    this._dev.read(sector, count, into);
  }

  write(sector: number, count: number, from: Uint8Array): void {
    if (this._readOnly) {
      this.violations.push({
        signature: 'blk/ro:write-to-read-only',
        detail: `the backend wrote ${count} sectors at ${sector} of a read-only vbd`,
      });
      throw new Error('write to a read-only vbd');
    }
    this._watch('write');
    this._dev.write(sector, count, from);
  }

  flush(): void {
    this._dev.flush();
  }

  private _watch(what: string): void {
    const adv = this._adv();
    if (adv === undefined) return;
    if (this._refs.length === 0) {
      this._refs = [...adv.rwRefs, ...adv.roRefs, ...adv.indRefs, ...(FORGED_REFS as GrantRef[])];
    }
    const ring = this._ringRefs();
    // Pins, not "in use": a request may name a ring page, which is then mapped twice.
    let pins = 0;
    let victim: GrantRef | undefined;
    for (const ref of [...this._refs, ...ring]) {
      const n = adv.pins(ref);
      if (n === 0) continue;
      pins += n;
      if (victim === undefined || (ref & 1) === (this.revokeAttempts & 1)) victim = ref;
    }
    if (pins <= ring.length) {
      this.violations.push({
        signature: 'blk/grant:io-without-mapping',
        detail: `a device ${what} for the adversary ran while none of its data grants was mapped`,
      });
    }
    // Revocation is tried on one call in 8: a refused end access costs a thrown error.
    if (victim === undefined || (this._calls++ & 7) !== 0) return;
    this.revokeAttempts++;
    try {
      adv.dom.grant.endAccess(victim);
    } catch {
      return; // refused (in use), as it must be
    }
    this.violations.push({
      signature: 'blk/grant:revoked-while-mapped',
      detail: `the guest ended grant ${victim} while the backend mapped it (device ${what})`,
    });
  }
}
