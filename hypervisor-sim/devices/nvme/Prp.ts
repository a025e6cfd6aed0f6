/**
 * Physical Region Page walking (NVMe 1.4 §4.3), the one place that turns the PRP1/PRP2 fields
 * a driver wrote into a list of device-address segments. Everything it reads is hostile: PRP
 * entries and list pages come from the owner's memory.
 *
 * Rules (memory page size 4 KiB, CC.MPS = 0):
 *  - PRP1 may start anywhere that is dword aligned (bits 1:0 = 0); it covers up to the end of
 *    its page.
 *  - If the rest fits in one page, PRP2 is that page's address (offset 0).
 *  - Otherwise PRP2 points to a PRP list (qword aligned): entries of 8 bytes up to the end of
 *    that page, each a page address with offset 0. When more pages remain than the list page
 *    has entries, its LAST entry points to the next list page (pvio requires it page aligned:
 *    a chained list starts at offset 0).
 *
 * Outcomes: a misaligned entry → PRP Offset Invalid; an address beyond 2^53 or a list page the
 * IOMMU refuses → Data Transfer Error. The walk is bounded: it stops after the segments the
 * transfer needs (≤ maxTransfer / 4 KiB + 1), and each list page yields at least one entry.
 */

import { NvmeStatus } from '../../../protocol/nvme/NvmeCommand.js';
import { NVME_PAGE_SIZE } from '../../../protocol/nvme/NvmeRegs.js';
import type { NvmeCtx } from './NvmeContext.js';
import { joinAddr, NvmeMetric } from './NvmeLayout.js';

const PAGE = NVME_PAGE_SIZE;

function push(ctx: NvmeCtx, addr: number, len: number): void {
  ctx.segAddr[ctx.segCount] = addr;
  ctx.segLen[ctx.segCount] = len;
  ctx.segCount++;
}

/**
 * Fills `ctx.segAddr/segLen/segCount` with the segments of a `len`-byte transfer described by
 * PRP1 (`p1Lo`, `p1Hi`) and PRP2. Returns SUCCESS or the NVMe status to complete with.
 */
export function walkPrp(ctx: NvmeCtx, p1Lo: number, p1Hi: number, p2Lo: number, p2Hi: number, len: number): number {
  ctx.segCount = 0;
  const prp1 = joinAddr(p1Lo, p1Hi);
  if (prp1 < 0) return NvmeStatus.DATA_TRANSFER_ERROR;
  if ((p1Lo & 3) !== 0) return NvmeStatus.PRP_OFFSET_INVALID;
  const first = Math.min(len, PAGE - (prp1 % PAGE));
  push(ctx, prp1, first);
  let rem = len - first;
  if (rem === 0) return NvmeStatus.SUCCESS;
  const prp2 = joinAddr(p2Lo, p2Hi);
  if (prp2 < 0) return NvmeStatus.DATA_TRANSFER_ERROR;
  if (rem <= PAGE) {
    if (prp2 % PAGE !== 0) return NvmeStatus.PRP_OFFSET_INVALID;
    push(ctx, prp2, rem);
    return NvmeStatus.SUCCESS;
  }
  if ((p2Lo & 7) !== 0) return NvmeStatus.PRP_OFFSET_INVALID;
  let list = prp2;
  const ref = ctx.lref;
  // INVARIANT: len ≤ maxTransfer (checked by the caller), so at most maxTransfer / PAGE pages
  // remain; each loop consumes ≥ 1 of them except a first list page with a single slot, whose
  // one entry is a pointer to a page-aligned list (512 slots). The guard is belt and braces.
  for (let guard = ctx.segAddr.length + 2; rem > 0 && guard > 0; guard--) {
    const slots = (PAGE - (list % PAGE)) / 8;
    const needed = Math.ceil(rem / PAGE);
    const chained = needed > slots;
    const data = chained ? slots - 1 : needed;
    const entries = chained ? slots : needed;
    if (!ctx.dma.resolve(list, entries * 8, false, ref) || (ref.offset & 7) !== 0) {
      ctx.count(NvmeMetric.DMA_FAULTS);
      return NvmeStatus.DATA_TRANSFER_ERROR;
    }
    const w = ref.words;
    const base = ref.offset >> 2;
    for (let i = 0; i < data; i++) {
      const lo = w[base + 2 * i];
      const e = joinAddr(lo, w[base + 2 * i + 1]);
      if (e < 0) return NvmeStatus.DATA_TRANSFER_ERROR;
      if ((lo & (PAGE - 1)) !== 0) return NvmeStatus.PRP_OFFSET_INVALID;
      const n = rem < PAGE ? rem : PAGE;
      push(ctx, e, n);
      rem -= n;
    }
    if (!chained) break;
    const lo = w[base + 2 * data];
    const next = joinAddr(lo, w[base + 2 * data + 1]);
    if (next < 0) return NvmeStatus.DATA_TRANSFER_ERROR;
    if ((lo & (PAGE - 1)) !== 0) return NvmeStatus.PRP_OFFSET_INVALID;
    list = next;
  }
  return rem === 0 ? NvmeStatus.SUCCESS : NvmeStatus.DATA_TRANSFER_ERROR;
}

/**
 * Moves the walked segments: `fn(ref, len, mediaOffset)` for each run, where a run merges
 * segments that are contiguous in device address space (one syscall per run, not per page)
 * and `ref` is the run resolved for `toMemory` (a write into the owner's memory) or a read.
 * If a merged run does not resolve (it spans two IOMMU extents), its segments are resolved one
 * by one. Returns SUCCESS, Data Transfer Error on a DMA fault, or `fn`'s non-zero status.
 */
export function forEachRun(
  ctx: NvmeCtx,
  toMemory: boolean,
  fn: (ref: NvmeCtx['dref'], len: number, pos: number) => number,
): number {
  const ref = ctx.dref;
  let pos = 0;
  let i = 0;
  while (i < ctx.segCount) {
    let j = i + 1;
    let runLen = ctx.segLen[i];
    while (j < ctx.segCount && ctx.segAddr[j] === ctx.segAddr[j - 1] + ctx.segLen[j - 1]) {
      runLen += ctx.segLen[j];
      j++;
    }
    if (ctx.dma.resolve(ctx.segAddr[i], runLen, toMemory, ref)) {
      const st = fn(ref, runLen, pos);
      if (st !== NvmeStatus.SUCCESS) return st;
      pos += runLen;
    } else {
      for (let k = i; k < j; k++) {
        if (!ctx.dma.resolve(ctx.segAddr[k], ctx.segLen[k], toMemory, ref)) {
          ctx.count(NvmeMetric.DMA_FAULTS);
          return NvmeStatus.DATA_TRANSFER_ERROR;
        }
        const st = fn(ref, ctx.segLen[k], pos);
        if (st !== NvmeStatus.SUCCESS) return st;
        pos += ctx.segLen[k];
      }
    }
    i = j;
  }
  return NvmeStatus.SUCCESS;
}
