/**
 * pvio's accelerator (DESIGN §1 "device"): a GPU-like PCIe function with its own memory (a
 * SharedArrayBuffer, default 64 MiB), a DMA engine between host memory and device memory, and
 * kernels that compute on device memory (checksum, f32 vector add, small f32 matrix multiply).
 * BAR 0 holds the registers (protocol/accel/AccelRegs.ts), BAR 1 is the device memory, which a
 * peer device may DMA into (PeerWindows.ts).
 *
 * Like the NVMe controller, the whole state lives in SharedArrayBuffers (`AccelState`,
 * structured-cloneable): `bar` (registers), `ctl` (lock, counters; AccelLayout.ts) and `mem`.
 * Any thread attaches an `AccelDevice` with its own DMA resolver and runs the engines inline when
 * it rings a doorbell — there is no accelerator thread.
 *
 * Files: AccelLayout (control memory), AccelContext (per-thread handle), AccelMmio (BAR 0 and
 * BAR 1), AccelEngine (DMA engine and kernels), PeerWindows (P2P targets), AccelAttach (domain
 * side), P2pPaths (fabric routes of the P2P and bounce paths).
 */

import {
  ACCEL_BAR0_BYTES,
  ACCEL_ID,
  ACCEL_MAX_MEM_BYTES,
  ACCEL_VERSION,
  AccelReg,
} from '../../../protocol/accel/AccelRegs.js';
import { pvError } from '../../../protocol/errors.js';
import type { MmioRegion } from '../../../protocol/Pci.js';
import type { DmaResolver } from '../../iommu/DmaResolver.js';
import { AccelCtx, type AccelSizes } from './AccelContext.js';
import { ACCEL_CTL_BYTES, ACCEL_METRIC_NAMES, AccelCtlWord } from './AccelLayout.js';
import { AccelMemRegion, AccelMmio, resetEngines } from './AccelMmio.js';

/** What an accelerator is built from. */
export interface AccelConfig {
  /** Name in the host's device list (`accel0`). */
  readonly name: string;
  /** Device memory bytes: a power of two, 64 KiB … 2 GiB (default 64 MiB). */
  readonly memBytes?: number;
  /** Largest DMA transfer or kernel range: 4 KiB … memBytes (default min(16 MiB, memBytes)). */
  readonly maxXfer?: number;
}

/** An accelerator's shared state: post it to any thread and attach with `new AccelDevice`. */
export interface AccelState {
  readonly sizes: AccelSizes;
  readonly bar: SharedArrayBuffer;
  readonly ctl: SharedArrayBuffer;
  /** Device memory (BAR 1). */
  readonly mem: SharedArrayBuffer;
}

/** Default device memory: 64 MiB. */
export const ACCEL_DEFAULT_MEM_BYTES = 64 << 20;
/** Largest matrix side of MATMUL_F32. */
export const ACCEL_MAX_MATRIX = 64;

/** One accelerator attached in one thread (see the file comment). */
export class AccelDevice {
  readonly name: string;
  readonly state: AccelState;
  readonly ctx: AccelCtx;
  private _bar0: AccelMmio | undefined;
  private _bar1: AccelMemRegion | undefined;

