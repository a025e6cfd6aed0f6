/**
 * The RDMA conformance subset between two guests on two host processes (test/integration/cluster):
 * the client RDMA-WRITEs a pattern into the server's buffer, RDMA-READs the server's own pattern
 * back, and SENDs a message with immediate data; the server checks what the WRITE and the SEND
 * delivered. Every check compares bytes, lengths and immediates; the program returns what it saw
 * so the test asserts on it.
 */

import * as ibv from '../../../../frontend/verbs/index.js';
import type { DomainEnv } from '../../../../protocol/Program.js';
import { Access, SendFlags, WcOpcode, WcStatus, WrOpcode, wcStatusName } from '../../../../protocol/rdma/Verbs.js';

const REGION = 16384;

function pattern(seed: number, i: number): number {
  return (i * 31 + seed * 7 + (i >> 5)) & 0xff;
}

function waitOne(cq: ibv.Cq): ibv.Wc {
  const wc = [ibv.emptyWc()];
  const end = Date.now() + 20_000;
  while (ibv.pollCq(cq, 1, wc) === 0) {
    if (Date.now() > end) throw new Error('no completion within 20 s');
    ibv.waitCq(cq, { timeoutMs: 100 });
  }
  return wc[0];
}

function ok(wc: ibv.Wc, what: string): ibv.Wc {
  if (wc.status !== WcStatus.SUCCESS) throw new Error(`${what}: ${wcStatusName(wc.status)}`);
  return wc;
}

export default async function main(env: DomainEnv): Promise<Record<string, unknown>> {
  const { self, peers } = env.args as { self: 'client' | 'server'; peers: Record<string, number> };
  const peer = peers[self === 'client' ? 'server' : 'client'];
  const ctx = await ibv.openDevice(env);
  const pd = ibv.allocPd(ctx);
  // [0, R): WRITE target (server) / source (client); [R, 2R): READ source (server) / target
  // (client); [2R, 3R): SEND buffer.
  const buf = ctx.allocBuffer(3 * REGION);
  const mr = ibv.regMr(pd, buf, 3 * REGION, Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ);
  const cq = ibv.createCq(ctx, 32);
  const qp = ibv.createQp(pd, {
    sendCq: cq,
    recvCq: cq,
    cap: { maxSendWr: 16, maxRecvWr: 16, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 },
    sqSigAll: true,
  });
  const mem = ctx.memory.view(buf, 3 * REGION);
  if (self === 'server') for (let i = 0; i < REGION; i++) mem[REGION + i] = pattern(2, i);
  const remote = await ibv.exchangeConnInfo(env, {
    peerDomid: peer,
    name: 'xc',
    info: { lid: ctx.portId, qpn: qp.qpNum, rkey: mr.rkey, addr: buf },
  });
  ibv.connectRcQp(qp, { destQpNum: remote.qpn, dlid: remote.lid }, mr.access);
  if (self === 'server')
    ibv.postRecv(qp, { wrId: 9, sgList: [{ addr: buf + 2 * REGION, length: REGION, lkey: mr.lkey }] });
  await ibv.exchangeConnInfo(env, { peerDomid: peer, name: 'xc-ready', info: { ready: 1 } });

  if (self === 'client') {
    for (let i = 0; i < REGION; i++) mem[i] = pattern(1, i);
    ibv.postSend(qp, {
      wrId: 1,
      opcode: WrOpcode.RDMA_WRITE,
      sgList: [{ addr: buf, length: REGION, lkey: mr.lkey }],
      remoteAddr: remote.addr,
      rkey: remote.rkey,
    });
    const w = ok(waitOne(cq), 'RDMA WRITE');
    ibv.postSend(qp, {
      wrId: 2,
      opcode: WrOpcode.RDMA_READ,
      sgList: [{ addr: buf + REGION, length: REGION, lkey: mr.lkey }],
      remoteAddr: remote.addr + REGION,
      rkey: remote.rkey,
    });
    const r = ok(waitOne(cq), 'RDMA READ');
    let readOk = true;
    for (let i = 0; i < REGION; i++) if (mem[REGION + i] !== pattern(2, i)) readOk = false;
    for (let i = 0; i < 1000; i++) mem[2 * REGION + i] = pattern(3, i);
    ibv.postSend(qp, {
      wrId: 3,
      opcode: WrOpcode.SEND_WITH_IMM,
      immData: 0x5eed,
      sendFlags: SendFlags.SIGNALED,
      sgList: [{ addr: buf + 2 * REGION, length: 1000, lkey: mr.lkey }],
    });
    const s = ok(waitOne(cq), 'SEND');
    // A bad rkey must come back as a remote access error, not land anywhere.
    ibv.postSend(qp, {
      wrId: 4,
      opcode: WrOpcode.RDMA_WRITE,
      sgList: [{ addr: buf, length: 64, lkey: mr.lkey }],
      remoteAddr: remote.addr,
      rkey: (remote.rkey ^ 0x5a5a) >>> 0,
    });
    const bad = waitOne(cq);
    await ibv.exchangeConnInfo(env, { peerDomid: peer, name: 'xc-done', info: { done: 1 } });
    return {
      write: { opcode: w.opcode === WcOpcode.RDMA_WRITE, byteLen: w.byteLen },
      read: { opcode: r.opcode === WcOpcode.RDMA_READ, byteLen: r.byteLen, dataOk: readOk },
      send: { opcode: s.opcode === WcOpcode.SEND },
      badRkey: wcStatusName(bad.status),
    };
  }
  const recv = ok(waitOne(cq), 'receive');
  let sendOk = true;
  for (let i = 0; i < 1000; i++) if (mem[2 * REGION + i] !== pattern(3, i)) sendOk = false;
  // The WRITE landed before the SEND (RC order): the region holds the client's pattern.
  let writeOk = true;
  for (let i = 0; i < REGION; i++) if (mem[i] !== pattern(1, i)) writeOk = false;
  await ibv.exchangeConnInfo(env, { peerDomid: peer, name: 'xc-done', info: { done: 1 } });
  return {
    recv: { opcode: recv.opcode === WcOpcode.RECV, byteLen: recv.byteLen, imm: recv.immData, dataOk: sendOk },
    writeOk,
  };
}
