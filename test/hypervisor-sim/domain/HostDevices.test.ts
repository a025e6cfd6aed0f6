import assert from 'node:assert/strict';
import { Host } from '../../../hypervisor-sim/domain/Host.js';
import { DomainWord } from '../../../hypervisor-sim/evtchn/EvtchnSpace.js';
import { NIC_VERSION } from '../../../protocol/rdma/NicRegs.js';
import type { SeenDevice } from './programs/PciReader.js';

const PCI_READER = new URL('./programs/PciReader.js', import.meta.url);

async function waitFor(cond: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 5000; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error('condition not met within 10 s');
}

const NICS = [
  { name: 'nic0', portId: 7 },
  { name: 'nic1', portId: 9 },
];

describe('host devices: a domain owns NICs through PciFunctions (VFIO-style assignment)', function () {
  this.timeout(30_000);

  for (const deviceEngine of ['inline', 'dedicated'] as const) {
    it(`(${deviceEngine}) two domains owning nic0 and nic1 read their own PORT_ID through BAR 0`, async () => {
      const host = new Host({ name: 'pci', nics: NICS, deviceEngine });
      try {
        const a = host.createDomain({ name: 'a', program: PCI_READER, pci: [{ device: 'nic0', iommu: 'translate' }] });
        const b = host.createDomain({
          name: 'b',
          program: PCI_READER,
          pci: [{ device: 'nic1', iommu: 'bypass' }],
          attachments: [{ device: 'tcp0', kind: 'rdma-nic', transport: 'tcp' }],
        });
        assert.equal(host.devices.iommu('nic0').mode(), 'translate', 'the owner map is programmed at assignment');
        assert.equal(host.devices.iommu('nic1').mode(), 'bypass');
        const seenA = (await a.result).value as SeenDevice[];
        const seenB = (await b.result).value as SeenDevice[];
        assert.deepEqual(seenA, [
          {
            device: 'nic0',
            transport: 'passthrough',
            bdf: '0000:03:00.0',
            version: NIC_VERSION,
            portId: 7,
            dmaOf4096: 4096,
          },
        ]);
        assert.deepEqual(seenB, [
          {
            device: 'nic1',
            transport: 'native',
            bdf: '0000:04:00.0',
            version: NIC_VERSION,
            portId: 9,
            dmaOf4096: 4096,
          },
          { device: 'tcp0', transport: 'tcp' },
        ]);
      } finally {
        await host.shutdown();
      }
    });
  }

  it('a device owned by a live domain is refused with PV_ERR_CONFIG naming it (and unknown devices too)', async () => {
    const host = new Host({ name: 'conflict', nics: NICS });
    try {
      const a = host.createDomain({
        name: 'a',
        program: PCI_READER,
        args: { hold: true },
        pci: [{ device: 'nic0', iommu: 'translate' }],
      });
      await waitFor(async () => (await host.toolstack.tryRead(`/local/domain/${a.domid}/data/devices`)) !== undefined);
      assert.equal(host.devices.owner('nic0'), a.domid);
      const before = host.domains().length;
      assert.throws(
        () => host.createDomain({ name: 'b', program: PCI_READER, pci: [{ device: 'nic0', iommu: 'bypass' }] }),
        { code: 'PV_ERR_CONFIG', message: /device nic0 is already owned by domain/ },
      );
      assert.throws(
        () => host.createDomain({ name: 'c', program: PCI_READER, pci: [{ device: 'nic7', iommu: 'translate' }] }),
        { code: 'PV_ERR_CONFIG', message: /nic7/ },
      );
      assert.throws(
        () =>
          host.createDomain({
            name: 'd',
            program: PCI_READER,
            pci: [
              { device: 'nic1', iommu: 'translate' },
              { device: 'nic1', iommu: 'translate' },
            ],
          }),
        { code: 'PV_ERR_CONFIG', message: /nic1 twice/ },
      );
      assert.equal(host.domains().length, before, 'a refused domain leaves nothing behind');
      assert.equal(host.devices.owner('nic1'), undefined);
    } finally {
      await host.shutdown();
    }
  });

  it('a crashed owner releases its device: the IOMMU is cleared and another domain can own it', async () => {
    const host = new Host({ name: 'release', nics: NICS });
    try {
      const a = host.createDomain({
        name: 'a',
        program: PCI_READER,
        args: { hold: true },
        pci: [{ device: 'nic1', iommu: 'translate' }],
      });
      await waitFor(async () => (await host.toolstack.tryRead(`/local/domain/${a.domid}/data/devices`)) !== undefined);
      const iommu = host.devices.iommu('nic1');
      const generation = iommu.generation();
      await host.crashDomain(a.domid);
      assert.equal(host.devices.owner('nic1'), undefined);
      assert.equal(iommu.owner(), undefined, 'IOMMU context cleared');
      assert.ok(iommu.generation() > generation, 'generation bumped on release');
      const b = host.createDomain({ name: 'b', program: PCI_READER, pci: [{ device: 'nic1', iommu: 'translate' }] });
      assert.equal(iommu.owner(), b.domid);
      const seen = (await b.result).value as SeenDevice[];
      assert.equal(seen[0].portId, 9);
    } finally {
      await host.shutdown();
    }
  });
});

describe('store wake hook: a domain sleeping in Atomics.wait is woken when the store posts to it', function () {
  this.timeout(60_000);

  it('a watch event ends the sleep at once (the sleeper has no event channel to be notified on)', async () => {
    const host = new Host({ name: 'wake' });
    try {
      const d = host.createDomain({ name: 'sleeper', program: new URL('./programs/WatchSleeper.js', import.meta.url) });
      const dir = `/local/domain/${d.domid}/data`;
      await waitFor(async () => (await host.toolstack.tryRead(`${dir}/ready`)) === '1');
      // Poke only once the sleeper is registered as a waiter: its wake snapshot is taken by then,
      // so the poke's kick cannot fold into the snapshot (on a loaded machine it could, and the
      // sleeper would then sleep its whole 20 s bound).
      const waiters = host.evtchn.domainIndex(d.domid) + DomainWord.WAITERS;
      await waitFor(async () => Atomics.load(host.evtchn.words, waiters) > 0);
      await host.toolstack.write(`${dir}/poke`, 'x');
      const r = (await d.result).value as { woken: boolean; fired: string[] };
      assert.equal(r.woken, true, 'woken by the kick, not by its 20 s timeout');
      assert.deepEqual(r.fired, [`${dir}/poke`]);
    } finally {
      await host.shutdown();
    }
  });
});
