/**
 * Hostile blkif slots. Each generator writes all 28 words of one slot (and, for indirect
 * requests, the descriptors in one of the adversary's indirect pages). Most slots are a VALID
 * request with at most one defect injected, so each of the backend's checks is reached on its
 * own and the valid path (map, I/O, unmap) runs under attack too:
 *
 * defect        what changes
 * op            barrier, discard, 4, 7+, or (indirect) indirect_op not READ/WRITE
 * nseg          direct 0 (not a flush), 12, up to 255; indirect 0, 257, 512, 0xffff
 * reversed      one segment first > last
 * past7         one segment last 8..255
 * misaligned    one segment (or the sector) not aligned to a 4 KiB-sector disk
 * end           the range straddles or starts past the disk's end
 * wrap32        sector near 2^32 (lo + total wraps a u32)
 * wrap64        sector near 2^64 (wraps a u64), or a high word just past 2^53
 * ref           one segment (or the indirect page) gets any ref (`pickRef`)
 * roRead        a READ into a read-only grant
 * garbage       pad, handle and unused segment words random (must not matter)
 *
 * `randomSlot` writes every word at random (the operation byte decides how the rest is read).
 */

import type { Rng } from '../core/FuzzTarget.js';
import type { AdvConnection } from './AdvConnection.js';
import { type AdvGuest, FORGED_REFS } from './AdvGuest.js';

/** What the generators draw from. */
export interface GenContext {
  readonly rng: Rng;
  readonly adv: AdvGuest;
  readonly conn: AdvConnection;
  /** Disk size in 512-byte sectors. */
  readonly sectors: number;
  /** Disk sector size / 512 (1 or 8). */
  readonly ratio: number;
  /** The vbd is read-only (writes must be refused). */
  readonly readOnly: boolean;
  /** Grant refs the honest guest holds (numbers that mean nothing in the adversary's table). */
  readonly honestRefs: readonly number[];
  readonly entries: number;
}

type Defect =
  | 'none'
  | 'op'
  | 'nseg'
  | 'reversed'
  | 'past7'
  | 'misaligned'
  | 'end'
  | 'wrap32'
  | 'wrap64'
  | 'ref'
  | 'roRead'
  | 'garbage';

const DEFECTS: readonly Defect[] = [
  'none',
  'none',
  'none',
  'none',
  'none',
  'op',
  'nseg',
  'reversed',
  'past7',
  'misaligned',
  'end',
  'wrap32',
  'wrap64',
  'ref',
  'ref',
  'ref',
  'roRead',
  'garbage',
];

/** Any grant ref: writable, read-only, foreign, revoked, forged, ring, honest numbers, out of range, edges. */
export function pickRef(c: GenContext): number {
  const { rng, adv } = c;
  const k = rng.below(100);
  if (k < 25) return rng.pick(adv.rwRefs);
  if (k < 35) return rng.pick(adv.roRefs);
  if (k < 45) return rng.pick(adv.foreignRefs);
  if (k < 55) return rng.pick(adv.revokedRefs);
  if (k < 67) return rng.pick(FORGED_REFS);
  if (k < 71) return rng.pick(adv.indRefs);
  if (k < 73) return rng.pick(c.conn.ringRefs);
  if (k < 77) return c.honestRefs.length > 0 ? rng.pick(c.honestRefs) : rng.below(c.entries);
  if (k < 83) return rng.below(c.entries);
  if (k < 90) return (c.entries + rng.below(4096)) >>> 0;
  return rng.edgeU32();
}

/** A valid sects word for the disk's sector size: `first | last << 8`. */
function validSects(c: GenContext): number {
  const r = c.ratio;
  const per = 8 / r;
  const first = r * c.rng.below(per);
  const last = first + r * (1 + c.rng.below(per - first / r)) - 1;
  return first | (last << 8);
}

/** Writes `n` valid descriptors (gref, sects) at word `w` of `dst`; returns the total sectors. */
function validSegs(c: GenContext, dst: Int32Array, w: number, n: number, read: boolean): number {
  const { rng, adv } = c;
  let total = 0;
  const one = rng.chance(0.7) ? (read ? rng.pick(adv.rwRefs) : rng.pick([...adv.rwRefs, ...adv.roRefs])) : -1;
  for (let i = 0; i < n; i++) {
    const s = validSects(c);
    const ref =
      one >= 0 ? one : read ? rng.pick(adv.rwRefs) : rng.chance(0.8) ? rng.pick(adv.rwRefs) : rng.pick(adv.roRefs);
    dst[w + i * 2] = ref;
    dst[w + i * 2 + 1] = s;
    total += ((s >>> 8) & 0xff) - (s & 0xff) + 1;
  }
  return total;
}

/** Breaks one of the `n` descriptors at word `w` as `d` says. */
function breakSeg(c: GenContext, dst: Int32Array, w: number, n: number, d: Defect, read: boolean): void {
  const { rng } = c;
  const i = rng.below(n);
  const at = w + i * 2;
  if (d === 'reversed') {
    const last = rng.below(7);
    dst[at + 1] = (last + 1 + rng.below(7 - last)) | (last << 8);
  } else if (d === 'past7') {
    dst[at + 1] = rng.below(8) | ((8 + rng.below(248)) << 8);
  } else if (d === 'misaligned') {
    dst[at + 1] = rng.chance(0.5) ? (1 + rng.below(7)) | (7 << 8) : rng.below(7) << 8;
  } else if (d === 'ref') {
    dst[at] = pickRef(c);
  } else if (d === 'roRead' && read) {
    dst[at] = rng.pick(c.adv.roRefs);
  }
}

