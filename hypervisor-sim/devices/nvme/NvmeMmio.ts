/**
 * BAR 0 of the NVMe controller as a driver sees it (protocol/nvme/NvmeRegs.ts): 32-bit reads and
 * writes on the `bar` SharedArrayBuffer, where some writes trap into the controller, like QEMU
 * emulating an MMIO exit. Everything a write triggers runs right here, in the writer's thread,
 * under the controller lock (the inline engine, DESIGN §4):
 *
 *  - CC: EN 0 → 1 enables (NvmeEngine.enableController), EN 1 → 0 resets; SHN 0 → non-zero
 *    fsyncs the media and reports CSTS.SHST = complete.
 *  - SQyTDBL: the new tail is checked (queue exists, value < its size) and the SQ runs now.
 *  - CQyHDBL: the new head is checked likewise; SQs stalled on that full CQ resume.
 *  - A doorbell write the controller cannot accept (no such queue, value ≥ size, controller not
 *    ready, an offset between doorbells) is dropped and counted (BAD_DOORBELLS), as NVMe's
 *    "Invalid Doorbell Write Value" event reports it; the controller keeps serving.
 *  - INTMS / INTMC set / clear bits of the interrupt mask (kept, not used: the driver polls).
 *  - CAP, VS, CSTS are read-only; AQA, ASQ, ACQ are plain registers read when EN goes to 1.
 * Doorbells read as 0. An offset outside the BAR or not 4-aligned is the caller's bug:
 * PV_ERR_OUT_OF_BOUNDS / PV_ERR_BAD_ALIGNMENT, as for the NIC.
 */

import { pvError } from '../../../protocol/errors.js';
import { CC_SHN_MASK, CcField, CstsBit, NvmeReg, nvmeBarSize } from '../../../protocol/nvme/NvmeRegs.js';
import type { MmioRegion } from '../../../protocol/Pci.js';
import { Stage, stages } from '../../../protocol/stage/StageLedger.js';
import type { NvmeCtx } from './NvmeContext.js';
import { enableController, resetController, runSq, runSqsOf } from './NvmeEngine.js';
import { CqCtx, NvmeDevWord, NvmeMetric, queueBase, SqCtx } from './NvmeLayout.js';
import { mediaFlush } from './NvmeMedia.js';

/** One mapping of BAR 0 (the engine always runs inline). */
export class NvmeMmio implements MmioRegion {
  readonly size: number;
  private readonly _ctx: NvmeCtx;
  private readonly _stride: number;

  constructor(ctx: NvmeCtx) {
    this._ctx = ctx;
    this.size = nvmeBarSize(ctx.sizes.maxIoQueues, ctx.sizes.dstrd);
    this._stride = 4 << ctx.sizes.dstrd;
  }

  private _check(offset: number): void {
    if (!Number.isInteger(offset) || offset < 0 || offset > this.size - 4) {
      throw pvError('PV_ERR_OUT_OF_BOUNDS', `BAR 0 offset ${offset} outside [0, ${this.size})`);
    }
    if ((offset & 3) !== 0) throw pvError('PV_ERR_BAD_ALIGNMENT', `BAR 0 offset ${offset} is not 4-aligned`);
  }

  read32(offset: number): number {
    this._check(offset);
    if (offset >= NvmeReg.DOORBELLS) return 0;
    if (offset === NvmeReg.INTMC) return this._ctx.reg(NvmeReg.INTMS);
    return this._ctx.reg(offset);
  }

  write32(offset: number, value: number): void {
    this._check(offset);
    const v = value | 0;
    if (offset >= NvmeReg.DOORBELLS) {
      this._doorbell(offset - NvmeReg.DOORBELLS, v);
      return;
    }
    const ctx = this._ctx;
    switch (offset) {
      case NvmeReg.CC:
        this._locked(() => this._cc(v));
        return;
      case NvmeReg.INTMS:
        this._locked(() => ctx.setReg(NvmeReg.INTMS, ctx.reg(NvmeReg.INTMS) | v));
        return;
      case NvmeReg.INTMC:
        this._locked(() => ctx.setReg(NvmeReg.INTMS, ctx.reg(NvmeReg.INTMS) & ~v));
        return;
      case NvmeReg.AQA:
      case NvmeReg.ASQ_LO:
      case NvmeReg.ASQ_HI:
      case NvmeReg.ACQ_LO:
      case NvmeReg.ACQ_HI:
        ctx.setReg(offset, v);
        return;
      default:
      // CAP, VS, CSTS, NSSR and reserved registers are read-only here: the write is dropped.
    }
  }

  /** Runs `fn` under the controller lock as DEVICE time of the writer's thread (stage ledger). */
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

  private _cc(cc: number): void {
    const ctx = this._ctx;
    const old = ctx.reg(NvmeReg.CC);
    ctx.setReg(NvmeReg.CC, cc);
    const wasOn = (old & CcField.EN) !== 0;
    const on = (cc & CcField.EN) !== 0;
    if (!wasOn && on) enableController(ctx, cc);
    else if (wasOn && !on) resetController(ctx);
    const shn = (cc >>> CcField.SHN_SHIFT) & CC_SHN_MASK;
    const oldShn = (old >>> CcField.SHN_SHIFT) & CC_SHN_MASK;
    if (shn !== 0 && oldShn === 0) {
      // Shutdown notification: make everything written durable, then report completion.
      ctx.count(NvmeMetric.FSYNCS);
      mediaFlush(ctx.media);
      ctx.setReg(NvmeReg.CSTS, (ctx.reg(NvmeReg.CSTS) & ~CstsBit.SHST_MASK) | CstsBit.SHST_COMPLETE);
    } else if (shn === 0 && oldShn !== 0) {
      ctx.setReg(NvmeReg.CSTS, ctx.reg(NvmeReg.CSTS) & ~CstsBit.SHST_MASK);
    }
  }

  private _doorbell(rel: number, value: number): void {
    const ctx = this._ctx;
    // ORDERING: a counter; only its own atomicity matters.
    Atomics.add(ctx.dev, NvmeDevWord.DOORBELLS, 1);
    const idx = rel / this._stride;
    const qid = idx >> 1;
    this._locked(() => {
      if (!Number.isInteger(idx) || qid > ctx.sizes.maxIoQueues || (ctx.reg(NvmeReg.CSTS) & CstsBit.RDY) === 0) {
        ctx.count(NvmeMetric.BAD_DOORBELLS);
        return;
      }
      const d = ctx.dev;
      const q = queueBase(qid);
      if ((idx & 1) === 0) {
        // INVARIANT: the value is a register write from the driver: only [0, SIZE) is accepted.
        if (d[q + SqCtx.VALID] === 0 || value < 0 || value >= d[q + SqCtx.SIZE]) {
          ctx.count(NvmeMetric.BAD_DOORBELLS);
          return;
        }
        d[q + SqCtx.TAIL] = value;
        runSq(ctx, qid);
        return;
      }
      if (d[q + CqCtx.VALID] === 0 || value < 0 || value >= d[q + CqCtx.SIZE]) {
        ctx.count(NvmeMetric.BAD_DOORBELLS);
        return;
      }
      d[q + CqCtx.HEAD] = value;
      runSqsOf(ctx, qid);
    });
  }
}
