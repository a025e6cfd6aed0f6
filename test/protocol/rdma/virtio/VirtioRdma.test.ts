/**
 * The virtio-rdma device's fixed layout: its configuration words (the offset table in
 * protocol/rdma/virtio/VirtioRdma.ts), the queue geometry, and the config round trip through a
 * real register block (device writes, driver reads).
 */

import assert from 'node:assert/strict';
import { GuestMemoryMap } from '../../../../backend/virtio/GuestMemoryMap.js';
import { MmioDevice } from '../../../../backend/virtio/MmioDevice.js';
import { MmioDriver } from '../../../../frontend/virtio/MmioDriver.js';
import { PV_DATA_RING_ORDER, PV_DATA_SLOT_SIZE } from '../../../../protocol/rdma/pv/PvConstants.js';
import {
  decodeConfig,
  encodeConfig,
  VIRTIO_RDMA_CONFIG_WORDS,
  VirtioRdmaConfig,
  VRDMA_CHAIN_DESCS,
  VRDMA_CTRL_QUEUE_SIZE,
  VRDMA_DATA_QUEUE_SIZE,
  VRDMA_QUEUE_NUM_MAX,
} from '../../../../protocol/rdma/virtio/VirtioRdma.js';
import { ringBytes, ringSlots } from '../../../../protocol/ring/Layout.js';
import { guestPhysAddr } from '../../../../protocol/Types.js';
import { featureBit, VIRTIO_F_VERSION_1 } from '../../../../protocol/virtio/DeviceStatus.js';
import { MMIO_CONFIG_WORDS, MmioReg, VIRTIO_MMIO_MAGIC } from '../../../../protocol/virtio/MmioTransport.js';

const INFO = {
  portId: 7,
  maxQp: 64,
  maxCq: 128,
  maxMr: 256,
  maxPinnedPages: 262144,
  maxOutstandingWr: 8192,
  maxCqe: 65536,
  maxQpWr: 4096,
};

describe('virtio-rdma: configuration words and queue geometry', () => {
  it('each configuration field has its own word, in the order of the offset table, inside config space', () => {
    const words = [
      VirtioRdmaConfig.PORT_ID,
      VirtioRdmaConfig.MAX_QP,
      VirtioRdmaConfig.MAX_CQ,
      VirtioRdmaConfig.MAX_MR,
      VirtioRdmaConfig.MAX_PINNED_PAGES,
      VirtioRdmaConfig.MAX_OUTSTANDING_WR,
      VirtioRdmaConfig.MAX_CQE,
      VirtioRdmaConfig.MAX_QP_WR,
    ];
    assert.deepEqual(words, [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.equal(VIRTIO_RDMA_CONFIG_WORDS, words.length);
    assert.ok(VIRTIO_RDMA_CONFIG_WORDS <= MMIO_CONFIG_WORDS);
    const enc = encodeConfig(INFO);
    assert.equal(enc[VirtioRdmaConfig.MAX_PINNED_PAGES], 262144);
    assert.deepEqual(
      decodeConfig((i) => enc[i]),
      { ...INFO, featureCopy: false },
    );
  });

  it('the data queue holds as many two-descriptor chains as the vrdma data ring has slots; the control queue two', () => {
    assert.equal(
      VRDMA_DATA_QUEUE_SIZE / VRDMA_CHAIN_DESCS,
      ringSlots(ringBytes(PV_DATA_RING_ORDER), PV_DATA_SLOT_SIZE),
    );
    assert.equal(VRDMA_CTRL_QUEUE_SIZE / VRDMA_CHAIN_DESCS, 2);
    assert.ok(VRDMA_DATA_QUEUE_SIZE <= VRDMA_QUEUE_NUM_MAX);
  });

  it('the device writes its configuration before MagicValue, and a driver on the same page reads it back', () => {
    const mem = new SharedArrayBuffer(1 << 16);
    const map = new GuestMemoryMap([{ gpa: guestPhysAddr(0), size: mem.byteLength, backing: mem, offset: 0 }]);
    const dev = new MmioDevice({
      offered: featureBit(VIRTIO_F_VERSION_1),
      memory: map,
      queues: 2,
      window: { buffer: mem, offset: 8192 },
      config: encodeConfig(INFO),
    });
    assert.equal(dev.regsOffset, 8192);
    const drv = new MmioDriver(mem, mem, 1000, { offset: 8192 });
    assert.equal(drv.read(MmioReg.MAGIC_VALUE), VIRTIO_MMIO_MAGIC);
    drv.probe();
    assert.deepEqual(
      decodeConfig((i) => drv.readConfig(i)),
      { ...INFO, featureCopy: false },
    );
    assert.throws(() => drv.readConfig(MMIO_CONFIG_WORDS), { code: 'PV_ERR_INVALID_ARG' });
    assert.throws(
      () => new MmioDevice({ offered: featureBit(VIRTIO_F_VERSION_1), memory: map, config: [2 ** 32] }),
      { code: 'PV_ERR_INVALID_ARG' },
      'a config word is a u32',
    );
  });
});
