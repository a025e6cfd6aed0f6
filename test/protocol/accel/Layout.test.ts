import assert from 'node:assert/strict';
import {
  ACCEL_BAR0_BYTES,
  ACCEL_KERNEL_ARGS,
  AccelKernel,
  AccelReg,
  AccelStatus,
  accelStatusName,
  crc32,
  fnv1a32,
  kernelArgReg,
} from '../../../protocol/accel/AccelRegs.js';

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('accel layout: BAR 0 registers sit at the documented offsets', () => {
  it('the offset table of AccelRegs.ts: identity, DMA engine at 0x40, kernel interface at 0x80', () => {
    const table: Array<[number, number]> = [
      [AccelReg.ID, 0x00],
      [AccelReg.VERSION, 0x04],
      [AccelReg.MEM_BYTES, 0x08],
      [AccelReg.MAX_XFER, 0x0c],
      [AccelReg.MAX_MATRIX, 0x10],
      [AccelReg.RESET, 0x14],
      [AccelReg.DMA_HOST_LO, 0x40],
      [AccelReg.DMA_HOST_HI, 0x44],
      [AccelReg.DMA_DEV, 0x48],
      [AccelReg.DMA_LEN, 0x4c],
      [AccelReg.DMA_DIR, 0x50],
      [AccelReg.DMA_DOORBELL, 0x54],
      [AccelReg.DMA_STATUS, 0x58],
      [AccelReg.DMA_DONE, 0x5c],
      [AccelReg.KERNEL_ID, 0x80],
      [AccelReg.KERNEL_ARG0, 0x84],
      [AccelReg.KERNEL_DOORBELL, 0xa4],
      [AccelReg.KERNEL_STATUS, 0xa8],
      [AccelReg.KERNEL_DONE, 0xac],
      [AccelReg.RESULT0, 0xb0],
      [AccelReg.RESULT1, 0xb4],
    ];
    for (const [got, want] of table) assert.equal(got, want);
  });

  it('every register is 4-aligned, inside BAR 0, and no two share a word (arguments included)', () => {
    const args = Array.from({ length: ACCEL_KERNEL_ARGS }, (_, i) => kernelArgReg(i));
    assert.equal(
      kernelArgReg(ACCEL_KERNEL_ARGS - 1) + 4,
      AccelReg.KERNEL_DOORBELL,
      'the arguments end at the doorbell',
    );
    const all = [
      AccelReg.ID,
      AccelReg.VERSION,
      AccelReg.MEM_BYTES,
      AccelReg.MAX_XFER,
      AccelReg.MAX_MATRIX,
      AccelReg.RESET,
      AccelReg.DMA_HOST_LO,
      AccelReg.DMA_HOST_HI,
      AccelReg.DMA_DEV,
      AccelReg.DMA_LEN,
      AccelReg.DMA_DIR,
      AccelReg.DMA_DOORBELL,
      AccelReg.DMA_STATUS,
      AccelReg.DMA_DONE,
      AccelReg.KERNEL_ID,
      ...args,
      AccelReg.KERNEL_DOORBELL,
      AccelReg.KERNEL_STATUS,
      AccelReg.KERNEL_DONE,
      AccelReg.RESULT0,
      AccelReg.RESULT1,
    ];
    assert.equal(new Set(all).size, all.length);
    for (const r of all) {
      assert.equal(r % 4, 0);
      assert.ok(r + 4 <= ACCEL_BAR0_BYTES);
    }
  });

  it('kernel ids and statuses are the documented numbers; every status has a name', () => {
    assert.deepEqual([AccelKernel.CHECKSUM, AccelKernel.VECTOR_ADD, AccelKernel.MATMUL_F32], [1, 2, 3]);
    for (let s = AccelStatus.IDLE; s <= AccelStatus.BAD_ARG; s++) assert.doesNotMatch(accelStatusName(s), /UNKNOWN\(/);
    assert.equal(accelStatusName(99), 'UNKNOWN(99)');
  });
});

describe('accel checksum references: FNV-1a 32 and CRC-32 match their published test vectors', () => {
  it('FNV-1a 32: "" → 0x811c9dc5, "a" → 0xe40c292c, "foobar" → 0xbf9cf968', () => {
    assert.equal(fnv1a32(text('')), 0x811c9dc5);
    assert.equal(fnv1a32(text('a')), 0xe40c292c);
    assert.equal(fnv1a32(text('foobar')), 0xbf9cf968);
  });

  it('CRC-32 (IEEE): "123456789" → 0xcbf43926; a sub-range equals the checksum of its copy', () => {
    assert.equal(crc32(text('123456789')), 0xcbf43926);
    const b = text('xx123456789yy');
    assert.equal(crc32(b, 2, 9), 0xcbf43926);
    assert.equal(fnv1a32(b, 2, 9), fnv1a32(text('123456789')));
  });
});