/** The sector words for `total` sectors, valid or broken as `d` says. */
function sectorFor(c: GenContext, total: number, d: Defect): [number, number] {
  const { rng, sectors, ratio } = c;
  const room = Math.max(0, sectors - total);
  switch (d) {
    case 'end':
      return rng.chance(0.5) ? [room + ratio * (1 + rng.below(4)), 0] : [sectors + rng.below(1 << 20), 0];
    case 'wrap32':
      return [(0x100000000 - ratio * (1 + rng.below(Math.ceil(total / ratio) + 2))) >>> 0, 0];
    case 'wrap64':
      return rng.chance(0.7)
        ? [(0x100000000 - ratio * (1 + rng.below(4))) >>> 0, 0xffffffff]
        : [ratio * rng.below(4), rng.pick([1, 0x1fffff, 0x200000, 0x80000000, rng.edgeU32()])];
    case 'misaligned':
      if (ratio > 1 && rng.chance(0.5)) return [ratio * rng.below(Math.floor(room / ratio)) + 1 + rng.below(7), 0];
      break;
    default:
      break;
  }
  return [ratio * rng.below(Math.floor(room / ratio) + 1), 0];
}

function garbage(c: GenContext, dst: Int32Array, w: number, from: number, to: number): void {
  for (let i = from; i < to; i++) dst[w + i] = c.rng.u32() | 0;
}

/** Every word random. */
export function randomSlot(c: GenContext, dst: Int32Array, w: number): void {
  garbage(c, dst, w, 0, 28);
}

/** A direct READ/WRITE/FLUSH with at most one defect. */
export function directSlot(c: GenContext, dst: Int32Array, w: number): void {
  const { rng } = c;
  const d = rng.pick(DEFECTS);
  let op = rng.pick([0, 0, 1, 1, 3]);
  const n = 1 + rng.below(11);
  const read = op === 0;
  dst.fill(0, w, w + 28);
  if (d === 'garbage') garbage(c, dst, w, 6, 28);
  const total = validSegs(c, dst, w + 6, n, read);
  if (d === 'reversed' || d === 'past7' || d === 'ref' || d === 'roRead' || (d === 'misaligned' && c.ratio > 1)) {
    breakSeg(c, dst, w + 6, n, d, read);
  }
  let nseg = n;
  if (d === 'nseg') nseg = rng.pick([0, 12, 12 + rng.below(244)]);
  if (d === 'op') op = rng.pick([2, 5, 4, 7 + rng.below(249)]);
  if (op === 3 && rng.chance(0.3)) nseg = 0; // a plain flush
  const [lo, hi] = sectorFor(c, total, d);
  const handle = d === 'garbage' ? rng.u32() & 0xffff : 0;
  dst[w] = op | (nseg << 8) | (handle << 16);
  dst[w + 1] = d === 'garbage' ? rng.u32() | 0 : 0;
  dst[w + 4] = lo | 0;
  dst[w + 5] = hi | 0;
}

/** An indirect READ/WRITE (descriptors in one of the adversary's indirect pages) with at most one defect. */
export function indirectSlot(c: GenContext, dst: Int32Array, w: number): void {
  const { rng, adv } = c;
  const d = rng.pick(DEFECTS);
  let iop = rng.pick([0, 1]);
  const n = rng.chance(0.9) ? 1 + rng.below(24) : 1 + rng.below(256);
  const page = rng.below(adv.indRefs.length);
  const base = adv.indWord(page);
  const mem = adv.memWords;
  const total = validSegs(c, mem, base, n, iop === 0);
  if (d === 'reversed' || d === 'past7' || d === 'ref' || d === 'roRead' || (d === 'misaligned' && c.ratio > 1)) {
    breakSeg(c, mem, base, n, d, iop === 0);
  }
  let nseg = n;
  if (d === 'nseg') nseg = rng.pick([0, 257, 512, 0xffff, rng.edgeU32() & 0xffff]);
  if (d === 'op') iop = rng.pick([2, 3, 5, 6, rng.below(256)]);
  dst.fill(0, w, w + 28);
  if (d === 'garbage') garbage(c, dst, w, 15, 28);
  const [lo, hi] = sectorFor(c, total, d);
  dst[w] = 6 | (iop << 8) | (nseg << 16);
  dst[w + 4] = lo | 0;
  dst[w + 5] = hi | 0;
  dst[w + 6] = d === 'garbage' ? rng.u32() | 0 : 0;
  dst[w + 7] = d === 'ref' && rng.chance(0.5) ? pickRef(c) : adv.indRefs[page];
  if (d === 'garbage') for (let i = 8; i < 15; i++) dst[w + i] = rng.u32() | 0;
}

/** A cheap valid request (flush or a one-sector READ into a data page) for floods. */
export function cheapSlot(c: GenContext, dst: Int32Array, w: number): void {
  const { rng, adv } = c;
  dst.fill(0, w, w + 28);
  if (rng.chance(0.5)) {
    dst[w] = 3; // FLUSH_DISKCACHE, no segments
    return;
  }
  const r = c.ratio;
  dst[w] = 0 | (1 << 8);
  dst[w + 4] = r * rng.below(c.sectors / r);
  dst[w + 6] = rng.pick(adv.rwRefs);
  dst[w + 7] = (r - 1) << 8;
}

/** Writes one hostile slot of a random kind. */
export function hostileSlot(c: GenContext, dst: Int32Array, w: number): void {
  const k = c.rng.below(10);
  if (k < 1) randomSlot(c, dst, w);
  else if (k < 6) directSlot(c, dst, w);
  else indirectSlot(c, dst, w);
}
