/**
 * Hostile register values: each completes with the documented error status (never a throw in
 * the device, never a write outside device memory), the error counters move, and the device
 * keeps serving the next honest operation.
 */

import assert from 'node:assert/strict';
import { AccelDriver } from '../../../../drivers/accel/AccelDriver.js';
import {
  ACCEL_ID,
  AccelDmaDir,
  AccelKernel,
  AccelReg,
  AccelStatus,
  accelStatusName,
  fnv1a32,
} from '../../../../protocol/accel/AccelRegs.js';
import type { GuestPhysAddr } from '../../../../protocol/Types.js';
import { type AccelRig, makeAccelRig, pattern } from './helpers/AccelRig.js';

const MEM = 4 << 20;
const U32_MAX = 0xffff_ffff;

describe('accel hostile registers: every driver-controlled field is validated in the device', () => {
  let rig: AccelRig;
  let drv: AccelDriver;
  let buf: GuestPhysAddr;
  const honest = pattern(8192, 11);

  beforeEach(() => {
    rig = makeAccelRig({ devBytes: MEM });
    drv = new AccelDriver(rig.accelPci);
    buf = rig.mem.allocPages(4);
    rig.mem.write(buf, honest);
  });
  afterEach(() => rig.dispose());

  /** The device still works: an honest upload and checksum give the reference value. */
  function stillServes(): void {
    drv.copyToDevice(buf, 12288, honest.length);
    assert.equal(drv.checksum(12288, honest.length).fnv1a, fnv1a32(honest));
  }

  const dmaCases: Array<[string, number, number, number, number, AccelStatus]> = [
    ['length 0', 0, 0, 0, AccelDmaDir.TO_DEVICE, AccelStatus.BAD_LENGTH],
    ['length 2^32 − 1', 0, 0, U32_MAX, AccelDmaDir.TO_DEVICE, AccelStatus.BAD_LENGTH],
    ['length above MAX_XFER', 0, 0, MEM + 4096, AccelDmaDir.TO_DEVICE, AccelStatus.BAD_LENGTH],
    ['direction 2', 0, 0, 4096, 2, AccelStatus.BAD_ARG],
    ['device range ending past memory', 0, MEM - 4, 8, AccelDmaDir.TO_DEVICE, AccelStatus.BAD_RANGE],
    [
      'device offset near 2^32 whose end wraps below 2^32',
      0,
      0xffff_f000,
      0x2000,
      AccelDmaDir.FROM_DEVICE,
      AccelStatus.BAD_RANGE,
    ],
    ['device offset 2^32 − 1', 0, U32_MAX, 1, AccelDmaDir.TO_DEVICE, AccelStatus.BAD_RANGE],
    ['host address outside the owner memory', 64 << 20, 0, 4096, AccelDmaDir.TO_DEVICE, AccelStatus.DMA_FAULT],
    ['host address above 2^53', 2 ** 53 + 4096, 0, 4096, AccelDmaDir.FROM_DEVICE, AccelStatus.DMA_FAULT],
  ];
  for (const [what, host, dev, len, dir, want] of dmaCases) {
    it(`DMA with ${what} → ${accelStatusName(want)}, nothing moved, the device keeps working`, () => {
      const before = rig.accel.ctx.mem.slice(0, 16);
      const st = drv.dmaRaw(host, dev, len, dir);
      assert.equal(st, want);
      assert.deepEqual(rig.accel.ctx.mem.subarray(0, 16), before);
      assert.equal(rig.accel.metrics().errors, 1);
      stillServes();
    });
  }

  it('an IOMMU refusal counts a DMA fault in the device and in the IOMMU context', () => {
    const faults = rig.accelIommu.faults();
    assert.equal(drv.dmaRaw(rig.mem.size - 4096, 0, 8192, AccelDmaDir.TO_DEVICE), AccelStatus.DMA_FAULT);
    assert.equal(rig.accel.metrics().dmaFaults, 1);
    assert.ok(rig.accelIommu.faults() > faults);
    assert.throws(() => drv.copyToDevice((rig.mem.size - 4096) as GuestPhysAddr, 0, 8192), {
      code: 'PV_ERR_OUT_OF_BOUNDS',
    });
    stillServes();
  });

  const kernelCases: Array<[string, number, number[], AccelStatus]> = [
    ['unknown kernel 0', 0, [], AccelStatus.UNKNOWN_KERNEL],
    ['unknown kernel 4', 4, [], AccelStatus.UNKNOWN_KERNEL],
    ['unknown kernel −1', -1, [], AccelStatus.UNKNOWN_KERNEL],
    ['CHECKSUM length 2^32 − 1', AccelKernel.CHECKSUM, [0, U32_MAX], AccelStatus.BAD_LENGTH],
    ['CHECKSUM range near 2^32', AccelKernel.CHECKSUM, [0xffff_fff0, 0x20], AccelStatus.BAD_RANGE],
    ['CHECKSUM range past memory', AccelKernel.CHECKSUM, [MEM - 8, 16], AccelStatus.BAD_RANGE],
    ['VECTOR_ADD n = 0', AccelKernel.VECTOR_ADD, [0, 64, 128, 0], AccelStatus.BAD_LENGTH],
    [
      'VECTOR_ADD n = 2^30 (n × 4 wraps to 0 in 32 bits)',
      AccelKernel.VECTOR_ADD,
      [0, 0, 0, 2 ** 30],
      AccelStatus.BAD_LENGTH,
    ],
    ['VECTOR_ADD misaligned input', AccelKernel.VECTOR_ADD, [2, 64, 128, 4], AccelStatus.BAD_ALIGNMENT],
    ['VECTOR_ADD output past memory', AccelKernel.VECTOR_ADD, [0, 64, MEM - 8, 4], AccelStatus.BAD_RANGE],
    ['MATMUL_F32 n = 65', AccelKernel.MATMUL_F32, [0, 65536, 131072, 65], AccelStatus.BAD_ARG],
    ['MATMUL_F32 n = 0', AccelKernel.MATMUL_F32, [0, 65536, 131072, 0], AccelStatus.BAD_ARG],
    ['MATMUL_F32 n = 2^32 − 1', AccelKernel.MATMUL_F32, [0, 0, 0, U32_MAX], AccelStatus.BAD_ARG],
    ['MATMUL_F32 b near 2^32', AccelKernel.MATMUL_F32, [0, 0xffff_fff0, 0, 2], AccelStatus.BAD_RANGE],
  ];
  for (const [what, id, args, want] of kernelCases) {
    it(`launch with ${what} → ${accelStatusName(want)}; the device keeps working`, () => {
      const r = drv.launchRaw(id, args);
      assert.equal(r.status, want);
      assert.equal(rig.accel.metrics().errors, 1);
      stillServes();
    });
  }

  it('the driver turns statuses into typed errors: unknown kernel → PV_ERR_BAD_OP, bad range → PV_ERR_OUT_OF_BOUNDS', () => {
    assert.throws(() => drv.launch(9 as AccelKernel, []), { code: 'PV_ERR_BAD_OP' });
    assert.throws(() => drv.checksum(MEM, 1), { code: 'PV_ERR_OUT_OF_BOUNDS' });
    assert.throws(() => drv.vectorAdd(1, 0, 0, 1), { code: 'PV_ERR_BAD_ALIGNMENT' });
    assert.throws(() => drv.matmul(0, 0, 0, 100), { code: 'PV_ERR_INVALID_ARG' });
    stillServes();
  });

  it('read-only registers drop writes; BAR accesses outside the BAR or misaligned throw', () => {
    const bar = rig.accelPci.bars[0];
    bar.write32(AccelReg.ID, 0);
    bar.write32(AccelReg.MEM_BYTES, 1);
    bar.write32(AccelReg.DMA_DONE, 1000);
    assert.equal(bar.read32(AccelReg.ID) >>> 0, ACCEL_ID);
    assert.equal(bar.read32(AccelReg.MEM_BYTES), MEM);
    assert.equal(bar.read32(AccelReg.DMA_DONE), 0);
    assert.throws(() => bar.read32(4096), { code: 'PV_ERR_OUT_OF_BOUNDS' });
    assert.throws(() => bar.write32(-4, 0), { code: 'PV_ERR_OUT_OF_BOUNDS' });
    assert.throws(() => bar.write32(2, 0), { code: 'PV_ERR_BAD_ALIGNMENT' });
    assert.throws(() => rig.accelPci.bars[1].read32(MEM), { code: 'PV_ERR_OUT_OF_BOUNDS' });
    stillServes();
  });

  it('a function-level reset idles the engines and scrubs device memory for the next owner', () => {
    stillServes();
    assert.notEqual(rig.accel.ctx.mem[12288 + 1], 0);
    rig.accel.functionReset();
    assert.ok(
      rig.accel.ctx.mem.every((b) => b === 0),
      'no byte of the old owner survives',
    );
    const bar = rig.accelPci.bars[0];
    assert.equal(bar.read32(AccelReg.KERNEL_STATUS), AccelStatus.IDLE);
    assert.equal(bar.read32(AccelReg.RESULT0), 0);
    stillServes();
  });
});
