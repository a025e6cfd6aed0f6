/**
 * A guest program written against the public verbs API only (`frontend/verbs/index.ts`): it opens
 * its tcp device with `openDevice`, which loads TcpProvider through the provider loader, connects
 * an RC QP with `connectRcQp`, and plays one side of an echo exchange using `postSend`,
 * `postRecv`, `pollCq` and `waitCq` (bounded). The test wires two of these together.
 *
 * Messages: test → worker `{ op: 'connect', remote }`, `{ op: 'run', role, rounds }`,
 * `{ op: 'close' }`; worker → test `{ ok, value | error }` per message, and first `{ ok, value:
 * info }` once the device is open.
 */

import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import * as ibv from '../../../../../frontend/verbs/index.js';
import { SharedArrayGuestMemory } from '../../../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import { toWireError } from '../../../../../protocol/errors.js';
import type { Hypercalls } from '../../../../../protocol/Hypercalls.js';
import type { DomainEnv } from '../../../../../protocol/Program.js';
import { Access, WcFlags, WcOpcode, WcStatus, WrOpcode } from '../../../../../protocol/rdma/Verbs.js';
import type { DomId, GuestPhysAddr } from '../../../../../protocol/Types.js';
import { fillPattern, firstMismatch } from './pattern.js';

/** What a side tells the other (perftest's exchange). */
export interface VerbsInfo {
  readonly qpn: number;
  readonly lid: number;
  readonly addr: number;
  readonly rkey: number;
}

const ALL = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
const MSG = 4096;

function unavailable<T extends object>(what: string): T {
  return new Proxy({} as T, {
    get() {
      throw new Error(`${what} is not available to the verbs test peer`);
    },
  });
}

async function main(name: string): Promise<void> {
  const port = parentPort!;
  const mem = SharedArrayGuestMemory.create(2 as DomId, 8 * 1024 * 1024);
  const hypercalls: Hypercalls = {
    domid: 2 as DomId,
    memory: mem,
    grant: unavailable('grant'),
    evtchn: unavailable('evtchn'),
    store: unavailable('store'),
  };
  const env: DomainEnv = {
    domid: 2 as DomId,
    name,
    hypercalls,
    devices: [{ device: 'tcp0', kind: 'rdma-nic', transport: 'tcp' }],
    args: {},
    log: () => {},
  };
  const ctx = await ibv.openDevice(env);
  const pd = ibv.allocPd(ctx);
  const buf = ctx.allocBuffer(64 * MSG);
  const mr = ibv.regMr(pd, buf, 64 * MSG, ALL);
  const scq = ibv.createCq(ctx, 64);
  const rcq = ibv.createCq(ctx, 64);
  const cap = { maxSendWr: 32, maxRecvWr: 32, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 };
  const qp = ibv.createQp(pd, { sendCq: scq, recvCq: rcq, cap, sqSigAll: true });
  const wc = [ibv.emptyWc()];

  /** One completion from `cq` (bounded wait). */
  const next = (cq: ibv.Cq): ibv.Wc => {
    const deadline = performance.now() + 10_000;
    while (ibv.pollCq(cq, 1, wc) === 0) {
      const left = deadline - performance.now();
      if (left <= 0 || !ibv.waitCq(cq, { timeoutMs: left })) throw new Error(`no completion on CQ ${cq.handle}`);
    }
    if (wc[0].status !== WcStatus.SUCCESS) throw new Error(`wr ${wc[0].wrId}: ${ibv.wcStatusName(wc[0].status)}`);
    return { ...wc[0] };
  };
  const recvAt = (i: number): ibv.RecvWr => ({
    wrId: 1000 + i,
    sgList: [{ addr: buf + (32 + (i % 16)) * MSG, length: MSG, lkey: mr.lkey }],
  });

  /** Client: send round i, expect it echoed; server: receive, echo. Then a WRITE_WITH_IMM. */
  const run = (role: 'client' | 'server', rounds: number, remote: VerbsInfo): number => {
    for (let i = 0; i < 16; i++) ibv.postRecv(qp, recvAt(i));
    for (let i = 0; i < rounds; i++) {
      if (role === 'client') {
        fillPattern(mem.bytes, buf, MSG, i);
        ibv.postSend(qp, { wrId: i, opcode: WrOpcode.SEND, sgList: [{ addr: buf, length: MSG, lkey: mr.lkey }] });
        next(scq);
      }
      const r = next(rcq);
      if (r.opcode !== WcOpcode.RECV || r.byteLen !== MSG) throw new Error(`round ${i}: ${JSON.stringify(r)}`);
      const at = buf + (32 + ((r.wrId - 1000) % 16)) * MSG;
      const bad = firstMismatch(mem.bytes, at, MSG, i);
      if (bad >= 0) throw new Error(`round ${i}: byte ${bad} differs`);
      ibv.postRecv(qp, recvAt(r.wrId - 1000 + 16));
      if (role === 'server') {
        ibv.postSend(qp, { wrId: i, opcode: WrOpcode.SEND, sgList: [{ addr: at, length: MSG, lkey: mr.lkey }] });
        next(scq);
      }
    }
    if (role === 'client') {
      fillPattern(mem.bytes, buf + MSG, MSG, 99);
      ibv.postSend(qp, {
        wrId: 9,
        opcode: WrOpcode.RDMA_WRITE_WITH_IMM,
        immData: 0x1234,
        sgList: [{ addr: buf + MSG, length: MSG, lkey: mr.lkey }],
        remoteAddr: remote.addr + MSG,
        rkey: remote.rkey,
      });
      next(scq);
    } else {
      const r = next(rcq);
      if (r.opcode !== WcOpcode.RECV_RDMA_WITH_IMM || r.immData !== 0x1234 || !(r.wcFlags & WcFlags.WITH_IMM)) {
        throw new Error(`WRITE_WITH_IMM completion ${JSON.stringify(r)}`);
      }
      const bad = firstMismatch(mem.bytes, buf + MSG, MSG, 99);
      if (bad >= 0) throw new Error(`WRITE_WITH_IMM byte ${bad} differs`);
    }
    return rounds;
  };

  let remote: VerbsInfo | undefined;
  port.on('message', async (m: { op: string; remote?: VerbsInfo; role?: 'client' | 'server'; rounds?: number }) => {
    try {
      let value: unknown;
      if (m.op === 'connect') {
        remote = m.remote!;
        ibv.connectRcQp(qp, { destQpNum: remote.qpn, dlid: remote.lid }, ALL);
      } else if (m.op === 'run') value = run(m.role!, m.rounds!, remote!);
      else if (m.op === 'close') {
        await ibv.closeDevice(ctx);
        value = mem.freePageCount() === mem.pageCount;
      }
      port.postMessage({ ok: true, value });
    } catch (err) {
      port.postMessage({ ok: false, error: toWireError(err) });
    }
  });
  const info: VerbsInfo = { qpn: qp.qpNum, lid: ctx.portId, addr: buf as GuestPhysAddr, rkey: mr.rkey };
  port.postMessage({ ok: true, value: info });
}

if (!isMainThread) void main(workerData as string);
