/**
 * A borrower-side program for the Device Lending tests, run in a domain of host B that owns the
 * lent NIC (`nic0@A`) and, for some modes, a local NIC of B. It uses only the verbs API (so the
 * UNCHANGED RdmaNicDriver runs underneath). Modes:
 *  - `count`: one 64 B RDMA WRITE each way between the lent and the local NIC, after a warm-up,
 *    reading the lease record (a SharedArrayBuffer in args) before and after each, so the test
 *    sees exactly what one WRITE costs in MMIO and DMA NTB crossings;
 *  - `revoke`: posts receives that cannot complete, says `posted`, then waits for them: a forced
 *    return must complete them with WR_FLUSH_ERR (never a hang), and the next doorbell must throw
 *    PV_ERR_LEND_REVOKED;
 *  - `window`: a WRITE whose source lies outside the lender's DMA window must complete with an
 *    error status, and the NIC must go on serving another QP.
 */

import * as ibv from '../../../../frontend/verbs/index.js';
import { type LentCountersSnapshot, LentStats } from '../../../../hypervisor-sim/cluster/LentStats.js';
import type { DomainEnv } from '../../../../protocol/Program.js';
import { SendFlags, WrOpcode, wcStatusName } from '../../../../protocol/rdma/Verbs.js';
import type { GuestPhysAddr } from '../../../../protocol/Types.js';
import { ALL, take } from '../../rdma/programs/Harness.js';

interface Args {
  mode: 'count' | 'revoke' | 'window';
  lent: string;
  local?: string;
  stats?: SharedArrayBuffer;
  padBytes?: number;
}

/** One side: a context with a PD, CQs, a QP and a registered 8 KiB buffer. */
interface End {
  ctx: ibv.Context;
  pd: ibv.Pd;
  cq: ibv.Cq;
  qp: ibv.Qp;
  buf: GuestPhysAddr;
  mr: ibv.Mr;
}

function end(ctx: ibv.Context, pd: ibv.Pd): End {
  const cq = ibv.createCq(ctx, 64);
  const qp = ibv.createQp(pd, {
    sendCq: cq,
    recvCq: cq,
    cap: { maxSendWr: 16, maxRecvWr: 16, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 },
    sqSigAll: false,
  });
  const buf = ctx.allocBuffer(8192);
  return { ctx, pd, cq, qp, buf, mr: ibv.regMr(pd, buf, 8192, ALL) };
}

function join(a: End, b: End): void {
  ibv.connectRcQp(a.qp, { destQpNum: b.qp.qpNum, dlid: b.ctx.portId }, ALL);
  ibv.connectRcQp(b.qp, { destQpNum: a.qp.qpNum, dlid: a.ctx.portId }, ALL);
}

/** A signalled WRITE of `len` bytes from `src` (at `from`) to `dst`'s buffer; returns its status name. */
function write(src: End, dst: End, len: number, from: GuestPhysAddr = src.buf, lkey = src.mr.lkey): string {
  ibv.postSend(src.qp, {
    wrId: 1,
    opcode: WrOpcode.RDMA_WRITE,
    sendFlags: SendFlags.SIGNALED,
    sgList: [{ addr: from, length: len, lkey }],
    remoteAddr: dst.buf,
    rkey: dst.mr.rkey,
  });
  return wcStatusName(take(src.cq, 1)[0].status);
}

function pattern(e: End, addr: GuestPhysAddr, len: number, seed: number): void {
  const v = e.ctx.memory.view(addr, len);
  for (let i = 0; i < len; i++) v[i] = (seed + i * 7) & 0xff;
}

function same(e: End, a: GuestPhysAddr, b: GuestPhysAddr, len: number): boolean {
  const x = e.ctx.memory.view(a, len);
  const y = e.ctx.memory.view(b, len);
  for (let i = 0; i < len; i++) if (x[i] !== y[i]) return false;
  return true;
}

