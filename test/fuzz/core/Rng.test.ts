import assert from 'node:assert/strict';
import { caseSeed, XorShiftRng } from '../../../fuzz/core/Rng.js';

describe('fuzz Rng: a case seed replays the same actions', () => {
  it('the same seed gives the same stream, another seed another one', () => {
    const a = new XorShiftRng(42);
    const b = new XorShiftRng(42);
    const c = new XorShiftRng(43);
    const xs = Array.from({ length: 64 }, () => a.u32());
    assert.deepEqual(
      Array.from({ length: 64 }, () => b.u32()),
      xs,
    );
    assert.notDeepEqual(
      Array.from({ length: 64 }, () => c.u32()),
      xs,
    );
  });

  it('below(n) stays in [0, n) and reaches both ends; pick and chance are bounded', () => {
    const r = new XorShiftRng(7);
    const seen = new Set<number>();
    for (let i = 0; i < 5000; i++) {
      const v = r.below(10);
      assert.ok(v >= 0 && v < 10 && Number.isInteger(v));
      seen.add(v);
    }
    assert.equal(seen.size, 10);
    assert.equal(r.below(0), 0);
    let heads = 0;
    for (let i = 0; i < 10_000; i++) if (r.chance(0.25)) heads++;
    assert.ok(heads > 2000 && heads < 3000, `chance(0.25) gave ${heads}/10000`);
    assert.ok(['x', 'y'].includes(r.pick(['x', 'y'])));
  });

  it('edgeU32 produces the arithmetic edges (0, 2^31, 2^32 − 1) as u32 values', () => {
    const r = new XorShiftRng(1);
    const seen = new Set<number>();
    for (let i = 0; i < 20_000; i++) {
      const v = r.edgeU32();
      assert.ok(Number.isInteger(v) && v >= 0 && v <= 0xffffffff);
      seen.add(v);
    }
    for (const e of [0, 0x80000000, 0xffffffff]) assert.ok(seen.has(e), `edge ${e} never produced`);
  });

  it('case 0 uses the run seed itself; later cases get distinct derived seeds', () => {
    assert.equal(caseSeed(1234, 0), 1234);
    const seeds = new Set(Array.from({ length: 1000 }, (_, i) => caseSeed(1234, i)));
    assert.equal(seeds.size, 1000);
    assert.equal(caseSeed(1234, 17), caseSeed(1234, 17));
  });
});
