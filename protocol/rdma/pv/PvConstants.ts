/**
 * Sizes and constants of the paravirtual RDMA device (`vrdma`): the two shared rings, the
 * indirect grant-reference pages of a memory registration, and the bounds both ends apply.
 *
 * ```
 * ring      order  pages  slot     slots  why
 * control   0      1      1024 B   2      (4096 − 64) / 1024 = 3 → 2: control is synchronous,
 *                                         one command in flight; a slot holds one protobuf message
 * data      3      8      128 B    128    (32768 − 64) / 128 = 255 → 128: 4 header words + the
 *                                         28 used words of a send WQE fill a slot exactly
 * ```
 * One event channel serves both rings (the backend drains both whenever it is woken).
 *
 * Memory registration carries the grant references of the MR's pages INDIRECTLY, as blkif's
 * indirect segments do: the frontend writes the u32 refs into pages it grants read-only, and
 * the control message carries only the refs of those pages (2048 refs would not fit a 1 KiB
 * slot). Indirect page layout: `ref[i]` at byte `4·(i mod 1024)` of page `⌊i / 1024⌋`; the
 * unused tail of the last page is zero.
 */

import { PAGE_SIZE } from '../../Types.js';

/** xenbus device class of the paravirtual RDMA device. */
export const VRDMA_DEVICE_TYPE = 'vrdma';

/** Control ring: 2^0 pages. */
export const PV_CTRL_RING_ORDER = 0;
/** Control slot size in bytes (u32 length + protobuf message). */
export const PV_CTRL_SLOT_SIZE = 1024;
/** Control slot size in words. */
export const PV_CTRL_SLOT_WORDS = PV_CTRL_SLOT_SIZE / 4;
/** Largest protobuf message in a control slot (the slot minus its length word). */
export const PV_CTRL_MAX_MESSAGE = PV_CTRL_SLOT_SIZE - 4;

/** Data ring: 2^3 pages. */
export const PV_DATA_RING_ORDER = 3;
/** Data slot size in bytes. */
export const PV_DATA_SLOT_SIZE = 128;
/** Data slot size in words. */
export const PV_DATA_SLOT_WORDS = PV_DATA_SLOT_SIZE / 4;

/** u32 grant refs per indirect page. */
export const PV_REFS_PER_INDIRECT_PAGE = PAGE_SIZE / 4;
/**
 * Most indirect pages one registration may name: 32 × 1024 pages = 128 MiB per MR. Bounds the
 * repeated field the backend accepts and the pages it maps to read the refs.
 */
export const PV_MAX_INDIRECT_PAGES = 32;
/** Most pages one memory registration may span. */
export const PV_MAX_MR_PAGES = PV_MAX_INDIRECT_PAGES * PV_REFS_PER_INDIRECT_PAGE;
/**
 * Most pages of one CQ ring (refs are carried directly in CreateCq): a 4096-entry CQ is
 * 64 + 4096 · 64 bytes = 65 pages.
 */
export const PV_MAX_CQ_RING_PAGES = 65;
/** Longest error detail a control response carries (keeps the message inside its slot). */
export const PV_MAX_ERROR_TEXT = 256;

/** Pages of `[addr, addr + length)` (length > 0): whole pages touched, overflow-safe for safe integers. */
export function pagesSpanned(addr: number, length: number): number {
  const first = Math.floor(addr / PAGE_SIZE);
  const last = Math.floor((addr + length - 1) / PAGE_SIZE);
  return last - first + 1;
}

/** Indirect pages needed to hold `npages` refs. */
export function indirectPagesFor(npages: number): number {
  return Math.ceil(npages / PV_REFS_PER_INDIRECT_PAGE);
}

/** The `mode` a frontend publishes. */
export type VrdmaMode = 'zero-copy' | 'copy';
