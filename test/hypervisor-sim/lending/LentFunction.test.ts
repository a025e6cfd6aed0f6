import assert from 'node:assert/strict';
import { attachDevices } from '../../../hypervisor-sim/domain/DomainDevices.js';
import { HostDevices, type PciAssignment } from '../../../hypervisor-sim/domain/HostDevices.js';
import { InMemoryRegistry } from '../../../hypervisor-sim/lending/InMemoryRegistry.js';
import { bindLease } from '../../../hypervisor-sim/lending/LeaseBinding.js';
import { type AccessHook, LentFunction } from '../../../hypervisor-sim/lending/LentFunction.js';
import { MemoryDirectory } from '../../../hypervisor-sim/memory/MemoryDirectory.js';
import { pvError } from '../../../protocol/errors.js';
import type { PciFunction } from '../../../protocol/Pci.js';
import { NIC_VERSION, NicReg } from '../../../protocol/rdma/NicRegs.js';
import { domId, type GuestPhysAddr } from '../../../protocol/Types.js';
import { makeNics } from '../devices/rnic/helpers/Fixture.js';
import { NicHarness } from '../devices/rnic/helpers/NicHarness.js';

/** nic0's PciFunction exactly as a host hands it to the domain that owns it (HostDevices → attachDevices). */
function hostNic(): PciFunction {
  const host = new HostDevices({ nics: [{ name: 'nic0', portId: 7 }] });
  const pci: PciAssignment[] = [{ device: 'nic0', iommu: 'bypass' }];
  host.validate('lender', pci, []);
  host.assign(domId(1), 1 << 20, pci);
  const fn = attachDevices(host.workerData(pci, []), new MemoryDirectory()).attachments[0].pci;
  assert.ok(fn !== undefined);
  return fn;
}

/** Resolves once every pending promise callback has run. */
const drain = () => new Promise((r) => setImmediate(r));

