/**
 * Function-level reset (PCIe FLR): what the host does to a NIC when its owner domain is gone, so
 * the next owner never inherits the dead owner's PDs, MRs, CQs and QPs. Every table entry is
 * invalidated the way DESTROY_* would (QPs back to RESET with their epoch bumped, so an engine
 * still running one notices and stops), doorbells and pending bits are cleared. MR key bytes
 * and epochs are KEPT: they keep advancing across the reset, so an rkey handed out before it
 * can never name a region registered after it.
 */

import { rqDoorbell, sqDoorbell } from '../../../protocol/rdma/NicRegs.js';
import { QpState } from '../../../protocol/rdma/Verbs.js';
import { CqCtx, MrCtx, PdCtx, QpCtx } from './DevLayout.js';
import type { RnicCtx } from './RnicContext.js';

/** Resets the function; returns how many live objects it dropped. */
export function functionReset(ctx: RnicCtx): number {
  const L = ctx.layout;
  const d = ctx.dev;
  let dropped = 0;
  ctx.fabric.lock();
  try {
    for (let qpn = 1; qpn < ctx.sizes.maxQp; qpn++) {
      const q = L.qpBase(qpn);
      if (d[q + QpCtx.VALID] !== 0) dropped++;
      d[q + QpCtx.VALID] = 0;
      d[q + QpCtx.EPOCH] = (d[q + QpCtx.EPOCH] + 1) | 0;
      d[q + QpCtx.BUSY] = 0;
      // ORDERING: seq-cst stores; an RNR waiter sleeping on the RQ doorbell wakes on the change.
      Atomics.store(d, q + QpCtx.STATE, QpState.RESET);
      Atomics.store(ctx.bar, sqDoorbell(qpn) >> 2, 0);
      Atomics.store(ctx.bar, rqDoorbell(qpn) >> 2, 0);
      Atomics.notify(ctx.bar, rqDoorbell(qpn) >> 2);
    }
    for (let i = 0; i < L.pendingWords; i++) {
      // ORDERING: seq-cst store; pairs with doorbells' Atomics.or (a runner finds the QP invalid anyway).
      Atomics.store(d, L.pending + i, 0);
    }
    for (let cqn = 1; cqn < ctx.sizes.maxCq; cqn++) {
      const c = L.cqBase(cqn);
      if (d[c + CqCtx.VALID] !== 0) dropped++;
      d[c + CqCtx.VALID] = 0;
      d[c + CqCtx.EPOCH] = (d[c + CqCtx.EPOCH] + 1) | 0;
      d[c + CqCtx.USERS] = 0;
      d[c + CqCtx.OVERFLOW] = 0;
    }
    for (let i = 1; i < ctx.sizes.maxMr; i++) {
      const m = L.mrBase(i);
      if (d[m + MrCtx.VALID] !== 0) dropped++;
      d[m + MrCtx.VALID] = 0; // KEY stays: keys keep advancing across the reset
    }
    for (let pdn = 1; pdn < L.maxPd; pdn++) {
      const p = L.pdBase(pdn);
      if (d[p + PdCtx.VALID] !== 0) dropped++;
      d[p + PdCtx.VALID] = 0;
      d[p + PdCtx.USERS] = 0;
    }
  } finally {
    ctx.fabric.unlock();
  }
  return dropped;
}
