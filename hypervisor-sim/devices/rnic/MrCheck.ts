/**
 * Memory-region checks: an lkey or rkey names an MR slot and the key byte of its current
 * registration; the region must belong to the QP's PD, allow the access, and contain the whole
 * range. The range is then translated to the region's IOVA: `iova + (addr − va)` (NicRegs.ts).
 *
 * Everything checked here comes from a WQE (driver or guest data), so every failure is a plain
 * -1 the caller turns into a completion status: LOC_PROT_ERR for a local SGE, REM_ACCESS_ERR for
 * a remote address (ibv_poll_cq.3).
 */

import { Access } from '../../../protocol/rdma/Verbs.js';
import { MrCtx } from './DevLayout.js';
import { joinWords } from './QueueViews.js';
import type { RnicCtx } from './RnicContext.js';

/** Word of the MR the key names if it is live with that key and PD, else -1. */
function mrOf(ctx: RnicCtx, key: number, pd: number): number {
  const index = key >>> 8;
  if (index === 0 || index >= ctx.sizes.maxMr) return -1;
  const d = ctx.dev;
  const m = ctx.layout.mrBase(index);
  if (d[m + MrCtx.VALID] === 0 || d[m + MrCtx.KEY] !== (key & 0xff) || d[m + MrCtx.PD] !== pd) return -1;
  return m;
}

/** IOVA of `[addr, addr + len)` inside the MR at word `m`, or -1 when it is not inside. */
function translate(d: Int32Array, m: number, addr: number, len: number): number {
  // addr is -1 when the WQE's address was not a safe integer (Wqe.safeAddr).
  if (addr < 0) return -1;
  const va = joinWords(d[m + MrCtx.VA_LO], d[m + MrCtx.VA_HI]);
  const length = d[m + MrCtx.LENGTH] >>> 0;
  // INVARIANT: va + length and iova + length are safe integers (CREATE_MR), so neither sum below
  // can lose precision; the test avoids computing addr + len, which a hostile addr could overflow.
  if (addr < va || len > length || addr - va > length - len) return -1;
  return joinWords(d[m + MrCtx.IOVA_LO], d[m + MrCtx.IOVA_HI]) + (addr - va);
}

/**
 * A local SGE of a QP in PD `pd`: the IOVA of the range, or -1 (→ LOC_PROT_ERR). `write` when
 * the NIC writes the buffer (RDMA READ destination, receive buffer): the MR needs LOCAL_WRITE.
 */
export function localIova(ctx: RnicCtx, pd: number, lkey: number, addr: number, len: number, write: boolean): number {
  const m = mrOf(ctx, lkey, pd);
  if (m < 0) return -1;
  if (write && (ctx.dev[m + MrCtx.ACCESS] & Access.LOCAL_WRITE) === 0) return -1;
  return translate(ctx.dev, m, addr, len);
}

/**
 * A remote range on the responder `ctx` for its QP in PD `pd` whose qp_access_flags are
 * `qpAccess`: the IOVA, or -1 (→ REM_ACCESS_ERR). Both the MR and the QP must allow `need`
 * (REMOTE_WRITE or REMOTE_READ), as an HCA checks the R_Key and the QP's access flags.
 */
export function remoteIova(
  ctx: RnicCtx,
  pd: number,
  qpAccess: number,
  rkey: number,
  addr: number,
  len: number,
  need: Access,
): number {
  if ((qpAccess & need) === 0) return -1;
  const m = mrOf(ctx, rkey, pd);
  if (m < 0 || (ctx.dev[m + MrCtx.ACCESS] & need) === 0) return -1;
  return translate(ctx.dev, m, addr, len);
}
