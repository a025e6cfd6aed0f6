/**
 * Error semantics of the tcp transport, with the NIC's statuses: remote checks made by the
 * TARGET's NIC thread against its own MR table (REM_ACCESS_ERR), local checks (LOC_PROT_ERR),
 * receive too small (LOC_LEN_ERR / REM_INV_REQ_ERR), RNR retries, not-ready retries, and the ERR
 * state with its flush.
 */

import assert from 'node:assert/strict';
import { TcpStat } from '../../../../frontend/verbs/tcp/Layout.js';
import { Access, QpState, type SendWr, WcOpcode, WcStatus, WrOpcode } from '../../../../protocol/rdma/Verbs.js';
import { connectPair, TcpPeer } from './helpers/TcpPeer.js';
import type { Endpoint } from './helpers/TcpPeerWorker.js';

const ALL = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
const BUF = 64 * 1024;

describe('tcp transport: errors complete with the NIC statuses', function () {
  this.timeout(120_000);
  let a: TcpPeer;
  let b: TcpPeer;

  before(async () => {
    [a, b] = await Promise.all([TcpPeer.start('A', 16 * 1024 * 1024), TcpPeer.start('B', 16 * 1024 * 1024)]);
  });

  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
  });

  /** A fresh connected pair; `accessB` is B's MR access, `qpAccessB` the access B's QP allows. */
  async function pair(
    accessB = ALL,
    qpAccessB = ALL,
    extra: { rnrRetry?: number; minRnrTimer?: number } = {},
  ): Promise<[Endpoint, Endpoint]> {
    const ea = await a.setup({ bufBytes: BUF, access: ALL });
    const eb = await b.setup({ bufBytes: BUF, access: accessB });
    await a.connect({ qp: ea.qp, destQpNum: eb.qpNum, dlid: b.port, access: ALL, ...extra });
    await b.connect({ qp: eb.qp, destQpNum: ea.qpNum, dlid: a.port, access: qpAccessB, ...extra });
    return [ea, eb];
  }

  function op(e: Endpoint, opcode: WrOpcode, len: number, remoteAddr: number, rkey: number, lkey = e.lkey): SendWr {
    return { wrId: 1, opcode, sgList: [{ addr: e.buf, length: len, lkey }], remoteAddr, rkey };
  }

  async function status(p: TcpPeer, cq: number): Promise<number> {
    const [wc] = await p.poll(cq, 1);
    assert.ok(wc, 'no completion');
    return wc.status;
  }

  it('bad rkey → REM_ACCESS_ERR at the requester; both QPs go to ERR; later WRs flush', async () => {
    const [ea, eb] = await pair();
    await a.post(ea.qp, [op(ea, WrOpcode.RDMA_WRITE, 16, eb.buf, eb.rkey ^ 0x1)]);
    assert.equal(await status(a, ea.sendCq), WcStatus.REM_ACCESS_ERR);
    assert.equal((await a.query(ea.qp)).state, QpState.ERR);
    assert.equal((await b.query(eb.qp)).state, QpState.ERR, 'responder class C error');
    await a.post(ea.qp, [{ ...op(ea, WrOpcode.RDMA_WRITE, 16, eb.buf, eb.rkey), wrId: 77 }]);
    const [wc] = await a.poll(ea.sendCq, 1);
    assert.deepEqual([wc.wrId, wc.status], [77, WcStatus.WR_FLUSH_ERR]);
  });

  it('remote range outside the MR (by one byte, or far) → REM_ACCESS_ERR', async () => {
    for (const [opcode, off, len] of [
      [WrOpcode.RDMA_WRITE, BUF - 15, 16],
      [WrOpcode.RDMA_READ, BUF - 1, 2],
      [WrOpcode.RDMA_WRITE, -4096, 8],
      [WrOpcode.RDMA_READ, 2 ** 40, 8],
    ] as const) {
      const [ea, eb] = await pair();
      await a.post(ea.qp, [op(ea, opcode, len, eb.buf + off, eb.rkey)]);
      assert.equal(await status(a, ea.sendCq), WcStatus.REM_ACCESS_ERR, `op ${opcode} at ${off}`);
    }
  });

  it('missing permission → REM_ACCESS_ERR (READ of an MR without REMOTE_READ, WRITE to a QP without REMOTE_WRITE)', async () => {
    let [ea, eb] = await pair(Access.LOCAL_WRITE | Access.REMOTE_WRITE);
    await a.post(ea.qp, [op(ea, WrOpcode.RDMA_READ, 8, eb.buf, eb.rkey)]);
    assert.equal(await status(a, ea.sendCq), WcStatus.REM_ACCESS_ERR);
    [ea, eb] = await pair(ALL, Access.REMOTE_READ);
    await a.post(ea.qp, [op(ea, WrOpcode.RDMA_WRITE, 8, eb.buf, eb.rkey)]);
    assert.equal(await status(a, ea.sendCq), WcStatus.REM_ACCESS_ERR);
  });

  it('bad local key, local range outside the MR, READ into memory without LOCAL_WRITE → LOC_PROT_ERR', async () => {
    const cases: ((ea: Endpoint, eb: Endpoint) => SendWr)[] = [
      (ea, eb) => op(ea, WrOpcode.RDMA_WRITE, 8, eb.buf, eb.rkey, ea.lkey + 1),
      (ea, _eb) => ({
        ...op(ea, WrOpcode.SEND, 8, 0, 0),
        sgList: [{ addr: ea.buf + BUF - 4, length: 8, lkey: ea.lkey }],
      }),
      (ea, eb) => ({
        ...op(ea, WrOpcode.RDMA_WRITE, 8, eb.buf, eb.rkey),
        sgList: [{ addr: -1, length: 8, lkey: ea.lkey }],
      }),
    ];
    for (const make of cases) {
      const [ea, eb] = await pair();
      await a.post(ea.qp, [make(ea, eb)]);
      assert.equal(await status(a, ea.sendCq), WcStatus.LOC_PROT_ERR);
      assert.equal((await a.query(ea.qp)).state, QpState.ERR);
    }
    const [ea, eb] = await pair();
    const ro = await a.call<{ lkey: number }>('regMr', {
      pd: ea.pd,
      addr: ea.buf,
      len: BUF,
      access: Access.REMOTE_READ,
    });
    await a.post(ea.qp, [op(ea, WrOpcode.RDMA_READ, 8, eb.buf, eb.rkey, ro.lkey)]);
    assert.equal(await status(a, ea.sendCq), WcStatus.LOC_PROT_ERR);
  });

  it('receive too small → LOC_LEN_ERR at the receiver, REM_INV_REQ_ERR at the sender', async () => {
    const [ea, eb] = await pair();
    await b.postRecv(eb.qp, [{ wrId: 5, sgList: [{ addr: eb.buf, length: 99, lkey: eb.lkey }] }]);
    await a.post(ea.qp, [op(ea, WrOpcode.SEND, 100, 0, 0)]);
    assert.equal(await status(a, ea.sendCq), WcStatus.REM_INV_REQ_ERR);
    const [r] = await b.poll(eb.recvCq, 1);
    assert.deepEqual([r.wrId, r.status], [5, WcStatus.LOC_LEN_ERR]);
  });

  it('RNR: retried rnr_retry times (min_rnr_timer × 10 µs apart), then RNR_RETRY_EXC_ERR', async () => {
    const [ea] = await pair(ALL, ALL, { rnrRetry: 2, minRnrTimer: 3 });
    const [sa, sb] = [await a.stats(), await b.stats()];
    await a.post(ea.qp, [op(ea, WrOpcode.SEND, 10, 0, 0)]);
    assert.equal(await status(a, ea.sendCq), WcStatus.RNR_RETRY_EXC_ERR);
    assert.equal((await a.query(ea.qp)).state, QpState.ERR);
    const [ta, tb] = [await a.stats(), await b.stats()];
    assert.equal(tb[TcpStat.RNR_NAKS] - sb[TcpStat.RNR_NAKS], 3, 'first try + 2 retries, each NAKed');
    assert.equal(ta[TcpStat.RETRIES] - sa[TcpStat.RETRIES], 2);
  });

  it('RNR: a receive posted while the SEND is being retried lets it complete', async () => {
    // The receive is posted by B's thread the moment B's NIC counts the first RNR NAK; A waits
    // 310 µs per retry, 7 times. A preempted B thread could miss all 7: tolerate two misses.
    let ok = false;
    for (let attempt = 0; attempt < 3 && !ok; attempt++) {
      const [ea, eb] = await pair(ALL, ALL, { rnrRetry: 7, minRnrTimer: 31 });
      const naks = (await b.stats())[TcpStat.RNR_NAKS];
      await a.post(ea.qp, [op(ea, WrOpcode.SEND, 10, 0, 0)]);
      await b.call('postRecvWhen', {
        qp: eb.qp,
        wrs: [{ wrId: 6, sgList: [{ addr: eb.buf, length: 10, lkey: eb.lkey }] }],
        stat: TcpStat.RNR_NAKS,
        atLeast: naks + 1,
      });
      const st = await status(a, ea.sendCq);
      if (st === WcStatus.SUCCESS) {
        const [r] = await b.poll(eb.recvCq, 1);
        assert.deepEqual([r.wrId, r.status, r.byteLen], [6, WcStatus.SUCCESS, 10]);
        ok = true;
      } else assert.equal(st, WcStatus.RNR_RETRY_EXC_ERR);
    }
    assert.ok(ok, 'the SEND never completed after the receive was posted');
  });

  it('target QP not ready (INIT): retried retry_cnt times, then RETRY_EXC_ERR', async () => {
    const ea = await a.setup({ bufBytes: BUF, access: ALL });
    const eb = await b.setup({ bufBytes: BUF, access: ALL });
    await b.connect({ qp: eb.qp, destQpNum: ea.qpNum, dlid: a.port, access: ALL, upTo: QpState.INIT });
    await a.connect({ qp: ea.qp, destQpNum: eb.qpNum, dlid: b.port, access: ALL, retryCnt: 2, timeout: 1 });
    const before = (await a.stats())[TcpStat.RETRIES];
    await a.post(ea.qp, [op(ea, WrOpcode.RDMA_WRITE, 8, eb.buf, eb.rkey)]);
    assert.equal(await status(a, ea.sendCq), WcStatus.RETRY_EXC_ERR);
    assert.equal((await a.stats())[TcpStat.RETRIES] - before, 2);
  });

  it('flush on ERR: outstanding, queued and later-posted WRs all complete with WR_FLUSH_ERR', async () => {
    // B stays in INIT and A retries slowly (4.096 µs × 2^20 ≈ 4.3 s), so the first WRITE is
    // still outstanding when A is moved to ERR.
    const ea = await a.setup({ bufBytes: BUF, access: ALL });
    const eb = await b.setup({ bufBytes: BUF, access: ALL });
    await b.connect({ qp: eb.qp, destQpNum: ea.qpNum, dlid: a.port, access: ALL, upTo: QpState.INIT });
    await a.connect({ qp: ea.qp, destQpNum: eb.qpNum, dlid: b.port, access: ALL, retryCnt: 7, timeout: 20 });
    await a.postRecv(
      ea.qp,
      [1, 2, 3, 4].map((i) => ({ wrId: 100 + i, sgList: [{ addr: ea.buf, length: 8, lkey: ea.lkey }] })),
    );
    await a.post(
      ea.qp,
      [1, 2, 3].map((i) => ({ ...op(ea, WrOpcode.RDMA_WRITE, 8, eb.buf, eb.rkey), wrId: i })),
    );
    await a.modify(ea.qp, { qpState: QpState.ERR }, 1);
    const sends = await a.poll(ea.sendCq, 3);
    assert.deepEqual(
      sends.map((w) => [w.wrId, w.status]),
      [1, 2, 3].map((i) => [i, WcStatus.WR_FLUSH_ERR]),
    );
    const recvs = await a.poll(ea.recvCq, 4);
    assert.deepEqual(
      recvs.map((w) => [w.wrId, w.status, w.opcode]),
      [1, 2, 3, 4].map((i) => [100 + i, WcStatus.WR_FLUSH_ERR, WcOpcode.RECV]),
    );
    await a.post(ea.qp, [{ ...op(ea, WrOpcode.SEND, 8, 0, 0), wrId: 9 }]);
    await a.postRecv(ea.qp, [{ wrId: 10, sgList: [] }]);
    assert.deepEqual(
      (await a.poll(ea.sendCq, 1)).map((w) => [w.wrId, w.status]),
      [[9, WcStatus.WR_FLUSH_ERR]],
    );
    assert.deepEqual(
      (await a.poll(ea.recvCq, 1)).map((w) => [w.wrId, w.status]),
      [[10, WcStatus.WR_FLUSH_ERR]],
    );
  });

  it('a QP reset after ERR connects again and carries traffic (RESET restarts its queues)', async () => {
    const [ea, eb] = await pair();
    await a.post(ea.qp, [op(ea, WrOpcode.RDMA_WRITE, 8, eb.buf, 0)]);
    assert.equal(await status(a, ea.sendCq), WcStatus.REM_ACCESS_ERR);
    for (const [p, e] of [
      [a, ea],
      [b, eb],
    ] as const) {
      await p.modify(e.qp, { qpState: QpState.RESET }, 1);
      assert.equal((await p.query(e.qp)).state, QpState.RESET);
    }
    await connectPair(a, ea, b, eb, ALL);
    await a.fill(ea.buf, 1000, 77);
    await a.post(ea.qp, [op(ea, WrOpcode.RDMA_WRITE, 1000, eb.buf, eb.rkey)]);
    assert.equal(await status(a, ea.sendCq), WcStatus.SUCCESS);
    assert.equal(await b.verify(eb.buf, 1000, 77), -1);
  });
});
