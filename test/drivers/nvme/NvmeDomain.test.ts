import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Host } from '../../../hypervisor-sim/domain/Host.js';
import { type NvmeReport, patternByte } from './programs/NvmeProgram.js';

const PROGRAM = new URL('./programs/NvmeProgram.js', import.meta.url);
const LBA = 512;

async function waitFor(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 5000 && !cond(); i++) await new Promise((r) => setTimeout(r, 2));
  if (!cond()) throw new Error('condition not met within 10 s');
}

function fileHolds(path: string, lba: number, blocks: number, seed: number): boolean {
  const bytes = fs.readFileSync(path).subarray(lba * LBA, (lba + blocks) * LBA);
  return bytes.every((b, i) => b === patternByte(seed, i));
}

describe('nvme in a domain: the native driver in a real Worker, native (bypass) and passthrough (translate)', function () {
  this.timeout(60_000);

  it('native then passthrough owners write and read nvme0; the data is in the backing file and survives the handover', async () => {
    const host = new Host({ name: 'nvme', nics: [{ name: 'nic0' }], nvmes: [{ name: 'nvme0', sizeBytes: 8 << 20 }] });
    const file = host.devices.backingFile('nvme0');
    try {
      const native = host.createDomain({
        name: 'native',
        program: PROGRAM,
        pci: [{ device: 'nvme0', iommu: 'bypass' }],
        args: { lba: 100, blocks: 40, seed: 1 },
      });
      assert.equal(host.devices.iommu('nvme0').mode(), 'bypass');
      const a = (await native.result).value as NvmeReport;
      assert.deepEqual(a, {
        transport: 'native',
        bdf: '0000:04:00.0',
        capacityBlocks: (8 << 20) / LBA,
        mismatches: 0,
        earlierMismatches: 0,
      });
      assert.ok(fileHolds(file, 100, 40, 1), 'the native write is in the backing file at lba 100');
      // The result arrives before the worker has exited; the host releases the device at exit.
      await waitFor(() => host.devices.owner('nvme0') === undefined);

      const guest = host.createDomain({
        name: 'guest',
        program: PROGRAM,
        pci: [{ device: 'nvme0', iommu: 'translate' }],
        args: { lba: 3000, blocks: 24, seed: 2, expectLba: 100, expectSeed: 1 },
      });
      const b = (await guest.result).value as NvmeReport;
      assert.equal(b.transport, 'passthrough');
      assert.equal(b.mismatches, 0);
      assert.equal(b.earlierMismatches, 0, 'the guest reads what the native owner wrote');
      assert.ok(fileHolds(file, 3000, 24, 2), 'the passthrough write is in the backing file at lba 3000');
      assert.equal(host.devices.iommu('nvme0').faults(), 0);
      const m = host.devices.nvmeMetrics().nvme0;
      assert.equal(m.errors, 0);
      assert.equal(m.writes, 2);
      assert.equal(m.bytesWritten, 64 * LBA);
      assert.ok(m.fsyncs >= 4, 'two FLUSHes and two shutdown notifications');
    } finally {
      await host.shutdown();
    }
    assert.equal(fs.existsSync(file), false, 'the temporary backing file is removed at shutdown');
  });

  it('an NVMe owned by a live domain is refused to another, as a NIC is', async () => {
    const host = new Host({ name: 'nvme-conflict', nvmes: [{ name: 'nvme0', sizeBytes: 1 << 20 }] });
    try {
      const a = host.createDomain({
        name: 'a',
        program: PROGRAM,
        pci: [{ device: 'nvme0', iommu: 'translate' }],
        args: { lba: 0, blocks: 8, seed: 3 },
      });
      assert.throws(
        () => host.createDomain({ name: 'b', program: PROGRAM, pci: [{ device: 'nvme0', iommu: 'bypass' }] }),
        {
          code: 'PV_ERR_CONFIG',
          message: /nvme0 is already owned/,
        },
      );
      assert.equal(((await a.result).value as NvmeReport).mismatches, 0);
    } finally {
      await host.shutdown();
    }
  });
});
