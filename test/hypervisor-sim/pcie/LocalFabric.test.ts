import assert from 'node:assert/strict';
import type { DmaRef, DmaResolver } from '../../../hypervisor-sim/iommu/DmaResolver.js';
import { emptyDmaRef } from '../../../hypervisor-sim/iommu/DmaResolver.js';
import { LocalFabric } from '../../../hypervisor-sim/pcie/LocalFabric.js';
import { runScenario } from '../../../hypervisor-sim/scenario/Scenario.js';
import type { MmioRegion } from '../../../protocol/Pci.js';
import { Stage } from '../../../protocol/stage/StageLedger.js';

const PERFTEST = new URL('../../../bench/programs/PerftestGuest.js', import.meta.url);

/** A resolver that answers from a fixed buffer and counts its calls. */
function counting(ok: boolean): DmaResolver & { calls: number } {
  const bytes = new Uint8Array(new SharedArrayBuffer(4096));
  return {
    calls: 0,
    resolve(_iova: number, _len: number, _write: boolean, out: DmaRef): boolean {
      this.calls++;
      out.bytes = bytes;
      out.words = new Int32Array(bytes.buffer);
      out.offset = 0;
      out.domid = 1;
      return ok;
    },
    generation: () => 7,
  };
}

describe('pcie LocalFabric: local devices pay the rc ── sw ── device path under a timing profile', () => {
  it('ideal wraps nothing: the resolver and the BAR are returned as they are', () => {
    const f = new LocalFabric('ideal');
    const r = counting(true);
    const bar: MmioRegion = { size: 16, read32: () => 1, write32: () => {} };
    assert.equal(f.charges, false);
    assert.equal(f.wrapResolver(r), r);
    assert.equal(f.wrapBar(bar), bar);
    assert.equal(f.dmaNs(4096, true), 0);
  });

  it('pcie3-x8-ntb: a DMA costs two links plus serialisation, reads a round trip; the wrapper keeps answers', () => {
    const f = new LocalFabric('pcie3-x8-ntb');
    assert.equal(f.charges, true);
    const small = f.dmaNs(64, true);
    assert.ok(small > 150 && small < 400, `64 B write over 2 links: ${small} ns`);
    assert.ok(f.dmaNs(64, false) > small, 'a read pays the latency twice');
    assert.ok(f.dmaNs(1 << 20, true) > 100_000, '1 MiB is bandwidth-bound (Gen3 x8)');
    const inner = counting(true);
    const w = f.wrapResolver(inner);
    const ref = emptyDmaRef();
    assert.equal(w.resolve(0, 64, true, ref), true);
    assert.equal(inner.calls, 1);
    assert.equal(ref.domid, 1);
    assert.equal(w.generation(), 7);
    assert.equal(f.wrapResolver(counting(false)).resolve(0, 64, false, ref), false, 'a miss stays a miss');
    let written = -1;
    const bar = f.wrapBar({ size: 16, read32: (o) => o + 1, write32: (_o, v) => (written = v) });
    assert.equal(bar.read32(4), 5);
    bar.write32(0, 9);
    assert.equal(written, 9);
  });

  for (const [fabric, charged] of [
    ['ideal', false],
    ['pcie3-x8-ntb', true],
  ] as const) {
    it(`a native write_bw scenario with fabric ${fabric} ${charged ? 'spends' : 'never spends'} FABRIC time in the guests`, async function () {
      this.timeout(60_000);
      const args = { test: 'write_bw', size: 64 << 10, iters: 50, txDepth: 8, tag: `lf-${fabric}` };
      const guest = (name: string, i: number) => ({
        name,
        program: PERFTEST,
        memoryMiB: 16,
        args,
        devices: [{ device: `nic${i}`, transport: 'native' as const }],
      });
      const r = await runScenario({
        host: { fabric, instrumentStages: true },
        guests: [guest('server', 0), guest('client', 1)],
      });
      const client = r.guests.client.stagesNs ?? [];
      assert.equal(client.length, Stage.COUNT);
      if (charged) assert.ok(client[Stage.FABRIC] > 0, 'the client pays the local PCIe path');
      else assert.equal(client[Stage.FABRIC], 0);
    });
  }
});
