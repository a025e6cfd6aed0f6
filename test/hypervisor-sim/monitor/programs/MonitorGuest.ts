/**
 * Guest program of the monitor tests: moves real traffic over a paravirt device, then HOLDS
 * the device open so the main thread can snapshot it mid-run, then closes it.
 *  - `kind: 'blk'`: writes and reads back `rounds` 8-sector blocks through blkfront;
 *  - `kind: 'rdma'`: two RC QPs of its own vrdma device, connected to each other through the
 *    NIC, RDMA-WRITE `rounds` times (each WR goes over the data ring to dom0's backend).
 * Then it writes `data/monitor/ready` in its own store subtree and polls `data/monitor/go`
 * (written by the test) before closing; after closing it writes `data/monitor/closed` and
 * polls `data/monitor/exit`, so the test can look at the monitor while the guest still runs
 * with its device gone. Returns what it did.
 */

import { openBlock } from '../../../../frontend/blk/Block.js';
import * as ibv from '../../../../frontend/verbs/index.js';
import type { DomainEnv } from '../../../../protocol/Program.js';
import { Access, WcStatus, WrOpcode, wcStatusName } from '../../../../protocol/rdma/Verbs.js';
import { type GuestPhysAddr, PAGE_SIZE } from '../../../../protocol/Types.js';

/** Store key (under /local/domain/<domid>/) the guest writes when its traffic is done. */
export const READY_KEY = 'data/monitor/ready';
/** Store key the test writes to let the guest close its device. */
export const GO_KEY = 'data/monitor/go';
/** Store key the guest writes once its device is closed. */
export const CLOSED_KEY = 'data/monitor/closed';
/** Store key the test writes to let the guest return. */
export const EXIT_KEY = 'data/monitor/exit';

/** Writes `signal` in our store subtree, then polls (without blocking the thread) until `wait` exists. */
async function signalAndWait(env: DomainEnv, signal: string, wait: string): Promise<void> {
  const base = `/local/domain/${env.domid}`;
  await env.hypercalls.store.write(`${base}/${signal}`, '1');
  const deadline = performance.now() + 60_000;
  while ((await env.hypercalls.store.tryRead(`${base}/${wait}`)) === undefined) {
    if (performance.now() > deadline) throw new Error(`the test never wrote ${wait}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function blk(env: DomainEnv, rounds: number): Promise<number> {
  const dev = await openBlock(env);
  const mem = env.hypercalls.memory;
  const buf = mem.allocPages(2) as GuestPhysAddr;
  const bytes = 8 * dev.sectorSize;
  const view = mem.view(buf, bytes);
  let mismatches = 0;
  for (let i = 0; i < rounds; i++) {
    view.fill(i & 0xff);
    await dev.wait(dev.write(i * 8, 8, buf));
    view.fill(0);
    await dev.wait(dev.read(i * 8, 8, buf));
    if (view.some((b) => b !== (i & 0xff))) mismatches++;
  }
  await signalAndWait(env, READY_KEY, GO_KEY);
  await dev.close();
  return mismatches;
}

function waitOne(cq: ibv.Cq): ibv.Wc {
  const wc = [ibv.emptyWc()];
  while (ibv.pollCq(cq, 1, wc) === 0) ibv.waitCq(cq, { timeoutMs: 1000 });
  if (wc[0].status !== WcStatus.SUCCESS) throw new Error(`WR failed: ${wcStatusName(wc[0].status)}`);
  return wc[0];
}

async function rdma(env: DomainEnv, rounds: number): Promise<number> {
  const ctx = await ibv.openDevice(env);
  const pd = ibv.allocPd(ctx);
  const size = 4 * PAGE_SIZE;
  const buf = ctx.allocBuffer(2 * size);
  const access = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
  const mr = ibv.regMr(pd, buf, 2 * size, access);
  const cq = ibv.createCq(ctx, 16);
  const cap = { maxSendWr: 8, maxRecvWr: 8, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 };
  const a = ibv.createQp(pd, { sendCq: cq, recvCq: cq, cap, sqSigAll: true });
  const b = ibv.createQp(pd, { sendCq: cq, recvCq: cq, cap, sqSigAll: true });
  ibv.connectRcQp(a, { destQpNum: b.qpNum, dlid: ctx.portId }, access);
  ibv.connectRcQp(b, { destQpNum: a.qpNum, dlid: ctx.portId }, access);
  const mem = ctx.memory.view(buf, 2 * size);
  let mismatches = 0;
  for (let i = 0; i < rounds; i++) {
    mem.fill((i + 1) & 0xff, 0, size);
    const sg = [{ addr: buf, length: size, lkey: mr.lkey }];
    ibv.postSend(a, { wrId: i, opcode: WrOpcode.RDMA_WRITE, sgList: sg, remoteAddr: buf + size, rkey: mr.rkey });
    waitOne(cq);
    if (mem[size + 17] !== ((i + 1) & 0xff)) mismatches++;
  }
  await signalAndWait(env, READY_KEY, GO_KEY);
  await ibv.closeDevice(ctx);
  return mismatches;
}

export default async function main(env: DomainEnv): Promise<{ kind: string; rounds: number; mismatches: number }> {
  const { kind, rounds } = env.args as { kind: 'blk' | 'rdma'; rounds: number };
  const mismatches = kind === 'blk' ? await blk(env, rounds) : await rdma(env, rounds);
  await signalAndWait(env, CLOSED_KEY, EXIT_KEY);
  return { kind, rounds, mismatches };
}
