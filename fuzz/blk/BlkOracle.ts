/**
 * An independent model of what blkback must answer to one ring slot (protocol.md §6.2 and
 * blkif.h), evaluated on the words the adversary published and on its grant table as it stood
 * then. It is written from the wire layout and the grant-entry layout, not from backend/blk, so
 * a backend that accepts what it should refuse (or refuses what it should serve) disagrees with
 * it: `ok` iff the operation is READ/WRITE/FLUSH_DISKCACHE/INDIRECT(READ|WRITE), the segment count
 * is in range (direct 1..11, flush 0..11, indirect 1..256), every segment has first ≤ last ≤ 7,
 * `sector + total` lies inside the disk (computed exactly, no wrap), the indirect page is granted
 * to dom0 and every data grant is granted to dom0 inside the guest's memory and writable for a
 * READ, and the vbd is writable for a WRITE. Barrier, discard and unknown operations get
 * EOPNOTSUPP, everything else ERROR.
 *
 * Within one batch the backend serves slots in order, and a served READ writes guest pages that
 * later slots may read (an indirect page that is also a data page): such a later slot is `any`.
 * A READ into the ring itself clobbers the slots and indices: the batch is then `clobbered`.
 */

import { type GrantTableSpace, GrantWord, GTF_readonly } from '../../hypervisor-sim/grant/GrantTableSpace.js';

/** What the backend may answer. `any`: OKAY or ERROR (the model cannot know; never EOPNOTSUPP). */
export type Expect = 'ok' | 'error' | 'eopnotsupp' | 'any';

/** The expectation of one published slot. */
export interface SlotExpect {
  readonly idLo: number;
  readonly idHi: number;
  readonly op: number;
  /** Position in the batch (the request words are kept there for the reproducer). */
  readonly pos: number;
  expect: Expect;
}

const READ = 0;
const WRITE = 1;
const FLUSH = 3;
const INDIRECT = 6;
const MAX_DIRECT = 11;
const MAX_INDIRECT = 256;

/** The model; one instance per adversary, `begin()` per batch. */
export class BlkOracle {
  /** The batch wrote (or may have written) guest pages other slots read: later indirect slots are `any`. */
  private _wroteData = false;
  /** A READ into a ring page was served: the ring contents are no longer what was published. */
  clobbered = false;
  private readonly _segs = new Int32Array(MAX_INDIRECT * 2);

  constructor(
    private readonly _space: GrantTableSpace,
    private readonly _guest: number,
    private readonly _pages: number,
    /** The adversary's memory as words (indirect pages are read from it). */
    private readonly _mem: Int32Array,
    /** Frames only the fuzzer writes (dedicated indirect pages): stable within a batch. */
    private readonly _stable: ReadonlySet<number>,
  ) {}

  /** Frames of the ring (a READ into one clobbers the batch). */
  private _ringFrames: ReadonlySet<number> = new Set();
  /** Disk size in 512-byte sectors, and its sector size / 512. */
  private _sectors = 0;
  private _ratio = 1;
  private _readOnly = false;

  /** A new batch on the current connection: its ring and its disk's geometry. */
  begin(ringFrames: ReadonlySet<number>, sectors: number, ratio: number, readOnly: boolean): void {
    this._readOnly = readOnly;
    this._wroteData = false;
    this.clobbered = false;
    this._ringFrames = ringFrames;
    this._sectors = sectors;
    this._ratio = ratio;
  }

  /** The expectation for the slot at word `w` of `ring` (published, not yet served), `pos` in its batch. */
  expect(ring: Int32Array, w: number, pos: number): SlotExpect {
    const w0 = ring[w];
    const op = w0 & 0xff;
    const out: SlotExpect = { idLo: ring[w + 2] >>> 0, idHi: ring[w + 3] >>> 0, op, pos, expect: 'error' };
    if (op !== READ && op !== WRITE && op !== FLUSH && op !== INDIRECT) {
      out.expect = 'eopnotsupp';
      return out;
    }
    let kind = op;
    let nseg: number;
    let segs: Int32Array;
    let uncertain = false;
    if (op === INDIRECT) {
      kind = (w0 >>> 8) & 0xff;
      nseg = (w0 >>> 16) & 0xffff;
      if ((kind !== READ && kind !== WRITE) || nseg < 1 || nseg > MAX_INDIRECT) return out;
      const page = this._frame(ring[w + 7] >>> 0, false);
      if (page < 0) return out;
      // A page the batch may already have written (a data page used as descriptors): unknown.
      if (this._wroteData && !this._stable.has(page)) uncertain = true;
      // The ring as descriptor page: the backend writes responses into it as the batch goes.
      if (this._ringFrames.has(page)) uncertain = true;
      segs = this._segs;
      segs.set(this._mem.subarray(page * 1024, page * 1024 + nseg * 2));
    } else {
      nseg = (w0 >>> 8) & 0xff;
      if (nseg > MAX_DIRECT) return out;
      if (op === FLUSH && nseg === 0) {
        out.expect = 'ok';
        return out;
      }
      if (nseg === 0) return out;
      segs = ring.subarray(w + 6, w + 6 + nseg * 2);
      if (op === FLUSH) kind = WRITE; // flush, then write the segments
    }
    // A read-only vbd refuses every write (a flush with segments writes them).
    if (kind === WRITE && this._readOnly) return out;
    const verdict = this._segments(segs, nseg, ring[w + 4] >>> 0, ring[w + 5] >>> 0, kind === READ);
    out.expect = uncertain ? 'any' : verdict;
    if (uncertain && kind === READ) this._wroteData = true;
    return out;
  }

  /** Checks the segments, the range and the grants; notes what an accepted READ will write. */
  private _segments(segs: Int32Array, nseg: number, lo: number, hi: number, read: boolean): Expect {
    let total = 0;
    for (let i = 0; i < nseg; i++) {
      const sects = segs[i * 2 + 1];
      const first = sects & 0xff;
      const last = (sects >>> 8) & 0xff;
      if (last > 7 || first > last) return 'error';
      // A disk with 4 KiB sectors takes whole device sectors only.
      if (first % this._ratio !== 0 || (last + 1) % this._ratio !== 0) return 'error';
      total += last - first + 1;
    }
    // Exact: hi · 2^32 + lo + total ≤ sectors (disks here are < 2^32 sectors, so hi must be 0).
    if (hi !== 0 || lo + total > this._sectors || lo % this._ratio !== 0) return 'error';
    const frames: number[] = [];
    for (let i = 0; i < nseg; i++) {
      const f = this._frame(segs[i * 2] >>> 0, read);
      if (f < 0) return 'error';
      frames.push(f);
    }
    if (read) {
      this._wroteData = true;
      for (const f of frames) if (this._ringFrames.has(f)) this.clobbered = true;
    }
    return 'ok';
  }

  /** The frame `ref` grants dom0 (writable if `write`), or −1 if a map must fail. */
  private _frame(ref: number, write: boolean): number {
    const { entriesPerDomain } = this._space.config;
    if (ref >= entriesPerDomain) return -1;
    const base = (this._guest * entriesPerDomain + ref) * 5;
    // ORDERING: seq-cst loads; the guest is not rewriting its table during the batch.
    const word0 = Atomics.load(this._space.words, base + GrantWord.FLAGS_DOMID);
    // ORDERING: as above.
    const frame = Atomics.load(this._space.words, base + GrantWord.FRAME);
    if ((word0 & 3) !== 1 || word0 >>> 16 !== 0) return -1;
    if (write && (word0 & GTF_readonly) !== 0) return -1;
    if (frame < 0 || frame >= this._pages) return -1;
    return frame;
  }
}
