/**
 * The RDMA conformance suite, as a guest program: written once, run unchanged over every
 * transport. Two guests run it together ("a" issues operations, "b" is the target); each case
 * records 'ok' or what went wrong, and the mocha suite asserts every case on both sides.
 */

import assert from 'node:assert/strict';
import * as ibv from '../../../../frontend/verbs/index.js';
import type { DomainEnv } from '../../../../protocol/Program.js';
import { CqWord } from '../../../../protocol/rdma/Cq.js';
import {
  Access,
  QpAttrMask,
  QpState,
  SendFlags,
  WcFlags,
  WcOpcode,
  WcStatus,
  WrOpcode,
  wcStatusName,
} from '../../../../protocol/rdma/Verbs.js';
import type { GuestPhysAddr } from '../../../../protocol/Types.js';
import {
  ALL,
  BUF,
  barrier,
  connect,
  disconnect,
  drain,
  fill,
  MAX_SIZE,
  openSide,
  SIZES,
  type Side,
  sum,
  take,
} from './Harness.js';

/** The peer's registered memory, exchanged once. */
interface Remote {
  addr: number;
  rkey: number;
  roAddr: number;
  roRkey: number;
  localAddr: number;
  localRkey: number;
}

type Case = (s: Side, r: Remote) => Promise<void>;

function status(wc: ibv.Wc, want: WcStatus): void {
  assert.equal(wcStatusName(wc.status), wcStatusName(want), `wr ${wc.wrId}`);
}

/** a posts one WR on a fresh connection and expects `want`; b only takes part in the setup. */
async function expectError(
  s: Side,
  wr: ibv.SendWr,
  want: WcStatus,
  conn?: { rnrRetry?: number; minRnrTimer?: number },
): Promise<void> {
  const c = await connect(s, conn);
  if (s.role === 'a') {
    ibv.postSend(c.qp, { ...wr, sendFlags: SendFlags.SIGNALED });
    status(take(c.scq, 1)[0], want);
  }
  await barrier(s, { done: 1 });
  disconnect(c);
}

