/**
 * perftest's RDMA WRITE tests as a guest program, unchanged across transports. Two guests,
 * "server" and "client", exchange QPN/rkey/address through the store (perftest's out-of-band
 * exchange), then:
 *
 *  - `write_lat` (ib_write_lat's `run_iter_lat_write`): each side RDMA-WRITEs its buffer into
 *    the peer's, with the last byte carrying the iteration count, and waits until its own last
 *    byte shows the peer's count (spinning, then sleeping on that word — the NIC wakes it). The
 *    client timestamps every post; samples are the deltas between posts (one round trip each).
 *  - `write_bw` (ib_write_bw): the client keeps `txDepth` WRITEs of `size` bytes in flight,
 *    signaling every `cqMod`-th, until `iters` have completed; the server waits for the end.
 *
 * Returns raw samples (µs) and totals; statistics are computed by the caller.
 */

import * as ibv from '../../frontend/verbs/index.js';
import type { DomainEnv } from '../../protocol/Program.js';
import { Access, SendFlags, WcStatus, WrOpcode, wcStatusName } from '../../protocol/rdma/Verbs.js';
import { adaptiveWait } from '../../protocol/wait.js';

/** Arguments of the program. */
export interface PerftestArgs {
  readonly test: 'write_lat' | 'write_bw';
  readonly size: number;
  readonly iters: number;
  readonly txDepth?: number;
  readonly cqMod?: number;
  /** Messages up to this size are posted INLINE (payload copied into the WQE), as perftest's -I. */
  readonly inlineSize?: number;
  /** Polls of the awaited word before sleeping (write_lat). */
  readonly spinBudget?: number;
  /** Tag to keep store exchange names unique when a scenario runs several tests. */
  readonly tag?: string;
}

/** What the client returns. */
export interface PerftestResult {
  readonly role: 'client' | 'server';
  readonly transport: string;
  readonly test: string;
  readonly size: number;
  readonly iters: number;
  /** write_lat: round-trip samples in µs (iters − 1 deltas between posts). */
  readonly rttUs?: number[];
  /** write_bw: seconds from the first post to the last completion. */
  readonly seconds?: number;
  /** write_bw (client): per-message post times, ms (performance.now()). */
  readonly tposted?: number[];
  /**
   * write_bw (client): per-message completion times, ms — each message covered by a CQE gets that
   * CQE's poll time (only every cqMod-th message is signaled), as perftest's peak needs.
   */
  readonly tcompleted?: number[];
}

const ACCESS = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;

function check(wc: ibv.Wc): void {
  if (wc.status !== WcStatus.SUCCESS) throw new Error(`work request ${wc.wrId} failed: ${wcStatusName(wc.status)}`);
}

