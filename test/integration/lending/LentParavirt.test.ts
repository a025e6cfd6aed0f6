/**
 * Paravirt over a lent NIC: host A lends nic0, host B borrows it, and B's dom0 owns `nic0@A`
 * (IOMMU translate) and serves a paravirtual guest of B from it with the UNCHANGED RDMA backend —
 * guest → rings → backend → RdmaNicDriver → NTB → nic0 on A, and nic0's DMA back through the
 * lender-side DMA window and B's IOMMU into the guest's granted pages. The peer is a second
 * paravirt guest of B served by the same dom0 from B's own nic0.
 *
 * The rule under test: a grant device map's `deviceAddr` is the address the DEVICE uses (the
 * lender-side window base plus the IOVA on B; SimGrantOps `deviceDmaBase`), so the backend hands
 * the lent NIC addresses it can reach without knowing it is lent.
 */

import assert from 'node:assert/strict';
import { Cluster, type LentHandle } from '../../../hypervisor-sim/cluster/Cluster.js';
import type { DeviceAttachment } from '../../../protocol/Pci.js';
import { DOM0 } from '../../../protocol/Types.js';

const CONFORMANCE = new URL('../rdma/programs/ConformanceGuest.js', import.meta.url);
const BACKEND = new URL('../../../backend/rdma/RdmaBackendProgram.js', import.meta.url);

/** The RDMA conformance subset that moves data (ConformanceGuest case names). */
const SUBSET = [
  'RDMA_WRITE delivers every size from 1 B to 8 MiB, odd sizes included',
  'RDMA_READ returns every size from 1 B to 8 MiB',
  'SEND lands in the posted receive for every size, with byte_len',
];

async function until(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface GuestOut {
  transport: string;
  cases: Record<string, string>;
}

function paravirt(transport: 'paravirt' | 'paravirt-copy'): void {
  describe(`rdma conformance subset over ${transport} served by B's dom0 from nic0@A, peer on B's nic0`, function () {
    this.timeout(300_000);
    let cluster: Cluster;
    let handle: LentHandle;
    const out: Record<string, GuestOut> = {};
    let backend: Record<string, unknown>;

    before(async () => {
      cluster = new Cluster({
        hosts: [
          { name: 'A', nics: [{ name: 'nic0' }] },
          { name: 'B', nics: [{ name: 'nic0' }] },
        ],
        profile: 'ideal',
      });
      await cluster.lend('A', 'nic0');
      handle = await cluster.borrow('nic0@A', 'B');
      const b = cluster.host('B');
      const dom0 = b.createDomain({
        name: 'dom0',
        domid: DOM0,
        program: BACKEND,
        memoryBytes: 256 << 20,
        pci: [
          { device: 'nic0@A', iommu: 'translate' },
          { device: 'nic0', iommu: 'translate' },
        ],
        args: {},
      });
      const peers = { a: 1, b: 2 };
      const guests = (['a', 'b'] as const).map((name, i) => {
        const attachment: DeviceAttachment = {
          device: name === 'a' ? 'nic0@A' : 'nic0',
          kind: 'rdma-nic',
          transport,
          devid: 0,
          backendDomid: DOM0,
        };
        return b.createDomain({
          name,
          domid: i + 1,
          program: CONFORMANCE,
          memoryBytes: 48 << 20,
          attachments: [attachment],
          args: { self: name, peers, only: SUBSET },
        });
      });
      for (const g of guests)
        await b.addDevice({ type: 'vrdma', devid: 0, frontDomid: g.domid, backDomid: dom0.domid });
      const results = await Promise.all(guests.map((g) => g.result));
      results.forEach((r, i) => {
        out[i === 0 ? 'a' : 'b'] = r.value as GuestOut;
      });
      backend = (await b.shutdownDomain(dom0.domid)).value as Record<string, unknown>;
      // A result arrives before the worker exits; the host releases the device at the exit.
      await until(() => cluster.lending('B').owner('nic0@A') === undefined, 'dom0 to release nic0@A');
    });

    after(async () => {
      await cluster?.shutdown();
    });

    it('both guests ran over the paravirtual transport', () => {
      for (const g of ['a', 'b']) assert.equal(out[g]?.transport, transport);
    });

    for (const name of SUBSET) {
      it(name, () => {
        for (const g of ['a', 'b']) assert.equal(out[g]?.cases[name], 'ok', `guest ${g}: ${out[g]?.cases[name]}`);
      });
    }

    it('the backend served both NICs and left no mapping behind', () => {
      assert.deepEqual(backend.nics, ['nic0@A', 'nic0']);
      assert.equal(backend.liveMappingsAtShutdown, 0);
      assert.deepEqual(backend.closeErrors, []);
    });

    it("the guest's data crossed the NTB: DMA through the lender window, none refused", () => {
      const s = handle.stats.snapshot();
      assert.ok(s.dmaReads > 0 && s.dmaWrites > 0 && s.mmioWrites > 0, JSON.stringify(s));
      // The SUBSET moves 1 B … 8 MiB each way at least once through nic0@A.
      assert.ok(s.dmaBytes >= 3 * (8 << 20), `dmaBytes ${s.dmaBytes}`);
      assert.equal(s.dmaNtbCrossings, s.dmaReads + s.dmaWrites, 'every DMA crossed exactly one NTB');
      assert.equal(s.mmioNtbCrossings, s.mmioReads + s.mmioWrites);
      assert.equal(s.dmaFaults, 0, 'no device address fell outside the window or the IOMMU');
      assert.equal(s.mmioRefused, 0);
      assert.equal(s.fabricNs, 0, 'ideal profile: hops, no modelled time');
    });

    it('the borrow is idle once dom0 is gone and returns without force', async () => {
      assert.equal(cluster.inUse(handle), 0);
      await cluster.giveBack(handle);
      assert.equal(handle.stats.revoked, true);
    });
  });
}

paravirt('paravirt');
paravirt('paravirt-copy');
