/**
 * The adversarial guest's memory for the virtq target, and the address pools its chains draw
 * from. Three regions, two of them GPA-adjacent (a range across 0x10000 spans two regions and
 * must be refused even though both sides are mapped), one read-only, with GPA gaps and backing
 * holes (canaries) between them:
 *
 * ```
 * gpa              size    backing   use
 * 0x00000-0x01000  4 KiB   0x01000   the queue (QS ≤ 64: ≤ 1.7 KiB)
 * 0x01000-0x05000  16 KiB            indirect tables (16 slots of 1 KiB = 64 entries)
 * 0x06000-0x10000  40 KiB            data buffers
 * 0x10000-0x12000  8 KiB   0x12000   read-only: indirect tables (8 slots)
 * 0x12000-0x14000  8 KiB             read-only: readable data buffers
 * 0x14000-0x40000  —       —         GPA gap
 * 0x40000-0x48000  32 KiB  0x18000   data buffers
 * backing holes: [0, 0x1000), [0x11000, 0x12000), [0x16000, 0x18000), [0x20000, 0x22000)
 * ```
 */

import type { Rng } from '../core/FuzzTarget.js';
import type { RamRegion } from './GuestRam.js';

/** Bytes of the adversary's backing buffer. */
export const ADV_BYTES = 0x22000;

/** The adversary's regions (see the file comment). */
export const ADV_REGIONS: readonly RamRegion[] = [
  { gpa: 0x0, size: 0x10000, offset: 0x1000 },
  { gpa: 0x10000, size: 0x4000, offset: 0x12000, readOnly: true },
  { gpa: 0x40000, size: 0x8000, offset: 0x18000 },
];

/** The queue's GPA. */
export const ADV_QUEUE = 0;
/** Queue sizes a case picks from (the largest block must fit below ADV_TABLES). */
export const ADV_SIZES: readonly number[] = [1, 2, 4, 8, 16, 32, 64];
/** Indirect table slots of 1 KiB: 16 writable, 8 read-only. */
export const ADV_TABLES: readonly number[] = [
  ...Array.from({ length: 16 }, (_, i) => 0x1000 + 0x400 * i),
  ...Array.from({ length: 8 }, (_, i) => 0x10000 + 0x400 * i),
];
/** The table areas as [gpa, bytes] (the mutator rewrites them too). */
export const ADV_TABLE_AREAS: ReadonlyArray<readonly [number, number]> = [
  [0x1000, 0x4000],
  [0x10000, 0x2000],
];

/** [base, size] of areas a device-writable buffer may use. */
const WRITABLE: ReadonlyArray<readonly [number, number]> = [
  [0x6000, 0xa000],
  [0x40000, 0x8000],
];
/** … and a device-readable one (read-only memory included). */
const READABLE: ReadonlyArray<readonly [number, number]> = [...WRITABLE, [0x12000, 0x2000]];
/** The read-only data area. */
export const ADV_RO_DATA: readonly [number, number] = [0x12000, 0x2000];

/** A valid buffer address for `len` bytes (`write`: in writable memory). */
export function validAddr(rng: Rng, len: number, write: boolean): number {
  const [base, size] = rng.pick(write ? WRITABLE : READABLE);
  return base + rng.below(size - len + 1);
}

/** A valid buffer length (sometimes 0: a zero-length buffer names no byte and is allowed). */
export function validLen(rng: Rng): number {
  if (rng.chance(0.04)) return 0;
  return 1 + rng.below(rng.chance(0.2) ? 4096 : 256);
}

/**
 * An address `[addr, addr + len)` cannot be resolved at: {addr, hi, len}. `hi` set means the
 * high word of the 64-bit address (≥ 2^21: past 2^53). With `fixedLen` the length is kept
 * (an indirect table's must stay a multiple of 16); else a straddle picks its own.
 */
export function badAddr(rng: Rng, len: number, fixedLen = false): { addr: number; hi?: number; len: number } {
  const kind = rng.below(6);
  if (kind === 2 || kind === 3) {
    // Across the R0|R1 boundary (both mapped, but two regions), or across the last region's end.
    const l = fixedLen ? len : 2 + rng.below(64);
    if (l >= 2) return { addr: (kind === 2 ? 0x10000 : 0x48000) - 1 - rng.below(Math.min(l, 64) - 1), len: l };
  }
  switch (kind) {
    case 1:
      // Past the last region.
      return { addr: 0x48001 + rng.below(0xffff0000), len };
    case 4:
      return { addr: rng.u32(), hi: 0x200000 + rng.below(0xffdfffff), len };
    case 5:
      return { addr: 0xffffffff - rng.below(16), hi: 0xffffffff, len };
    default:
      // In the GPA gap (not at 0x14000: a zero-length range at a region's end is legal).
      return { addr: 0x14001 + rng.below(0x40000 - 0x14001), len };
  }
}

/** Addresses a garbage descriptor picks from: valid areas, edges, gaps, huge. */
export function garbageAddr(rng: Rng): { addr: number; hi: number } {
  switch (rng.below(5)) {
    case 0:
      return { addr: validAddr(rng, 0, rng.chance(0.5)), hi: 0 };
    case 1:
      return { addr: rng.pick([0, 0xfff, 0x1000, 0xffff, 0x10000, 0x14000, 0x3ffff, 0x40000, 0x48000]), hi: 0 };
    case 2:
      return { addr: rng.edgeU32(), hi: 0 };
    case 3:
      return { addr: rng.u32(), hi: rng.pick([0x1fffff, 0x200000, 0xffffffff, rng.u32()]) };
    default:
      return { addr: rng.pick(ADV_TABLES), hi: 0 };
  }
}
