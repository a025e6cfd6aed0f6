/**
 * Shared-memory layout of one device's IOMMU context (VT-d / VFIO, DESIGN §1 "IOMMU"). The whole
 * context lives in ONE `SharedArrayBuffer`, so every thread that runs the device's engine (the
 * owner domain's thread inline, or the dedicated device thread) translates through the same
 * entries, and the host and the owner's hypercalls change them in place.
 *
 * ```
 * word        byte          size      field          writer                    reader
 * --- header (64 B) -------------------------------------------------------------------------------
 * 0           0             4         MAGIC          create()                  attach
 * 1           4             4         SEQ            writers (odd while one    resolve (seqlock),
 *                                                    updates; acts as lock)    writers
 * 2           8             4         GENERATION     writers on unmap/change   generation()
 * 3           12            4         MODE           host (assign/clear)       resolve
 * 4           16            4         OWNER          host                      resolve, SimGrantOps
 * 5           20            4         OWNER_PAGES    host                      resolve
 * 6           24            4         WINDOW_BASE    host (first window page)  resolve, allocator
 * 7           28            4         WINDOW_PAGES   create()                  everyone
 * 8           32            4         MAX_EXTENTS    create()                  everyone
 * 9           36            4         LIVE_EXTENTS   writers                   diagnostics
 * 10          40            4         FAULTS         resolve (on refusal)      diagnostics
 * 11          44            4         ALLOC_CURSOR   writers (next-fit IOVA)   writers
 * 12          48            4         SLOT_HINT      writers (lowest maybe-    writers
 *                                                    free extent slot)
 * 13          52            12        pad            zero                      -
 * --- extent slot s, at word 16 + s * 8 (32 B each) -------------------------------------------------
 * +0          +0            4         STATE          writers                   resolve
 * +1          +4            4         IOVA_PAGE      writers                   resolve
 * +2          +8            4         PAGES          writers                   resolve
 * +3          +12           4         DOMID          writers                   resolve
 * +4          +16           4         GFN            writers                   resolve
 * +5          +20           4         FLAGS          writers                   resolve
 * +6          +24           8         pad            zero                      -
 * --- page table, at word 16 + MAX_EXTENTS * 8, one word per window page ----------------------------
 * +i          +4i           4         PTE            writers                   resolve
 * ```
 * Total = 64 + MAX_EXTENTS * 32 + WINDOW_PAGES * 4 bytes.
 *
 * IOVA space of a context (page granularity):
 * ```
 * 0 ............ OWNER_PAGES | guard | WINDOW_BASE ....................... WINDOW_BASE + WINDOW_PAGES
 * owner memory, identity       1 page  foreign extents, each followed by a guard page
 * ```
 * A PTE is 0 (free), `PTE_GUARD` (the guard page after an extent: never mapped, never allocated)
 * or `slot + 1` of the extent covering that page. The guard pages make any range that runs off
 * the owner's memory or off one extent fault instead of reaching the next extent.
 */

import { pvError } from '../../protocol/errors.js';

/** 'IOMU': marks an initialised context, so attaching to a foreign buffer fails loudly. */
export const IOMMU_MAGIC = 0x494f4d55;

/** Int32 word indices of the header. */
export const enum IommuWord {
  MAGIC = 0,
  SEQ = 1,
  GENERATION = 2,
  MODE = 3,
  OWNER = 4,
  OWNER_PAGES = 5,
  WINDOW_BASE = 6,
  WINDOW_PAGES = 7,
  MAX_EXTENTS = 8,
  LIVE_EXTENTS = 9,
  FAULTS = 10,
  ALLOC_CURSOR = 11,
  SLOT_HINT = 12,
  /** Header size in words (64 bytes); extent slots start here. */
  HEADER = 16,
}

/** Int32 word indices inside one extent slot. */
export const enum ExtentWord {
  STATE = 0,
  IOVA_PAGE = 1,
  PAGES = 2,
  DOMID = 3,
  GFN = 4,
  FLAGS = 5,
  /** Slot size in words (32 bytes). */
  SIZE = 8,
}

/** Values of MODE. */
export const enum IommuModeCode {
  /** No owner: every DMA faults. */
  NONE = 0,
  /** VT-d/VFIO: owner memory mapped 1:1 (IOVA = GPA), plus foreign extents in the window. */
  TRANSLATE = 1,
  /** IOMMU off (native): DMA addresses are the owner's physical addresses; nothing else. */
  BYPASS = 2,
}

/** Values of an extent's STATE. */
export const enum ExtentState {
  FREE = 0,
  /** Mapped: resolve may use it. */
  VALID = 1,
  /** Its target domain died: resolve refuses it; the owner's unmap frees the slot. */
  REVOKED = 2,
}

/** Bits of an extent's FLAGS. */
export const enum ExtentFlag {
  WRITABLE = 1,
}

/** PTE of the guard page that follows every extent. */
export const PTE_GUARD = -1;
/** Pages between the end of the owner's memory and the window (a guard). */
export const OWNER_GUARD_PAGES = 1;
/** Default window: 65536 pages = 256 MiB of foreign mappings per device. */
export const DEFAULT_WINDOW_PAGES = 65536;
/** Default extent slots (live grant device maps per device). */
export const DEFAULT_MAX_EXTENTS = 8192;
/** Largest window or slot count accepted (keeps every page number inside an Int32). */
export const MAX_WINDOW_PAGES = 1 << 24;

/** Bytes of a context with `maxExtents` slots and a window of `windowPages` pages. */
export function iommuBytes(maxExtents: number, windowPages: number): number {
  return IommuWord.HEADER * 4 + maxExtents * ExtentWord.SIZE * 4 + windowPages * 4;
}

/** Word index of extent slot `slot`. */
export function extentBase(slot: number): number {
  return IommuWord.HEADER + slot * ExtentWord.SIZE;
}

/** Word index of the first PTE, for a context with `maxExtents` slots. */
export function pageTableBase(maxExtents: number): number {
  return IommuWord.HEADER + maxExtents * ExtentWord.SIZE;
}

/**
 * A zeroed context buffer with its sizes, no owner and MODE NONE; `PV_ERR_CONFIG` for sizes
 * outside [2, MAX_WINDOW_PAGES].
 */
export function createIommuBuffer(device: string, maxExtents: number, windowPages: number): SharedArrayBuffer {
  for (const [what, v] of [
    ['windowPages', windowPages],
    ['maxExtents', maxExtents],
  ] as const) {
    if (!Number.isInteger(v) || v < 2 || v > MAX_WINDOW_PAGES) {
      throw pvError('PV_ERR_CONFIG', `IOMMU of ${device}: ${what} must be in [2, ${MAX_WINDOW_PAGES}], got ${v}`);
    }
  }
  const buffer = new SharedArrayBuffer(iommuBytes(maxExtents, windowPages));
  const w = new Int32Array(buffer);
  w[IommuWord.WINDOW_PAGES] = windowPages;
  w[IommuWord.MAX_EXTENTS] = maxExtents;
  w[IommuWord.OWNER] = -1;
  w[IommuWord.MODE] = IommuModeCode.NONE;
  // ORDERING: seq-cst store last; an attach that loads the magic sees the sizes.
  Atomics.store(w, IommuWord.MAGIC, IOMMU_MAGIC);
  return buffer;
}
