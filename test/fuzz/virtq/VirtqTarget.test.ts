/**
 * The virtq fuzz target against the real device side (backend/virtio), with bounded budgets
 * (the long run is `pvio fuzz --backend virtq`):
 *  - property: any case seed runs without a violation (fast-check over seeds, fixed run seed);
 *  - a fixed-seed run reaches every case kind, every planted defect's refusal code and the
 *    reset path, with the mutator Worker running;
 *  - the checks fire: a device map that ignores read-only regions, or one that ignores range
 *    lengths, is caught (write-read-only / translated-outside / outside-write / wrong-verdict).
 */

import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GuestMemoryMap, type Translation } from '../../../backend/virtio/GuestMemoryMap.js';
import { runFuzz } from '../../../fuzz/core/FuzzRunner.js';
import { XorShiftRng } from '../../../fuzz/core/Rng.js';
import { VirtqTarget } from '../../../fuzz/virtq/VirtqTarget.js';

/** Faulty: resolves every write as a read, so read-only regions are writable. */
class IgnoresReadOnly extends GuestMemoryMap {
  override translate(gpa: number, len: number, _write: boolean, out: Translation): void {
    super.translate(gpa, len, false, out);
  }
}

/** Faulty: checks only the first byte of a range, so a range may run past its region. */
class IgnoresLength extends GuestMemoryMap {
  override translate(gpa: number, len: number, write: boolean, out: Translation): void {
    super.translate(gpa, Math.min(len, 1), write, out);
  }
}

/** Signatures a faulty target reports within `cases` cases. */
async function signaturesOf(C: typeof GuestMemoryMap, cases: number): Promise<Set<string>> {
  const t = new VirtqTarget({ mutator: false, innerMap: (ram) => ram.map(C) });
  const r = await runFuzz(t, { seed: 42, cases });
  return new Set(r.signatures.map((s) => s.signature));
}

describe('virtq fuzz target: properties over the real device side', function () {
  this.timeout(120_000);

  it('any case seed runs without a violation (device, memory, verdict, honest queue)', async () => {
    const t = new VirtqTarget({ mutator: false });
    await t.setup(17);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 2 ** 32 - 1 }), async (seed) => {
        const r = await t.runCase(new XorShiftRng(seed), seed);
        assert.deepEqual(
          r.violations.map((v) => `${v.signature}: ${v.detail}`),
          [],
          `case seed ${seed} (${t.lastKind})`,
        );
      }),
      { numRuns: 400, seed: 9 },
    );
    assert.deepEqual(await t.teardown(), []);
  });

  it('a fixed-seed run with the mutator reaches every kind, every refusal code and the reset path', async () => {
    const t = new VirtqTarget();
    const r = await runFuzz(t, { seed: 2026, cases: 600 });
    assert.deepEqual(
      r.signatures.map((s) => `${s.signature}: ${s.detail} (seed ${s.firstSeed})`),
      [],
    );
    const c = r.counters ?? {};
    for (const k of [
      'structured',
      'garbage',
      'mutator',
      'spurious',
      'mmio',
      'recovered',
      'honestCompleted',
      'mutatorWrites',
    ]) {
      assert.ok((c[k] ?? 0) > 0, `counter ${k} is ${c[k]}`);
    }
    for (const code of [
      'PV_ERR_VIRTQ_BAD_DESC',
      'PV_ERR_VIRTQ_LOOP',
      'PV_ERR_VIRTQ_BAD_ADDR',
      'PV_ERR_VIRTQ_DIRECTION',
      'PV_ERR_VIRTQ_TOO_LONG',
      'PV_ERR_VIRTQ_AVAIL_IDX',
    ]) {
      assert.ok((c[code] ?? 0) > 0, `no case was refused with ${code}`);
    }
    assert.equal(c.honestCompleted, c.honestChains, 'every honest chain completed');
  });

  it('catches a device map that lets the device write read-only memory', async () => {
    const sigs = await signaturesOf(IgnoresReadOnly, 300);
    assert.ok(sigs.has('virtq/memory:write-read-only'), [...sigs].join(', '));
    assert.ok(sigs.has('virtq/memory:unexpected-write'), [...sigs].join(', '));
    assert.ok(sigs.has('virtq/adv:wrong-verdict'), [...sigs].join(', '));
  });

  it('catches a device map that lets a range run past its region (into a canary hole)', async () => {
    const sigs = await signaturesOf(IgnoresLength, 300);
    assert.ok(sigs.has('virtq/memory:translated-outside'), [...sigs].join(', '));
    assert.ok(sigs.has('virtq/memory:outside-write'), [...sigs].join(', '));
    assert.ok(sigs.has('virtq/adv:wrong-verdict'), [...sigs].join(', '));
  });
});
