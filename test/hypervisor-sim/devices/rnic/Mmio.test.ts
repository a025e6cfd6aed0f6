import assert from 'node:assert/strict';
import { RnicDevice } from '../../../../hypervisor-sim/devices/rnic/RnicDevice.js';
import { RnicFabric } from '../../../../hypervisor-sim/devices/rnic/RnicFabric.js';
import { NIC_VERSION, NicReg, nicBarSize, rqDoorbell, sqDoorbell } from '../../../../protocol/rdma/NicRegs.js';
import { makeNics } from './helpers/Fixture.js';
import { FlatDma } from './helpers/FlatDma.js';

describe('rnic BAR 0: registers, doorbells and attachment', () => {
  it('read-only registers read their values and ignore writes; doorbells read as 0', () => {
    const { nics } = makeNics({ count: 1, config: { maxQp: 16 } });
    const bar = nics[0].dev.mmio('inline');
    assert.equal(bar.size, nicBarSize(16));
    assert.equal(bar.read32(NicReg.VERSION), NIC_VERSION);
    bar.write32(NicReg.VERSION, 0);
    bar.write32(NicReg.MAX_QP, 999);
    bar.write32(NicReg.CMD_STATUS, 5);
    assert.equal(bar.read32(NicReg.VERSION), NIC_VERSION);
    assert.equal(bar.read32(NicReg.MAX_QP), 16);
    assert.equal(bar.read32(NicReg.CMD_STATUS), 0);
    bar.write32(sqDoorbell(3), 7);
    assert.equal(bar.read32(sqDoorbell(3)), 0);
    assert.equal(nics[0].dev.metrics.doorbells, 1);
  });

  it('an offset outside the BAR or not 4-aligned throws; a doorbell of a QP that cannot exist is dropped', () => {
    const { nics } = makeNics({ count: 1, config: { maxQp: 16 } });
    const bar = nics[0].dev.mmio('dedicated');
    assert.throws(() => bar.read32(bar.size), { code: 'PV_ERR_OUT_OF_BOUNDS' });
    assert.throws(() => bar.write32(-4, 0), { code: 'PV_ERR_OUT_OF_BOUNDS' });
    assert.throws(() => bar.read32(2), { code: 'PV_ERR_BAD_ALIGNMENT' });
    assert.throws(() => bar.read32(Number.NaN), { code: 'PV_ERR_OUT_OF_BOUNDS' });
    assert.doesNotThrow(() => bar.write32(sqDoorbell(0), 1));
    assert.doesNotThrow(() => bar.write32(rqDoorbell(20), 1)); // past maxQp, still inside the page
    assert.equal(nics[0].dev.metrics.doorbells, 0);
  });

  it('any thread may attach: a second attachment sees the same device; ports are unique per fabric', () => {
    const { nics, lock } = makeNics({ count: 1 });
    const fabric = new RnicFabric(lock);
    const again = new RnicDevice(nics[0].state, new FlatDma(nics[0].memory), fabric);
    assert.equal(fabric.get(1), again);
    fabric.add(again); // idempotent
    nics[0].drv.createPd();
    assert.equal(again.metrics.commands, 1, 'metrics live in the shared state');
    const other = RnicDevice.create({ name: 'dup', portId: 1 });
    assert.throws(() => new RnicDevice(other, new FlatDma(nics[0].memory), fabric), { code: 'PV_ERR_CONFIG' });
    const wrong = { ...nics[0].state, dev: new SharedArrayBuffer(64) };
    assert.throws(() => new RnicDevice(wrong, new FlatDma(nics[0].memory), new RnicFabric(lock)), {
      code: 'PV_ERR_CONFIG',
    });
  });
});
