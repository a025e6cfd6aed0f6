/**
 * The runner keeps each distinct signature with the FIRST case seed that produced it, counts
 * cases and requests, turns a throwing case into a signature instead of dying, and respects
 * its budget.
 */

import assert from 'node:assert/strict';
import { formatReport, runFuzz } from '../../../fuzz/core/FuzzRunner.js';
import type { CaseResult, FuzzTarget, Rng, Violation } from '../../../fuzz/core/FuzzTarget.js';
import { caseSeed } from '../../../fuzz/core/Rng.js';

/** A target whose "bug" shows when the case's Rng draws below 10 of 100; it throws on case 5. */
class Planted implements FuzzTarget {
  readonly name = 'planted';
  calls = 0;
  seeds: number[] = [];
  async setup(): Promise<void> {}
  async runCase(rng: Rng, seed: number): Promise<CaseResult> {
    this.calls++;
    this.seeds.push(seed);
    if (this.calls === 6) throw new Error('boom');
    const v: Violation[] = rng.below(100) < 10 ? [{ signature: 'planted/x:bug', detail: `seed ${seed}` }] : [];
    return { requests: 3, honest: 1, violations: v };
  }
  async teardown(): Promise<readonly Violation[]> {
    return [{ signature: 'planted/teardown:leak', detail: 'left over' }];
  }
}

describe('fuzz FuzzRunner: distinct signatures with the first reproducing seed', () => {
  it('counts cases and requests; keeps the first seed per signature; a throwing case is a signature', async () => {
    const t = new Planted();
    const r = await runFuzz(t, { seed: 77, cases: 200 });
    assert.equal(r.cases, 200);
    assert.equal(r.requests, 199 * 3);
    assert.equal(r.honest, 199);
    assert.deepEqual(t.seeds.slice(0, 3), [caseSeed(77, 0), caseSeed(77, 1), caseSeed(77, 2)]);
    const bug = r.signatures.find((s) => s.signature === 'planted/x:bug');
    assert.ok(bug, 'the planted bug was found');
    assert.equal(bug.firstSeed, t.seeds[bug.firstCase]);
    assert.match(bug.detail, new RegExp(`seed ${bug.firstSeed}`));
    assert.ok(bug.count > 1);
    const threw = r.signatures.find((s) => s.signature === 'planted/fuzzer:case-threw');
    assert.equal(threw?.firstCase, 5);
    assert.ok(r.signatures.some((s) => s.signature === 'planted/teardown:leak'));
    assert.equal(r.violations, bug.count + 2);
    assert.match(formatReport(r), /--seed \d+ --cases 1/);
  });

  it('stops on the time budget (clock injected) and needs a budget', async () => {
    let t = 0;
    const r = await runFuzz(new Planted(), { seed: 1, seconds: 1, now: () => (t += 100) });
    assert.ok(r.cases > 0 && r.cases < 20, `${r.cases} cases`);
    await assert.rejects(runFuzz(new Planted(), { seed: 1 }));
  });
});
