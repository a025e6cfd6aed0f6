/**
 * The virtio-mmio driver side: probe refuses what is not a pvio virtio-mmio device, and the
 * driver's writes are the ones the §3.1.1 / §4.2.3.2 sequence prescribes, as the real device
 * (MmioDevice, served in this thread) sees them while the driver blocks in a Worker.
 */

import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { GuestMemoryMap } from '../../../backend/virtio/GuestMemoryMap.js';
import { MmioDevice } from '../../../backend/virtio/MmioDevice.js';
import { MmioDriver } from '../../../frontend/virtio/MmioDriver.js';
import { guestPhysAddr } from '../../../protocol/Types.js';
import {
  VIRTIO_STATUS_ACKNOWLEDGE as ACK,
  VIRTIO_STATUS_DRIVER as DRV,
  VIRTIO_STATUS_FEATURES_OK as FOK,
  featureBit,
  VIRTIO_STATUS_DRIVER_OK as OK,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
} from '../../../protocol/virtio/DeviceStatus.js';
import { MmioReg as R, regWord, VIRTIO_MMIO_INT_VRING } from '../../../protocol/virtio/MmioTransport.js';
import { splitLayout } from '../../../protocol/virtio/SplitRing.js';
import type { DriverGuestData, DriverGuestResult } from './MmioDriverGuest.js';

const MEM = 1 << 16;
const V1 = featureBit(VIRTIO_F_VERSION_1);

function device(offered = V1 | featureBit(VIRTIO_F_EVENT_IDX)) {
  const mem = new SharedArrayBuffer(MEM);
  const map = new GuestMemoryMap([{ gpa: guestPhysAddr(0), size: MEM, backing: mem, offset: 0 }]);
  return { mem, dev: new MmioDevice({ offered, memory: map, queues: 2, queueNumMax: 64 }) };
}

describe('virtio-mmio driver: probe', () => {
  it('accepts magic "virt", version 2 and the pvio device ID', () => {
    const { mem, dev } = device();
    assert.doesNotThrow(() => new MmioDriver(dev.regs, mem).probe());
  });

  it('a bad MagicValue is PV_ERR_VIRTIO_STATUS; a legacy version, another or an empty DeviceID is PV_ERR_NOT_SUPPORTED', () => {
    const cases: Array<[R, number, string]> = [
      [R.MAGIC_VALUE, 0x76697274, 'PV_ERR_VIRTIO_STATUS'],
      [R.MAGIC_VALUE, 0, 'PV_ERR_VIRTIO_STATUS'],
      [R.VERSION, 1, 'PV_ERR_NOT_SUPPORTED'],
      [R.VERSION, 3, 'PV_ERR_NOT_SUPPORTED'],
      [R.DEVICE_ID, 1, 'PV_ERR_NOT_SUPPORTED'],
      [R.DEVICE_ID, 0, 'PV_ERR_NOT_SUPPORTED'],
    ];
    for (const [reg, v, code] of cases) {
      const { mem, dev } = device();
      // A different device behind the window: rewrite the device-owned word as that device would.
      new Int32Array(dev.regs)[regWord(reg)] = v;
      assert.throws(() => new MmioDriver(dev.regs, mem).probe(), { code }, `register 0x${reg.toString(16)} = ${v}`);
    }
  });

  it('a register block too small for the layout is PV_ERR_VIRTQ_LAYOUT', () => {
    assert.throws(() => new MmioDriver(new SharedArrayBuffer(64), new SharedArrayBuffer(64)), {
      code: 'PV_ERR_VIRTQ_LAYOUT',
    });
  });

  it('queues cannot be set up before FEATURES_OK, and a u32 is all a register takes (checked before posting)', () => {
    const { mem, dev } = device();
    const drv = new MmioDriver(dev.regs, mem);
    assert.throws(() => drv.setupQueue(0, 16, 0), { code: 'PV_ERR_VIRTIO_STATUS' });
    for (const v of [-1, 2 ** 32, 1.5, Number.NaN]) {
      assert.throws(() => drv.postWrite(R.QUEUE_NUM, v), { code: 'PV_ERR_INVALID_ARG' });
    }
    drv.postWrite(R.QUEUE_SEL, 0);
    assert.throws(() => drv.postWrite(R.QUEUE_SEL, 1), { code: 'PV_ERR_VIRTIO_STATUS' }, 'one write in flight');
  });
});

