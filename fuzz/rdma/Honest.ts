/**
 * The honest guests of the rdma target: two guests connected RC QP to RC QP through the real
 * verbs API over the real paravirtual frontend, doing real traffic beside the adversary. Each
 * case they move fresh bytes with one RDMA WRITE and one SEND/RECV, and every work request must
 * complete exactly once, successfully, with the right bytes at the destination — whatever the
 * adversary did to the shared backend meanwhile.
 */

import * as ibv from '../../frontend/verbs/index.js';
import type { ParavirtProvider } from '../../frontend/verbs/paravirt/ParavirtProvider.js';
import type { DeviceAttachment, Transport } from '../../protocol/Pci.js';
import type { DomainEnv } from '../../protocol/Program.js';
import { Access, emptyWc, SendFlags, type Wc, WcStatus, WrOpcode } from '../../protocol/rdma/Verbs.js';
import { DOM0, type GuestPhysAddr, PAGE_SIZE } from '../../protocol/Types.js';
import { CanaryPages } from '../core/Canary.js';
import type { Rng, Violation } from '../core/FuzzTarget.js';
import type { Dom, PvWorld } from './PvWorld.js';

/** Every access right. */
export const ALL_ACCESS = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
/** Bytes of each side's registered buffer. */
const BUF = 64 * PAGE_SIZE;

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
  /** Never granted; must never change. */
  readonly canary: CanaryPages;
}

/** A verbs context over an open provider (what openDevice builds). */
export function contextOf(dom: Dom, provider: ParavirtProvider, transport: Transport): ibv.Context {
  const att: DeviceAttachment = { device: 'nic0', kind: 'rdma-nic', transport, devid: 0, backendDomid: DOM0 };
  const env: DomainEnv = {
    domid: dom.domid,
    name: `guest${dom.domid}`,
    hypercalls: dom.hc,
    devices: [att],
    args: {},
    log: () => {},
  };
  return new ibv.Context(env, att, provider);
}

async function openSide(world: PvWorld, dom: Dom, transport: Transport, seed: number): Promise<Side> {
  const canary = new CanaryPages(dom.mem, 2, seed, `honest dom${dom.domid}`);
  const provider = await world.open(dom, transport);
  const ctx = contextOf(dom, provider, transport);
  const pd = ibv.allocPd(ctx);
  const cq = ibv.createCq(ctx, 256);
  const cap = { maxSendWr: 64, maxRecvWr: 64, maxSendSge: 3, maxRecvSge: 3, maxInlineData: 64 };
  const qp = ibv.createQp(pd, { sendCq: cq, recvCq: cq, cap });
  const buf = ctx.allocBuffer(BUF);
  const mr = ibv.regMr(pd, buf, BUF, ALL_ACCESS);
  return { dom, provider, ctx, pd, cq, qp, buf, mr, canary };
}

/** The honest pair and its per-case traffic; see the file comment. */
export class HonestPair {
  private readonly _wcs: Wc[] = Array.from({ length: 16 }, emptyWc);
  private _nextWr = 1;

  private constructor(
    readonly a: Side,
    readonly b: Side,
  ) {}

  /** Opens both guests (transport `paravirt` or `paravirt-copy`) and connects their QPs. */
  static async open(world: PvWorld, da: Dom, db: Dom, transport: Transport, seed: number): Promise<HonestPair> {
    const a = await openSide(world, da, transport, seed);
    const b = await openSide(world, db, transport, seed + 1);
    const opts = { minRnrTimer: 1, rnrRetry: 7 };
    ibv.connectRcQp(a.qp, { destQpNum: b.qp.qpNum, dlid: b.ctx.portId }, ALL_ACCESS, opts);
    ibv.connectRcQp(b.qp, { destQpNum: a.qp.qpNum, dlid: a.ctx.portId }, ALL_ACCESS, opts);
    return new HonestPair(a, b);
  }

