/**
 * Argument checks shared by the command handlers (Commands.ts, QpCommands.ts). Each one reads
 * the private copy of CMD_IN, never the BAR, and throws a catalogue error the mailbox turns
 * into CMD_STATUS.
 */

import { pvError } from '../../../protocol/errors.js';
import { NIC_CMD_WORDS } from '../../../protocol/rdma/NicRegs.js';
import { safeAddr } from '../../../protocol/rdma/Wqe.js';
import { emptyDmaRef } from '../../iommu/DmaResolver.js';
import type { RnicCtx } from './RnicContext.js';

/** Required alignment of queues and CQ rings (one CQE; keeps every Int32 view aligned). */
const QUEUE_ALIGN = 64;
/** Resolution target of the mapping checks (its contents are not used). */
const scratchRef = emptyDmaRef();

/** Throws PV_ERR_INVALID_ARG unless argument words `from` … 31 are zero (NicRegs: "unused words must be zero"). */
export function requireZero(a: Int32Array, from: number): void {
  for (let i = from; i < NIC_CMD_WORDS; i++) {
    if (a[i] !== 0) throw pvError('PV_ERR_INVALID_ARG', `argument word ${i} must be zero`);
  }
}

/** Checks a handle in 1 … max − 1 whose entry (word `base(h)`) is valid; returns it. */
export function liveHandle(ctx: RnicCtx, v: number, max: number, base: (h: number) => number, what: string): number {
  const h = v >>> 0;
  if (h === 0 || h >= max || ctx.dev[base(h)] === 0) throw pvError('PV_ERR_RDMA_BAD_HANDLE', `no such ${what} ${h}`);
  return h;
}

/** First free entry in 1 … count − 1 (VALID word at `base(i)`), or PV_ERR_RDMA_RESOURCE. */
export function freeSlot(ctx: RnicCtx, count: number, base: (i: number) => number, what: string): number {
  for (let i = 1; i < count; i++) if (ctx.dev[base(i)] === 0) return i;
  throw pvError('PV_ERR_RDMA_RESOURCE', `no free ${what} (${count - 1} in use)`);
}

/** A safe-integer address from (lo, hi) words, or PV_ERR_INVALID_ARG. */
export function argAddr(lo: number, hi: number, what: string): number {
  const a = safeAddr(lo, hi);
  if (a < 0) throw pvError('PV_ERR_INVALID_ARG', `${what} is not a safe integer`);
  return a;
}

/** Checks `[addr, addr + bytes)` stays below 2^53. */
export function argRange(addr: number, bytes: number, what: string): void {
  if (bytes > Number.MAX_SAFE_INTEGER - addr) throw pvError('PV_ERR_INVALID_ARG', `${what} ends past 2^53`);
}

/** A power of two in 1 … max, or PV_ERR_BAD_LENGTH. */
export function argPow2(v: number, max: number, what: string): number {
  const n = v >>> 0;
  if (n === 0 || n > max || (n & (n - 1)) !== 0) {
    throw pvError('PV_ERR_BAD_LENGTH', `${what} must be a power of two in 1 … ${max}, got ${n}`);
  }
  return n;
}

/** A queue/ring IOVA: safe, 64-byte aligned, `bytes` long, and mapped by the IOMMU for `write`. */
export function argQueue(ctx: RnicCtx, lo: number, hi: number, bytes: number, write: boolean, what: string): number {
  const iova = argAddr(lo, hi, what);
  if (iova % QUEUE_ALIGN !== 0) throw pvError('PV_ERR_BAD_ALIGNMENT', `${what} must be ${QUEUE_ALIGN}-byte aligned`);
  argRange(iova, bytes, what);
  if (!ctx.dma.resolve(iova, bytes, write, scratchRef)) {
    throw pvError('PV_ERR_RDMA_BAD_MEMORY', `${what} [${iova}, +${bytes}) is not mapped for the device`);
  }
  return iova;
}
