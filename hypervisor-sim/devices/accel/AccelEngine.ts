/**
 * The accelerator's two engines, run inline at doorbell time under the engine lock
 * (AccelMmio.ts): the DMA engine, which moves bytes between host memory (through the device's
 * DmaResolver: its IOMMU context, plus peer windows) and device memory, and the kernel engine,
 * which really computes on device memory (protocol/accel/AccelRegs.ts lists the kernels).
 *
 * Every parameter is a register the driver wrote, so hostile. Each check returns a status
 * (never throws) and nothing is touched before all checks passed:
 *  - DMA: DMA_LEN in [1, MAX_XFER] (BAD_LENGTH) → DMA_DIR 0 or 1 (BAD_ARG) → [DMA_DEV, +len)
 *    inside device memory, overflow-safe (BAD_RANGE) → the host range resolves (DMA_FAULT).
 *  - Kernels: known id (UNKNOWN_KERNEL) → lengths / n bounded (BAD_LENGTH, BAD_ARG) → f32
 *    offsets 4-aligned (BAD_ALIGNMENT) → every range inside device memory (BAD_RANGE).
 * Range test: `off ≤ memBytes && len ≤ memBytes − off` on unsigned values, so an offset or length
 * near 2^32 can never wrap into memory.
 */

import {
  AccelDmaDir,
  AccelKernel,
  AccelReg,
  AccelStatus,
  crc32,
  fnv1a32,
  kernelArgReg,
} from '../../../protocol/accel/AccelRegs.js';
import { PAGE_SIZE } from '../../../protocol/Types.js';
import type { AccelCtx } from './AccelContext.js';
import { AccelMetric } from './AccelLayout.js';

/** High words at or above this put an address beyond 2^53: never a valid DMA address. */
const ADDR_HI_LIMIT = 0x20_0000;

/** True when [off, off + len) lies inside device memory (unsigned, overflow-safe). */
export function devRangeOk(ctx: AccelCtx, off: number, len: number): boolean {
  const size = ctx.sizes.memBytes;
  return off >= 0 && len >= 0 && off <= size && len <= size - off;
}

/** Runs the transfer described by the DMA registers; returns its status. */
export function runDma(ctx: AccelCtx): number {
  const len = ctx.reg(AccelReg.DMA_LEN) >>> 0;
  if (len === 0 || len > ctx.sizes.maxXfer) return AccelStatus.BAD_LENGTH;
  const dir = ctx.reg(AccelReg.DMA_DIR);
  if (dir !== AccelDmaDir.TO_DEVICE && dir !== AccelDmaDir.FROM_DEVICE) return AccelStatus.BAD_ARG;
  const dev = ctx.reg(AccelReg.DMA_DEV) >>> 0;
  if (!devRangeOk(ctx, dev, len)) return AccelStatus.BAD_RANGE;
  const hi = ctx.reg(AccelReg.DMA_HOST_HI) >>> 0;
  if (hi >= ADDR_HI_LIMIT) {
    ctx.count(AccelMetric.DMA_FAULTS);
    return AccelStatus.DMA_FAULT;
  }
  const host = hi * 0x1_0000_0000 + (ctx.reg(AccelReg.DMA_HOST_LO) >>> 0);
  const toDevice = dir === AccelDmaDir.TO_DEVICE;
  // INVARIANT: [dev, dev + len) is inside device memory (checked above).
  if (!moveRun(ctx, host, dev, len, toDevice)) {
    // A host range spanning two IOMMU extents resolves page by page (a fault stops the copy
    // there: the pages before it were moved, as a real engine would have).
    let done = 0;
    while (done < len) {
      const n = Math.min(len - done, PAGE_SIZE - ((host + done) % PAGE_SIZE));
      if (!moveRun(ctx, host + done, dev + done, n, toDevice)) {
        ctx.count(AccelMetric.DMA_FAULTS);
        return AccelStatus.DMA_FAULT;
      }
      done += n;
    }
  }
  ctx.count(toDevice ? AccelMetric.BYTES_TO_DEVICE : AccelMetric.BYTES_FROM_DEVICE, len);
  return AccelStatus.OK;
}

