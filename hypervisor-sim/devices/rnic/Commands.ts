/**
 * The command mailbox (NicRegs.ts): executed synchronously when the driver writes
 * CMD_DOORBELL, in the writer's thread, under the fabric lock. The arguments are copied out of
 * CMD_IN once into a private array and every one is validated on that copy before anything is
 * modified, so a failed command changes nothing. CMD_OUT is rewritten whole (zeros on failure),
 * then CMD_STATUS is published: 0 or a catalogue status.
 *
 * Statuses: unknown opcode PV_ERR_BAD_OP; a non-zero unused argument word, an address that is not
 * a safe integer or a range past 2^53 PV_ERR_INVALID_ARG; a queue or ring not 64-byte aligned
 * PV_ERR_BAD_ALIGNMENT; counts and sizes out of range PV_ERR_BAD_LENGTH; dead or out-of-range
 * handles and stale keys PV_ERR_RDMA_BAD_HANDLE; access flags outside ACCESS_MASK or
 * REMOTE_WRITE/REMOTE_ATOMIC without LOCAL_WRITE (ibv_reg_mr.3) PV_ERR_RDMA_BAD_ACCESS; a table
 * full PV_ERR_RDMA_RESOURCE; destroying a PD, CQ still referenced PV_ERR_RDMA_BUSY; a queue or
 * CQ ring the IOMMU does not map PV_ERR_RDMA_BAD_MEMORY.
 */

import { ERROR_CATALOGUE, PvError, pvError } from '../../../protocol/errors.js';
import { cqBytes } from '../../../protocol/rdma/Cq.js';
import { NIC_CMD_WORDS, NicCmd, NicReg, PORT_ACTIVE } from '../../../protocol/rdma/NicRegs.js';
import { ACCESS_MASK, Access } from '../../../protocol/rdma/Verbs.js';
import { hi32, lo32 } from '../../../protocol/rdma/Wqe.js';
import { argAddr, argPow2, argQueue, argRange, freeSlot, liveHandle, requireZero } from './CmdArgs.js';
import { CqCtx, MetricSlot, MrCtx, PdCtx } from './DevLayout.js';
import { createQp, destroyQp, modifyQp, queryQp } from './QpCommands.js';
import type { RnicCtx } from './RnicContext.js';

/** MTU the port reports (IBV_MTU_4096). */
const ACTIVE_MTU = 5;

function createPd(ctx: RnicCtx, a: Int32Array, out: Int32Array): void {
  requireZero(a, 0);
  const L = ctx.layout;
  const pdn = freeSlot(ctx, L.maxPd, (i) => L.pdBase(i), 'PD');
  const p = L.pdBase(pdn);
  ctx.dev[p + PdCtx.USERS] = 0;
  ctx.dev[p + PdCtx.VALID] = 1;
  out[0] = pdn;
}

function destroyPd(ctx: RnicCtx, a: Int32Array): void {
  requireZero(a, 1);
  const L = ctx.layout;
  const pdn = liveHandle(ctx, a[0], L.maxPd, (h) => L.pdBase(h), 'PD');
  const p = L.pdBase(pdn);
  if (ctx.dev[p + PdCtx.USERS] !== 0)
    throw pvError('PV_ERR_RDMA_BUSY', `PD ${pdn} still has ${ctx.dev[p + PdCtx.USERS]} MRs/QPs`);
  ctx.dev[p + PdCtx.VALID] = 0;
}

function createMr(ctx: RnicCtx, a: Int32Array, out: Int32Array): void {
  requireZero(a, 7);
  const L = ctx.layout;
  const d = ctx.dev;
  const pdn = liveHandle(ctx, a[0], L.maxPd, (h) => L.pdBase(h), 'PD');
  const va = argAddr(a[1], a[2], 'MR va');
  const length = a[3] >>> 0;
  if (length === 0) throw pvError('PV_ERR_BAD_LENGTH', 'MR length must be > 0');
  argRange(va, length, 'MR va');
  const access = a[4] >>> 0;
  if ((access & ~ACCESS_MASK) !== 0)
    throw pvError('PV_ERR_RDMA_BAD_ACCESS', `unknown access bits ${access.toString(16)}`);
  if ((access & (Access.REMOTE_WRITE | Access.REMOTE_ATOMIC)) !== 0 && (access & Access.LOCAL_WRITE) === 0) {
    throw pvError('PV_ERR_RDMA_BAD_ACCESS', 'REMOTE_WRITE and REMOTE_ATOMIC require LOCAL_WRITE');
  }
  const iova = argAddr(a[5], a[6], 'MR iova');
  argRange(iova, length, 'MR iova');
  const index = freeSlot(ctx, ctx.sizes.maxMr, (i) => L.mrBase(i), 'MR');
  const m = L.mrBase(index);
  // A new key byte on every registration of the slot: an old lkey/rkey of it stops matching.
  const key = (d[m + MrCtx.KEY] + 1) & 0xff;
  d[m + MrCtx.KEY] = key;
  d[m + MrCtx.PD] = pdn;
  d[m + MrCtx.ACCESS] = access;
  d[m + MrCtx.VA_LO] = lo32(va) | 0;
  d[m + MrCtx.VA_HI] = hi32(va) | 0;
  d[m + MrCtx.LENGTH] = length | 0;
  d[m + MrCtx.IOVA_LO] = lo32(iova) | 0;
  d[m + MrCtx.IOVA_HI] = hi32(iova) | 0;
  d[m + MrCtx.VALID] = 1;
  d[L.pdBase(pdn) + PdCtx.USERS]++;
  const lkey = (index << 8) | key;
  out[0] = index;
  out[1] = lkey;
  out[2] = lkey;
}