const CASES: Record<string, Case> = {
  'RDMA_WRITE delivers every size from 1 B to 8 MiB, odd sizes included': async (s, r) => {
    const c = await connect(s);
    for (const size of SIZES) {
      if (s.role === 'a') {
        fill(s, s.buf, size, size);
        ibv.postSend(c.qp, {
          wrId: size,
          opcode: WrOpcode.RDMA_WRITE,
          sendFlags: SendFlags.SIGNALED,
          sgList: [{ addr: s.buf, length: size, lkey: s.mrAll.lkey }],
          remoteAddr: r.addr,
          rkey: r.rkey,
        });
        status(take(c.scq, 1)[0], WcStatus.SUCCESS);
        await barrier(s, { sum: sum(s, s.buf, size) });
      } else {
        const peer = await barrier(s, { sum: 0 });
        assert.equal(sum(s, s.buf, size), peer.sum, `data of a ${size}-byte WRITE`);
      }
      // b checks before a overwrites the buffer with the next size.
      await barrier(s, { next: 1 });
    }
    disconnect(c);
  },

  'RDMA_READ returns every size from 1 B to 8 MiB': async (s, r) => {
    const c = await connect(s);
    for (const size of SIZES) {
      if (s.role === 'b') {
        fill(s, s.buf, size, size + 7);
        await barrier(s, { sum: sum(s, s.buf, size) });
      } else {
        const peer = await barrier(s, { sum: 0 });
        ibv.postSend(c.qp, {
          wrId: size,
          opcode: WrOpcode.RDMA_READ,
          sendFlags: SendFlags.SIGNALED,
          sgList: [{ addr: s.buf, length: size, lkey: s.mrAll.lkey }],
          remoteAddr: r.addr,
          rkey: r.rkey,
        });
        const wc = take(c.scq, 1)[0];
        status(wc, WcStatus.SUCCESS);
        assert.equal(wc.opcode, WcOpcode.RDMA_READ);
        assert.equal(sum(s, s.buf, size), peer.sum, `data of a ${size}-byte READ`);
      }
      await barrier(s, { next: 1 });
    }
    disconnect(c);
  },

  'SEND lands in the posted receive for every size, with byte_len': async (s) => {
    const c = await connect(s);
    for (const size of SIZES) {
      if (s.role === 'b')
        ibv.postRecv(c.qp, { wrId: size, sgList: [{ addr: s.buf, length: MAX_SIZE, lkey: s.mrAll.lkey }] });
      await barrier(s, { posted: 1 });
      if (s.role === 'a') {
        fill(s, s.buf, size, size + 13);
        ibv.postSend(c.qp, {
          wrId: size,
          opcode: WrOpcode.SEND,
          sendFlags: SendFlags.SIGNALED,
          sgList: [{ addr: s.buf, length: size, lkey: s.mrAll.lkey }],
        });
        status(take(c.scq, 1)[0], WcStatus.SUCCESS);
        await barrier(s, { sum: sum(s, s.buf, size) });
      } else {
        const wc = take(c.rcq, 1)[0];
        status(wc, WcStatus.SUCCESS);
        assert.equal(wc.opcode, WcOpcode.RECV);
        assert.equal(wc.byteLen, size);
        assert.equal(wc.wrId, size);
        const peer = await barrier(s, { sum: 0 });
        assert.equal(sum(s, s.buf, size), peer.sum, `data of a ${size}-byte SEND`);
      }
      await barrier(s, { next: 1 });
    }
    disconnect(c);
  },

  'RDMA_WRITE_WITH_IMM consumes a receive and delivers the immediate': async (s, r) => {
    const c = await connect(s);
    for (const size of [1, 4096, 65_537, 1 << 20]) {
      if (s.role === 'b') ibv.postRecv(c.qp, { wrId: 900 + size, sgList: [] });
      await barrier(s, { posted: 1 });
      if (s.role === 'a') {
        fill(s, s.buf, size, size + 21);
        ibv.postSend(c.qp, {
          wrId: size,
          opcode: WrOpcode.RDMA_WRITE_WITH_IMM,
          sendFlags: SendFlags.SIGNALED,
          immData: 0xc0ffee00 + (size & 0xff),
          sgList: [{ addr: s.buf, length: size, lkey: s.mrAll.lkey }],
          remoteAddr: r.addr,
          rkey: r.rkey,
        });
        status(take(c.scq, 1)[0], WcStatus.SUCCESS);
        await barrier(s, { sum: sum(s, s.buf, size) });
      } else {
        const wc = take(c.rcq, 1)[0];
        status(wc, WcStatus.SUCCESS);
        assert.equal(wc.opcode, WcOpcode.RECV_RDMA_WITH_IMM);
        assert.ok(wc.wcFlags & WcFlags.WITH_IMM, 'WITH_IMM flag');
        assert.equal(wc.immData, (0xc0ffee00 + (size & 0xff)) >>> 0);
        assert.equal(wc.byteLen, size);
        assert.equal(wc.wrId, 900 + size);
        const peer = await barrier(s, { sum: 0 });
        assert.equal(sum(s, s.buf, size), peer.sum);
      }
      await barrier(s, { next: 1 });
    }
    disconnect(c);
  },

  'unsignaled WRs complete silently; the signaled one after them completes': async (s, r) => {
    const c = await connect(s);
    if (s.role === 'a') {
      fill(s, s.buf, 32 * 64, 99);
      const wrs: ibv.SendWr[] = [];
      for (let i = 0; i < 32; i++) {
        wrs.push({
          wrId: i,
          opcode: WrOpcode.RDMA_WRITE,
          sendFlags: i === 31 ? SendFlags.SIGNALED : 0,
          sgList: [{ addr: s.buf + i * 64, length: 64, lkey: s.mrAll.lkey }],
          remoteAddr: r.addr + i * 64,
          rkey: r.rkey,
        });
      }
      ibv.postSend(c.qp, wrs);
      const got = take(c.scq, 1);
      assert.equal(got[0].wrId, 31);
      status(got[0], WcStatus.SUCCESS);
      assert.equal(drain(c.scq).length, 0, 'no completion for unsignaled WRs');
      await barrier(s, { sum: sum(s, s.buf, 32 * 64) });
    } else {
      const peer = await barrier(s, { sum: 0 });
      assert.equal(sum(s, s.buf, 32 * 64), peer.sum);
    }
    disconnect(c);
  },

  'many outstanding WRs complete in order': async (s, r) => {
    const c = await connect(s, { depth: 128, cqe: 256 });
    if (s.role === 'a') {
      const wrs: ibv.SendWr[] = [];
      for (let i = 0; i < 128; i++) {
        wrs.push({
          wrId: 1000 + i,
          opcode: i % 2 ? WrOpcode.RDMA_WRITE : WrOpcode.RDMA_READ,
          sendFlags: SendFlags.SIGNALED,
          sgList: [{ addr: s.buf + i * 4096, length: 4096, lkey: s.mrAll.lkey }],
          remoteAddr: r.addr + i * 4096,
          rkey: r.rkey,
        });
      }
      ibv.postSend(c.qp, wrs);
      const got = take(c.scq, 128);
      got.forEach((wc, i) => {
        status(wc, WcStatus.SUCCESS);
        assert.equal(wc.wrId, 1000 + i, 'in order');
      });
    }
    await barrier(s, { done: 1 });
    disconnect(c);
  },

  'invalid QP state transitions are rejected and change nothing': async (s) => {
    const cq = ibv.createCq(s.ctx, 16);
    const qp = ibv.createQp(s.pd, {
      sendCq: cq,
      recvCq: cq,
      cap: { maxSendWr: 16, maxRecvWr: 16, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 },
      sqSigAll: false,
    });
    const bad = { code: 'PV_ERR_RDMA_BAD_TRANSITION' };
    assert.throws(
      () => ibv.modifyQp(qp, { qpState: QpState.RTS, sqPsn: 0 }, QpAttrMask.STATE | QpAttrMask.SQ_PSN),
      bad,
    );
    assert.throws(
      () => ibv.modifyQp(qp, { qpState: QpState.INIT }, QpAttrMask.STATE),
      bad,
      'INIT needs port, pkey, access',
    );
    ibv.modifyQp(
      qp,
      { qpState: QpState.INIT, pkeyIndex: 0, portNum: 1, qpAccessFlags: ALL },
      QpAttrMask.STATE | QpAttrMask.PKEY_INDEX | QpAttrMask.PORT | QpAttrMask.ACCESS_FLAGS,
    );
    assert.throws(
      () => ibv.modifyQp(qp, { qpState: QpState.RTS, sqPsn: 0 }, QpAttrMask.STATE | QpAttrMask.SQ_PSN),
      bad,
    );
    ibv.destroyQp(qp);
    ibv.destroyCq(cq);
  },

  'WRITE into memory registered without REMOTE_WRITE fails with REM_ACCESS_ERR': async (s, r) => {
    await expectError(
      s,
      {
        wrId: 1,
        opcode: WrOpcode.RDMA_WRITE,
        sgList: [{ addr: s.buf, length: 16, lkey: s.mrAll.lkey }],
        remoteAddr: r.roAddr,
        rkey: r.roRkey,
      },
      WcStatus.REM_ACCESS_ERR,
    );
  },

  "READ of another guest's memory without REMOTE_READ fails with REM_ACCESS_ERR": async (s, r) => {
    await expectError(
      s,
      {
        wrId: 2,
        opcode: WrOpcode.RDMA_READ,
        sgList: [{ addr: s.buf, length: 16, lkey: s.mrAll.lkey }],
        remoteAddr: r.localAddr,
        rkey: r.localRkey,
      },
      WcStatus.REM_ACCESS_ERR,
    );
  },

  'a forged rkey fails with REM_ACCESS_ERR': async (s, r) => {
    await expectError(
      s,
      {
        wrId: 3,
        opcode: WrOpcode.RDMA_READ,
        sgList: [{ addr: s.buf, length: 16, lkey: s.mrAll.lkey }],
        remoteAddr: r.addr,
        rkey: (r.rkey ^ 0x5a) >>> 0,
      },
      WcStatus.REM_ACCESS_ERR,
    );
  },

  'a remote range past the end of the MR fails with REM_ACCESS_ERR': async (s, r) => {
    await expectError(
      s,
      {
        wrId: 4,
        opcode: WrOpcode.RDMA_WRITE,
        sgList: [{ addr: s.buf, length: 100, lkey: s.mrAll.lkey }],
        remoteAddr: r.addr + BUF - 10,
        rkey: r.rkey,
      },
      WcStatus.REM_ACCESS_ERR,
    );
  },

  'a forged lkey fails with LOC_PROT_ERR': async (s, r) => {
    await expectError(
      s,
      {
        wrId: 5,
        opcode: WrOpcode.RDMA_WRITE,
        sgList: [{ addr: s.buf, length: 16, lkey: (s.mrAll.lkey ^ 0x5a) >>> 0 }],
        remoteAddr: r.addr,
        rkey: r.rkey,
      },
      WcStatus.LOC_PROT_ERR,
    );
  },

  'a local range past the end of the MR fails with LOC_PROT_ERR': async (s, r) => {
    await expectError(
      s,
      {
        wrId: 6,
        opcode: WrOpcode.RDMA_WRITE,
        sgList: [{ addr: s.buf + BUF - 8, length: 64, lkey: s.mrAll.lkey }],
        remoteAddr: r.addr,
        rkey: r.rkey,
      },
      WcStatus.LOC_PROT_ERR,
    );
  },

  'READ into memory registered without LOCAL_WRITE fails with LOC_PROT_ERR': async (s, r) => {
    await expectError(
      s,
      {
        wrId: 7,
        opcode: WrOpcode.RDMA_READ,
        sgList: [{ addr: s.mrNoWrite.addr, length: 16, lkey: s.mrNoWrite.lkey }],
        remoteAddr: r.addr,
        rkey: r.rkey,
      },
      WcStatus.LOC_PROT_ERR,
    );
  },

  'SEND with no receive posted fails with RNR_RETRY_EXC_ERR after the retries': async (s) => {
    await expectError(
      s,
      { wrId: 8, opcode: WrOpcode.SEND, sgList: [{ addr: s.buf, length: 32, lkey: s.mrAll.lkey }] },
      WcStatus.RNR_RETRY_EXC_ERR,
      { rnrRetry: 1, minRnrTimer: 1 },
    );
  },

  'a receive too small: LOC_LEN_ERR at the receiver, REM_INV_REQ_ERR at the sender': async (s) => {
    const c = await connect(s);
    if (s.role === 'b') ibv.postRecv(c.qp, { wrId: 77, sgList: [{ addr: s.buf, length: 8, lkey: s.mrAll.lkey }] });
    await barrier(s, { posted: 1 });
    if (s.role === 'a') {
      ibv.postSend(c.qp, {
        wrId: 9,
        opcode: WrOpcode.SEND,
        sendFlags: SendFlags.SIGNALED,
        sgList: [{ addr: s.buf, length: 64, lkey: s.mrAll.lkey }],
      });
      status(take(c.scq, 1)[0], WcStatus.REM_INV_REQ_ERR);
    } else {
      const wc = take(c.rcq, 1)[0];
      assert.equal(wc.wrId, 77);
      status(wc, WcStatus.LOC_LEN_ERR);
    }
    await barrier(s, { done: 1 });
    disconnect(c);
  },

  'entering ERR flushes every outstanding WR with WR_FLUSH_ERR': async (s) => {
    const c = await connect(s);
    for (let i = 0; i < 5; i++)
      ibv.postRecv(c.qp, { wrId: 500 + i, sgList: [{ addr: s.buf, length: 64, lkey: s.mrAll.lkey }] });
    await barrier(s, { posted: 1 });
    ibv.modifyQp(c.qp, { qpState: QpState.ERR }, QpAttrMask.STATE);
    const got = take(c.rcq, 5);
    got.forEach((wc, i) => {
      assert.equal(wc.wrId, 500 + i);
      status(wc, WcStatus.WR_FLUSH_ERR);
    });
    await barrier(s, { done: 1 });
    disconnect(c);
  },

  'a CQ overflow is reported, never silently lost': async (s, r) => {
    const c = await connect(s, { cqe: 4, depth: 32 });
    if (s.role === 'a') {
      const wrs: ibv.SendWr[] = [];
      for (let i = 0; i < 32; i++) {
        wrs.push({
          wrId: i,
          opcode: WrOpcode.RDMA_WRITE,
          sendFlags: SendFlags.SIGNALED,
          sgList: [{ addr: s.buf, length: 8, lkey: s.mrAll.lkey }],
          remoteAddr: r.addr,
          rkey: r.rkey,
        });
      }
      ibv.postSend(c.qp, wrs);
      // Do not poll while the producer (the NIC, the backend or the tcp thread) is still working:
      // draining early could keep the ring from ever filling. Wait (bounded) until the ring says it
      // overflowed, then check that pollCq reports it rather than losing completions silently.
      const deadline = performance.now() + 10_000;
      // ORDERING: seq-cst load; the producer sets OVERFLOW when it drops a CQE.
      while (Atomics.load(c.scq.words, CqWord.OVERFLOW) === 0 && performance.now() < deadline) {
        await new Promise((r) => setTimeout(r, 1));
      }
      let overflow = false;
      try {
        drain(c.scq, 20);
      } catch (err) {
        assert.equal((err as { code?: string }).code, 'PV_ERR_RDMA_QUEUE_FULL');
        overflow = true;
      }
      assert.ok(overflow, 'pollCq must report the overflow');
    }
    await barrier(s, { done: 1 });
    disconnect(c);
  },

  'a guest cannot register memory it does not own': async (s) => {
    const size = s.ctx.memory.size;
    assert.throws(
      () => ibv.regMr(s.pd, (size + 4096) as GuestPhysAddr, 4096, Access.LOCAL_WRITE),
      (err: { code?: string }) => ['PV_ERR_RDMA_BAD_MEMORY', 'PV_ERR_OUT_OF_BOUNDS'].includes(err.code ?? ''),
    );
  },
};

