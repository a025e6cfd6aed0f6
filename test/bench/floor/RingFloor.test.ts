/**
 * The raw SPSC ring floor (bench/floor/Floor.ts `measureRing`): a Worker consumes what the main
 * thread produces through 64-byte slots, and the consumer's checksum over every word it read is
 * exactly the producer's — so every message crossed once, in order, fully written. The rate is
 * printed, never asserted (wall clock): only that it is a positive finite number.
 */

import assert from 'node:assert/strict';
import { measureRing, ringChecksum, ringFold, ringWord } from '../../../bench/floor/Floor.js';

describe('raw ring floor: every 64 B message crosses the SPSC ring once, in order (real Worker)', () => {
  it('the consumer checksum equals the producer checksum, over many wraps of a small ring', async () => {
    // 8 slots and 100 003 messages: the indices wrap the ring ~12 500 times, and the batch sizes vary.
    const r = await measureRing({ slots: 8, warmup: 1000, messages: 99_003, runs: 3 });
    assert.equal(r.expected, ringChecksum(100_003));
    assert.equal(r.checksum, r.expected);
    assert.equal(r.samplesMps.length, 3);
    for (const s of r.samplesMps) assert.ok(Number.isFinite(s) && s > 0, `rate ${s}`);
    assert.ok(Number.isFinite(r.mps) && r.mps > 0);
    assert.ok(r.samplesMps.includes(r.mps), 'the figure is the median run');
  });

  it('the checksum tells a skipped, repeated or reordered message from the real sequence', () => {
    const fold = (order: number[]) => {
      let sum = 0;
      for (const i of order) for (let j = 0; j < 16; j++) sum = ringFold(sum, ringWord(i, j));
      return sum;
    };
    const good = ringChecksum(4);
    assert.equal(fold([0, 1, 2, 3]), good);
    assert.notEqual(fold([0, 1, 3, 2]), good, 'reordered');
    assert.notEqual(fold([0, 1, 1, 3]), good, 'a stale slot read twice');
    assert.notEqual(fold([0, 1, 2]), good, 'one missing');
  });

  it('the default measurement (4 Mi messages, 3 runs) gives a positive finite rate', async function () {
    this.timeout(120_000);
    const r = await measureRing();
    assert.equal(r.checksum, r.expected);
    assert.ok(Number.isFinite(r.mps) && r.mps > 0);
    console.log(
      `      raw ring floor (this machine, not asserted): ${r.samplesMps.map((s) => s.toFixed(1)).join(', ')} M msg/s`,
    );
  });

  it('refuses a ring whose slot count is not a power of two', async () => {
    await assert.rejects(measureRing({ slots: 12, messages: 10 }), { code: 'PV_ERR_INVALID_ARG' });
  });
});
