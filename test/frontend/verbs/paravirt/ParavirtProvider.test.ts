/**
 * The guest frontend of the paravirtual transports, over the real backend and NIC in one thread:
 * its xenbus handshake, a data path that never waits for the backend, lazy response draining
 * with no notifications, and a close that ends every grant and frees every page it allocated.
 */

import assert from 'node:assert/strict';
import { VRDMA_DEVICE_TYPE } from '../../../../protocol/rdma/pv/PvConstants.js';
import { Access, type QpCap } from '../../../../protocol/rdma/Verbs.js';
import { type GrantRef, PAGE_SIZE } from '../../../../protocol/Types.js';
import { frontendDir } from '../../../../protocol/xenbus/XenbusPaths.js';
import { PvWorld } from '../../../backend/rdma/helpers/PvWorld.js';

const CAP: QpCap = { maxSendWr: 16, maxRecvWr: 512, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 };

describe('paravirt provider: the xenbus handshake of the vrdma device', () => {
  it('publishes both rings, one event channel, the mode and the device; learns the NIC port id', async () => {
    const world = await PvWorld.create({ guests: 1 });
    const g = world.guests[0];
    const p = await world.open(g, 'paravirt-copy');
    const dir = frontendDir(g.domid, VRDMA_DEVICE_TYPE, 0);
    const read = (k: string) => world.toolstack.read(`${dir}/${k}`);
    assert.equal(await read('mode'), 'copy');
    assert.equal(await read('device'), 'nic0');
    assert.equal(await read('data-ring-page-order'), '3');
    assert.equal(Number(await read('ctrl-ring-ref')), p.channel.refs.ctrlRingRef);
    for (let i = 0; i < 8; i++) {
      assert.equal(Number(await read(`data-ring-ref${i}`)), p.channel.refs.dataRingRefs[i]);
    }
    assert.equal(Number(await read('event-channel')), p.channel.refs.port);
    assert.equal(p.portId, world.nic.portId);
    assert.equal(p.transport, 'paravirt-copy');
    assert.equal(p.channel.ctrl.size, 2);
    assert.equal(p.channel.data.size, 128);
    await p.close();
    await world.close();
  });
});

describe('paravirt provider: posting never waits for the backend', () => {
  it('128 receives fill the data ring with no serving round; the 129th waits for responses, then goes on', async () => {
    const world = await PvWorld.create({ guests: 1 });
    let idles = 0;
    const p = await world.open(world.guests[0], 'paravirt', 0, () => {
      idles++;
      world.serve();
    });
    const pd = p.allocPd();
    const cq = p.createCq(1024).handle;
    const qp = p.createQp({ pd, sendCq: cq, recvCq: cq, cap: CAP, sqSigAll: false });
    p.modifyQp(qp.handle, { qpState: 1, pkeyIndex: 0, portNum: 1, qpAccessFlags: 0 }, 1 | 8 | 16 | 32);
    const buf = world.guests[0].mem.allocPages(1);
    const mr = p.regMr(pd, buf, PAGE_SIZE, Access.LOCAL_WRITE);
    const before = idles;
    for (let i = 0; i < 128; i++)
      p.postRecv(qp.handle, { wrId: i, sgList: [{ addr: buf, length: 64, lkey: mr.lkey }] });
    assert.equal(idles, before, 'no wait while the ring has room');
    assert.equal(p.channel.data.freeRequests(), 0);
    p.postRecv(qp.handle, { wrId: 128, sgList: [{ addr: buf, length: 64, lkey: mr.lkey }] });
    assert.ok(idles > before, 'the full ring published its requests and waited for the backend');
    assert.equal(p.channel.stats.dataFullWaits, 1);
    p.flush();
    world.serve(3);
    assert.equal(world.backend.session(world.guests[0].domid, 0)?.counters.dataRequests, 129);
    await p.close();
    await world.close();
  });

  it('data responses are taken lazily: once the first is consumed the backend sends no notification for them', async () => {
    const world = await PvWorld.create({ guests: 1 });
    const p = await world.open(world.guests[0]);
    const pd = p.allocPd();
    const cq = p.createCq(1024).handle;
    const qp = p.createQp({ pd, sendCq: cq, recvCq: cq, cap: CAP, sqSigAll: false });
    p.modifyQp(qp.handle, { qpState: 1, pkeyIndex: 0, portNum: 1, qpAccessFlags: 0 }, 1 | 8 | 16 | 32);
    const buf = world.guests[0].mem.allocPages(1);
    const mr = p.regMr(pd, buf, PAGE_SIZE, Access.LOCAL_WRITE);
    const post = (wrId: number) => {
      p.postRecv(qp.handle, { wrId, sgList: [{ addr: buf, length: 64, lkey: mr.lkey }] });
      p.flush();
      world.serve();
    };
    post(0);
    p.progress();
    const sent = world.dom0.evtchn.counters.sent;
    for (let i = 1; i <= 100; i++) post(i);
    assert.equal(world.dom0.evtchn.counters.sent, sent, '100 responses, no notification');
    assert.equal(p.channel.data.unconsumedResponses(), 100, 'still on the ring until the frontend looks');
    p.progress();
    assert.equal(p.channel.data.unconsumedResponses(), 0);
    await p.close();
    await world.close();
  });
});

describe('paravirt provider: close ends every grant and frees every page it allocated (XSA-396)', () => {
  for (const transport of ['paravirt', 'paravirt-copy'] as const) {
    it(`${transport}: after close the guest has its pages back and no grant of it remains`, async () => {
      const world = await PvWorld.create({ guests: 1 });
      const g = world.guests[0];
      const buf = g.mem.allocPages(600);
      const free = g.mem.freePageCount();
      const p = await world.open(g, transport);
      const pd = p.allocPd();
      const cq = p.createCq(4096).handle;
      p.createQp({ pd, sendCq: cq, recvCq: cq, cap: CAP, sqSigAll: false });
      // 600 pages: the refs need an indirect page of their own.
      p.regMr(pd, buf, 600 * PAGE_SIZE, Access.LOCAL_WRITE | Access.REMOTE_READ);
      p.regMr(pd, buf, 100, 0);
      assert.ok(g.mem.freePageCount() < free, 'rings and CQ pages were allocated');
      await p.close();
      assert.equal(p.stats.lingeringGrants, 0);
      assert.equal(g.mem.freePageCount(), free, 'every page the provider allocated is free again');
      let granted = 0;
      for (let ref = 8; ref < world.grants.config.entriesPerDomain; ref++) {
        if (world.grants.snapshot(g.domid, ref as GrantRef).flags !== 0) granted++;
      }
      assert.equal(granted, 0, 'every grant ended');
      assert.throws(() => p.allocPd(), { code: 'PV_ERR_DISCONNECTED' });
      await world.close();
    });
  }
});
