/**
 * Rule (issue 7, "no RDMA work request silently lost when the backend dies"): the paravirt
 * frontend tracks every QP's outstanding WRs, per queue, in order; when the device is lost every
 * WR still outstanding completes through pollCq with WR_FLUSH_ERR — after whatever the CQ ring
 * still holds, each exactly once, with its QP's number, its wr_id and its opcode — as an RC QP
 * going to ERR would flush it. A CQE retires its WR and the unsignaled ones before it; a refusal
 * is a WR's completion; RESET empties the queues; then later verbs throw PV_ERR_DISCONNECTED.
 *
 * The world is the real backend and NIC in one thread (PvWorld). The backend "dies" the way a
 * crashed driver domain does from the guest's side: it serves nothing more (WRs still on the
 * data ring never reach the NIC), the NIC state behind it is torn down without a completion, and
 * the toolstack's view of the backend goes away, so the frontend's xenbus machine disconnects.
 */

import assert from 'node:assert/strict';
import * as ibv from '../../../../frontend/verbs/index.js';
import type { ParavirtProvider } from '../../../../frontend/verbs/paravirt/ParavirtProvider.js';
import { QpWrs, WrQueue } from '../../../../frontend/verbs/paravirt/WrTracker.js';
import type { Transport } from '../../../../protocol/Pci.js';
import { CqWord, produceCqe } from '../../../../protocol/rdma/Cq.js';
import { VRDMA_DEVICE_TYPE } from '../../../../protocol/rdma/pv/PvConstants.js';
import {
  Access,
  emptyWc,
  QpAttrMask,
  QpState,
  SendFlags,
  type Wc,
  WcOpcode,
  WcStatus,
  WrOpcode,
} from '../../../../protocol/rdma/Verbs.js';
import { DOM0, type GuestPhysAddr } from '../../../../protocol/Types.js';
import { backendDir } from '../../../../protocol/xenbus/XenbusPaths.js';
import { PvWorld, settle } from '../../../backend/rdma/helpers/PvWorld.js';

const ALL = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
const CAP = { maxSendWr: 8, maxRecvWr: 8, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 };

/** A guest with two RC QPs of one device connected to each other (loopback on nic0). */
async function loopback(transport: Transport) {
  const world = await PvWorld.create({ guests: 1 });
  const g = world.guests[0];
  let alive = true;
  const serve = () => {
    if (alive) world.serve();
  };
  const p = await world.open(g, transport, 0, serve, 'nic0', 300);
  const env = { domid: g.domid, name: 'guest', hypercalls: g.hc, devices: [], args: {}, log: () => {} };
  const ctx = new ibv.Context(env, { device: 'nic0', kind: 'rdma-nic', transport, devid: 0 }, p);
  const pd = ibv.allocPd(ctx);
  const buf = ctx.allocBuffer(8192);
  const mr = ibv.regMr(pd, buf, 8192, ALL);
  const sendCq = ibv.createCq(ctx, 64);
  const recvCq = ibv.createCq(ctx, 64);
  const q1 = ibv.createQp(pd, { sendCq, recvCq, cap: CAP });
  const q2 = ibv.createQp(pd, { sendCq, recvCq, cap: CAP });
  ibv.connectRcQp(q1, { destQpNum: q2.qpNum, dlid: ctx.portId }, ALL);
  ibv.connectRcQp(q2, { destQpNum: q1.qpNum, dlid: ctx.portId }, ALL);
  const write = (wrId: number, signaled: boolean, opcode = WrOpcode.RDMA_WRITE) =>
    ibv.postSend(q1, {
      wrId,
      opcode,
      sendFlags: signaled ? SendFlags.SIGNALED : 0,
      sgList: [{ addr: buf, length: 512, lkey: mr.lkey }],
      remoteAddr: buf + 4096,
      rkey: mr.rkey,
    });
  const recv = (wrId: number) =>
    ibv.postRecv(q2, { wrId, sgList: [{ addr: (buf + 4096) as GuestPhysAddr, length: 512, lkey: mr.lkey }] });
  /**
   * The backend dies: it serves nothing more, its session on the NIC is torn down with no
   * completion (DESTROY_QP drops what is outstanding, as the NIC's reset with dom0 does), and
   * its directory goes, so the frontend's machine sees the backend leave.
   */
  const kill = async () => {
    alive = false;
    await world.watcher.stop();
    await world.toolstack.rm(backendDir(DOM0, VRDMA_DEVICE_TYPE, g.domid, 0));
    for (let i = 0; i < 200 && !p.lost; i++) await settle(1);
    assert.ok(p.lost, 'the frontend saw the backend go');
  };
  /** Everything pollCq hands out now, as [qpNum, wrId, status, opcode]. */
  const drain = (cq: ibv.Cq): Array<[number, number, number, number]> => {
    const wcs: Wc[] = Array.from({ length: 3 }, emptyWc);
    const got: Array<[number, number, number, number]> = [];
    for (let n = ibv.pollCq(cq, 3, wcs); n > 0; n = ibv.pollCq(cq, 3, wcs)) {
      for (let i = 0; i < n; i++) got.push([wcs[i].qpNum, wcs[i].wrId, wcs[i].status, wcs[i].opcode]);
    }
    return got;
  };
  const close = async () => {
    await ibv.closeDevice(ctx);
    await world.close();
  };
  return { world, p: p as ParavirtProvider, ctx, q1, q2, sendCq, recvCq, write, recv, kill, drain, close };
}