describe("virtio-mmio driver: the driver's writes as the device sees them", () => {
  it('probe, negotiate, a refused QueueNum, two queues at their GPAs, DRIVER_OK, one kick per queue, one interrupt', async () => {
    const offered = V1 | featureBit(VIRTIO_F_EVENT_IDX) | featureBit(VIRTIO_F_INDIRECT_DESC);
    const { mem, dev } = device(offered);
    const data: DriverGuestData = { regs: dev.regs, mem, wanted: featureBit(VIRTIO_F_EVENT_IDX) };
    const guest = new Worker(new URL('./MmioDriverGuest.js', import.meta.url), { workerData: data });
    let done: DriverGuestResult | undefined;
    let failed: Error | undefined;
    guest.once('message', (m: DriverGuestResult) => {
      done = m;
    });
    guest.once('error', (e) => {
      failed = e;
    });
    const statuses: number[] = [];
    const regs: Array<[number, number, string]> = [];
    const kicked: number[] = [];
    while (done === undefined && failed === undefined) {
      const bell = dev.doorbell();
      for (let out = dev.service(); out !== undefined; out = dev.service()) {
        if (out.status !== undefined) statuses.push(out.status.written);
        if (out.reg !== undefined) regs.push([out.reg.reg, out.reg.value, out.reg.error?.code ?? 'ok']);
      }
      for (const q of dev.kicked()) {
        kicked.push(q);
        if (kicked.length === 2) dev.interrupt(q);
      }
      dev.waitDoorbell(bell, 5);
      await new Promise<void>((r) => setImmediate(r));
    }
    await guest.terminate();
    assert.equal(failed, undefined, String(failed));
    const r = done as DriverGuestResult;
    assert.equal(r.negotiated, V1 | featureBit(VIRTIO_F_EVENT_IDX));
    assert.equal(dev.negotiated, r.negotiated);
    assert.deepEqual(statuses, [0, ACK, ACK | DRV, ACK | DRV | FOK, ACK | DRV | FOK | OK]);
    const place = (q: number, qs: number, base: number): Array<[number, number, string]> => {
      const l = splitLayout(qs);
      return [
        [R.QUEUE_SEL, q, 'ok'],
        [R.QUEUE_NUM, qs, 'ok'],
        [R.QUEUE_DESC_LOW, base + l.desc, 'ok'],
        [R.QUEUE_DESC_HIGH, 0, 'ok'],
        [R.QUEUE_DRIVER_LOW, base + l.avail, 'ok'],
        [R.QUEUE_DRIVER_HIGH, 0, 'ok'],
        [R.QUEUE_DEVICE_LOW, base + l.used, 'ok'],
        [R.QUEUE_DEVICE_HIGH, 0, 'ok'],
        [R.QUEUE_READY, 1, 'ok'],
      ];
    };
    assert.deepEqual(regs, [
      ...place(0, 16, 0),
      [R.QUEUE_SEL, 1, 'ok'],
      [R.QUEUE_NUM, 3, 'PV_ERR_VIRTQ_LAYOUT'],
      ...place(1, 32, 0x1000),
      [R.INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING, 'ok'],
    ]);
    assert.equal(r.badNum, 'PV_ERR_VIRTQ_LAYOUT');
    assert.deepEqual(r.sizes, [16, 32]);
    assert.deepEqual([dev.queue(0)?.size, dev.queue(1)?.size], [16, 32]);
    assert.deepEqual([...kicked].sort(), [0, 1], 'each queue kicked once, neither kick lost');
    assert.equal(r.irq, VIRTIO_MMIO_INT_VRING);
    assert.equal(dev.live, true);
  });
});
