/**
 * What distinguishes the two transports inside the backend, observed on the real pieces:
 * zero-copy maps each MR and CQ ring ONCE for the NIC and never touches data or completions
 * afterwards; copy keeps local buffers unmapped, grant-copies every operation through bounce
 * space, produces the guest's CQEs itself, and applies backpressure when bounce space runs out.
 */

import assert from 'node:assert/strict';
import * as ibv from '../../../frontend/verbs/index.js';
import {
  Access,
  QpAttrMask,
  QpState,
  SendFlags,
  WcStatus,
  WrOpcode,
  wcStatusName,
} from '../../../protocol/rdma/Verbs.js';
import { PvWorld } from './helpers/PvWorld.js';
import { connectedPair, fill, reap, same } from './helpers/Sides.js';

describe('paravirt (zero-copy): memory is mapped for the NIC once, completions bypass the backend', () => {
  it('regMr adds one IOMMU extent; 100 WRITEs then add no mapping, no copy, no backend CQ work', async () => {
    const world = await PvWorld.create();
    const [a, b] = await connectedPair(world, 'paravirt');
    const extents = world.iommu.liveExtents();
    const mappings = world.dom0.grant.liveMappings();
    const buf = a.ctx.allocBuffer(8192);
    const mr = ibv.regMr(a.pd, buf, 8192, Access.LOCAL_WRITE);
    assert.equal(world.iommu.liveExtents(), extents + 1, 'one device mapping per MR');
    assert.equal(world.dom0.grant.liveMappings(), mappings + 1);
    const session = world.backend.session(a.dom.domid, 0);
    assert.ok(session !== undefined);
    assert.equal(session.copy, undefined, 'no bounce space, no completion poller in zero-copy mode');
    fill(a, 0, 4096, 1);
    for (let i = 0; i < 100; i++) {
      ibv.postSend(a.qp, {
        wrId: i,
        opcode: WrOpcode.RDMA_WRITE,
        sendFlags: SendFlags.SIGNALED,
        sgList: [{ addr: a.buf, length: 4096, lkey: a.mr.lkey }],
        remoteAddr: b.buf,
        rkey: b.mr.rkey,
      });
      assert.equal(reap(world, a, 1)[0].status, WcStatus.SUCCESS);
    }
    assert.equal(world.dom0.grant.liveMappings(), mappings + 1, 'the data path maps nothing');
    assert.equal(world.iommu.liveExtents(), extents + 1);
    assert.ok(same(a, 0, b, 0, 4096));
    ibv.deregMr(mr);
    assert.equal(world.iommu.liveExtents(), extents, 'deregMr removes the device mapping');
    assert.equal(world.dom0.grant.liveMappings(), mappings);
    await ibv.closeDevice(a.ctx);
    await ibv.closeDevice(b.ctx);
    await world.close();
  });
});

