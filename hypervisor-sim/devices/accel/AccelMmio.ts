/**
 * The accelerator's BARs as a driver sees them (protocol/accel/AccelRegs.ts).
 *
 * BAR 0: 32-bit registers on the `bar` SharedArrayBuffer, where some writes trap into the device,
 * like QEMU emulating an MMIO exit. Everything a write triggers runs right here, in the writer's
 * thread, under the engine lock (the inline engine, DESIGN §4):
 *  - DMA_DOORBELL / KERNEL_DOORBELL: the engine runs now (AccelEngine.ts); then its STATUS is
 *    stored and its DONE counter bumped, in that order, so a driver that sees DONE move reads
 *    the final STATUS.
 *  - RESET: both statuses IDLE, results and parameters cleared (device memory kept).
 *  - Parameter registers (DMA_*, KERNEL_ID, KERNEL_ARGn) are plain; read-only registers and the
 *    rest of the page drop writes. Doorbells and RESET read as 0.
 * BAR 1: the device memory itself (reads and writes of little-endian 32-bit words).
 * An offset outside a BAR or not 4-aligned is the caller's bug: PV_ERR_OUT_OF_BOUNDS /
 * PV_ERR_BAD_ALIGNMENT, as for the NIC and the NVMe.
 */

import { ACCEL_BAR0_BYTES, AccelReg, AccelStatus, kernelArgReg } from '../../../protocol/accel/AccelRegs.js';
import { pvError } from '../../../protocol/errors.js';
import type { MmioRegion } from '../../../protocol/Pci.js';
import { Stage, stages } from '../../../protocol/stage/StageLedger.js';
import type { AccelCtx } from './AccelContext.js';
import { runDma, runKernel } from './AccelEngine.js';
import { AccelCtlWord, AccelMetric } from './AccelLayout.js';

function check(bar: number, offset: number, size: number): void {
  if (!Number.isInteger(offset) || offset < 0 || offset > size - 4) {
    throw pvError('PV_ERR_OUT_OF_BOUNDS', `BAR ${bar} offset ${offset} outside [0, ${size})`);
  }
  if ((offset & 3) !== 0) throw pvError('PV_ERR_BAD_ALIGNMENT', `BAR ${bar} offset ${offset} is not 4-aligned`);
}

/** Registers the driver may write as plain values. */
function isParam(offset: number): boolean {
  return (
    (offset >= AccelReg.DMA_HOST_LO && offset <= AccelReg.DMA_DIR) ||
    (offset >= AccelReg.KERNEL_ID && offset < AccelReg.KERNEL_DOORBELL)
  );
}

/** Parameters and results a reset clears. */
const CLEARED: readonly number[] = [
  AccelReg.DMA_HOST_LO,
  AccelReg.DMA_HOST_HI,
  AccelReg.DMA_DEV,
  AccelReg.DMA_LEN,
  AccelReg.DMA_DIR,
  AccelReg.DMA_STATUS,
  AccelReg.KERNEL_ID,
  ...Array.from({ length: 8 }, (_, i) => kernelArgReg(i)),
  AccelReg.KERNEL_STATUS,
  AccelReg.RESULT0,
  AccelReg.RESULT1,
];

/** Engines idle, parameters and results cleared (call under the lock). */
export function resetEngines(ctx: AccelCtx): void {
  for (const r of CLEARED) ctx.setReg(r, 0);
  ctx.count(AccelMetric.RESETS);
}

/** BAR 0 (see the file comment). */
export class AccelMmio implements MmioRegion {
  readonly size = ACCEL_BAR0_BYTES;
  private readonly _ctx: AccelCtx;

  constructor(ctx: AccelCtx) {
    this._ctx = ctx;
  }

  read32(offset: number): number {
    check(0, offset, this.size);
    if (offset === AccelReg.DMA_DOORBELL || offset === AccelReg.KERNEL_DOORBELL || offset === AccelReg.RESET) return 0;
    return this._ctx.reg(offset);
  }

  write32(offset: number, value: number): void {
    check(0, offset, this.size);
    if (isParam(offset)) {
      this._ctx.setReg(offset, value);
      return;
    }
    switch (offset) {
      case AccelReg.DMA_DOORBELL:
        this._run(AccelReg.DMA_STATUS, AccelReg.DMA_DONE, AccelMetric.DMA_TRANSFERS, runDma);
        return;
      case AccelReg.KERNEL_DOORBELL:
        this._run(AccelReg.KERNEL_STATUS, AccelReg.KERNEL_DONE, AccelMetric.KERNELS, runKernel);
        return;
      case AccelReg.RESET:
        this._locked(() => resetEngines(this._ctx));
        return;
      default:
      // ID, VERSION, sizes, statuses, counters, results and unused offsets: the write is dropped.
    }
  }

  private _run(statusReg: number, doneReg: number, metric: AccelMetric, engine: (ctx: AccelCtx) => number): void {
    const ctx = this._ctx;
    // ORDERING: a counter; only its own atomicity matters.
    Atomics.add(ctx.ctl, AccelCtlWord.DOORBELLS, 1);
    this._locked(() => {
      const st = engine(ctx);
      ctx.count(metric);
      if (st !== AccelStatus.OK) ctx.count(AccelMetric.ERRORS);
      ctx.setReg(statusReg, st);
      // ORDERING: seq-cst add after the STATUS store: a driver that loads DONE and sees it moved
      // then loads the final STATUS. The notify wakes a waiter sleeping on DONE.
      Atomics.add(ctx.bar, doneReg >> 2, 1);
      Atomics.notify(ctx.bar, doneReg >> 2);
    });
  }

  /** Runs `fn` under the engine lock as DEVICE time of the writer's thread (stage ledger). */
  private _locked(fn: () => void): void {
    const ctx = this._ctx;
    const prev = stages.enter(Stage.DEVICE);
    ctx.lock();
    try {
      fn();
    } finally {
      ctx.unlock();
      stages.enter(prev);
    }
  }
}

/** BAR 1: the device memory, as 32-bit words (little-endian, as the f32 kernels read it). */
export class AccelMemRegion implements MmioRegion {
  readonly size: number;
  private readonly _view: DataView;

  constructor(ctx: AccelCtx) {
    this.size = ctx.sizes.memBytes;
    this._view = new DataView(ctx.mem.buffer);
  }

  read32(offset: number): number {
    check(1, offset, this.size);
    return this._view.getInt32(offset, true);
  }

  write32(offset: number, value: number): void {
    check(1, offset, this.size);
    this._view.setInt32(offset, value | 0, true);
  }
}
