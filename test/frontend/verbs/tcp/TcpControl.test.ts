/**
 * Control path of the tcp transport: the RC state machine (RC_REQUIRED_MASK, refused transitions
 * change nothing), posting rules per state, memory registration rules (ibv_reg_mr.3), connecting
 * to a port nobody listens on, and close() giving every guest page back.
 */

import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { Access, QpAttrMask as M, type QpAttr, QpState, WrOpcode } from '../../../../protocol/rdma/Verbs.js';
import { TcpPeer } from './helpers/TcpPeer.js';

const ALL = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
const INIT_MASK = M.STATE | M.PKEY_INDEX | M.PORT | M.ACCESS_FLAGS;
const RTR_MASK = M.STATE | M.AV | M.PATH_MTU | M.DEST_QPN | M.RQ_PSN | M.MAX_DEST_RD_ATOMIC | M.MIN_RNR_TIMER;
const RTS_MASK = M.STATE | M.SQ_PSN | M.MAX_QP_RD_ATOMIC | M.RETRY_CNT | M.RNR_RETRY | M.TIMEOUT;
const INIT: QpAttr = { qpState: QpState.INIT, pkeyIndex: 0, portNum: 1, qpAccessFlags: ALL };
const RTS: QpAttr = { qpState: QpState.RTS, sqPsn: 0, maxRdAtomic: 1, retryCnt: 7, rnrRetry: 7, timeout: 8 };

