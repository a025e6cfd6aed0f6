/**
 * Builds the PRP1/PRP2 pair (and the PRP list pages) describing a buffer that is contiguous in
 * device address space (NVMe 1.4 §4.3, memory page size 4 KiB):
 *  - PRP1 = the buffer's address (any dword-aligned offset);
 *  - the rest fits in one page → PRP2 = that page;
 *  - else PRP2 = a PRP list: one 8-byte entry per remaining page; when they do not fit in one
 *    list page (512 entries), its last entry points to the next list page (chaining).
 * List pages are the command slot's own (NvmeQueuePair.listPages), so building allocates nothing.
 */

import { pvError } from '../../protocol/errors.js';
import type { GuestMemory } from '../../protocol/Hypercalls.js';
import type { PciFunction } from '../../protocol/Pci.js';
import { type GuestPhysAddr, PAGE_SIZE } from '../../protocol/Types.js';
import { wordsAt } from './NvmeQueuePair.js';

/** 8-byte entries per list page. */
export const PRP_ENTRIES_PER_PAGE = PAGE_SIZE / 8;

/** List pages needed for a transfer of `maxBytes` starting anywhere (dword aligned). */
export function listPagesFor(maxBytes: number): number {
  // Worst case: a misaligned start leaves ⌈maxBytes / PAGE⌉ pages after the first.
  const entries = Math.ceil(maxBytes / PAGE_SIZE);
  if (entries <= 1) return 0;
  if (entries <= PRP_ENTRIES_PER_PAGE) return 1;
  return Math.ceil((entries - 1) / (PRP_ENTRIES_PER_PAGE - 1));
}

function setEntry(words: Int32Array, i: number, addr: number): void {
  words[2 * i] = (addr % 0x1_0000_0000) | 0;
  words[2 * i + 1] = Math.floor(addr / 0x1_0000_0000) | 0;
}

/**
 * Returns [prp1, prp2] for `bytes` at device address `dma`, writing list pages from `pages`
 * (guest-physical; reached by the device at `pci.dmaAddr`). PV_ERR_BAD_ALIGNMENT when `dma` is
 * not dword aligned, PV_ERR_LIMIT when the slot's list pages cannot hold the transfer.
 */
export function buildPrps(
  pci: PciFunction,
  mem: GuestMemory,
  pages: readonly GuestPhysAddr[],
  dma: number,
  bytes: number,
): [number, number] {
  if (dma % 4 !== 0) throw pvError('PV_ERR_BAD_ALIGNMENT', `NVMe data address ${dma} is not dword aligned`);
  const first = Math.min(bytes, PAGE_SIZE - (dma % PAGE_SIZE));
  const rem = bytes - first;
  if (rem === 0) return [dma, 0];
  const next = dma + first;
  if (rem <= PAGE_SIZE) return [dma, next];
  const entries = Math.ceil(rem / PAGE_SIZE);
  if (listPagesFor(entries * PAGE_SIZE) > pages.length) {
    throw pvError('PV_ERR_LIMIT', `NVMe transfer of ${bytes} bytes needs more PRP list pages than a slot has`);
  }
  let page = 0;
  let words = wordsAt(mem, pages[0], PAGE_SIZE);
  let slot = 0;
  for (let k = 0; k < entries; k++) {
    // The last slot of a list page chains to the next one when more than one entry is left.
    if (slot === PRP_ENTRIES_PER_PAGE - 1 && entries - k > 1) {
      page++;
      setEntry(words, slot, pci.dmaAddr(pages[page]));
      words = wordsAt(mem, pages[page], PAGE_SIZE);
      slot = 0;
    }
    setEntry(words, slot, next + k * PAGE_SIZE);
    slot++;
  }
  return [dma, pci.dmaAddr(pages[0])];
}
