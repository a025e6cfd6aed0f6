/**
 * Work-queue rules of the tcp transport: completions in posting order with many WRs outstanding,
 * unsignaled WRs free their slots without CQEs, a full send queue refuses the next WR, and a CQ
 * that overflows sets its flag and puts its QPs in ERR.
 */

import assert from 'node:assert/strict';
import { TcpStat } from '../../../../frontend/verbs/tcp/Layout.js';
import {
  Access,
  QpState,
  SendFlags,
  type SendWr,
  WcOpcode,
  WcStatus,
  WrOpcode,
} from '../../../../protocol/rdma/Verbs.js';
import { connectPair, TcpPeer } from './helpers/TcpPeer.js';
import type { Endpoint } from './helpers/TcpPeerWorker.js';

const ALL = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
const KIB = 1024;

describe('tcp transport: work queues', function () {
  this.timeout(120_000);
  let a: TcpPeer;
  let b: TcpPeer;

  before(async () => {
    [a, b] = await Promise.all([TcpPeer.start('A'), TcpPeer.start('B')]);
  });

  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
  });

  async function pair(
    sigAll: boolean,
    opts: { sendWr?: number; cqEntries?: number } = {},
  ): Promise<[Endpoint, Endpoint]> {
    const ea = await a.setup({ bufBytes: 4 * 1024 * KIB, access: ALL, sigAll, ...opts });
    const eb = await b.setup({ bufBytes: 4 * 1024 * KIB, access: ALL, sigAll });
    await connectPair(a, ea, b, eb, ALL);
    return [ea, eb];
  }

  function write(e: Endpoint, t: Endpoint, wrId: number, off: number, len: number, flags = 0): SendWr {
    return {
      wrId,
      opcode: WrOpcode.RDMA_WRITE,
      sendFlags: flags,
      sgList: [{ addr: e.buf + off, length: len, lkey: e.lkey }],
      remoteAddr: t.buf + off,
      rkey: t.rkey,
    };
  }

  it('rc ordering: 500 outstanding WRITEs, 200 SENDs and READs complete in posting order with their data', async () => {
    const [ea, eb] = await pair(true);
    await a.fill(ea.buf, 500 * 4 * KIB, 41);
    await b.fill(eb.buf, 500 * 4 * KIB, 42);
    const wrs: SendWr[] = [];
    for (let i = 0; i < 500; i++) wrs.push(write(ea, eb, i, i * 4 * KIB, 4 * KIB));
    await a.post(ea.qp, wrs);
    const wcs = await a.poll(ea.sendCq, 500);
    assert.equal(wcs.length, 500);
    assert.deepEqual(
      wcs.map((w) => w.wrId),
      wrs.map((w) => w.wrId),
      'completions come in posting order',
    );
    assert.ok(wcs.every((w) => w.status === WcStatus.SUCCESS));
    assert.equal(await b.verify(eb.buf, 500 * 4 * KIB, 41), -1);

    // SENDs interleaved with READs: receives consumed in order, READ data in place.
    await b.postRecv(
      eb.qp,
      Array.from({ length: 200 }, (_, i) => ({
        wrId: 10_000 + i,
        sgList: [{ addr: eb.buf + 2048 * KIB + i * 1024, length: 1024, lkey: eb.lkey }],
      })),
    );
    const mixed: SendWr[] = [];
    for (let i = 0; i < 200; i++) {
      mixed.push({
        wrId: 20_000 + i,
        opcode: WrOpcode.SEND,
        sgList: [{ addr: ea.buf + i * 1024, length: 1024, lkey: ea.lkey }],
      });
      mixed.push({
        wrId: 30_000 + i,
        opcode: WrOpcode.RDMA_READ,
        sgList: [{ addr: ea.buf + 3072 * KIB + i * 512, length: 512, lkey: ea.lkey }],
        remoteAddr: eb.buf + i * 512,
        rkey: eb.rkey,
      });
    }
    await a.post(ea.qp, mixed);
    const done = await a.poll(ea.sendCq, 400);
    assert.deepEqual(
      done.map((w) => [w.wrId, w.status]),
      mixed.map((w) => [w.wrId, WcStatus.SUCCESS]),
    );
    const recvs = await b.poll(eb.recvCq, 200);
    assert.deepEqual(
      recvs.map((w) => w.wrId),
      Array.from({ length: 200 }, (_, i) => 10_000 + i),
    );
    assert.equal(await b.verify(eb.buf + 2048 * KIB, 200 * 1024, 41), -1, 'SEND data in the receive buffers');
    assert.equal(await a.verify(ea.buf + 3072 * KIB, 200 * 512, 41), -1, 'READ brought back what was written');
  });

  it('unsignaled WRs make no CQE but free their slots; the signaled one after them completes alone', async () => {
    const [ea, eb] = await pair(false, { sendWr: 16 });
    for (let round = 0; round < 5; round++) {
      const before = await a.cqInfo(ea.sendCq);
      const wrs: SendWr[] = [];
      for (let i = 0; i < 15; i++) wrs.push(write(ea, eb, round * 100 + i, i * KIB, KIB));
      wrs.push(write(ea, eb, round * 100 + 99, 0, KIB, SendFlags.SIGNALED));
      await a.post(ea.qp, wrs); // 16 WRs fill the 16-entry queue: slots must have been freed
      const wcs = await a.poll(ea.sendCq, 1);
      assert.equal(wcs[0]?.wrId, round * 100 + 99);
      const after = await a.cqInfo(ea.sendCq);
      assert.equal((after.prod - before.prod) >>> 0, 1, 'exactly one CQE for 16 WRs');
      const q = await a.query(ea.qp);
      assert.equal(q.sqCons, (round + 1) * 16, 'every WR, signaled or not, released its slot');
    }
  });

  it('a full send queue refuses the next WR with PV_ERR_RDMA_QUEUE_FULL', async () => {
    // The target stays in INIT, so the first WR sits in (slow) retries and nothing completes.
    const ed = await a.setup({ access: ALL, sendWr: 4 });
    const ec = await b.setup({ access: ALL });
    await b.connect({ qp: ec.qp, destQpNum: ed.qpNum, dlid: a.port, access: ALL, upTo: QpState.INIT });
    await a.connect({ qp: ed.qp, destQpNum: ec.qpNum, dlid: b.port, access: ALL, retryCnt: 7, timeout: 20 });
    await a.post(
      ed.qp,
      [0, 1, 2, 3].map((i) => write(ed, ec, i, 0, 8)),
    );
    await assert.rejects(a.post(ed.qp, [write(ed, ec, 4, 0, 8)]), { code: 'PV_ERR_RDMA_QUEUE_FULL' });
  });

  it('CQ overflow: the overflow flag is set and the QPs feeding the CQ go to ERR', async () => {
    const [ea, eb] = await pair(true, { cqEntries: 1 });
    await a.post(ea.qp, [write(ea, eb, 1, 0, 64), write(ea, eb, 2, 0, 64), write(ea, eb, 3, 0, 64)]);
    // Nothing is polled: the first CQE fills the 1-entry ring, the second finds it full.
    assert.equal(await a.call('waitOverflow', { cq: ea.sendCq }), 1, 'overflow flag');
    assert.equal((await a.query(ea.qp)).state, QpState.ERR);
    const [wc] = await a.poll(ea.sendCq, 1);
    assert.deepEqual([wc.wrId, wc.opcode, wc.status], [1, WcOpcode.RDMA_WRITE, WcStatus.SUCCESS]);
    // The lost completions are lost, but the queue stays consistent: every WR released its
    // slot, and a WR posted now (room in the CQ again) is flushed with a CQE of its own.
    assert.equal((await a.query(ea.qp)).sqCons, 3);
    await a.post(ea.qp, [write(ea, eb, 4, 0, 64)]);
    const [late] = await a.poll(ea.sendCq, 1);
    assert.deepEqual([late?.wrId, late?.status], [4, WcStatus.WR_FLUSH_ERR]);
    assert.equal((await a.query(ea.qp)).sqCons, 4);
  });

  it("rc multiplexing: four QP pairs stream at once in both directions over the helpers' one connection", async () => {
    const MIB = 1024 * KIB;
    const ends: [TcpPeer, Endpoint, TcpPeer, Endpoint][] = [];
    for (let i = 0; i < 4; i++) {
      const [ea, eb] = await pair(true);
      ends.push(i < 2 ? [a, ea, b, eb] : [b, eb, a, ea]); // two pairs each way
    }
    const before = [(await a.stats())[TcpStat.CONNS_OPENED], (await b.stats())[TcpStat.CONNS_OPENED]];
    for (const [i, [src, es]] of ends.entries()) await src.fill(es.buf, 2 * MIB, 60 + i);
    // Post everything first, then collect: frames of all four QPs interleave on the wire.
    for (const [i, [src, es, , et]] of ends.entries()) {
      const wrs: SendWr[] = [];
      for (let k = 0; k < 8; k++) wrs.push(write(es, et, i * 100 + k, k * 256 * KIB, 256 * KIB));
      await src.post(es.qp, wrs);
    }
    for (const [i, [src, es]] of ends.entries()) {
      const wcs = await src.poll(es.sendCq, 8);
      assert.deepEqual(
        wcs.map((w) => [w.wrId, w.status]),
        Array.from({ length: 8 }, (_, k) => [i * 100 + k, WcStatus.SUCCESS]),
      );
    }
    for (const [i, [, , dst, et]] of ends.entries()) {
      assert.equal(await dst.verify(et.buf, 2 * MIB, 60 + i), -1, `pair ${i}`);
    }
    const after = [(await a.stats())[TcpStat.CONNS_OPENED], (await b.stats())[TcpStat.CONNS_OPENED]];
    assert.deepEqual(after, before, 'no new connection: the QPs share the existing one');
  });
});
