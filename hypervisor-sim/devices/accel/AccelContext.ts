/**
 * One thread's handle on an accelerator: views of its shared buffers (BAR 0 registers, control
 * memory, device memory), its DMA resolver (the IOMMU context as this thread sees it, possibly
 * wrapped with peer windows) and per-thread scratch (a DMA ref, the matrix product buffer), so a
 * doorbell allocates nothing.
 */

import { threadId } from 'node:worker_threads';
import { lockEntry, threadLockOwner, unlockEntry } from '../../grant/EntryLock.js';
import { type DmaRef, type DmaResolver, emptyDmaRef } from '../../iommu/DmaResolver.js';
import { ACCEL_METRICS_BYTE_OFFSET, AccelCtlWord, AccelMetric } from './AccelLayout.js';

/** An accelerator's configuration after defaults and checks (AccelDevice.create). */
export interface AccelSizes {
  /** Name in the host's device list (`accel0`). */
  readonly name: string;
  /** Device memory bytes (= BAR 1 size): a power of two, 64 KiB … 2 GiB. */
  readonly memBytes: number;
  /** Largest DMA transfer or kernel range, bytes (MAX_XFER). */
  readonly maxXfer: number;
  /** Largest matrix side of MATMUL_F32. */
  readonly maxMatrix: number;
}

/** Lock owner id of this thread (1 … 0xffff, as EntryLock requires). */
const LOCK_OWNER = threadLockOwner(threadId);

/** Per-thread accelerator context (see the file comment). */
export class AccelCtx {
  readonly sizes: AccelSizes;
  /** BAR 0 as Int32 words (index = byte offset >> 2). */
  readonly bar: Int32Array;
  /** Control memory as Int32 words (AccelLayout.ts). */
  readonly ctl: Int32Array;
  readonly metrics: Float64Array;
  /** Device memory: bytes and f32 lanes (f32 offsets are 4-aligned, so lane = offset >> 2). */
  readonly mem: Uint8Array;
  readonly memF32: Float32Array;
  readonly dma: DmaResolver;
  readonly ref: DmaRef = emptyDmaRef();
  /** MATMUL_F32 forms the product here first, so `out` may alias an input. */
  readonly scratch: Float32Array;

  constructor(
    sizes: AccelSizes,
    bar: SharedArrayBuffer,
    ctl: SharedArrayBuffer,
    mem: SharedArrayBuffer,
    dma: DmaResolver,
  ) {
    this.sizes = sizes;
    this.bar = new Int32Array(bar);
    this.ctl = new Int32Array(ctl);
    this.metrics = new Float64Array(ctl, ACCEL_METRICS_BYTE_OFFSET, AccelMetric.COUNT);
    this.mem = new Uint8Array(mem);
    this.memF32 = new Float32Array(mem);
    this.dma = dma;
    this.scratch = new Float32Array(sizes.maxMatrix * sizes.maxMatrix);
  }

  /** Adds `n` to a counter (call under the lock). */
  count(slot: AccelMetric, n = 1): void {
    this.metrics[slot] += n;
  }

  /** Takes the engine lock (not re-entrant). */
  lock(): void {
    lockEntry(this.ctl, AccelCtlWord.LOCK, LOCK_OWNER);
  }

  /** Releases the engine lock. */
  unlock(): void {
    unlockEntry(this.ctl, AccelCtlWord.LOCK);
  }

  /** Reads the 32-bit register at byte `offset`. */
  reg(offset: number): number {
    // ORDERING: seq-cst load; registers are written with Atomics.store.
    return Atomics.load(this.bar, offset >> 2);
  }

  /** Writes the 32-bit register at byte `offset`. */
  setReg(offset: number, value: number): void {
    // ORDERING: seq-cst store; a reader in another thread sees it after its own load.
    Atomics.store(this.bar, offset >> 2, value | 0);
  }
}
