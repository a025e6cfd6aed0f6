/**
 * Descriptor-chain rules the device polices (VIRTIO 1.2 §2.7.5, reference §6.2 item 8): each
 * test builds a chain the way a (hostile) driver would, with DataView from the spec
 * (fuzz/virtq/GuestQueue.ts), and expects the exact typed refusal — or the exact iovecs.
 */

import assert from 'node:assert/strict';
import { DescChain, IovecList } from '../../../backend/virtio/DescChain.js';
import { newTranslation } from '../../../backend/virtio/GuestMemoryMap.js';
import { GuestQueue } from '../../../fuzz/virtq/GuestQueue.js';
import { GuestRam } from '../../../fuzz/virtq/GuestRam.js';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../../protocol/virtio/SplitRing.js';

const N = VIRTQ_DESC_F_NEXT;
const W = VIRTQ_DESC_F_WRITE;
const I = VIRTQ_DESC_F_INDIRECT;
/** Writable RAM [0, 64 KiB) at backing 0, a hole, read-only [1 MiB, +4 KiB) at backing 0x11000, a hole. */
const RO = 0x100000;

function setup(qs: number, indirect = true): { q: GuestQueue; chain: DescChain; iov: IovecList; ram: GuestRam } {
  const ram = new GuestRam(0x13000, [
    { gpa: 0, size: 0x10000, offset: 0 },
    { gpa: RO, size: 0x1000, offset: 0x11000, readOnly: true },
  ]);
  const q = new GuestQueue(ram, qs, 0);
  q.init();
  const map = ram.map();
  const t = newTranslation();
  map.translate(q.addrs.desc, 16 * qs, false, t);
  return { q, chain: new DescChain(map, qs, t, indirect), iov: new IovecList(qs), ram };
}

function refuses(fn: () => void, code: string): void {
  assert.throws(fn, (e: Error & { code?: string }) => {
    assert.equal(e.name, 'VirtioError');
    assert.equal(e.code, code, e.message);
    return true;
  });
}

describe('DescChain: a well-formed chain becomes readable-then-writable iovecs', () => {
  it('walks NEXT links and reports segments and totals', () => {
    const { q, chain, iov } = setup(8);
    q.setDesc(3, { addr: 0x4000, len: 16, flags: N, next: 5 });
    q.setDesc(5, { addr: RO + 0x10, len: 100, flags: N, next: 0 });
    q.setDesc(0, { addr: 0x5000, len: 64, flags: W, next: 7 });
    chain.walk(3, iov);
    assert.deepEqual([iov.readableCount, iov.writableCount, iov.readableBytes, iov.writableBytes], [2, 1, 116, 64]);
    assert.deepEqual([iov.gpa(0), iov.gpa(1), iov.gpa(2)], [0x4000, RO + 0x10, 0x5000]);
  });

  it('copies readable bytes out and writes only into the writable part, stopping at its total', () => {
    const { q, chain, iov, ram } = setup(4);
    ram.bytes(0x4000, 8).set([1, 2, 3, 4, 5, 6, 7, 8]);
    q.setDesc(0, { addr: 0x4000, len: 5, flags: N, next: 1 });
    q.setDesc(1, { addr: 0x4005, len: 3, flags: N, next: 2 });
    q.setDesc(2, { addr: 0x5000, len: 2, flags: N | W, next: 3 });
    q.setDesc(3, { addr: 0x6000, len: 4, flags: W, next: 0 });
    chain.walk(0, iov);
    const got = new Uint8Array(8);
    assert.equal(iov.read(3, got, 0, 8), 5);
    assert.deepEqual([...got.subarray(0, 5)], [4, 5, 6, 7, 8]);
    assert.equal(iov.write(0, Uint8Array.from([9, 9, 9, 9, 9, 9, 9, 9]), 0, 8), 6);
    assert.deepEqual([...ram.bytes(0x5000, 3), ...ram.bytes(0x6000, 5)], [9, 9, 0, 9, 9, 9, 9, 0]);
    assert.deepEqual([...ram.bytes(0x4000, 8)], [1, 2, 3, 4, 5, 6, 7, 8], 'readable bytes untouched');
  });
});

