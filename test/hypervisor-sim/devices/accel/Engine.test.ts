/**
 * The accelerator's engines through the real driver: the DMA engine moves bytes both ways
 * through the IOMMU, and the kernels compute what a JS reference computes.
 */

import assert from 'node:assert/strict';
import { AccelDriver } from '../../../../drivers/accel/AccelDriver.js';
import { crc32, fnv1a32 } from '../../../../protocol/accel/AccelRegs.js';
import type { GuestPhysAddr } from '../../../../protocol/Types.js';
import { type AccelRig, makeAccelRig, pattern } from './helpers/AccelRig.js';

/** Row-major n × n product, each dot product in double, rounded once to f32 (as documented). */
function matmulRef(a: Float32Array, b: Float32Array, n: number): Float32Array {
  const out = new Float32Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let k = 0; k < n; k++) acc += a[i * n + k] * b[k * n + j];
      out[i * n + j] = acc;
    }
  }
  return out;
}

function f32s(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    out[i] = (x / 2 ** 31) * 8 - 4;
  }
  return out;
}

function bytesOf(f: Float32Array): Uint8Array {
  return new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
}

describe('accel engines: DMA round trip and kernels against references', () => {
  let rig: AccelRig;
  let drv: AccelDriver;

  beforeEach(() => {
    rig = makeAccelRig();
    drv = new AccelDriver(rig.accelPci);
  });
  afterEach(() => rig.dispose());

  /** Copies `bytes` into owner memory, then into device memory at `dev` through the DMA engine. */
  function upload(bytes: Uint8Array, dev: number): void {
    const gpa = rig.mem.allocPages(Math.ceil(bytes.length / 4096) + 1);
    rig.mem.write(gpa, bytes);
    drv.copyToDevice(gpa, dev, bytes.length);
  }

  it('the driver reads the identity: memory size, transfer limit, matrix limit', () => {
    assert.equal(drv.memBytes, 4 << 20);
    assert.equal(drv.maxXfer, 4 << 20);
    assert.equal(drv.maxMatrix, 64);
    assert.equal(drv.memory.size, 4 << 20);
  });

  it('DMA round trip: host → device → host over an unaligned multi-page range returns the same bytes', () => {
    const data = pattern(3 * 4096 + 123, 7);
    const src = (rig.mem.allocPages(5) + 100) as GuestPhysAddr;
    const dst = (rig.mem.allocPages(5) + 900) as GuestPhysAddr;
    rig.mem.write(src, data);
    drv.copyToDevice(src, 65536 + 3, data.length);
    assert.deepEqual(rig.accel.ctx.mem.subarray(65536 + 3, 65536 + 3 + data.length), data, 'in device memory');
    drv.copyFromDevice(65536 + 3, dst, data.length);
    assert.deepEqual(rig.mem.view(dst, data.length), data, 'back in host memory');
    const m = rig.accel.metrics();
    assert.equal(m.dmaTransfers, 2);
    assert.equal(m.bytesToDevice, data.length);
    assert.equal(m.bytesFromDevice, data.length);
    assert.equal(m.errors, 0);
  });

  it('BAR 1 is the device memory: what the DMA engine wrote reads back through BAR 1 (little-endian)', () => {
    upload(Uint8Array.of(0x78, 0x56, 0x34, 0x12), 4096);
    assert.equal(drv.memory.read32(4096), 0x12345678);
    drv.memory.write32(8192, -2);
    assert.deepEqual([...rig.accel.ctx.mem.subarray(8192, 8196)], [0xfe, 0xff, 0xff, 0xff]);
  });

  it('CHECKSUM of a known buffer: "123456789" gives CRC-32 0xcbf43926; a random MiB matches both references', () => {
    upload(new TextEncoder().encode('123456789'), 100);
    const c = drv.checksum(100, 9);
    assert.equal(c.crc32, 0xcbf43926);
    assert.equal(c.fnv1a, fnv1a32(new TextEncoder().encode('123456789')));
    const big = pattern(1 << 20, 3);
    upload(big, 1 << 20);
    assert.deepEqual(drv.checksum(1 << 20, big.length), { fnv1a: fnv1a32(big), crc32: crc32(big) });
    assert.deepEqual(drv.checksum(0, 0), { fnv1a: 0x811c9dc5, crc32: 0 }, 'an empty range is allowed');
  });

  it('VECTOR_ADD equals elementwise f32 addition, also in place (out aliases a)', () => {
    const n = 10_000;
    const a = f32s(n, 1);
    const b = f32s(n, 2);
    upload(bytesOf(a), 0);
    upload(bytesOf(b), 65536);
    drv.vectorAdd(0, 65536, 131072, n);
    const want = new Float32Array(n);
    for (let i = 0; i < n; i++) want[i] = a[i] + b[i];
    assert.deepEqual(new Float32Array(rig.accel.state.mem, 131072, n), want);
    drv.vectorAdd(0, 65536, 0, n);
    assert.deepEqual(new Float32Array(rig.accel.state.mem, 0, n), want, 'in place');
  });

  for (const n of [1, 7, 64]) {
    it(`MATMUL_F32 n=${n} equals the JS reference; downloaded through the DMA engine`, () => {
      const a = f32s(n * n, 10 + n);
      const b = f32s(n * n, 20 + n);
      upload(bytesOf(a), 0);
      upload(bytesOf(b), 32768);
      drv.matmul(0, 32768, 65536, n);
      const gpa = rig.mem.allocPages(5);
      drv.copyFromDevice(65536, gpa, n * n * 4);
      const got = new Float32Array(rig.mem.view(gpa, n * n * 4).slice().buffer);
      assert.deepEqual(got, matmulRef(a, b, n));
    });
  }

  it('MATMUL_F32 with out aliasing an input still gives a × b (the product is formed in scratch)', () => {
    const n = 16;
    const a = f32s(n * n, 5);
    const b = f32s(n * n, 6);
    upload(bytesOf(a), 0);
    upload(bytesOf(b), 4096);
    drv.matmul(0, 4096, 0, n);
    assert.deepEqual(new Float32Array(rig.accel.state.mem, 0, n * n), matmulRef(a, b, n));
  });
});
