/**
 * BAR 0 as a driver sees it (NicRegs.ts): 32-bit register reads and writes on the `bar`
 * SharedArrayBuffer, where some writes trap into the device model, like QEMU emulating an MMIO
 * exit.
 *
 *  - CMD_DOORBELL (write 1): the command runs now, in the writer's thread, under the fabric lock.
 *  - SQ_DB(qpn): the producer index is stored; `inline` then runs that QP's send queue right
 *    here, `dedicated` marks it pending and wakes the device thread (`runRnicEngine`).
 *  - RQ_DB(qpn): the producer index is stored and senders in an RNR wait on this QP are woken;
 *    if the QP is in ERR the new receives are flushed (inline here, or by the device thread).
 *  - read-only registers ignore writes; doorbells read as 0.
 * Reads return the register's Int32 value (CMD_STATUS is negative on failure; use `>>> 0` for
 * unsigned fields). An offset outside the BAR or not 4-aligned is the caller's bug, like a
 * stray pointer into a mapped BAR: PV_ERR_OUT_OF_BOUNDS / PV_ERR_BAD_ALIGNMENT.
 */

import { pvError } from '../../../protocol/errors.js';
import type { MmioRegion } from '../../../protocol/Pci.js';
import { NIC_CMD_WORDS, NicReg, nicBarSize } from '../../../protocol/rdma/NicRegs.js';
import { QpState } from '../../../protocol/rdma/Verbs.js';
import { Stage, stages } from '../../../protocol/stage/StageLedger.js';
import { executeCommand } from './Commands.js';
import { DevWord, QpCtx } from './DevLayout.js';
import { runQp, setPending, wakeEngine } from './QpRunner.js';
import type { RnicCtx } from './RnicContext.js';

/** Last byte offset of the argument block. */
const CMD_IN_END = NicReg.CMD_IN + NIC_CMD_WORDS * 4;

/** One mapping of BAR 0, in inline or dedicated engine mode. */
export class RnicMmio implements MmioRegion {
  readonly size: number;
  private readonly _ctx: RnicCtx;
  private readonly _dedicated: boolean;

  constructor(ctx: RnicCtx, dedicated: boolean) {
    this._ctx = ctx;
    this._dedicated = dedicated;
    this.size = nicBarSize(ctx.sizes.maxQp);
  }

  private _check(offset: number): void {
    if (!Number.isInteger(offset) || offset < 0 || offset > this.size - 4) {
      throw pvError('PV_ERR_OUT_OF_BOUNDS', `BAR 0 offset ${offset} outside [0, ${this.size})`);
    }
    if ((offset & 3) !== 0) throw pvError('PV_ERR_BAD_ALIGNMENT', `BAR 0 offset ${offset} is not 4-aligned`);
  }

  read32(offset: number): number {
    this._check(offset);
    if (offset >= NicReg.DOORBELLS) return 0;
    // ORDERING: seq-cst load; CMD_STATUS and the results were stored before the command returned.
    return Atomics.load(this._ctx.bar, offset >> 2);
  }

  write32(offset: number, value: number): void {
    this._check(offset);
    if (offset >= NicReg.DOORBELLS) {
      this._doorbell(offset, value | 0);
      return;
    }
    if (offset === NicReg.CMD_DOORBELL) {
      if (value === 1) this._command();
    } else if (offset === NicReg.CMD_OPCODE || (offset >= NicReg.CMD_IN && offset < CMD_IN_END)) {
      // ORDERING: seq-cst store; the command reads its copy under the lock taken later.
      Atomics.store(this._ctx.bar, offset >> 2, value | 0);
    }
    // Every other register is read-only: the write is dropped.
  }

  private _doorbell(offset: number, value: number): void {
    const ctx = this._ctx;
    const rel = offset - NicReg.DOORBELLS;
    const qpn = rel >> 3;
    // No such QP: a write to an unclaimed register is dropped.
    if (qpn === 0 || qpn >= ctx.sizes.maxQp) return;
    const d = ctx.dev;
    // ORDERING: a counter; no ordering needed beyond its own atomicity.
    Atomics.add(d, DevWord.DOORBELLS, 1);
    // ORDERING: seq-cst store of the producer index before the QP is marked (QpRunner.setPending).
    Atomics.store(ctx.bar, offset >> 2, value);
    const q = ctx.layout.qpBase(qpn);
    if ((rel & 4) !== 0) {
      // Receive queue. ORDERING: load RNR_WAITERS after the store (Dekker pair with awaitRecv).
      if (Atomics.load(d, q + QpCtx.RNR_WAITERS) > 0) Atomics.notify(ctx.bar, offset >> 2);
      // ORDERING: load STATE after the store (Dekker pair with moveToErr's store of ERR).
      if (Atomics.load(d, q + QpCtx.STATE) !== QpState.ERR) return;
    }
    this._schedule(qpn);
  }

  private _schedule(qpn: number): void {
    const ctx = this._ctx;
    setPending(ctx, qpn);
    if (this._dedicated) {
      wakeEngine(ctx);
      return;
    }
    // Stage ledger: the inline engine is DEVICE time of the doorbell writer's thread (a guest's
    // for native/passthrough, dom0's for paravirt); waiting for the lock is IDLE (EntryLock.ts).
    const prev = stages.enter(Stage.DEVICE);
    ctx.fabric.lock();
    try {
      runQp(ctx, qpn, Number.POSITIVE_INFINITY);
    } finally {
      ctx.fabric.unlock();
      stages.enter(prev);
    }
  }

  private _command(): void {
    const ctx = this._ctx;
    let kick: number;
    // Stage ledger: a command is device work, in whichever mode (it always runs in the writer).
    const prev = stages.enter(Stage.DEVICE);
    ctx.fabric.lock();
    try {
      kick = executeCommand(ctx);
    } finally {
      ctx.fabric.unlock();
      stages.enter(prev);
    }
    if (kick !== 0) this._schedule(kick);
  }
}
