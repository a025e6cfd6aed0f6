/**
 * Hostile commands written straight into the submission queues (driver passthrough): each gets
 * the NVMe status the spec gives it — or is dropped and counted — and the controller keeps
 * serving the next honest command.
 */

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { NvmeDriver } from '../../../../drivers/nvme/NvmeDriver.js';
import {
  AdminOpcode,
  encodeSqe,
  NvmeStatus,
  NvmOpcode,
  QueueCdw,
  SQE_WORDS,
  SqeWord,
} from '../../../../protocol/nvme/NvmeCommand.js';
import { cqHeadDoorbell, sqTailDoorbell } from '../../../../protocol/nvme/NvmeRegs.js';
import { type GuestPhysAddr, PAGE_SIZE } from '../../../../protocol/Types.js';
import { fillPattern, makeRig, type NvmeRig } from './helpers/NvmeRig.js';

function cmd(opc: number, prp1: number, prp2: number, cdw10: number, cdw11 = 0, cdw12 = 0, nsid = 1): Int32Array {
  const w = new Int32Array(SQE_WORDS);
  encodeSqe(w, 0, opc, 0, nsid, prp1, prp2, cdw10, cdw11, cdw12);
  return w;
}

function setEntry(rig: NvmeRig, list: number, i: number, addr: number): void {
  const w = new Int32Array(rig.mem.buffer, list + 8 * i, 2);
  w[0] = (addr % 2 ** 32) | 0;
  w[1] = Math.floor(addr / 2 ** 32);
}

