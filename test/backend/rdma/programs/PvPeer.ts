/**
 * Guest program of the paravirtual end-to-end test (real Workers through the Host). Two guests
 * run it: "a" initiates RDMA WRITE, RDMA READ and SEND of several sizes, "b" is the target; they
 * meet at barriers through the store and verify every byte by checksum, and each step ends with
 * an acknowledgement so the next one never overwrites data the peer is still checking. A third
 * role, "victim", only sets up resources, says so in the store and waits to be killed.
 *
 * Arguments: `role`, `peer` (the other guest's domid), `sizes`.
 */

import * as ibv from '../../../../frontend/verbs/index.js';
import type { DomainEnv } from '../../../../protocol/Program.js';
import {
  Access,
  QpAttrMask,
  QpState,
  SendFlags,
  WcOpcode,
  WcStatus,
  WrOpcode,
  wcStatusName,
} from '../../../../protocol/rdma/Verbs.js';
import { fnv1a } from '../../../../protocol/ring/IoSlot.js';
import type { GuestPhysAddr } from '../../../../protocol/Types.js';

const ALL = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
/** Region size; the buffer holds three: WRITE target, READ source, SEND target. */
const REGION = 1 << 20;

interface Args {
  role: 'a' | 'b' | 'victim';
  peer?: number;
  sizes?: number[];
}

/** Result of one guest. */
export interface PeerResult {
  transport: string;
  portId: number;
  checks: number;
  failures: string[];
}

