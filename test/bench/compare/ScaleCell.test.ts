/**
 * The scale cell of `pvio compare` (bench/compare/ScaleCell.ts) on real Workers: N paravirt guests
 * on one backend, started together by the start gate, every one of them served; the figures are
 * well-formed (Jain's index in (0, 1], a positive aggregate over one guest). Rates are printed,
 * never asserted (wall clock).
 */

import assert from 'node:assert/strict';
import { jainIndex, runScaleCell } from '../../../bench/compare/ScaleCell.js';

describe('scale cell: N guests on one backend are all served, started by one gate (real Workers)', () => {
  it('3 guests × 0.3 s: every guest completed operations; jain in (0, 1]; aggregateOverOne > 0', async function () {
    this.timeout(120_000);
    const r = await runScaleCell({ guests: 3, seconds: 0.3 });
    assert.equal(r.guests, 3);
    assert.equal(r.seconds, 0.3);
    assert.equal(r.perGuestOpsPerSec.length, 3);
    for (const x of r.perGuestOpsPerSec) assert.ok(Number.isFinite(x) && x > 0, `a guest's rate ${x}`);
    assert.ok(Number.isFinite(r.oneGuestOpsPerSec) && r.oneGuestOpsPerSec > 0);
    const sum = r.perGuestOpsPerSec.reduce((s, x) => s + x, 0);
    assert.ok(Math.abs(r.aggregateOpsPerSec - sum) <= 1e-9 * sum, 'the aggregate is the sum of the guests');
    assert.ok(r.aggregateOverOne > 0 && Number.isFinite(r.aggregateOverOne));
    assert.ok(Math.abs(r.aggregateOverOne - r.aggregateOpsPerSec / r.oneGuestOpsPerSec) < 1e-9);
    assert.ok(r.jain > 0 && r.jain <= 1, `jain ${r.jain}`);
    console.log(
      `      scale cell, 3 guests × 0.3 s (not asserted): one ${r.oneGuestOpsPerSec.toFixed(0)} ops/s, ` +
        `guests ${r.perGuestOpsPerSec.map((x) => x.toFixed(0)).join(', ')}, ` +
        `aggregate/one ${r.aggregateOverOne.toFixed(2)}, Jain ${r.jain.toFixed(3)}`,
    );
  });

  it("Jain's index is 1 for equal rates, 1/n when one guest gets everything, and refuses all-zero rates", () => {
    assert.equal(jainIndex([5, 5, 5, 5]), 1);
    assert.equal(jainIndex([0.1, 0.1, 0.1]), 1, 'rounding never pushes it above 1');
    assert.equal(jainIndex([7, 0, 0, 0]), 0.25);
    assert.ok(Math.abs(jainIndex([1, 3]) - 16 / 20) < 1e-12);
    assert.throws(() => jainIndex([0, 0]), { code: 'PV_ERR_INVALID_ARG' });
  });

  it('refuses a cell with no guest or no time', async () => {
    await assert.rejects(runScaleCell({ guests: 0, seconds: 1 }), { code: 'PV_ERR_INVALID_ARG' });
    await assert.rejects(runScaleCell({ guests: 2, seconds: 0 }), { code: 'PV_ERR_INVALID_ARG' });
  });
});