export default async function main(env: DomainEnv): Promise<PerftestResult> {
  const a = env.args as unknown as PerftestArgs & { self: 'client' | 'server'; peers: Record<string, number> };
  const role = a.self;
  const peer = a.peers[role === 'client' ? 'server' : 'client'];
  const size = a.size;
  const txDepth = Math.min(a.txDepth ?? (a.test === 'write_bw' ? 128 : 1), a.iters);
  const cqMod = Math.max(1, Math.min(a.cqMod ?? 100, txDepth));
  const tag = a.tag ?? `${a.test}-${size}`;
  const inlineSize = a.inlineSize ?? 0;
  const inline = size <= inlineSize ? SendFlags.INLINE : 0;

  const ctx = await ibv.openDevice(env);
  const pd = ibv.allocPd(ctx);
  // Two halves, as perftest's write_lat: we send from the first and the peer writes into the second.
  const half = Math.ceil(Math.max(size, 64) / 4096) * 4096;
  const bufBytes = 2 * half;
  const buf = ctx.allocBuffer(bufBytes);
  const mr = ibv.regMr(pd, buf, bufBytes, ACCESS);
  const cq = ibv.createCq(ctx, Math.max(txDepth * 2, 16));
  const qp = ibv.createQp(pd, {
    sendCq: cq,
    recvCq: cq,
    cap: { maxSendWr: Math.max(txDepth, 16), maxRecvWr: 16, maxSendSge: 1, maxRecvSge: 1, maxInlineData: inlineSize },
    sqSigAll: false,
  });
  const remote = await ibv.exchangeConnInfo(env, {
    peerDomid: peer,
    name: `pt-${tag}`,
    info: { lid: ctx.portId, qpn: qp.qpNum, rkey: mr.rkey, addr: buf },
  });
  ibv.connectRcQp(qp, { destQpNum: remote.qpn, dlid: remote.lid }, ACCESS);
  await ibv.exchangeConnInfo(env, { peerDomid: peer, name: `pt-${tag}-rts`, info: { ready: 1 } });

  const wcs = Array.from({ length: 64 }, () => ibv.emptyWc());
  let result: PerftestResult;
  if (a.test === 'write_lat') {
    const mem = ctx.memory.view(buf, bufBytes);
    const last = size - 1;
    const pollAt = half + size - 1;
    // The Int32 word holding the polled byte: where the NIC's write lands last and notifies.
    const wordIdx = (mem.byteOffset + pollAt) >> 2;
    const words = new Int32Array(mem.buffer);
    const spinBudget = a.spinBudget ?? 20000;
    const wr: ibv.SendWr = {
      wrId: 1,
      opcode: WrOpcode.RDMA_WRITE,
      sendFlags: SendFlags.SIGNALED | inline,
      sgList: [{ addr: buf, length: size, lkey: mr.lkey }],
      remoteAddr: remote.addr + half,
      rkey: remote.rkey,
    };
    const posts = new Float64Array(a.iters);
    let rcnt = 0;
    let scnt = 0;
    let outstanding = 0;
    while (scnt < a.iters || rcnt < a.iters) {
      // The server answers only after it received; the client sends first.
      if (scnt < a.iters && outstanding < 16 && (role === 'client' ? rcnt === scnt : rcnt > scnt)) {
        mem[last] = (scnt + 1) & 0xff;
        if (role === 'client') posts[scnt] = performance.now();
        ibv.postSend(qp, wr);
        scnt++;
        outstanding++;
      }
      if (rcnt < a.iters && (role === 'client' ? rcnt < scnt : true)) {
        const want = (rcnt + 1) & 0xff;
        if (mem[pollAt] === want) rcnt++;
        else if (outstanding === 0) {
          // ORDERING: snapshot the word, re-check the byte, then wait for the word to change;
          // the NIC stores the payload before it notifies the word, so no wake-up is lost.
          const w = Atomics.load(words, wordIdx);
          if (mem[pollAt] !== want) adaptiveWait(words, wordIdx, w, spinBudget, 1000);
        }
      }
      if (outstanding > 0) {
        const n = ibv.pollCq(cq, wcs.length, wcs);
        for (let i = 0; i < n; i++) check(wcs[i]);
        outstanding -= n;
      }
    }
    while (outstanding > 0) {
      const n = ibv.pollCq(cq, wcs.length, wcs);
      for (let i = 0; i < n; i++) check(wcs[i]);
      outstanding -= n;
      if (n === 0) ibv.waitCq(cq, { timeoutMs: 1000 });
    }
    const rttUs: number[] = [];
    for (let i = 1; i < a.iters; i++) rttUs.push((posts[i] - posts[i - 1]) * 1000);
    result = {
      role,
      transport: ctx.transport,
      test: a.test,
      size,
      iters: a.iters,
      rttUs: role === 'client' ? rttUs : undefined,
    };
  } else {
    let seconds = 0;
    let tposted: number[] | undefined;
    let tcompleted: number[] | undefined;
    if (role === 'client') {
      const posts = new Float64Array(a.iters);
      const comps = new Float64Array(a.iters);
      const wrs: ibv.SendWr[] = [];
      for (let i = 0; i < txDepth; i++) {
        wrs.push({
          wrId: i,
          opcode: WrOpcode.RDMA_WRITE,
          sendFlags: 0,
          sgList: [{ addr: buf, length: size, lkey: mr.lkey }],
          remoteAddr: remote.addr,
          rkey: remote.rkey,
        });
      }
      let posted = 0;
      let completed = 0;
      const t0 = performance.now();
      while (completed < a.iters) {
        while (posted < a.iters && posted - completed < txDepth) {
          const w = wrs[posted % txDepth];
          // Signal every cqMod-th WR and the last one, as perftest does.
          w.sendFlags = ((posted + 1) % cqMod === 0 || posted + 1 === a.iters ? SendFlags.SIGNALED : 0) | inline;
          w.wrId = posted;
          posts[posted] = performance.now();
          ibv.postSend(qp, w);
          posted++;
        }
        const n = ibv.pollCq(cq, wcs.length, wcs);
        const now = n > 0 ? performance.now() : 0;
        for (let i = 0; i < n; i++) {
          check(wcs[i]);
          const upTo = wcs[i].wrId + 1;
          for (let k = completed; k < upTo; k++) comps[k] = now;
          completed = upTo;
        }
        if (n === 0 && !ibv.waitCq(cq, { timeoutMs: 1000 })) {
          env.log(`write_bw: no completion for 1 s (posted ${posted}, completed ${completed})`);
        }
      }
      seconds = (performance.now() - t0) / 1000;
      tposted = Array.from(posts);
      tcompleted = Array.from(comps);
    }
    result = { role, transport: ctx.transport, test: a.test, size, iters: a.iters, seconds, tposted, tcompleted };
  }
  await ibv.exchangeConnInfo(env, { peerDomid: peer, name: `pt-${tag}-end`, info: { done: 1 } });
  await ibv.closeDevice(ctx);
  return result;
}
