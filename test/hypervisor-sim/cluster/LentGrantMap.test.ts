/**
 * A grant device map for a LENT device returns the address the device really uses: the IOVA on
 * the borrower plus the lender-side DMA window base (SimGrantOps `deviceDmaBase`), so a backend
 * that hands `deviceAddr` to the device reaches the granted page through the NTB and B's IOMMU.
 */

import assert from 'node:assert/strict';
import { Cluster } from '../../../hypervisor-sim/cluster/Cluster.js';
import { NtbDmaResolver } from '../../../hypervisor-sim/cluster/NtbDmaResolver.js';
import { GrantTableSpace } from '../../../hypervisor-sim/grant/GrantTableSpace.js';
import { SimGrantOps } from '../../../hypervisor-sim/grant/SimGrantOps.js';
import { emptyDmaRef } from '../../../hypervisor-sim/iommu/DmaResolver.js';
import { IommuContext } from '../../../hypervisor-sim/iommu/IommuContext.js';
import { MemoryDirectory } from '../../../hypervisor-sim/memory/MemoryDirectory.js';
import { SharedArrayGuestMemory } from '../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import { type DomId, type Gfn, PAGE_SIZE } from '../../../protocol/Types.js';

const BACKEND = 0 as DomId;
const GUEST = 1 as DomId;

async function rig() {
  const cluster = new Cluster({
    hosts: [
      { name: 'A', nics: [{ name: 'nic0' }] },
      { name: 'B', nics: [{ name: 'nic0' }] },
    ],
  });
  await cluster.lend('A', 'nic0');
  const handle = await cluster.borrow('nic0@A', 'B');
  const l = cluster.lending('B');
  l.assign(BACKEND, 64 * PAGE_SIZE, { device: 'nic0@A', iommu: 'translate' });
  const memories = new MemoryDirectory();
  memories.addMemory(SharedArrayGuestMemory.create(BACKEND, 64 * PAGE_SIZE));
  const guestMem = memories.addMemory(SharedArrayGuestMemory.create(GUEST, 16 * PAGE_SIZE));
  const iommu = IommuContext.attach(l.iommu('nic0@A').descriptor, memories);
  const space = GrantTableSpace.create({ maxDomains: 2, entriesPerDomain: 64 });
  const data = {
    cluster: cluster.fabric.descriptor,
    profile: cluster.profile,
    lender: 'A',
    endpoint: 'nic0',
    borrower: 'B',
    iommu: iommu.descriptor,
    stats: handle.stats.buffer,
  };
  return { cluster, handle, iommu, memories, guestMem, space, device: new NtbDmaResolver(data, memories) };
}

describe('grant device map of a lent device (deviceDmaBase)', () => {
  it('deviceAddr = window base + IOVA, and the lent device reaches the granted page there through the NTB', async () => {
    const { cluster, handle, iommu, memories, guestMem, space, device } = await rig();
    const backend = new SimGrantOps(BACKEND, space, memories, {
      devices: new Map([['nic0@A', iommu]]),
      deviceDmaBase: new Map([['nic0@A', handle.dmaWindowBase]]),
    });
    const guest = new SimGrantOps(GUEST, space, memories);
    const ref = guest.grantAccess(BACKEND, 5 as Gfn, false);
    guestMem.bytes.set([7, 6, 5, 4], 5 * PAGE_SIZE + 12);
    const map = backend.mapGrants(GUEST, [ref], true, { device: 'nic0@A' });
    const extent = iommu.extents()[0];
    assert.equal(map.deviceAddr, handle.dmaWindowBase + extent.iova, 'the device address, not the IOVA on B');
    const out = emptyDmaRef();
    assert.equal(device.resolve((map.deviceAddr as number) + 12, 4, true, out), true);
    assert.equal(out.domid, GUEST);
    assert.deepEqual([...out.bytes.subarray(out.offset, out.offset + 4)], [7, 6, 5, 4]);
    assert.equal(handle.stats.snapshot().dmaNtbCrossings, 1);
    // The bare IOVA is an address on B, not in any window of A: the NTB drops it.
    assert.equal(device.resolve(extent.iova + 12, 4, true, out), false);
    backend.unmapGrant(map.handle);
    assert.equal(iommu.extents().length, 0, 'the unmap removed the extent by its IOVA');
    assert.equal(device.resolve((map.deviceAddr as number) + 12, 4, true, out), false);
    await cluster.shutdown();
  });

  it('a negative or fractional DMA base is refused at construction', () => {
    const space = GrantTableSpace.create({ maxDomains: 1, entriesPerDomain: 16 });
    for (const base of [-1, 0.5]) {
      assert.throws(
        () => new SimGrantOps(BACKEND, space, new MemoryDirectory(), { deviceDmaBase: new Map([['x', base]]) }),
        { code: 'PV_ERR_CONFIG' },
      );
    }
  });
});