  /**
   * One WRITE a→b and one SEND a→b (RECV posted by b first), fresh bytes each; returns the
   * requests done and what went wrong.
   */
  traffic(rng: Rng, serve: () => void): { requests: number; violations: Violation[] } {
    const { a, b } = this;
    const v: Violation[] = [];
    const wlen = 1 + rng.below(2 * PAGE_SIZE);
    const woff = rng.below(BUF / 2 - wlen);
    const slen = 1 + rng.below(PAGE_SIZE);
    const soff = BUF / 2 + rng.below(BUF / 4 - slen);
    const roff = BUF / 2 + BUF / 4;
    rng.fill(a.ctx.memory.view((a.buf + woff) as GuestPhysAddr, wlen));
    rng.fill(a.ctx.memory.view((a.buf + soff) as GuestPhysAddr, slen));
    const wId = this._nextWr++;
    const sId = this._nextWr++;
    const rId = this._nextWr++;
    ibv.postRecv(b.qp, { wrId: rId, sgList: [{ addr: b.buf + roff, length: BUF / 4, lkey: b.mr.lkey }] });
    ibv.postSend(a.qp, {
      wrId: wId,
      opcode: WrOpcode.RDMA_WRITE,
      sendFlags: SendFlags.SIGNALED,
      sgList: [{ addr: a.buf + woff, length: wlen, lkey: a.mr.lkey }],
      remoteAddr: b.buf + woff,
      rkey: b.mr.rkey,
    });
    ibv.postSend(a.qp, {
      wrId: sId,
      opcode: WrOpcode.SEND,
      sendFlags: SendFlags.SIGNALED,
      sgList: [{ addr: a.buf + soff, length: slen, lkey: a.mr.lkey }],
    });
    const gotA = this._reap(a, 2, serve);
    const gotB = this._reap(b, 1, serve);
    const expect = (got: Wc[], ids: number[], who: string): void => {
      const seen = got.map((w) => w.wrId).sort((x, y) => x - y);
      if (seen.join() !== ids.join()) {
        v.push({
          signature: 'rdma/honest:not-exactly-once',
          detail: `${who}: expected completions ${ids.join(',')}, got ${seen.join(',') || 'none'}`,
        });
      }
      for (const w of got) {
        if (w.status !== WcStatus.SUCCESS) {
          v.push({ signature: 'rdma/honest:failed', detail: `${who}: wr ${w.wrId} completed with status ${w.status}` });
        }
      }
    };
    expect(gotA, [wId, sId], 'sender');
    expect(gotB, [rId], 'receiver');
    if (!same(a, woff, b, woff, wlen)) {
      v.push({ signature: 'rdma/honest:wrong-data', detail: `RDMA WRITE of ${wlen} B at +${woff}: bytes differ` });
    }
    const recv = gotB.find((w) => w.wrId === rId);
    if (recv && (recv.byteLen !== slen || !same(a, soff, b, roff, slen))) {
      v.push({
        signature: 'rdma/honest:wrong-data',
        detail: `SEND of ${slen} B: received ${recv.byteLen} B or bytes differ`,
      });
    }
    return { requests: 3, violations: v };
  }

  /** Canaries of both guests. */
  checkCanaries(): Violation[] {
    const out: Violation[] = [];
    for (const s of [this.a, this.b]) {
      const c = s.canary.check('rdma/memory:canary-changed');
      if (c) out.push(c);
    }
    return out;
  }

  /** Closes both devices. */
  async close(): Promise<void> {
    await ibv.closeDevice(this.a.ctx);
    await ibv.closeDevice(this.b.ctx);
  }

  /** Serves and polls until `n` completions arrive (bounded), then looks for extra ones. */
  private _reap(s: Side, n: number, serve: () => void): Wc[] {
    const out: Wc[] = [];
    for (let i = 0; i < 400 && out.length < n; i++) {
      serve();
      const got = ibv.pollCq(s.cq, 16, this._wcs);
      for (let k = 0; k < got; k++) out.push({ ...this._wcs[k] });
    }
    if (out.length === n) {
      serve();
      const extra = ibv.pollCq(s.cq, 16, this._wcs);
      for (let k = 0; k < extra; k++) out.push({ ...this._wcs[k] });
    }
    return out;
  }
}

function same(x: Side, xOff: number, y: Side, yOff: number, len: number): boolean {
  const p = x.ctx.memory.view((x.buf + xOff) as GuestPhysAddr, len);
  const q = y.ctx.memory.view((y.buf + yOff) as GuestPhysAddr, len);
  return Buffer.compare(p, q) === 0;
}