/** A port with no listener (bound, then closed). */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('tcp transport: control path', function () {
  this.timeout(60_000);
  let a: TcpPeer;

  before(async () => {
    a = await TcpPeer.start('A', 8 * 1024 * 1024);
  });

  after(async () => {
    await a?.close();
  });

  it('rc state machine: skipped states, missing attributes and wrong cur_qp_state are PV_ERR_RDMA_BAD_TRANSITION and change nothing', async () => {
    const e = await a.setup({ access: ALL });
    const rtr: QpAttr = {
      qpState: QpState.RTR,
      pathMtu: 5,
      destQpNum: e.qpNum,
      rqPsn: 0,
      maxDestRdAtomic: 1,
      minRnrTimer: 1,
      ahAttr: { dlid: a.port },
    };
    const bad = { code: 'PV_ERR_RDMA_BAD_TRANSITION' };
    const state = async (): Promise<number> => (await a.query(e.qp)).state;
    await assert.rejects(a.modify(e.qp, rtr, RTR_MASK), bad, 'RESET → RTR');
    await assert.rejects(a.modify(e.qp, RTS, RTS_MASK), bad, 'RESET → RTS');
    await assert.rejects(a.modify(e.qp, INIT, INIT_MASK & ~M.PORT), bad, 'INIT without PORT');
    assert.equal(await state(), QpState.RESET);
    await a.modify(e.qp, INIT, INIT_MASK);
    assert.equal(await state(), QpState.INIT);
    await assert.rejects(a.modify(e.qp, RTS, RTS_MASK), bad, 'INIT → RTS');
    await assert.rejects(a.modify(e.qp, rtr, RTR_MASK & ~M.MIN_RNR_TIMER), bad, 'RTR without MIN_RNR_TIMER');
    await assert.rejects(a.modify(e.qp, rtr, RTR_MASK & ~M.DEST_QPN), bad, 'RTR without DEST_QPN');
    await assert.rejects(
      a.modify(e.qp, { ...rtr, curQpState: QpState.RESET }, RTR_MASK | M.CUR_STATE),
      bad,
      'cur_qp_state is not the current state',
    );
    await assert.rejects(a.modify(e.qp, { qpState: 9 as QpState }, M.STATE), bad, 'no state 9');
    assert.equal(await state(), QpState.INIT, 'refused modifies change nothing');
    await a.modify(e.qp, rtr, RTR_MASK); // a QP may talk to itself over loopback
    await assert.rejects(a.modify(e.qp, INIT, INIT_MASK), bad, 'RTR → INIT');
    await assert.rejects(a.modify(e.qp, { ...RTS, retryCnt: 8 }, RTS_MASK), { code: 'PV_ERR_INVALID_ARG' });
    await a.modify(e.qp, RTS, RTS_MASK);
    await a.modify(e.qp, { rnrRetry: 3 }, M.RNR_RETRY); // RTS → RTS attribute change
    await assert.rejects(a.modify(e.qp, rtr, RTR_MASK), bad, 'RTS → RTR');
    assert.equal(await state(), QpState.RTS);
    await a.modify(e.qp, { qpState: QpState.ERR }, M.STATE);
    assert.equal(await state(), QpState.ERR);
    await a.modify(e.qp, { qpState: QpState.RESET }, M.STATE);
    assert.equal(await state(), QpState.RESET);
  });

  it('posting: send needs RTS (PV_ERR_RDMA_BAD_STATE), receive is refused only in RESET; bad WRs throw', async () => {
    const e = await a.setup({ access: ALL });
    const send = { wrId: 1, opcode: WrOpcode.SEND, sgList: [] };
    const recv = { wrId: 1, sgList: [] };
    await assert.rejects(a.post(e.qp, [send]), { code: 'PV_ERR_RDMA_BAD_STATE' });
    await assert.rejects(a.postRecv(e.qp, [recv]), { code: 'PV_ERR_RDMA_BAD_STATE' });
    await a.modify(e.qp, INIT, INIT_MASK);
    await a.postRecv(e.qp, [recv]);
    await assert.rejects(a.post(e.qp, [send]), { code: 'PV_ERR_RDMA_BAD_STATE' });
    await a.modify(
      e.qp,
      {
        qpState: QpState.RTR,
        pathMtu: 5,
        destQpNum: e.qpNum,
        rqPsn: 0,
        maxDestRdAtomic: 1,
        minRnrTimer: 1,
        ahAttr: { dlid: a.port },
      },
      RTR_MASK,
    );
    await a.modify(e.qp, RTS, RTS_MASK);
    const sge = { addr: e.buf, length: 1, lkey: e.lkey };
    await assert.rejects(a.post(e.qp, [{ ...send, opcode: 7 as WrOpcode }]), { code: 'PV_ERR_RDMA_BAD_WR' });
    await assert.rejects(a.post(e.qp, [{ ...send, sgList: Array(6).fill(sge) }]), { code: 'PV_ERR_RDMA_BAD_WR' });
    await assert.rejects(a.post(e.qp, [{ ...send, wrId: -1 }]), { code: 'PV_ERR_RDMA_BAD_WR' });
    await assert.rejects(
      a.post(e.qp, [{ ...send, sendFlags: 8, sgList: [{ ...sge, length: 81 }] }]),
      { code: 'PV_ERR_RDMA_BAD_WR' },
      'inline larger than max_inline_data (80)',
    );
    await assert.rejects(a.postRecv(e.qp, [{ wrId: 2, sgList: Array(4).fill(sge) }]), { code: 'PV_ERR_RDMA_BAD_WR' });
  });

  it('reg_mr: REMOTE_WRITE needs LOCAL_WRITE, unknown bits and ranges outside memory are refused', async () => {
    const e = await a.setup({ access: ALL });
    const reg = (addr: number, len: number, access: number) => a.call('regMr', { pd: e.pd, addr, len, access });
    await assert.rejects(reg(e.buf, 4096, Access.REMOTE_WRITE), { code: 'PV_ERR_RDMA_BAD_ACCESS' });
    await assert.rejects(reg(e.buf, 4096, Access.REMOTE_ATOMIC), { code: 'PV_ERR_RDMA_BAD_ACCESS' });
    await assert.rejects(reg(e.buf, 4096, 0x100), { code: 'PV_ERR_RDMA_BAD_ACCESS' });
    await assert.rejects(reg(8 * 1024 * 1024 - 4096, 4097, Access.LOCAL_WRITE), { code: 'PV_ERR_RDMA_BAD_MEMORY' });
    await assert.rejects(a.call('regMr', { pd: 999, addr: e.buf, len: 1, access: 0 }), {
      code: 'PV_ERR_RDMA_BAD_HANDLE',
    });
    const mr = await reg(e.buf, 4096, Access.LOCAL_WRITE | Access.REMOTE_WRITE);
    assert.ok(mr);
  });

  it('mr keys: a deregistered key stays dead when its index is reused (key byte advances)', async () => {
    const e = await a.setup({ access: ALL });
    const seen = new Set<number>();
    for (let i = 0; i < 5; i++) {
      const mr = await a.call<{ handle: number; lkey: number; rkey: number }>('regMr', {
        pd: e.pd,
        addr: e.buf,
        len: 64,
        access: Access.LOCAL_WRITE,
      });
      assert.equal(mr.lkey, mr.rkey);
      assert.equal(mr.lkey >>> 8, mr.handle, 'key = index << 8 | key byte');
      assert.ok(!seen.has(mr.lkey), 'keys are never handed out twice');
      seen.add(mr.lkey);
      await a.call('deregMr', { mr: mr.handle });
    }
  });

  it('INIT → RTR toward a port nobody listens on fails with PV_ERR_DISCONNECTED; the QP stays in INIT', async () => {
    const e = await a.setup({ access: ALL });
    await a.modify(e.qp, INIT, INIT_MASK);
    const port = await deadPort();
    await assert.rejects(
      a.modify(
        e.qp,
        {
          qpState: QpState.RTR,
          pathMtu: 5,
          destQpNum: 1,
          rqPsn: 0,
          maxDestRdAtomic: 1,
          minRnrTimer: 1,
          ahAttr: { dlid: port },
        },
        RTR_MASK,
      ),
      { code: 'PV_ERR_DISCONNECTED' },
    );
    assert.equal((await a.query(e.qp)).state, QpState.INIT);
  });

  it('close() destroys what is left and returns every guest page', async () => {
    const p = await TcpPeer.start('C', 8 * 1024 * 1024);
    const e = await p.setup({ access: ALL, bufBytes: 4096 });
    await p.modify(e.qp, INIT, INIT_MASK);
    const free = await p.close();
    // The test program allocated only the MR buffer itself; everything the provider took is back.
    assert.equal(free, p.freePagesAtStart - 1);
  });
});
