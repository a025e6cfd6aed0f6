/**
 * pvio's NVMe SSD (DESIGN §1 "device"): an NVMe 1.4 controller with an admin queue pair and up to
 * `maxIoQueues` I/O queue pairs living in the owner's memory, doorbells in BAR 0
 * (protocol/nvme/NvmeRegs.ts), READ / WRITE / FLUSH with PRPs and PRP lists, and one namespace
 * of 512-byte logical blocks whose media is a real file (NvmeMedia.ts).
 *
 * Like the RDMA NIC, the whole controller state lives in SharedArrayBuffers (`NvmeState`,
 * structured-cloneable): `bar` (registers) and `dev` (lock, queue contexts, counters;
 * NvmeLayout.ts), plus the media's descriptor. Any thread attaches an `NvmeDevice` to them with
 * its own DMA resolver (its view of the device's IOMMU context) and runs the controller inline
 * when it writes a doorbell — there is no dedicated NVMe thread.
 *
 * Files: NvmeLayout (device memory), NvmeContext (per-thread handle), NvmeMmio (BAR 0),
 * NvmeEngine (enable/reset, fetch, completion), NvmeAdmin (admin commands), NvmeIo (READ /
 * WRITE / FLUSH), Prp (PRP walking), NvmeMedia (the file).
 */

import { pvError } from '../../../protocol/errors.js';
import { LBA_BYTES, LBA_SHIFT } from '../../../protocol/nvme/NvmeCommand.js';
import { CapHi, CapLo, CcField, NVME_VERSION, NvmeReg, nvmeBarSize } from '../../../protocol/nvme/NvmeRegs.js';
import type { MmioRegion } from '../../../protocol/Pci.js';
import type { DmaResolver } from '../../iommu/DmaResolver.js';
import { NvmeCtx, type NvmeSizes } from './NvmeContext.js';
import { resetController } from './NvmeEngine.js';
import { NVME_METRIC_NAMES, NvmeDevWord, nvmeDevBytes, queueBase, SqCtx } from './NvmeLayout.js';
import { closeMedia, type NvmeMediaInfo, openMedia } from './NvmeMedia.js';
import { NvmeMmio } from './NvmeMmio.js';

/** What a controller is built from. */
export interface NvmeConfig {
  /** Name in the host's device list (`nvme0`). */
  readonly name: string;
  /** Media size in bytes: a positive multiple of 512 (the LBA size). */
  readonly sizeBytes: number;
  /** Backing file; default a sparse file in a fresh temporary directory. */
  readonly backingFile?: string;
  /** I/O queue pairs, 1 … 1024 (default 16). */
  readonly maxIoQueues?: number;
  /** Largest queue in entries, 2 … 65536 (default 4096). */
  readonly maxQueueEntries?: number;
  /** Max transfer = 2^mdts pages, 1 … 13 (default 10: 4 MiB). */
  readonly mdts?: number;
  /** Doorbell stride exponent, 0 … 4 (default 0: 4-byte stride). */
  readonly dstrd?: number;
}

/** A controller's shared state: post it to any thread and attach with `new NvmeDevice`. */
export interface NvmeState {
  readonly sizes: NvmeSizes;
  readonly bar: SharedArrayBuffer;
  readonly dev: SharedArrayBuffer;
  readonly media: NvmeMediaInfo;
}

/** Largest media pvio accepts: 2^50 bytes keeps every byte offset an exact number. */
const MAX_MEDIA_BYTES = 2 ** 50;
/** CAP.TO: worst-case 500 ms units to become ready (RDY is immediate here; 1 = 500 ms). */
const CAP_TIMEOUT = 1;

function limit(name: string, key: string, v: number | undefined, def: number, min: number, max: number): number {
  const x = v ?? def;
  if (!Number.isInteger(x) || x < min || x > max) {
    throw pvError('PV_ERR_CONFIG', `${name}: ${key} must be an integer in [${min}, ${max}], got ${x}`);
  }
  return x;
}

/** One NVMe controller attached in one thread (see the file comment). */
export class NvmeDevice {
  readonly name: string;
  readonly state: NvmeState;
  private readonly _ctx: NvmeCtx;
  private _mmio: NvmeMmio | undefined;

