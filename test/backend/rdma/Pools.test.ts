/**
 * The backend's fixed pools (protocol.md §6.3 "fixed pools, allocated at connect"): bounce runs,
 * per-guest handle tables and copy-mode WR tracking. Each is bounded, never hands out the same
 * thing twice, and recognises a stale name.
 */

import assert from 'node:assert/strict';
import { BOUNCE_UNIT, BounceAllocator } from '../../../backend/rdma/BounceAllocator.js';
import type { QpRec } from '../../../backend/rdma/GuestSession.js';
import { HandleTable } from '../../../backend/rdma/HandleTable.js';
import { TRACK_SPAN, WrTracker } from '../../../backend/rdma/WrTracker.js';

/** A deterministic stream of small numbers. */
function rng(seed: number): () => number {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) >>> 0;
    return x >>> 8;
  };
}

describe('bounce allocator: contiguous runs, freed in any order, exhaustion is -1 (never an error)', () => {
  it('10,000 random allocations and out-of-order frees never hand out overlapping bytes', () => {
    const a = new BounceAllocator(64 * BOUNCE_UNIT);
    const owner = new Int32Array(64).fill(-1);
    const live: Array<[number, number]> = [];
    const next = rng(7);
    for (let op = 0; op < 10_000; op++) {
      if (live.length > 0 && (next() % 3 === 0 || live.length > 20)) {
        const [off, len] = live.splice(next() % live.length, 1)[0];
        a.free(off);
        for (let u = off / BOUNCE_UNIT; u < (off + len) / BOUNCE_UNIT; u++) owner[u] = -1;
        continue;
      }
      const len = (1 + (next() % 6)) * BOUNCE_UNIT - (next() % 2);
      const off = a.alloc(len);
      if (off < 0) continue;
      assert.equal(off % BOUNCE_UNIT, 0);
      const units = a.unitsFor(len);
      assert.ok(off / BOUNCE_UNIT + units <= 64, 'inside the region');
      for (let u = off / BOUNCE_UNIT; u < off / BOUNCE_UNIT + units; u++) {
        assert.equal(owner[u], -1, `unit ${u} handed out twice`);
        owner[u] = op;
      }
      live.push([off, units * BOUNCE_UNIT]);
    }
    for (const [off] of live) a.free(off);
    assert.equal(a.usedBytes, 0);
    assert.equal(a.alloc(64 * BOUNCE_UNIT), 0, 'everything is free again, in one run');
  });

  it('a run that does not fit now returns -1; after frees it fits; freeing what was not allocated throws', () => {
    const a = new BounceAllocator(4 * BOUNCE_UNIT);
    const x = a.alloc(BOUNCE_UNIT);
    const y = a.alloc(2 * BOUNCE_UNIT);
    a.alloc(BOUNCE_UNIT);
    assert.equal(a.alloc(1), -1, 'full');
    a.free(x);
    assert.equal(a.alloc(2 * BOUNCE_UNIT), -1, 'one free unit is not two');
    a.free(y);
    assert.ok(a.alloc(2 * BOUNCE_UNIT) >= 0, 'two adjacent free units');
    assert.throws(() => a.free(3 * BOUNCE_UNIT + 1), { code: 'PV_ERR_INVALID_ARG' });
  });
});

describe("handle table: a guest's handles, bounded, never reused at once", () => {
  it('add beyond capacity → PV_ERR_LIMIT; a deleted handle names nothing and is not handed out again next', () => {
    const t = new HandleTable<string>('QP', 2);
    const h1 = t.add('a');
    const h2 = t.add('b');
    assert.throws(() => t.add('c'), { code: 'PV_ERR_LIMIT' });
    t.delete(h1);
    assert.equal(t.get(h1), undefined);
    assert.throws(() => t.require(h1), { code: 'PV_ERR_RDMA_BAD_HANDLE' });
    const h3 = t.add('c');
    assert.notEqual(h3, h1);
    assert.equal(t.require(h2), 'b');
    for (const bad of [0, -1, 2 ** 40, Number.NaN]) assert.equal(t.get(bad), undefined);
  });
});

describe('WR tracker: tracking ids find their WR once; stale or forged ids find nothing', () => {
  it('an id stops resolving when its slot is released and reused; ids beyond the table never resolve', () => {
    const t = new WrTracker(4);
    const qp = {} as QpRec;
    const s = t.take();
    t.qp[s] = qp;
    const id = t.id(s);
    assert.equal(t.lookup(id), s);
    t.release(s);
    assert.equal(t.lookup(id), -1, 'released');
    const again = t.take();
    assert.equal(again, s, 'the slot is reused');
    assert.equal(t.lookup(id), -1, 'the old id does not name the new WR');
    assert.equal(t.lookup(t.id(again)), again);
    for (const bad of [-1, 4, TRACK_SPAN + 4, 2 ** 53, 0.5]) assert.equal(t.lookup(bad), -1, String(bad));
    t.take();
    t.take();
    t.take();
    assert.equal(t.take(), -1, 'all four in flight');
    assert.equal(t.inflight, 4);
  });

  it('slotsOf finds exactly the WRs of one QP', () => {
    const t = new WrTracker(8);
    const q1 = {} as QpRec;
    const q2 = {} as QpRec;
    for (let i = 0; i < 6; i++) t.qp[t.take()] = i % 2 ? q1 : q2;
    assert.equal(t.slotsOf(q1).length, 3);
    for (const s of t.slotsOf(q2)) t.release(s);
    assert.equal(t.inflight, 3);
    assert.equal(t.slotsOf(q2).length, 0);
  });
});
