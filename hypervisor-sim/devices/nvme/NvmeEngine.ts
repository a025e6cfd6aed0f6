/**
 * The controller's engine: enabling and resetting the controller, fetching commands from a
 * submission queue and posting their completions. It runs inline, in the thread that writes a
 * doorbell or CC (NvmeMmio.ts), always under the controller lock.
 *
 * Fetch: the SQ is resolved through the IOMMU (read), the 64-byte entry at HEAD is copied into
 * the private `ctx.sqe` ONCE (XSA-155: the driver may rewrite the slot meanwhile) and only the
 * copy is validated and executed. HEAD advances before the completion is posted, so the CQE's
 * SQHD tells the driver which slots it may reuse.
 *
 * Completion (NVMe 1.4 §4.6): words 0–2 are written plainly, word 3 (CID, phase tag, status)
 * last with Atomics.store, then Atomics.notify on it, so a driver polling word 3 for the new
 * phase sees a complete entry, and one sleeping on it wakes. The phase flips each time TAIL
 * wraps. A CQ is full when TAIL + 1 = HEAD (mod size): the SQs that post to it then stop,
 * leaving their commands in place, and resume when the driver moves the CQ head doorbell.
 */

import { CQE_BYTES, CqeDw3, CqeWord, SQE_BYTES, SQE_WORDS, SqeWord } from '../../../protocol/nvme/NvmeCommand.js';
import {
  AqaField,
  CC_CSS_MASK,
  CC_MPS_MASK,
  CcField,
  CstsBit,
  NVME_PAGE_SIZE,
  NvmeReg,
} from '../../../protocol/nvme/NvmeRegs.js';
import { executeAdmin } from './NvmeAdmin.js';
import type { NvmeCtx } from './NvmeContext.js';
import { executeIo } from './NvmeIo.js';
import { CqCtx, joinAddr, NvmeDevWord, NvmeMetric, QUEUE_ENTRY_WORDS, queueBase, SqCtx } from './NvmeLayout.js';

/** Posts one completion on CQ `cqid`; false (a counted DMA fault, entry lost) if unreachable. */
function postCqe(ctx: NvmeCtx, cqid: number, sqid: number, sqHead: number, cid: number, status: number): boolean {
  const d = ctx.dev;
  const q = queueBase(cqid);
  const tail = d[q + CqCtx.TAIL];
  const phase = d[q + CqCtx.PHASE];
  // INVARIANT: BASE was checked page aligned and SIZE × 16 bytes reachable at creation; the
  // IOMMU may have changed since, so the slot is resolved again.
  const addr = joinAddr(d[q + CqCtx.BASE_LO], d[q + CqCtx.BASE_HI]) + tail * CQE_BYTES;
  const ref = ctx.qref;
  const ok = ctx.dma.resolve(addr, CQE_BYTES, true, ref) && (ref.offset & 3) === 0;
  const next = tail + 1 === d[q + CqCtx.SIZE] ? 0 : tail + 1;
  d[q + CqCtx.TAIL] = next;
  if (next === 0) d[q + CqCtx.PHASE] = phase ^ 1;
  ctx.count(NvmeMetric.COMMANDS);
  if (status !== 0) ctx.count(NvmeMetric.ERRORS);
  if (!ok) {
    ctx.count(NvmeMetric.DMA_FAULTS);
    return false;
  }
  const w = ref.words;
  const at = ref.offset >> 2;
  w[at + CqeWord.DW0] = ctx.dw0;
  w[at + CqeWord.DW1] = 0;
  w[at + CqeWord.DW2] = (sqHead & 0xffff) | (sqid << 16);
  const dw3 =
    (cid & CqeDw3.CID_MASK) | (phase << 16) | (status << CqeDw3.STATUS_SHIFT) | (status !== 0 ? CqeDw3.DNR : 0);
  // ORDERING: seq-cst store of the word holding the phase AFTER words 0–2; the driver's
  // Atomics.load of it that sees the new phase therefore sees the whole entry.
  Atomics.store(w, at + CqeWord.DW3, dw3);
  // ORDERING: after the store; wakes a driver sleeping on this entry (no-op if none waits).
  Atomics.notify(w, at + CqeWord.DW3);
  return true;
}

/** Runs SQ `qid` until it is empty, its CQ is full or a fetch faults; returns commands run. */
export function runSq(ctx: NvmeCtx, qid: number): number {
  const d = ctx.dev;
  const s = queueBase(qid);
  if (d[s + SqCtx.VALID] === 0) return 0;
  const cqid = d[s + SqCtx.CQID];
  const c = queueBase(cqid);
  const size = d[s + SqCtx.SIZE];
  const base = joinAddr(d[s + SqCtx.BASE_LO], d[s + SqCtx.BASE_HI]);
  const sqe = ctx.sqe;
  const ref = ctx.qref;
  let done = 0;
  // Bounded: at most SIZE − 1 entries lie between HEAD and TAIL, and TAIL only moves under
  // this lock; an admin command can delete this SQ, which VALID catches.
  while (d[s + SqCtx.VALID] !== 0 && d[s + SqCtx.HEAD] !== d[s + SqCtx.TAIL]) {
    const cqTail = d[c + CqCtx.TAIL];
    if ((cqTail + 1 === d[c + CqCtx.SIZE] ? 0 : cqTail + 1) === d[c + CqCtx.HEAD]) {
      ctx.count(NvmeMetric.CQ_FULL_STALLS);
      break;
    }
    const head = d[s + SqCtx.HEAD];
    if (!ctx.dma.resolve(base + head * SQE_BYTES, SQE_BYTES, false, ref) || (ref.offset & 3) !== 0) {
      // The queue became unreachable (IOMMU changed): its commands stay until the driver fixes it.
      ctx.count(NvmeMetric.DMA_FAULTS);
      break;
    }
    const from = ref.offset >> 2;
    for (let i = 0; i < SQE_WORDS; i++) sqe[i] = ref.words[from + i];
    const next = head + 1 === size ? 0 : head + 1;
    d[s + SqCtx.HEAD] = next;
    ctx.dw0 = 0;
    const status = qid === 0 ? executeAdmin(ctx) : executeIo(ctx);
    postCqe(ctx, cqid, qid, next, sqe[SqeWord.CDW0] >>> 16, status);
    done++;
  }
  return done;
}

