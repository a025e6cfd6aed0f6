import assert from 'node:assert/strict';
import { MonitorSpace } from '../../../hypervisor-sim/monitor/MonitorSpace.js';
import { SimMonitorOps } from '../../../hypervisor-sim/monitor/SimMonitorOps.js';
import { currentTid, threadCpuNs } from '../../../hypervisor-sim/monitor/ThreadStat.js';
import { DomainCounter, RingPhase, ringState } from '../../../protocol/monitor/MonitorLayout.js';
import { BackRing } from '../../../protocol/ring/BackRing.js';
import { FrontRing } from '../../../protocol/ring/FrontRing.js';
import { IO_SLOT_SIZE } from '../../../protocol/ring/IoSlot.js';
import { initSharedRing, ringBytes } from '../../../protocol/ring/Layout.js';
import { RingCounter, RingCounters } from '../../../protocol/ring/RingCounters.js';
import { domId } from '../../../protocol/Types.js';

describe('MonitorSpace: ring-end records are claimed by CAS, owned, and freed', () => {
  it('a claimed record is LIVE with its kind, owner, peer and end and zeroed counters', () => {
    const m = MonitorSpace.create({ maxDomains: 4, ringRecords: 4 });
    const i = m.claimRing(2, 'blkif', 0, 'front');
    m.ringCounters(i)[RingCounter.REQUESTS] = 5;
    const [r] = m.liveRings();
    assert.deepEqual(
      { ...r, counters: [...r.counters] },
      {
        index: i,
        kind: 'blkif',
        owner: 2,
        peer: 0,
        end: 'front',
        counters: [5, 0, 0, 0, 0, 0, 0],
      },
    );
  });

  it('the pool is first fit and exhausted without error (-1); a released record is reused zeroed', () => {
    const m = MonitorSpace.create({ maxDomains: 4, ringRecords: 2 });
    const a = m.claimRing(1, 'io', 0, 'front');
    const b = m.claimRing(0, 'io', 1, 'back');
    assert.deepEqual([a, b], [0, 1]);
    assert.equal(m.claimRing(1, 'io', 0, 'front'), -1);
    m.ringCounters(a)[RingCounter.RESPONSES] = 9;
    assert.equal(m.releaseRing(a, 1), true);
    assert.equal(m.releaseRing(a, 1), false, 'a record is freed once');
    assert.equal(m.claimRing(3, 'vrdma-data', 0, 'front'), a);
    assert.equal(m.ringCounters(a)[RingCounter.RESPONSES], 0);
  });

  it('only the owner frees its record: releaseRing by another domid is refused', () => {
    const m = MonitorSpace.create({ maxDomains: 4, ringRecords: 2 });
    const a = m.claimRing(1, 'io', 0, 'front');
    assert.equal(m.releaseRing(a, 2), false);
    assert.equal(m.liveRings().length, 1);
  });

  it('closeDomain frees every record of the dead domain, even one left CLAIMING, and no other', () => {
    const m = MonitorSpace.create({ maxDomains: 4, ringRecords: 8 });
    m.openDomain(1);
    m.claimRing(1, 'blkif', 0, 'front');
    m.claimRing(0, 'blkif', 1, 'back');
    m.claimRing(1, 'io', 0, 'front');
    // A claim cut short between its CAS and its publish (the thread died): state names the owner.
    const w = new Int32Array(m.buffer);
    const stuck = m.claimRing(1, 'io', 0, 'front');
    w[(m.ringCounters(stuck).byteOffset - 32) >> 2] = ringState(1, RingPhase.CLAIMING);
    assert.equal(m.closeDomain(1), 3);
    assert.deepEqual(
      m.liveRings().map((r) => [r.owner, r.kind, r.end]),
      [[0, 'blkif', 'back']],
    );
    assert.equal(m.domainLive(1), false);
    assert.equal(m.claimRing(2, 'io', 0, 'front'), 0, 'freed records are reusable');
  });

  it('a second thread view over the same buffer sees the same records (header checked)', () => {
    const m = MonitorSpace.create({ maxDomains: 2, ringRecords: 4 });
    const other = new MonitorSpace(m.buffer);
    other.claimRing(1, 'vrdma-ctrl', 0, 'front');
    assert.equal(m.liveRings()[0].kind, 'vrdma-ctrl');
    assert.throws(() => new MonitorSpace(new SharedArrayBuffer(64)), { code: 'PV_ERR_CONFIG' });
    assert.throws(() => m.claimRing(2, 'io', 0, 'front'), { code: 'PV_ERR_CONFIG' });
  });

  it('openDomain zeroes a reused domid record; TIDs round-trip; this thread has a TID with CPU time', () => {
    const m = MonitorSpace.create({ maxDomains: 2 });
    m.domainCounters(1)[DomainCounter.NOTIFIES] = 7;
    m.setTid(1, 1234);
    m.openDomain(1);
    assert.equal(m.domainCounters(1)[DomainCounter.NOTIFIES], 0);
    assert.equal(m.tid(1), 0);
    assert.equal(m.domainLive(1), true);
    const tid = currentTid();
    assert.ok(tid > 0, 'Linux gives every thread a TID');
    m.setTid(1, tid);
    assert.ok(threadCpuNs(m.tid(1)) > 0, 'schedstat of this thread');
    assert.equal(threadCpuNs(0), 0);
  });
});

