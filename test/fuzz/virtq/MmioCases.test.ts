/**
 * The virtq target's `mmio` kind against the real MmioDevice (bounded; the long run is
 * `pvio fuzz --backend virtq`):
 *  - a fixed-seed mmio-only run is clean and reaches every register refusal code and every
 *    refusal reason of the transport, the live path (chains served), a chain refusal that moves
 *    the device to DEVICE_NEEDS_RESET, and the honest queue completing every chain;
 *  - any case seed of the default mix that draws `mmio` is clean (property);
 *  - the checks fire: a device that accepts a non-power-of-two QueueNum, one that serves queues
 *    before DRIVER_OK, and one whose service() throws on a hostile value are caught with
 *    `virtq/mmio:` signatures.
 */

import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MmioDevice, type MmioServiceResult } from '../../../backend/virtio/MmioDevice.js';
import { runFuzz } from '../../../fuzz/core/FuzzRunner.js';
import { XorShiftRng } from '../../../fuzz/core/Rng.js';
import type { MmioDeviceClass } from '../../../fuzz/virtq/MmioCases.js';
import { VirtqTarget } from '../../../fuzz/virtq/VirtqTarget.js';
import { pvError } from '../../../protocol/errors.js';
import { MmioReg, MmioWord, mmioWords } from '../../../protocol/virtio/MmioTransport.js';

/** The pending register write (reg, value), read as the device would. */
function pending(d: MmioDevice): [number, number] {
  const w = mmioWords(d.regs);
  // ORDERING: seq-cst loads of the mailbox the adversary filled before bumping write_seq.
  return [Atomics.load(w, MmioWord.WRITE_REG), Atomics.load(w, MmioWord.WRITE_VALUE) >>> 0];
}

/** Faulty: rounds a non-power-of-two QueueNum down to a power of two instead of refusing it. */
class AcceptsOddQueueNum extends MmioDevice {
  override service(): MmioServiceResult | undefined {
    const [reg, v] = pending(this);
    if (reg === MmioReg.QUEUE_NUM && v > 0 && v <= this.queueNumMax && (v & (v - 1)) !== 0) {
      // ORDERING: rewrites the posted value before the device's own service() loads it.
      Atomics.store(mmioWords(this.regs), MmioWord.WRITE_VALUE, 2 ** Math.floor(Math.log2(v)));
    }
    return super.service();
  }
}

/** Faulty: reports every attached queue as kicked, live or not (serves before DRIVER_OK). */
class ServesBeforeDriverOk extends MmioDevice {
  override kicked(): number[] {
    const out = super.kicked();
    if (this.live) return out;
    return Array.from({ length: this.numQueues }, (_, q) => q).filter((q) => this.queue(q) !== undefined);
  }
}

/** Faulty: throws on QueueNum 2^32 − 1 instead of refusing it through the mailbox. */
class ThrowsOnHugeQueueNum extends MmioDevice {
  override service(): MmioServiceResult | undefined {
    const [reg, v] = pending(this);
    if (reg === MmioReg.QUEUE_NUM && v === 0xffffffff) throw pvError('PV_ERR_VIRTQ_LAYOUT', 'QueueNum 2^32 − 1');
    return super.service();
  }
}

/** Signatures a target with mmio-only cases over device class `C` reports within `cases` cases. */
async function signaturesOf(C: MmioDeviceClass, cases: number): Promise<Set<string>> {
  const t = new VirtqTarget({ mutator: false, kinds: [['mmio', 1]], mmioDevice: C });
  const r = await runFuzz(t, { seed: 42, cases });
  return new Set(r.signatures.map((s) => s.signature));
}

describe('virtq fuzz target: mmio cases over the real MmioDevice', function () {
  this.timeout(120_000);

  it('a fixed-seed mmio run is clean and reaches every refusal code and reason, the live path and NEEDS_RESET', async () => {
    const t = new VirtqTarget({ mutator: false, kinds: [['mmio', 1]] });
    const r = await runFuzz(t, { seed: 2026, cases: 250 });
    assert.deepEqual(
      r.signatures.map((s) => `${s.signature}: ${s.detail} (seed ${s.firstSeed})`),
      [],
    );
    const c = r.counters ?? {};
    const reached = [
      'mmio',
      'mmioLive',
      'mmioServed',
      'mmioNeedsReset',
      'mmio:PV_ERR_VIRTQ_LAYOUT',
      'mmio:PV_ERR_VIRTIO_STATUS',
      'mmio:PV_ERR_VIRTIO_NEEDS_RESET',
      'mmio:PV_ERR_INVALID_ARG',
      ...[
        'queue-index',
        'queue-num',
        'no-queue-num',
        'ready-value',
        'misaligned',
        'high-half',
        'outside-memory',
        'used-read-only',
        'overlap-self',
        'overlap-ready-queue',
        'setup-phase',
        'queue-ready',
        'features',
        'status-order',
        'status-clear',
        'status-wide',
        'status-driver-needs-reset',
        'status-after-failed',
        'status-after-needs-reset',
        'reg-after-failed',
        'reg-after-needs-reset',
        'read-only-reg',
        'interrupt-ack',
      ].map((why) => `mmio-why:${why}`),
    ];
    for (const k of reached) assert.ok((c[k] ?? 0) > 0, `counter ${k} is ${c[k]}`);
    assert.ok(
      Object.keys(c).some((k) => k.startsWith('mmio-chain:PV_ERR_VIRTQ_')),
      'no chain on an mmio queue was refused',
    );
    assert.equal(c.honestCompleted, c.honestChains, 'every honest chain completed');
  });

  it('any case seed of the default mix runs clean, mmio cases included', async () => {
    const t = new VirtqTarget({ mutator: false });
    await t.setup(5);
    let mmio = 0;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 2 ** 32 - 1 }), async (seed) => {
        const r = await t.runCase(new XorShiftRng(seed), seed);
        if (t.lastKind.startsWith('mmio')) mmio++;
        assert.deepEqual(
          r.violations.map((v) => `${v.signature}: ${v.detail}`),
          [],
          `case seed ${seed} (${t.lastKind})`,
        );
      }),
      { numRuns: 300, seed: 11 },
    );
    assert.ok(mmio > 0, 'no case drew the mmio kind');
    assert.deepEqual(await t.teardown(), []);
  });

  it('catches a device that accepts a QueueNum that is not a power of two', async () => {
    const sigs = await signaturesOf(AcceptsOddQueueNum, 200);
    assert.ok(sigs.has('virtq/mmio:wrong-verdict'), [...sigs].join(', '));
    assert.ok(sigs.has('virtq/mmio:window-mismatch'), [...sigs].join(', '));
  });

  it('catches a device that serves queues before DRIVER_OK', async () => {
    const sigs = await signaturesOf(ServesBeforeDriverOk, 200);
    assert.ok(sigs.has('virtq/mmio:served-not-live'), [...sigs].join(', '));
  });

  it('catches a device whose service() throws on guest input', async () => {
    const sigs = await signaturesOf(ThrowsOnHugeQueueNum, 200);
    assert.ok(sigs.has('virtq/mmio:service-threw'), [...sigs].join(', '));
  });
});
