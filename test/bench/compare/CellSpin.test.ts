/**
 * The spin policy of `pvio compare` cells and the perftest work-alikes (SpinPolicy.ts, through
 * CellWorker.cellSpinBudgets): `--spin-us` sets every
 * party; otherwise, with more spinning threads than cores, the guests back off after ≈ 1 µs and
 * dom0 keeps polling ≈ 1 ms; with a core per spinner the programs keep their defaults.
 */

import assert from 'node:assert/strict';
import { type CellTask, cellSpinBudgets } from '../../../bench/compare/CellWorker.js';
import type { CompareTransport } from '../../../bench/compare/Results.js';
import { OVERSUBSCRIBED_DOM0_SPIN, OVERSUBSCRIBED_GUEST_SPIN } from '../../../bench/perftest/SpinPolicy.js';

function task(transport: CompareTransport, over: Partial<CellTask> = {}): CellTask {
  return {
    plan: { transport, op: 'write', kind: 'lat', size: 64, iters: 100, txDepth: 1 },
    deviceEngine: 'inline',
    instrument: false,
    fabric: 'ideal',
    ...over,
  };
}

describe('pvio compare: spin budgets back off when threads outnumber cores', () => {
  it('paravirt on 2 cores (two guests + dom0): guests ≈ 1 µs, dom0 ≈ 1 ms', () => {
    assert.deepEqual(cellSpinBudgets(task('paravirt'), 2), {
      guest: OVERSUBSCRIBED_GUEST_SPIN,
      dom0: OVERSUBSCRIBED_DOM0_SPIN,
    });
    assert.deepEqual(cellSpinBudgets(task('paravirt-copy'), 2).guest, OVERSUBSCRIBED_GUEST_SPIN);
  });

  it('a core per spinner (passthrough on 2 cores, paravirt on 4) keeps the programs’ defaults', () => {
    assert.deepEqual(cellSpinBudgets(task('passthrough'), 2), { guest: undefined, dom0: undefined });
    assert.deepEqual(cellSpinBudgets(task('paravirt'), 4), { guest: undefined, dom0: undefined });
    // A dedicated device thread is one more spinner.
    assert.equal(cellSpinBudgets(task('native', { deviceEngine: 'dedicated' }), 2).guest, OVERSUBSCRIBED_GUEST_SPIN);
  });

  it('--spin-us (spinBudget) sets every party, whatever the core count', () => {
    assert.deepEqual(cellSpinBudgets(task('paravirt', { spinBudget: 777 }), 2), { guest: 777, dom0: 777 });
  });
});