for (const transport of ['paravirt', 'paravirt-copy'] as const) {
  describe(`paravirt frontend (${transport}): a lost device flushes every outstanding WR, once`, () => {
    it('ring CQEs first, then WR_FLUSH_ERR for each WR still outstanding, in order, with its qp_num, wr_id and opcode; then verbs throw', async () => {
      const t = await loopback(transport);
      try {
        const { q1, q2 } = t;
        for (const id of [100, 101, 102]) t.recv(id);
        // Executed by the NIC before the loss: 1 and 4 signaled, 2 and 3 unsignaled (4's CQE retires them).
        t.write(1, true);
        t.write(2, false);
        t.write(3, false);
        t.write(4, true);
        t.world.serve(4);
        assert.equal(t.p.outstandingWrs, 7, 'nothing polled yet: every WR is still outstanding');
        // Polled while the device lives: the ring's CQEs, no flush.
        assert.deepEqual(t.drain(t.sendCq), [
          [q1.qpNum, 1, WcStatus.SUCCESS, WcOpcode.RDMA_WRITE],
          [q1.qpNum, 4, WcStatus.SUCCESS, WcOpcode.RDMA_WRITE],
        ]);
        assert.equal(t.p.outstandingWrs, 3, "4's CQE retired 2 and 3 (unsignaled) with it");
        t.write(5, true);
        t.world.serve(4);
        // Posted but never served: they sit on the data ring when the backend dies.
        t.write(6, false);
        t.write(7, true, WrOpcode.RDMA_READ);
        t.recv(103);
        await t.kill();
        // 5's CQE is still in the ring: it comes out first, as SUCCESS, and is not flushed.
        assert.deepEqual(t.drain(t.sendCq), [
          [q1.qpNum, 5, WcStatus.SUCCESS, WcOpcode.RDMA_WRITE],
          [q1.qpNum, 6, WcStatus.WR_FLUSH_ERR, WcOpcode.RDMA_WRITE],
          [q1.qpNum, 7, WcStatus.WR_FLUSH_ERR, WcOpcode.RDMA_READ],
        ]);
        assert.deepEqual(
          t.drain(t.recvCq),
          [100, 101, 102, 103].map((id) => [q2.qpNum, id, WcStatus.WR_FLUSH_ERR, WcOpcode.RECV]),
        );
        assert.deepEqual([t.drain(t.sendCq), t.drain(t.recvCq)], [[], []], 'each WR was handed out once');
        assert.equal(t.p.outstandingWrs, 0);
        assert.equal(t.p.stats.flushedWrs, 6);
        assert.throws(() => t.write(8, true), { code: 'PV_ERR_DISCONNECTED' });
        assert.throws(() => t.recv(104), { code: 'PV_ERR_DISCONNECTED' });
        assert.throws(() => ibv.modifyQp(q1, { qpState: QpState.ERR }, QpAttrMask.STATE), {
          code: 'PV_ERR_DISCONNECTED',
        });
        assert.deepEqual(t.drain(t.sendCq), [], 'a post that threw left nothing to flush');
      } finally {
        await t.close();
      }
    });

    it('a waiter on the CQ of a lost device wakes with the flush instead of waiting for ever', async () => {
      const t = await loopback(transport);
      try {
        t.recv(200);
        t.world.serve(2);
        assert.equal(ibv.waitCq(t.recvCq, { timeoutMs: 20 }), false, 'nothing completes while the device lives');
        await t.kill();
        assert.equal(ibv.waitCq(t.recvCq, { timeoutMs: 5000 }), true);
        assert.deepEqual(t.drain(t.recvCq), [[t.q2.qpNum, 200, WcStatus.WR_FLUSH_ERR, WcOpcode.RECV]]);
      } finally {
        await t.close();
      }
    });
  });
}

