/**
 * protocol.md §6.3: per-guest limits, published before InitWait and enforced on every control
 * command with PV_ERR_LIMIT, so one guest cannot exhaust the NIC or the driver domain; a guest at
 * its limit does not affect another guest.
 */

import assert from 'node:assert/strict';
import { DEFAULT_LIMITS, resolveLimits } from '../../../backend/rdma/Limits.js';
import type { ParavirtProvider } from '../../../frontend/verbs/paravirt/ParavirtProvider.js';
import { Access, type QpCap } from '../../../protocol/rdma/Verbs.js';
import { PAGE_SIZE } from '../../../protocol/Types.js';
import { PvWorld } from './helpers/PvWorld.js';
import { rawCmd } from './helpers/Raw.js';

const LIMITS = { maxPd: 1, maxQp: 2, maxCq: 3, maxMr: 2, maxPinnedPages: 8, maxOutstandingWr: 64 };
const CAP: QpCap = { maxSendWr: 8, maxRecvWr: 8, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 };
const LIMIT = { code: 'PV_ERR_LIMIT' };

describe('vrdma limits §6.3: what one guest may hold is bounded and published', () => {
  let world: PvWorld;
  let p1: ParavirtProvider;
  let p2: ParavirtProvider;

  beforeEach(async () => {
    world = await PvWorld.create({ backend: { limits: LIMITS } });
    p1 = await world.open(world.guests[0]);
    p2 = await world.open(world.guests[1]);
  });
  afterEach(async () => {
    await p1.close();
    await p2.close();
    await world.close();
  });

  it('the limits are in the backend directory before the guest connects, and the frontend reads them', () => {
    const info = p1.backendInfo;
    assert.equal(info.maxQp, 2);
    assert.equal(info.maxCq, 3);
    assert.equal(info.maxMr, 2);
    assert.equal(info.maxPinnedPages, 8);
    assert.equal(info.maxOutstandingWr, 64);
    assert.equal(info.portId, world.nic.portId);
    assert.equal(info.featureCopy, true);
  });

  it('PDs, CQs, QPs and MRs beyond the counts → PV_ERR_LIMIT; the other guest is unaffected', () => {
    const pd = p1.allocPd();
    assert.throws(() => p1.allocPd(), LIMIT);
    const cqs = [p1.createCq(4).handle, p1.createCq(4).handle, p1.createCq(4).handle];
    assert.throws(() => p1.createCq(4), LIMIT);
    const init = { pd, sendCq: cqs[0], recvCq: cqs[1], cap: CAP, sqSigAll: false };
    p1.createQp(init);
    p1.createQp(init);
    assert.throws(() => p1.createQp(init), LIMIT);
    const buf = world.guests[0].mem.allocPages(4);
    p1.regMr(pd, buf, PAGE_SIZE, Access.LOCAL_WRITE);
    p1.regMr(pd, buf, PAGE_SIZE, Access.LOCAL_WRITE);
    assert.throws(() => p1.regMr(pd, buf, PAGE_SIZE, Access.LOCAL_WRITE), LIMIT);
    // Guest 2 still gets everything it is allowed.
    const pd2 = p2.allocPd();
    const cq2 = p2.createCq(4).handle;
    p2.createQp({ pd: pd2, sendCq: cq2, recvCq: cq2, cap: CAP, sqSigAll: false });
  });

  it('pinned pages: MRs spanning more than max-pinned-pages in all → PV_ERR_LIMIT, freed by deregMr', () => {
    const pd = p1.allocPd();
    const buf = world.guests[0].mem.allocPages(16);
    assert.throws(() => p1.regMr(pd, buf, 9 * PAGE_SIZE, Access.LOCAL_WRITE), LIMIT);
    // 100 bytes straddling a page boundary pin two pages.
    const a = p1.regMr(pd, (buf + PAGE_SIZE - 50) as never, 100, Access.LOCAL_WRITE);
    assert.throws(() => p1.regMr(pd, buf, 7 * PAGE_SIZE, Access.LOCAL_WRITE), LIMIT);
    p1.deregMr(a.handle);
    p1.regMr(pd, buf, 8 * PAGE_SIZE, Access.LOCAL_WRITE);
  });

  it('outstanding WRs: QP queues beyond max-outstanding-wr in all → PV_ERR_LIMIT, freed by destroyQp', () => {
    const pd = p1.allocPd();
    const cq = p1.createCq(4).handle;
    const big = { maxSendWr: 32, maxRecvWr: 32, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 };
    assert.throws(
      () => p1.createQp({ pd, sendCq: cq, recvCq: cq, cap: { ...big, maxRecvWr: 33 }, sqSigAll: false }),
      LIMIT,
      '32 + 64 (33 rounds up) > 64',
    );
    const qp = p1.createQp({ pd, sendCq: cq, recvCq: cq, cap: big, sqSigAll: false });
    assert.throws(() => p1.createQp({ pd, sendCq: cq, recvCq: cq, cap: CAP, sqSigAll: false }), LIMIT);
    p1.destroyQp(qp.handle);
    p1.createQp({ pd, sendCq: cq, recvCq: cq, cap: CAP, sqSigAll: false });
  });

  it('a CQ larger than max-cqe → PV_ERR_LIMIT (the frontend and the backend both refuse it)', () => {
    assert.throws(() => p1.createCq(p1.backendInfo.maxCqe + 1), LIMIT);
    const r = rawCmd(world, p1, { kind: 'createCq', entries: p1.backendInfo.maxCqe * 2, ringRefs: [8] });
    assert.equal(r.code, 'PV_ERR_LIMIT');
  });
});

describe('vrdma limits from the program arguments', () => {
  it('overrides merge into the defaults; an unknown key or a value out of range → PV_ERR_CONFIG', () => {
    assert.deepEqual(resolveLimits({ maxQp: 3 }), { ...DEFAULT_LIMITS, maxQp: 3 });
    assert.throws(() => resolveLimits({ maxQQ: 3 } as never), { code: 'PV_ERR_CONFIG' });
    for (const bad of [0, -1, 1.5, '4', 2 ** 31]) {
      assert.throws(() => resolveLimits({ maxMr: bad }), { code: 'PV_ERR_CONFIG' }, String(bad));
    }
    assert.throws(() => resolveLimits({ maxOutstandingWr: (1 << 20) + 1 }), { code: 'PV_ERR_CONFIG' });
  });
});
