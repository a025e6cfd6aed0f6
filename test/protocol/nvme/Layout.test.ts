import assert from 'node:assert/strict';
import {
  CQE_BYTES,
  CqeDw3,
  CqeWord,
  encodeSqe,
  IdCtrl,
  IdNs,
  NvmeStatus,
  nvmeStatusName,
  SQE_BYTES,
  SQE_WORDS,
  SqeWord,
} from '../../../protocol/nvme/NvmeCommand.js';
import { cqHeadDoorbell, NvmeReg, nvmeBarSize, sqTailDoorbell } from '../../../protocol/nvme/NvmeRegs.js';

describe('nvme layout §3.1: BAR 0 registers sit at the spec offsets', () => {
  it('CAP 0x00, VS 0x08, INTMS 0x0C, INTMC 0x10, CC 0x14, CSTS 0x1C, AQA 0x24, ASQ 0x28, ACQ 0x30', () => {
    const spec: Array<[number, number]> = [
      [NvmeReg.CAP_LO, 0x00],
      [NvmeReg.CAP_HI, 0x04],
      [NvmeReg.VS, 0x08],
      [NvmeReg.INTMS, 0x0c],
      [NvmeReg.INTMC, 0x10],
      [NvmeReg.CC, 0x14],
      [NvmeReg.CSTS, 0x1c],
      [NvmeReg.AQA, 0x24],
      [NvmeReg.ASQ_LO, 0x28],
      [NvmeReg.ASQ_HI, 0x2c],
      [NvmeReg.ACQ_LO, 0x30],
      [NvmeReg.ACQ_HI, 0x34],
      [NvmeReg.DOORBELLS, 0x1000],
    ];
    for (const [got, want] of spec) assert.equal(got, want);
  });

  for (const dstrd of [0, 1, 3]) {
    it(`doorbells are at 0x1000 + (2y + {0,1}) × (4 << DSTRD) (DSTRD ${dstrd}), inside the BAR`, () => {
      const stride = 4 << dstrd;
      for (const y of [0, 1, 7, 16]) {
        assert.equal(sqTailDoorbell(y, dstrd), 0x1000 + 2 * y * stride);
        assert.equal(cqHeadDoorbell(y, dstrd), 0x1000 + (2 * y + 1) * stride);
      }
      const size = nvmeBarSize(16, dstrd);
      assert.equal(size % 4096, 0, 'a whole number of pages');
      assert.ok(cqHeadDoorbell(16, dstrd) + 4 <= size, 'the last doorbell fits');
      assert.ok(cqHeadDoorbell(16, dstrd) + 4 > size - 4096, 'no page more than needed');
    });
  }
});

describe('nvme layout §4.2/§4.6: queue entries', () => {
  it('the 64-byte SQE: CDW0 0, NSID 4, MPTR 16, PRP1 24, PRP2 32, CDW10..15 40..60', () => {
    assert.equal(SQE_BYTES, 64);
    assert.equal(SQE_WORDS * 4, SQE_BYTES);
    const bytes: Array<[number, number]> = [
      [SqeWord.CDW0, 0],
      [SqeWord.NSID, 4],
      [SqeWord.MPTR_LO, 16],
      [SqeWord.PRP1_LO, 24],
      [SqeWord.PRP1_HI, 28],
      [SqeWord.PRP2_LO, 32],
      [SqeWord.PRP2_HI, 36],
      [SqeWord.CDW10, 40],
      [SqeWord.CDW11, 44],
      [SqeWord.CDW12, 48],
      [SqeWord.CDW15, 60],
    ];
    for (const [word, at] of bytes) assert.equal(word * 4, at);
  });

  it('the 16-byte CQE: DW0 0, SQHD/SQID at 8, CID/phase/status at 12 (P bit 16, SC 24:17, SCT 27:25)', () => {
    assert.equal(CQE_BYTES, 16);
    assert.equal(CqeWord.DW0 * 4, 0);
    assert.equal(CqeWord.DW2 * 4, 8);
    assert.equal(CqeWord.DW3 * 4, 12);
    assert.equal(CqeDw3.PHASE, 1 << 16);
    const dw3 = (0x1234 | CqeDw3.PHASE | (NvmeStatus.INVALID_QUEUE_ID << CqeDw3.STATUS_SHIFT)) >>> 0;
    assert.equal(dw3 & CqeDw3.CID_MASK, 0x1234);
    assert.equal((dw3 >>> 17) & 0xff, 0x01, 'SC');
    assert.equal((dw3 >>> 25) & 0x7, 1, 'SCT: command specific');
  });

  it('encodeSqe writes every word: opcode/CID, NSID, 64-bit PRPs split lo/hi, CDW10..12, zeros', () => {
    const w = new Int32Array(SQE_WORDS).fill(-1);
    const prp2 = 2 ** 40 + 0x3000;
    encodeSqe(w, 0, 0x02, 0xbeef, 1, 0x1_0000_1000, prp2, 7, 8, 9);
    assert.equal(w[SqeWord.CDW0] & 0xff, 0x02);
    assert.equal(w[SqeWord.CDW0] >>> 16, 0xbeef);
    assert.equal(w[SqeWord.NSID], 1);
    assert.equal(w[SqeWord.PRP1_LO] >>> 0, 0x1000);
    assert.equal(w[SqeWord.PRP1_HI], 1);
    assert.equal(w[SqeWord.PRP2_LO] >>> 0, 0x3000);
    assert.equal(w[SqeWord.PRP2_HI], 256);
    assert.deepEqual([w[SqeWord.CDW10], w[SqeWord.CDW11], w[SqeWord.CDW12]], [7, 8, 9]);
    for (const i of [2, 3, 4, 5, 13, 14, 15]) assert.equal(w[i], 0, `word ${i}`);
  });

  it('Identify offsets follow Figures 245/247 and statuses have names', () => {
    assert.deepEqual([IdCtrl.SN, IdCtrl.MN, IdCtrl.FR, IdCtrl.MDTS, IdCtrl.SQES, IdCtrl.NN], [4, 24, 64, 77, 512, 516]);
    assert.deepEqual([IdNs.NSZE, IdNs.NCAP, IdNs.NUSE, IdNs.FLBAS, IdNs.LBAF0], [0, 8, 16, 26, 128]);
    assert.equal(nvmeStatusName(NvmeStatus.LBA_OUT_OF_RANGE), 'LBA Out of Range');
    assert.equal(nvmeStatusName(0x3ff), 'status 0x3ff');
  });
});
