/**
 * The device side of a split queue (VIRTIO 1.2 §2.7, reference §6.1): attach validation, pop and
 * used publication order, the avail-index jump rule (→ broken until reset), EVENT_IDX and
 * NO_INTERRUPT, spurious kicks, and a concurrent mutator Worker rewriting the descriptor table and
 * avail ring while the device walks (XSA-155): the device's decisions stay consistent with one
 * copy, it never reaches outside guest memory and never throws anything but VirtioError.
 */

import assert from 'node:assert/strict';
import type { GuestMemoryMap } from '../../../backend/virtio/GuestMemoryMap.js';
import { SplitDevice, type SplitFeatures } from '../../../backend/virtio/SplitDevice.js';
import { Mutator } from '../../../fuzz/core/Mutator.js';
import { GuestQueue } from '../../../fuzz/virtq/GuestQueue.js';
import { GuestRam } from '../../../fuzz/virtq/GuestRam.js';
import { guestPhysAddr as g } from '../../../protocol/Types.js';
import {
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from '../../../protocol/virtio/SplitRing.js';
import { assertIovecInside, virtioCode } from './VirtioAsserts.js';

const PLAIN: SplitFeatures = { indirectDesc: false, eventIdx: false };
const EVENT_IDX: SplitFeatures = { indirectDesc: true, eventIdx: true };

const code = virtioCode;

/** One 64 KiB region; the queue at 0; a one-descriptor request/response chain per head. */
function setup(qs: number, features = PLAIN): { ram: GuestRam; q: GuestQueue; dev: SplitDevice } {
  const ram = GuestRam.flat(0x10000);
  const q = new GuestQueue(ram, qs, 0);
  q.init();
  for (let i = 0; i < qs; i++) {
    q.setDesc(i, { addr: 0x8000 + 64 * i, len: 64, flags: VIRTQ_DESC_F_WRITE, next: 0 });
  }
  const dev = new SplitDevice(ram.map(), features);
  dev.attach(q.addrs);
  return { ram, q, dev };
}

describe('SplitDevice: attach validates the queue placement (PV_ERR_VIRTQ_LAYOUT)', () => {
  const ram = new GuestRam(0x3000, [
    { gpa: 0, size: 0x1000, offset: 0 },
    { gpa: 0x1000, size: 0x1000, offset: 0x1000, readOnly: true },
  ]);
  const map = ram.map();
  const ok = { size: 8, desc: g(0), avail: g(0x200), used: g(0x400) };
  const bad: Array<[string, typeof ok]> = [
    ['QS not a power of two', { ...ok, size: 12 }],
    ['QS 0', { ...ok, size: 0 }],
    ['QS over 32768', { ...ok, size: 65536 }],
    ['descriptor table misaligned', { ...ok, desc: g(8) }],
    ['avail ring misaligned', { ...ok, avail: g(0x201) }],
    ['used ring misaligned', { ...ok, used: g(0x402) }],
    ['used ring outside memory', { ...ok, used: g(0x2000) }],
    ['used ring straddles a region boundary', { ...ok, used: g(0xff0) }],
    ['used ring in a read-only region', { ...ok, used: g(0x1000) }],
    ['used ring over the descriptor table', { ...ok, used: g(0x40) }],
    ['avail ring over the used ring', { ...ok, avail: g(0x404) }],
  ];
  for (const [what, addrs] of bad) {
    it(`refuses: ${what}`, () => {
      assert.equal(
        code(() => new SplitDevice(map, PLAIN).attach(addrs)),
        'PV_ERR_VIRTQ_LAYOUT',
      );
    });
  }
  it('accepts a readable descriptor table and avail ring in a read-only region', () => {
    new SplitDevice(map, PLAIN).attach({ size: 8, desc: g(0x1000), avail: g(0x1100), used: g(0x400) });
  });
});

describe('SplitDevice: pop and used publication', () => {
  it('a spurious kick (nothing new) pops nothing', () => {
    const { dev } = setup(4);
    const iov = dev.newIovecList();
    assert.equal(dev.pop(iov), -1);
    assert.equal(dev.pop(iov), -1);
  });

  it('pops published heads in order and publishes (id, len) before used.idx', () => {
    const { q, dev } = setup(4);
    const iov = dev.newIovecList();
    q.publish(2);
    q.publish(0);
    assert.equal(dev.pop(iov), 2);
    assert.equal(iov.writableBytes, 64);
    assert.equal(dev.pop(iov), 0);
    assert.equal(dev.pop(iov), -1);
    dev.addUsed(0, 7);
    assert.equal(q.usedIdx(), 0, 'not published before publishUsed');
    dev.addUsed(2, 64);
    dev.publishUsed();
    assert.deepEqual(q.takeUsed(), [
      { id: 0, len: 7 },
      { id: 2, len: 64 },
    ]);
  });

  it('refuses to complete a head it did not pop, twice, or with len over the writable bytes', () => {
    const { q, dev } = setup(4);
    const iov = dev.newIovecList();
    q.publish(1);
    dev.pop(iov);
    assert.throws(() => dev.addUsed(3, 0), /not a chain this queue popped/);
    assert.throws(() => dev.addUsed(1, 65), /exceeds/);
    dev.pushUsed(1, 64);
    assert.throws(() => dev.pushUsed(1, 0), /not a chain this queue popped/);
  });

  it('indices are free-running u16: 70000 chains through a QS-1 queue wrap cleanly', () => {
    const { q, dev } = setup(1);
    const iov = dev.newIovecList();
    for (let i = 0; i < 70000; i++) {
      q.publish(0);
      assert.equal(dev.pop(iov), 0);
      dev.pushUsed(0, i & 63);
    }
    assert.equal(q.usedIdx(), 70000 & 0xffff);
    assert.equal(q.takeUsed().length, 70000 & 0xffff);
  });
});

describe('SplitDevice: a hostile avail index breaks the queue until reset', () => {
  it('a jump of exactly QS is served; QS + 1 is refused (PV_ERR_VIRTQ_AVAIL_IDX) and the queue is broken', () => {
    const { q, dev } = setup(8);
    const iov = dev.newIovecList();
    q.setAvailIdx(8);
    for (let i = 0; i < 8; i++) assert.equal(dev.pop(iov), 0);
    q.setAvailIdx(8 + 9);
    assert.equal(
      code(() => dev.pop(iov)),
      'PV_ERR_VIRTQ_AVAIL_IDX',
    );
    assert.equal(dev.broken, true);
    assert.equal(dev.brokenBy, 'PV_ERR_VIRTQ_AVAIL_IDX');
    const before = q.usedIdx();
    assert.equal(
      code(() => dev.pop(iov)),
      'PV_ERR_VIRTIO_NEEDS_RESET',
    );
    assert.equal(
      code(() => dev.pushUsed(0, 0)),
      'PV_ERR_VIRTIO_NEEDS_RESET',
    );
    assert.equal(q.usedIdx(), before, 'a broken queue publishes nothing');
    dev.reset();
    q.init();
    dev.attach(q.addrs);
    q.publish(5);
    assert.equal(dev.pop(iov), 5);
  });

  it('an avail index moving backwards (a jump of 2^16 − 1) is refused the same way', () => {
    const { q, dev } = setup(8);
    q.setAvailIdx(0xffff);
    assert.equal(
      code(() => dev.pop(dev.newIovecList())),
      'PV_ERR_VIRTQ_AVAIL_IDX',
    );
  });

  it('a head ≥ QS in the avail ring is refused (BAD_DESC) and breaks the queue', () => {
    const { q, dev } = setup(8);
    q.publish(8);
    assert.equal(
      code(() => dev.pop(dev.newIovecList())),
      'PV_ERR_VIRTQ_BAD_DESC',
    );
    assert.equal(dev.brokenBy, 'PV_ERR_VIRTQ_BAD_DESC');
  });
});

describe('SplitDevice: notification suppression', () => {
  it('EVENT_IDX: asks for a kick (avail_event = last_avail) only on finding the queue empty, and interrupts only when used_event is crossed', () => {
    const { q, dev } = setup(8, EVENT_IDX);
    const iov = dev.newIovecList();
    for (let i = 0; i < 3; i++) q.publish(i);
    for (let i = 0; i < 3; i++) dev.pop(iov);
    assert.equal(q.availEvent(), 0, 'no kick wanted while chains keep coming');
    assert.equal(dev.pop(iov), -1);
    assert.equal(q.availEvent(), 3, 'empty: kick me at the next publish');
    q.setUsedEvent(1);
    assert.equal(dev.pushUsed(0, 0), false, 'used_event 1 not in [0, 1)');
    assert.equal(dev.pushUsed(1, 0), true, 'used_event 1 in [1, 2)');
    assert.equal(dev.pushUsed(2, 0), false, 'used_event 1 not in [2, 3)');
    q.setAvailFlags(VIRTQ_AVAIL_F_NO_INTERRUPT);
    q.setUsedEvent(3);
    q.publish(4);
    dev.pop(iov);
    assert.equal(dev.pushUsed(4, 0), true, 'NO_INTERRUPT is ignored once EVENT_IDX is negotiated');
  });

  it('without EVENT_IDX: interrupts unless avail.flags has NO_INTERRUPT', () => {
    const { q, dev } = setup(8);
    const iov = dev.newIovecList();
    q.publish(0);
    q.publish(1);
    dev.pop(iov);
    dev.pop(iov);
    assert.equal(dev.pushUsed(0, 0), true);
    q.setAvailFlags(VIRTQ_AVAIL_F_NO_INTERRUPT);
    assert.equal(dev.pushUsed(1, 0), false);
    assert.equal(dev.publishUsed(), false, 'nothing new to publish');
  });
});

describe('SplitDevice: a concurrent mutator rewrites the descriptor table and avail ring (XSA-155)', function () {
  this.timeout(60_000);
  let mut: Mutator | undefined;
  after(async () => mut?.stop());

  it('every decision is taken on one copy: segments inside memory, readable first, only VirtioErrors', () => {
    const qs = 16;
    // Writable RAM [0, 16 KiB) at backing 0x1000, read-only [64 KiB, +4 KiB) at 0x6000, holes around both.
    const ram = new GuestRam(0x8000, [
      { gpa: 0, size: 0x4000, offset: 0x1000 },
      { gpa: 0x10000, size: 0x1000, offset: 0x6000, readOnly: true },
    ]);
    ram.armHoles(7);
    ram.bytes(0x10000, 0x1000).fill(0xa5);
    const q = new GuestQueue(ram, qs, 0);
    const map: GuestMemoryMap = ram.map();
    const dev = new SplitDevice(map, EVENT_IDX);
    const fresh = (): void => {
      dev.reset();
      q.init();
      for (let i = 0; i < qs; i++) {
        const last = i % 4 === 3;
        q.setDesc(i, {
          addr: i % 4 < 2 ? 0x10000 + 64 * i : 0x2000 + 64 * i,
          len: 64,
          flags: (i % 4 >= 2 ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT),
          next: i + 1,
        });
      }
      dev.attach(q.addrs);
    };
    fresh();
    const descWord = ram.off(q.addrs.desc) >> 2;
    const availWord = ram.off(q.addrs.avail) >> 2;
    mut = Mutator.start(ram.sab);
    mut.run(
      [
        { word: descWord, words: (16 * qs) >> 2 },
        { word: availWord, words: (6 + 2 * qs) >> 2 },
      ],
      1234,
    );
    const iov = dev.newIovecList();
    const fill = new Uint8Array(256).fill(0x3c);
    let served = 0;
    let refused = 0;
    const deadline = Date.now() + 1500;
    while (Date.now() < deadline || served + refused < 2000) {
      q.publish(4 * (served % 4));
      let head: number;
      try {
        head = dev.pop(iov);
      } catch (err) {
        assert.equal((err as Error).name, 'VirtioError', String(err));
        assert.match((err as { code: string }).code, /^PV_ERR_VIRTQ_/);
        refused++;
        fresh();
        continue;
      }
      if (head < 0) continue;
      assertIovecInside(iov, ram);
      iov.write(0, fill, 0, fill.length);
      dev.pushUsed(head, Math.min(fill.length, iov.writableBytes));
      served++;
    }
    assert.equal(mut.pause(), true);
    assert.ok(mut.writes > 0, 'the mutator ran');
    assert.ok(served > 0 && refused > 0, `served ${served}, refused ${refused}: both outcomes seen`);
    assert.equal(ram.checkHoles(), -1, 'no byte outside guest memory changed');
    assert.ok(
      ram.bytes(0x10000, 0x1000).every((b) => b === 0xa5),
      'the read-only region was never written',
    );
  });
});
