/**
 * Two guests of a PvWorld connected RC QP to RC QP through the real verbs API over the real
 * paravirtual provider: each side has a context, a PD, one CQ, one QP, a 1 MiB buffer registered
 * with every access, plus helpers to fill, compare and reap completions while the single thread
 * also runs the backend's serving rounds.
 */

import assert from 'node:assert/strict';
import * as ibv from '../../../../frontend/verbs/index.js';
import type { ParavirtProvider } from '../../../../frontend/verbs/paravirt/ParavirtProvider.js';
import { contextOf } from '../../../../fuzz/rdma/Honest.js';
import type { Transport } from '../../../../protocol/Pci.js';
import { Access, emptyWc, type QpCap, type Wc } from '../../../../protocol/rdma/Verbs.js';
import type { GuestPhysAddr } from '../../../../protocol/Types.js';
import type { Dom, PvWorld } from './PvWorld.js';

/** Every access right. */
export const ALL = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
/** Bytes of each side's buffer. */
export const BUF = 1 << 20;
/** QP capabilities of every side. */
export const CAP: QpCap = { maxSendWr: 64, maxRecvWr: 64, maxSendSge: 3, maxRecvSge: 3, maxInlineData: 64 };

/** One connected guest. */
export interface Side {
  readonly dom: Dom;
  readonly provider: ParavirtProvider;
  readonly ctx: ibv.Context;
  readonly pd: ibv.Pd;
  readonly cq: ibv.Cq;
  readonly qp: ibv.Qp;
  readonly buf: GuestPhysAddr;
  readonly mr: ibv.Mr;
}

// The verbs context over an open provider lives with the fuzzer's honest guests (one copy).
export { contextOf };

/** Opens `dom`'s device and creates PD, CQ, QP, buffer and MR. */
export async function openSide(
  world: PvWorld,
  dom: Dom,
  transport: Transport,
  cap = CAP,
  device = 'nic0',
): Promise<Side> {
  const provider = await world.open(dom, transport, 0, undefined, device);
  const ctx = contextOf(dom, provider, transport);
  const pd = ibv.allocPd(ctx);
  const cq = ibv.createCq(ctx, 256);
  const qp = ibv.createQp(pd, { sendCq: cq, recvCq: cq, cap });
  const buf = ctx.allocBuffer(BUF);
  const mr = ibv.regMr(pd, buf, BUF, ALL);
  return { dom, provider, ctx, pd, cq, qp, buf, mr };
}

/** Two guests, connected to each other. */
export async function connectedPair(world: PvWorld, transport: Transport, cap = CAP): Promise<[Side, Side]> {
  const a = await openSide(world, world.guests[0], transport, cap, 'nic0');
  // With two NICs the guests are on different ones, as in the scenarios (nic0 and nic1).
  const b = await openSide(world, world.guests[1], transport, cap, world.nics.length > 1 ? 'nic1' : 'nic0');
  ibv.connectRcQp(a.qp, { destQpNum: b.qp.qpNum, dlid: b.ctx.portId }, ALL, { minRnrTimer: 1, rnrRetry: 1 });
  ibv.connectRcQp(b.qp, { destQpNum: a.qp.qpNum, dlid: a.ctx.portId }, ALL, { minRnrTimer: 1, rnrRetry: 1 });
  return [a, b];
}

/** Fills `[off, off + len)` of the side's buffer with a pattern derived from `seed`. */
export function fill(s: Side, off: number, len: number, seed: number): void {
  const v = s.ctx.memory.view((s.buf + off) as GuestPhysAddr, len);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    v[i] = x & 0xff;
  }
}

/** True when the two ranges hold the same bytes. */
export function same(x: Side, xOff: number, y: Side, yOff: number, len: number): boolean {
  const a = x.ctx.memory.view((x.buf + xOff) as GuestPhysAddr, len);
  const b = y.ctx.memory.view((y.buf + yOff) as GuestPhysAddr, len);
  return Buffer.compare(a, b) === 0;
}

/** Serves the backend and polls until `n` completions arrived (bounded), then checks no more come. */
export function reap(world: PvWorld, s: Side, n: number, rounds = 200): Wc[] {
  const out: Wc[] = [];
  const wcs = Array.from({ length: 64 }, emptyWc);
  for (let i = 0; i < rounds && out.length < n; i++) {
    world.serve();
    const got = ibv.pollCq(s.cq, Math.min(64, n - out.length), wcs);
    for (let k = 0; k < got; k++) out.push({ ...wcs[k] });
  }
  assert.equal(out.length, n, `expected ${n} completions, got ${out.length}`);
  world.serve(3);
  assert.equal(ibv.pollCq(s.cq, 4, wcs), 0, 'no extra completions');
  return out;
}
