import assert from 'node:assert/strict';
import fs from 'node:fs';
import sinon from 'sinon';
import { NvmeDriver } from '../../../drivers/nvme/NvmeDriver.js';
import { NvmeStatus } from '../../../protocol/nvme/NvmeCommand.js';
import { CstsBit, NvmeReg } from '../../../protocol/nvme/NvmeRegs.js';
import { type GuestPhysAddr, PAGE_SIZE } from '../../../protocol/Types.js';
import { fillPattern, makeRig, type NvmeRig } from '../../hypervisor-sim/devices/nvme/helpers/NvmeRig.js';

const LBA = 512;

/** The bytes of the backing file at `[pos, pos + len)`, read independently of the device. */
function fileBytes(rig: NvmeRig, pos: number, len: number): Buffer {
  return fs.readFileSync(rig.state.media.path).subarray(pos, pos + len);
}

function memBytes(rig: NvmeRig, gpa: number, len: number): Buffer {
  return Buffer.from(rig.mem.bytes.subarray(gpa, gpa + len));
}

describe('nvme driver: bring-up, data path and FLUSH over a real controller and a real file', () => {
  let rig: NvmeRig;
  afterEach(() => {
    sinon.restore();
    rig?.dispose();
  });

  it('bring-up enables the controller and Identify reports the namespace (512-byte LBAs)', () => {
    rig = makeRig({ sizeBytes: 16 << 20 });
    const drv = new NvmeDriver(rig.pci, rig.mem, { ioQueues: 2 });
    assert.equal(rig.dev.enabled(), true);
    assert.equal(rig.pci.bars[0].read32(NvmeReg.CSTS) & CstsBit.RDY, CstsBit.RDY);
    assert.equal(drv.identity.lbaBytes, LBA);
    assert.equal(drv.identity.capacityBlocks, (16 << 20) / LBA);
    assert.equal(drv.identity.model, 'pvio file-backed NVMe SSD');
    assert.equal(drv.identity.serial, 'PVIO-nvme0');
    assert.equal(drv.identity.ioQueues, 2);
    assert.equal(drv.identity.volatileWriteCache, true);
  });

  it('a pattern written through the driver reads back and is in the backing file at lba × 512', () => {
    rig = makeRig();
    const drv = new NvmeDriver(rig.pci, rig.mem);
    const src = rig.mem.allocPages(1);
    const dst = rig.mem.allocPages(1);
    fillPattern(rig.mem.bytes, src, 3 * LBA, 7);
    drv.write(5, 3, src);
    drv.read(5, 3, dst);
    assert.deepEqual(memBytes(rig, dst, 3 * LBA), memBytes(rig, src, 3 * LBA));
    assert.deepEqual(fileBytes(rig, 5 * LBA, 3 * LBA), memBytes(rig, src, 3 * LBA));
    assert.equal(
      fileBytes(rig, 4 * LBA, LBA).every((b) => b === 0),
      true,
      'the block before is untouched',
    );
    const m = rig.dev.metrics();
    assert.equal(m.writes, 1);
    assert.equal(m.reads, 1);
    assert.equal(m.bytesWritten, 3 * LBA);
    assert.equal(m.bytesRead, 3 * LBA);
    assert.equal(m.errors, 0);
  });

  it('PRP lists: a 64 KiB buffer starting mid-page (17 pages) round-trips and lands in the file', () => {
    rig = makeRig();
    const drv = new NvmeDriver(rig.pci, rig.mem);
    const len = 64 << 10;
    const src = (rig.mem.allocPages(17) + 1024) as GuestPhysAddr;
    const dst = (rig.mem.allocPages(17) + 2048) as GuestPhysAddr;
    fillPattern(rig.mem.bytes, src, len, 11);
    drv.write(1000, len / LBA, src);
    drv.read(1000, len / LBA, dst);
    assert.deepEqual(memBytes(rig, dst, len), memBytes(rig, src, len));
    assert.deepEqual(fileBytes(rig, 1000 * LBA, len), memBytes(rig, src, len));
  });

  it('chained PRP lists: a 3 MiB transfer (768 pages, > 512 entries per list page) round-trips', () => {
    rig = makeRig({ memBytes: 24 << 20 });
    const drv = new NvmeDriver(rig.pci, rig.mem, { maxTransferBytes: 4 << 20, queueEntries: 4 });
    const len = 3 << 20;
    const src = rig.mem.allocPages(len / PAGE_SIZE);
    const dst = rig.mem.allocPages(len / PAGE_SIZE);
    fillPattern(rig.mem.bytes, src, len, 3);
    drv.write(64, len / LBA, src);
    drv.read(64, len / LBA, dst);
    assert.ok(memBytes(rig, dst, len).equals(memBytes(rig, src, len)));
    assert.ok(fileBytes(rig, 64 * LBA, len).equals(memBytes(rig, src, len)));
  });

  it('FLUSH calls fsync on the backing file descriptor (spied) and the device counts it', () => {
    rig = makeRig();
    const drv = new NvmeDriver(rig.pci, rig.mem);
    const spy = sinon.spy(fs, 'fsyncSync');
    const before = rig.dev.metrics().fsyncs;
    drv.flush();
    assert.equal(spy.callCount, 1);
    assert.equal(spy.firstCall.args[0], rig.state.media.fd);
    assert.equal(rig.dev.metrics().fsyncs, before + 1);
    assert.equal(rig.dev.metrics().flushes, 1);
  });

  it('queue depth: 2 queues × 15 writes in flight, rung once each, all complete and read back', () => {
    rig = makeRig();
    const drv = new NvmeDriver(rig.pci, rig.mem, { ioQueues: 2, queueEntries: 16 });
    const bufs: GuestPhysAddr[] = [];
    const tags: Array<[number, number]> = [];
    for (let i = 0; i < 30; i++) {
      const b = rig.mem.allocPages(1);
      fillPattern(rig.mem.bytes, b, PAGE_SIZE, 100 + i);
      bufs.push(b);
      const qid = 1 + (i % 2);
      tags.push([qid, drv.submitIo('write', i * 8, 8, rig.pci.dmaAddr(b), qid)]);
    }
    assert.throws(() => drv.submitIo('write', 0, 8, rig.pci.dmaAddr(bufs[0]), 1), { code: 'PV_ERR_RING_FULL' });
    assert.equal(rig.dev.metrics().writes, 0, 'nothing runs before the doorbell');
    drv.ring(1);
    drv.ring(2);
    const seen: number[] = [];
    drv.poll(1, (c) => seen.push(c.status));
    drv.poll(2, (c) => seen.push(c.status));
    assert.equal(seen.length, 30);
    assert.ok(seen.every((s) => s === NvmeStatus.SUCCESS));
    const dst = rig.mem.allocPages(1);
    for (let i = 0; i < 30; i++) {
      drv.read(i * 8, 8, dst, 1 + ((i + 1) % 2));
      assert.ok(memBytes(rig, dst, PAGE_SIZE).equals(memBytes(rig, bufs[i], PAGE_SIZE)), `block ${i}`);
    }
    assert.equal(tags.length, 30);
  });

  it('errors map to PV_ERR_BLK_BAD_SECTOR / PV_ERR_BLK_IO with the NVMe status in the message', () => {
    rig = makeRig();
    const drv = new NvmeDriver(rig.pci, rig.mem);
    const b = rig.mem.allocPages(1);
    const cap = drv.identity.capacityBlocks;
    assert.throws(() => drv.read(cap - 1, 2, b), { code: 'PV_ERR_BLK_BAD_SECTOR' });
    const c = drv.wait(1, drv.submitIo('read', 0, 1, (rig.mem.size + PAGE_SIZE) as never, 1));
    assert.equal(c.status, NvmeStatus.DATA_TRANSFER_ERROR);
    assert.throws(() => drv.check(c, 'READ', 0, 1), {
      code: 'PV_ERR_BLK_IO',
      message: /NVMe status 0x004 \(Data Transfer Error\)/,
    });
    assert.throws(() => drv.check({ ...c, status: NvmeStatus.LBA_OUT_OF_RANGE }, 'READ', 0, 1), {
      code: 'PV_ERR_BLK_BAD_SECTOR',
      message: /LBA Out of Range/,
    });
  });

  it('close(): queues deleted, shutdown notification fsyncs, controller disabled; a new driver attaches', () => {
    rig = makeRig();
    const drv = new NvmeDriver(rig.pci, rig.mem, { ioQueues: 3 });
    const spy = sinon.spy(fs, 'fsyncSync');
    drv.close();
    assert.equal(spy.callCount, 1, 'shutdown makes the media durable');
    assert.equal(rig.dev.enabled(), false);
    assert.equal(rig.pci.bars[0].read32(NvmeReg.CSTS) & CstsBit.RDY, 0);
    assert.throws(() => drv.flush(), { code: 'PV_ERR_INVALID_ARG' });
    const again = new NvmeDriver(rig.pci, rig.mem);
    again.flush();
  });
});
