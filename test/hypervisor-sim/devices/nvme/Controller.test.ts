import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { NvmeDriver } from '../../../../drivers/nvme/NvmeDriver.js';
import { CapHi, CcField, CstsBit, NVME_VERSION, NvmeReg, sqTailDoorbell } from '../../../../protocol/nvme/NvmeRegs.js';
import { makeRig, type NvmeRig } from './helpers/NvmeRig.js';

const CC_ON = CcField.EN | (6 << CcField.IOSQES_SHIFT) | (4 << CcField.IOCQES_SHIFT);

describe('nvme controller §3.1/§7.3: CAP, enable, reset and function-level reset', () => {
  let rig: NvmeRig;
  afterEach(() => rig?.dispose());

  it('CAP/VS describe the controller: MQES, contiguous queues, NVM command set, DSTRD, 4 KiB pages', () => {
    rig = makeRig({ maxQueueEntries: 1024, dstrd: 2 });
    const bar = rig.pci.bars[0];
    assert.equal(bar.read32(NvmeReg.VS), NVME_VERSION);
    assert.equal(bar.read32(NvmeReg.CAP_LO) & 0xffff, 1023);
    assert.equal((bar.read32(NvmeReg.CAP_LO) >>> 16) & 1, 1, 'CQR');
    assert.equal(bar.read32(NvmeReg.CAP_HI) & 0xf, 2, 'DSTRD');
    assert.ok((bar.read32(NvmeReg.CAP_HI) & CapHi.CSS_NVM) !== 0);
    bar.write32(NvmeReg.CAP_LO, 0);
    assert.equal(bar.read32(NvmeReg.CAP_LO) & 0xffff, 1023, 'CAP is read-only');
    const drv = new NvmeDriver(rig.pci, rig.mem, { ioQueues: 2 });
    drv.flush(2);
  });

  it('CC.EN 0 → 1 with a bad admin configuration sets CSTS.CFS, not RDY', () => {
    rig = makeRig();
    const bar = rig.pci.bars[0];
    const asq = rig.mem.allocPages(1);
    const acq = rig.mem.allocPages(1);
    const cases: Array<[string, number, number, number, number]> = [
      ['1-entry admin SQ', 0x001f_0000, asq, acq, CC_ON],
      ['misaligned ASQ', 0x001f_001f, asq + 64, acq, CC_ON],
      ['ACQ outside memory', 0x001f_001f, asq, rig.mem.size, CC_ON],
      ['8 KiB pages (MPS 1)', 0x001f_001f, asq, acq, CC_ON | (1 << CcField.MPS_SHIFT)],
    ];
    for (const [what, aqa, sq, cq, cc] of cases) {
      bar.write32(NvmeReg.CC, 0);
      bar.write32(NvmeReg.AQA, aqa);
      bar.write32(NvmeReg.ASQ_LO, sq);
      bar.write32(NvmeReg.ACQ_LO, cq);
      bar.write32(NvmeReg.CC, cc);
      assert.equal(bar.read32(NvmeReg.CSTS) & (CstsBit.RDY | CstsBit.CFS), CstsBit.CFS, what);
    }
    bar.write32(NvmeReg.CC, 0);
    assert.equal(bar.read32(NvmeReg.CSTS), 0, 'a reset clears CFS');
    const drv = new NvmeDriver(rig.pci, rig.mem);
    drv.flush();
  });

  it('CC.EN 1 → 0 drops every I/O queue: their doorbells are refused until a driver sets them up again', () => {
    rig = makeRig();
    const bar = rig.pci.bars[0];
    const drv = new NvmeDriver(rig.pci, rig.mem, { ioQueues: 2, timeoutMs: 200 });
    const resets = rig.dev.metrics().resets;
    bar.write32(NvmeReg.CC, 0);
    assert.equal(bar.read32(NvmeReg.CSTS) & CstsBit.RDY, 0);
    assert.equal(rig.dev.metrics().resets, resets + 1);
    const bad = rig.dev.metrics().badDoorbells;
    bar.write32(sqTailDoorbell(1, 0), 1);
    assert.equal(rig.dev.metrics().badDoorbells, bad + 1, 'the doorbell of a dropped queue is refused');
    assert.throws(() => drv.flush(), { code: 'PV_ERR_TIMEOUT' });
    const again = new NvmeDriver(rig.pci, rig.mem, { ioQueues: 2, timeoutMs: 2000 });
    again.flush(1);
    again.flush(2);
  }).timeout(20_000);

  it('function-level reset: CC, AQA, ASQ, ACQ cleared, no queue survives; the media is kept', () => {
    rig = makeRig();
    const bar = rig.pci.bars[0];
    const drv = new NvmeDriver(rig.pci, rig.mem);
    const buf = rig.mem.allocPages(1);
    rig.mem.bytes.fill(0xa5, buf, buf + 512);
    drv.write(9, 1, buf);
    rig.dev.functionReset();
    for (const r of [NvmeReg.CC, NvmeReg.CSTS, NvmeReg.AQA, NvmeReg.ASQ_LO, NvmeReg.ACQ_LO]) {
      assert.equal(bar.read32(r), 0, `register 0x${r.toString(16)}`);
    }
    assert.equal(rig.dev.enabled(), false);
    const next = new NvmeDriver(rig.pci, rig.mem);
    const dst = rig.mem.allocPages(1);
    next.read(9, 1, dst);
    assert.ok(rig.mem.bytes.subarray(dst, dst + 512).every((b) => b === 0xa5));
  });

  it('a given backing file is used and kept: data written survives a new controller on the same file', () => {
    const file = path.join(os.tmpdir(), `pvio-nvme-given-${process.pid}-${Date.now()}.img`);
    rig = makeRig({ sizeBytes: 1 << 20, backingFile: file });
    const drv = new NvmeDriver(rig.pci, rig.mem);
    const buf = rig.mem.allocPages(1);
    rig.mem.bytes.fill(0x3c, buf, buf + 512);
    drv.write(2, 1, buf);
    rig.dispose();
    rig = makeRig({ sizeBytes: 1 << 20, backingFile: file });
    const again = new NvmeDriver(rig.pci, rig.mem);
    const dst = rig.mem.allocPages(1);
    again.read(2, 1, dst);
    assert.ok(rig.mem.bytes.subarray(dst, dst + 512).every((b) => b === 0x3c));
    rig.dispose();
    assert.ok(fs.existsSync(file), 'a given file is kept on close');
    assert.equal(fs.readFileSync(file)[2 * 512], 0x3c);
    fs.rmSync(file);
  });
});