/** Copies one run if the host range resolves in one piece; false otherwise (nothing moved). */
function moveRun(ctx: AccelCtx, host: number, dev: number, len: number, toDevice: boolean): boolean {
  const ref = ctx.ref;
  if (!ctx.dma.resolve(host, len, !toDevice, ref)) return false;
  if (toDevice) {
    ctx.mem.set(ref.bytes.subarray(ref.offset, ref.offset + len), dev);
  } else {
    ref.bytes.set(ctx.mem.subarray(dev, dev + len), ref.offset);
    // ORDERING: the data is in place before this notify; an owner sleeping on its buffer's last
    // word (DESIGN §4) wakes and sees it.
    Atomics.notify(ref.words, (ref.offset + len - 1) >> 2);
  }
  return true;
}

/** Kernel arguments, read once into this array so a racing register write cannot change them. */
const args = new Uint32Array(8);

/** Launches KERNEL_ID with the argument registers; returns its status (RESULTn set on OK). */
export function runKernel(ctx: AccelCtx): number {
  const id = ctx.reg(AccelReg.KERNEL_ID);
  for (let i = 0; i < args.length; i++) args[i] = ctx.reg(kernelArgReg(i)) >>> 0;
  switch (id) {
    case AccelKernel.CHECKSUM:
      return checksum(ctx, args[0], args[1]);
    case AccelKernel.VECTOR_ADD:
      return vectorAdd(ctx, args[0], args[1], args[2], args[3]);
    case AccelKernel.MATMUL_F32:
      return matmul(ctx, args[0], args[1], args[2], args[3]);
    default:
      return AccelStatus.UNKNOWN_KERNEL;
  }
}

function setResults(ctx: AccelCtx, r0: number, r1: number): void {
  ctx.setReg(AccelReg.RESULT0, r0);
  ctx.setReg(AccelReg.RESULT1, r1);
}

function checksum(ctx: AccelCtx, src: number, len: number): number {
  if (len > ctx.sizes.maxXfer) return AccelStatus.BAD_LENGTH;
  if (!devRangeOk(ctx, src, len)) return AccelStatus.BAD_RANGE;
  // INVARIANT: [src, src + len) is inside device memory.
  setResults(ctx, fnv1a32(ctx.mem, src, len), crc32(ctx.mem, src, len));
  ctx.count(AccelMetric.CHECKSUMS);
  return AccelStatus.OK;
}

/** Checks three f32 ranges of `bytes` each: alignment first, then bounds. */
function f32Ranges(ctx: AccelCtx, a: number, b: number, out: number, bytes: number): number {
  if ((a & 3) !== 0 || (b & 3) !== 0 || (out & 3) !== 0) return AccelStatus.BAD_ALIGNMENT;
  if (!devRangeOk(ctx, a, bytes) || !devRangeOk(ctx, b, bytes) || !devRangeOk(ctx, out, bytes)) {
    return AccelStatus.BAD_RANGE;
  }
  return AccelStatus.OK;
}

function vectorAdd(ctx: AccelCtx, a: number, b: number, out: number, n: number): number {
  // n ≤ MAX_XFER / 4 keeps n × 4 exact and below 2^32.
  if (n === 0 || n > ctx.sizes.maxXfer / 4) return AccelStatus.BAD_LENGTH;
  const st = f32Ranges(ctx, a, b, out, n * 4);
  if (st !== AccelStatus.OK) return st;
  // INVARIANT: three aligned ranges of n lanes inside device memory. Element i is read before
  // out[i] is written, so out may alias a or b.
  const f = ctx.memF32;
  const la = a >> 2;
  const lb = b >> 2;
  const lo = out >> 2;
  for (let i = 0; i < n; i++) f[lo + i] = f[la + i] + f[lb + i];
  setResults(ctx, n, 0);
  ctx.count(AccelMetric.VECTOR_ADDS);
  return AccelStatus.OK;
}

function matmul(ctx: AccelCtx, a: number, b: number, out: number, n: number): number {
  if (n === 0 || n > ctx.sizes.maxMatrix) return AccelStatus.BAD_ARG;
  const st = f32Ranges(ctx, a, b, out, n * n * 4);
  if (st !== AccelStatus.OK) return st;
  const f = ctx.memF32;
  const s = ctx.scratch;
  const la = a >> 2;
  const lb = b >> 2;
  // Row-major; each dot product is accumulated in double and rounded once when stored.
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let k = 0; k < n; k++) acc += f[la + i * n + k] * f[lb + k * n + j];
      s[i * n + j] = acc;
    }
  }
  f.set(s.subarray(0, n * n), out >> 2);
  setResults(ctx, n, 0);
  ctx.count(AccelMetric.MATMULS);
  return AccelStatus.OK;
}
