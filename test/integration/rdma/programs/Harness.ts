/**
 * Shared pieces of the RDMA conformance guests: the two guests ("a" requests, "b" responds) run
 * the same scripted list of cases; they meet at named barriers through the store (perftest's
 * out-of-band exchange), which also carries the numbers each side needs (rkeys, checksums).
 */

import * as ibv from '../../../../frontend/verbs/index.js';
import type { DomainEnv } from '../../../../protocol/Program.js';
import { Access } from '../../../../protocol/rdma/Verbs.js';
import { fnv1a } from '../../../../protocol/ring/IoSlot.js';
import type { GuestPhysAddr } from '../../../../protocol/Types.js';

/** Everything one guest holds for the suite. */
export interface Side {
  readonly env: DomainEnv;
  readonly role: 'a' | 'b';
  readonly peer: number;
  readonly ctx: ibv.Context;
  readonly pd: ibv.Pd;
  /** Main buffer (BUF bytes): source of a's operations, target of b's. */
  readonly buf: GuestPhysAddr;
  readonly mrAll: ibv.Mr;
  /** Small buffer registered REMOTE_READ only (no REMOTE_WRITE). */
  readonly mrRo: ibv.Mr;
  /** Small buffer registered LOCAL_WRITE only (no remote access). */
  readonly mrLocal: ibv.Mr;
  /** Small buffer registered with no LOCAL_WRITE (READ/RECV into it must fail). */
  readonly mrNoWrite: ibv.Mr;
  step: number;
}

/** Largest transfer the suite moves (perftest -a goes to 2^23). */
export const MAX_SIZE = 8 << 20;
/** Bytes of the main buffer. */
export const BUF = MAX_SIZE + 4096;
/** Bytes of each small buffer. */
export const SMALL = 8192;

/** Access flags of the main MR. */
export const ALL = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;

/** Opens the device and registers the suite's memory. */
export async function openSide(env: DomainEnv): Promise<Side> {
  const args = env.args as { self: 'a' | 'b'; peers: Record<string, number> };
  const role = args.self;
  const peer = args.peers[role === 'a' ? 'b' : 'a'];
  const ctx = await ibv.openDevice(env);
  const pd = ibv.allocPd(ctx);
  const buf = ctx.allocBuffer(BUF);
  const small = ctx.allocBuffer(SMALL * 3);
  return {
    env,
    role,
    peer,
    ctx,
    pd,
    buf,
    mrAll: ibv.regMr(pd, buf, BUF, ALL),
    mrRo: ibv.regMr(pd, small, SMALL, Access.REMOTE_READ),
    mrLocal: ibv.regMr(pd, (small + SMALL) as GuestPhysAddr, SMALL, Access.LOCAL_WRITE),
    mrNoWrite: ibv.regMr(pd, (small + 2 * SMALL) as GuestPhysAddr, SMALL, 0),
    step: 0,
  };
}

/** Meets the peer at the next barrier, trading `info`; both sides must call in the same order. */
export async function barrier<T extends ibv.ConnInfo>(s: Side, info: T): Promise<T> {
  s.step++;
  return ibv.exchangeConnInfo(s.env, { peerDomid: s.peer, name: `conf-${s.step}`, info, timeoutMs: 120_000 });
}

/** A connected RC QP pair end: its CQs and QP. */
export interface Conn {
  readonly qp: ibv.Qp;
  readonly scq: ibv.Cq;
  readonly rcq: ibv.Cq;
}

/** Creates a QP (with its CQs) and connects it to the peer's; both sides call it together. */
export async function connect(
  s: Side,
  opts: { cqe?: number; depth?: number; rnrRetry?: number; minRnrTimer?: number } = {},
): Promise<Conn> {
  const cqe = opts.cqe ?? 256;
  const scq = ibv.createCq(s.ctx, cqe);
  const rcq = ibv.createCq(s.ctx, cqe);
  const depth = opts.depth ?? 128;
  const qp = ibv.createQp(s.pd, {
    sendCq: scq,
    recvCq: rcq,
    cap: { maxSendWr: depth, maxRecvWr: depth, maxSendSge: 2, maxRecvSge: 2, maxInlineData: 64 },
    sqSigAll: false,
  });
  const remote = await barrier(s, { qpn: qp.qpNum, lid: s.ctx.portId });
  ibv.connectRcQp(qp, { destQpNum: remote.qpn, dlid: remote.lid }, ALL, {
    rnrRetry: opts.rnrRetry,
    minRnrTimer: opts.minRnrTimer,
  });
  // Both ends must be in RTR before either sends.
  await barrier(s, { ready: 1 });
  return { qp, scq, rcq };
}

/** Tears a connection down. */
export function disconnect(c: Conn): void {
  ibv.destroyQp(c.qp);
  ibv.destroyCq(c.scq);
  ibv.destroyCq(c.rcq);
}

const wcs = Array.from({ length: 256 }, () => ibv.emptyWc());

/** Waits for `n` completions on `cq` (bounded) and returns copies of them. */
export function take(cq: ibv.Cq, n: number, timeoutMs = 30_000): ibv.Wc[] {
  const out: ibv.Wc[] = [];
  const deadline = performance.now() + timeoutMs;
  while (out.length < n) {
    const got = ibv.pollCq(cq, Math.min(wcs.length, n - out.length), wcs);
    for (let i = 0; i < got; i++) out.push({ ...wcs[i] });
    if (got > 0) continue;
    const left = deadline - performance.now();
    if (left <= 0) throw new Error(`timed out with ${out.length} of ${n} completions`);
    ibv.waitCq(cq, { timeoutMs: Math.min(left, 1000) });
  }
  return out;
}

/** Completions already on `cq` (no waiting beyond a short grace period). */
export function drain(cq: ibv.Cq, graceMs = 50): ibv.Wc[] {
  const out: ibv.Wc[] = [];
  const until = performance.now() + graceMs;
  while (performance.now() < until) {
    const got = ibv.pollCq(cq, wcs.length, wcs);
    for (let i = 0; i < got; i++) out.push({ ...wcs[i] });
    if (got === 0) ibv.waitCq(cq, { timeoutMs: 5 });
  }
  return out;
}

/** Fills `[addr, addr + len)` with a pattern derived from `seed`. */
export function fill(s: Side, addr: number, len: number, seed: number): void {
  const v = s.ctx.memory.view(addr as GuestPhysAddr, len);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    v[i] = x & 0xff;
  }
}

/** FNV-1a of `[addr, addr + len)`. */
export function sum(s: Side, addr: number, len: number): number {
  return fnv1a(s.ctx.memory.view(addr as GuestPhysAddr, len), 0, len);
}

/** Powers of two from 1 B to 8 MiB, and odd sizes in between. */
export const SIZES: readonly number[] = [
  ...Array.from({ length: 24 }, (_, i) => 2 ** i),
  3,
  127,
  1000,
  4097,
  65_537,
  1_048_575,
  MAX_SIZE - 1,
];