describe('paravirt frontend: what is outstanding', () => {
  it('after the loss a ring CQE of a WR already flushed (a late NIC flush) is dropped: each WR completes once', async () => {
    const t = await loopback('paravirt');
    try {
      t.recv(400);
      t.recv(401);
      t.world.serve(2);
      await t.kill();
      const wcs = [emptyWc()];
      assert.equal(ibv.pollCq(t.recvCq, 1, wcs), 1);
      assert.deepEqual([wcs[0].wrId, wcs[0].status], [400, WcStatus.WR_FLUSH_ERR]);
      // The NIC's own flush of both lands now (as an unplugged backend's may, after the frontend
      // saw the device go): 400's is a duplicate, 401's comes out of the ring and retires it.
      // ORDERING: one thread here; the NIC is gone, so the test is the only producer.
      let prod = Atomics.load(t.recvCq.words, CqWord.PROD) >>> 0;
      for (const wrId of [400, 401]) {
        const late = { ...emptyWc(), wrId, status: WcStatus.WR_FLUSH_ERR, opcode: WcOpcode.RECV, qpNum: t.q2.qpNum };
        prod = produceCqe(t.recvCq.words, t.recvCq.cqe, prod, late);
      }
      assert.deepEqual(t.drain(t.recvCq), [[t.q2.qpNum, 401, WcStatus.WR_FLUSH_ERR, WcOpcode.RECV]]);
      assert.equal(t.p.stats.duplicateCqes, 1);
      assert.equal(t.p.outstandingWrs, 0);
    } finally {
      await t.close();
    }
  });

  it('a QP moved to RESET has nothing outstanding: its WRs are not flushed at the loss', async () => {
    const t = await loopback('paravirt');
    try {
      t.recv(300);
      t.recv(301);
      ibv.modifyQp(t.q2, { qpState: QpState.RESET }, QpAttrMask.STATE);
      assert.equal(t.p.outstandingWrs, 0);
      await t.kill();
      assert.deepEqual(t.drain(t.recvCq), []);
    } finally {
      await t.close();
    }
  });

  it('a queue completes in order: a signaled CQE retires the unsignaled WRs before it, an error CQE any WR', () => {
    const q = new WrQueue(2);
    q.push(7, WcOpcode.RDMA_WRITE, false);
    q.push(7, WcOpcode.RDMA_WRITE, true);
    q.push(9, WcOpcode.SEND, false);
    q.push(10, WcOpcode.RDMA_READ, true);
    assert.equal(q.growths, 1, 'more outstanding than the capability: the ring grew');
    assert.equal(q.retire(7, false), true, 'wr 7 signaled: retires the unsignaled 7 before it too');
    assert.equal(q.length, 2);
    assert.equal(q.retire(42, false), false, 'a CQE matching nothing retires nothing');
    assert.equal(q.retire(9, false), false, 'an unsignaled WR makes no successful CQE');
    assert.equal(q.retire(9, true), true, 'an error CQE completes an unsignaled WR');
    const wc = emptyWc();
    q.shiftInto(wc, 33);
    assert.deepEqual([wc.wrId, wc.status, wc.opcode, wc.qpNum], [10, WcStatus.WR_FLUSH_ERR, WcOpcode.RDMA_READ, 33]);
    assert.equal(q.length, 0);
  });

  it('a refused WR leaves its queue alone (its refusal is its completion), the others keep their order', () => {
    const wrs = new QpWrs(4, 4);
    for (const id of [1, 2, 3]) wrs.recv.push(id, WcOpcode.RECV, true);
    assert.equal(wrs.recv.remove(2), true);
    assert.equal(wrs.recv.remove(2), false);
    const recvErr = { ...emptyWc(), wrId: 1, status: WcStatus.LOC_LEN_ERR, opcode: WcOpcode.RECV };
    wrs.retire(recvErr);
    const wc = emptyWc();
    wrs.recv.shiftInto(wc, 5);
    assert.equal(wc.wrId, 3);
    assert.equal(wrs.recv.length, 0);
    // An error CQE whose opcode names the wrong queue is matched on the other.
    wrs.send.push(8, WcOpcode.SEND, false);
    wrs.retire({ ...emptyWc(), wrId: 8, status: WcStatus.REM_ACCESS_ERR, opcode: WcOpcode.RECV });
    assert.equal(wrs.send.length, 0);
  });
});