function destroyMr(ctx: RnicCtx, a: Int32Array): void {
  requireZero(a, 1);
  const d = ctx.dev;
  const lkey = a[0] >>> 0;
  const index = lkey >>> 8;
  const m = ctx.layout.mrBase(index);
  if (index === 0 || index >= ctx.sizes.maxMr || d[m + MrCtx.VALID] === 0 || d[m + MrCtx.KEY] !== (lkey & 0xff)) {
    throw pvError('PV_ERR_RDMA_BAD_HANDLE', `no MR with lkey ${lkey.toString(16)}`);
  }
  d[m + MrCtx.VALID] = 0;
  d[ctx.layout.pdBase(d[m + MrCtx.PD]) + PdCtx.USERS]--;
}

function createCq(ctx: RnicCtx, a: Int32Array, out: Int32Array): void {
  requireZero(a, 3);
  const L = ctx.layout;
  const d = ctx.dev;
  const entries = argPow2(a[0], ctx.sizes.maxCqe, 'CQ entries');
  const ring = argQueue(ctx, a[1], a[2], cqBytes(entries), true, 'CQ ring');
  const cqn = freeSlot(ctx, ctx.sizes.maxCq, (i) => L.cqBase(i), 'CQ');
  const c = L.cqBase(cqn);
  d[c + CqCtx.EPOCH] = (d[c + CqCtx.EPOCH] + 1) | 0;
  d[c + CqCtx.ENTRIES] = entries;
  d[c + CqCtx.RING_LO] = lo32(ring) | 0;
  d[c + CqCtx.RING_HI] = hi32(ring) | 0;
  d[c + CqCtx.PROD] = 0;
  d[c + CqCtx.OVERFLOW] = 0;
  d[c + CqCtx.USERS] = 0;
  d[c + CqCtx.VALID] = 1;
  out[0] = cqn;
}

function destroyCq(ctx: RnicCtx, a: Int32Array): void {
  requireZero(a, 1);
  const L = ctx.layout;
  const cqn = liveHandle(ctx, a[0], ctx.sizes.maxCq, (h) => L.cqBase(h), 'CQ');
  const c = L.cqBase(cqn);
  if (ctx.dev[c + CqCtx.USERS] !== 0) throw pvError('PV_ERR_RDMA_BUSY', `CQ ${cqn} is used by QPs`);
  ctx.dev[c + CqCtx.VALID] = 0;
  ctx.dev[c + CqCtx.EPOCH] = (ctx.dev[c + CqCtx.EPOCH] + 1) | 0;
}

function queryPort(ctx: RnicCtx, a: Int32Array, out: Int32Array): void {
  requireZero(a, 0);
  out[0] = ctx.sizes.portId | 0;
  out[1] = PORT_ACTIVE;
  out[2] = ACTIVE_MTU;
}

/** Runs one command; returns a QP number whose send queue may now run (0 for none). */
function dispatch(ctx: RnicCtx, op: number, a: Int32Array, out: Int32Array): number {
  switch (op) {
    case NicCmd.QUERY_PORT:
      queryPort(ctx, a, out);
      return 0;
    case NicCmd.CREATE_PD:
      createPd(ctx, a, out);
      return 0;
    case NicCmd.DESTROY_PD:
      destroyPd(ctx, a);
      return 0;
    case NicCmd.CREATE_MR:
      createMr(ctx, a, out);
      return 0;
    case NicCmd.DESTROY_MR:
      destroyMr(ctx, a);
      return 0;
    case NicCmd.CREATE_CQ:
      createCq(ctx, a, out);
      return 0;
    case NicCmd.DESTROY_CQ:
      destroyCq(ctx, a);
      return 0;
    case NicCmd.CREATE_QP:
      createQp(ctx, a, out);
      return 0;
    case NicCmd.MODIFY_QP:
      return modifyQp(ctx, a);
    case NicCmd.QUERY_QP:
      queryQp(ctx, a, out);
      return 0;
    case NicCmd.DESTROY_QP:
      destroyQp(ctx, a);
      return 0;
    default:
      throw pvError('PV_ERR_BAD_OP', `unknown NIC command ${op}`);
  }
}

/**
 * Executes the command in the mailbox (fabric lock held by the caller). Returns a QP number to
 * run after the lock is released (a QP that just entered RTS with WRs already posted), or 0.
 */
export function executeCommand(ctx: RnicCtx): number {
  const bar = ctx.bar;
  const a = ctx.cmdIn;
  const out = ctx.cmdOut;
  const inBase = NicReg.CMD_IN >> 2;
  // XSA-155: one read of every argument word; only the copy is validated and used.
  for (let i = 0; i < NIC_CMD_WORDS; i++) a[i] = bar[inBase + i];
  const op = bar[NicReg.CMD_OPCODE >> 2];
  out.fill(0);
  let status = 0;
  let kick = 0;
  try {
    kick = dispatch(ctx, op, a, out);
  } catch (err) {
    status = err instanceof PvError ? err.status : ERROR_CATALOGUE.PV_ERR_BAD_REQUEST.status;
    out.fill(0);
    kick = 0;
  }
  const outBase = NicReg.CMD_OUT >> 2;
  for (let i = 0; i < NIC_CMD_WORDS; i++) bar[outBase + i] = out[i];
  // ORDERING: seq-cst store after the results; a reader that loads the status sees them.
  Atomics.store(bar, NicReg.CMD_STATUS >> 2, status);
  ctx.count(MetricSlot.COMMANDS);
  return kick;
}
