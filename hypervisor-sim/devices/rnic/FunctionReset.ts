/**
 * Function-level reset (PCIe FLR): what the host does to a NIC when its owner domain is gone, so
 * the next owner never inherits the dead owner's PDs, MRs, CQs and QPs. Every table entry is
 * invalidated the way DESTROY_* would (QPs back to RESET with their epoch bumped, so an engine
 * still running one notices and stops), doorbells and pending bits are cleared. MR key bytes
 * and epochs are KEPT: they keep advancing across the reset, so an rkey handed out before it
 * can never name a region registered after it.
 */

import { CqCtx, MrCtx, PdCtx, QpCtx } from './DevLayout.js';
import { retireQp } from './QpCommands.js';
import type { RnicCtx } from './RnicContext.js';

/** Resets the function; returns how many live objects it dropped. */
export function functionReset(ctx: RnicCtx): number {
  const L = ctx.layout;
  const d = ctx.dev;
  let dropped = 0;
  ctx.fabric.lock();
  try {
    for (let qpn = 1; qpn < ctx.sizes.maxQp; qpn++) {
      if (d[L.qpBase(qpn) + QpCtx.VALID] !== 0) dropped++;
      retireQp(ctx, qpn);
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
