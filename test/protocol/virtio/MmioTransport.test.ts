/**
 * The virtio-mmio register block (protocol/virtio/MmioTransport.ts): the spec window's offsets
 * against an independent transcription of VIRTIO 1.2 §4.2.2's register table, read back through
 * a DataView at the window as a driver reading the spec's offsets would, and the invariants the
 * rest of the block relies on (no word shared, the status block clear of the window).
 */

import assert from 'node:assert/strict';
import { GuestMemoryMap } from '../../../backend/virtio/GuestMemoryMap.js';
import { MmioDevice } from '../../../backend/virtio/MmioDevice.js';
import { guestPhysAddr } from '../../../protocol/Types.js';
import { featureBit, STATUS_REG_BYTES, VIRTIO_F_VERSION_1 } from '../../../protocol/virtio/DeviceStatus.js';
import {
  DRIVER_WRITABLE,
  joinAddr,
  MMIO_CONFIG_WORD,
  MMIO_CONFIG_WORDS,
  MMIO_MAX_QUEUES,
  MMIO_REG_BYTES,
  MMIO_REG_WORDS,
  MMIO_WINDOW,
  MMIO_WINDOW_BYTES,
  MmioReg,
  MmioWord,
  mmioWords,
  PVIO_VIRTIO_DEVICE_ID,
  PVIO_VIRTIO_VENDOR_ID,
  regWord,
  VIRTIO_MMIO_INT_CONFIG,
  VIRTIO_MMIO_INT_VRING,
} from '../../../protocol/virtio/MmioTransport.js';

/** VIRTIO 1.2 §4.2.2, "MMIO Device Register Layout", transcribed by hand: name, offset, R/W. */
const SPEC: ReadonlyArray<readonly [string, number, 'R' | 'W' | 'RW']> = [
  ['MagicValue', 0x000, 'R'],
  ['Version', 0x004, 'R'],
  ['DeviceID', 0x008, 'R'],
  ['VendorID', 0x00c, 'R'],
  ['DeviceFeatures', 0x010, 'R'],
  ['DeviceFeaturesSel', 0x014, 'W'],
  ['DriverFeatures', 0x020, 'W'],
  ['DriverFeaturesSel', 0x024, 'W'],
  ['QueueSel', 0x030, 'W'],
  ['QueueNumMax', 0x034, 'R'],
  ['QueueNum', 0x038, 'W'],
  ['QueueReady', 0x044, 'RW'],
  ['QueueNotify', 0x050, 'W'],
  ['InterruptStatus', 0x060, 'R'],
  ['InterruptACK', 0x064, 'W'],
  ['Status', 0x070, 'RW'],
  ['QueueDescLow', 0x080, 'W'],
  ['QueueDescHigh', 0x084, 'W'],
  ['QueueDriverLow', 0x090, 'W'],
  ['QueueDriverHigh', 0x094, 'W'],
  ['QueueDeviceLow', 0x0a0, 'W'],
  ['QueueDeviceHigh', 0x0a4, 'W'],
  ['ConfigGeneration', 0x0fc, 'R'],
];

const OURS: Record<string, MmioReg> = {
  MagicValue: MmioReg.MAGIC_VALUE,
  Version: MmioReg.VERSION,
  DeviceID: MmioReg.DEVICE_ID,
  VendorID: MmioReg.VENDOR_ID,
  DeviceFeatures: MmioReg.DEVICE_FEATURES,
  DeviceFeaturesSel: MmioReg.DEVICE_FEATURES_SEL,
  DriverFeatures: MmioReg.DRIVER_FEATURES,
  DriverFeaturesSel: MmioReg.DRIVER_FEATURES_SEL,
  QueueSel: MmioReg.QUEUE_SEL,
  QueueNumMax: MmioReg.QUEUE_NUM_MAX,
  QueueNum: MmioReg.QUEUE_NUM,
  QueueReady: MmioReg.QUEUE_READY,
  QueueNotify: MmioReg.QUEUE_NOTIFY,
  InterruptStatus: MmioReg.INTERRUPT_STATUS,
  InterruptACK: MmioReg.INTERRUPT_ACK,
  Status: MmioReg.STATUS,
  QueueDescLow: MmioReg.QUEUE_DESC_LOW,
  QueueDescHigh: MmioReg.QUEUE_DESC_HIGH,
  QueueDriverLow: MmioReg.QUEUE_DRIVER_LOW,
  QueueDriverHigh: MmioReg.QUEUE_DRIVER_HIGH,
  QueueDeviceLow: MmioReg.QUEUE_DEVICE_LOW,
  QueueDeviceHigh: MmioReg.QUEUE_DEVICE_HIGH,
  ConfigGeneration: MmioReg.CONFIG_GENERATION,
};

function device(): MmioDevice {
  const backing = new SharedArrayBuffer(4096);
  const memory = new GuestMemoryMap([{ gpa: guestPhysAddr(0), size: 4096, backing, offset: 0 }]);
  return new MmioDevice({ offered: featureBit(VIRTIO_F_VERSION_1), memory, queues: 3, queueNumMax: 128 });
}