describe('DescChain: structure rules', () => {
  it('a descriptor loop (next pointing back) is refused by the TTL (PV_ERR_VIRTQ_LOOP)', () => {
    const { q, chain, iov } = setup(8);
    q.setDesc(0, { addr: 0x4000, len: 1, flags: N, next: 1 });
    q.setDesc(1, { addr: 0x4000, len: 1, flags: N, next: 0 });
    refuses(() => chain.walk(0, iov), 'PV_ERR_VIRTQ_LOOP');
  });

  it('a chain of exactly QS descriptors passes, one longer than QS is refused', () => {
    const { q, chain, iov } = setup(8);
    for (let i = 0; i < 8; i++) q.setDesc(i, { addr: 0x4000, len: 1, flags: i < 7 ? N : 0, next: i + 1 });
    chain.walk(0, iov);
    assert.equal(iov.readableCount, 8);
    q.setDesc(7, { addr: 0x4000, len: 1, flags: N, next: 0 });
    refuses(() => chain.walk(0, iov), 'PV_ERR_VIRTQ_LOOP');
  });

  it('next ≥ QS and head ≥ QS are refused (PV_ERR_VIRTQ_BAD_DESC)', () => {
    const { q, chain, iov } = setup(8);
    q.setDesc(0, { addr: 0x4000, len: 1, flags: N, next: 8 });
    refuses(() => chain.walk(0, iov), 'PV_ERR_VIRTQ_BAD_DESC');
    refuses(() => chain.walk(8, iov), 'PV_ERR_VIRTQ_BAD_DESC');
    refuses(() => chain.walk(0xffff, iov), 'PV_ERR_VIRTQ_BAD_DESC');
  });

  it('a readable descriptor after a writable one is refused (PV_ERR_VIRTQ_DIRECTION)', () => {
    const { q, chain, iov } = setup(8);
    q.setDesc(0, { addr: 0x4000, len: 4, flags: N | W, next: 1 });
    q.setDesc(1, { addr: 0x5000, len: 4, flags: 0, next: 0 });
    refuses(() => chain.walk(0, iov), 'PV_ERR_VIRTQ_DIRECTION');
  });
});

describe('DescChain: indirect tables', () => {
  it('an indirect table is walked with its own TTL; the WRITE flag on the pointer is ignored', () => {
    const { q, chain, iov } = setup(8);
    q.setDesc(2, { addr: 0x3000, len: 16, flags: N, next: 6 });
    q.setDesc(6, { addr: 0x8000, len: 48, flags: I | W, next: 0 });
    q.setDesc(0, { addr: 0x4000, len: 10, flags: N, next: 2 }, 0x8000);
    q.setDesc(2, { addr: 0x5000, len: 20, flags: W | N, next: 1 }, 0x8000);
    q.setDesc(1, { addr: 0x6000, len: 30, flags: W, next: 0 }, 0x8000);
    chain.walk(2, iov);
    assert.deepEqual([iov.readableCount, iov.writableCount, iov.readableBytes, iov.writableBytes], [2, 2, 26, 50]);
  });

  it('a loop inside an indirect table is refused by the table TTL; next ≥ its entries is refused', () => {
    const { q, chain, iov } = setup(8);
    q.setDesc(0, { addr: 0x8000, len: 32, flags: I, next: 0 });
    q.setDesc(0, { addr: 0x4000, len: 1, flags: N, next: 1 }, 0x8000);
    q.setDesc(1, { addr: 0x4000, len: 1, flags: N, next: 0 }, 0x8000);
    refuses(() => chain.walk(0, iov), 'PV_ERR_VIRTQ_LOOP');
    q.setDesc(1, { addr: 0x4000, len: 1, flags: N, next: 2 }, 0x8000);
    refuses(() => chain.walk(0, iov), 'PV_ERR_VIRTQ_BAD_DESC');
  });

  it('INDIRECT with NEXT, nested indirect, and indirect when not negotiated are refused (BAD_DESC)', () => {
    const { q, chain, iov } = setup(8);
    q.setDesc(0, { addr: 0x8000, len: 32, flags: I | N, next: 1 });
    refuses(() => chain.walk(0, iov), 'PV_ERR_VIRTQ_BAD_DESC');
    q.setDesc(0, { addr: 0x8000, len: 32, flags: I, next: 0 });
    q.setDesc(0, { addr: 0x9000, len: 16, flags: I, next: 0 }, 0x8000);
    refuses(() => chain.walk(0, iov), 'PV_ERR_VIRTQ_BAD_DESC');
    const off = setup(8, false);
    off.q.setDesc(0, { addr: 0x8000, len: 16, flags: I, next: 0 });
    off.q.setDesc(0, { addr: 0x4000, len: 1, flags: 0, next: 0 }, 0x8000);
    refuses(() => off.chain.walk(0, off.iov), 'PV_ERR_VIRTQ_BAD_DESC');
  });

  it('an indirect table of length 0, not a multiple of 16, or over 16·QS is refused; outside memory too', () => {
    const { q, chain, iov } = setup(8);
    for (const len of [0, 8, 24, 16 * 8 + 16, 0xfffffff0]) {
      q.setDesc(0, { addr: 0x8000, len, flags: I, next: 0 });
      refuses(() => chain.walk(0, iov), 'PV_ERR_VIRTQ_BAD_DESC');
    }
    for (const addr of [0xfff0, 0x10000, RO + 0x1000 - 16 * 7, 2 ** 52]) {
      q.setDesc(0, { addr, len: 16 * 8, flags: I, next: 0 });
      refuses(() => chain.walk(0, iov), 'PV_ERR_VIRTQ_BAD_ADDR');
    }
  });
});

