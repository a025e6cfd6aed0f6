/**
 * A borrowed device (Device Lending) has a row in its borrower's snapshot, owned by the domain
 * that attached it, with the PCIe hops its accesses took through the NTB fabric (the lease
 * record's counts) — the "fabric hops" of `pvio top`'s device rows.
 */

import assert from 'node:assert/strict';
import { Cluster } from '../../../hypervisor-sim/cluster/Cluster.js';
import { snapshotHost } from '../../../hypervisor-sim/monitor/HostMonitor.js';

const HOLDER = new URL('./programs/NicHolder.js', import.meta.url);

describe('monitor: a borrowed device’s row carries its fabric hops', function () {
  this.timeout(60_000);

  it('B borrows nic0 of A; a domain of B drives it; B’s snapshot shows nic0@A owned by that domain with hops > 0', async () => {
    const c = new Cluster({
      hosts: [
        { name: 'A', nics: [{ name: 'nic0' }] },
        { name: 'B', nics: [] },
      ],
    });
    try {
      await c.lend('A', 'nic0');
      await c.borrow('nic0@A', 'B');
      const stop = new SharedArrayBuffer(4);
      const d = c.host('B').createDomain({
        name: 'holder',
        program: HOLDER,
        args: { stop },
        pci: [{ device: 'nic0@A', iommu: 'bypass' }],
      });
      const deadline = Date.now() + 30_000;
      while (!d.console.includes('holding the NIC') && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      const row = snapshotHost(c.host('B')).devices.find((x) => x.name === 'nic0@A');
      assert.ok(row, 'a row for the borrowed NIC');
      assert.equal(row.kind, 'rdma-nic');
      assert.equal(row.owner, d.domid);
      assert.ok(row.fabricHops > 0, `hops ${row.fabricHops}`);
      assert.ok((row.extra.mmioNtbCrossings ?? 0) > 0, 'its register accesses crossed the NTB');
      // A local device has no fabric hops of its own.
      assert.ok(snapshotHost(c.host('A')).devices.every((x) => x.fabricHops === 0));
      const w = new Int32Array(stop);
      // ORDERING: seq-cst store, then wake the program's Atomics.wait.
      Atomics.store(w, 0, 1);
      Atomics.notify(w, 0);
      await d.result;
    } finally {
      await c.shutdown();
    }
  });
});
