import assert from 'node:assert/strict';
import { Cluster } from '../../../hypervisor-sim/cluster/Cluster.js';
import { ApertureSpace, WINDOW_ALIGN } from '../../../hypervisor-sim/cluster/FabricPlan.js';

const IDLE = new URL('../../../hypervisor-sim/scenario/IdleProgram.js', import.meta.url);

function abc(links?: (readonly [string, string])[]): Cluster {
  return new Cluster({
    hosts: [
      { name: 'A', nics: [{ name: 'nic0' }] },
      { name: 'B', nics: [{ name: 'nic0' }] },
      { name: 'C', nics: [{ name: 'nic0' }] },
    ],
    links,
  });
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 30_000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('Cluster (Device Lending across hosts)', function () {
  this.timeout(60_000);

  it('a borrow is exclusive across hosts, and the lender cannot use the device meanwhile', async () => {
    const c = abc();
    const id = await c.lend('A', 'nic0');
    assert.equal(id, 'nic0@A');
    const h = await c.borrow(id, 'B');
    await assert.rejects(c.borrow(id, 'C'), { code: 'PV_ERR_LEND_BUSY' });
    assert.throws(
      () => c.host('A').createDomain({ name: 'x', program: IDLE, pci: [{ device: 'nic0', iommu: 'bypass' }] }),
      {
        code: 'PV_ERR_CONFIG',
      },
    );
    assert.throws(
      () => c.host('C').createDomain({ name: 'x', program: IDLE, pci: [{ device: 'nic0@A', iommu: 'bypass' }] }),
      {
        code: 'PV_ERR_CONFIG',
      },
    );
    // B-side BAR window onto nic0's BAR, A-side DMA window onto B's bus space.
    const [bar] = c.fabric.windows('B');
    const [dma] = c.fabric.windows('A');
    assert.equal(bar.base, h.barWindowBase);
    assert.equal(dma.base, h.dmaWindowBase);
    assert.equal(dma.peerBase, 0);
    const route = c.fabric.route({ host: 'B', node: 'rc' }, h.barWindowBase as never, 4);
    assert.deepEqual([route.target.kind, route.target.host, route.ntbCrossings], ['bar', 'A', 1]);
    await c.shutdown();
  });

  it('after an idle return another host re-borrows it, and the first one can no longer assign it', async () => {
    const c = abc();
    await c.lend('A', 'nic0');
    const hb = await c.borrow('nic0@A', 'B');
    assert.equal(c.inUse(hb), 0);
    await c.giveBack(hb);
    assert.equal(hb.stats.revoked, true);
    assert.equal(c.fabric.windows('B').length, 0);
    const hc = await c.borrow('nic0@A', 'C');
    assert.equal(hc.borrower, 'C');
    assert.deepEqual(c.lending('B').borrowedNames(), []);
    assert.deepEqual(c.lending('C').borrowedNames(), ['nic0@A']);
    assert.throws(
      () => c.host('B').createDomain({ name: 'x', program: IDLE, pci: [{ device: 'nic0@A', iommu: 'bypass' }] }),
      {
        code: 'PV_ERR_CONFIG',
      },
    );
    // The returned lease is dead for good.
    await assert.rejects(c.giveBack(hb), { code: 'PV_ERR_LEND_NOT_HOLDER' });
    await c.shutdown();
  });

  it('a return is refused while a domain of the borrower has the device attached', async () => {
    const c = abc();
    await c.lend('A', 'nic0');
    const h = await c.borrow('nic0@A', 'B');
    const d = c
      .host('B')
      .createDomain({ name: 'owner', program: IDLE, pci: [{ device: 'nic0@A', iommu: 'translate' }] });
    assert.equal(c.lending('B').owner('nic0@A'), d.domid);
    assert.equal(c.lending('B').iommu('nic0@A').mode(), 'translate');
    assert.equal(c.inUse(h), 1);
    await assert.rejects(c.giveBack(h), { code: 'PV_ERR_LEND_IN_USE' });
    await c.host('B').destroyDomain(d.domid);
    await until(() => c.lending('B').owner('nic0@A') === undefined, 'release');
    await c.giveBack(h);
    await c.shutdown();
  });

  it('refuses what cannot be lent or borrowed, and takes no lease when the hosts are not linked', async () => {
    const c = abc([
      ['A', 'B'],
      ['B', 'C'],
    ]);
    await assert.rejects(c.lend('A', 'nic9'), { code: 'PV_ERR_CONFIG' });
    await assert.rejects(c.borrow('nic0@A', 'B'), { code: 'PV_ERR_LEND_NOT_FOUND' });
    await c.lend('A', 'nic0');
    await assert.rejects(c.borrow('nic0@A', 'A'), { code: 'PV_ERR_INVALID_ARG' });
    await assert.rejects(c.borrow('nic0@A', 'C'), { code: 'PV_ERR_PCIE_UNROUTABLE' });
    const [entry] = await c.registry.list({ owner: 'A' });
    assert.equal(entry.state.kind, 'available');
    await c.shutdown();
  });

  it('withdrawing is refused while borrowed; once withdrawn the lender may own the device again', async () => {
    const c = abc();
    await c.lend('A', 'nic0');
    const h = await c.borrow('nic0@A', 'B');
    await assert.rejects(c.withdraw('nic0@A'), { code: 'PV_ERR_LEND_BUSY' });
    await c.giveBack(h);
    await c.withdraw('nic0@A');
    c.host('A').devices.validate('x', [{ device: 'nic0', iommu: 'bypass' }], []);
    await c.shutdown();
  });

  it('the registry revoking a lease (forced unregister) tears the borrow down', async () => {
    const c = abc();
    await c.lend('A', 'nic0');
    const h = await c.borrow('nic0@A', 'B');
    await c.registry.unregister('nic0@A', { force: true });
    assert.equal(h.stats.revoked, true);
    assert.equal(c.fabric.windows('A').length + c.fabric.windows('B').length, 0);
    assert.deepEqual(c.lending('B').borrowedNames(), []);
    await c.shutdown();
  });
});

describe('ApertureSpace (window placement in an NTB aperture)', () => {
  it('places first-fit on 64 KiB boundaries, reuses freed holes, and refuses when full', () => {
    const s = new ApertureSpace(0x1_0000_0000, 4 * WINDOW_ALIGN);
    const a = s.place(100);
    const b = s.place(WINDOW_ALIGN * 2);
    assert.deepEqual([a.base, a.size], [0x1_0000_0000, WINDOW_ALIGN]);
    assert.equal(b.base, 0x1_0000_0000 + WINDOW_ALIGN);
    s.free(a);
    assert.equal(s.place(WINDOW_ALIGN).base, 0x1_0000_0000);
    assert.equal(s.place(WINDOW_ALIGN).base, 0x1_0000_0000 + 3 * WINDOW_ALIGN);
    assert.throws(() => s.place(1), { code: 'PV_ERR_LIMIT' });
  });
});
