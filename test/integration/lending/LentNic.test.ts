/**
 * Device Lending end to end: host A lends nic0, host B borrows it, and programs on B run the
 * UNCHANGED RdmaNicDriver against `nic0@A` — natively and passed through to a guest — through
 * the NTB windows (every MMIO and every DMA routed by the PCIe fabric and counted in the lease
 * record), with a local NIC of B as the RDMA peer.
 */

import assert from 'node:assert/strict';
import { Cluster, type LentHandle } from '../../../hypervisor-sim/cluster/Cluster.js';
import { LentWord } from '../../../hypervisor-sim/cluster/LentStats.js';
import type { Domain } from '../../../hypervisor-sim/domain/Domain.js';
import type { HostPhysAddr } from '../../../protocol/Types.js';

const CONFORMANCE = new URL('../rdma/programs/ConformanceGuest.js', import.meta.url);
const PROBE = new URL('./programs/LentProbe.js', import.meta.url);

/** The RDMA conformance subset that moves data (ConformanceGuest case names). */
const SUBSET = [
  'RDMA_WRITE delivers every size from 1 B to 8 MiB, odd sizes included',
  'RDMA_READ returns every size from 1 B to 8 MiB',
  'SEND lands in the posted receive for every size, with byte_len',
];

function makeCluster(): Cluster {
  return new Cluster({
    hosts: [
      { name: 'A', nics: [{ name: 'nic0' }, { name: 'nic1' }] },
      { name: 'B', nics: [{ name: 'nic0' }] },
      { name: 'C', nics: [{ name: 'nic0' }] },
    ],
    profile: 'ideal',
  });
}

async function borrowed(c: Cluster, opts = {}): Promise<LentHandle> {
  await c.lend('A', 'nic0');
  return c.borrow('nic0@A', 'B', opts);
}

