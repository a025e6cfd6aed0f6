/**
 * NvmeBlockDevice in one thread over a real controller and file: dom0 (domid 1) owns nvme0 with
 * its IOMMU translating; a guest's page (domid 2) is mapped for the device the way
 * `mapGrants(…, { device })` does it (an IOMMU extent → a device address), and the device moves
 * the bytes to and from that page with no copy in dom0.
 */

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { NvmeBlockDevice } from '../../../backend/blk/NvmeBlockDevice.js';
import { NvmeDriver } from '../../../drivers/nvme/NvmeDriver.js';
import { NvmeDevice, type NvmeState } from '../../../hypervisor-sim/devices/nvme/NvmeDevice.js';
import { IommuContext } from '../../../hypervisor-sim/iommu/IommuContext.js';
import { MemoryDirectory } from '../../../hypervisor-sim/memory/MemoryDirectory.js';
import { SharedArrayGuestMemory } from '../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import { isDmaBlockDevice } from '../../../protocol/blkif/BlockDevice.js';
import type { PciFunction } from '../../../protocol/Pci.js';
import { domId, type Gfn, type GuestPhysAddr, type Iova, PAGE_SIZE } from '../../../protocol/Types.js';

const LBA = 512;

interface World {
  state: NvmeState;
  dom0: SharedArrayGuestMemory;
  guest: SharedArrayGuestMemory;
  iommu: IommuContext;
  driver: NvmeDriver;
  dev: NvmeBlockDevice;
  /** Maps one guest page for the device; returns its device address. */
  mapForDevice(gpa: GuestPhysAddr, writable: boolean): Iova;
}

function world(queueEntries = 64): World {
  const dom0 = SharedArrayGuestMemory.create(domId(1), 8 << 20);
  const guest = SharedArrayGuestMemory.create(domId(2), 4 << 20);
  const dir = new MemoryDirectory();
  dir.addMemory(dom0);
  dir.addMemory(guest);
  const iommu = IommuContext.attach(IommuContext.create({ device: 'nvme0' }), dir);
  iommu.assign(domId(1), dom0.size, 'translate');
  const state = NvmeDevice.create({ name: 'nvme0', sizeBytes: 8 << 20 });
  const nvme = new NvmeDevice(state, iommu);
  const pci: PciFunction = {
    name: 'nvme0',
    kind: 'nvme',
    bdf: '0000:05:00.0',
    bars: [nvme.mmio()],
    dmaAddr: (gpa: GuestPhysAddr) => gpa as number as Iova,
  };
  const driver = new NvmeDriver(pci, dom0, { queueEntries });
  const dev = new NvmeBlockDevice(driver, dom0);
  const mapForDevice = (gpa: GuestPhysAddr, writable: boolean) =>
    iommu.mapForeign(domId(2), (gpa / PAGE_SIZE) as Gfn, 1, writable);
  return { state, dom0, guest, iommu, driver, dev, mapForDevice };
}

const byteAt = (a: number, seed: number) => (a * 7 + seed + (a >>> 12)) & 0xff;

describe('backend/blk NvmeBlockDevice: blkback over an NVMe namespace', () => {
  let w: World | undefined;
  afterEach(() => {
    if (w) NvmeDevice.destroy(w.state);
    w = undefined;
  });

  it('is a DmaBlockDevice of the namespace: 512-byte sectors, its capacity, DMA by nvme0', () => {
    w = world();
    assert.ok(isDmaBlockDevice(w.dev));
    assert.equal(w.dev.sectorSize, LBA);
    assert.equal(w.dev.sectors, (8 << 20) / LBA);
    assert.equal(w.dev.dmaDevice, 'nvme0');
  });

  it('zero copy: guest pages mapped for the device are written to the file and read back by DMA, more segments than the queue holds', () => {
    w = world(4); // 3 commands in flight: 10 segments take several doorbell batches
    const src = w.guest.allocPages(10);
    const dst = w.guest.allocPages(10);
    for (let i = 0; i < 10 * PAGE_SIZE; i++) w.guest.bytes[src + i] = byteAt(i, 5);
    for (let p = 0; p < 10; p++) {
      const at = w.mapForDevice((src + p * PAGE_SIZE) as GuestPhysAddr, false);
      w.dev.queueDma(true, 64 + p * 8, 8, at);
    }
    w.dev.finishDma();
    for (let p = 0; p < 10; p++) {
      const at = w.mapForDevice((dst + p * PAGE_SIZE) as GuestPhysAddr, true);
      w.dev.queueDma(false, 64 + p * 8, 8, at);
    }
    w.dev.finishDma();
    const file = fs.readFileSync(w.state.media.path);
    for (let i = 0; i < 10 * PAGE_SIZE; i++) {
      if (file[64 * LBA + i] !== byteAt(i, 5)) assert.fail(`file byte ${i}`);
      if (w.guest.bytes[dst + i] !== byteAt(i, 5)) assert.fail(`read-back byte ${i}`);
    }
    assert.equal(w.dev.stats.dmaCommands, 20);
    assert.equal(w.dev.stats.bounceCommands, 0);
    assert.ok(w.dev.stats.dmaBatches >= 2 * Math.ceil(10 / 3), 'a full queue drains before more is queued');
  });

  it('a failed transfer (a page the device may not write) is thrown by finishDma after the whole batch completed', () => {
    w = world();
    const page = w.guest.allocPages(2);
    const ro = w.mapForDevice(page, false); // read-only for the device: a READ into it faults
    const rw = w.mapForDevice((page + PAGE_SIZE) as GuestPhysAddr, true);
    w.dev.queueDma(false, 0, 8, ro);
    w.dev.queueDma(false, 8, 8, rw);
    assert.throws(() => w?.dev.finishDma(), { code: 'PV_ERR_BLK_IO' });
    assert.equal(w.driver.poll(1), 0, 'nothing is left in flight');
    // The next batch starts clean.
    w.dev.queueDma(false, 8, 8, rw);
    w.dev.finishDma();
  });

  it('range checks come before the device: a transfer past the end is PV_ERR_BLK_BAD_SECTOR, nothing queued', () => {
    w = world();
    const rw = w.mapForDevice(w.guest.allocPages(1), true);
    assert.throws(() => w?.dev.queueDma(false, w.dev.sectors - 4, 8, rw), { code: 'PV_ERR_BLK_BAD_SECTOR' });
    w.dev.finishDma();
    assert.equal(w.dev.stats.dmaCommands, 0);
  });

  it('copy path: read/write of an ordinary buffer larger than the bounce buffer, and flush', () => {
    w = world();
    const buf = new Uint8Array(300 * 1024);
    for (let i = 0; i < buf.length; i++) buf[i] = byteAt(i, 9);
    w.dev.write(1000, buf.length / LBA, buf);
    const back = new Uint8Array(buf.length);
    w.dev.read(1000, back.length / LBA, back);
    assert.deepEqual(back, buf);
    w.dev.flush();
    assert.equal(w.dev.stats.bounceCommands, 6, '300 KiB in 128 KiB chunks, twice');
    assert.equal(w.dev.stats.flushes, 1);
    assert.ok(new NvmeDevice(w.state, w.iommu).metrics().fsyncs >= 1);
    w.dev.close();
    assert.throws(() => w?.dev.flush(), { code: 'PV_ERR_BAD_REQUEST' });
  });
});
