/**
 * Who runs a QP, and when. A doorbell marks its QP pending (one bit per QP in `dev`); whoever
 * runs the device — the doorbell writer itself (inline) or the dedicated device thread (`poll`)
 * — takes the fabric lock, claims the QP (BUSY), clears the pending bit and drains the send
 * queue in order. BUSY keeps one thread per QP even while that thread has released the lock to
 * wait for the wire or an RNR retry; a doorbell that finds the QP busy only leaves its pending
 * bit, which the busy thread checks (under the lock) before it lets go.
 *
 * ```
 * doorbell:  store prod ─► set pending ─► inline: lock, runQp │ dedicated: bump DB_SEQ, wake engine
 * runQp:     BUSY=1 ─► [clear pending ─► drain SQ (RTS) / flush (ERR)] while pending ─► BUSY=0
 * ```
 */

import { sqDoorbell } from '../../../protocol/rdma/NicRegs.js';
import { QpState } from '../../../protocol/rdma/Verbs.js';
import { flushQp, moveToErr } from './Completion.js';
import { DevWord, EngineSleep, MetricSlot, QpCtx } from './DevLayout.js';
import type { RnicCtx } from './RnicContext.js';
import { FabricWord } from './RnicFabric.js';
import { executeWqe } from './SendPath.js';

/** Marks QP `qpn` as having doorbell work. */
export function setPending(ctx: RnicCtx, qpn: number): void {
  // ORDERING: seq-cst RMW after the doorbell register store; the runner clears the bit BEFORE it
  // reads the producer index, so a doorbell is either seen by this run or leaves the bit set.
  Atomics.or(ctx.dev, ctx.layout.pending + (qpn >> 5), 1 << (qpn & 31));
}

function clearPending(ctx: RnicCtx, qpn: number): void {
  // ORDERING: seq-cst RMW before the producer index is read (see setPending).
  Atomics.and(ctx.dev, ctx.layout.pending + (qpn >> 5), ~(1 << (qpn & 31)));
}

function isPending(ctx: RnicCtx, qpn: number): boolean {
  // ORDERING: seq-cst load; pairs with setPending's RMW.
  return (Atomics.load(ctx.dev, ctx.layout.pending + (qpn >> 5)) & (1 << (qpn & 31))) !== 0;
}

/** Wakes the dedicated engine of this NIC (dedicated-mode doorbells and commands). */
export function wakeEngine(ctx: RnicCtx): void {
  const d = ctx.dev;
  // ORDERING: seq-cst add, then load DB_SLEEP: the engine stores DB_SLEEP, then loads DB_SEQ
  // before sleeping (Dekker pair), so it either sees the new sequence or is notified here.
  Atomics.add(d, DevWord.DB_SEQ, 1);
  const sleep = Atomics.load(d, DevWord.DB_SLEEP);
  if (sleep === EngineSleep.ON_DEVICE) {
    // ORDERING: notify after the add; the sleeper's Atomics.wait compares DB_SEQ atomically.
    Atomics.notify(d, DevWord.DB_SEQ);
  } else if (sleep === EngineSleep.ON_FABRIC) {
    const f = ctx.fabric.words;
    // ORDERING: bump before notify so a waiter whose snapshot predates it returns at once.
    Atomics.add(f, FabricWord.WAKE_SEQ, 1);
    Atomics.notify(f, FabricWord.WAKE_SEQ);
  }
}

function alive(d: Int32Array, q: number, epoch: number): boolean {
  return d[q + QpCtx.VALID] !== 0 && d[q + QpCtx.EPOCH] === epoch;
}

/** Drains up to `budget` WRs (or flushes an ERR QP); returns the work done. */
function drainSq(ctx: RnicCtx, qpn: number, q: number, epoch: number, budget: number): number {
  const d = ctx.dev;
  const sqIndex = sqDoorbell(qpn) >> 2;
  let work = 0;
  while (work < budget && alive(d, q, epoch)) {
    // ORDERING: seq-cst load under the lock; STATE stores happen under it too.
    const state = Atomics.load(d, q + QpCtx.STATE);
    if (state === QpState.ERR) return work + flushQp(ctx, qpn);
    // Only RTS executes send WRs; RESET/INIT/RTR keep them queued, SQD stops taking new ones.
    if (state !== QpState.RTS) return work;
    // ORDERING: seq-cst load of the producer index the driver stored in the doorbell register.
    const prod = Atomics.load(ctx.bar, sqIndex) >>> 0;
    const avail = (prod - (d[q + QpCtx.SQ_CONS] >>> 0)) >>> 0;
    if (avail === 0) return work;
    if (avail > d[q + QpCtx.SQ_ENTRIES]) {
      // XSA-39: more WRs than the queue holds: the driver is broken or hostile; the QP goes to
      // ERR (the loop then flushes what it can).
      moveToErr(ctx, qpn);
      continue;
    }
    // An abandoned WR (its QP changed while the lock was out) is re-examined by the loop.
    if (executeWqe(ctx, qpn, q, epoch)) work++;
  }
  return work;
}

/**
 * Runs QP `qpn` with the fabric lock held: drains its send queue (or flushes it in ERR) for up
 * to `budget` WRs, as long as doorbells keep marking it pending. Returns the work done (WRs
 * executed + WRs flushed). Never throws: an internal error counts a fault and puts the QP in ERR.
 */
export function runQp(ctx: RnicCtx, qpn: number, budget: number): number {
  const d = ctx.dev;
  if (!(qpn >= 1 && qpn < ctx.sizes.maxQp)) return 0;
  const q = ctx.layout.qpBase(qpn);
  if (d[q + QpCtx.VALID] === 0) {
    clearPending(ctx, qpn);
    return 0;
  }
  // Another thread owns the QP; it re-checks the pending bit before letting go.
  if (d[q + QpCtx.BUSY] !== 0) return 0;
  d[q + QpCtx.BUSY] = 1;
  const epoch = d[q + QpCtx.EPOCH];
  let work = 0;
  try {
    for (;;) {
      clearPending(ctx, qpn);
      work += drainSq(ctx, qpn, q, epoch, budget - work);
      if (!alive(d, q, epoch)) break;
      if (work >= budget) {
        // Fairness: leave the rest for the next round, still marked.
        setPending(ctx, qpn);
        break;
      }
      if (!isPending(ctx, qpn)) break;
    }
  } catch {
    // Defence in depth: nothing a driver writes should get here, and the engine must not die.
    ctx.count(MetricSlot.FAULTS);
    try {
      if (alive(d, q, epoch)) {
        // Let go first so moveToErr flushes right away (no owner is left to do it).
        d[q + QpCtx.BUSY] = 0;
        moveToErr(ctx, qpn);
      }
    } catch {
      // already counted
    }
  } finally {
    if (alive(d, q, epoch)) d[q + QpCtx.BUSY] = 0;
  }
  return work;
}
