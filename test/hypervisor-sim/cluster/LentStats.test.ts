import assert from 'node:assert/strict';
import {
  LENT_MAGIC,
  LENT_STATS_BYTES,
  LentBig,
  LentState,
  LentStats,
  LentWord,
} from '../../../hypervisor-sim/cluster/LentStats.js';

describe('LentStats (lease record layout)', () => {
  it('the offset table of the file comment holds: word · 4 and BigInt index · 8, 80 bytes', () => {
    const bytes: Array<[number, number]> = [
      [LentWord.MAGIC * 4, 0],
      [LentWord.STATE * 4, 4],
      [LentWord.MMIO_READS * 4, 8],
      [LentWord.MMIO_WRITES * 4, 12],
      [LentWord.MMIO_NTB_CROSSINGS * 4, 16],
      [LentWord.MMIO_LINK_HOPS * 4, 20],
      [LentWord.DMA_READS * 4, 24],
      [LentWord.DMA_WRITES * 4, 28],
      [LentWord.DMA_NTB_CROSSINGS * 4, 32],
      [LentWord.DMA_LINK_HOPS * 4, 36],
      [LentWord.DMA_FAULTS * 4, 40],
      [LentWord.MMIO_REFUSED * 4, 44],
      [LentWord.P2P_READS * 4, 48],
      [LentWord.P2P_WRITES * 4, 52],
      [LentWord.P2P_NTB_CROSSINGS * 4, 56],
      [LentWord.P2P_LINK_HOPS * 4, 60],
      [LentBig.FABRIC_NS * 8, 64],
      [LentBig.DMA_BYTES * 8, 72],
    ];
    for (const [got, want] of bytes) assert.equal(got, want);
    assert.equal(LENT_STATS_BYTES, 80);
    const s = new LentStats(LentStats.create());
    assert.equal(s.words[LentWord.MAGIC], LENT_MAGIC);
    assert.equal(s.words[LentWord.STATE], LentState.LIVE);
  });

  it('counters land in their own fields, 64-bit ones included', () => {
    const s = new LentStats(LentStats.create());
    s.add(LentWord.DMA_NTB_CROSSINGS, 3);
    s.addBig(LentBig.DMA_BYTES, 2 ** 40);
    s.addBig(LentBig.FABRIC_NS, 573.4);
    s.addBig(LentBig.FABRIC_NS, 0);
    const snap = s.snapshot();
    assert.equal(snap.dmaNtbCrossings, 3);
    assert.equal(snap.dmaBytes, 2 ** 40);
    assert.equal(snap.fabricNs, 573);
    assert.equal(snap.mmioWrites, 0);
  });

  it('revocation happens once and is seen by every attachment of the buffer', () => {
    const buf = LentStats.create();
    const a = new LentStats(buf);
    const b = new LentStats(buf);
    assert.equal(b.revoked, false);
    assert.equal(a.revoke(), true);
    assert.equal(a.revoke(), false);
    assert.equal(b.revoked, true);
  });

  it('refuses a buffer that is not a lease record', () => {
    assert.throws(() => new LentStats(new SharedArrayBuffer(80)), { code: 'PV_ERR_CONFIG' });
    assert.throws(() => new LentStats(new SharedArrayBuffer(64)), { code: 'PV_ERR_CONFIG' });
  });
});
