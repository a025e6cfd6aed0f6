/**
 * The blk fuzz target against the real blkback, with bounded budgets (the long run is
 * `pvio fuzz --backend blk`):
 *  - property: ANY blkif slot contents (raw words, or structured near-valid requests) get
 *    exactly one response each, with zero padding and the status the independent model
 *    predicts, and the honest neighbour is unaffected;
 *  - property: any case seed runs without a violation (every action kind);
 *  - a fixed-seed run exercises every action and teardown finds nothing left (XSA-331/350/371).
 */

import assert from 'node:assert/strict';
import fc from 'fast-check';
import { flood, overflow } from '../../../fuzz/blk/BlkActions.js';
import { BlkTarget } from '../../../fuzz/blk/BlkTarget.js';
import { hostileConnect } from '../../../fuzz/blk/HostileConnect.js';
import { caseSeed, XorShiftRng } from '../../../fuzz/core/Rng.js';
import type { DomId } from '../../../protocol/Types.js';

/** Fails with every violation's signature and detail. */
function clean(r: { violations: readonly { signature: string; detail: string }[] }, what: string): void {
  assert.deepEqual(
    r.violations.map((v) => `${v.signature}: ${v.detail}`),
    [],
    what,
  );
}

describe('blk fuzz target: properties over the real blkback', function () {
  this.timeout(60_000);
  let t: BlkTarget;

  before(async () => {
    t = new BlkTarget();
    await t.setup(11);
  });
  after(async () => {
    const v = await t.teardown();
    assert.deepEqual(v, [], 'teardown: nothing mapped, pinned or connected');
  });

  it('any raw slot words get exactly one response each, zero padding, the status the model predicts', async () => {
    const slot = fc.array(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), { minLength: 28, maxLength: 28 });
    await fc.assert(
      fc.asyncProperty(fc.array(slot, { minLength: 1, maxLength: 8 }), fc.integer(), async (slots, seed) => {
        const r = await t.runSlots(
          new XorShiftRng(seed),
          seed,
          slots.map((s) => Int32Array.from(s)),
        );
        clean(r, 'raw slots');
      }),
      { numRuns: 300 },
    );
  });

  it('any near-valid request (op, count, sectors, segment bounds, grant kind) gets the status the model predicts', async () => {
    const req = fc.record({
      op: fc.constantFrom(0, 1, 2, 3, 5, 6, 4, 255),
      iop: fc.constantFrom(0, 1, 3, 6),
      nseg: fc.oneof(fc.integer({ min: 0, max: 12 }), fc.constantFrom(255, 256, 257, 0xffff)),
      first: fc.integer({ min: 0, max: 9 }),
      last: fc.integer({ min: 0, max: 9 }),
      lo: fc.oneof(fc.integer({ min: 0, max: 9000 }), fc.constantFrom(0xffffffff, 0xfffffff8, 0x80000000)),
      hi: fc.constantFrom(0, 0, 0, 1, 0x1fffff, 0x200000, 0xffffffff),
      ref: fc.integer({ min: 0, max: 5 }),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(req, { minLength: 1, maxLength: 6 }), fc.integer(), async (reqs, seed) => {
        const adv = t.adversary;
        const pool = [adv.rwRefs[1], adv.roRefs[0], adv.foreignRefs[0], adv.revokedRefs[0], 3, 5000];
        const slots = reqs.map((q) => {
          const s = new Int32Array(28);
          const sects = q.first | (q.last << 8);
          s[4] = q.lo | 0;
          s[5] = q.hi | 0;
          if (q.op === 6) {
            s[0] = 6 | (q.iop << 8) | ((q.nseg & 0xffff) << 16);
            s[7] = adv.indRefs[0];
            // Descriptors of indirect page 0: all segments the same.
            const base = adv.indWord(0);
            for (let i = 0; i < 512; i++) {
              adv.memWords[base + 2 * i] = pool[q.ref];
              adv.memWords[base + 2 * i + 1] = sects;
            }
          } else {
            s[0] = q.op | ((q.nseg & 0xff) << 8);
            for (let i = 0; i < 11; i++) {
              s[6 + 2 * i] = pool[q.ref];
              s[7 + 2 * i] = sects;
            }
          }
          return s;
        });
        clean(await t.runSlots(new XorShiftRng(seed), seed, slots), 'structured slots');
      }),
      { numRuns: 300 },
    );
  });

  it('any case seed (hostile batches, mutator, flood, stale slots, producer overflow) breaks no invariant', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 0xffffffff }), async (seed) => {
        clean(await t.runCase(new XorShiftRng(seed), seed), `case seed ${seed}`);
      }),
      { numRuns: 300 },
    );
  });
});

describe('blk fuzz target: hostile frontend keys (§6 control plane)', function () {
  this.timeout(60_000);

  it('every handshake that must be refused is refused, and nothing of it stays mapped or bound', async () => {
    const t = new BlkTarget({ mutator: false });
    await t.setup(3);
    const outcome = new Map<string, Set<boolean>>();
    for (let i = 0; i < 48; i++) {
      const r = await hostileConnect(t.world, t.adversary, 2 as DomId, 1000 + i, new XorShiftRng(i));
      assert.deepEqual(r.violations, [], `attempt ${i} (${r.attack})`);
      outcome.set(r.attack, (outcome.get(r.attack) ?? new Set()).add(r.accepted));
      assert.equal(t.world.dom0.grant.liveMappings(), t.world.backend.connections, `after ${r.attack}`);
    }
    for (const a of ['protocol', 'order', 'missing', 'badRef', 'noncontiguous', 'evtchn', 'indices']) {
      assert.deepEqual([...(outcome.get(a) ?? [])], [false], `${a} must always be refused`);
    }
    assert.deepEqual([...(outcome.get('dataRing') ?? [])], [true], 'a data page is a ring like any other');
    assert.deepEqual(await t.teardown(), [], 'teardown');
  });
});

describe('blk fuzz target: a fixed-seed run', function () {
  this.timeout(60_000);

  it('exercises every path (served, refused, EOPNOTSUPP, indirect, mutator, reconnects) with no violation', async () => {
    const t = new BlkTarget();
    await t.setup(1);
    let requests = 0;
    let honest = 0;
    for (let i = 0; i < 500; i++) {
      const s = caseSeed(1, i);
      const r = await t.runCase(new XorShiftRng(s), s);
      clean(r, `case ${i} seed ${s}`);
      requests += r.requests;
      honest += r.honest;
    }
    const s = caseSeed(1, 500);
    clean(await t.runAction(new XorShiftRng(s), s, flood), 'flood');
    clean(await t.runAction(new XorShiftRng(s + 1), s + 1, overflow), 'XSA-39 producer overflow');
    const { stats } = t.world.backend.totals();
    const writes = t.mutatorWrites;
    assert.deepEqual(await t.teardown(), [], 'teardown');
    assert.ok(requests > 3000, `${requests} adversarial requests`);
    assert.equal(honest, 1000);
    assert.ok(t.reconnects >= 2, `${t.reconnects} reconnects`);
    for (const k of ['okay', 'errors', 'eopnotsupp', 'indirect', 'reads', 'writes', 'flushes'] as const) {
      assert.ok(stats[k] > 0, `backend ${k} = ${stats[k]}`);
    }
    assert.ok(writes > 0, 'the mutator Worker rewrote slots while the backend served them');
  });
});
