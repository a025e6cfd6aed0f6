/**
 * The `packed` case kind of the virtq fuzz target (fuzz/virtq/PackedCases.ts) against the real
 * PackedDevice: a fixed-seed run reaches every planted defect and its refusal code without a
 * violation, and the checks fire: a device map that ignores read-only regions is caught
 * (wrong verdict on `ro-write`, write-read-only, unexpected write).
 */

import assert from 'node:assert/strict';
import { GuestMemoryMap, type Translation } from '../../../backend/virtio/GuestMemoryMap.js';
import { runFuzz } from '../../../fuzz/core/FuzzRunner.js';
import { PACKED_DEFECTS } from '../../../fuzz/virtq/PackedCases.js';
import { VirtqTarget } from '../../../fuzz/virtq/VirtqTarget.js';

/** Faulty: resolves every write as a read, so read-only regions are writable. */
class IgnoresReadOnly extends GuestMemoryMap {
  override translate(gpa: number, len: number, _write: boolean, out: Translation): void {
    super.translate(gpa, len, false, out);
  }
}

describe('virtq fuzz target: packed cases over the real PackedDevice', function () {
  this.timeout(120_000);

  it('a fixed-seed run reaches every packed defect and refusal code with no violation', async () => {
    const t = new VirtqTarget({ mutator: false, kinds: [['packed', 1]] });
    const kinds = new Set<string>();
    const wrapped = {
      name: t.name,
      setup: (s: number) => t.setup(s),
      teardown: () => t.teardown(),
      counters: () => t.counters(),
      runCase: async (...a: Parameters<VirtqTarget['runCase']>) => {
        const r = await t.runCase(...a);
        kinds.add(t.lastKind);
        return r;
      },
    };
    const r = await runFuzz(wrapped, { seed: 2026, cases: 800 });
    assert.deepEqual(
      r.signatures.map((s) => `${s.signature}: ${s.detail} (seed ${s.firstSeed})`),
      [],
    );
    for (const d of [...PACKED_DEFECTS, 'valid', 'garbage']) assert.ok(kinds.has(`packed/${d}`), `no packed/${d} case`);
    const c = r.counters ?? {};
    for (const code of [
      'PV_ERR_VIRTQ_BAD_DESC',
      'PV_ERR_VIRTQ_LOOP',
      'PV_ERR_VIRTQ_BAD_ADDR',
      'PV_ERR_VIRTQ_DIRECTION',
    ]) {
      assert.ok((c[code] ?? 0) > 0, `no case was refused with ${code}`);
    }
    assert.ok((c.served ?? 0) > 0);
    assert.equal(c.honestCompleted, c.honestChains, 'every honest chain completed');
  });

  it('catches a device map that lets the packed device write read-only memory', async () => {
    const t = new VirtqTarget({ mutator: false, kinds: [['packed', 1]], innerMap: (ram) => ram.map(IgnoresReadOnly) });
    const r = await runFuzz(t, { seed: 42, cases: 400 });
    const sigs = new Set(r.signatures.map((s) => s.signature));
    assert.ok(sigs.has('virtq/memory:write-read-only'), [...sigs].join(', '));
    assert.ok(sigs.has('virtq/packed:wrong-verdict'), [...sigs].join(', '));
  });
});