describe('paravirt-copy: local buffers stay unmapped, every operation copies through bounce space', () => {
  let world: PvWorld;
  afterEach(async () => world.close());

  it('a local-only MR is not mapped for the NIC; a remote-access MR is (peers reach it directly)', async () => {
    world = await PvWorld.create();
    const [a, b] = await connectedPair(world, 'paravirt-copy');
    const extents = world.iommu.liveExtents();
    const mappings = world.dom0.grant.liveMappings();
    const buf = a.ctx.allocBuffer(3 * 4096);
    ibv.regMr(a.pd, buf, 4096, Access.LOCAL_WRITE);
    assert.equal(world.iommu.liveExtents(), extents, 'local-only: no device mapping');
    assert.equal(world.dom0.grant.liveMappings(), mappings, 'local-only: no mapping kept at all');
    ibv.regMr(a.pd, (buf + 4096) as never, 4096, Access.LOCAL_WRITE | Access.REMOTE_WRITE);
    assert.equal(world.iommu.liveExtents(), extents + 1, 'remote access: mapped for the NIC');
    const copy = world.backend.session(a.dom.domid, 0)?.copy;
    assert.ok(copy !== undefined);
    fill(a, 0, 10_000, 5);
    ibv.postSend(a.qp, {
      wrId: 1,
      opcode: WrOpcode.RDMA_WRITE,
      sendFlags: SendFlags.SIGNALED,
      sgList: [{ addr: a.buf, length: 10_000, lkey: a.mr.lkey }],
      remoteAddr: b.buf,
      rkey: b.mr.rkey,
    });
    assert.equal(reap(world, a, 1)[0].status, WcStatus.SUCCESS);
    assert.equal(copy.copiedIn, 10_000, 'the payload was grant-copied into bounce space');
    assert.ok(same(a, 0, b, 0, 10_000));
    await ibv.closeDevice(a.ctx);
    await ibv.closeDevice(b.ctx);
  });

  it('receives beyond the bounce space are deferred (backpressure, no error) and proceed as sends complete', async () => {
    world = await PvWorld.create({ backend: { limits: { bounceBytes: 64 * 1024 } } });
    const [a, b] = await connectedPair(world, 'paravirt-copy');
    const copy = world.backend.session(b.dom.domid, 0)?.copy;
    assert.ok(copy !== undefined);
    const size = 16 * 1024;
    for (let i = 0; i < 8; i++) {
      ibv.postRecv(b.qp, { wrId: 100 + i, sgList: [{ addr: b.buf + i * size, length: size, lkey: b.mr.lkey }] });
    }
    world.serve(3);
    assert.equal(copy.inflight, 4, 'four 16 KiB receives fill the 64 KiB bounce space');
    const counters = world.backend.session(b.dom.domid, 0)?.counters;
    assert.ok((counters?.deferrals ?? 0) > 0, 'the fifth receive was deferred');
    fill(a, 0, 8 * size, 77);
    for (let i = 0; i < 8; i++) {
      world.serve(3);
      ibv.postSend(a.qp, {
        wrId: i,
        opcode: WrOpcode.SEND,
        sendFlags: SendFlags.SIGNALED,
        sgList: [{ addr: a.buf + i * size, length: size, lkey: a.mr.lkey }],
      });
      assert.equal(wcStatusName(reap(world, a, 1)[0].status), 'SUCCESS', `send ${i}`);
    }
    const got = reap(world, b, 8);
    got.forEach((wc, i) => {
      assert.equal(wc.wrId, 100 + i);
      assert.equal(wc.status, WcStatus.SUCCESS);
    });
    assert.ok(same(a, 0, b, 0, 8 * size), 'every receive got its data');
    assert.equal(counters?.dataRejects, 0, 'backpressure is never an error');
    assert.equal(copy.inflight, 0);
    await ibv.closeDevice(a.ctx);
    await ibv.closeDevice(b.ctx);
  });

  it('entering ERR flushes tracked receives with WR_FLUSH_ERR and the guest’s wr_ids, freeing their bounce space', async () => {
    world = await PvWorld.create();
    const [a, b] = await connectedPair(world, 'paravirt-copy');
    for (let i = 0; i < 5; i++) {
      ibv.postRecv(b.qp, { wrId: 500 + i, sgList: [{ addr: b.buf, length: 4096, lkey: b.mr.lkey }] });
    }
    world.serve();
    const copy = world.backend.session(b.dom.domid, 0)?.copy;
    assert.equal(copy?.inflight, 5);
    ibv.modifyQp(b.qp, { qpState: QpState.ERR }, QpAttrMask.STATE);
    reap(world, b, 5).forEach((wc, i) => {
      assert.equal(wc.wrId, 500 + i);
      assert.equal(wcStatusName(wc.status), 'WR_FLUSH_ERR');
    });
    assert.equal(copy?.inflight, 0);
    await ibv.closeDevice(a.ctx);
    await ibv.closeDevice(b.ctx);
  });

  it('a full guest CQ is reported by pollCq (never silently lost) and its QP goes to ERR', async () => {
    world = await PvWorld.create();
    const [a, b] = await connectedPair(world, 'paravirt-copy');
    const small = ibv.createCq(a.ctx, 4);
    const qp = ibv.createQp(a.pd, {
      sendCq: small,
      recvCq: small,
      cap: { maxSendWr: 32, maxRecvWr: 4, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 },
    });
    const peer = ibv.createQp(b.pd, {
      sendCq: b.cq,
      recvCq: b.cq,
      cap: { maxSendWr: 4, maxRecvWr: 4, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 },
    });
    const all = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;
    ibv.connectRcQp(qp, { destQpNum: peer.qpNum, dlid: b.ctx.portId }, all);
    ibv.connectRcQp(peer, { destQpNum: qp.qpNum, dlid: a.ctx.portId }, all);
    const wrs: ibv.SendWr[] = [];
    for (let i = 0; i < 16; i++) {
      wrs.push({
        wrId: i,
        opcode: WrOpcode.RDMA_WRITE,
        sendFlags: SendFlags.SIGNALED,
        sgList: [{ addr: a.buf, length: 8, lkey: a.mr.lkey }],
        remoteAddr: b.buf,
        rkey: b.mr.rkey,
      });
    }
    ibv.postSend(qp, wrs);
    world.serve(5);
    const wcs = Array.from({ length: 8 }, ibv.emptyWc);
    assert.equal(ibv.pollCq(small, 8, wcs), 4, 'the ring held four');
    assert.throws(() => ibv.pollCq(small, 8, wcs), { code: 'PV_ERR_RDMA_QUEUE_FULL' });
    assert.ok((world.backend.session(a.dom.domid, 0)?.copy?.stats.guestOverflows ?? 0) > 0);
    assert.equal(world.driver.queryQp(qp.qpNum).state, QpState.ERR, 'the QP feeding the CQ is in ERR');
    await ibv.closeDevice(a.ctx);
    await ibv.closeDevice(b.ctx);
  });
});
