/**
 * NVM command set I/O commands (NVM Command Set 1.0 / NVMe 1.4 §6): READ, WRITE and FLUSH on
 * the one namespace (NSID 1, 512-byte logical blocks), against the real backing file.
 *
 * Validation order, each failure completing the command with its status (never a throw):
 * FUSE/PSDT (Invalid Field) → NSID (Invalid Namespace or Format) → LBA range, overflow-safe
 * (LBA Out of Range) → transfer size ≤ MDTS (Invalid Field) → PRPs (PRP Offset Invalid / Data
 * Transfer Error) → data movement (Data Transfer Error on a DMA fault, Write Fault /
 * Unrecovered Read Error when the file refuses). A WRITE whose DMA faults halfway leaves the
 * runs before the fault written, as a real controller may.
 *
 * CDW12 bit 30 (FUA) on a WRITE: the data is fsynced before the command completes.
 */

import {
  Cdw0,
  LBA_SHIFT,
  NSID_ALL,
  NVME_NSID,
  NvmeStatus,
  NvmOpcode,
  SqeWord,
} from '../../../protocol/nvme/NvmeCommand.js';
import type { DmaRef } from '../../iommu/DmaResolver.js';
import type { NvmeCtx } from './NvmeContext.js';
import { NvmeMetric } from './NvmeLayout.js';
import { mediaFlush, mediaRead, mediaWrite } from './NvmeMedia.js';
import { forEachRun, walkPrp } from './Prp.js';

/** CDW12 bit 30: Force Unit Access. */
const CDW12_FUA = 1 << 30;
/** SLBA high words at or above this put SLBA ≥ 2^53 (beyond any namespace pvio can hold). */
const SLBA_HI_LIMIT = 0x20_0000;

function flush(ctx: NvmeCtx): number {
  ctx.count(NvmeMetric.FSYNCS);
  return mediaFlush(ctx.media) ? NvmeStatus.SUCCESS : NvmeStatus.WRITE_FAULT;
}

/**
 * Checks `[slba, slba + nlb)` against the namespace without losing precision: SLBA is 64-bit
 * (CDW11:CDW10); a high word ≥ 2^21 is already beyond 2^53 > capacity, so the joined value is
 * exact whenever it is compared, and `nlb > cap - slba` never overflows.
 */
export function lbaRangeOk(lo: number, hi: number, nlb: number, capacityBlocks: number): boolean {
  const h = hi >>> 0;
  if (h >= SLBA_HI_LIMIT) return false;
  const slba = h * 0x1_0000_0000 + (lo >>> 0);
  return slba <= capacityBlocks && nlb <= capacityBlocks - slba;
}

/** Executes the I/O command in `ctx.sqe`; returns its status. */
export function executeIo(ctx: NvmeCtx): number {
  const c = ctx.sqe;
  const cdw0 = c[SqeWord.CDW0];
  const opc = cdw0 & Cdw0.OPC_MASK;
  if (opc !== NvmOpcode.READ && opc !== NvmOpcode.WRITE && opc !== NvmOpcode.FLUSH) return NvmeStatus.INVALID_OPCODE;
  if ((cdw0 & (Cdw0.FUSE_BITS | Cdw0.PSDT_BITS)) !== 0) {
    return NvmeStatus.INVALID_FIELD;
  }
  const nsid = c[SqeWord.NSID] >>> 0;
  if (opc === NvmOpcode.FLUSH) {
    if (nsid !== NVME_NSID && nsid !== NSID_ALL) return NvmeStatus.INVALID_NAMESPACE;
    ctx.count(NvmeMetric.FLUSHES);
    return flush(ctx);
  }
  if (nsid !== NVME_NSID) return NvmeStatus.INVALID_NAMESPACE;
  const nlb = (c[SqeWord.CDW12] & 0xffff) + 1;
  if (!lbaRangeOk(c[SqeWord.CDW10], c[SqeWord.CDW11], nlb, ctx.capacityBlocks)) return NvmeStatus.LBA_OUT_OF_RANGE;
  const bytes = nlb << LBA_SHIFT;
  if (bytes > ctx.maxTransfer) return NvmeStatus.INVALID_FIELD;
  // INVARIANT: lbaRangeOk proved slba + nlb ≤ capacity < 2^53, so this is exact.
  const pos = ((c[SqeWord.CDW11] >>> 0) * 0x1_0000_0000 + (c[SqeWord.CDW10] >>> 0)) * 2 ** LBA_SHIFT;
  const st = walkPrp(ctx, c[SqeWord.PRP1_LO], c[SqeWord.PRP1_HI], c[SqeWord.PRP2_LO], c[SqeWord.PRP2_HI], bytes);
  if (st !== NvmeStatus.SUCCESS) return st;
  const media = ctx.media;
  if (opc === NvmOpcode.READ) {
    let last: DmaRef | undefined;
    let lastByte = -1;
    const rs = forEachRun(ctx, true, (ref, len, at) => {
      if (!mediaRead(media, ref.bytes, ref.offset, len, pos + at)) return NvmeStatus.UNRECOVERED_READ_ERROR;
      last = ref;
      lastByte = ref.offset + len - 1;
      return NvmeStatus.SUCCESS;
    });
    if (rs !== NvmeStatus.SUCCESS) return rs;
    ctx.count(NvmeMetric.READS);
    ctx.count(NvmeMetric.BYTES_READ, bytes);
    // ORDERING: the data was written before this notify; a guest sleeping on its buffer's last
    // word (MONITOR/MWAIT style, DESIGN §4) wakes and sees it.
    if (last !== undefined && lastByte >= 0) Atomics.notify((last as DmaRef).words, lastByte >> 2);
    return NvmeStatus.SUCCESS;
  }
  const ws = forEachRun(ctx, false, (ref, len, at) =>
    mediaWrite(media, ref.bytes, ref.offset, len, pos + at) ? NvmeStatus.SUCCESS : NvmeStatus.WRITE_FAULT,
  );
  if (ws !== NvmeStatus.SUCCESS) return ws;
  ctx.count(NvmeMetric.WRITES);
  ctx.count(NvmeMetric.BYTES_WRITTEN, bytes);
  if ((c[SqeWord.CDW12] & CDW12_FUA) !== 0) return flush(ctx);
  return NvmeStatus.SUCCESS;
}