describe('nvme hostile commands: every driver-controlled field is validated in the device', () => {
  let rig: NvmeRig;
  let drv: NvmeDriver;
  let buf: GuestPhysAddr;

  /** An honest 8-block write + read-back on queue 1 must still work. */
  function honest(seed: number): void {
    const dst = rig.mem.allocPages(1);
    fillPattern(rig.mem.bytes, buf, PAGE_SIZE, seed);
    drv.write(40, 8, buf);
    drv.read(40, 8, dst);
    assert.ok(
      Buffer.from(rig.mem.bytes.subarray(dst, dst + PAGE_SIZE)).equals(
        Buffer.from(rig.mem.bytes.subarray(buf, buf + PAGE_SIZE)),
      ),
    );
    rig.mem.freePages(dst, 1);
  }

  function io(words: Int32Array): number {
    return drv.passthru(1, words).status;
  }

  beforeEach(() => {
    rig = makeRig({ mdts: 5 });
    drv = new NvmeDriver(rig.pci, rig.mem, { ioQueues: 2, maxTransferBytes: 64 << 10 });
    buf = rig.mem.allocPages(32);
  });
  afterEach(() => rig.dispose());

  it('PRP outside the owner memory → Data Transfer Error (a counted DMA fault), then honest I/O works', () => {
    const faults = rig.iommu.faults();
    assert.equal(io(cmd(NvmOpcode.READ, rig.mem.size, 0, 0)), NvmeStatus.DATA_TRANSFER_ERROR);
    assert.equal(io(cmd(NvmOpcode.WRITE, 2 ** 52, 0, 0)), NvmeStatus.DATA_TRANSFER_ERROR);
    assert.equal(io(cmd(NvmOpcode.WRITE, buf, rig.mem.size, 0, 0, 15)), NvmeStatus.DATA_TRANSFER_ERROR, 'bad PRP2');
    assert.ok(rig.iommu.faults() > faults, 'the IOMMU refused the DMA');
    assert.ok(rig.dev.metrics().dmaFaults >= 2);
    honest(1);
  });

  it('misaligned PRPs → PRP Offset Invalid (PRP1 not dword aligned, PRP2 / list entries not page aligned)', () => {
    assert.equal(io(cmd(NvmOpcode.READ, buf + 2, 0, 0)), NvmeStatus.PRP_OFFSET_INVALID);
    assert.equal(io(cmd(NvmOpcode.READ, buf, buf + PAGE_SIZE + 8, 0, 0, 15)), NvmeStatus.PRP_OFFSET_INVALID);
    const list = rig.mem.allocPages(1);
    setEntry(rig, list, 0, buf + PAGE_SIZE);
    setEntry(rig, list, 1, buf + 2 * PAGE_SIZE + 512);
    assert.equal(io(cmd(NvmOpcode.READ, buf, list, 0, 0, 23)), NvmeStatus.PRP_OFFSET_INVALID, 'list entry offset');
    assert.equal(io(cmd(NvmOpcode.READ, buf, list + 4, 0, 0, 23)), NvmeStatus.PRP_OFFSET_INVALID, 'list not qword');
    setEntry(rig, list, 1, rig.mem.size + PAGE_SIZE);
    assert.equal(io(cmd(NvmOpcode.READ, buf, list, 0, 0, 23)), NvmeStatus.DATA_TRANSFER_ERROR, 'list entry outside');
    assert.equal(io(cmd(NvmOpcode.READ, buf, rig.mem.size, 0, 0, 23)), NvmeStatus.DATA_TRANSFER_ERROR, 'list outside');
    honest(2);
  });

  it('a chained PRP list (list page offset 4080: 1 data entry + a pointer) is walked across pages', () => {
    const pages = rig.mem.allocPages(2);
    const first = pages + PAGE_SIZE - 16;
    const second = rig.mem.allocPages(1);
    // 4 pages of data: PRP1 = page 0, list: [page 1, → second], second: [page 2, page 3].
    setEntry(rig, first, 0, buf + PAGE_SIZE);
    setEntry(rig, first, 1, second);
    setEntry(rig, second, 0, buf + 2 * PAGE_SIZE);
    setEntry(rig, second, 1, buf + 3 * PAGE_SIZE);
    fillPattern(rig.mem.bytes, buf, 4 * PAGE_SIZE, 9);
    assert.equal(io(cmd(NvmOpcode.WRITE, buf, first, 100, 0, 31)), NvmeStatus.SUCCESS);
    const onDisk = fs.readFileSync(rig.state.media.path).subarray(100 * 512, 100 * 512 + 4 * PAGE_SIZE);
    assert.ok(onDisk.equals(Buffer.from(rig.mem.bytes.subarray(buf, buf + 4 * PAGE_SIZE))));
    setEntry(rig, first, 1, second + 8);
    assert.equal(
      io(cmd(NvmOpcode.WRITE, buf, first, 100, 0, 31)),
      NvmeStatus.PRP_OFFSET_INVALID,
      'chain pointer offset',
    );
    honest(3);
  });

  it('LBA ranges are checked overflow-safe: near 2^64, near 2^53, and one block past the end → LBA Out of Range', () => {
    const cap = drv.identity.capacityBlocks;
    assert.equal(io(cmd(NvmOpcode.READ, buf, 0, -1, -1, 1)), NvmeStatus.LBA_OUT_OF_RANGE, 'SLBA = 2^64 − 1');
    assert.equal(io(cmd(NvmOpcode.READ, buf, 0, -2, -1, 0xffff)), NvmeStatus.LBA_OUT_OF_RANGE, 'wraps past 2^64');
    assert.equal(io(cmd(NvmOpcode.READ, buf, 0, -1, 0x1fffff, 0)), NvmeStatus.LBA_OUT_OF_RANGE, 'just below 2^53');
    assert.equal(io(cmd(NvmOpcode.WRITE, buf, 0, cap - 1, 0, 1)), NvmeStatus.LBA_OUT_OF_RANGE, 'last block + 1');
    assert.equal(io(cmd(NvmOpcode.WRITE, buf, 0, cap - 1, 0, 0)), NvmeStatus.SUCCESS, 'the last block itself');
    assert.equal(rig.dev.metrics().errors, 4);
    honest(4);
  });

  it('unknown opcodes → Invalid Opcode, bad NSID → Invalid Namespace, FUSE/SGL/over-MDTS → Invalid Field', () => {
    assert.equal(io(cmd(0x7f, buf, 0, 0)), NvmeStatus.INVALID_OPCODE);
    assert.equal(drv.passthru(0, cmd(0x7f, 0, 0, 0)).status, NvmeStatus.INVALID_OPCODE, 'admin');
    assert.equal(io(cmd(NvmOpcode.READ, buf, 0, 0, 0, 0, 2)), NvmeStatus.INVALID_NAMESPACE);
    assert.equal(io(cmd(NvmOpcode.FLUSH, 0, 0, 0, 0, 0, 0)), NvmeStatus.INVALID_NAMESPACE);
    const fused = cmd(NvmOpcode.READ, buf, 0, 0);
    fused[SqeWord.CDW0] |= 1 << 8;
    assert.equal(io(fused), NvmeStatus.INVALID_FIELD);
    const sgl = cmd(NvmOpcode.READ, buf, 0, 0);
    sgl[SqeWord.CDW0] |= 1 << 14;
    assert.equal(io(sgl), NvmeStatus.INVALID_FIELD);
    // MDTS 5: 128 KiB = 256 blocks at most.
    assert.equal(io(cmd(NvmOpcode.READ, buf, 0, 0, 0, 256)), NvmeStatus.INVALID_FIELD);
    honest(5);
  });

  it('bad queue ids and sizes on create/delete → the command-specific status; the admin queue keeps going', () => {
    const page = rig.mem.allocPages(1);
    const admin = (opc: number, prp1: number, cdw10: number, cdw11: number) =>
      drv.passthru(0, cmd(opc, prp1, 0, cdw10, cdw11, 0, 0)).status;
    const size = (entries: number, qid: number) => ((entries - 1) << QueueCdw.HIGH_SHIFT) | qid;
    assert.equal(admin(AdminOpcode.CREATE_IO_CQ, page, size(4, 0), 1), NvmeStatus.INVALID_QUEUE_ID, 'qid 0');
    assert.equal(admin(AdminOpcode.CREATE_IO_CQ, page, size(4, 17), 1), NvmeStatus.INVALID_QUEUE_ID, 'qid > max');
    assert.equal(admin(AdminOpcode.CREATE_IO_CQ, page, size(4, 1), 1), NvmeStatus.INVALID_QUEUE_ID, 'in use');
    assert.equal(admin(AdminOpcode.CREATE_IO_CQ, page, size(4, 3), 1), NvmeStatus.INVALID_QUEUE_ID, '> allocated (2)');
    assert.equal(admin(AdminOpcode.SET_FEATURES, 0, 0x07, 3 | (3 << 16)), NvmeStatus.SUCCESS, 'allocate 4 pairs');
    assert.equal(admin(AdminOpcode.CREATE_IO_CQ, page, size(1, 3), 1), NvmeStatus.INVALID_QUEUE_SIZE, '1 entry');
    assert.equal(admin(AdminOpcode.CREATE_IO_CQ, page, size(8192, 3), 1), NvmeStatus.INVALID_QUEUE_SIZE, '> MQES');
    assert.equal(admin(AdminOpcode.CREATE_IO_CQ, page, size(4, 3), 0), NvmeStatus.INVALID_FIELD, 'not contiguous');
    assert.equal(admin(AdminOpcode.CREATE_IO_CQ, page + 64, size(4, 3), 1), NvmeStatus.PRP_OFFSET_INVALID);
    assert.equal(admin(AdminOpcode.CREATE_IO_CQ, rig.mem.size, size(4, 3), 1), NvmeStatus.DATA_TRANSFER_ERROR);
    const sqArgs = 1 | (9 << QueueCdw.HIGH_SHIFT);
    assert.equal(admin(AdminOpcode.CREATE_IO_SQ, page, size(4, 3), sqArgs), NvmeStatus.COMPLETION_QUEUE_INVALID);
    assert.equal(admin(AdminOpcode.DELETE_IO_SQ, 0, 9, 0), NvmeStatus.INVALID_QUEUE_ID);
    assert.equal(admin(AdminOpcode.DELETE_IO_SQ, 0, 0, 0), NvmeStatus.INVALID_QUEUE_ID, 'the admin SQ');
    assert.equal(admin(AdminOpcode.DELETE_IO_CQ, 0, 1, 0), NvmeStatus.INVALID_QUEUE_DELETION, 'SQ 1 still posts');
    assert.equal(admin(AdminOpcode.IDENTIFY, page, 0x55, 0), NvmeStatus.INVALID_FIELD, 'unknown CNS');
    assert.equal(admin(AdminOpcode.CREATE_IO_CQ, page, size(4, 3), 1), NvmeStatus.SUCCESS, 'an honest create');
    honest(6);
  });

  it('doorbells beyond the queue size or for a missing queue are dropped and counted, never executed', () => {
    const bar = rig.pci.bars[0];
    const before = rig.dev.metrics();
    bar.write32(sqTailDoorbell(1, 0), 64);
    bar.write32(sqTailDoorbell(1, 0), 1000);
    bar.write32(sqTailDoorbell(1, 0), -1);
    bar.write32(cqHeadDoorbell(1, 0), 64);
    bar.write32(sqTailDoorbell(9, 0), 1);
    bar.write32(sqTailDoorbell(16, 0) + 8, 1);
    const after = rig.dev.metrics();
    assert.equal(after.badDoorbells - before.badDoorbells, 6);
    assert.equal(after.commands, before.commands, 'nothing ran');
    assert.throws(() => bar.write32(bar.size, 1), { code: 'PV_ERR_OUT_OF_BOUNDS' });
    honest(7);
  });
});