describe('RingCounters: a ring end publishes into a monitor record and keeps its figures', () => {
  function ringPair(): { front: FrontRing; back: BackRing } {
    const view = new Uint8Array(new SharedArrayBuffer(ringBytes(0)));
    initSharedRing(view);
    return { front: new FrontRing(view, IO_SLOT_SIZE), back: new BackRing(view, IO_SLOT_SIZE) };
  }

  it('counts made before publish carry over; counts after it land in the shared record', () => {
    const m = MonitorSpace.create({ maxDomains: 2, ringRecords: 4 });
    const ops = new SimMonitorOps(domId(1), m);
    const { front } = ringPair();
    front.nextRequestSlot();
    front.commitRequest();
    assert.equal(front.counters.publish(ops, 'io', domId(0), 'front'), true);
    front.nextRequestSlot();
    front.commitRequest();
    front.pushRequests();
    const [r] = m.liveRings();
    assert.equal(r.counters[RingCounter.REQUESTS], 2);
    assert.equal(r.counters[RingCounter.NOTIFIES] + r.counters[RingCounter.SUPPRESSED], 1);
    assert.equal(front.counters.requests, 2, 'readers see the same figure');
    assert.equal(ops.held, 1);
  });

  it('unpublish frees the record and the ring end keeps counting privately from where it was', () => {
    const m = MonitorSpace.create({ maxDomains: 2, ringRecords: 4 });
    const ops = new SimMonitorOps(domId(1), m);
    const { front } = ringPair();
    front.counters.publish(ops, 'io', domId(0), 'front');
    front.nextRequestSlot();
    front.commitRequest();
    front.counters.unpublish();
    front.counters.unpublish();
    assert.equal(m.liveRings().length, 0);
    assert.equal(ops.held, 0);
    front.nextRequestSlot();
    front.commitRequest();
    assert.equal(front.counters.requests, 2);
    assert.equal(m.ringCounters(0)[RingCounter.REQUESTS], 1, 'the freed record is no longer written');
  });

  it('without a monitor, or with the pool exhausted, publish says false and counting goes on', () => {
    const c = new RingCounters();
    assert.equal(c.publish(undefined, 'io', domId(0), 'back'), false);
    const m = MonitorSpace.create({ maxDomains: 2, ringRecords: 0 });
    assert.equal(c.publish(new SimMonitorOps(domId(1), m), 'io', domId(0), 'back'), false);
    c.batches++;
    c.batchedItems += 3;
    assert.deepEqual(c.snapshot(), {
      requests: 0,
      responses: 0,
      notifies: 0,
      suppressed: 0,
      fullStalls: 0,
      batches: 1,
      batchedItems: 3,
    });
  });
});