/** Names of the cases, in order (the mocha suite asserts one `it` per name). */
export const CASE_NAMES = Object.keys(CASES);

export default async function main(env: DomainEnv): Promise<{ transport: string; cases: Record<string, string> }> {
  env.log('conformance: opening the device');
  const s = await openSide(env);
  env.log('conformance: opened');
  const remote = (await barrier(s, {
    addr: s.buf,
    rkey: s.mrAll.rkey,
    roAddr: s.mrRo.addr,
    roRkey: s.mrRo.rkey,
    localAddr: s.mrLocal.addr,
    localRkey: s.mrLocal.rkey,
  })) as unknown as Remote;
  const results: Record<string, string> = {};
  const only = (env.args.only as string[] | undefined) ?? CASE_NAMES;
  for (const name of CASE_NAMES) {
    if (!only.includes(name)) continue;
    env.log(`case: ${name}`);
    try {
      await CASES[name](s, remote);
      results[name] = 'ok';
    } catch (err) {
      results[name] = `${(err as Error).message}`;
      env.log(`conformance: '${name}' failed: ${(err as Error).message}`);
      // The peer may be waiting at a barrier this side will never reach: stop here.
      break;
    }
  }
  const transport = s.ctx.transport;
  await ibv.closeDevice(s.ctx);
  return { transport, cases: results };
}