/** After CQ `cqid`'s head moved: runs the SQs that post to it and still hold commands. */
export function runSqsOf(ctx: NvmeCtx, cqid: number): number {
  const d = ctx.dev;
  let done = 0;
  for (let qid = 0; qid <= ctx.sizes.maxIoQueues; qid++) {
    const s = queueBase(qid);
    if (d[s + SqCtx.VALID] !== 0 && d[s + SqCtx.CQID] === cqid && d[s + SqCtx.HEAD] !== d[s + SqCtx.TAIL]) {
      done += runSq(ctx, qid);
    }
  }
  return done;
}

/** Drops every queue and the Set Features allocation (controller reset, NVMe 1.4 §7.3.2). */
export function dropQueues(ctx: NvmeCtx): void {
  const first = queueBase(0);
  ctx.dev.fill(0, first, first + (ctx.sizes.maxIoQueues + 1) * QUEUE_ENTRY_WORDS);
  ctx.dev[NvmeDevWord.NSQA] = 0;
  ctx.dev[NvmeDevWord.NCQA] = 0;
}

/**
 * CC.EN 0 → 1: checks CC and the admin queue registers and programs queue pair 0; sets
 * CSTS.RDY, or CSTS.CFS when the configuration is refused (MPS ≠ 0, CSS ≠ NVM, admin sizes
 * outside 2 … MQES + 1, bases not page aligned or not reachable through the IOMMU).
 */
export function enableController(ctx: NvmeCtx, cc: number): void {
  const aqa = ctx.reg(NvmeReg.AQA);
  const sqSize = (aqa & AqaField.ASQS_MASK) + 1;
  const cqSize = ((aqa >>> AqaField.ACQS_SHIFT) & AqaField.ASQS_MASK) + 1;
  const asq = joinAddr(ctx.reg(NvmeReg.ASQ_LO), ctx.reg(NvmeReg.ASQ_HI));
  const acq = joinAddr(ctx.reg(NvmeReg.ACQ_LO), ctx.reg(NvmeReg.ACQ_HI));
  const max = ctx.sizes.maxQueueEntries;
  const ok =
    ((cc >>> CcField.MPS_SHIFT) & CC_MPS_MASK) === 0 &&
    ((cc >>> CcField.CSS_SHIFT) & CC_CSS_MASK) === 0 &&
    sqSize >= 2 &&
    sqSize <= max &&
    cqSize >= 2 &&
    cqSize <= max &&
    asq >= 0 &&
    acq >= 0 &&
    asq % NVME_PAGE_SIZE === 0 &&
    acq % NVME_PAGE_SIZE === 0 &&
    ctx.dma.resolve(asq, sqSize * SQE_BYTES, false, ctx.qref) &&
    ctx.dma.resolve(acq, cqSize * CQE_BYTES, true, ctx.qref);
  if (!ok) {
    ctx.setReg(NvmeReg.CSTS, CstsBit.CFS);
    return;
  }
  dropQueues(ctx);
  const d = ctx.dev;
  const q = queueBase(0);
  d[q + SqCtx.SIZE] = sqSize;
  d[q + SqCtx.BASE_LO] = ctx.reg(NvmeReg.ASQ_LO);
  d[q + SqCtx.BASE_HI] = ctx.reg(NvmeReg.ASQ_HI);
  d[q + SqCtx.CQID] = 0;
  d[q + SqCtx.VALID] = 1;
  d[q + CqCtx.SIZE] = cqSize;
  d[q + CqCtx.BASE_LO] = ctx.reg(NvmeReg.ACQ_LO);
  d[q + CqCtx.BASE_HI] = ctx.reg(NvmeReg.ACQ_HI);
  d[q + CqCtx.PHASE] = 1;
  d[q + CqCtx.SQ_USERS] = 1;
  d[q + CqCtx.VALID] = 1;
  // Until Set Features says otherwise, every I/O queue id may be used.
  d[NvmeDevWord.NSQA] = ctx.sizes.maxIoQueues;
  d[NvmeDevWord.NCQA] = ctx.sizes.maxIoQueues;
  ctx.setReg(NvmeReg.CSTS, CstsBit.RDY);
}

/** CC.EN 1 → 0 (or a function-level reset): every queue goes, CSTS.RDY clears. */
export function resetController(ctx: NvmeCtx): void {
  dropQueues(ctx);
  ctx.setReg(NvmeReg.CSTS, 0);
  ctx.count(NvmeMetric.RESETS);
}