function delta(a: LentCountersSnapshot, b: LentCountersSnapshot): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(a) as (keyof LentCountersSnapshot)[]) {
    if (typeof a[k] === 'number') out[k] = (b[k] as number) - (a[k] as number);
  }
  return out;
}

async function count(env: DomainEnv, args: Args): Promise<unknown> {
  const stats = new LentStats(args.stats as SharedArrayBuffer);
  const lctx = await ibv.openDevice(env, args.lent);
  const cctx = await ibv.openDevice(env, args.local);
  const lent = end(lctx, ibv.allocPd(lctx));
  const local = end(cctx, ibv.allocPd(cctx));
  join(lent, local);
  // Warm-up: queue views are resolved (and cached) on first use.
  write(lent, local, 64);
  write(local, lent, 64);
  pattern(lent, lent.buf, 64, 11);
  const s0 = stats.snapshot();
  const st1 = write(lent, local, 64);
  const s1 = stats.snapshot();
  pattern(local, local.buf, 64, 29);
  const st2 = write(local, lent, 64);
  const s2 = stats.snapshot();
  // Both contexts share this domain's memory: after the second WRITE both buffers hold its data.
  const dataOk = same(lent, lent.buf, local.buf, 64);
  return { lentToLocal: delta(s0, s1), localToLent: delta(s1, s2), statuses: [st1, st2], dataOk };
}

async function revoke(env: DomainEnv, args: Args): Promise<unknown> {
  const ctx = await ibv.openDevice(env, args.lent);
  const e = end(ctx, ibv.allocPd(ctx));
  join(e, e);
  for (let i = 0; i < 4; i++)
    ibv.postRecv(e.qp, { wrId: 100 + i, sgList: [{ addr: e.buf, length: 64, lkey: e.mr.lkey }] });
  env.log('posted');
  const statuses = take(e.cq, 4, 30_000).map((wc) => `${wc.wrId}:${wcStatusName(wc.status)}`);
  // The forced return flushes the QPs first (the CQEs need the windows open) and ends the lease
  // right after, from the host's thread: a doorbell rung in between still reaches the flushed QP.
  // So ring until the doorbell is refused — within 5 s, never a hang.
  let after = 'no error';
  const until = Date.now() + 5000;
  for (let wrId = 200; after === 'no error' && Date.now() < until; wrId++) {
    try {
      ibv.postRecv(e.qp, { wrId, sgList: [{ addr: e.buf, length: 64, lkey: e.mr.lkey }] });
      await new Promise((resolve) => setTimeout(resolve, 5));
    } catch (err) {
      after = (err as { code?: string }).code ?? String(err);
    }
  }
  // The device is gone: closing it would only fail the same way.
  return { statuses, after };
}

async function window(env: DomainEnv, args: Args): Promise<unknown> {
  const lctx = await ibv.openDevice(env, args.lent);
  const cctx = await ibv.openDevice(env, args.local);
  const lpd = ibv.allocPd(lctx);
  const cpd = ibv.allocPd(cctx);
  // Every queue first, low in memory (inside the DMA window); then a buffer beyond the window.
  const bad = [end(lctx, lpd), end(cctx, cpd)];
  const good = [end(lctx, lpd), end(cctx, cpd)];
  join(bad[0], bad[1]);
  join(good[0], good[1]);
  lctx.allocBuffer(args.padBytes as number);
  const far = lctx.allocBuffer(4096);
  const farMr = ibv.regMr(lpd, far, 4096, ALL);
  const outside = write(bad[0], bad[1], 256, far, farMr.lkey);
  pattern(good[0], good[0].buf, 256, 5);
  const inside = write(good[0], good[1], 256);
  const dataOk = good[1].ctx.memory.view(good[1].buf, 256).every((v, i) => v === ((5 + i * 7) & 0xff));
  return { far, outside, inside, dataOk };
}

export default async function main(env: DomainEnv): Promise<unknown> {
  const args = env.args as unknown as Args;
  if (args.mode === 'count') return count(env, args);
  if (args.mode === 'revoke') return revoke(env, args);
  return window(env, args);
}