describe('lent function: the borrower-side view of a lent device', () => {
  it('reads a real NIC through the lent view, counts the accesses, and throws REVOKED on MMIO after revocation', () => {
    const nic = hostNic();
    const lent = new LentFunction(nic);
    assert.deepEqual([lent.name, lent.kind, lent.bdf], ['nic0', 'rdma-nic', '0000:03:00.0']);
    const bar = lent.bars[0];
    assert.equal(bar.size, nic.bars[0].size);
    assert.equal(bar.read32(NicReg.VERSION), NIC_VERSION);
    assert.equal(bar.read32(NicReg.PORT_ID), 7);
    assert.equal(lent.dmaAddr(4096 as GuestPhysAddr), 4096);
    assert.deepEqual(lent.counters(), {
      mmioReads: 2,
      mmioWrites: 0,
      mmioBytes: 8,
      requests: 0,
      completed: 0,
      revokedRequests: 0,
      refused: 0,
    });
    assert.equal(lent.revoke(), 0);
    assert.throws(() => bar.read32(NicReg.VERSION), { code: 'PV_ERR_LEND_REVOKED', message: /nic0/ });
    assert.throws(() => bar.write32(NicReg.CMD_OPCODE, 1), { code: 'PV_ERR_LEND_REVOKED' });
    assert.throws(() => lent.dmaAddr(0 as GuestPhysAddr), { code: 'PV_ERR_LEND_REVOKED' });
    assert.throws(() => lent.begin(() => {}), { code: 'PV_ERR_LEND_REVOKED' });
    assert.equal(lent.counters().refused, 4);
    // The lender's own function is untouched: only the borrower's view was revoked.
    assert.equal(nic.bars[0].read32(NicReg.VERSION), NIC_VERSION);
  });

  it('drives real NIC commands (PD, CQ) through the lent BAR; the fabric hook sees every access before it lands', () => {
    const { nics } = makeNics({ count: 1 });
    const seen: string[] = [];
    const hook: AccessHook = (kind, bytes, barIndex, offset) => seen.push(`${kind}:${bytes}:${barIndex}:${offset}`);
    const lent = new LentFunction(
      {
        name: 'nic0',
        kind: 'rdma-nic',
        bdf: '0000:03:00.0',
        bars: [nics[0].dev.mmio('inline')],
        dmaAddr: (g) => g as never,
      },
      { onAccess: hook },
    );
    const drv = new NicHarness(lent.bars[0], nics[0].memory);
    const pd = drv.createPd();
    const cq = drv.createCq(16);
    assert.ok(pd > 0 && cq.cqn > 0);
    assert.equal(nics[0].dev.metrics.commands, 2, 'both commands reached the real device');
    const c = lent.counters();
    // Each command: 32 argument writes + opcode + doorbell, then 32 result reads + status.
    assert.deepEqual([c.mmioWrites, c.mmioReads, c.mmioBytes], [68, 66, 4 * 134]);
    assert.equal(seen.length, 134);
    assert.equal(seen[33], `write:4:0:${NicReg.CMD_DOORBELL}`);
  });

  it('a hook that refuses an access stops it before the device (e.g. a link down)', () => {
    const { nics } = makeNics({ count: 1 });
    let down = false;
    const lent = new LentFunction(
      {
        name: 'nic0',
        kind: 'rdma-nic',
        bdf: '0000:03:00.0',
        bars: [nics[0].dev.mmio('inline')],
        dmaAddr: (g) => g as never,
      },
      {
        onAccess: () => {
          if (down) throw pvError('PV_ERR_PCIE_LINK_DOWN', 'NTB link to the lender is down');
        },
      },
    );
    const drv = new NicHarness(lent.bars[0], nics[0].memory);
    drv.createPd();
    down = true;
    assert.throws(() => drv.createPd(), { code: 'PV_ERR_PCIE_LINK_DOWN' });
    assert.equal(nics[0].dev.metrics.commands, 1);
  });

  it('revocation fails every outstanding request at once through its callback; late completions are dropped', async () => {
    const lent = new LentFunction(hostNic());
    const failures: string[] = [];
    const t1 = lent.begin((e) => failures.push(`1:${e.code}`));
    const t2 = lent.begin((e) => failures.push(`2:${e.code}`));
    const t3 = lent.begin((e) => failures.push(`3:${e.code}`));
    assert.equal(lent.end(t2), true);
    const never = new Promise<number>(() => {}); // a completion that will never come
    const tracked = lent.track(() => never);
    assert.equal(lent.outstanding, 3);
    assert.equal(lent.revoke('test'), 3);
    assert.deepEqual(failures, ['1:PV_ERR_LEND_REVOKED', '3:PV_ERR_LEND_REVOKED']);
    await assert.rejects(tracked, { code: 'PV_ERR_LEND_REVOKED', message: /test/ });
    assert.equal(lent.outstanding, 0);
    assert.equal(lent.end(t1), false, 'the late completion learns its request was already failed');
    assert.equal(lent.end(t3), false);
    assert.throws(() => lent.end(99), { code: 'PV_ERR_INVALID_ARG' });
    await assert.rejects(
      lent.track(async () => 1),
      { code: 'PV_ERR_LEND_REVOKED' },
    );
    const c = lent.counters();
    assert.deepEqual([c.requests, c.completed, c.revokedRequests], [4, 1, 3]);
  });

  it('track passes the outcome of work that finishes in time', async () => {
    const lent = new LentFunction(hostNic());
    assert.equal(await lent.track(async () => 42), 42);
    await assert.rejects(
      lent.track(async () => {
        throw new Error('device said no');
      }),
      /device said no/,
    );
    assert.equal(lent.outstanding, 0);
  });
});