async function until(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function conformance(iommu: 'bypass' | 'translate'): void {
  const how = iommu === 'bypass' ? 'natively in a domain of B' : 'passed through to a guest of B';
  describe(`rdma conformance subset over nic0@A used ${how}, peer a local NIC of B`, function () {
    this.timeout(300_000);
    let cluster: Cluster;
    let handle: LentHandle;
    const cases: Record<string, Record<string, string>> = {};

    before(async () => {
      cluster = makeCluster();
      handle = await borrowed(cluster);
      const b = cluster.host('B');
      const peers = { a: 1, b: 2 };
      const doms: Domain[] = [
        b.createDomain({
          name: 'a',
          domid: 1,
          program: CONFORMANCE,
          memoryBytes: 48 << 20,
          pci: [{ device: 'nic0@A', iommu }],
          args: { self: 'a', peers, only: SUBSET },
        }),
        b.createDomain({
          name: 'b',
          domid: 2,
          program: CONFORMANCE,
          memoryBytes: 48 << 20,
          pci: [{ device: 'nic0', iommu: 'bypass' }],
          args: { self: 'b', peers, only: SUBSET },
        }),
      ];
      const results = await Promise.all(doms.map((d) => d.result));
      results.forEach((r, i) => {
        cases[i === 0 ? 'a' : 'b'] = (r.value as { cases: Record<string, string> }).cases;
      });
      // A result arrives before the worker exits; the host releases the device at the exit.
      await until(() => cluster.lending('B').owner('nic0@A') === undefined, 'the owner to be released');
    });

    after(async () => {
      await cluster?.shutdown();
    });

    for (const name of SUBSET) {
      it(name, () => {
        for (const g of ['a', 'b']) assert.equal(cases[g]?.[name], 'ok', `guest ${g}: ${cases[g]?.[name]}`);
      });
    }

    it('every MMIO and DMA of the lent NIC crossed the NTB, and none was refused', () => {
      const s = handle.stats.snapshot();
      assert.ok(s.mmioWrites > 0 && s.dmaReads > 0 && s.dmaWrites > 0, JSON.stringify(s));
      assert.equal(s.mmioNtbCrossings, s.mmioReads + s.mmioWrites);
      assert.equal(s.dmaNtbCrossings, s.dmaReads + s.dmaWrites);
      assert.equal(s.dmaFaults, 0);
      assert.equal(s.mmioRefused, 0);
      assert.equal(cluster.lending('B').iommu('nic0@A').mode(), undefined, 'the owner is gone: IOMMU cleared');
    });

    it('the borrow is idle once the programs are gone, and returns without force', async () => {
      assert.equal(cluster.inUse(handle), 0);
      await cluster.giveBack(handle);
      assert.equal(handle.stats.revoked, true);
    });
  });
}

conformance('bypass');
conformance('translate');

describe('a lent NIC with the ideal profile costs hops, not time', function () {
  this.timeout(120_000);
  let cluster: Cluster;
  let out: {
    lentToLocal: Record<string, number>;
    localToLent: Record<string, number>;
    statuses: string[];
    dataOk: boolean;
  };

  before(async () => {
    cluster = makeCluster();
    const h = await borrowed(cluster);
    const d = cluster.host('B').createDomain({
      name: 'probe',
      domid: 1,
      program: PROBE,
      memoryBytes: 16 << 20,
      pci: [
        { device: 'nic0@A', iommu: 'bypass' },
        { device: 'nic0', iommu: 'bypass' },
      ],
      args: { mode: 'count', lent: 'nic0@A', local: 'nic0', stats: h.stats.buffer },
    });
    out = (await d.result).value as typeof out;
  });

  after(async () => {
    await cluster?.shutdown();
  });

  it('both WRITEs succeed and move the data', () => {
    assert.deepEqual(out.statuses, ['SUCCESS', 'SUCCESS']);
    assert.equal(out.dataOk, true);
  });

  it('a 64 B WRITE issued by the lent NIC crosses the NTB twice: its doorbell and its payload read', () => {
    const d = out.lentToLocal;
    assert.equal(d.mmioWrites, 1, 'one doorbell');
    assert.equal(d.mmioReads, 0);
    assert.equal(d.mmioNtbCrossings, 1);
    assert.equal(d.dmaReads, 1, 'the payload read from B memory');
    assert.equal(d.dmaWrites, 0, 'CQE through the cached CQ view');
    assert.equal(d.dmaNtbCrossings, 1);
    assert.equal(d.dmaLinkHops, 4, 'nic0 → sw → ntb-B on A, ntb-A → sw → rc on B');
    assert.equal(d.dmaBytes, 64);
    assert.equal(d.fabricNs, 0, 'ideal: no modelled time');
  });

  it('a 64 B WRITE into the lent NIC crosses the NTB once (payload written to B memory), no MMIO', () => {
    const d = out.localToLent;
    assert.equal(d.mmioNtbCrossings, 0);
    assert.equal(d.dmaWrites, 1);
    assert.equal(d.dmaNtbCrossings, 1);
    assert.equal(d.fabricNs, 0);
  });

  it('the same DMA by a local NIC of B crosses no NTB (2 links)', () => {
    const r = cluster.fabric.route({ host: 'B', node: 'nic0' }, 0x1000 as HostPhysAddr, 64);
    assert.equal(r.ntbCrossings, 0);
    assert.equal(r.hops.length, 2);
    assert.deepEqual(r.target, { kind: 'ram', host: 'B', addr: 0x1000 });
  });
});

describe('a forced return while a program on B has WRs outstanding', function () {
  this.timeout(120_000);
  let cluster: Cluster;
  let handle: LentHandle;
  let dom: Domain;

  before(async () => {
    cluster = makeCluster();
    handle = await borrowed(cluster);
    dom = cluster.host('B').createDomain({
      name: 'victim',
      domid: 1,
      program: PROBE,
      memoryBytes: 16 << 20,
      pci: [{ device: 'nic0@A', iommu: 'bypass' }],
      args: { mode: 'revoke', lent: 'nic0@A' },
    });
    await until(() => dom.console.includes('posted'), "the program's receives");
  });

  after(async () => {
    await cluster?.shutdown();
  });

  it('a plain return is refused while the NIC has WRs outstanding', async () => {
    assert.equal(cluster.inUse(handle), 4 + 1, '4 receives + the attached driver');
    await assert.rejects(cluster.giveBack(handle), { code: 'PV_ERR_LEND_IN_USE' });
    assert.equal(handle.stats.revoked, false);
  });

  it('B still holds it exclusively: C cannot borrow it', async () => {
    await assert.rejects(cluster.borrow('nic0@A', 'C'), { code: 'PV_ERR_LEND_BUSY' });
  });

  it('forced: every outstanding WR completes with WR_FLUSH_ERR and the next doorbell throws PV_ERR_LEND_REVOKED', async () => {
    await cluster.giveBack(handle, { force: true });
    const r = (await dom.result).value as { statuses: string[]; after: string };
    assert.deepEqual(r.statuses, ['100:WR_FLUSH_ERR', '101:WR_FLUSH_ERR', '102:WR_FLUSH_ERR', '103:WR_FLUSH_ERR']);
    assert.equal(r.after, 'PV_ERR_LEND_REVOKED');
    assert.ok(handle.stats.words[LentWord.MMIO_REFUSED] >= 1);
  });

  it('the windows are closed and the device can be borrowed by C', async () => {
    assert.equal(cluster.fabric.windows('A').length, 0);
    assert.equal(cluster.fabric.windows('B').length, 0);
    const h = await cluster.borrow('nic0@A', 'C');
    assert.equal(h.borrower, 'C');
    assert.equal(cluster.fabric.windows('A').length, 1);
    assert.equal(cluster.fabric.windows('C').length, 1);
  });
});

describe('a DMA outside the lender DMA window', function () {
  this.timeout(120_000);
  let cluster: Cluster;
  let handle: LentHandle;
  let out: { far: number; outside: string; inside: string; dataOk: boolean };

  before(async () => {
    cluster = makeCluster();
    handle = await borrowed(cluster, { dmaWindowBytes: 8 << 20 });
    const d = cluster.host('B').createDomain({
      name: 'window',
      domid: 1,
      program: PROBE,
      memoryBytes: 32 << 20,
      pci: [
        { device: 'nic0@A', iommu: 'bypass' },
        { device: 'nic0', iommu: 'bypass' },
      ],
      args: { mode: 'window', lent: 'nic0@A', local: 'nic0', padBytes: 12 << 20 },
    });
    out = (await d.result).value as typeof out;
  });

  after(async () => {
    await cluster?.shutdown();
  });

  it('the WR completes with an error status (the NTB drops the read), counted as a DMA fault', () => {
    assert.ok(out.far >= 8 << 20, `the far buffer at ${out.far} lies past the 8 MiB window`);
    assert.notEqual(out.outside, 'SUCCESS');
    assert.ok(handle.stats.snapshot().dmaFaults >= 1);
  });

  it('the NIC keeps serving: a WRITE inside the window on another QP succeeds with the data', () => {
    assert.equal(out.inside, 'SUCCESS');
    assert.equal(out.dataOk, true);
  });
});
