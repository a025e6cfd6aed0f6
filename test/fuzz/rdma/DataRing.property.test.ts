/**
 * Properties of the real RDMA backend under arbitrary guest input (fast-check, bounded runs):
 *  - any data-ring slot contents get exactly one response each (echoing the request, zero
 *    padding) or a ring disconnect — never a throw out of the serving loop, never an access to
 *    memory the guest did not grant;
 *  - any control-slot bytes (and any length word) get exactly one decodable response.
 */

import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { Violation } from '../../../fuzz/core/FuzzTarget.js';
import { ctrlBatch, dataBatch } from '../../../fuzz/rdma/RdmaCases.js';
import { RdmaTarget } from '../../../fuzz/rdma/RdmaTarget.js';
import { PvDataOp } from '../../../protocol/rdma/pv/DataSlot.js';
import { PV_CTRL_MAX_MESSAGE, PV_DATA_SLOT_WORDS } from '../../../protocol/rdma/pv/PvConstants.js';

describe('fuzz rdma properties: hostile ring contents never break the backend', () => {
  let t: RdmaTarget;
  before(async () => {
    t = new RdmaTarget({ mutator: false });
    await t.setup(99);
  });
  after(async () => {
    const v = await t.teardown();
    assert.deepEqual(v, []);
  });

  /** Checks after an action: loop, grants, canaries. */
  function sideChecks(): Violation[] {
    return [...t.recorder.take(), ...t.adversary.checkCanaries()];
  }

  it('any data-ring slot content gets exactly one response or a ring disconnect, never a throw', () => {
    const word = fc.oneof(
      fc.integer({ min: -0x80000000, max: 0x7fffffff }),
      fc.constantFrom(0, -1, 1, 0x7fffffff, -0x80000000, 0x200000, 65),
    );
    const slot = fc
      .tuple(
        fc.constantFrom(PvDataOp.POST_SEND, PvDataOp.POST_RECV, 0, 3),
        fc.boolean(),
        fc.array(word, { minLength: PV_DATA_SLOT_WORDS, maxLength: PV_DATA_SLOT_WORDS }),
      )
      .map(([op, ownQp, words]) => {
        const q = Int32Array.from(words);
        q[0] = op;
        if (ownQp) q[1] = t.adversary.qps[0].handle;
        if (ownQp) q[2] = q[3] = 0;
        return q;
      });
    fc.assert(
      fc.property(fc.array(slot, { minLength: 1, maxLength: 128 }), (slots) => {
        const r = dataBatch(t.caseEnv(), slots);
        assert.deepEqual([...r.violations, ...sideChecks()], []);
        assert.equal(r.halted, false, 'slot contents alone never justify a disconnect');
      }),
      { numRuns: 300, seed: 7 },
    );
  });

  it('any control-slot bytes and length word get exactly one decodable response', () => {
    const req = fc.record({
      bytes: fc.uint8Array({ maxLength: PV_CTRL_MAX_MESSAGE }),
      lengthWord: fc.option(fc.integer({ min: 0, max: 0xffffffff }), { nil: undefined }),
    });
    fc.assert(
      fc.property(fc.array(req, { minLength: 1, maxLength: 2 }), (reqs) => {
        const r = ctrlBatch(
          t.caseEnv(),
          reqs.map((q) => ({ ...q, seq: undefined })),
        );
        assert.deepEqual([...r.violations, ...sideChecks()], []);
      }),
      { numRuns: 300, seed: 8 },
    );
  });
});
