/**
 * Foreign guest memory across real domains: a privileged dom0 (it owns nic0, IOMMU translating)
 * reaches a guest's memory without grants — regions for its virtio memory table, IOMMU mappings
 * for its NIC — while the guest, in its own Worker, has no such power. The test thread plays
 * the NIC's DMA engine: it attaches nic0's IOMMU context with the guest's memory and resolves
 * the device addresses dom0 published, exactly as a device thread does.
 */

import assert from 'node:assert/strict';
import { Host } from '../../../hypervisor-sim/domain/Host.js';
import { emptyDmaRef } from '../../../hypervisor-sim/iommu/DmaResolver.js';
import { IommuContext } from '../../../hypervisor-sim/iommu/IommuContext.js';
import { MemoryDirectory } from '../../../hypervisor-sim/memory/MemoryDirectory.js';
import type { StoreOps } from '../../../protocol/Hypercalls.js';
import type { ForeignBackendResult, ForeignDmaAddrs } from './programs/ForeignBackend.js';
import { DMA_LEN, type ForeignGuestResult, PATTERN_LEN, patternByte, REPLY } from './programs/ForeignGuest.js';

const BACKEND = new URL('./programs/ForeignBackend.js', import.meta.url);
const GUEST = new URL('./programs/ForeignGuest.js', import.meta.url);
const GUEST_ID = 1;

async function pollKey(store: StoreOps, path: string): Promise<string> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const value = await store.tryRead(path);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${path} did not appear`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('integration: a privileged driver domain reaches guest memory without grants', function () {
  this.timeout(120_000);

  it('dom0 reads and writes the guest through hc.foreign and maps it for its NIC; the guest has no foreign', async () => {
    const host = new Host({ name: 'it-foreign', nics: [{ name: 'nic0' }] });
    try {
      const dom0 = host.createDomain({
        name: 'dom0',
        program: BACKEND,
        pci: [{ device: 'nic0', iommu: 'translate' }],
        args: { guest: GUEST_ID },
      });
      const guest = host.createDomain({ name: 'guest', program: GUEST, domid: GUEST_ID, memoryBytes: 1 << 20 });
      const ts = host.toolstack;
      const addrs = JSON.parse(await pollKey(ts, `/local/domain/${dom0.domid}/data/dma`)) as ForeignDmaAddrs;
      const gpa = Number(await pollKey(ts, `/local/domain/${guest.domid}/data/gpa`));

      // The NIC's DMA engine, attached in this thread with the guest's memory in its directory.
      const directory = new MemoryDirectory();
      directory.add(guest.domid, guest.memory.buffer);
      const nic = IommuContext.attach(host.devices.iommu('nic0').descriptor, directory);
      const ref = emptyDmaRef();
      assert.equal(nic.resolve(addrs.readOnly, PATTERN_LEN, false, ref), true, 'the read-only mapping reads');
      assert.equal(ref.domid, guest.domid);
      assert.equal(ref.offset, gpa);
      const expected = Array.from({ length: PATTERN_LEN }, (_, i) => patternByte(i));
      assert.deepEqual([...ref.bytes.subarray(ref.offset, ref.offset + PATTERN_LEN)], expected);
      assert.equal(nic.resolve(addrs.readOnly, PATTERN_LEN, true, ref), false, 'a DMA write to it faults');
      assert.equal(nic.resolve(addrs.writable, DMA_LEN, true, ref), true, 'the writable mapping writes');
      const dma = Array.from({ length: DMA_LEN }, (_, i) => 0xa0 + i);
      ref.bytes.set(dma, ref.offset);
      // Page granular: the last page of the writable mapping ends the extent; one byte on faults.
      const pageEnd = addrs.writable - (addrs.writable % 4096) + 4096;
      assert.equal(nic.resolve(pageEnd - 1, 1, true, ref), true);
      assert.equal(nic.resolve(pageEnd, 1, false, ref), false, 'nothing beyond the spanned pages');

      await ts.write(`/local/domain/${dom0.domid}/data/unmap`, '1');
      await pollKey(ts, `/local/domain/${dom0.domid}/data/unmapped`);
      assert.equal(nic.resolve(addrs.readOnly, 1, false, ref), false, 'unmap removed the read-only entry');
      assert.equal(nic.resolve(addrs.writable, 1, false, ref), false, 'unmap removed the writable entry');
      assert.equal(nic.liveExtents(), 0);
      await ts.write(`/local/domain/${dom0.domid}/data/exit`, '1');
      await ts.write(`/local/domain/${guest.domid}/data/done`, '1');

      const g = (await guest.result).value as ForeignGuestResult;
      const b = (await dom0.result).value as ForeignBackendResult;
      assert.equal(g.hasForeign, false, 'a guest must not get foreign memory ops');
      assert.equal(b.hasForeign, true);
      assert.deepEqual(b.pattern, expected, 'dom0 read the bytes the guest thread wrote');
      assert.equal(g.reply, REPLY, "the guest saw dom0's store through its foreign region");
      assert.deepEqual(g.dmaBytes, dma, 'the guest sees what the device wrote through the IOMMU');
      assert.deepEqual(b.refusals, {
        self: 'PV_ERR_INVALID_ARG',
        unknown: 'PV_ERR_NO_DOMAIN',
        notOwned: 'PV_ERR_INVALID_ARG',
        beyond: 'PV_ERR_OUT_OF_BOUNDS',
      });
      assert.equal(b.liveAfterUnmap, 0);
    } finally {
      await host.shutdown();
    }
  });
});
