/**
 * One thread's handle on an NVMe controller: views of its shared buffers (BAR registers,
 * device memory, counters), its DMA resolver (the IOMMU context as this thread sees it), the
 * media, and per-thread scratch (the private copy of the command being executed, DMA refs,
 * the PRP segment list) so the data path allocates nothing per command.
 */

import { threadId } from 'node:worker_threads';
import { SQE_WORDS } from '../../../protocol/nvme/NvmeCommand.js';
import { NVME_PAGE_SIZE } from '../../../protocol/nvme/NvmeRegs.js';
import { lockEntry, threadLockOwner, unlockEntry } from '../../grant/EntryLock.js';
import { type DmaRef, type DmaResolver, emptyDmaRef } from '../../iommu/DmaResolver.js';
import { NVME_METRICS_BYTE_OFFSET, NvmeDevWord, NvmeMetric } from './NvmeLayout.js';
import type { NvmeMediaInfo } from './NvmeMedia.js';

/** A controller's configuration after defaults and checks (NvmeDevice.create). */
export interface NvmeSizes {
  /** Name in the host's device list (`nvme0`). */
  readonly name: string;
  /** Media bytes exposed (a multiple of the LBA size). */
  readonly sizeBytes: number;
  /** I/O queue pairs (queue ids 1 … maxIoQueues). */
  readonly maxIoQueues: number;
  /** Largest queue, in entries (CAP.MQES + 1). */
  readonly maxQueueEntries: number;
  /** Maximum data transfer size as a power of two of pages (Identify MDTS). */
  readonly mdts: number;
  /** Doorbell stride exponent (CAP.DSTRD): doorbells are 4 << dstrd bytes apart. */
  readonly dstrd: number;
}

/** Lock owner id of this thread (1 … 0xffff, as EntryLock requires). */
const LOCK_OWNER = threadLockOwner(threadId);

/** Per-thread controller context (see the file comment). */
export class NvmeCtx {
  readonly sizes: NvmeSizes;
  /** BAR 0 as Int32 words (index = byte offset >> 2). */
  readonly bar: Int32Array;
  /** Device memory as Int32 words (NvmeLayout.ts). */
  readonly dev: Int32Array;
  /** Counters (NvmeMetric slots). */
  readonly metrics: Float64Array;
  readonly dma: DmaResolver;
  readonly media: NvmeMediaInfo;
  /** Namespace size in logical blocks. */
  readonly capacityBlocks: number;
  /** Largest transfer of one command, bytes. */
  readonly maxTransfer: number;
  /** Private copy of the command being executed (copied out of the SQ once, then validated). */
  readonly sqe = new Int32Array(SQE_WORDS);
  /** Command-specific result (CQE DW0) of the command being executed. */
  dw0 = 0;
  /** Scratch refs: queues, data runs, PRP list pages. */
  readonly qref: DmaRef = emptyDmaRef();
  readonly dref: DmaRef = emptyDmaRef();
  readonly lref: DmaRef = emptyDmaRef();
  /** PRP segments of the command being executed: device address and length of each. */
  readonly segAddr: Float64Array;
  readonly segLen: Int32Array;
  segCount = 0;

  constructor(
    sizes: NvmeSizes,
    bar: SharedArrayBuffer,
    dev: SharedArrayBuffer,
    dma: DmaResolver,
    media: NvmeMediaInfo,
    lbaShift: number,
  ) {
    this.sizes = sizes;
    this.bar = new Int32Array(bar);
    this.dev = new Int32Array(dev);
    this.metrics = new Float64Array(dev, NVME_METRICS_BYTE_OFFSET, NvmeMetric.COUNT);
    this.dma = dma;
    this.media = media;
    this.capacityBlocks = Math.floor(sizes.sizeBytes / 2 ** lbaShift);
    this.maxTransfer = NVME_PAGE_SIZE * 2 ** sizes.mdts;
    // A transfer of maxTransfer bytes starting mid-page touches one page more than it holds.
    const maxSegs = this.maxTransfer / NVME_PAGE_SIZE + 1;
    this.segAddr = new Float64Array(maxSegs);
    this.segLen = new Int32Array(maxSegs);
  }

  /** Adds `n` to a counter (call under the lock). */
  count(slot: NvmeMetric, n = 1): void {
    this.metrics[slot] += n;
  }

  /** Takes the controller lock (not re-entrant). */
  lock(): void {
    lockEntry(this.dev, NvmeDevWord.LOCK, LOCK_OWNER);
  }

  /** Releases the controller lock. */
  unlock(): void {
    unlockEntry(this.dev, NvmeDevWord.LOCK);
  }

  /** Reads the 32-bit register at byte `offset`. */
  reg(offset: number): number {
    // ORDERING: seq-cst load; register writers store with Atomics.store under the lock.
    return Atomics.load(this.bar, offset >> 2);
  }

  /** Writes the 32-bit register at byte `offset`. */
  setReg(offset: number, value: number): void {
    // ORDERING: seq-cst store; a reader in another thread sees it after its own load.
    Atomics.store(this.bar, offset >> 2, value | 0);
  }
}
