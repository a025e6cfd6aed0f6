/**
 * Example guest program: the same code runs over every transport (paravirt, paravirt-copy,
 * passthrough, native, tcp). Two guests, "client" and "server", meet through the store, connect
 * an RC queue pair, and then:
 *   1. the client RDMA-WRITEs 1 MiB of data into the server's buffer,
 *   2. the client SENDs a 4-byte "done" message carrying the length,
 *   3. the server checksums what landed and RDMA-WRITEs the checksum back WITH_IMM,
 *   4. the client compares it with its own checksum.
 * Both print the same lines whatever the transport.
 */

import * as ibv from '../frontend/verbs/index.js';
import type { DomainEnv } from '../protocol/Program.js';
import { Access, SendFlags, WcStatus, WrOpcode, wcStatusName } from '../protocol/rdma/Verbs.js';
import { fnv1a } from '../protocol/ring/IoSlot.js';

const SIZE = 1 << 20;

function expectOk(wc: ibv.Wc, what: string): void {
  if (wc.status !== WcStatus.SUCCESS) throw new Error(`${what} failed: ${wcStatusName(wc.status)}`);
}

function waitOne(cq: ibv.Cq): ibv.Wc {
  const wc = [ibv.emptyWc()];
  while (ibv.pollCq(cq, 1, wc) === 0) ibv.waitCq(cq, { timeoutMs: 1000 });
  return wc[0];
}

export default async function main(env: DomainEnv): Promise<{ checksum: string; verified: boolean }> {
  const { self, peers } = env.args as { self: 'client' | 'server'; peers: Record<string, number> };
  const peer = peers[self === 'client' ? 'server' : 'client'];

  const ctx = await ibv.openDevice(env);
  const pd = ibv.allocPd(ctx);
  const buf = ctx.allocBuffer(SIZE + 4096);
  const mr = ibv.regMr(pd, buf, SIZE + 4096, Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ);
  const cq = ibv.createCq(ctx, 16);
  const qp = ibv.createQp(pd, {
    sendCq: cq,
    recvCq: cq,
    cap: { maxSendWr: 16, maxRecvWr: 16, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 },
    sqSigAll: true,
  });
  const remote = await ibv.exchangeConnInfo(env, {
    peerDomid: peer,
    name: 'hello',
    info: { lid: ctx.portId, qpn: qp.qpNum, rkey: mr.rkey, addr: buf },
  });
  ibv.connectRcQp(qp, { destQpNum: remote.qpn, dlid: remote.lid }, mr.access);
  ibv.postRecv(qp, { wrId: 1, sgList: [{ addr: buf + SIZE, length: 64, lkey: mr.lkey }] });
  await ibv.exchangeConnInfo(env, { peerDomid: peer, name: 'hello-ready', info: { ready: 1 } });

  const mem = ctx.memory.view(buf, SIZE + 4096);
  let checksum = 0;
  let verified = false;
  if (self === 'client') {
    for (let i = 0; i < SIZE; i++) mem[i] = (i * 7 + (i >> 8)) & 0xff;
    checksum = fnv1a(mem, 0, SIZE);
    const sg = [{ addr: buf, length: SIZE, lkey: mr.lkey }];
    ibv.postSend(qp, { wrId: 2, opcode: WrOpcode.RDMA_WRITE, sgList: sg, remoteAddr: remote.addr, rkey: remote.rkey });
    expectOk(waitOne(cq), 'RDMA WRITE');
    new DataView(mem.buffer, mem.byteOffset + SIZE + 64, 4).setUint32(0, SIZE, true);
    ibv.postSend(qp, {
      wrId: 3,
      opcode: WrOpcode.SEND,
      sendFlags: SendFlags.SIGNALED,
      sgList: [{ addr: buf + SIZE + 64, length: 4, lkey: mr.lkey }],
    });
    expectOk(waitOne(cq), 'SEND');
    const back = waitOne(cq); // the server's WRITE_WITH_IMM consumed our receive
    expectOk(back, 'WRITE_WITH_IMM from the server');
    verified = back.immData === checksum;
    env.log(`client: wrote ${SIZE} bytes, checksum 0x${checksum.toString(16)}; server saw the same: ${verified}`);
  } else {
    const done = waitOne(cq);
    expectOk(done, 'receive');
    const len = new DataView(mem.buffer, mem.byteOffset + SIZE, 4).getUint32(0, true);
    checksum = fnv1a(mem, 0, len);
    verified = len === SIZE;
    env.log(`server: received ${len} bytes by RDMA WRITE, checksum 0x${checksum.toString(16)}`);
    ibv.postSend(qp, {
      wrId: 4,
      opcode: WrOpcode.RDMA_WRITE_WITH_IMM,
      immData: checksum,
      sgList: [],
      remoteAddr: remote.addr + SIZE,
      rkey: remote.rkey,
    });
    expectOk(waitOne(cq), 'WRITE_WITH_IMM');
  }
  await ibv.exchangeConnInfo(env, { peerDomid: peer, name: 'hello-done', info: { done: 1 } });
  await ibv.closeDevice(ctx);
  return { checksum: `0x${checksum.toString(16)}`, verified };
}