  /**
   * Allocates a controller's state and opens its media (PV_ERR_CONFIG on a bad name, size or
   * limit, or a file that cannot be opened). Pair with `NvmeDevice.destroy`.
   */
  static create(cfg: NvmeConfig): NvmeState {
    if (typeof cfg.name !== 'string' || cfg.name.length === 0) throw pvError('PV_ERR_CONFIG', 'NVMe name is required');
    const n = cfg.name;
    if (!Number.isSafeInteger(cfg.sizeBytes) || cfg.sizeBytes <= 0 || cfg.sizeBytes % LBA_BYTES !== 0) {
      throw pvError(
        'PV_ERR_CONFIG',
        `${n}: sizeBytes must be a positive multiple of ${LBA_BYTES}, got ${cfg.sizeBytes}`,
      );
    }
    if (cfg.sizeBytes > MAX_MEDIA_BYTES) throw pvError('PV_ERR_CONFIG', `${n}: sizeBytes above 2^50`);
    const sizes: NvmeSizes = {
      name: n,
      sizeBytes: cfg.sizeBytes,
      maxIoQueues: limit(n, 'maxIoQueues', cfg.maxIoQueues, 16, 1, 1024),
      maxQueueEntries: limit(n, 'maxQueueEntries', cfg.maxQueueEntries, 4096, 2, 65536),
      mdts: limit(n, 'mdts', cfg.mdts, 10, 1, 13),
      dstrd: limit(n, 'dstrd', cfg.dstrd, 0, 0, 4),
    };
    const bar = new SharedArrayBuffer(nvmeBarSize(sizes.maxIoQueues, sizes.dstrd));
    const dev = new SharedArrayBuffer(nvmeDevBytes(sizes.maxIoQueues));
    const regs = new Int32Array(bar);
    regs[NvmeReg.CAP_LO >> 2] =
      ((sizes.maxQueueEntries - 1) & CapLo.MQES_MASK) | CapLo.CQR | (CAP_TIMEOUT << CapLo.TO_SHIFT);
    // MPSMIN = MPSMAX = 0: 4 KiB pages only.
    regs[NvmeReg.CAP_HI >> 2] = sizes.dstrd | CapHi.CSS_NVM;
    const media = openMedia(n, sizes.sizeBytes, cfg.backingFile);
    // ORDERING: seq-cst store last; an attach that sees VS sees the other registers.
    Atomics.store(regs, NvmeReg.VS >> 2, NVME_VERSION);
    return { sizes, bar, dev, media };
  }

  /** Closes the media (and removes a temporary file). Call once every user has stopped. */
  static destroy(state: NvmeState): void {
    closeMedia(state.media);
  }

  /** Attaches in this thread with `dma` (this thread's view of the device's IOMMU context). */
  constructor(state: NvmeState, dma: DmaResolver) {
    const s = state.sizes;
    if (
      state.bar.byteLength !== nvmeBarSize(s.maxIoQueues, s.dstrd) ||
      state.dev.byteLength !== nvmeDevBytes(s.maxIoQueues)
    ) {
      throw pvError('PV_ERR_CONFIG', `${s.name}: state buffers do not match its configuration`);
    }
    // ORDERING: seq-cst load pairs with create()'s store of VS.
    if (Atomics.load(new Int32Array(state.bar), NvmeReg.VS >> 2) !== NVME_VERSION) {
      throw pvError('PV_ERR_CONFIG', `${s.name}: BAR does not hold an initialised NVMe controller`);
    }
    this.name = s.name;
    this.state = state;
    this._ctx = new NvmeCtx(s, state.bar, state.dev, dma, state.media, LBA_SHIFT);
  }

  /** Namespace size in logical blocks. */
  get capacityBlocks(): number {
    return this._ctx.capacityBlocks;
  }

  /** Path of the backing file. */
  get backingFile(): string {
    return this.state.media.path;
  }

  /** BAR 0; doorbells run the controller in the writer's thread. */
  mmio(): MmioRegion {
    this._mmio ??= new NvmeMmio(this._ctx);
    return this._mmio;
  }

  /**
   * PCIe function-level reset (the host, when the owner is gone): every queue dropped, CC,
   * CSTS, AQA, ASQ, ACQ and the interrupt mask cleared, so the next owner starts from a
   * disabled controller and never sees the dead owner's queues. The media is kept.
   */
  functionReset(): void {
    const ctx = this._ctx;
    ctx.lock();
    try {
      resetController(ctx);
      for (const r of [
        NvmeReg.CC,
        NvmeReg.INTMS,
        NvmeReg.AQA,
        NvmeReg.ASQ_LO,
        NvmeReg.ASQ_HI,
        NvmeReg.ACQ_LO,
        NvmeReg.ACQ_HI,
      ]) {
        ctx.setReg(r, 0);
      }
    } finally {
      ctx.unlock();
    }
  }

  /** True while CC.EN is set (diagnostics). */
  enabled(): boolean {
    return (this._ctx.reg(NvmeReg.CC) & CcField.EN) !== 0;
  }

  /**
   * A snapshot of the counters, read without the lock so it never stalls the data path, e.g.
   * `{"commands":12,"adminCommands":5,"reads":3,"writes":3,"flushes":1,"bytesRead":12288,
   * "bytesWritten":12288,"errors":0,"dmaFaults":0,"badDoorbells":0,"fsyncs":1,"resets":0,
   * "cqFullStalls":0,"doorbells":14}`.
   */
  /**
   * Commands submitted to the I/O queues and not yet fetched by the controller (tail doorbell
   * minus head, per queue): what a monitor shows as the queue depth. A plain snapshot.
   */
  queueDepth(): number {
    const d = this._ctx.dev;
    let n = 0;
    for (let qid = 1; qid <= this._ctx.sizes.maxIoQueues; qid++) {
      const q = queueBase(qid);
      // ORDERING: seq-cst loads; the figure is a snapshot, not a decision.
      if (Atomics.load(d, q + SqCtx.VALID) !== 1) continue;
      const size = Atomics.load(d, q + SqCtx.SIZE);
      if (size <= 0) continue;
      n += (((Atomics.load(d, q + SqCtx.TAIL) - Atomics.load(d, q + SqCtx.HEAD)) % size) + size) % size;
    }
    return n;
  }

  metrics(): Record<string, number> {
    const out: Record<string, number> = {};
    NVME_METRIC_NAMES.forEach((name, i) => {
      out[name] = this._ctx.metrics[i];
    });
    // ORDERING: seq-cst load of an atomic counter.
    out.doorbells = Atomics.load(this._ctx.dev, NvmeDevWord.DOORBELLS) >>> 0;
    return out;
  }
}