describe('virtio-mmio register block: the spec window', () => {
  it('every register sits at its VIRTIO 1.2 §4.2.2 offset', () => {
    assert.deepEqual(Object.keys(OURS).sort(), SPEC.map(([n]) => n).sort());
    for (const [name, off] of SPEC) assert.equal(OURS[name], off, name);
  });

  it('a DataView at the window reads the identification registers at the spec offsets, little endian', () => {
    const dev = device();
    const dv = new DataView(dev.regs, MMIO_WINDOW, MMIO_WINDOW_BYTES);
    assert.equal(String.fromCharCode(...new Uint8Array(dev.regs, MMIO_WINDOW, 4)), 'virt');
    assert.equal(dv.getUint32(0x000, true), 0x74726976);
    assert.equal(dv.getUint32(0x004, true), 2);
    assert.equal(dv.getUint32(0x008, true), PVIO_VIRTIO_DEVICE_ID);
    assert.equal(PVIO_VIRTIO_DEVICE_ID, 0x3c, 'not 0x1a: that is the file-system device in VIRTIO 1.2');
    assert.equal(String.fromCharCode(...new Uint8Array(dev.regs, MMIO_WINDOW + 0x00c, 4)), 'pvio');
    assert.equal(dv.getUint32(0x00c, true), PVIO_VIRTIO_VENDOR_ID);
    assert.equal(dv.getUint32(0x034, true), 128, 'QueueNumMax of queue 0');
    // Status and features live in the status block, not the window: these words stay zero.
    for (const off of [0x010, 0x014, 0x020, 0x024, 0x050, 0x064, 0x070]) assert.equal(dv.getUint32(off, true), 0);
  });

  it('the driver may post writes to exactly the W/RW queue and interrupt registers of the spec', () => {
    const writable = SPEC.filter(([n, , rw]) => rw !== 'R' && !/Features|^Status$/.test(n)).map(([, o]) => o);
    assert.deepEqual(
      [...DRIVER_WRITABLE].sort((a, b) => a - b),
      writable.sort((a, b) => a - b),
    );
    for (const [name, off, rw] of SPEC) if (rw === 'R') assert.equal(DRIVER_WRITABLE.has(off), false, name);
  });

  it('interrupt bits: 1 used buffer, 2 configuration change', () => {
    assert.deepEqual([VIRTIO_MMIO_INT_VRING, VIRTIO_MMIO_INT_CONFIG], [1, 2]);
  });
});

describe('virtio-mmio register block: layout invariants', () => {
  it('status block, window and pvio words are disjoint, in that order, inside the block', () => {
    assert.ok(STATUS_REG_BYTES <= MMIO_WINDOW);
    assert.equal(MMIO_WINDOW % 16, 0);
    const pvio = [
      MmioWord.WRITE_REG,
      MmioWord.WRITE_VALUE,
      MmioWord.WRITE_SEQ,
      MmioWord.ACK_SEQ,
      MmioWord.WRITE_ERROR,
      MmioWord.DOORBELL,
      MmioWord.IRQ_SEQ,
      ...Array.from({ length: MMIO_MAX_QUEUES }, (_, q) => MmioWord.KICK + q),
    ];
    assert.equal(new Set(pvio).size, pvio.length, 'no pvio word shared');
    for (const w of pvio) {
      assert.ok(w * 4 >= MMIO_WINDOW + MMIO_WINDOW_BYTES, `word ${w} after the window`);
      assert.ok(w < MMIO_REG_WORDS, `word ${w} inside the block`);
    }
    for (const [name, off] of SPEC) {
      const w = regWord(OURS[name]);
      assert.equal(w * 4, MMIO_WINDOW + off, name);
      assert.ok(w * 4 >= STATUS_REG_BYTES && w * 4 < MMIO_WINDOW + MMIO_WINDOW_BYTES, name);
    }
    assert.equal(MMIO_REG_BYTES, MMIO_REG_WORDS * 4);
    assert.equal(MMIO_REG_BYTES, 512);
    // Device config: right after the last kick counter, to the end of the block.
    assert.equal(MMIO_CONFIG_WORD, MmioWord.KICK + MMIO_MAX_QUEUES);
    assert.equal(MMIO_CONFIG_WORD * 4, 0x180);
    assert.equal(MMIO_CONFIG_WORD + MMIO_CONFIG_WORDS, MMIO_REG_WORDS);
  });

  it('a block may sit at a 4-aligned offset inside a larger buffer (a page of guest memory), never past its end', () => {
    const page = new SharedArrayBuffer(8192);
    const w = mmioWords(page, 4096);
    assert.equal(w.byteOffset, 4096);
    assert.equal(w.length, MMIO_REG_WORDS);
    assert.equal(mmioWords(page, 8192 - MMIO_REG_BYTES).length, MMIO_REG_WORDS);
    for (const bad of [8192 - MMIO_REG_BYTES + 4, 2, -4, 1.5, Number.NaN, 2 ** 53]) {
      assert.throws(() => mmioWords(page, bad), { code: 'PV_ERR_VIRTQ_LAYOUT' }, `offset ${bad}`);
    }
  });

  it('mmioWords refuses a block too small or not shared; joinAddr combines u32 halves exactly', () => {
    assert.throws(() => mmioWords(new SharedArrayBuffer(MMIO_REG_BYTES - 4)), { code: 'PV_ERR_VIRTQ_LAYOUT' });
    assert.throws(() => mmioWords(new ArrayBuffer(MMIO_REG_BYTES) as unknown as SharedArrayBuffer), {
      code: 'PV_ERR_VIRTQ_LAYOUT',
    });
    assert.equal(mmioWords(new SharedArrayBuffer(MMIO_REG_BYTES)).length, MMIO_REG_WORDS);
    assert.equal(joinAddr(0xffffffff, 0x1fffff), Number.MAX_SAFE_INTEGER);
    assert.equal(joinAddr(-16, 0), 0xfffffff0, 'an Int32 word read back as u32');
    assert.equal(joinAddr(0x10, 1), 2 ** 32 + 0x10);
  });
});