export default async function main(env: DomainEnv): Promise<PeerResult> {
  const args = env.args as unknown as Args;
  const ctx = await ibv.openDevice(env);
  const pd = ibv.allocPd(ctx);
  const buf = ctx.allocBuffer(3 * REGION);
  const mr = ibv.regMr(pd, buf, 3 * REGION, ALL);
  const cq = ibv.createCq(ctx, 256);
  const qp = ibv.createQp(pd, {
    sendCq: cq,
    recvCq: cq,
    cap: { maxSendWr: 64, maxRecvWr: 64, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 },
  });
  if (args.role === 'victim') {
    ibv.modifyQp(
      qp,
      { qpState: QpState.INIT, pkeyIndex: 0, portNum: 1, qpAccessFlags: ALL },
      QpAttrMask.STATE | QpAttrMask.PKEY_INDEX | QpAttrMask.PORT | QpAttrMask.ACCESS_FLAGS,
    );
    ibv.postRecv(qp, { wrId: 1, sgList: [{ addr: buf, length: 4096, lkey: mr.lkey }] });
    await env.hypercalls.store.write(`/local/domain/${env.domid}/data/ready`, '1');
    // Killed by the host; a ref'd timer keeps the worker alive until then.
    await new Promise(() => setInterval(() => {}, 1000));
  }
  const peer = args.peer as number;
  let step = 0;
  const barrier = <T extends ibv.ConnInfo>(info: T): Promise<T> =>
    ibv.exchangeConnInfo(env, { peerDomid: peer, name: `pv-e2e-${step++}`, info, timeoutMs: 60_000 });
  const failures: string[] = [];
  let checks = 0;
  const check = (ok: boolean, what: string): void => {
    checks++;
    if (!ok) failures.push(what);
  };
  const view = (off: number, len: number) => ctx.memory.view((buf + off) as GuestPhysAddr, len);
  const fill = (off: number, len: number, seed: number): number => {
    const v = view(off, len);
    let x = (seed * 2654435761) >>> 0 || 1;
    for (let i = 0; i < len; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      v[i] = x & 0xff;
    }
    return fnv1a(v, 0, len);
  };
  const sum = (off: number, len: number): number => fnv1a(view(off, len), 0, len);
  const wcs = Array.from({ length: 4 }, ibv.emptyWc);
  const take = (what: string): ibv.Wc => {
    const deadline = performance.now() + 30_000;
    while (ibv.pollCq(cq, 1, wcs) === 0) {
      if (performance.now() > deadline) throw new Error(`no completion for ${what}`);
      ibv.waitCq(cq, { timeoutMs: 1000 });
    }
    return { ...wcs[0] };
  };

  const remote = await barrier({ qpn: qp.qpNum, lid: ctx.portId, addr: buf, rkey: mr.rkey });
  ibv.connectRcQp(qp, { destQpNum: remote.qpn, dlid: remote.lid }, ALL);
  await barrier({ ready: 1 });

  for (const size of args.sizes ?? [1, 4097, 65_536, REGION]) {
    // RDMA WRITE a → b (region 0).
    if (args.role === 'a') {
      const s = fill(0, size, size);
      ibv.postSend(qp, {
        wrId: size,
        opcode: WrOpcode.RDMA_WRITE,
        sendFlags: SendFlags.SIGNALED,
        sgList: [{ addr: buf, length: size, lkey: mr.lkey }],
        remoteAddr: remote.addr,
        rkey: remote.rkey,
      });
      const wc = take(`WRITE ${size}`);
      check(wc.status === WcStatus.SUCCESS && wc.wrId === size, `WRITE ${size}: ${wcStatusName(wc.status)}`);
      await barrier({ sum: s });
    } else {
      const peerSum = (await barrier({ sum: 0 })).sum;
      check(sum(0, size) === peerSum, `WRITE ${size}: data`);
    }
    await barrier({ ack: 1 });

    // RDMA READ a ← b (b's region 1 into a's region 1).
    if (args.role === 'b') {
      await barrier({ sum: fill(REGION, size, size + 1) });
    } else {
      const peerSum = (await barrier({ sum: 0 })).sum;
      ibv.postSend(qp, {
        wrId: size + 1,
        opcode: WrOpcode.RDMA_READ,
        sendFlags: SendFlags.SIGNALED,
        sgList: [{ addr: buf + REGION, length: size, lkey: mr.lkey }],
        remoteAddr: remote.addr + REGION,
        rkey: remote.rkey,
      });
      const wc = take(`READ ${size}`);
      check(
        wc.status === WcStatus.SUCCESS && wc.opcode === WcOpcode.RDMA_READ,
        `READ ${size}: ${wcStatusName(wc.status)}`,
      );
      check(sum(REGION, size) === peerSum, `READ ${size}: data`);
    }
    await barrier({ ack: 2 });

    // SEND a → b (into b's region 2).
    if (args.role === 'b') {
      ibv.postRecv(qp, { wrId: size + 2, sgList: [{ addr: buf + 2 * REGION, length: REGION, lkey: mr.lkey }] });
      const peerSum = (await barrier({ sum: 0 })).sum;
      const wc = take(`RECV ${size}`);
      check(wc.status === WcStatus.SUCCESS && wc.opcode === WcOpcode.RECV, `RECV ${size}: ${wcStatusName(wc.status)}`);
      check(wc.byteLen === size && wc.wrId === size + 2, `RECV ${size}: byte_len ${wc.byteLen}, wr_id ${wc.wrId}`);
      check(sum(2 * REGION, size) === peerSum, `SEND ${size}: data`);
    } else {
      const s = fill(2 * REGION, size, size + 2);
      await barrier({ sum: s });
      ibv.postSend(qp, {
        wrId: size + 2,
        opcode: WrOpcode.SEND,
        sendFlags: SendFlags.SIGNALED,
        sgList: [{ addr: buf + 2 * REGION, length: size, lkey: mr.lkey }],
      });
      const wc = take(`SEND ${size}`);
      check(wc.status === WcStatus.SUCCESS, `SEND ${size}: ${wcStatusName(wc.status)}`);
    }
    await barrier({ ack: 3 });
  }
  const out: PeerResult = { transport: ctx.transport, portId: ctx.portId, checks, failures };
  await ibv.closeDevice(ctx);
  return out;
}
