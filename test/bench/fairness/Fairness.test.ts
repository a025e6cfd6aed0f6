/**
 * `pvio fairness` on real Workers (the Scenario machinery, as `pvio fairness` runs it): beside a
 * guest whose ring is always full — and one that also kicks its event channel in a loop — the
 * neighbour on the same backend still completes operations, the flooder is served too, the
 * serving loop's work per ring per round stays within `batchLimit`, and dom0 holds no grant
 * mapping at shutdown; the report carries the no-I/O CPU hog control. The throughput ratio is printed, never asserted (wall clock).
 */

import assert from 'node:assert/strict';
import { formatFairness, runFairness, runPhase } from '../../../bench/fairness/Fairness.js';

/** Rings the backend serves per guest: blk one (the vbd), rdma two (control and data). */
const RINGS = { blk: 1, rdma: 2 } as const;
const BATCH = 8;

describe('pvio fairness: a neighbour keeps being served beside a flooding guest (real Workers)', () => {
  for (const backend of ['blk', 'rdma'] as const) {
    it(`${backend}: beside a full ring and an event storm the neighbour progresses; ≤ batchLimit requests per ring per round; nothing left mapped`, async () => {
      for (const phase of ['full', 'kick'] as const) {
        const r = await runPhase(backend, phase, 0.3, BATCH);
        assert.ok(r.neighbourOps > 0, `${phase}: the neighbour completed operations beside the flooder`);
        assert.ok(r.floodOpsPerSec > 0, `${phase}: the flooder was served too`);
        if (phase === 'kick') assert.ok(r.floodKicks > 0, 'the flooder really kicked');
        // Bounded work per ring per round: every request of the run was taken in some round, at
        // most BATCH per ring of the two guests (paravirt's pollers count no work of their own).
        assert.ok(r.rounds > 0);
        assert.ok(r.requests <= r.rounds * BATCH * RINGS[backend] * 2, `${phase}: work per round bounded`);
        assert.equal(r.liveMappings, 0, `${phase}: dom0 holds no grant mapping at shutdown`);
      }
    });
  }

  it('the report puts each phase beside the neighbour alone and prints the ratio', async () => {
    const rows = await runFairness({ backends: ['blk'], seconds: 0.2, phases: ['full', 'hog'] });
    assert.deepEqual(
      rows.map((r) => r.phase),
      ['alone', 'full', 'hog'],
    );
    assert.equal(rows[0].ratio, 1);
    assert.ok(Number.isFinite(rows[1].ratio) && rows[1].ratio > 0);
    // The control guest spins with no I/O: the backend serves nobody but the neighbour.
    assert.ok(rows[2].neighbourOps > 0);
    assert.equal(rows[2].floodOpsPerSec, 0);
    const table = formatFairness(rows);
    assert.match(table, /blk +full ring +\d+ +\d+\.\d%/);
    assert.match(table, /blk +cpu hog, no I\/O +\d+ +\d+\.\d%/);
    console.log(`      fairness (0.2 s, this machine, not asserted):\n${table.replace(/^/gm, '      ')}`);
  });
});