describe('lent function bound to its lease: usage reports and the forced return', () => {
  it('return while requests are outstanding is refused; forced, the holder fails them with REVOKED and later MMIO throws', async () => {
    const registry = new InMemoryRegistry();
    await registry.register({
      id: 'A/nic0',
      owner: 'A',
      kind: 'rdma-nic',
      bdf: '0000:03:00.0',
      shareable: false,
      queues: 1,
    });
    const lease = await registry.borrow('A/nic0', 'B', { mode: 'exclusive' });
    const binding = bindLease(registry, lease, hostNic());
    const lent = binding.lent;
    assert.equal(lent.bars[0].read32(NicReg.PORT_ID), 7);
    const inFlight = [lent.track(() => new Promise(() => {})), lent.track(() => new Promise(() => {}))];
    const settled = Promise.allSettled(inFlight);
    await assert.rejects(registry.return(lease), { code: 'PV_ERR_LEND_IN_USE', message: /2 request/ });
    assert.equal(lent.revoked, false, 'a refused return leaves the borrower working');
    assert.equal(lent.bars[0].read32(NicReg.VERSION), NIC_VERSION);
    const events: string[] = [];
    registry.watch((e) => events.push(e.type));
    await registry.return(lease, { force: true });
    assert.deepEqual(events, ['revoked']);
    assert.equal(lent.revoked, true);
    for (const r of await settled) {
      assert.equal(r.status, 'rejected');
      assert.equal(r.reason.code, 'PV_ERR_LEND_REVOKED');
      assert.match(r.reason.message, /revoked by a forced return/);
    }
    assert.throws(() => lent.bars[0].read32(NicReg.VERSION), { code: 'PV_ERR_LEND_REVOKED' });
    assert.deepEqual(binding.reportErrors, []);
    // The device is free again: another host borrows it.
    await registry.borrow('A/nic0', 'C', { mode: 'exclusive' });
    binding.close();
  });

  it('an idle bound lease returns normally; the view goes dead and the next borrower gets a live one', async () => {
    const registry = new InMemoryRegistry();
    await registry.register({
      id: 'A/nic0',
      owner: 'A',
      kind: 'rdma-nic',
      bdf: '0000:03:00.0',
      shareable: false,
      queues: 1,
    });
    const nic = hostNic();
    const b = bindLease(registry, await registry.borrow('A/nic0', 'B', { mode: 'exclusive' }), nic);
    await b.lent.track(async () => b.lent.bars[0].read32(NicReg.PORT_ID));
    await b.settled();
    assert.deepEqual((await registry.list())[0].outstanding, { [b.lease.generation]: 0 });
    await registry.return(b.lease);
    assert.throws(() => b.lent.bars[0].read32(0), { code: 'PV_ERR_LEND_REVOKED', message: /returned/ });
    const c = bindLease(registry, await registry.borrow('A/nic0', 'C', { mode: 'exclusive' }), nic);
    assert.equal(c.lent.bars[0].read32(NicReg.PORT_ID), 7);
    await drain();
    assert.deepEqual([b.reportErrors, c.reportErrors], [[], []]);
    b.close();
    c.close();
  });

  it('withdrawing a device by force revokes the bound view of every shared holder', async () => {
    const registry = new InMemoryRegistry();
    await registry.register({
      id: 'A/nic0',
      owner: 'A',
      kind: 'rdma-nic',
      bdf: '0000:03:00.0',
      shareable: true,
      queues: 2,
    });
    const nic = hostNic();
    const b = bindLease(registry, await registry.borrow('A/nic0', 'B', { mode: 'shared' }), nic);
    const c = bindLease(registry, await registry.borrow('A/nic0', 'C', { mode: 'shared' }), nic);
    const pending = b.lent.track(() => new Promise(() => {}));
    await registry.unregister('A/nic0', { force: true });
    await assert.rejects(pending, { code: 'PV_ERR_LEND_REVOKED' });
    assert.deepEqual([b.lent.revoked, c.lent.revoked], [true, true]);
  });
});
