/**
 * The rdma fuzz target over the real backend: a bounded run with a fixed seed keeps every
 * invariant while exercising every kind of action (halts and reconnects, the mutator, honest
 * traffic), and each invariant check fails when it should — with a broken backend stub in the
 * serving loop (never answers, answers twice, dirty padding, wrong echo), a loop that throws,
 * or a stray write into memory the guest did not grant (or granted read-only).
 */

import assert from 'node:assert/strict';
import { runFuzz } from '../../../fuzz/core/FuzzRunner.js';
import type { Violation } from '../../../fuzz/core/FuzzTarget.js';
import { XorShiftRng } from '../../../fuzz/core/Rng.js';
import { dataBatch, dataCase } from '../../../fuzz/rdma/RdmaCases.js';
import { RdmaTarget } from '../../../fuzz/rdma/RdmaTarget.js';
import { PvDataRspWord } from '../../../protocol/rdma/pv/DataSlot.js';
import { PV_DATA_SLOT_WORDS } from '../../../protocol/rdma/pv/PvConstants.js';
import { RingWord } from '../../../protocol/ring/Layout.js';
import type { GrantRef } from '../../../protocol/Types.js';

const sigs = (v: readonly Violation[]): string[] => [...new Set(v.map((x) => x.signature))].sort();

describe('fuzz rdma: a bounded run over the real backend keeps every invariant', () => {
  it('seed 2024, 600 cases: 0 violations; halts, reconnects, mutator writes and honest traffic all happened', async () => {
    const t = new RdmaTarget({ honestRate: 0.3 });
    const r = await runFuzz(t, { seed: 2024, cases: 600 });
    assert.deepEqual(r.signatures, [], JSON.stringify(r.signatures, null, 1));
    assert.equal(r.cases, 600);
    assert.ok(r.requests > 10_000, `${r.requests} adversarial requests`);
    assert.ok(r.honest > 100);
    assert.ok(t.stats.halts > 0 && t.stats.reconnects > t.stats.halts - 1, JSON.stringify(t.stats));
    assert.ok(t.stats.mutatorWrites > 0);
    assert.ok(t.world.backend.stats.dataRejects > 0 && t.world.backend.stats.ctrlErrors > 0);
  });
});

describe('fuzz rdma: the invariant checks fail on a broken backend', () => {
  let t: RdmaTarget;
  beforeEach(async () => {
    t = new RdmaTarget({ mutator: false });
    await t.setup(5);
  });
  afterEach(async () => {
    await t.teardown();
  });

  const rng = () => new XorShiftRng(11);

  it('a backend that never serves: unanswered-request', () => {
    const r = dataCase(
      t.caseEnv(() => {}),
      rng(),
      false,
    );
    assert.deepEqual(sigs(r.violations), ['rdma/data:unanswered-request']);
    // Let the real backend answer before teardown.
    for (let i = 0; i < 5; i++) t.world.serve();
    t.adversary.provider.channel.drainData();
  });

  it('a backend that publishes one response too many: double-response', () => {
    let extra = false;
    const words = t.adversary.provider.channel.data.words;
    const env = t.caseEnv(() => {
      t.world.serve();
      if (!extra && Atomics.load(words, RingWord.RSP_PROD) !== 0) {
        extra = true;
        Atomics.add(words, RingWord.RSP_PROD, 1);
      }
    });
    const slot = new Int32Array(PV_DATA_SLOT_WORDS);
    slot[0] = 77; // unknown op: refused, answered once by the real handler
    const r = dataBatch(env, [slot, slot.slice()]);
    assert.ok(sigs(r.violations).includes('rdma/data:double-response'), JSON.stringify(r.violations));
  });

  it('a backend that leaves response padding dirty or echoes the wrong wr_id is caught', () => {
    const words = t.adversary.provider.channel.data.words;
    const env = t.caseEnv(() => {
      const before = Atomics.load(words, RingWord.RSP_PROD) >>> 0;
      t.world.serve();
      const after = Atomics.load(words, RingWord.RSP_PROD) >>> 0;
      for (let k = before; k !== after; k = (k + 1) >>> 0) {
        const w = RingWord.SLOTS + (k & 127) * PV_DATA_SLOT_WORDS;
        words[w + PvDataRspWord.PAD + 3] = 0x1eaced;
        words[w + PvDataRspWord.WR_ID_LO] ^= 1;
      }
    });
    const r = dataCase(env, rng(), false);
    assert.deepEqual(sigs(r.violations), ['rdma/data:dirty-padding', 'rdma/data:response-mismatch']);
  });

  it('a serving loop that throws is reported as rdma/loop:threw, and the run goes on', async () => {
    const id = t.world.server.addPoller({
      poll: () => {
        throw new Error('poller bug');
      },
      outstanding: () => false,
    });
    const r1 = await t.runCase(rng(), 11);
    t.world.server.removePoller(id);
    assert.ok(sigs(r1.violations).includes('rdma/loop:threw'), JSON.stringify(r1.violations));
    const r2 = await t.runCase(new XorShiftRng(12), 12);
    assert.deepEqual(r2.violations, []);
  });

  it('a stray write into a never-granted canary, or through a read-only grant, is caught', async () => {
    const adv = t.adversary;
    // A device DMA gone astray: one byte of a page the guest never granted.
    adv.dom.mem.view(adv.canary.addr, 1)[0] ^= 0xff;
    // A backend writing through a read-only mapping (a SharedArrayBuffer view is writable).
    const m = t.world.dom0.hc.grant.mapGrants(adv.dom.domid, [adv.refs.readonly[0] as GrantRef], false);
    m.view[100] ^= 0xff;
    t.world.dom0.hc.grant.unmapGrant(m.handle);
    const r = await t.runCase(rng(), 11);
    assert.deepEqual(
      sigs(r.violations).filter((s) => s.startsWith('rdma/memory')),
      ['rdma/memory:canary-changed', 'rdma/memory:read-only-page-written'],
    );
  });
});