  /** Allocates an accelerator's state (PV_ERR_CONFIG on a bad name or size). */
  static create(cfg: AccelConfig): AccelState {
    if (typeof cfg.name !== 'string' || cfg.name.length === 0) throw pvError('PV_ERR_CONFIG', 'accel name is required');
    const n = cfg.name;
    const memBytes = cfg.memBytes ?? ACCEL_DEFAULT_MEM_BYTES;
    if (
      !Number.isSafeInteger(memBytes) ||
      memBytes < 65536 ||
      memBytes > ACCEL_MAX_MEM_BYTES ||
      (memBytes & (memBytes - 1)) !== 0
    ) {
      throw pvError('PV_ERR_CONFIG', `${n}: memBytes must be a power of two in [64 KiB, 2 GiB], got ${memBytes}`);
    }
    const maxXfer = cfg.maxXfer ?? Math.min(16 << 20, memBytes);
    if (!Number.isSafeInteger(maxXfer) || maxXfer < 4096 || maxXfer > memBytes) {
      throw pvError('PV_ERR_CONFIG', `${n}: maxXfer must be an integer in [4096, ${memBytes}], got ${maxXfer}`);
    }
    const sizes: AccelSizes = { name: n, memBytes, maxXfer, maxMatrix: ACCEL_MAX_MATRIX };
    const bar = new SharedArrayBuffer(ACCEL_BAR0_BYTES);
    const ctl = new SharedArrayBuffer(ACCEL_CTL_BYTES);
    const mem = new SharedArrayBuffer(memBytes);
    const regs = new Int32Array(bar);
    // MEM_BYTES may be 2^31: stored as its unsigned 32-bit pattern.
    regs[AccelReg.MEM_BYTES >> 2] = memBytes | 0;
    regs[AccelReg.MAX_XFER >> 2] = maxXfer;
    regs[AccelReg.MAX_MATRIX >> 2] = ACCEL_MAX_MATRIX;
    regs[AccelReg.VERSION >> 2] = ACCEL_VERSION;
    // ORDERING: seq-cst store last; an attach that sees ID sees the other registers.
    Atomics.store(regs, AccelReg.ID >> 2, ACCEL_ID);
    return { sizes, bar, ctl, mem };
  }

  /** Attaches in this thread with `dma` (this thread's view of the device's IOMMU context). */
  constructor(state: AccelState, dma: DmaResolver) {
    const s = state.sizes;
    if (
      state.bar.byteLength !== ACCEL_BAR0_BYTES ||
      state.ctl.byteLength !== ACCEL_CTL_BYTES ||
      state.mem.byteLength !== s.memBytes
    ) {
      throw pvError('PV_ERR_CONFIG', `${s.name}: state buffers do not match its configuration`);
    }
    // ORDERING: seq-cst load pairs with create()'s store of ID.
    if (Atomics.load(new Int32Array(state.bar), AccelReg.ID >> 2) !== ACCEL_ID) {
      throw pvError('PV_ERR_CONFIG', `${s.name}: BAR 0 does not hold an initialised accelerator`);
    }
    this.name = s.name;
    this.state = state;
    this.ctx = new AccelCtx(s, state.bar, state.ctl, state.mem, dma);
  }

  /** BAR 0 (registers); doorbells run the engines in the writer's thread. */
  mmio(): MmioRegion {
    this._bar0 ??= new AccelMmio(this.ctx);
    return this._bar0;
  }

  /** BAR 1 (device memory). */
  memory(): MmioRegion {
    this._bar1 ??= new AccelMemRegion(this.ctx);
    return this._bar1;
  }

  /**
   * PCIe function-level reset (the host, when the owner is gone): engines idle, parameters and
   * results cleared, and the device memory scrubbed, so the next owner never sees the dead
   * owner's data (as a GPU clears its framebuffer between tenants).
   */
  functionReset(): void {
    const ctx = this.ctx;
    ctx.lock();
    try {
      resetEngines(ctx);
      ctx.mem.fill(0);
    } finally {
      ctx.unlock();
    }
  }

  /**
   * A snapshot of the counters, read without the lock, e.g. `{"dmaTransfers":2,
   * "bytesToDevice":4096,"bytesFromDevice":4096,"dmaFaults":0,"kernels":1,"checksums":1,
   * "vectorAdds":0,"matmuls":0,"errors":0,"resets":1,"doorbells":3}`.
   */
  metrics(): Record<string, number> {
    const out: Record<string, number> = {};
    ACCEL_METRIC_NAMES.forEach((name, i) => {
      out[name] = this.ctx.metrics[i];
    });
    // ORDERING: seq-cst load of an atomic counter.
    out.doorbells = Atomics.load(this.ctx.ctl, AccelCtlWord.DOORBELLS) >>> 0;
    return out;
  }
}
