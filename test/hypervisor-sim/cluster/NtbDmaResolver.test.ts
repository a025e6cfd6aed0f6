import assert from 'node:assert/strict';
import { Cluster, type LentHandle } from '../../../hypervisor-sim/cluster/Cluster.js';
import { NtbDmaResolver } from '../../../hypervisor-sim/cluster/NtbDmaResolver.js';
import { emptyDmaRef } from '../../../hypervisor-sim/iommu/DmaResolver.js';
import { MemoryDirectory } from '../../../hypervisor-sim/memory/MemoryDirectory.js';
import { SharedArrayGuestMemory } from '../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import type { FabricProfileName } from '../../../hypervisor-sim/pcie/Profiles.js';
import { fabricProfile } from '../../../hypervisor-sim/pcie/Profiles.js';
import { type DomId, domId, type HostPhysAddr } from '../../../protocol/Types.js';

const OWNER = domId(1) as DomId;
const MEM = 1 << 20;

interface Rig {
  cluster: Cluster;
  handle: LentHandle;
  memory: SharedArrayGuestMemory;
  r: NtbDmaResolver;
}

/** A borrows-to-B cluster whose nic0@A is owned by domain 1 of B (no worker: the owner's memory only). */
async function rig(
  iommu: 'bypass' | 'translate',
  profile: FabricProfileName = 'ideal',
  dmaWindowBytes?: number,
): Promise<Rig> {
  const cluster = new Cluster({
    hosts: [
      { name: 'A', nics: [{ name: 'nic0' }] },
      { name: 'B', nics: [{ name: 'nic0' }] },
    ],
    profile,
  });
  await cluster.lend('A', 'nic0');
  const handle = await cluster.borrow('nic0@A', 'B', { dmaWindowBytes });
  const l = cluster.lending('B');
  assert.equal(l.validate('owner', { device: 'nic0@A', iommu }, new Set()), true);
  l.assign(OWNER, MEM, { device: 'nic0@A', iommu });
  const memory = SharedArrayGuestMemory.create(OWNER, MEM);
  const dir = new MemoryDirectory();
  dir.addMemory(memory);
  const r = new NtbDmaResolver(
    {
      cluster: cluster.fabric.descriptor,
      profile,
      lender: 'A',
      endpoint: 'nic0',
      borrower: 'B',
      iommu: l.iommu('nic0@A').descriptor,
      stats: handle.stats.buffer,
    },
    dir,
  );
  return { cluster, handle, memory, r };
}

describe('NtbDmaResolver (a lent NIC reaching the borrower through the NTB and its IOMMU)', () => {
  for (const mode of ['bypass', 'translate'] as const) {
    it(`an address in the lender's DMA window reaches the owner's memory (${mode})`, async () => {
      const { cluster, handle, memory, r } = await rig(mode);
      memory.bytes.set([1, 2, 3, 4], 0x2000);
      const ref = emptyDmaRef();
      assert.equal(r.resolve(handle.dmaWindowBase + 0x2000, 4, false, ref), true);
      assert.equal(ref.domid, OWNER);
      assert.deepEqual([...ref.bytes.subarray(ref.offset, ref.offset + 4)], [1, 2, 3, 4]);
      const s = handle.stats.snapshot();
      assert.equal(s.dmaReads, 1);
      assert.equal(s.dmaNtbCrossings, 1);
      assert.equal(s.dmaLinkHops, 4);
      assert.equal(s.fabricNs, 0);
      await cluster.shutdown();
    });
  }

  it('refuses, without throwing, every address the fabric or the IOMMU does not map', async () => {
    const { cluster, handle, r } = await rig('bypass', 'ideal', 1 << 20);
    const ref = emptyDmaRef();
    const cases: Array<[string, number, number]> = [
      ['past the end of the DMA window (inside the aperture)', handle.dmaWindowBase + (1 << 20), 64],
      ['straddling the window end', handle.dmaWindowBase + (1 << 20) - 8, 64],
      ["the lender's own RAM", 0x1000, 64],
      ['nothing at all', 2 ** 52, 64],
      ['a negative address', -4, 4],
      ['a fractional length', handle.dmaWindowBase, 1.5],
    ];
    for (const [what, addr, len] of cases) assert.equal(r.resolve(addr, len, true, ref), false, what);
    assert.equal(handle.stats.snapshot().dmaFaults, cases.length);
    await cluster.shutdown();
  });

  it("refuses an address in the window that the borrower's IOMMU does not map (beyond the owner)", async () => {
    const { cluster, handle, r } = await rig('translate');
    assert.equal(r.resolve(handle.dmaWindowBase + MEM, 64, true, emptyDmaRef()), false);
    assert.equal(r.iommu.faults(), 1);
    await cluster.shutdown();
  });

  it('with pcie3-x8-ntb a DMA accounts exactly the cost of its route', async () => {
    const { cluster, handle, r } = await rig('bypass', 'pcie3-x8-ntb');
    assert.equal(r.resolve(handle.dmaWindowBase + 0x4000, 64, true, emptyDmaRef()), true);
    const route = cluster.fabric.route(
      { host: 'A', node: 'nic0' },
      (handle.dmaWindowBase + 0x4000) as HostPhysAddr,
      64,
    );
    const want = Math.round(fabricProfile('pcie3-x8-ntb').costNs(route, 64, 'write'));
    assert.equal(handle.stats.snapshot().fabricNs, want);
    // 4 links of 100 ns + one NTB hop of 360 ns + 64 B through the NTB at 4.8 B/ns.
    assert.equal(want, Math.round(760 + 64 / 4.8));
    await cluster.shutdown();
  });

  it('after the lease ends nothing resolves, and the generation moved (cached views drop)', async () => {
    const { cluster, handle, r } = await rig('bypass');
    const gen = r.generation();
    await cluster.giveBack(handle, { force: true });
    assert.notEqual(r.generation(), gen);
    assert.equal(r.resolve(handle.dmaWindowBase + 0x1000, 64, false, emptyDmaRef()), false);
    await cluster.shutdown();
  });
});
