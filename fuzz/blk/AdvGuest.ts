/**
 * The adversarial guest's memory and grants: what its hostile requests point at.
 *
 * ```
 * pool        pages  granted to dom0          what a request naming it must get
 * data          16   writable                 served (READ fills it, WRITE reads it)
 * readonly       4   read-only, canary bytes  WRITE served; READ refused; bytes never change
 * indirect       4   read-only                descriptor pages of indirect requests
 * canary         4   never                    bytes never change, whatever the rings say
 * foreign        -   data pages to the honest guest (another domain): refused
 * revoked        -   granted, then ended: refused
 * forged         -   refs 2..7 written raw into the guest's own table each case
 * ```
 * Forged entries only ever name a data frame or a frame outside memory, never a canary, ring
 * or indirect frame, so "never granted" stays true for the canaries whatever the fuzzer forges.
 */

import {
  type GrantTableSpace,
  GrantWord,
  GTF_PV_CLAIMED,
  GTF_permit_access,
  GTF_reading,
  GTF_readonly,
  GTF_writing,
} from '../../hypervisor-sim/grant/GrantTableSpace.js';
import { DOM0, type DomId, type Gfn, type GrantRef, type GuestPhysAddr, gfnOf } from '../../protocol/Types.js';
import { CanaryPages } from '../core/Canary.js';
import type { Rng } from '../core/FuzzTarget.js';
import type { Dom } from './BlkWorld.js';

/** Refs the fuzzer forges raw (0 and 1 are the console and store refs; grantAccess never hands out 0–7). */
export const FORGED_REFS: readonly number[] = [2, 3, 4, 5, 6, 7];

const DATA_PAGES = 16;
const RO_PAGES = 4;
const IND_PAGES = 4;
const CANARY_PAGES = 4;

/** The adversary's pools; see the file comment. */
export class AdvGuest {
  readonly data: GuestPhysAddr;
  readonly dataFrames: readonly number[];
  readonly rwRefs: readonly GrantRef[];
  readonly readOnly: CanaryPages;
  readonly roRefs: readonly GrantRef[];
  readonly ind: GuestPhysAddr;
  readonly indFrames: readonly number[];
  readonly indRefs: readonly GrantRef[];
  readonly canary: CanaryPages;
  readonly foreignRefs: readonly GrantRef[];
  readonly revokedRefs: readonly GrantRef[];
  /** Whole guest memory as words (indirect pages are written and read through it). */
  readonly memWords: Int32Array;
  readonly pages: number;

  constructor(
    readonly dom: Dom,
    private readonly _space: GrantTableSpace,
    honest: DomId,
    seed: number,
  ) {
    const mem = dom.mem;
    const g = dom.grant;
    this.memWords = new Int32Array(mem.buffer);
    this.pages = mem.size / 4096;
    this.data = mem.allocPages(DATA_PAGES);
    const d0 = gfnOf(this.data);
    this.dataFrames = Array.from({ length: DATA_PAGES }, (_, i) => d0 + i);
    this.rwRefs = this.dataFrames.map((f) => g.grantAccess(DOM0, f as Gfn, false));
    this.readOnly = new CanaryPages(mem, RO_PAGES, seed ^ 0x0a0a, 'read-only granted page');
    const r0 = gfnOf(this.readOnly.addr);
    this.roRefs = Array.from({ length: RO_PAGES }, (_, i) => g.grantAccess(DOM0, (r0 + i) as Gfn, true));
    this.ind = mem.allocPages(IND_PAGES);
    const i0 = gfnOf(this.ind);
    this.indFrames = Array.from({ length: IND_PAGES }, (_, i) => i0 + i);
    this.indRefs = this.indFrames.map((f) => g.grantAccess(DOM0, f as Gfn, true));
    this.canary = new CanaryPages(mem, CANARY_PAGES, seed ^ 0x5c5c, 'never-granted canary');
    this.foreignRefs = this.dataFrames.slice(0, 4).map((f) => g.grantAccess(honest, f as Gfn, false));
    const revoked = this.dataFrames.slice(0, 4).map((f) => g.grantAccess(DOM0, f as Gfn, false));
    for (const ref of revoked) g.endAccess(ref);
    this.revokedRefs = revoked;
  }

  /** Pins (read + write) the backend holds on ref `ref` of this guest's table. */
  pins(ref: number): number {
    const base = this._space.entryBase(this.dom.domid, ref);
    const w = this._space.words;
    // ORDERING: seq-cst loads of hypervisor-written counts; a snapshot.
    return Atomics.load(w, base + GrantWord.READ_PINS) + Atomics.load(w, base + GrantWord.WRITE_PINS);
  }

  /** Word index in `memWords` of indirect page `i`. */
  indWord(i: number): number {
    return this.indFrames[i] * 1024;
  }

  /**
   * Rewrites every forged entry of the guest's own table from `rng` (so a case's forgeries
   * depend on its seed alone), never while the backend maps them: between cases it maps
   * nothing but rings, which are never forged refs.
   */
  forge(rng: Rng): void {
    for (const ref of FORGED_REFS) {
      const base = this._space.entryBase(this.dom.domid, ref);
      let flags = GTF_permit_access;
      let domid = DOM0 as number;
      let frame = rng.pick(this.dataFrames);
      switch (rng.below(8)) {
        case 0:
          flags |= GTF_readonly;
          break;
        case 1:
          frame = this._outsideFrame(rng);
          break;
        case 2:
          flags = rng.pick([0, 2, 3, GTF_PV_CLAIMED, GTF_readonly]);
          break;
        case 3:
          domid = rng.pick([this.dom.domid, 0xffff, 0x7ff0, 1 + rng.below(3)]);
          break;
        case 4:
          flags |= rng.pick([GTF_reading, GTF_writing, GTF_reading | GTF_writing]);
          break;
        case 5:
          flags = 0; // ended
          break;
        default:
          break; // a plain, valid grant written by hand
      }
      // ORDERING: the frame first, then the flags word publishes it (as grantAccess does).
      Atomics.store(this._space.words, base + GrantWord.FRAME, frame | 0);
      // ORDERING: seq-cst publish of flags | domid.
      Atomics.store(this._space.words, base + GrantWord.FLAGS_DOMID, (flags & 0xffff) | ((domid & 0xffff) << 16));
    }
  }

  /** A frame number outside the guest's memory (as a u32; negative as an int32 included). */
  private _outsideFrame(rng: Rng): number {
    const f = rng.pick([this.pages, this.pages + rng.below(1 << 20), 0x7fffffff, 0x80000000, 0xffffffff]);
    return f >>> 0;
  }

  /** Ends the pools' grants; returns how many could not be ended (still mapped: a leak). */
  release(): number {
    const g = this.dom.grant;
    let held = 0;
    for (const ref of [...this.rwRefs, ...this.roRefs, ...this.indRefs, ...this.foreignRefs]) {
      try {
        g.endAccess(ref);
      } catch {
        held++;
      }
    }
    for (const ref of FORGED_REFS) {
      // ORDERING: nobody maps a forged ref between cases; clearing it ends it.
      Atomics.store(this._space.words, this._space.entryBase(this.dom.domid, ref) + GrantWord.FLAGS_DOMID, 0);
    }
    return held;
  }
}