describe('DescChain: addresses and lengths', () => {
  it('an address near 2^64 or past 2^53 is refused without rounding (BAD_ADDR)', () => {
    const { q, chain, iov } = setup(4);
    for (const [addr, hi] of [
      [0xffffffff, 0xffffffff],
      [0, 0x200000],
      [0xffffffff, 0x1fffff],
    ]) {
      q.setDesc(0, { addr, hi, len: 0xffffffff, flags: 0, next: 0 });
      refuses(() => chain.walk(0, iov), 'PV_ERR_VIRTQ_BAD_ADDR');
    }
  });

  it('a buffer straddling the end of guest memory, or in a hole, is refused (BAD_ADDR)', () => {
    const { q, chain, iov } = setup(4);
    for (const [addr, len] of [
      [0xfff0, 0x11],
      [0x10000, 1],
      [RO + 0xfff, 2],
      [0x1000, 0xffffffff],
    ]) {
      q.setDesc(0, { addr, len, flags: 0, next: 0 });
      refuses(() => chain.walk(0, iov), 'PV_ERR_VIRTQ_BAD_ADDR');
    }
  });

  it('a device-writable buffer in a read-only region is refused; readable there is fine', () => {
    const { q, chain, iov } = setup(4);
    q.setDesc(0, { addr: RO, len: 16, flags: W, next: 0 });
    refuses(() => chain.walk(0, iov), 'PV_ERR_VIRTQ_BAD_ADDR');
    q.setDesc(0, { addr: RO, len: 16, flags: 0, next: 0 });
    chain.walk(0, iov);
    assert.equal(iov.readableBytes, 16);
  });

  it('a chain of exactly 2^32 bytes passes; one byte more is refused (PV_ERR_VIRTQ_TOO_LONG)', () => {
    // QS 32768 descriptors of 2^17 bytes, all over one 2^17 + 1 byte buffer: 2^15 · 2^17 = 2^32.
    const qs = 32768;
    const buf = GuestQueue.bytes(qs);
    const ram = GuestRam.flat(buf + 2 ** 17 + 16);
    const q = new GuestQueue(ram, qs, 0);
    const map = ram.map();
    const t = newTranslation();
    map.translate(q.addrs.desc, 16 * qs, false, t);
    const chain = new DescChain(map, qs, t, false);
    const iov = new IovecList(qs);
    for (let i = 0; i < qs; i++) q.setDesc(i, { addr: buf, len: 2 ** 17, flags: i < qs - 1 ? N : 0, next: i + 1 });
    chain.walk(0, iov);
    assert.equal(iov.readableBytes, 2 ** 32);
    q.setDesc(qs - 1, { addr: buf, len: 2 ** 17 + 1, flags: 0, next: 0 });
    refuses(() => chain.walk(0, iov), 'PV_ERR_VIRTQ_TOO_LONG');
  });
});
